//! Consumer metrics, as the KCL names them: what a shard consumer processed and how far
//! behind it is, how retrieval went, checkpoints, and the leases a worker holds.

use std::sync::Arc;
use std::time::Instant;

use super::retrieval::Fetched;
use crate::metrics::{defs, global, stream_shard, Counter, Dims, Distribution, Gauge};
use crate::wasm::bindings::SourceRecord;
use crate::wasm::BatchOutcome;

const PROCESS_TASK: &str = "ProcessTask";

fn process_task(stream: &str, shard: &str) -> Dims {
    let r = global();
    let mut d = vec![(&defs::OPERATION, PROCESS_TASK.to_string())];
    d.extend(stream_shard(r, stream, shard));
    d
}

/// One shard consumer's handles.
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    records: Arc<Counter>,
    bytes: Arc<Counter>,
    behind: Arc<Distribution>,
    stages: crate::wasm::metrics::StageMetrics,
    dead_letters: Arc<Counter>,
    corrupt_aggregates: Arc<Counter>,
}

impl ShardMetrics {
    /// Handles for `shard` of `stream`; the stages are named by the component that runs
    /// them (the pipeline's, else the route's, else `builtin`).
    pub fn new(stream: &str, shard: &str, config: &crate::config::Config) -> Self {
        use crate::config::StageKind::{Deserialize, Pipeline, Route, Transform};
        let component = [Pipeline, Route, Transform, Deserialize]
            .into_iter()
            .find_map(|k| config.stages.get(k))
            .and_then(|c| c.component.file_stem())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "builtin".into());
        let r = global();
        let dims = process_task(stream, shard);
        Self {
            records: r.counter(&defs::RECORDS_PROCESSED, dims.clone()),
            bytes: r.counter(&defs::DATA_BYTES_PROCESSED, dims.clone()),
            corrupt_aggregates: r.counter(&defs::CORRUPT_AGGREGATES, dims.clone()),
            behind: r.distribution(&defs::MILLIS_BEHIND_LATEST, dims),
            stages: crate::wasm::metrics::StageMetrics::new(&component),
            dead_letters: r.counter(
                &defs::DEAD_LETTERS,
                vec![(&defs::STREAM, stream.to_string())],
            ),
        }
    }

    /// A batch came back from retrieval (also an empty one: lag is still reported).
    pub fn fetched(&self, millis_behind_latest: Option<i64>) {
        if let Some(m) = millis_behind_latest {
            self.behind.observe(m.max(0) as u64);
        }
    }

    /// These user records go to the stages.
    pub fn processed(&self, records: &[SourceRecord]) {
        self.records.add(records.len() as u64);
        self.bytes
            .add(records.iter().map(|r| r.data.len() as u64).sum());
    }

    /// The stages ran over a batch of `records` records.
    pub fn staged(&self, records: usize, outcome: &BatchOutcome, started: Instant) {
        self.stages.batch(records, outcome, started);
    }

    pub fn dead_lettered(&self) {
        self.dead_letters.inc();
    }

    /// A record had the KPL aggregate magic but could not be read; it goes on whole.
    pub fn corrupt_aggregate(&self) {
        self.corrupt_aggregates.inc();
    }
}

impl Fetched {
    /// Records this batch's lag (also of an empty batch) and hands it on.
    pub fn metered(self, metrics: &ShardMetrics) -> Self {
        metrics.fetched(self.millis_behind_latest);
        self
    }
}

/// Handles of one shard's retrieval (GetRecords).
#[derive(Debug, Clone)]
pub struct RetrievalMetrics {
    success: Arc<Counter>,
    time: Arc<Distribution>,
    expired: Arc<Counter>,
    throttled: Arc<Counter>,
}

impl RetrievalMetrics {
    pub fn new(stream: &str, shard: &str) -> Self {
        let r = global();
        let dims = process_task(stream, shard);
        Self {
            success: r.counter(&defs::GET_RECORDS_SUCCESS, dims.clone()),
            time: r.distribution(&defs::GET_RECORDS_TIME, dims.clone()),
            expired: r.counter(&defs::EXPIRED_ITERATOR, dims.clone()),
            throttled: r.counter(&defs::GET_RECORDS_THROTTLED, dims),
        }
    }

    /// A GetRecords call sent at `sent` succeeded.
    pub fn got_records(&self, sent: tokio::time::Instant) {
        self.success.inc();
        self.time.observe(sent.elapsed().as_millis() as u64);
    }

    pub fn expired_iterator(&self) {
        self.expired.inc();
    }

    pub fn throttled(&self) {
        self.throttled.inc();
    }
}

/// A checkpoint write of lease `key` (`shardId-…` or `stream:shardId-…`) ended; `ok` is
/// whether it was written. Checkpoints are written every few seconds per shard, so the
/// handles are looked up each time.
pub fn checkpointed(key: &str, started: Instant, ok: bool) {
    let r = global();
    let (stream, shard) = key.split_once(':').unwrap_or(("", key));
    let mut dims = vec![(&defs::OPERATION, "Checkpoint".to_string())];
    if !stream.is_empty() {
        dims.push((&defs::STREAM, stream.to_string()));
    }
    if r.detailed() {
        dims.push((&defs::SHARD, shard.to_string()));
    }
    if ok {
        r.distribution(&defs::CHECKPOINT_TIME, dims)
            .observe_since(started);
    } else {
        r.counter(&defs::CHECKPOINT_FAILURES, dims).inc();
    }
}

/// One worker's lease handles.
#[derive(Debug, Clone)]
pub struct LeaseMetrics {
    pub current: Arc<Gauge>,
    /// Bytes of records the worker holds (the receive queue).
    pub receive_queue_bytes: Arc<Gauge>,
    pub taken: Arc<Counter>,
    pub stolen: Arc<Counter>,
    pub lost: Arc<Counter>,
    pub renew_failures: Arc<Counter>,
}

impl LeaseMetrics {
    pub fn new(worker: &str) -> Self {
        let r = global();
        let dims = |op: &str| {
            vec![
                (&defs::OPERATION, op.to_string()),
                (&defs::WORKER, worker.to_string()),
            ]
        };
        Self {
            current: r.gauge(&defs::CURRENT_LEASES, dims("RenewAllLeases")),
            receive_queue_bytes: r.gauge(&defs::RECEIVE_QUEUE_BYTES, dims("ProcessTask")),
            taken: r.counter(&defs::TAKEN_LEASES, dims("TakeLeases")),
            stolen: r.counter(&defs::STOLEN_LEASES, dims("TakeLeases")),
            lost: r.counter(&defs::LOST_LEASES, dims("RenewAllLeases")),
            renew_failures: r.counter(&defs::RENEW_FAILURES, dims("RenewAllLeases")),
        }
    }

    /// A lease was taken (`stolen` from another worker).
    pub fn took(&self, stolen: bool) {
        self.taken.inc();
        if stolen {
            self.stolen.inc();
        }
    }

    /// The worker's handles (a process runs one worker).
    pub fn of(worker: &str) -> &'static LeaseMetrics {
        static ONE: std::sync::OnceLock<LeaseMetrics> = std::sync::OnceLock::new();
        ONE.get_or_init(|| Self::new(worker))
    }
}
