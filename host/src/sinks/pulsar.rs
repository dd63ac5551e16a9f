//! The Pulsar sink: one producer per topic, messages shaped as the Pulsar IO Kinesis source
//! shapes them, so consumers written for that connector keep working.
//!
//! - key: the event key, by default the Kinesis partition key;
//! - properties: `kinesis.partition.key`, `kinesis.sequence.number`,
//!   `kinesis.arrival.timestamp` (ISO-8601 like Java's `Instant.toString()`),
//!   `kinesis.encryption.type` (`NONE` or `KMS`), opt-in `kinesis.shard.id` and
//!   `kinesis.millis.behind.latest`, then the event's own properties;
//! - event time: the event's, by default the approximate arrival time;
//! - payload: byte-exact (Pulsar IO re-encodes it as UTF-8; we never touch it).
//!
//! With `deduplication: true` the sink is effectively-once through the broker's message
//! deduplication: one producer per shard and topic, named after the application, stream
//! and shard ([`ShardSequence`](super::sequence::ShardSequence)), and every message's sequence id is its event's number
//! in the shard's output sequence, the same when the shard is replayed from a checkpoint.
//! The broker drops what it already has; a second owner of the same shard cannot open its
//! producer while the first has it (the broker answers `ProducerBusy`, a transient error:
//! the shard retries). The patched client (vendor/PATCHES.md) sends the host's ids and
//! does not resend what the broker reported it has.

use std::collections::HashMap;

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use pulsar::message::proto::{KeyValue, SingleMessageMetadata};
use pulsar::producer::{BatchMessage, Message, Producer, SendFuture};
use pulsar::{Pulsar, TokioExecutor};
use tokio::sync::Mutex;

use super::properties::{
    java_instant, ARRIVAL_TIMESTAMP, ENCRYPTION_TYPE, MILLIS_BEHIND_LATEST, PARTITION_KEY,
    SEQUENCE_NUMBER, SHARD_ID, SUB_SEQUENCE_NUMBER,
};
use super::{
    dead_letter, pulsar_admin, Acks, DeadLetter, Delivery, Numbered, RecordContext, SinkError,
    SinkErrorKind, Target,
};
use crate::config::PulsarSinkConfig;
use crate::wasm::bindings::{Destination, Event};
use crate::wasm::RecordFailure;

/// The largest payload sent: the broker's default `maxMessageSize` (5 MiB) less room for
/// the message's metadata (key and properties). A larger one is refused by the broker.
pub const MAX_MESSAGE_BYTES: usize = (5 << 20) - (64 << 10);

/// Options that shape messages (separate from the connection for unit tests).
#[derive(Debug, Clone, Default)]
pub struct MessageOptions {
    pub shard_id_property: bool,
    pub millis_behind_latest_property: bool,
}

