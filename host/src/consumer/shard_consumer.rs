//! The shard consumer: the life of one leased shard, after the KCL's state machine —
//! waiting on parent shards → initializing → processing → shutting down (shard end, lease
//! lost, or requested).
//!
//! Processing is a loop: fetch a batch (respecting backpressure), run the Wasm stages on a
//! blocking thread, enqueue every delivery in record order, and let receipts acknowledge
//! records as they arrive. The checkpoint is written at an interval, at shard end and at
//! shutdown, and is always the end of the acknowledged prefix. A failed delivery rewinds
//! the shard to that prefix and reads again (at-least-once); a lost lease stops the shard
//! at once and nothing is checkpointed for it again.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{AckTracker, Checkpoint, RecordId};
use super::dead_letter;
use super::lease::Lease;
use super::lease_table::{LeaseTable, LeaseTableError};
use super::receive_queue::{self, RecordSize, Reservation, WorkerQueue};
use super::retrieval::{
    ConsumerRegistration, FanOutFetcher, FetchError, Fetched, Fetcher, PollingFetcher,
};
use crate::agg::{self, Deaggregated};
use crate::config::{Config, ErrorPolicy, StreamSpec};
use crate::sinks::{Delivery, Receipt, RecordContext, SinkError, Sinks, Target};
use crate::wasm::bindings::{BatchContext, Destination, Event, SourceRecord};
use crate::wasm::reload::Plans;
use crate::wasm::{BatchOutcome, FailureKind, RecordFailure, StageSet, WasmError};

/// What every shard consumer of a worker shares.
#[derive(Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    pub kinesis: aws_sdk_kinesis::Client,
    pub leases: LeaseTable,
    pub worker: String,
    pub sinks: Arc<Sinks>,
    /// The components in use; replaced by hot reload.
    pub plans: Arc<Plans>,
    pub stats: Arc<super::Stats>,
    /// The bytes of records every shard of the worker holds.
    pub receive_queue: Arc<WorkerQueue>,
}

/// A lease this worker holds. Renewals and checkpoints both move `leaseCounter`, so they
/// take turns through `counter`.
///
/// The last checkpoint and renewal are kept in watch channels: a value replaced whole,
/// read without a lock that a panic elsewhere could poison.
#[derive(Debug)]
pub struct HeldLease {
    pub key: String,
    pub parents: Vec<String>,
    counter: tokio::sync::Mutex<i64>,
    checkpoint: watch::Sender<Checkpoint>,
    /// When the last successful renewal (or the take) was sent.
    renewed_at: watch::Sender<Instant>,
    /// Cancelled when the lease is lost; the shard stops at once.
    pub lost: CancellationToken,
}

impl HeldLease {
    /// A lease just taken with `counter`; `sent` is when the take was sent.
    pub fn new(lease: &Lease, counter: i64, sent: Instant) -> Arc<Self> {
        Arc::new(Self {
            key: lease.key.clone(),
            parents: lease.parents.clone(),
            counter: tokio::sync::Mutex::new(counter),
            checkpoint: watch::Sender::new(lease.checkpoint.clone()),
            renewed_at: watch::Sender::new(sent),
            lost: CancellationToken::new(),
        })
    }

    fn renewed_at(&self) -> Instant {
        *self.renewed_at.borrow()
    }

    /// Stops the shard when the lease went unrenewed for `stop_after`: another worker
    /// counts expiry from the last renewal it saw, which was written after we sent it, so
    /// stopping before `leases.duration` has passed since sending means the shard is never
    /// processed by two workers at once.
    pub fn spawn_watchdog(self: &Arc<Self>, stop_after: Duration) {
        let lease = self.clone();
        tokio::spawn(async move {
            loop {
                let deadline = lease.renewed_at() + stop_after;
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = lease.lost.cancelled() => return,
                }
                let unrenewed = lease.renewed_at().elapsed();
                if unrenewed >= stop_after {
                    tracing::warn!(shard = %lease.key, unrenewed_ms = unrenewed.as_millis() as u64,
                        "lease not renewed in time; stopping the shard before another worker can take it");
                    lease.lost.cancel();
                    return;
                }
            }
        });
    }

    /// The last checkpoint written (or read when the lease was taken).
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint.borrow().clone()
    }

    pub async fn renew(&self, table: &LeaseTable, worker: &str) -> Result<(), LeaseTableError> {
        let mut counter = self.counter.lock().await;
        if self.lost.is_cancelled() {
            return Err(LeaseTableError::Conflict(self.key.clone()));
        }
        let sent = Instant::now();
        match table.renew(&self.key, worker, *counter).await {
            Ok(next) => {
                *counter = next;
                self.renewed_at.send_replace(sent);
                Ok(())
            }
            Err(e) => {
                if matches!(e, LeaseTableError::Conflict(_)) {
                    self.lost.cancel();
                }
                Err(e)
            }
        }
    }

    /// Writes `cp` if the lease is still ours. A conflict means the lease is lost.
    pub async fn write_checkpoint(
        &self,
        table: &LeaseTable,
        worker: &str,
        cp: &Checkpoint,
    ) -> Result<(), LeaseTableError> {
        self.write_checkpoint_with_children(table, worker, cp, &[])
            .await
    }

    /// As [`Self::write_checkpoint`], recording child shard ids (at shard end).
    pub async fn write_checkpoint_with_children(
        &self,
        table: &LeaseTable,
        worker: &str,
        cp: &Checkpoint,
        child_shards: &[String],
    ) -> Result<(), LeaseTableError> {
        // Children are lease keys: `stream:` prefixed like this lease when it is.
        let prefix = self.key.split_once(':').map(|(s, _)| format!("{s}:"));
        let children: Vec<String> = child_shards
            .iter()
            .map(|c| format!("{}{c}", prefix.as_deref().unwrap_or("")))
            .collect();
        let mut counter = self.counter.lock().await;
        if self.lost.is_cancelled() {
            return Err(LeaseTableError::Conflict(self.key.clone()));
        }
        match table
            .checkpoint(&self.key, worker, *counter, cp, &children)
            .await
        {
            Ok(next) => {
                *counter = next;
                self.checkpoint.send_replace(cp.clone());
                Ok(())
            }
            Err(e) => {
                if matches!(e, LeaseTableError::Conflict(_)) {
                    self.lost.cancel();
                }
                Err(e)
            }
        }
    }

    /// Gives the lease up so another worker can take it at once.
    pub async fn release(&self, table: &LeaseTable, worker: &str) -> Result<(), LeaseTableError> {
        let counter = self.counter.lock().await;
        if self.lost.is_cancelled() {
            return Ok(());
        }
        let r = table.release(&self.key, worker, *counter).await;
        self.lost.cancel();
        r
    }
}

