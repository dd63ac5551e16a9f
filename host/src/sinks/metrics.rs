//! Sink metrics: sends, failed or unacknowledged sends, sends in flight, and the time
//! from send to acknowledgement.

use std::sync::Arc;
use std::time::Instant;

use crate::metrics::{defs, global, Counter, Distribution, Gauge};

/// One sink's handles.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    sends: Arc<Counter>,
    failures: Arc<Counter>,
    in_flight: Arc<Gauge>,
    latency: Arc<Distribution>,
    duplicates: Arc<Counter>,
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
            duplicates: r.counter(&defs::SINK_DUPLICATES, dims()),
        }
    }

    /// `n` sends were enqueued together (one receipt); the returned start is handed to
    /// [`Self::acknowledged`].
    #[inline]
    pub fn sent(&self, n: usize) -> Instant {
        self.sends.add(n as u64);
        self.in_flight.add(n as i64);
        Instant::now()
    }

    /// The receipt of `n` sends enqueued together resolved: all acknowledged (`ok`, each
    /// observed with the receipt's latency), or not (each counted as a failure: none is
    /// known to be acknowledged, and all are sent again).
    #[inline]
    pub fn acknowledged(&self, n: usize, started: Instant, ok: bool) {
        self.in_flight.add(-(n as i64));
        if ok {
            self.latency
                .observe_n(started.elapsed().as_millis() as u64, n as u64);
        } else {
            self.failures.add(n as u64);
        }
    }

    /// `n` acknowledged messages were duplicates the destination did not store again.
    #[inline]
    pub fn duplicates(&self, n: usize) {
        self.duplicates.add(n as u64);
    }

    /// A send that could not be enqueued, after `abandoned` sends of the same call that
    /// were (their receipts are not awaited: the records are read and sent again).
    #[inline]
    pub fn refused(&self, abandoned: usize) {
        self.sends.add(abandoned as u64 + 1);
        self.failures.inc();
    }
}