/// Builds the Pulsar message for an event of a record.
pub fn message(
    opts: &MessageOptions,
    record: &RecordContext<'_>,
    event: Event,
    extra: &[(&'static str, String)],
) -> Message {
    let batched = batch_message(opts, record, event, extra);
    let m = batched.metadata;
    Message {
        payload: batched.payload,
        properties: m.properties.into_iter().map(|p| (p.key, p.value)).collect(),
        partition_key: m.partition_key,
        event_time: m.event_time,
        ..Message::default()
    }
}

/// The same message in the form a batch holds it ([`Producer::send_batched`]): its
/// metadata written once, with no map of its properties in between.
pub fn batch_message(
    opts: &MessageOptions,
    record: &RecordContext<'_>,
    event: Event,
    extra: &[(&'static str, String)],
) -> BatchMessage {
    let event_time = event.event_time_millis.unwrap_or(record.arrival_millis);
    BatchMessage {
        metadata: SingleMessageMetadata {
            properties: properties(opts, record, event.properties, extra),
            partition_key: Some(
                event
                    .key
                    .unwrap_or_else(|| record.partition_key.to_string()),
            ),
            event_time: u64::try_from(event_time).ok(),
            ..SingleMessageMetadata::default()
        },
        payload: event.payload,
    }
}

/// A message's properties: the record's (`kinesis.*`, as Pulsar IO names them), then the
/// component's, then the sink's own (`extra`); a later one replaces an earlier one of the
/// same name.
fn properties(
    opts: &MessageOptions,
    record: &RecordContext<'_>,
    event: Vec<(String, String)>,
    extra: &[(&'static str, String)],
) -> Vec<KeyValue> {
    let kv = |key: &str, value: String| KeyValue {
        key: key.to_string(),
        value,
    };
    let mut p = Vec::with_capacity(7 + event.len() + extra.len());
    p.push(kv(PARTITION_KEY, record.partition_key.to_string()));
    p.push(kv(SEQUENCE_NUMBER, record.sequence_number.to_string()));
    p.push(kv(ARRIVAL_TIMESTAMP, java_instant(record.arrival_millis)));
    p.push(kv(
        ENCRYPTION_TYPE,
        record.encryption_type.unwrap_or("NONE").to_string(),
    ));
    if let Some(sub) = record.sub_sequence_number {
        p.push(kv(SUB_SEQUENCE_NUMBER, sub.to_string()));
    }
    if opts.shard_id_property {
        p.push(kv(SHARD_ID, record.shard_id.to_string()));
    }
    if opts.millis_behind_latest_property {
        if let Some(m) = record.millis_behind_latest {
            p.push(kv(MILLIS_BEHIND_LATEST, m.to_string()));
        }
    }
    let later = event
        .into_iter()
        .chain(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    for (key, value) in later {
        match p.iter_mut().find(|kv| kv.key == key) {
            Some(earlier) => earlier.value = value,
            None => p.push(KeyValue { key, value }),
        }
    }
    p
}

/// Whether a Pulsar error can heal by sending again. The broker's answer decides: an
/// invalid topic name, a tenant, namespace or topic that does not exist (or was
/// terminated), refused authentication or authorization, a schema or producer the broker
/// will never accept are permanent; connections, timeouts, busy or not-ready brokers,
/// quotas and storage errors are transient.
pub fn failure_kind(e: &pulsar::Error) -> SinkErrorKind {
    use pulsar::error::{ConnectionError, ProducerError, ServiceDiscoveryError};
    use pulsar::message::proto::ServerError;

    fn of_connection(e: &ConnectionError) -> Option<(Option<ServerError>, Option<&str>)> {
        match e {
            ConnectionError::PulsarError(code, text) => Some((*code, text.as_deref())),
            _ => None,
        }
    }
    let answer = match e {
        pulsar::Error::Connection(c) => of_connection(c),
        pulsar::Error::Producer(ProducerError::Connection(c)) => of_connection(c),
        pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Connection(c)) => of_connection(c),
        pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Query(code, text)) => {
            Some((*code, text.as_deref()))
        }
        pulsar::Error::Authentication(_) => return SinkErrorKind::Permanent,
        _ => None,
    };
    let Some((code, text)) = answer else {
        return SinkErrorKind::Transient;
    };
    let permanent_code = matches!(
        code,
        Some(
            ServerError::AuthenticationError
                | ServerError::AuthorizationError
                | ServerError::TopicNotFound
                | ServerError::TopicTerminatedError
                | ServerError::InvalidTopicName
                | ServerError::IncompatibleSchema
                | ServerError::NotAllowedError
                | ServerError::UnsupportedVersionError
                | ServerError::ProducerFenced
        )
    );
    // A lookup in a namespace or tenant that does not exist comes back as a metadata
    // error whose text says so.
    let missing = text.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        (t.contains("namespace") || t.contains("tenant") || t.contains("policies"))
            && (t.contains("not found") || t.contains("does not exist"))
    });
    if permanent_code || missing {
        SinkErrorKind::Permanent
    } else {
        SinkErrorKind::Transient
    }
}

/// The producer settings of a sink.
///
/// A full send queue makes the send wait (backpressure on the shard) instead of failing with
/// SlowDown, which would rewind the shard and resend everything since its checkpoint.
/// Batching turns many sends into one broker entry and one receipt: the client keeps one
/// task per entry awaiting its receipt, so without it every message in flight costs about
/// a kilobyte of the host's memory, and the broker does the per-entry work per message.
///
/// The client's own batching stays off: with batching on, the sink writes each call's
/// messages into batches itself ([`Producer::send_batched`], in the patched client), so
/// no message waits for a timer or crosses a channel of its own.
pub fn producer_options(_config: &PulsarSinkConfig) -> pulsar::producer::ProducerOptions {
    pulsar::producer::ProducerOptions {
        block_queue_if_full: true,
        ..Default::default()
    }
}

/// The most messages and bytes of one batch, or `None` when batching is off.
fn batch_limits(config: &PulsarSinkConfig) -> Option<(usize, usize)> {
    let b = &config.batching;
    b.enabled.then(|| {
        (
            usize::try_from(b.max_messages).unwrap_or(usize::MAX),
            usize::try_from(b.max_bytes).unwrap_or(usize::MAX),
        )
    })
}

type Shared<T> = std::sync::Arc<Mutex<T>>;

/// A producer's key: its topic, and the shard's lease key when it deduplicates.
type ProducerKey = (String, Option<String>);

/// A connected Pulsar client with a producer per topic, or per shard and topic when it
/// deduplicates.
pub struct PulsarSink {
    name: String,
    config: PulsarSinkConfig,
    opts: MessageOptions,
    client: Pulsar<TokioExecutor>,
    /// By topic, and the shard's lease key when deduplicating.
    producers: Mutex<HashMap<ProducerKey, Shared<Producer<TokioExecutor>>>>,
    /// Topics the broker said deduplicate (asked once per topic).
    deduplicated_topics: Mutex<std::collections::HashSet<String>>,
    metrics: std::sync::Arc<crate::sinks::metrics::SinkMetrics>,
}

impl std::fmt::Debug for PulsarSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulsarSink")
            .field("name", &self.name)
            .field("service_url", &self.config.service_url)
            .finish()
    }
}

impl PulsarSink {
    pub async fn connect(name: &str, config: &PulsarSinkConfig) -> anyhow::Result<Self> {
        let client = Pulsar::builder(config.service_url.clone(), TokioExecutor)
            .build()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "sink {name}: cannot connect to Pulsar at {}: {e}",
                    config.service_url
                )
            })?;
        let sink = Self {
            name: name.to_string(),
            opts: MessageOptions {
                shard_id_property: config.shard_id_property,
                millis_behind_latest_property: config.millis_behind_latest_property,
            },
            config: config.clone(),
            client,
            producers: Mutex::new(HashMap::new()),
            deduplicated_topics: Mutex::default(),
            metrics: std::sync::Arc::new(crate::sinks::metrics::SinkMetrics::new(name)),
        };
        if config.deduplication {
            sink.check_deduplication(&config.topic)
                .await
                .map_err(|e| anyhow::anyhow!(e.to_string()))?;
        }
        Ok(sink)
    }

    /// With `deduplication: true`: that the broker deduplicates `topic` (asked once per
    /// topic). Without it every message would be stored, replays included, while the
    /// config promises otherwise: a permanent error naming the namespace and the command
    /// that enables it.
    async fn check_deduplication(&self, topic: &str) -> Result<(), SinkError> {
        if self.deduplicated_topics.lock().await.contains(topic) {
            return Ok(());
        }
        let admin = self.config.admin_url();
        let enabled = pulsar_admin::deduplication_enabled(&admin, topic)
            .await
            .map_err(|e| {
                self.err(
                    topic,
                    format!("deduplication is on, but whether the broker deduplicates cannot be checked: {e}"),
                    SinkErrorKind::Transient,
                )
            })?;
        if !enabled {
            let (namespace, _) = pulsar_admin::namespace_of(topic);
            return Err(self.err(
                topic,
                format!(
                    "deduplication is on for this sink, but broker deduplication is not enabled \
                     for namespace {namespace} (or this topic): without it replays would be \
                     stored again. Enable it with `pulsar-admin namespaces set-deduplication \
                     {namespace} --enable` (or `pulsar-admin topics set-deduplication {topic} \
                     --enable`), or set deduplication: false"
                ),
                SinkErrorKind::Permanent,
            ));
        }
        self.deduplicated_topics
            .lock()
            .await
            .insert(topic.to_string());
        Ok(())
    }

    fn err(&self, topic: &str, message: String, kind: SinkErrorKind) -> SinkError {
        SinkError {
            sink: self.name.clone(),
            topic: topic.to_string(),
            message,
            kind,
        }
    }

    /// The producer for `topic`: the sink's, or with deduplication the one of the shard
    /// of `first` (the first event about to be sent), created under the shard's stable
    /// name, after checking the broker deduplicates the topic.
    async fn producer(
        &self,
        topic: &str,
        first: Option<Numbered<'_>>,
    ) -> Result<Shared<Producer<TokioExecutor>>, SinkError> {
        let shard = first.map(|n| n.sequence);
        let key = (topic.to_string(), shard.map(|s| s.lease_key.clone()));
        let mut producers = self.producers.lock().await;
        if let Some(p) = producers.get(&key) {
            return Ok(p.clone());
        }
        let mut builder = self
            .client
            .producer()
            .with_topic(topic)
            .with_options(producer_options(&self.config));
        if let Some(sequence) = shard {
            self.check_deduplication(topic).await?;
            builder = builder.with_name(&sequence.producer_name);
        }
        let p = builder.build().await.map_err(|e| {
            self.err(
                topic,
                format!("cannot create producer: {e}"),
                failure_kind(&e),
            )
        })?;
        if let Some(first) = first {
            self.numbering_from(topic, &p, first);
        }
        let p = std::sync::Arc::new(Mutex::new(p));
        producers.insert(key, p.clone());
        Ok(p)
    }

    /// A shard's producer was created: the broker's last id for its name must be one this
    /// lineage can have sent, or its numbering moves past it ([`super::sequence::ShardSequence`]).
    fn numbering_from(&self, topic: &str, p: &Producer<TokioExecutor>, first: Numbered<'_>) {
        let broker_last = p.last_sequence_ids().into_iter().max().unwrap_or(-1);
        let sequence = first.sequence;
        tracing::debug!(sink = %self.name, %topic, producer = %sequence.producer_name, broker_last, "deduplicating producer created");
        if let Some(base) = sequence.producer_created(topic, broker_last, first.number) {
            tracing::warn!(sink = %self.name, %topic, producer = %sequence.producer_name, broker_last, base,
                "the broker already has sequence ids up to {broker_last} under this producer name, \
                 more than this shard's checkpoint accounts for (a lease table made again, or \
                 another run under the same application name): numbering from {} on, so no \
                 new message is taken for a duplicate", broker_last + 1);
        }
    }

    /// Enqueues the messages in topic order; the receipt resolves once the broker
    /// acknowledged the last of them (receipts of one producer arrive in send order), or
    /// with the first failure, or when `send_timeout` passes first.
    async fn send_batch(
        &self,
        topic: &str,
        deliveries: Vec<Delivery<'_>>,
    ) -> Result<Acks, SinkError> {
        let n = deliveries.len();
        let first = self
            .config
            .deduplication
            .then(|| deliveries.first().map(|d| d.number))
            .flatten();
        let producer = self
            .producer(topic, first)
            .await
            .inspect_err(|_| self.metrics.refused(0))?;
        if let (Some(first), Some(last)) = (first, deliveries.last()) {
            first
                .sequence
                .reserve(topic, last.number.number)
                .await
                .map_err(|why| {
                    self.metrics.refused(0);
                    self.err(topic, why, SinkErrorKind::Transient)
                })?;
        }
        let id = |d: &Delivery<'_>| {
            first
                .is_some()
                .then(|| d.number.sequence.id(d.number.number))
        };
        // Each receipt with the number of messages it answers for.
        let mut receipts: Vec<(usize, SendFuture)> = Vec::new();
        {
            let mut p = producer.lock().await;
            let sent = match batch_limits(&self.config) {
                Some((max_messages, max_bytes)) => {
                    let messages = deliveries
                        .into_iter()
                        .map(|d| {
                            let sequence_id = id(&d);
                            let mut m = batch_message(&self.opts, &d.record, d.event, &d.extra);
                            m.metadata.sequence_id = sequence_id;
                            m
                        })
                        .collect();
                    p.send_batched(messages, max_messages, max_bytes)
                        .await
                        .map(|batches| receipts = batches)
                }
                None => {
                    async {
                        for d in deliveries {
                            let sequence_id = id(&d);
                            let mut msg = message(&self.opts, &d.record, d.event, &d.extra);
                            msg.sequence_id = sequence_id;
                            receipts.push((1, p.send_non_blocking(msg).await?));
                        }
                        Ok(())
                    }
                    .await
                }
            };
            if let Err(e) = sent {
                self.metrics.refused(receipts.iter().map(|(n, _)| n).sum());
                return Err(self.err(topic, format!("send failed: {e}"), failure_kind(&e)));
            }
        }
        let timeout = self.config.send_timeout;
        let (sink, topic) = (self.name.clone(), topic.to_string());
        let (metrics, started) = (self.metrics.clone(), self.metrics.sent(n));
        Ok(async move {
            let all = async {
                let mut duplicates = 0;
                for (count, r) in receipts {
                    let receipt = r.await?;
                    // The broker's (and the patched client's) answer to a duplicate.
                    if receipt
                        .message_id
                        .is_some_and(|id| id.ledger_id == u64::MAX)
                    {
                        duplicates += count;
                    }
                }
                Ok::<_, pulsar::Error>(duplicates)
            };
            let r = match tokio::time::timeout(timeout, all).await {
                Ok(Ok(duplicates)) => {
                    if duplicates > 0 {
                        metrics.duplicates(duplicates);
                    }
                    Ok(())
                }
                Ok(Err(e)) => Err(SinkError {
                    sink,
                    topic,
                    message: format!("broker did not accept the message: {e}"),
                    kind: failure_kind(&e),
                }),
                Err(_) => Err(SinkError {
                    sink,
                    topic,
                    message: format!("no receipt within {timeout:?}"),
                    kind: SinkErrorKind::Transient,
                }),
            };
            metrics.acknowledged(n, started, r.is_ok());
            r
        }
        .boxed())
    }

    /// Closes the producers (everything sent was awaited by the pipeline before).
    async fn close_producers(&self) {
        let producers: Vec<_> = self.producers.lock().await.drain().collect();
        for ((topic, _), p) in producers {
            if let Err(e) = p.lock().await.close().await {
                tracing::debug!(sink = %self.name, %topic, error = %e, "closing producer");
            }
        }
    }

    /// Closes the producers of shard `lease_key`, so its next owner (or its next pass) can
    /// open them under the same names.
    async fn close_shard(&self, lease_key: &str) {
        let producers: Vec<_> = {
            let mut all = self.producers.lock().await;
            let keys: Vec<_> = all
                .keys()
                .filter(|(_, shard)| shard.as_deref() == Some(lease_key))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| all.remove(&k).map(|p| (k.0, p)))
                .collect()
        };
        for (topic, p) in producers {
            if let Err(e) = p.lock().await.close().await {
                tracing::debug!(sink = %self.name, %topic, shard = %lease_key, error = %e, "closing producer");
            }
        }
    }
}

