//! Sinks: where events go. A destination names a sink (or the default one) and a topic
//! (or the sink's default topic). A send is first enqueued, in order, then its receipt is
//! awaited separately, so many sends are in flight while order per topic is kept.

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

/// Resolves when the destination acknowledged the message.
pub type Receipt = BoxFuture<'static, Result<(), SinkError>>;

/// A configured sink.
#[derive(Debug)]
pub enum Sink {
    Pulsar(pulsar::PulsarSink),
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
            let sink = match &c.pulsar {
                Some(p) => Sink::Pulsar(pulsar::PulsarSink::connect(name, p).await?),
                None => anyhow::bail!("sink {name} has no type"),
            };
            sinks.insert(name.clone(), sink);
        }
        Ok(Self {
            sinks,
            default: config.default_sink_name().to_string(),
        })
    }

    /// The sink name and topic a destination means; `Err` names what is unknown.
    pub fn resolve(&self, d: &Destination) -> Result<(&str, String), String> {
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
            },
        };
        Ok((name.as_str(), topic))
    }

    fn names(&self) -> String {
        let mut v: Vec<_> = self.sinks.keys().cloned().collect();
        v.sort();
        v.join(", ")
    }

    /// Enqueues one event; the returned receipt resolves when it is acknowledged.
    pub async fn send(
        &self,
        sink: &str,
        topic: &str,
        record: &RecordContext<'_>,
        event: Event,
        extra: &[(&str, &str)],
    ) -> Result<Receipt, SinkError> {
        match self.sinks.get(sink) {
            Some(Sink::Pulsar(p)) => p.send(topic, record, event, extra).await,
            None => Err(SinkError {
                sink: sink.to_string(),
                topic: topic.to_string(),
                message: "no such sink".into(),
            }),
        }
    }

    /// Flushes and closes every sink.
    pub async fn close(&self) {
        for s in self.sinks.values() {
            match s {
                Sink::Pulsar(p) => p.close().await,
            }
        }
    }
}
