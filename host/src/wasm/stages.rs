//! The stage set of one shard consumer: deserialize → transform → route, either as one
//! `processor` call or as separate stage calls with built-in defaults for missing stages.

use std::sync::Arc;

use super::bindings::{BatchContext, Destination, Event, Output, SourceRecord, Stage};
use super::component::ComponentInfo;
use super::error::WasmError;
use super::export::Export;
use super::grants::Grants;
use super::instance::{CallError, Instance};
use super::WasmEngine;
use crate::config::{Config, StageConfig, StageKind};

/// How a record failed in a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest refused it and said why.
    Rejected,
    /// The guest trapped (panic, unreachable, …) while handling it.
    Trap,
    /// The call ran past `wasm.call_timeout`.
    Timeout,
    /// The instance hit `wasm.memory_limit`.
    Memory,
    /// The guest returned something the WIT contract does not allow.
    Contract,
    /// The sink cannot take it: its target failed with an error no retry can fix (a
    /// missing namespace or stream, access refused), or the event is larger than it takes.
    Sink,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Rejected => "rejected",
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Contract => "contract",
            FailureKind::Sink => "sink",
        }
    }
}

/// One source record that did not make it through the stages.
#[derive(Debug, Clone)]
pub struct RecordFailure {
    /// Position in the batch.
    pub index: u32,
    /// The stage that failed, or `Pipeline` when a fused `processor` call failed as a
    /// whole (the stage cannot be known then).
    pub stage: StageKind,
    pub component: String,
    pub kind: FailureKind,
    pub reason: String,
}

/// What the stages made of a batch. Every record is in `outputs` (any number of times), in
/// `failures`, or in neither (filtered out by a transform on purpose). Both lists are in
/// record order.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub outputs: Vec<Output>,
    pub failures: Vec<RecordFailure>,
}

/// The stage a pipeline component says a record failed in.
pub fn stage_kind(s: Stage) -> StageKind {
    match s {
        Stage::Deserialize => StageKind::Deserialize,
        Stage::Transform => StageKind::Transform,
        Stage::Route => StageKind::Route,
    }
}

/// The loaded components of a config, shared by every shard; each shard instantiates its
/// own [`StageSet`] from it.
#[derive(Debug, Clone)]
pub struct StagePlan {
    pipeline: Option<Slot>,
    deserialize: Option<Slot>,
    transform: Option<Slot>,
    route: Option<Slot>,
}

#[derive(Debug, Clone)]
struct Slot {
    info: Arc<ComponentInfo>,
    settings: Arc<Vec<(String, String)>>,
    grants: Arc<Grants>,
}