impl super::Sink for PulsarSink {
    /// A topic name Pulsar accepts; no explicit hash key (it means nothing here).
    fn target(&self, name: &str, d: &Destination) -> Result<Target, String> {
        let topic = match &d.topic {
            Some(t) if !t.is_empty() => t.clone(),
            _ => self.config.topic.clone(),
        };
        crate::config::pulsar_topic::check(&topic).map_err(|why| format!("sink {name}: {why}"))?;
        Ok(Target {
            sink: name.to_string(),
            topic,
            explicit_hash_key: None,
        })
    }

    fn admit(&self, topic: &str, event: &Event, _record_key: &str) -> Result<(), String> {
        let size = event.payload.len();
        if size > MAX_MESSAGE_BYTES {
            return Err(format!(
                "topic {topic}: a message of {size} bytes is over the broker's maxMessageSize \
                 of {MAX_MESSAGE_BYTES} bytes"
            ));
        }
        Ok(())
    }

    /// The original bytes, with the dead-letter properties after the usual ones.
    fn dead_letter(
        &self,
        failure: &RecordFailure,
        record: &RecordContext<'_>,
        data: &[u8],
    ) -> DeadLetter {
        DeadLetter {
            event: Event {
                key: None,
                payload: data.to_vec(),
                properties: Vec::new(),
                event_time_millis: None,
            },
            extra: dead_letter::properties(failure, record),
        }
    }