/// How a shard consumer ended.
#[derive(Debug)]
pub enum ShardExit {
    /// Every record of the closed shard is done and `SHARD_END` is checkpointed.
    ShardEnd,
    /// Another worker owns the shard now; nothing more was written.
    LeaseLost,
    /// Shutdown was requested; the acknowledged prefix is checkpointed.
    Shutdown,
    /// The worker must stop (error policy `fail`, or an error that retrying cannot fix).
    Failed(ShardError),
}

/// Why a shard consumer stops the worker: nothing a rewind or a retry can fix.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The components cannot be instantiated for this shard.
    #[error(transparent)]
    Instantiate(WasmError),
    /// Retrieval failed after its retries.
    #[error(transparent)]
    Fetch(FetchError),
    /// A record failed and its error policy stops the worker.
    #[error(transparent)]
    Record(RecordError),
    #[error("stage thread panicked: {0}")]
    StageThread(String),
    #[error("stage instances are gone after an earlier failure")]
    StagesGone,
    /// Writing `SHARD_END` failed (a conflict is a lost lease, not this).
    #[error(transparent)]
    ShardEndCheckpoint(LeaseTableError),
    /// A panic while the acknowledgement tracker was being updated: which records are
    /// done is unknown, so nothing is checkpointed from it.
    #[error("shard {0}: the acknowledgement tracker was poisoned by a panic; stopping without checkpointing")]
    TrackerPoisoned(String),
}

/// A record that failed where its error policy says to stop.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Error policy `fail` (or `dead_letter` with no dead-letter destination).
    #[error("{record}")]
    Failed {
        /// The record, where it came from and why it failed.
        record: String,
    },
    /// Error policy `dead_letter`, and the dead-letter target cannot be used.
    #[error("{record}; dead letter: {reason}")]
    DeadLetterRefused { record: String, reason: String },
}

/// Why a pass over the shard stopped taking acknowledgements.
#[derive(Debug)]
enum FlowFailure {
    /// A send failed: the shard rewinds to the acknowledged prefix and reads again.
    Sink(SinkError),
    /// The tracker is unusable: the shard stops ([`ShardError::TrackerPoisoned`]).
    TrackerPoisoned,
}

/// Deliveries in flight for one pass over the shard.
#[derive(Debug)]
struct Flow {
    shard: String,
    stats: Arc<super::Stats>,
    /// Where the bytes of this pass's records are counted for the whole worker; what is
    /// still held when the pass is gone (records never acknowledged) is given back then.
    worker_queue: Arc<WorkerQueue>,
    tracker: Mutex<AckTracker>,
    /// Delivery tasks not finished (acknowledged or failed).
    outstanding: AtomicUsize,
    /// The first failure; set once.
    failure: OnceLock<FlowFailure>,
    changed: Notify,
}

impl Flow {
    fn new(shard: &str, stats: Arc<super::Stats>, worker_queue: Arc<WorkerQueue>) -> Self {
        Self {
            shard: shard.to_string(),
            stats,
            worker_queue,
            tracker: Mutex::default(),
            outstanding: AtomicUsize::new(0),
            failure: OnceLock::new(),
            changed: Notify::new(),
        }
    }

    /// The tracker; poisoned by a panic in the middle of an update, it is never read
    /// again (what it says may be wrong), and the shard stops.
    fn tracker(&self) -> Result<MutexGuard<'_, AckTracker>, ShardError> {
        self.tracker
            .lock()
            .map_err(|_| ShardError::TrackerPoisoned(self.shard.clone()))
    }

    fn in_flight(&self) -> Result<usize, ShardError> {
        Ok(self.tracker()?.in_flight())
    }

    /// Bytes of this pass's records not done yet.
    fn held_bytes(&self) -> Result<u64, ShardError> {
        Ok(self.tracker()?.held_bytes())
    }

    fn checkpointable(&self) -> Result<Option<Checkpoint>, ShardError> {
        Ok(self.tracker()?.checkpointable())
    }

    fn failure(&self) -> Option<&FlowFailure> {
        self.failure.get()
    }

    fn fail(&self, why: FlowFailure) {
        let _ = self.failure.set(why);
        self.wake();
    }

    /// Wakes whoever waits for progress; the stored permit covers a waiter that is about
    /// to wait but has not registered yet.
    fn wake(&self) {
        self.changed.notify_waiters();
        self.changed.notify_one();
    }

    /// Registers a record handed to the sinks: `pending` deliveries, `bytes` of data and
    /// key held (out of the fetch's `reservation`) until the last of them is acknowledged.
    fn push(
        &self,
        sequence: &Arc<str>,
        sub: u64,
        pending: u32,
        bytes: u32,
        reservation: &mut Reservation,
    ) -> Result<RecordId, ShardError> {
        let id = self.tracker()?.push(sequence.clone(), sub, pending, bytes);
        if pending > 0 {
            reservation.take(u64::from(bytes));
        }
        Ok(id)
    }

    /// One delivery of each of `ids` was acknowledged.
    fn ack_all(&self, ids: &[RecordId]) {
        let released = match self.tracker() {
            Ok(mut t) => ids.iter().map(|&id| t.ack(id)).sum(),
            Err(_) => {
                self.fail(FlowFailure::TrackerPoisoned);
                return;
            }
        };
        self.worker_queue.release(released);
        self.stats
            .deliveries
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
    }

    /// Waits for a receipt on a task of its own: it acknowledges one delivery of each of
    /// `ids`, or fails the flow (the shard rewinds to the acknowledged prefix).
    fn await_receipt(self: &Arc<Self>, receipt: Receipt, ids: Vec<RecordId>) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        let flow = self.clone();
        tokio::spawn(async move {
            match receipt.await {
                Ok(()) => flow.ack_all(&ids),
                Err(e) => flow.fail(FlowFailure::Sink(e)),
            }
            flow.outstanding.fetch_sub(1, Ordering::AcqRel);
            flow.wake();
        });
    }
}

