//! Sink metrics: sends, failed or unacknowledged sends, sends in flight, and the time
//! from send to acknowledgement.

use std::sync::Arc;
use std::time::Instant;

use super::{defs, global, Counter, Distribution, Gauge};

/// One sink's handles.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    sends: Arc<Counter>,
    failures: Arc<Counter>,
    in_flight: Arc<Gauge>,
    latency: Arc<Distribution>,
}

impl SinkMetrics {
    pub fn new(sink: &str) -> Self {
        let r = global();
        let dims = || vec![(&defs::SINK, sink.to_string())];
        Self {
            sends: r.counter(&defs::SINK_SENDS, dims()),
            failures: r.counter(&defs::SINK_FAILURES, dims()),
            in_flight: r.gauge(&defs::SINK_IN_FLIGHT, dims()),
            latency: r.distribution(&defs::SINK_ACK_LATENCY, dims()),
        }
    }

    /// A send was enqueued; the returned start is handed to [`Self::acknowledged`].
    #[inline]
    pub fn sent(&self) -> Instant {
        self.sends.inc();
        self.in_flight.add(1);
        Instant::now()
    }

    /// A send's receipt resolved (`ok`) or failed.
    #[inline]
    pub fn acknowledged(&self, started: Instant, ok: bool) {
        self.in_flight.add(-1);
        if ok {
            self.latency.observe_since(started);
        } else {
            self.failures.inc();
        }
    }

    /// A send that could not even be enqueued.
    #[inline]
    pub fn refused(&self) {
        self.sends.inc();
        self.failures.inc();
    }
}