impl StagePlan {
    /// Loads every configured component and checks it exports what its stage needs.
    pub fn load(engine: &WasmEngine, config: &Config) -> Result<Self, WasmError> {
        let slot = |stage: StageKind, c: &Option<StageConfig>, export: Export| {
            c.as_ref()
                .map(|c| {
                    let path = config.resolve(&c.component);
                    let name = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| stage.to_string());
                    let info = engine.load(&path, &name)?;
                    info.require(export, stage.as_str())?;
                    let settings = c
                        .settings
                        .iter()
                        .map(|(k, v)| (k.clone(), v.0.clone()))
                        .collect();
                    let grants = Grants {
                        env: c
                            .grants
                            .env
                            .iter()
                            .map(|(k, v)| (k.clone(), v.0.clone()))
                            .collect(),
                        read_only_dirs: c
                            .grants
                            .read_only_dirs
                            .iter()
                            .map(|d| config.resolve(d))
                            .collect(),
                        clocks: c.grants.clocks,
                        random: c.grants.random,
                    };
                    Ok(Slot {
                        info,
                        settings: Arc::new(settings),
                        grants: Arc::new(grants),
                    })
                })
                .transpose()
        };
        let s = &config.stages;
        Ok(Self {
            pipeline: slot(StageKind::Pipeline, &s.pipeline, Export::Processor)?,
            deserialize: slot(StageKind::Deserialize, &s.deserialize, Export::Deserializer)?,
            transform: slot(StageKind::Transform, &s.transform, Export::Transformer)?,
            route: slot(StageKind::Route, &s.route, Export::Router)?,
        })
    }

    /// Instantiates every component once (for `validate` and for each shard).
    pub fn instantiate(&self) -> Result<StageSet, WasmError> {
        let inst = |s: &Option<Slot>| {
            s.as_ref()
                .map(|s| Instance::new(s.info.clone(), s.settings.clone(), s.grants.clone()))
                .transpose()
        };
        Ok(StageSet {
            pipeline: inst(&self.pipeline)?,
            deserialize: inst(&self.deserialize)?,
            transform: inst(&self.transform)?,
            route: inst(&self.route)?,
        })
    }

    /// Names of the loaded components with what they export, for `validate`.
    pub fn describe(&self) -> Vec<String> {
        StageKind::ALL
            .into_iter()
            .zip([
                &self.pipeline,
                &self.deserialize,
                &self.transform,
                &self.route,
            ])
            .filter_map(|(stage, s)| {
                s.as_ref().map(|s| {
                    format!(
                        "{stage}: {} ({}) exports {}",
                        s.info.name,
                        s.info.path.display(),
                        s.info
                            .exports()
                            .iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect()
    }
}

/// Live instances for one shard consumer. Calls are synchronous: run them on a blocking
/// thread.
pub struct StageSet {
    pipeline: Option<Instance>,
    deserialize: Option<Instance>,
    transform: Option<Instance>,
    route: Option<Instance>,
}

impl std::fmt::Debug for StageSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageSet")
            .field("pipeline", &self.pipeline.as_ref().map(Instance::name))
            .field(
                "deserialize",
                &self.deserialize.as_ref().map(Instance::name),
            )
            .field("transform", &self.transform.as_ref().map(Instance::name))
            .field("route", &self.route.as_ref().map(Instance::name))
            .finish()
    }
}

/// A call that failed as a whole.
struct BatchError {
    stage: StageKind,
    error: CallError,
}

impl StageSet {
    /// Runs the stages over a batch. When a call fails as a whole (trap, timeout, memory),
    /// the batch is retried one record at a time so that only the records that fail are
    /// reported. With `stop_at_first_failure` the retry stops at the first failing record
    /// (the `fail` policy delivers nothing past it anyway).
    pub fn run(
        &mut self,
        ctx: &BatchContext,
        records: &[SourceRecord],
        stop_at_first_failure: bool,
    ) -> BatchOutcome {
        self.run_until(ctx, records, &|_| stop_at_first_failure)
    }

    /// As [`Self::run`], the record-by-record retry stopping at the first failure for
    /// which `stop` says so (a failure whose policy is `fail`).
    pub fn run_until(
        &mut self,
        ctx: &BatchContext,
        records: &[SourceRecord],
        stop: &dyn Fn(&RecordFailure) -> bool,
    ) -> BatchOutcome {
        match self.run_batch(ctx, records) {
            Ok(o) => o,
            Err(e) if records.len() == 1 => BatchOutcome {
                outputs: Vec::new(),
                failures: vec![failure_of(0, e)],
            },
            Err(e) => {
                tracing::warn!(
                    shard = %ctx.shard_id,
                    records = records.len(),
                    error = %e.error,
                    "stage call failed for the whole batch; retrying record by record to isolate the failing records"
                );
                let mut all = BatchOutcome::default();
                for i in 0..records.len() {
                    match self.run_batch(ctx, &records[i..=i]) {
                        Ok(o) => {
                            all.outputs.extend(o.outputs.into_iter().map(|mut out| {
                                out.index = i as u32;
                                out
                            }));
                            let stopped = o.failures.iter().any(stop);
                            all.failures.extend(o.failures.into_iter().map(|mut f| {
                                f.index = i as u32;
                                f
                            }));
                            if stopped {
                                break;
                            }
                        }
                        Err(e) => {
                            let f = failure_of(i as u32, e);
                            let stopped = stop(&f);
                            all.failures.push(f);
                            if stopped {
                                break;
                            }
                        }
                    }
                }
                all
            }
        }
    }

    fn run_batch(
        &mut self,
        ctx: &BatchContext,
        records: &[SourceRecord],
    ) -> Result<BatchOutcome, BatchError> {
        if let Some(p) = &mut self.pipeline {
            return run_processor(p, ctx, records);
        }
        let mut failures = Vec::new();
        let (mut events, mut origin) = match &mut self.deserialize {
            Some(inst) => deserialize(inst, ctx, records, &mut failures)?,
            None => (
                records.iter().map(default_event).collect(),
                (0..records.len() as u32).collect(),
            ),
        };
        if let Some(inst) = &mut self.transform {
            (events, origin) = transform(inst, ctx, &events, &origin, &mut failures)?;
        }
        let destinations = match &mut self.route {
            Some(inst) => route(inst, ctx, &events, &origin, &mut failures)?,
            None => vec![Some(Vec::new()); events.len()],
        };
        Ok(outcome(events, origin, destinations, failures))
    }
}

/// The deserialize stage: one result per record. Returns the events and, for each, the
/// index of its record; rejections go to `failures`.
fn deserialize(
    inst: &mut Instance,
    ctx: &BatchContext,
    records: &[SourceRecord],
    failures: &mut Vec<RecordFailure>,
) -> Result<(Vec<Event>, Vec<u32>), BatchError> {
    let n = records.len();
    let results = inst.deserialize(ctx, records).map_err(|error| BatchError {
        stage: StageKind::Deserialize,
        error,
    })?;
    if results.len() != n {
        return Err(contract(
            inst,
            StageKind::Deserialize,
            format!(
                "deserialize returned {} results for {n} records",
                results.len()
            ),
        ));
    }
    let mut events = Vec::with_capacity(n);
    let mut origin = Vec::with_capacity(n);
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(e) => {
                events.push(e);
                origin.push(i as u32);
            }
            Err(reason) => failures.push(RecordFailure {
                index: i as u32,
                stage: StageKind::Deserialize,
                component: inst.name().to_string(),
                kind: FailureKind::Rejected,
                reason,
            }),
        }
    }
    Ok((events, origin))
}

