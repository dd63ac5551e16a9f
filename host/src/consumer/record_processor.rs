//! The record processor (the KCL's `ShardRecordProcessor`, built in): what a shard
//! consumer does with one fetched batch. It unpacks KPL aggregates, runs the Wasm stages on
//! a blocking thread, routes every event to its target, applies the error policy to the
//! records that failed (skip, dead letter, or stop), and hands the deliveries to the sinks
//! target by target, each record registered in the [in-flight tracker](super::in_flight)
//! so that its receipts acknowledge it.

use std::sync::Arc;

use super::deaggregation::{unpack, Meta};
use super::in_flight::{Flow, FlowFailure, TrackerPoisoned};
use super::metrics::ShardMetrics;
use super::receive_queue::{RecordSize, Reservation};
use super::retrieval::Fetched;
use crate::config::{Config, ErrorPolicy, StageKind};
use crate::sinks::sequence::ShardSequence;
use crate::sinks::{Delivery, Numbered, RecordContext, Sinks, Target};
use crate::wasm::bindings::{BatchContext, Destination, Event, Output, SourceRecord};
use crate::wasm::reload::Plans;
use crate::wasm::{BatchOutcome, FailureKind, RecordFailure, StageSet, WasmError};

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

/// Why a batch could not be processed; each stops the shard (and the worker).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A record failed and its error policy stops the worker.
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("stage thread panicked: {0}")]
    StageThread(String),
    #[error("stage instances are gone after an earlier failure")]
    StagesGone,
    #[error(transparent)]
    TrackerPoisoned(#[from] TrackerPoisoned),
}

/// The stage instances of one shard, and the plan generation they came from. Owned by
/// the shard's task apart from its [`RecordProcessor`]: a `StageSet` may move between
/// threads but not be shared, and the processor is shared across awaits.
pub(super) struct Stages {
    /// `None` only after a stage thread panicked with them.
    set: Option<StageSet>,
    generation: u64,
}

impl Stages {
    /// Instantiates the components in use.
    pub(super) fn new(plans: &Plans) -> Result<Self, WasmError> {
        let (generation, plan) = plans.current();
        Ok(Self {
            set: Some(plan.instantiate()?),
            generation,
        })
    }

    /// Whether components were reloaded since these were instantiated.
    pub(super) fn reload_pending(&self, plans: &Plans) -> bool {
        plans.newer_than(self.generation).is_some()
    }

    /// Before a batch: when components were reloaded, instantiates the new version, so the
    /// whole batch runs on it. If that fails here, the running instances stay.
    fn refresh(&mut self, plans: &Plans, shard: &str) {
        let Some((generation, plan)) = plans.newer_than(self.generation) else {
            return;
        };
        self.generation = generation;
        match plan.instantiate() {
            Ok(set) => {
                tracing::info!(%shard, generation, "reloaded components in use from this batch");
                self.set = Some(set);
            }
            Err(e) => tracing::error!(%shard, generation, error = %e,
                "cannot instantiate the reloaded components; this shard keeps the running version"),
        }
    }
}

/// The record processor of one shard.
pub(super) struct RecordProcessor {
    config: Arc<Config>,
    sinks: Arc<Sinks>,
    plans: Arc<Plans>,
    metrics: ShardMetrics,
    stream: String,
    shard: String,
    /// Recent record sizes, to turn the receive queue's byte room into a record count.
    record_size: RecordSize,
    /// The shard's output sequence: every delivery is numbered in it.
    sequence: Arc<ShardSequence>,
}

impl RecordProcessor {
    pub(super) fn new(
        config: Arc<Config>,
        sinks: Arc<Sinks>,
        plans: Arc<Plans>,
        stream: &str,
        shard: &str,
        sequence: Arc<ShardSequence>,
    ) -> Self {
        Self {
            metrics: ShardMetrics::new(stream, shard, &config),
            sequence,
            config,
            sinks,
            plans,
            stream: stream.to_string(),
            shard: shard.to_string(),
            record_size: RecordSize::default(),
        }
    }

