//! Sinks: where events go. A destination names a sink (or the default one), a topic or
//! stream (or the sink's default), and optionally a partition key and a Kinesis explicit
//! hash key. Sends are first enqueued, in order, then their receipt is awaited separately,
//! so many sends are in flight while order per topic is kept.
//!
//! Deliveries are handed over by the batch: every delivery of a fetched batch bound for one
//! target is enqueued in one call, and one [`Acks`] resolves when the last of them is
//! acknowledged. The sinks' clients batch on the wire anyway (Pulsar producer batches, Kinesis
//! PutRecords), so an acknowledgement per message only cost a task, a timer and a wake-up
//! each.
//!
//! Every sink keeps one contract, [`Sink`]: what a destination means on it, whether it
//! takes an event, how a dead letter looks there, how long an acknowledgement may take,
//! and sending a batch to a target. [`Sinks`] holds them by name.

pub mod dead_letter;
pub mod kinesis;
pub mod metrics;
pub mod properties;
pub mod pulsar;
pub mod pulsar_admin;
pub mod sequence;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::config::Config;
use crate::kinesis_limits::MAX_PARTITION_KEY_CHARS;
use crate::wasm::bindings::{Destination, Event};
use crate::wasm::RecordFailure;

/// What a sink knows of the record an event came from.
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    pub stream: &'a str,
    pub shard_id: &'a str,
    pub partition_key: &'a str,
    pub sequence_number: &'a str,
    /// Position inside a KPL aggregate, for user records that came in one.
    pub sub_sequence_number: Option<u64>,
    pub arrival_millis: i64,
    pub encryption_type: Option<&'a str>,
    pub millis_behind_latest: Option<i64>,
}

/// Whether sending again can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// Connection lost, timeout, broker or stream busy: the shard rewinds and sends again.
    Transient,
    /// No retry can fix it (an invalid topic, a namespace, tenant or stream that does not
    /// exist, access refused, a message too large): records bound there follow the error
    /// policy.
    Permanent,
}

/// A send that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("sink {sink}, topic {topic}: {message}")]
pub struct SinkError {
    pub sink: String,
    pub topic: String,
    pub message: String,
    pub kind: SinkErrorKind,
}

/// How long a target that failed permanently is refused without trying it (records bound
/// for it follow the error policy); then one send tries it again, so a namespace created
/// or an access granted meanwhile is noticed.
pub const REFUSAL_RETRY: Duration = Duration::from_secs(60);

/// Targets that failed permanently, with the reason and when.
type Refused = Arc<Mutex<HashMap<(String, String), (String, Instant)>>>;

/// Resolves when the destination acknowledged every message of a send, or with the first
/// failure. (A producer's [`crate::producer::Receipt`] is something else: where one record
/// was stored.)
pub type Acks = BoxFuture<'static, Result<(), SinkError>>;

/// One event of a record, bound for a target.
#[derive(Debug)]
pub struct Delivery<'a> {
    pub record: RecordContext<'a>,
    pub event: Event,
    /// Properties added after the event's own (a dead letter's reason); Pulsar only.
    pub extra: Vec<(&'static str, String)>,
    /// The event's number in its shard's output sequence, for sinks that deduplicate.
    pub number: Numbered<'a>,
}

/// An event's place in its shard's [output sequence](sequence).
#[derive(Debug, Clone, Copy)]
pub struct Numbered<'a> {
    pub sequence: &'a sequence::ShardSequence,
    pub number: u64,
}

/// A failed record as a sink publishes it: the event, and properties added after its own.
#[derive(Debug)]
pub struct DeadLetter {
    pub event: Event,
    pub extra: Vec<(&'static str, String)>,
}

/// The contract every sink keeps.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// What `destination` means on this sink, configured as `name`: its topic or stream
    /// (`default` when it names none) and, where it means something, its explicit hash
    /// key. `Err` says what is invalid.
    fn target(&self, name: &str, destination: &Destination) -> Result<Target, String>;

    /// Whether `topic` can take `event` at all (its size, its key): a record whose event
    /// cannot be sent fails alone, under the error policy, instead of failing its batch.
    /// `record_key` is the source record's partition key (the key when the event has none).
    fn admit(&self, topic: &str, event: &Event, record_key: &str) -> Result<(), String>;

    /// A record that failed in `failure`'s stage, as published to this sink's dead-letter
    /// target ([`dead_letter`]).
    fn dead_letter(
        &self,
        failure: &RecordFailure,
        record: &RecordContext<'_>,
        data: &[u8],
    ) -> DeadLetter;

    /// The longest a send may wait for its acknowledgement.
    fn ack_timeout(&self) -> Duration;

    /// Enqueues events for one target, in order; the [`Acks`] resolves when every one of
    /// them is acknowledged, or with the first failure. `Err` means not all were enqueued
    /// (those before the failure may be in flight; nothing will acknowledge them).
    fn send_all<'a>(
        &'a self,
        target: &'a Target,
        deliveries: Vec<Delivery<'a>>,
    ) -> BoxFuture<'a, Result<Acks, SinkError>>;

    /// Flushes and closes.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Whether sends carry sequence ids the destination deduplicates on.
    fn deduplicates(&self) -> bool {
        false
    }

    /// This worker stopped sending for shard `lease_key` (its lease moved on, or its pass
    /// is read again): what the sink holds for that shard alone is closed, so the next
    /// owner can open it.
    fn release_shard<'a>(&'a self, _lease_key: &'a str) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }
}

/// A destination resolved against the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub sink: String,
    pub topic: String,
    /// Kinesis explicit hash key (checked to be a 128-bit decimal).
    pub explicit_hash_key: Option<String>,
}