/// The transform stage: any number of events per input. Returns the new events and the
/// record of each; rejections go to `failures`.
fn transform(
    inst: &mut Instance,
    ctx: &BatchContext,
    events: &[Event],
    origin: &[u32],
    failures: &mut Vec<RecordFailure>,
) -> Result<(Vec<Event>, Vec<u32>), BatchError> {
    let t = inst.transform(ctx, events).map_err(|error| BatchError {
        stage: StageKind::Transform,
        error,
    })?;
    let m = events.len();
    let mut next_events = Vec::with_capacity(t.events.len());
    let mut next_origin = Vec::with_capacity(t.events.len());
    for ie in t.events {
        let Some(&o) = origin.get(ie.index as usize) else {
            return Err(contract(
                inst,
                StageKind::Transform,
                format!("transform returned an event for input {} of {m}", ie.index),
            ));
        };
        next_events.push(ie.event);
        next_origin.push(o);
    }
    for r in t.rejections {
        let Some(&o) = origin.get(r.index as usize) else {
            return Err(contract(
                inst,
                StageKind::Transform,
                format!("transform rejected input {} of {m}", r.index),
            ));
        };
        failures.push(RecordFailure {
            index: o,
            stage: StageKind::Transform,
            component: inst.name().to_string(),
            kind: FailureKind::Rejected,
            reason: r.reason,
        });
    }
    Ok((next_events, next_origin))
}