impl Drop for Flow {
    /// Records of a pass that ended (rewind, lease lost, shutdown) before all their
    /// deliveries were acknowledged: nothing holds their data any more.
    fn drop(&mut self) {
        let held = self
            .tracker
            .get_mut()
            .map(|t| t.held_bytes())
            .unwrap_or_else(|p| p.into_inner().held_bytes());
        self.worker_queue.release(held);
    }
}

/// What a Kinesis record of a fetched batch carries besides its data.
struct Head {
    arrival: i64,
    encryption: Option<aws_sdk_kinesis::types::EncryptionType>,
    /// Shared by the user records of an aggregate.
    sequence: Arc<str>,
    partition_key: String,
    /// Set on the checkpointed record after a restart: the sub-sequence number up to which
    /// it was done.
    done_up_to: Option<u64>,
}

/// The per-record data the host keeps out of the guest.
#[derive(Debug)]
struct Meta {
    /// Shared by the user records of one KPL aggregate, and with the ack tracker.
    sequence: Arc<str>,
    /// Position inside a KPL aggregate; `None` for a plain record.
    sub: Option<u64>,
    encryption: Option<aws_sdk_kinesis::types::EncryptionType>,
    /// The record's size in the receive queue.
    bytes: u32,
}

/// Runs one shard until it ends, its lease is lost, or `shutdown` is cancelled.
pub async fn run(
    shared: Arc<Shared>,
    lease: Arc<HeldLease>,
    stream: StreamSpec,
    fan_out: Option<Arc<ConsumerRegistration>>,
    shutdown: CancellationToken,
) -> ShardExit {
    let shard = shard_id(&lease.key).to_string();
    // Waiting on parent shards: a child starts only after every parent reached SHARD_END,
    // so records of one key stay in order across resharding.
    loop {
        match parents_done(&shared, &lease).await {
            Ok(true) => break,
            Ok(false) => tracing::debug!(%shard, "waiting for parent shards to finish"),
            Err(e) => tracing::warn!(%shard, error = %e, "cannot read parent leases"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return ShardExit::Shutdown,
            _ = lease.lost.cancelled() => return ShardExit::LeaseLost,
        }
    }
    if lease.checkpoint() == Checkpoint::ShardEnd {
        return ShardExit::ShardEnd;
    }

    // Initializing. From here the shard counts in the receive queue's fair share.
    let _slot = shared.receive_queue.join();
    let (generation, plan) = shared.plans.current();
    let mut stages = match plan.instantiate() {
        Ok(s) => Some(s),
        Err(e) => return ShardExit::Failed(ShardError::Instantiate(e)),
    };
    let mut consumer = ShardConsumer {
        metrics: crate::consumer::metrics::ShardMetrics::new(&stream.name, &shard, &shared.config),
        shared,
        lease,
        stream: stream.name,
        at_timestamp: stream.at_timestamp,
        fan_out,
        shard,
        shutdown,
        generation: AtomicU64::new(generation),
        record_size: RecordSize::default(),
    };
    let mut rewinds = 0u32;
    loop {
        let start = consumer.lease.checkpoint();
        tracing::info!(stream = %consumer.stream, shard = %consumer.shard, checkpoint = %start, "processing shard");
        match consumer.process(&mut stages, &start).await {
            Pass::Exit(e) => return e,
            Pass::Rewind(why) => {
                rewinds += 1;
                let wait = Duration::from_millis(500 * u64::from(rewinds.min(20)));
                tracing::warn!(shard = %consumer.shard, reason = %why, wait_ms = wait.as_millis() as u64,
                    "delivery failed; reading the shard again from the last checkpoint");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = consumer.shutdown.cancelled() => return ShardExit::Shutdown,
                    _ = consumer.lease.lost.cancelled() => return ShardExit::LeaseLost,
                }
            }
        }
    }
}

/// How long a stopping shard waits for its deliveries: the longest any sink may take to
/// answer a send ([`crate::config::SinkConfig::ack_timeout`]) plus a margin.
fn drain_timeout(config: &Config) -> Duration {
    let ack = config.sinks.values().map(|s| s.ack_timeout()).max();
    ack.unwrap_or_default() + Duration::from_secs(5)
}

/// The shard id of a lease key (`shardId-…`, or `stream:shardId-…` with several streams).
pub fn shard_id(lease_key: &str) -> &str {
    lease_key
        .split_once(':')
        .map(|(_, shard)| shard)
        .unwrap_or(lease_key)
}

async fn parents_done(shared: &Shared, lease: &HeldLease) -> Result<bool, LeaseTableError> {
    if lease.parents.is_empty() {
        return Ok(true);
    }
    let all = shared.leases.list().await?;
    Ok(lease.parents.iter().all(|p| {
        all.iter()
            .find(|l| &l.key == p)
            // A parent without a lease has expired from the stream (or was never read).
            .is_none_or(|l| l.checkpoint == Checkpoint::ShardEnd)
    }))
}