    pub(super) fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }

    pub(super) fn record_size(&self) -> &RecordSize {
        &self.record_size
    }

    fn config(&self) -> &Config {
        &self.config
    }

    /// The component that chose destinations (the pipeline's or the route stage's), as
    /// the stage plan names it.
    fn router_name(&self) -> String {
        let s = &self.config().stages;
        [StageKind::Pipeline, StageKind::Route]
            .into_iter()
            .find_map(|k| s.get(k))
            .and_then(|c| c.component.file_stem())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "router".into())
    }

    /// Runs the stages over one batch and enqueues its deliveries. `Err` stops the shard
    /// (error policy `fail`, or the stages or the tracker are unusable); delivery problems
    /// are reported through `flow`.
    pub(super) async fn deliver(
        &mut self,
        stages: &mut Stages,
        flow: &Arc<Flow>,
        fetched: Fetched,
        skip: &mut Option<(String, u64)>,
        reservation: &mut Reservation,
        reload: bool,
    ) -> Result<(), ProcessError> {
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
        if reload {
            stages.refresh(&self.plans, &self.shard);
        }
        let started = std::time::Instant::now();
        let (outcome, records) = self.run_stages(stages, &ctx, records).await?;
        self.metrics.staged(records.len(), &outcome, started);
        self.dispatch(flow, &ctx, &records, &metas, outcome, reservation)
            .await
    }

    /// The stages over `records`, on a blocking thread: a guest call is synchronous CPU
    /// work. Under a `fail` policy nothing past the first record that fails is run.
    async fn run_stages(
        &self,
        stages: &mut Stages,
        ctx: &BatchContext,
        records: Vec<SourceRecord>,
    ) -> Result<(BatchOutcome, Vec<SourceRecord>), ProcessError> {
        let Some(mut set) = stages.set.take() else {
            return Err(ProcessError::StagesGone);
        };
        let cfg = self.config.clone();
        let ctx = ctx.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let stop = |f: &RecordFailure| cfg.error_policy(f.stage).0 == ErrorPolicy::Fail;
            let o = set.run_until(&ctx, &records, &stop);
            (set, o, records)
        })
        .await;
        match joined {
            Ok((set, outcome, records)) => {
                stages.set = Some(set);
                Ok((outcome, records))
            }
            Err(e) => Err(ProcessError::StageThread(e.to_string())),
        }
    }

    /// Routes every record's events to their targets, applies the error policy to the
    /// records that failed, and sends the batch's deliveries target by target. Under a
    /// `fail` policy what came before the failed record is still delivered (and may be
    /// checkpointed); nothing after it is.
    async fn dispatch(
        &self,
        flow: &Arc<Flow>,
        ctx: &BatchContext,
        records: &[SourceRecord],
        metas: &[Meta],
        outcome: BatchOutcome,
        reservation: &mut Reservation,
    ) -> Result<(), ProcessError> {
        let mut outputs = outcome.outputs.into_iter().peekable();
        let mut failures = outcome.failures.into_iter().peekable();
        let mut batch = Groups::default();
        // Every event of the current record: (group, event).
        let mut sends: Vec<(usize, Event)> = Vec::new();
        let mut fatal = None;
        for (i, (rec, meta)) in records.iter().zip(metas).enumerate() {
            let i = i as u32;
            let rc = self.record_context(ctx, rec, meta);
            while failures.next_if(|f| f.index < i).is_some() {}
            let mut failure = failures.next_if(|f| f.index == i);
            sends.clear();
            while let Some(o) = outputs.next_if(|o| o.index <= i) {
                if o.index < i || failure.is_some() {
                    continue;
                }
                if let Err(f) = self.route(&mut batch, rec, o, &mut sends) {
                    failure = Some(f);
                }
            }
            let done = match failure {
                Some(f) => {
                    let record = InBatch {
                        source: rec,
                        meta,
                        context: rc,
                    };
                    self.on_failure(flow, &mut batch, reservation, f, record)
                }
                None => flow
                    .push(
                        &meta.sequence,
                        meta.sub.unwrap_or(0),
                        sends.len() as u32,
                        meta.bytes,
                        reservation,
                    )
                    .map(|(id, first)| {
                        for (number, (g, event)) in (first..).zip(sends.drain(..)) {
                            let number = self.numbered(number);
                            batch.groups[g].add(id, rc, event, Vec::new(), number);
                        }
                    })
                    .map_err(ProcessError::from),
            };
            if let Err(e) = done {
                fatal = Some(e);
                break;
            }
        }
        self.send(flow, batch.groups).await;
        fatal.map_or(Ok(()), Err)
    }

    /// Event `number` of this shard's output sequence.
    fn numbered(&self, number: u64) -> Numbered<'_> {
        Numbered {
            sequence: &self.sequence,
            number,
        }
    }

    /// What a sink knows of `rec`.
    fn record_context<'a>(
        &'a self,
        ctx: &BatchContext,
        rec: &'a SourceRecord,
        meta: &'a Meta,
    ) -> RecordContext<'a> {
        RecordContext {
            stream: &self.stream,
            shard_id: &self.shard,
            partition_key: &rec.partition_key,
            sequence_number: &meta.sequence,
            sub_sequence_number: meta.sub,
            arrival_millis: rec.arrival_millis,
            encryption_type: meta.encryption.as_ref().map(|e| e.as_str()),
            millis_behind_latest: ctx.millis_behind_latest.map(|m| m as i64),
        }
    }

    /// Resolves the destinations of one output (the sink's default when it names none)
    /// and checks that each target takes its event; the events go to `sends` as (group,
    /// event). `Err` is the record's failure, in the route stage.
    fn route(
        &self,
        batch: &mut Groups<'_>,
        rec: &SourceRecord,
        output: Output,
        sends: &mut Vec<(usize, Event)>,
    ) -> Result<(), RecordFailure> {
        let sinks = &self.sinks;
        let default_destination = Destination {
            sink: None,
            topic: None,
            partition_key: None,
            explicit_hash_key: None,
        };
        let dests = if output.destinations.is_empty() {
            std::slice::from_ref(&default_destination)
        } else {
            &output.destinations[..]
        };
        let mut event = Some(output.event);
        for (k, d) in dests.iter().enumerate() {
            let ev = if k + 1 == dests.len() {
                event.take()
            } else {
                event.clone()
            };
            // The destination must resolve, and its sink take this event.
            let sent = batch.group_for(sinks, d).and_then(|g| {
                let Some(mut ev) = ev else { return Ok(()) };
                if let Some(key) = &d.partition_key {
                    ev.key = Some(key.clone());
                }
                sinks
                    .admit(&batch.groups[g].target, &ev, &rec.partition_key)
                    .map_err(|reason| (FailureKind::Sink, reason))?;
                sends.push((g, ev));
                Ok(())
            });
            if let Err((kind, reason)) = sent {
                return Err(RecordFailure {
                    index: output.index,
                    stage: StageKind::Route,
                    component: self.router_name(),
                    kind,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Applies the error policy to a failed record: skip it (acknowledged at once), send
    /// it to the dead-letter target, or stop (`Err`).
    fn on_failure<'a>(
        &'a self,
        flow: &Flow,
        batch: &mut Groups<'a>,
        reservation: &mut Reservation,
        f: RecordFailure,
        record: InBatch<'a>,
    ) -> Result<(), ProcessError> {
        let InBatch {
            source: rec,
            meta,
            context: rc,
        } = record;
        let what = format!(
            "record {} (partition key {:?}) of stream {} shard {} failed in stage {} of component {} ({}): {}",
            meta.sequence, rec.partition_key, self.stream, self.shard,
            f.stage, f.component, f.kind.as_str(), f.reason
        );
        let (policy, key) = self.config().error_policy(f.stage);
        let sub = meta.sub.unwrap_or(0);
        match policy {
            ErrorPolicy::Fail => {
                tracing::error!("{what}; {key} is fail: stopping without checkpointing past it");
                Err(RecordError::Failed { record: what }.into())
            }
            ErrorPolicy::Skip => {
                tracing::warn!("{what}; {key} is skip: record skipped");
                flow.push(&meta.sequence, sub, 0, meta.bytes, reservation)?;
                Ok(())
            }
            ErrorPolicy::DeadLetter => {
                let target = self.dead_letter_target().map_err(|reason| match reason {
                    None => RecordError::Failed {
                        record: what.clone(),
                    },
                    Some(reason) => RecordError::DeadLetterRefused {
                        record: what.clone(),
                        reason,
                    },
                })?;
                let dl = self.sinks.dead_letter(&target, &f, &rc, &rec.data);
                let dl = dl.ok_or_else(|| RecordError::DeadLetterRefused {
                    record: what.clone(),
                    reason: format!("sink {} is not configured", target.sink),
                })?;
                self.metrics.dead_lettered();
                tracing::warn!(
                    "{what}; {key} is dead_letter: sent to {} of sink {}",
                    target.topic,
                    target.sink
                );
                let (id, number) = flow.push(&meta.sequence, sub, 1, meta.bytes, reservation)?;
                let g = batch.group_of(target);
                let number = self.numbered(number);
                batch.groups[g].add(id, rc, dl.event, dl.extra, number);
                Ok(())
            }
        }
    }

    /// The dead-letter target; `Err(None)` when none is configured, `Err(Some(why))` when
    /// it cannot be used now.
    fn dead_letter_target(&self) -> Result<Target, Option<String>> {
        let dl = self.config().errors.dead_letter.as_ref().ok_or(None)?;
        let dest = Destination {
            sink: dl.sink.clone(),
            topic: Some(dl.topic.clone()),
            partition_key: None,
            explicit_hash_key: None,
        };
        let sinks = &self.sinks;
        let target = sinks.resolve(&dest).map_err(Some)?;
        match sinks.refusal(&target) {
            None => Ok(target),
            Some(why) => Err(Some(why)),
        }
    }

    /// Hands each group to its sink; its [`Acks`](crate::sinks::Acks) acknowledge its records
    /// when they resolve.
    /// A send that fails fails the flow (the shard rewinds; later groups are read and sent
    /// again).
    async fn send(&self, flow: &Arc<Flow>, groups: Vec<Group<'_>>) {
        for g in groups {
            match self.sinks.send_all(&g.target, g.deliveries).await {
                Ok(acks) => flow.await_acks(acks, g.ids),
                Err(e) => {
                    flow.fail(FlowFailure::Sink(e));
                    break;
                }
            }
        }
    }
}

/// One record of the batch being dispatched: what the stages saw, what the host kept of
/// it, and what a sink is told of it.
#[derive(Clone, Copy)]
struct InBatch<'a> {
    source: &'a SourceRecord,
    meta: &'a Meta,
    context: RecordContext<'a>,
}

/// The batch's deliveries by target, each in record order; sent after every record was
/// dispatched.
#[derive(Default)]
struct Groups<'a> {
    groups: Vec<Group<'a>>,
    /// The destination resolved last and its group: most batches go to one place.
    last: Option<(Destination, usize)>,
}

impl<'a> Groups<'a> {
    /// The group of destination `d`, resolved (and checked not refused) unless it is the
    /// one resolved last. `Err` is (failure kind, reason).
    fn group_for(
        &mut self,
        sinks: &Sinks,
        d: &Destination,
    ) -> Result<usize, (FailureKind, String)> {
        if let Some((prev, g)) = &self.last {
            if same_destination(prev, d) {
                return Ok(*g);
            }
        }
        let target = sinks
            .resolve(d)
            .map_err(|reason| (FailureKind::Contract, reason))?;
        if let Some(why) = sinks.refusal(&target) {
            return Err((FailureKind::Sink, why));
        }
        let g = self.group_of(target);
        self.last = Some((d.clone(), g));
        Ok(g)
    }

    /// The index of `target`'s group, added if it has none yet.
    fn group_of(&mut self, target: Target) -> usize {
        if let Some(g) = self.groups.iter().position(|g| g.target == target) {
            return g;
        }
        self.groups.push(Group {
            target,
            ids: Vec::new(),
            deliveries: Vec::new(),
        });
        self.groups.len() - 1
    }
}

/// The deliveries of one batch bound for one target.
struct Group<'a> {
    target: Target,
    /// The record of each delivery (a record with several deliveries here is listed as
    /// often).
    ids: Vec<super::checkpoint::RecordId>,
    deliveries: Vec<Delivery<'a>>,
}

impl<'a> Group<'a> {
    fn add(
        &mut self,
        id: super::checkpoint::RecordId,
        record: RecordContext<'a>,
        event: Event,
        extra: Vec<(&'static str, String)>,
        number: Numbered<'a>,
    ) {
        self.ids.push(id);
        self.deliveries.push(Delivery {
            record,
            event,
            extra,
            number,
        });
    }
}

fn same_destination(a: &Destination, b: &Destination) -> bool {
    a.sink == b.sink
        && a.topic == b.topic
        && a.partition_key == b.partition_key
        && a.explicit_hash_key == b.explicit_hash_key
}