/// Every configured sink, by name.
#[derive(Debug)]
pub struct Sinks {
    sinks: HashMap<String, Box<dyn Sink>>,
    default: String,
    refused: Refused,
}

impl Sinks {
    /// Connects every sink; fails naming the sink that cannot be reached.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let mut sinks = HashMap::new();
        for (name, c) in &config.sinks {
            let sink: Box<dyn Sink> = match (&c.pulsar, &c.kinesis) {
                (Some(p), _) => Box::new(pulsar::PulsarSink::connect(name, p).await?),
                (None, Some(k)) => {
                    Box::new(kinesis::KinesisSink::connect(name, k, &config.aws).await?)
                }
                (None, None) => anyhow::bail!("sink {name} has no type"),
            };
            sinks.insert(name.clone(), sink);
        }
        Ok(Self {
            sinks,
            default: config.default_sink_name().to_string(),
            refused: Refused::default(),
        })
    }

    /// What a destination means; `Err` names what is unknown or invalid.
    pub fn resolve(&self, d: &Destination) -> Result<Target, String> {
        let name = d.sink.as_deref().unwrap_or(&self.default);
        let Some((name, sink)) = self.sinks.get_key_value(name) else {
            return Err(format!(
                "route chose sink {name:?}, which is not configured (sinks: {})",
                self.names()
            ));
        };
        if let Some(k) = &d.partition_key {
            let chars = k.chars().count();
            if !(1..=MAX_PARTITION_KEY_CHARS).contains(&chars) {
                return Err(format!(
                    "route chose a partition key of {chars} characters; it must have 1 to \
                     {MAX_PARTITION_KEY_CHARS}"
                ));
            }
        }
        sink.target(name, d)
    }

    /// Whether `target` can take `event` at all ([`Sink::admit`]).
    pub fn admit(&self, target: &Target, event: &Event, record_key: &str) -> Result<(), String> {
        match self.sinks.get(&target.sink) {
            Some(s) => s.admit(&target.topic, event, record_key),
            None => Ok(()),
        }
    }

    /// A failed record as published to `target`'s sink ([`Sink::dead_letter`]).
    pub fn dead_letter(
        &self,
        target: &Target,
        failure: &RecordFailure,
        record: &RecordContext<'_>,
        data: &[u8],
    ) -> Option<DeadLetter> {
        let sink = self.sinks.get(&target.sink)?;
        Some(sink.dead_letter(failure, record, data))
    }

    /// Why `target` is refused, while a permanent failure of it is recent.
    pub fn refusal(&self, target: &Target) -> Option<String> {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused.is_empty() {
            return None;
        }
        let key = (target.sink.clone(), target.topic.clone());
        match refused.get(&key) {
            Some((why, at)) if at.elapsed() < REFUSAL_RETRY => Some(why.clone()),
            Some(_) => {
                refused.remove(&key);
                None
            }
            None => None,
        }
    }

    fn names(&self) -> String {
        let mut v: Vec<_> = self.sinks.keys().cloned().collect();
        v.sort();
        v.join(", ")
    }

    /// Enqueues events for one target, in order; the returned receipt resolves when every
    /// one of them is acknowledged, or with the first failure. `Err` means not all were
    /// enqueued (those before the failure may be in flight; nothing will acknowledge them).
    pub async fn send_all(
        &self,
        target: &Target,
        deliveries: Vec<Delivery<'_>>,
    ) -> Result<Acks, SinkError> {
        let refused = self.refused.clone();
        let sent = self.send_to(target, deliveries).await;
        let sent = sent.inspect_err(|e| refuse(&refused, e));
        Ok(sent?
            .inspect(move |r| {
                if let Err(e) = r {
                    refuse(&refused, e);
                }
            })
            .boxed())
    }

    async fn send_to(
        &self,
        target: &Target,
        deliveries: Vec<Delivery<'_>>,
    ) -> Result<Acks, SinkError> {
        match self.sinks.get(&target.sink) {
            Some(s) => s.send_all(target, deliveries).await,
            None => Err(SinkError {
                sink: target.sink.clone(),
                topic: target.topic.clone(),
                message: "no such sink".into(),
                kind: SinkErrorKind::Permanent,
            }),
        }
    }

    /// Whether any sink deduplicates ([`Sink::deduplicates`]): the consumer then stores
    /// its output sequence with every checkpoint.
    pub fn deduplicates(&self) -> bool {
        self.sinks.values().any(|s| s.deduplicates())
    }

    /// Closes what every sink holds for shard `lease_key` ([`Sink::release_shard`]).
    pub async fn release_shard(&self, lease_key: &str) {
        for s in self.sinks.values() {
            s.release_shard(lease_key).await;
        }
    }

    /// Flushes and closes every sink.
    pub async fn close(&self) {
        for s in self.sinks.values() {
            s.close().await;
        }
    }
}

/// Remembers a permanent failure: the target is refused for [`REFUSAL_RETRY`], so the
/// records bound for it follow the error policy instead of holding their shard.
fn refuse(refused: &Refused, e: &SinkError) {
    if e.kind != SinkErrorKind::Permanent {
        return;
    }
    let why = format!(
        "sink {} cannot publish to {}: {} (a permanent error: no retry can fix it)",
        e.sink, e.topic, e.message
    );
    tracing::warn!(
        sink = %e.sink, topic = %e.topic,
        "{why}; records bound there follow the error policy, and the target is tried again after {REFUSAL_RETRY:?}"
    );
    refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((e.sink.clone(), e.topic.clone()), (why, Instant::now()));
}