enum Pass {
    Exit(ShardExit),
    Rewind(SinkError),
}

struct ShardConsumer {
    metrics: crate::consumer::metrics::ShardMetrics,
    shared: Arc<Shared>,
    lease: Arc<HeldLease>,
    stream: String,
    at_timestamp: Option<std::time::SystemTime>,
    /// The stream's fan-out consumer, when it is read with enhanced fan-out.
    fan_out: Option<Arc<ConsumerRegistration>>,
    shard: String,
    shutdown: CancellationToken,
    /// Generation of the plan `stages` were instantiated from.
    generation: AtomicU64,
    /// Recent record sizes, to turn the receive queue's byte room into a record count.
    record_size: RecordSize,
}

impl ShardConsumer {
    /// The component that chose destinations (the pipeline's or the route stage's), as
    /// the stage plan names it.
    fn router_name(&self) -> String {
        let s = &self.config().stages;
        s.pipeline
            .as_ref()
            .or(s.route.as_ref())
            .and_then(|c| c.component.file_stem())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "router".into())
    }

    /// Before a batch: when components were reloaded, instantiates the new version, so the
    /// whole batch runs on it. If that fails here, the running instances stay.
    fn refresh(&self, stages: &mut Option<StageSet>) {
        let current = self.generation.load(Ordering::Acquire);
        let Some((generation, plan)) = self.shared.plans.newer_than(current) else {
            return;
        };
        self.generation.store(generation, Ordering::Release);
        match plan.instantiate() {
            Ok(set) => {
                tracing::info!(shard = %self.shard, generation, "reloaded components in use from this batch");
                *stages = Some(set);
            }
            Err(e) => tracing::error!(shard = %self.shard, generation, error = %e,
                "cannot instantiate the reloaded components; this shard keeps the running version"),
        }
    }

    fn config(&self) -> &Config {
        &self.shared.config
    }

    async fn process(&mut self, stages: &mut Option<StageSet>, start: &Checkpoint) -> Pass {
        let cfg = self.shared.config.clone();
        let mut fetcher = match &self.fan_out {
            Some(registration) => Fetcher::FanOut(FanOutFetcher::new(
                self.shared.kinesis.clone(),
                registration.clone(),
                &self.shard,
                start,
                self.at_timestamp,
                cfg.source.fan_out.clone(),
            )),
            None => Fetcher::Polling(PollingFetcher::new(
                self.shared.kinesis.clone(),
                &self.stream,
                &self.shard,
                start,
                self.at_timestamp,
                cfg.source.polling.clone(),
            )),
        };
        let mut children: Vec<String> = Vec::new();
        // The iterator starts AT the checkpointed record; skip what of it was done.
        let mut skip = match start {
            Checkpoint::Sequence { sequence, sub } => Some((sequence.clone(), *sub)),
            _ => None,
        };
        let flow = Arc::new(Flow::new(
            &self.shard,
            self.shared.stats.clone(),
            self.shared.receive_queue.clone(),
        ));
        let interval = cfg.checkpoint.interval;
        let mut next_checkpoint = Instant::now() + interval;

        loop {
            if self.lease.lost.is_cancelled() {
                return Pass::Exit(ShardExit::LeaseLost);
            }
            if flow.failure().is_some() {
                return self.rewind(&flow).await;
            }
            if self.shutdown.is_cancelled() {
                return Pass::Exit(self.finish(&flow, ShardExit::Shutdown).await);
            }
            if Instant::now() >= next_checkpoint {
                if let Err(e) = self.checkpoint(&flow).await {
                    return Pass::Exit(ShardExit::Failed(e));
                }
                next_checkpoint = Instant::now() + interval;
            }
            // Backpressure (the receive queue): at most `receive_queue_size` records and
            // `receive_queue_bytes` of this shard, and `max_in_flight_bytes` of the whole
            // worker, fetched and not yet acknowledged. A fetch reserves its bytes of the
            // worker's queue first and asks for no more records than fit in them at the
            // recent record size. The worker's wait is created before the reservation is
            // tried, so a release in between still wakes it.
            let queue = self.shared.receive_queue.clone();
            let worker_below_limit = queue.below_limit();
            let (in_flight, held_bytes) =
                match flow.in_flight().and_then(|n| Ok((n, flow.held_bytes()?))) {
                    Ok(v) => v,
                    Err(e) => return Pass::Exit(ShardExit::Failed(e)),
                };
            let records_room = cfg.source.receive_queue_size.saturating_sub(in_flight);
            let shard_bytes_room = cfg.source.receive_queue_bytes.saturating_sub(held_bytes);
            let reservation = (records_room > 0 && shard_bytes_room > 0)
                .then(|| {
                    let want = shard_bytes_room
                        .min(queue.fair_share())
                        .min(self.record_size.fetch_bytes());
                    queue.reserve(want)
                })
                .flatten();
            let Some(mut reservation) = reservation else {
                let worker_full = records_room > 0 && shard_bytes_room > 0;
                tokio::select! {
                    _ = flow.changed.notified() => {}
                    _ = worker_below_limit, if worker_full => {}
                    _ = tokio::time::sleep_until(next_checkpoint) => {}
                    _ = self.shutdown.cancelled() => {}
                    _ = self.lease.lost.cancelled() => {}
                }
                continue;
            };
            drop(worker_below_limit);
            let room = self.record_size.limit(records_room, reservation.bytes());
            // The fetch is kept (not restarted) while checkpoints fall due: a fan-out
            // subscription may deliver nothing for seconds, and the acknowledged prefix
            // must still be written on time.
            let fetched = {
                let fetch = fetcher.fetch(room);
                tokio::pin!(fetch);
                loop {
                    tokio::select! {
                        r = &mut fetch => break Some(r),
                        _ = self.shutdown.cancelled() => break None,
                        _ = self.lease.lost.cancelled() => break None,
                        _ = flow.changed.notified(), if flow.failure().is_some() => break None,
                        _ = tokio::time::sleep_until(next_checkpoint) => {
                            if let Err(e) = self.checkpoint(&flow).await {
                                return Pass::Exit(ShardExit::Failed(e));
                            }
                            next_checkpoint = Instant::now() + interval;
                        }
                    }
                }
            };
            let Some(fetched) = fetched else { continue };
            let fetched = match fetched {
                Ok(f) => f.metered(&self.metrics),
                Err(e) => {
                    tracing::error!(error = %e, "retrieval failed");
                    return Pass::Exit(
                        self.finish(&flow, ShardExit::Failed(ShardError::Fetch(e)))
                            .await,
                    );
                }
            };
            let shard_end = fetched.shard_end;
            if shard_end {
                children = fetched.child_shards.clone();
            }
            let delivered = if fetched.records.is_empty() {
                Ok(())
            } else {
                self.deliver(stages, &flow, fetched, &mut skip, &mut reservation)
                    .await
            };
            // What the batch did not take goes back before anything waits.
            drop(reservation);
            if let Err(fatal) = delivered {
                return Pass::Exit(self.finish(&flow, ShardExit::Failed(fatal)).await);
            }
            if shard_end {
                // Shard end: wait for every delivery, then record SHARD_END.
                self.drain(&flow).await;
                if flow.failure().is_some() {
                    return self.rewind(&flow).await;
                }
                if self.lease.lost.is_cancelled() {
                    return Pass::Exit(ShardExit::LeaseLost);
                }
                match flow.in_flight() {
                    Ok(0) => {}
                    // Shutdown cut the drain short.
                    Ok(_) => return Pass::Exit(self.finish(&flow, ShardExit::Shutdown).await),
                    Err(e) => return Pass::Exit(ShardExit::Failed(e)),
                }
                let r = self
                    .lease
                    .write_checkpoint_with_children(
                        &self.shared.leases,
                        &self.shared.worker,
                        &Checkpoint::ShardEnd,
                        &children,
                    )
                    .await;
                return Pass::Exit(match r {
                    Ok(()) => {
                        tracing::info!(shard = %self.shard, children = %children.join(","), "shard end reached and checkpointed");
                        ShardExit::ShardEnd
                    }
                    Err(LeaseTableError::Conflict(_)) => ShardExit::LeaseLost,
                    Err(e) => ShardExit::Failed(ShardError::ShardEndCheckpoint(e)),
                });
            }
        }
    }

    /// After a failed send: waits for deliveries in flight (bounded), checkpoints what was
    /// acknowledged, and reads again from there; a poisoned tracker stops the shard.
    async fn rewind(&self, flow: &Arc<Flow>) -> Pass {
        self.drain(flow).await;
        if let Err(e) = self.checkpoint(flow).await {
            return Pass::Exit(ShardExit::Failed(e));
        }
        match flow.failure.get() {
            Some(FlowFailure::Sink(e)) => Pass::Rewind(e.clone()),
            Some(FlowFailure::TrackerPoisoned) | None => Pass::Exit(ShardExit::Failed(
                ShardError::TrackerPoisoned(self.shard.clone()),
            )),
        }
    }

    /// Stops: waits for deliveries in flight (bounded), checkpoints what was acknowledged.
    async fn finish(&self, flow: &Arc<Flow>, exit: ShardExit) -> ShardExit {
        if self.lease.lost.is_cancelled() {
            return ShardExit::LeaseLost;
        }
        self.drain(flow).await;
        if let Err(e) = self.checkpoint(flow).await {
            return ShardExit::Failed(e);
        }
        if self.lease.lost.is_cancelled() && matches!(exit, ShardExit::Shutdown) {
            return ShardExit::LeaseLost;
        }
        exit
    }

    /// Waits until no delivery is outstanding, the lease is lost, or the drain deadline
    /// ([`drain_timeout`]) passes.
    async fn drain(&self, flow: &Arc<Flow>) {
        let deadline = Instant::now() + drain_timeout(self.config());
        while flow.outstanding.load(Ordering::Acquire) > 0 {
            let notified = flow.changed.notified();
            if flow.outstanding.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(shard = %self.shard, outstanding = flow.outstanding.load(Ordering::Acquire),
                        "deliveries still unacknowledged at the drain deadline; they will be read again");
                    break;
                }
                _ = self.lease.lost.cancelled() => break,
            }
        }
    }

    /// Writes the acknowledged prefix if it moved. A failed write is retried at the next
    /// checkpoint; `Err` (a poisoned tracker) stops the shard.
    async fn checkpoint(&self, flow: &Flow) -> Result<(), ShardError> {
        let Some(cp) = flow.checkpointable()? else {
            return Ok(());
        };
        if cp == self.lease.checkpoint() || self.lease.lost.is_cancelled() {
            return Ok(());
        }
        match self
            .lease
            .write_checkpoint(&self.shared.leases, &self.shared.worker, &cp)
            .await
        {
            Ok(()) => tracing::debug!(shard = %self.shard, checkpoint = %cp, "checkpointed"),
            Err(LeaseTableError::Conflict(_)) => {
                tracing::warn!(shard = %self.shard, "lease lost while checkpointing; stopping the shard")
            }
            Err(e) => {
                tracing::warn!(shard = %self.shard, error = %e, "checkpoint failed; will retry")
            }
        }
        Ok(())
    }

    /// Runs the stages over one batch and enqueues its deliveries. `Err` is fatal (error
    /// policy `fail`); delivery problems are reported through `flow`.
    async fn deliver(
        &mut self,
        stages: &mut Option<StageSet>,
        flow: &Arc<Flow>,
        fetched: Fetched,
        skip: &mut Option<(String, u64)>,
        reservation: &mut Reservation,
    ) -> Result<(), ShardError> {
        let n = fetched.records.len();
        self.shared
            .stats
            .records
            .fetch_add(n as u64, Ordering::Relaxed);
        let (records, metas) = unpack(fetched.records, skip, &self.shard, &self.metrics);
        if records.is_empty() {
            return Ok(());
        }
        self.record_size
            .observe(metas.len(), metas.iter().map(|m| u64::from(m.bytes)).sum());
        self.metrics.processed(&records);
        let ctx = BatchContext {
            stream_name: self.stream.clone(),
            shard_id: self.shard.clone(),
            millis_behind_latest: fetched.millis_behind_latest.map(|m| m.max(0) as u64),
        };
        // Under a `fail` policy nothing past the failed record is delivered: stop there.
        let cfg = self.shared.config.clone();
        self.refresh(stages);

        // The stages run on a blocking thread: a guest call is synchronous CPU work.
        let started = std::time::Instant::now();
        let (outcome, records) = match stages.take() {
            Some(mut set) => {
                let ctx2 = ctx.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let stop = |f: &RecordFailure| cfg.error_policy(f.stage).0 == ErrorPolicy::Fail;
                    let o = set.run_until(&ctx2, &records, &stop);
                    (set, o, records)
                })
                .await;
                match joined {
                    Ok((set, o, records)) => {
                        *stages = Some(set);
                        (o, records)
                    }
                    Err(e) => return Err(ShardError::StageThread(e.to_string())),
                }
            }
            None => return Err(ShardError::StagesGone),
        };
        self.metrics.staged(records.len(), &outcome, started);
        self.dispatch(flow, &ctx, &records, &metas, outcome, reservation)
            .await
    }

    async fn dispatch(
        &self,
        flow: &Arc<Flow>,
        ctx: &BatchContext,
        records: &[SourceRecord],
        metas: &[Meta],
        outcome: BatchOutcome,
        reservation: &mut Reservation,
    ) -> Result<(), ShardError> {
        let sinks = &self.shared.sinks;
        let mut outputs = outcome.outputs.into_iter().peekable();
        let mut failures = outcome.failures.into_iter().peekable();
        // The batch's deliveries by target, each in record order; sent after the loop.
        let mut groups: Vec<Group<'_>> = Vec::new();
        // The destination resolved last and its group: most batches go to one place.
        let mut last: Option<(Destination, usize)> = None;
        let default_destination = Destination {
            sink: None,
            topic: None,
            partition_key: None,
            explicit_hash_key: None,
        };
        // Every event of the current record: (group, event).
        let mut sends: Vec<(usize, Event)> = Vec::new();
        let mut fatal = None;
        for (i, (rec, meta)) in records.iter().zip(metas).enumerate() {
            let (i, bytes) = (i as u32, meta.bytes);
            let rc = RecordContext {
                stream: &self.stream,
                shard_id: &self.shard,
                partition_key: &rec.partition_key,
                sequence_number: &meta.sequence,
                sub_sequence_number: meta.sub,
                arrival_millis: rec.arrival_millis,
                encryption_type: meta.encryption.as_ref().map(|e| e.as_str()),
                millis_behind_latest: ctx.millis_behind_latest.map(|m| m as i64),
            };
            let mut failure: Option<RecordFailure> = None;
            while failures.peek().is_some_and(|f| f.index < i) {
                failures.next();
            }
            if failures.peek().is_some_and(|f| f.index == i) {
                failure = failures.next();
            }
            sends.clear();
            while let Some(o) = outputs.next_if(|o| o.index <= i) {
                if o.index < i || failure.is_some() {
                    continue;
                }
                let dests = if o.destinations.is_empty() {
                    std::slice::from_ref(&default_destination)
                } else {
                    &o.destinations[..]
                };
                let mut event = Some(o.event);
                for (k, d) in dests.iter().enumerate() {
                    let group = match &last {
                        Some((prev, g)) if same_destination(prev, d) => Ok(*g),
                        _ => sinks
                            .resolve(d)
                            .map_err(|reason| (FailureKind::Contract, reason))
                            .and_then(|target| match sinks.refusal(&target) {
                                Some(why) => Err((FailureKind::Sink, why)),
                                None => {
                                    let g = group_of(&mut groups, target);
                                    last = Some((d.clone(), g));
                                    Ok(g)
                                }
                            }),
                    };
                    let ev = if k + 1 == dests.len() {
                        event.take()
                    } else {
                        event.clone()
                    };
                    // The destination must resolve, and its sink take this event.
                    let sent = group.and_then(|g| {
                        let Some(mut ev) = ev else { return Ok(()) };
                        if let Some(key) = &d.partition_key {
                            ev.key = Some(key.clone());
                        }
                        sinks
                            .admit(&groups[g].target, &ev, &rec.partition_key)
                            .map_err(|reason| (FailureKind::Sink, reason))?;
                        sends.push((g, ev));
                        Ok(())
                    });
                    if let Err((kind, reason)) = sent {
                        failure = Some(RecordFailure {
                            index: i,
                            stage: "route",
                            component: self.router_name(),
                            kind,
                            reason,
                        });
                        break;
                    }
                }
            }

            if let Some(f) = failure {
                let what = format!(
                    "record {} (partition key {:?}) of stream {} shard {} failed in stage {} of component {} ({}): {}",
                    meta.sequence, rec.partition_key, self.stream, self.shard,
                    f.stage, f.component, f.kind.as_str(), f.reason
                );
                let (policy, key) = self.config().error_policy(f.stage);
                match policy {
                    ErrorPolicy::Fail => {
                        tracing::error!(
                            "{what}; {key} is fail: stopping without checkpointing past it"
                        );
                        fatal = Some(RecordError::Failed { record: what });
                        break;
                    }
                    ErrorPolicy::Skip => {
                        tracing::warn!("{what}; {key} is skip: record skipped");
                        flow.push(&meta.sequence, meta.sub.unwrap_or(0), 0, bytes, reservation)?;
                    }
                    ErrorPolicy::DeadLetter => {
                        let Some(dl) = &self.config().errors.dead_letter else {
                            fatal = Some(RecordError::Failed { record: what });
                            break;
                        };
                        let dest = Destination {
                            sink: dl.sink.clone(),
                            topic: Some(dl.topic.clone()),
                            partition_key: None,
                            explicit_hash_key: None,
                        };
                        let target = match sinks.resolve(&dest) {
                            Ok(t) => match sinks.refusal(&t) {
                                None => t,
                                Some(why) => {
                                    fatal = Some(RecordError::DeadLetterRefused {
                                        record: what,
                                        reason: why,
                                    });
                                    break;
                                }
                            },
                            Err(e) => {
                                fatal = Some(RecordError::DeadLetterRefused {
                                    record: what,
                                    reason: e,
                                });
                                break;
                            }
                        };
                        self.metrics.dead_lettered();
                        tracing::warn!(
                            "{what}; {key} is dead_letter: sent to {} of sink {}",
                            target.topic,
                            target.sink
                        );
                        let id = flow.push(
                            &meta.sequence,
                            meta.sub.unwrap_or(0),
                            1,
                            bytes,
                            reservation,
                        )?;
                        // A Kinesis record has no properties: it carries a JSON envelope.
                        let payload = if sinks.is_kinesis(&target.sink) {
                            let max = dead_letter::max_envelope_len(&rec.partition_key);
                            let e = dead_letter::envelope(&f, &rc, &rec.data, max);
                            if e.len() < rec.data.len() {
                                tracing::warn!(sequence = %meta.sequence, bytes = rec.data.len(),
                                    "dead letter too large for a Kinesis record with its envelope: sent without its data");
                            }
                            e
                        } else {
                            rec.data.clone()
                        };
                        let event = Event {
                            key: None,
                            payload,
                            properties: Vec::new(),
                            event_time_millis: None,
                        };
                        let extra = dead_letter::properties(&f, &rc);
                        let g = group_of(&mut groups, target);
                        groups[g].add(id, rc, event, extra);
                    }
                }
                continue;
            }

            let id = flow.push(
                &meta.sequence,
                meta.sub.unwrap_or(0),
                sends.len() as u32,
                bytes,
                reservation,
            )?;
            for (g, event) in sends.drain(..) {
                groups[g].add(id, rc, event, Vec::new());
            }
        }
        // Under a `fail` policy what came before the failed record is still delivered
        // (and may be checkpointed); nothing after it is.
        for g in groups {
            match sinks.send_all(&g.target, g.deliveries).await {
                Ok(receipt) => flow.await_receipt(receipt, g.ids),
                Err(e) => {
                    // The shard will rewind; later groups are read and sent again.
                    flow.fail(FlowFailure::Sink(e));
                    break;
                }
            }
        }
        fatal.map_or(Ok(()), |e| Err(ShardError::Record(e)))
    }
}

