//! Producer metrics, as the KPL names them. The producer's own counters
//! ([`ProducerStats`]) are read when exported; what they do not hold (Kinesis records
//! stored, retries per record, buffering and request time, errors by code) has handles
//! here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::ProducerStats;
use crate::metrics::{defs, global, Counter, Distribution, Source};

/// One producer's handles (dimension `StreamName`).
#[derive(Debug)]
pub struct ProducerMetrics {
    stream: String,
    pub kinesis_records_put: Arc<Counter>,
    pub retries_per_record: Arc<Distribution>,
    pub buffering_time: Arc<Distribution>,
    pub request_time: Arc<Distribution>,
    pub all_errors: Arc<Counter>,
    /// `ErrorsByCode` handles, by code; a new code is resolved once.
    by_code: Mutex<HashMap<String, Arc<Counter>>>,
}

impl ProducerMetrics {
    /// Handles for the producer of `stream`, and its `stats` exported as KPL metrics.
    pub fn new(stream: &str, stats: &Arc<ProducerStats>) -> Self {
        let r = global();
        let dims = || vec![(&defs::STREAM, stream.to_string())];
        let read = |f: fn(&ProducerStats) -> &AtomicU64| -> Source {
            let stats = stats.clone();
            Arc::new(move || f(&stats).load(Relaxed))
        };
        r.observe(
            &defs::USER_RECORDS_RECEIVED,
            dims(),
            read(|s| &s.user_records),
        );
        r.observe(
            &defs::USER_RECORDS_PUT,
            dims(),
            read(|s| &s.user_records_ok),
        );
        r.observe(
            &defs::KINESIS_RECORDS_DATA_PUT,
            dims(),
            read(|s| &s.bytes_stored),
        );
        r.observe(
            &defs::USER_RECORD_EXPIRED,
            dims(),
            read(|s| &s.user_records_expired),
        );
        r.observe(
            &defs::USER_RECORDS_FAILED,
            dims(),
            read(|s| &s.user_records_failed),
        );
        Self {
            stream: stream.to_string(),
            kinesis_records_put: r.counter(&defs::KINESIS_RECORDS_PUT, dims()),
            retries_per_record: r.distribution(&defs::RETRIES_PER_RECORD, dims()),
            buffering_time: r.distribution(&defs::BUFFERING_TIME, dims()),
            request_time: r.distribution(&defs::REQUEST_TIME, dims()),
            all_errors: r.counter(&defs::ALL_ERRORS, dims()),
            by_code: Mutex::default(),
        }
    }

    /// A Kinesis record was stored after `attempts` attempts.
    #[inline]
    pub fn stored(&self, attempts: u32) {
        self.kinesis_records_put.inc();
        self.retries_per_record
            .observe(u64::from(attempts.saturating_sub(1)));
    }

    /// An attempt of a Kinesis record failed with `code` (`None`: no answer or a transport
    /// problem).
    pub fn error(&self, code: Option<&str>) {
        self.all_errors.inc();
        let r = global();
        if !r.enabled(&defs::ERRORS_BY_CODE) {
            return;
        }
        let code = code.unwrap_or("NetworkError");
        let mut m = self.by_code.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(code) {
            c.inc();
            return;
        }
        let c = r.counter(
            &defs::ERRORS_BY_CODE,
            vec![
                (&defs::STREAM, self.stream.clone()),
                (&defs::ERROR_CODE, code.to_string()),
            ],
        );
        c.inc();
        m.insert(code.to_string(), c);
    }
}