/// The route stage: one destination list per event (`None` for a rejected one, whose
/// failure goes to `failures`).
fn route(
    inst: &mut Instance,
    ctx: &BatchContext,
    events: &[Event],
    origin: &[u32],
    failures: &mut Vec<RecordFailure>,
) -> Result<Vec<Option<Vec<Destination>>>, BatchError> {
    let results = inst.route(ctx, events).map_err(|error| BatchError {
        stage: StageKind::Route,
        error,
    })?;
    if results.len() != events.len() {
        return Err(contract(
            inst,
            StageKind::Route,
            format!(
                "route returned {} results for {} events",
                results.len(),
                events.len()
            ),
        ));
    }
    Ok(results
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(d) => Some(d),
            Err(reason) => {
                failures.push(RecordFailure {
                    index: origin[i],
                    stage: StageKind::Route,
                    component: inst.name().to_string(),
                    kind: FailureKind::Rejected,
                    reason,
                });
                None
            }
        })
        .collect())
}

/// The outputs of a batch, in record order: a record with a failure anywhere delivers none
/// of its events.
fn outcome(
    events: Vec<Event>,
    origin: Vec<u32>,
    destinations: Vec<Option<Vec<Destination>>>,
    mut failures: Vec<RecordFailure>,
) -> BatchOutcome {
    failures.sort_by_key(|f| f.index);
    let failed = |i: u32| failures.binary_search_by_key(&i, |f| f.index).is_ok();
    let mut outputs: Vec<Output> = events
        .into_iter()
        .zip(origin)
        .zip(destinations)
        .filter_map(|((event, index), d)| {
            let destinations = d?;
            (!failed(index)).then_some(Output {
                index,
                event,
                destinations,
            })
        })
        .collect();
    // A transform may list its events out of input order; the consumer's dispatch walks
    // records and outputs together and would silently drop an output whose record it has
    // passed (found by fuzz/wit_values). Stable: a record's events keep their order.
    outputs.sort_by_key(|o| o.index);
    BatchOutcome { outputs, failures }
}

fn run_processor(
    inst: &mut Instance,
    ctx: &BatchContext,
    records: &[SourceRecord],
) -> Result<BatchOutcome, BatchError> {
    let n = records.len() as u32;
    let p = inst.process(ctx, records).map_err(|error| BatchError {
        stage: StageKind::Pipeline,
        error,
    })?;
    if let Some(bad) = p
        .outputs
        .iter()
        .map(|o| o.index)
        .chain(p.rejections.iter().map(|r| r.index))
        .find(|&i| i >= n)
    {
        return Err(contract(
            inst,
            StageKind::Pipeline,
            format!("process returned index {bad} for a batch of {n} records"),
        ));
    }
    let mut failures: Vec<RecordFailure> = p
        .rejections
        .into_iter()
        .map(|r| RecordFailure {
            index: r.index,
            stage: stage_kind(r.stage),
            component: inst.name().to_string(),
            kind: FailureKind::Rejected,
            reason: r.reason,
        })
        .collect();
    failures.sort_by_key(|f| f.index);
    let failed = |i: u32| failures.binary_search_by_key(&i, |f| f.index).is_ok();
    let mut outputs: Vec<Output> = p.outputs.into_iter().filter(|o| !failed(o.index)).collect();
    outputs.sort_by_key(|o| o.index); // stable: a record's events keep their order
    Ok(BatchOutcome { outputs, failures })
}

/// The default deserializer: the record's bytes as they are, key and time from the record.
fn default_event(r: &SourceRecord) -> Event {
    Event {
        key: None,
        payload: r.data.clone(),
        properties: Vec::new(),
        event_time_millis: None,
    }
}

fn contract(inst: &Instance, stage: StageKind, message: String) -> BatchError {
    BatchError {
        stage,
        error: inst.contract(message),
    }
}

fn failure_of(index: u32, e: BatchError) -> RecordFailure {
    let (component, kind) = match &e.error {
        CallError::Trap { component, .. } => (component.clone(), FailureKind::Trap),
        CallError::Timeout { component, .. } => (component.clone(), FailureKind::Timeout),
        CallError::Memory { component, .. } => (component.clone(), FailureKind::Memory),
        CallError::Contract { component, .. } => (component.clone(), FailureKind::Contract),
    };
    RecordFailure {
        index,
        stage: e.stage,
        component,
        kind,
        reason: e.error.to_string(),
    }
}
