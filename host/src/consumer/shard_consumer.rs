//! The shard consumer: the life of one leased shard, after the KCL's state machine —
//! waiting on parent shards → initializing → processing → shutting down (shard end, lease
//! lost, or requested).
//!
//! Processing is a loop: fetch a batch (respecting backpressure), hand it to the
//! [record processor](super::record_processor), and let receipts acknowledge records as
//! they arrive ([in-flight tracking](super::in_flight)). The checkpoint is written at an
//! interval, at shard end and at shutdown, through the [checkpointer](super::checkpointer),
//! and is always the end of the acknowledged prefix. A failed delivery rewinds the shard
//! to that prefix and reads again (at-least-once); a lost lease stops the shard at once and
//! nothing is checkpointed for it again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::Checkpoint;
use super::checkpointer::{HeldLease, LeaseStore};
use super::in_flight::{Flow, FlowFailure, TrackerPoisoned};
use super::lease_table::{LeaseTable, LeaseTableError};
use super::receive_queue::{Reservation, WorkerQueue};
use super::record_processor::{ProcessError, RecordProcessor, Stages};
use super::retrieval::{
    ConsumerRegistration, FanOutFetcher, FetchError, Fetched, Fetcher, PollingFetcher,
};
use crate::config::{Config, StreamSpec};
use crate::sinks::sequence::{Outputs, ShardSequence, Store};
use crate::sinks::{SinkError, Sinks};
use crate::wasm::reload::Plans;
use crate::wasm::WasmError;

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
    /// The bytes of records every shard of the worker holds.
    pub receive_queue: Arc<WorkerQueue>,
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
    /// A batch could not be processed (a record's error policy is `fail`, among others).
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// Writing `SHARD_END` failed (a conflict is a lost lease, not this).
    #[error(transparent)]
    ShardEndCheckpoint(LeaseTableError),
    #[error(transparent)]
    TrackerPoisoned(#[from] TrackerPoisoned),
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
    let mut stages = match Stages::new(&shared.plans) {
        Ok(s) => s,
        Err(e) => return ShardExit::Failed(ShardError::Instantiate(e)),
    };
    let deduplicates = shared.sinks.deduplicates();
    let store: Option<Arc<dyn Store>> = deduplicates.then(|| {
        Arc::new(LeaseStore {
            lease: lease.clone(),
            table: shared.leases.clone(),
            worker: shared.worker.clone(),
        }) as Arc<dyn Store>
    });
    let sequence = Arc::new(ShardSequence::new(
        &shared.config.application,
        &stream.name,
        &lease.key,
        &lease.outputs(),
        store,
    ));
    let mut consumer = ShardConsumer {
        deduplicates,
        sequence: sequence.clone(),
        processor: RecordProcessor::new(
            shared.config.clone(),
            shared.sinks.clone(),
            shared.plans.clone(),
            &stream.name,
            &shard,
            sequence,
        ),
        shared,
        lease,
        stream: stream.name,
        at_timestamp: stream.at_timestamp,
        fan_out,
        shard,
        shutdown,
    };
    let mut rewinds = 0u32;
    loop {
        let start = consumer.lease.checkpoint();
        tracing::info!(stream = %consumer.stream, shard = %consumer.shard, checkpoint = %start, "processing shard");
        let pass = consumer.process(&mut stages, &start).await;
        // What the sinks hold for this shard goes with the pass: a new owner (or the next
        // pass, from the checkpoint) opens it afresh.
        consumer
            .shared
            .sinks
            .release_shard(&consumer.lease.key)
            .await;
        match pass {
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

/// How one pass over the shard ended.
enum Pass {
    Exit(ShardExit),
    Rewind(SinkError),
}

/// What waiting for a fetch came to.
enum Fetch {
    Batch(Fetched),
    /// Shutdown, a lost lease or a failed delivery came first: look again.
    Interrupted,
    /// Retrieval gave up.
    Failed(FetchError),
    /// A checkpoint due meanwhile found the tracker poisoned.
    Stop(ShardError),
}

/// Room for the next fetch.
struct Room {
    reservation: Reservation,
    records: usize,
}

struct ShardConsumer {
    processor: RecordProcessor,
    /// Whether a sink deduplicates: checkpoints then store the output sequence, and
    /// reloaded components take over only at a checkpoint.
    deduplicates: bool,
    sequence: Arc<ShardSequence>,
    shared: Arc<Shared>,
    lease: Arc<HeldLease>,
    stream: String,
    at_timestamp: Option<SystemTime>,
    /// The stream's fan-out consumer, when it is read with enhanced fan-out.
    fan_out: Option<Arc<ConsumerRegistration>>,
    shard: String,
    shutdown: CancellationToken,
}

impl ShardConsumer {
    fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Retrieval from `start`, by polling or enhanced fan-out as the stream is read.
    fn fetcher(&self, start: &Checkpoint) -> Fetcher {
        let cfg = self.config();
        match &self.fan_out {
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
        }
    }

    /// One pass over the shard from `start`: fetch, process, checkpoint, until the shard
    /// ends, the consumer stops, or a failed delivery asks for a rewind.
    async fn process(&mut self, stages: &mut Stages, start: &Checkpoint) -> Pass {
        let mut fetcher = self.fetcher(start);
        // The iterator starts AT the checkpointed record; skip what of it was done.
        let mut skip = match start {
            Checkpoint::Sequence { sequence, sub } => Some((sequence.clone(), *sub)),
            _ => None,
        };
        let numbered = self.lease.outputs().checkpointed;
        let flow = Arc::new(Flow::new(
            &self.shard,
            self.shared.receive_queue.clone(),
            numbered,
        ));
        let interval = self.config().checkpoint.interval;
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
            let mut room = match self.room(&flow, next_checkpoint).await {
                Ok(Some(room)) => room,
                Ok(None) => continue,
                Err(e) => return Pass::Exit(ShardExit::Failed(e.into())),
            };
            let fetched = match self
                .fetch(&mut fetcher, room.records, &flow, &mut next_checkpoint)
                .await
            {
                Fetch::Batch(f) => f.metered(self.processor.metrics()),
                Fetch::Interrupted => continue,
                Fetch::Stop(e) => return Pass::Exit(ShardExit::Failed(e)),
                Fetch::Failed(e) => {
                    tracing::error!(error = %e, "retrieval failed");
                    let exit = ShardExit::Failed(ShardError::Fetch(e));
                    return Pass::Exit(self.finish(&flow, exit).await);
                }
            };
            let (shard_end, children) = (fetched.shard_end, fetched.child_shards.clone());
            let delivered = if fetched.records.is_empty() {
                Ok(())
            } else {
                let reload_pending = stages.reload_pending(&self.shared.plans);
                let reload = self.reload_allowed(reload_pending, &flow).await;
                let reservation = &mut room.reservation;
                self.processor
                    .deliver(stages, &flow, fetched, &mut skip, reservation, reload)
                    .await
            };
            // What the batch did not take goes back before anything waits.
            drop(room);
            if let Err(fatal) = delivered {
                return Pass::Exit(self.finish(&flow, ShardExit::Failed(fatal.into())).await);
            }
            if shard_end {
                return self.end_of_shard(&flow, &children).await;
            }
        }
    }

    /// Backpressure (the receive queue): at most `receive_queue_size` records and
    /// `receive_queue_bytes` of this shard, and `max_in_flight_bytes` of the whole worker,
    /// fetched and not yet acknowledged. A fetch reserves its bytes of the worker's queue
    /// first and asks for no more records than fit in them at the recent record size.
    /// Without room, waits for a change (or the next checkpoint) and answers `None`.
    async fn room(
        &self,
        flow: &Flow,
        next_checkpoint: Instant,
    ) -> Result<Option<Room>, TrackerPoisoned> {
        let source = &self.config().source;
        let queue = self.shared.receive_queue.clone();
        // Created before the reservation is tried, so a release in between still wakes it.
        let worker_below_limit = queue.below_limit();
        let records_room = source.receive_queue_size.saturating_sub(flow.in_flight()?);
        let shard_bytes_room = source
            .receive_queue_bytes
            .saturating_sub(flow.held_bytes()?);
        let record_size = self.processor.record_size();
        let reservation = (records_room > 0 && shard_bytes_room > 0)
            .then(|| {
                let want = shard_bytes_room
                    .min(queue.fair_share())
                    .min(record_size.fetch_bytes());
                queue.reserve(want)
            })
            .flatten();
        let Some(reservation) = reservation else {
            let worker_full = records_room > 0 && shard_bytes_room > 0;
            tokio::select! {
                _ = flow.changed.notified() => {}
                _ = worker_below_limit, if worker_full => {}
                _ = tokio::time::sleep_until(next_checkpoint) => {}
                _ = self.shutdown.cancelled() => {}
                _ = self.lease.lost.cancelled() => {}
            }
            return Ok(None);
        };
        let records = record_size.limit(records_room, reservation.bytes());
        Ok(Some(Room {
            reservation,
            records,
        }))
    }

    /// The next batch of at most `limit` records. The fetch is kept (not restarted) while
    /// checkpoints fall due: a fan-out subscription may deliver nothing for seconds, and
    /// the acknowledged prefix must still be written on time.
    async fn fetch(
        &self,
        fetcher: &mut Fetcher,
        limit: usize,
        flow: &Flow,
        next_checkpoint: &mut Instant,
    ) -> Fetch {
        let interval = self.config().checkpoint.interval;
        let fetch = fetcher.fetch(limit);
        tokio::pin!(fetch);
        loop {
            tokio::select! {
                r = &mut fetch => return match r {
                    Ok(f) => Fetch::Batch(f),
                    Err(e) => Fetch::Failed(e),
                },
                _ = self.shutdown.cancelled() => return Fetch::Interrupted,
                _ = self.lease.lost.cancelled() => return Fetch::Interrupted,
                _ = flow.changed.notified(), if flow.failure().is_some() => return Fetch::Interrupted,
                _ = tokio::time::sleep_until(*next_checkpoint) => {
                    if let Err(e) = self.checkpoint(flow).await {
                        return Fetch::Stop(e);
                    }
                    *next_checkpoint = Instant::now() + interval;
                }
            }
        }
    }

    /// Shard end: waits for every delivery, then records SHARD_END with the child shards.
    async fn end_of_shard(&self, flow: &Arc<Flow>, children: &[String]) -> Pass {
        self.drain(flow).await;
        if flow.failure().is_some() {
            return self.rewind(flow).await;
        }
        if self.lease.lost.is_cancelled() {
            return Pass::Exit(ShardExit::LeaseLost);
        }
        match flow.in_flight() {
            Ok(0) => {}
            // Shutdown cut the drain short.
            Ok(_) => return Pass::Exit(self.finish(flow, ShardExit::Shutdown).await),
            Err(e) => return Pass::Exit(ShardExit::Failed(e.into())),
        }
        let r = self
            .lease
            .write_checkpoint_with_children(
                &self.shared.leases,
                &self.shared.worker,
                &Checkpoint::ShardEnd,
                children,
            )
            .await;
        Pass::Exit(match r {
            Ok(()) => {
                tracing::info!(shard = %self.shard, children = %children.join(","), "shard end reached and checkpointed");
                ShardExit::ShardEnd
            }
            Err(LeaseTableError::Conflict(_)) => ShardExit::LeaseLost,
            Err(e) => ShardExit::Failed(ShardError::ShardEndCheckpoint(e)),
        })
    }

    /// After a failed send: waits for deliveries in flight (bounded), checkpoints what was
    /// acknowledged, and reads again from there; a poisoned tracker stops the shard.
    async fn rewind(&self, flow: &Arc<Flow>) -> Pass {
        self.drain(flow).await;
        if let Err(e) = self.checkpoint(flow).await {
            return Pass::Exit(ShardExit::Failed(e));
        }
        match flow.failure() {
            Some(FlowFailure::Sink(e)) => Pass::Rewind(e.clone()),
            Some(FlowFailure::TrackerPoisoned) | None => Pass::Exit(ShardExit::Failed(
                ShardError::TrackerPoisoned(TrackerPoisoned {
                    shard: self.shard.clone(),
                }),
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

    /// Whether reloaded components may take over from the next batch. With deduplication a
    /// replay must number its events as the first run did, so a new version starts only
    /// at a checkpoint: everything before it acknowledged and checkpointed first.
    async fn reload_allowed(&self, reload_pending: bool, flow: &Arc<Flow>) -> bool {
        if !self.deduplicates || !reload_pending {
            return true;
        }
        self.drain(flow).await;
        if !matches!(flow.in_flight(), Ok(0)) || self.checkpoint(flow).await.is_err() {
            return false;
        }
        let at_checkpoint = flow
            .checkpointable()
            .ok()
            .flatten()
            .is_none_or(|(cp, ..)| cp == self.lease.checkpoint());
        if !at_checkpoint {
            tracing::info!(shard = %self.shard, "components were reloaded; the new version takes over once a checkpoint is written");
        }
        at_checkpoint
    }

    /// Writes the acknowledged prefix if it moved (with the output sequence when a sink
    /// deduplicates). A failed write is retried at the next checkpoint; `Err` (a poisoned
    /// tracker) stops the shard.
    async fn checkpoint(&self, flow: &Flow) -> Result<(), ShardError> {
        let Some((cp, upto, numbered)) = flow.checkpointable()? else {
            return Ok(());
        };
        if cp == self.lease.checkpoint() || self.lease.lost.is_cancelled() {
            return Ok(());
        }
        // A reservation written meanwhile is not undone by this write.
        let _writing = self.sequence.writing().await;
        let outputs: Option<Outputs> = self
            .deduplicates
            .then(|| self.sequence.to_store(upto, numbered));
        match self
            .lease
            .write_checkpoint(&self.shared.leases, &self.shared.worker, &cp, outputs)
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
}
