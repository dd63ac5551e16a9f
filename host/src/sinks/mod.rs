//! Sinks: where events go. A destination names a sink (or the default one), a topic or
//! stream (or the sink's default), and optionally a partition key and a Kinesis explicit
//! hash key. Sends are first enqueued, in order, then their receipt is awaited separately,
//! so many sends are in flight while order per topic is kept.
//!
//! Deliveries are handed over by the batch: every delivery of a fetched batch bound for one
//! target is enqueued in one call, and one receipt resolves when the last of them is
//! acknowledged. The sinks' clients batch on the wire anyway (Pulsar producer batches, Kinesis
//! PutRecords), so a receipt per message only cost a task, a timer and a wake-up each.

pub mod kinesis;
pub mod pulsar;

use std::collections::HashMap;

use futures::future::BoxFuture;

use crate::config::Config;
use crate::wasm::bindings::{Destination, Event};

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

/// A send that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("sink {sink}, topic {topic}: {message}")]
pub struct SinkError {
    pub sink: String,
    pub topic: String,
    pub message: String,
}

/// Resolves when the destination acknowledged every message of a send.
pub type Receipt = BoxFuture<'static, Result<(), SinkError>>;

/// One event of a record, bound for a target.
#[derive(Debug)]
pub struct Delivery<'a> {
    pub record: RecordContext<'a>,
    pub event: Event,
    /// Properties added after the event's own (a dead letter's reason); Pulsar only.
    pub extra: Vec<(&'static str, String)>,
}

/// A configured sink.
#[derive(Debug)]
pub enum Sink {
    Pulsar(pulsar::PulsarSink),
    Kinesis(kinesis::KinesisSink),
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
    sinks: HashMap<String, Sink>,
    default: String,
}

impl Sinks {
    /// Connects every sink; fails naming the sink that cannot be reached.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let mut sinks = HashMap::new();
        for (name, c) in &config.sinks {
            let sink = match (&c.pulsar, &c.kinesis) {
                (Some(p), _) => Sink::Pulsar(pulsar::PulsarSink::connect(name, p).await?),
                (None, Some(k)) => {
                    Sink::Kinesis(kinesis::KinesisSink::connect(name, k, &config.aws).await?)
                }
                (None, None) => anyhow::bail!("sink {name} has no type"),
            };
            sinks.insert(name.clone(), sink);
        }
        Ok(Self {
            sinks,
            default: config.default_sink_name().to_string(),
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
        let topic = match &d.topic {
            Some(t) if !t.is_empty() => t.clone(),
            _ => match sink {
                Sink::Pulsar(p) => p.default_topic().to_string(),
                Sink::Kinesis(k) => k.default_stream().to_string(),
            },
        };
        if let Some(k) = &d.partition_key {
            let chars = k.chars().count();
            if !(1..=crate::producer::MAX_PARTITION_KEY_CHARS).contains(&chars) {
                return Err(format!(
                    "route chose a partition key of {chars} characters; it must have 1 to {}",
                    crate::producer::MAX_PARTITION_KEY_CHARS
                ));
            }
        }
        let explicit_hash_key = match (&d.explicit_hash_key, sink) {
            (Some(e), Sink::Kinesis(_)) => {
                crate::agg::parse_explicit_hash_key(e)
                    .map_err(|err| format!("route chose explicit hash key {e:?}: {err}"))?;
                Some(e.clone())
            }
            _ => None,
        };
        Ok(Target {
            sink: name.clone(),
            topic,
            explicit_hash_key,
        })
    }

    /// Whether `sink` is a Kinesis sink (its records carry no properties).
    pub fn is_kinesis(&self, sink: &str) -> bool {
        matches!(self.sinks.get(sink), Some(Sink::Kinesis(_)))
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
    ) -> Result<Receipt, SinkError> {
        match self.sinks.get(&target.sink) {
            Some(Sink::Pulsar(p)) => p.send_all(&target.topic, deliveries).await,
            Some(Sink::Kinesis(k)) => {
                k.send_all(
                    &target.topic,
                    target.explicit_hash_key.as_deref(),
                    deliveries,
                )
                .await
            }
            None => Err(SinkError {
                sink: target.sink.clone(),
                topic: target.topic.clone(),
                message: "no such sink".into(),
            }),
        }
    }

    /// Flushes and closes every sink.
    pub async fn close(&self) {
        for s in self.sinks.values() {
            match s {
                Sink::Pulsar(p) => p.close().await,
                Sink::Kinesis(k) => k.close().await,
            }
        }
    }
}