    fn ack_timeout(&self) -> Duration {
        self.config.ack_timeout()
    }

    fn send_all<'a>(
        &'a self,
        target: &'a Target,
        deliveries: Vec<Delivery<'a>>,
    ) -> BoxFuture<'a, Result<Acks, SinkError>> {
        self.send_batch(&target.topic, deliveries).boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.close_producers().boxed()
    }

    fn deduplicates(&self) -> bool {
        self.config.deduplication
    }

    fn release_shard<'a>(&'a self, lease_key: &'a str) -> BoxFuture<'a, ()> {
        self.close_shard(lease_key).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RecordContext<'static> {
        RecordContext {
            stream: "orders",
            shard_id: "shardId-000000000001",
            partition_key: "customer-7",
            sequence_number: "49590338271490256608559692538361571095921575989136588898",
            sub_sequence_number: None,
            arrival_millis: 1_763_784_405_120,
            encryption_type: None,
            millis_behind_latest: Some(250),
        }
    }

    fn event(payload: &[u8]) -> Event {
        Event {
            key: None,
            payload: payload.to_vec(),
            properties: Vec::new(),
            event_time_millis: None,
        }
    }

    #[test]
    fn pulsar_io_properties_by_default() {
        let m = message(
            &MessageOptions::default(),
            &record(),
            event(b"\xff\x00x"),
            &[],
        );
        assert_eq!(
            m.payload, b"\xff\x00x",
            "payload is byte-exact, not re-encoded"
        );
        assert_eq!(m.partition_key.as_deref(), Some("customer-7"));
        assert_eq!(m.event_time, Some(1_763_784_405_120));
        let p = &m.properties;
        assert_eq!(p[PARTITION_KEY], "customer-7");
        assert_eq!(
            p[SEQUENCE_NUMBER],
            "49590338271490256608559692538361571095921575989136588898"
        );
        assert_eq!(p[ARRIVAL_TIMESTAMP], "2025-11-22T04:06:45.120Z");
        assert_eq!(p[ENCRYPTION_TYPE], "NONE");
        assert!(!p.contains_key(SHARD_ID) && !p.contains_key(MILLIS_BEHIND_LATEST));
        assert_eq!(p.len(), 4);
    }

    fn sink_config(batching: &str) -> PulsarSinkConfig {
        serde_yaml::from_str(&format!(
            "{{service_url: 'pulsar://127.0.0.1:6650', topic: t, batching: {batching}}}"
        ))
        .unwrap()
    }

    #[test]
    fn batching_on_by_default_with_the_java_clients_limits() {
        assert_eq!(batch_limits(&sink_config("{}")), Some((1000, 128 << 10)));
        assert_eq!(
            batch_limits(&sink_config(
                "{max_messages: 10, max_bytes: 1MiB, max_delay: 20ms}"
            )),
            Some((10, 1 << 20))
        );
    }

    #[test]
    fn batching_off_sends_message_by_message() {
        assert_eq!(batch_limits(&sink_config("{enabled: false}")), None);
    }

    #[test]
    fn the_clients_own_batching_stays_off() {
        for batching in ["{}", "{enabled: false}"] {
            let o = producer_options(&sink_config(batching));
            assert_eq!(
                (o.batch_size, o.batch_byte_size, o.batch_timeout),
                (None, None, None)
            );
            assert!(o.block_queue_if_full);
        }
    }

    #[test]
    fn opt_in_properties() {
        let opts = MessageOptions {
            shard_id_property: true,
            millis_behind_latest_property: true,
        };
        let mut r = record();
        r.encryption_type = Some("KMS");
        let m = message(&opts, &r, event(b""), &[]);
        assert_eq!(m.properties[SHARD_ID], "shardId-000000000001");
        assert_eq!(m.properties[MILLIS_BEHIND_LATEST], "250");
        assert_eq!(m.properties[ENCRYPTION_TYPE], "KMS");
    }

    #[test]
    fn event_overrides_key_time_and_properties() {
        let mut e = event(b"{}");
        e.key = Some("order-1".into());
        e.event_time_millis = Some(42);
        e.properties = vec![("order.region".into(), "eu".into())];
        let m = message(
            &MessageOptions::default(),
            &record(),
            e,
            &[("shardline.error.reason", "bad".to_string())],
        );
        assert_eq!(m.partition_key.as_deref(), Some("order-1"));
        assert_eq!(m.event_time, Some(42));
        assert_eq!(m.properties["order.region"], "eu");
        assert_eq!(m.properties["shardline.error.reason"], "bad");
        assert_eq!(
            m.properties[PARTITION_KEY], "customer-7",
            "source key stays visible"
        );
    }

    #[test]
    fn a_later_property_replaces_an_earlier_one_of_the_same_name_once() {
        let mut e = event(b"x");
        e.properties = vec![
            (PARTITION_KEY.into(), "from-component".into()),
            ("order.region".into(), "eu".into()),
        ];
        let extra = [("order.region", "us".to_string())];
        let batched = batch_message(&MessageOptions::default(), &record(), e.clone(), &extra);
        let names: Vec<&str> = batched
            .metadata
            .properties
            .iter()
            .map(|p| p.key.as_str())
            .collect();
        assert_eq!(
            names,
            [
                PARTITION_KEY,
                SEQUENCE_NUMBER,
                ARRIVAL_TIMESTAMP,
                ENCRYPTION_TYPE,
                "order.region"
            ],
            "each name once, in order"
        );
        let value = |name: &str| {
            batched
                .metadata
                .properties
                .iter()
                .find(|p| p.key == name)
                .map(|p| p.value.as_str())
        };
        assert_eq!(value(PARTITION_KEY), Some("from-component"));
        assert_eq!(value("order.region"), Some("us"));
        // The message form carries the same.
        let m = message(&MessageOptions::default(), &record(), e, &extra);
        assert_eq!(m.properties.len(), names.len());
        for p in &batched.metadata.properties {
            assert_eq!(m.properties[&p.key], p.value);
        }
        assert_eq!(m.partition_key, batched.metadata.partition_key);
        assert_eq!(m.event_time, batched.metadata.event_time);
        assert_eq!(m.payload, batched.payload);
    }
}