/// The user records of a fetched batch — KPL aggregates unpacked, what a restart already
/// did skipped — each with what the host keeps of it out of the guest.
fn unpack(
    fetched: Vec<aws_sdk_kinesis::types::Record>,
    skip: &mut Option<(String, u64)>,
    shard: &str,
    metrics: &crate::consumer::metrics::ShardMetrics,
) -> (Vec<SourceRecord>, Vec<Meta>) {
    let n = fetched.len();
    let mut records = Vec::with_capacity(n);
    let mut metas = Vec::with_capacity(n);
    let now_millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // The data of every Kinesis record first, so that the KPL aggregates among them are
    // unpacked together (their MD5s computed several at a time).
    let mut heads = Vec::with_capacity(n);
    let mut datas = Vec::with_capacity(n);
    for r in fetched {
        // After a restart the iterator starts AT the checkpointed record: what of it
        // was done (all of a plain record, sub-records up to the checkpoint of an
        // aggregate) is skipped.
        let done_up_to = match skip.take() {
            Some((seq, sub)) if seq == r.sequence_number => Some(sub),
            _ => None,
        };
        heads.push(Head {
            arrival: r
                .approximate_arrival_timestamp
                .as_ref()
                .map_or(now_millis, super::retrieval::arrival_millis),
            encryption: r.encryption_type,
            sequence: r.sequence_number.into(),
            partition_key: r.partition_key.unwrap_or_default(),
            done_up_to,
        });
        datas.push(r.data.into_inner());
    }
    // Records delivered whole: (index in `records`, index in `datas`), their data moved
    // in once the unpacked aggregates no longer borrow `datas`.
    let mut whole = Vec::new();
    for (i, (head, unpacked)) in heads
        .iter_mut()
        .zip(agg::deaggregate_many(&datas))
        .enumerate()
    {
        match unpacked {
            Deaggregated::Aggregate(users) => {
                for u in users {
                    if head.done_up_to.is_some_and(|d| u.sub_sequence <= d) {
                        continue;
                    }
                    metas.push(Meta {
                        sequence: head.sequence.clone(),
                        sub: Some(u.sub_sequence),
                        encryption: head.encryption.clone(),
                        bytes: receive_queue::record_bytes(u.partition_key, u.data),
                    });
                    records.push(SourceRecord {
                        partition_key: u.partition_key.to_string(),
                        arrival_millis: head.arrival,
                        data: u.data.to_vec(),
                    });
                }
                continue;
            }
            Deaggregated::Corrupt { reason, .. } => {
                // As the KCL does: deliver it whole, and say so.
                metrics.corrupt_aggregate();
                tracing::warn!(%shard, sequence = %head.sequence, %reason,
                        "record has the KPL aggregate magic but cannot be read; delivering it whole");
            }
            Deaggregated::Plain(_) => {}
        }
        if head.done_up_to.is_some() {
            continue;
        }
        let partition_key = std::mem::take(&mut head.partition_key);
        metas.push(Meta {
            sequence: head.sequence.clone(),
            sub: None,
            encryption: head.encryption.take(),
            bytes: receive_queue::record_bytes(&partition_key, &datas[i]),
        });
        whole.push((records.len(), i));
        records.push(SourceRecord {
            partition_key,
            arrival_millis: head.arrival,
            data: Vec::new(),
        });
    }
    for (record, data) in whole {
        records[record].data = std::mem::take(&mut datas[data]);
    }
    (records, metas)
}

/// The deliveries of one batch bound for one target.
struct Group<'a> {
    target: Target,
    /// The record of each delivery (a record with several deliveries here is listed as
    /// often).
    ids: Vec<RecordId>,
    deliveries: Vec<Delivery<'a>>,
}

impl<'a> Group<'a> {
    fn add(
        &mut self,
        id: RecordId,
        record: RecordContext<'a>,
        event: Event,
        extra: Vec<(&'static str, String)>,
    ) {
        self.ids.push(id);
        self.deliveries.push(Delivery {
            record,
            event,
            extra,
        });
    }
}

/// The index of `target`'s group, added if it has none yet.
fn group_of(groups: &mut Vec<Group<'_>>, target: Target) -> usize {
    if let Some(g) = groups.iter().position(|g| g.target == target) {
        return g;
    }
    groups.push(Group {
        target,
        ids: Vec::new(),
        deliveries: Vec::new(),
    });
    groups.len() - 1
}

fn same_destination(a: &Destination, b: &Destination) -> bool {
    a.sink == b.sink
        && a.topic == b.topic
        && a.partition_key == b.partition_key
        && a.explicit_hash_key == b.explicit_hash_key
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn config(sinks: &str) -> Config {
        let default = sinks.split_once(':').map_or("", |(name, _)| name.trim());
        let yaml = format!(
            "application: app\ndefault_sink: {default}\nsource:\n  stream: orders\nsinks:\n{sinks}"
        );
        Config::from_yaml(&yaml, "test.yaml", PathBuf::from(".")).expect("config parses")
    }

    const PULSAR: &str = "  main:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: out\n      send_timeout: 10s\n";

    #[test]
    fn the_drain_waits_as_long_as_the_slowest_sink_may_take_to_answer() {
        let kinesis = "  copy:\n    kinesis:\n      stream: copy\n      record_ttl: 2s\n";
        assert_eq!(drain_timeout(&config(kinesis)), Duration::from_secs(7));
        assert_eq!(
            drain_timeout(&config(&format!("{PULSAR}{kinesis}"))),
            Duration::from_secs(15)
        );
        let slow_kinesis = kinesis.replace("2s", "90s");
        assert_eq!(
            drain_timeout(&config(&format!("{PULSAR}{slow_kinesis}"))),
            Duration::from_secs(95)
        );
    }

    #[test]
    fn a_corrupt_aggregate_is_delivered_whole_and_counted() {
        let mut data = crate::agg::MAGIC.to_vec();
        data.extend_from_slice(b"not an aggregate: no protobuf, no digest");
        let record = aws_sdk_kinesis::types::Record::builder()
            .sequence_number("1")
            .partition_key("k")
            .data(aws_smithy_types::Blob::new(data.clone()))
            .build()
            .expect("a record");
        let (stream, shard) = ("corrupt-aggregates", "shardId-000000000007");
        let metrics = crate::consumer::metrics::ShardMetrics::new(stream, shard, &config(PULSAR));
        let (records, metas) = unpack(vec![record], &mut None, shard, &metrics);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].data, data);
        assert_eq!(metas[0].sub, None);

        let counted: Vec<i64> = crate::metrics::global()
            .series()
            .iter()
            .filter(|s| s.def.name == "CorruptAggregates")
            .filter(|s| s.dims.iter().any(|(_, v)| v == stream))
            .map(|s| s.scalar())
            .collect();
        assert_eq!(counted, [1]);
    }

    #[test]
    fn a_poisoned_tracker_stops_the_shard_instead_of_reading_as_empty() {
        let queue = Arc::new(WorkerQueue::new(1 << 20));
        let flow = Arc::new(Flow::new(
            "shardId-000000000000",
            Arc::default(),
            queue.clone(),
        ));
        let mut reservation = queue.reserve(1024).expect("room in the queue");
        let sequence: Arc<str> =
            Arc::from("49590338271490256608559692538361571095921575989136588898");
        let id = flow
            .push(&sequence, 0, 1, 100, &mut reservation)
            .expect("tracker usable");
        assert_eq!(flow.in_flight().expect("tracker usable"), 1);

        // A panic while the tracker is held, in the middle of an update.
        let f = flow.clone();
        let panicked = std::thread::spawn(move || {
            let _held = f.tracker.lock();
            panic!("in the middle of an update");
        })
        .join();
        assert!(panicked.is_err());

        // Nothing is read from it as if it were empty: no 0 in flight, no checkpoint.
        assert!(matches!(
            flow.in_flight(),
            Err(ShardError::TrackerPoisoned(_))
        ));
        assert!(flow.held_bytes().is_err());
        assert!(flow.checkpointable().is_err());
        assert!(flow.push(&sequence, 1, 1, 100, &mut reservation).is_err());
        // An acknowledgement arriving now fails the pass instead of vanishing.
        flow.ack_all(&[id]);
        assert!(matches!(flow.failure(), Some(FlowFailure::TrackerPoisoned)));
    }
}
