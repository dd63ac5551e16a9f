//! `sinks:` — where events go. A sink is one of `pulsar` or `kinesis`; each section has
//! its defaults and its checks here. The Kinesis sink's producer settings default to the
//! producer's own ([`producer_defaults`], the KPL's where the KPL has one).

use std::time::Duration;

use serde::Deserialize;

use super::pulsar_topic;
use super::units::{duration, size};
use crate::kinesis_limits::{
    MAX_AGGREGATE_BYTES, MAX_RECORD_BYTES, MAX_REQUEST_BYTES, MAX_REQUEST_RECORDS,
};

/// The producer's defaults, which a Kinesis sink's section starts from: one place for
/// both (`ProducerConfig::default` reads them).
pub mod producer_defaults {
    use std::time::Duration;

    /// KPL `AggregationMaxSize`.
    pub const AGGREGATION_MAX_SIZE: usize = crate::agg::KPL_DEFAULT_MAX_SIZE;
    /// KPL `RecordMaxBufferedTime`.
    pub const MAX_BUFFERED_TIME: Duration = Duration::from_millis(100);
    /// KPL `CollectionMaxCount`.
    pub const MAX_REQUEST_RECORDS: usize = crate::kinesis_limits::MAX_REQUEST_RECORDS;
    /// KPL `CollectionMaxSize`.
    pub const MAX_REQUEST_BYTES: usize = crate::kinesis_limits::MAX_REQUEST_BYTES;
    /// KPL `RateLimit`, in percent.
    pub const RATE_LIMIT: u32 = 150;
    /// KPL `RecordTtl`.
    pub const RECORD_TTL: Duration = Duration::from_secs(30);
    /// KPL `MaxConnections`.
    pub const MAX_CONNECTIONS: usize = 24;
    /// KPL `RequestTimeout`.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
    pub const MAX_OUTSTANDING_RECORDS: usize = 100_000;
    pub const MAX_OUTSTANDING_BYTES: usize = 128 * 1024 * 1024;
}

/// A destination system: exactly one of its keys, `pulsar` or `kinesis`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    #[serde(default)]
    pub pulsar: Option<PulsarSinkConfig>,
    #[serde(default)]
    pub kinesis: Option<KinesisSinkConfig>,
}

impl SinkConfig {
    /// The longest a send may wait for its receipt: a Pulsar sink's `send_timeout`, a
    /// Kinesis sink's `record_ttl` (its producer gives a record up then).
    pub fn ack_timeout(&self) -> Duration {
        match (&self.pulsar, &self.kinesis) {
            (Some(p), _) => p.ack_timeout(),
            (None, Some(k)) => k.ack_timeout(),
            (None, None) => Duration::ZERO,
        }
    }

    /// What is wrong with `sinks.<name>`: its type, then its own section.
    pub(super) fn problems(&self, name: &str, bad: &mut impl FnMut(&str, String)) {
        match (&self.pulsar, &self.kinesis) {
            (None, None) => bad(
                &format!("sinks.{name}"),
                "needs a sink type: pulsar or kinesis".into(),
            ),
            (Some(_), Some(_)) => bad(
                &format!("sinks.{name}"),
                "has both pulsar and kinesis; a sink is one of them (add another sink for the other)"
                    .into(),
            ),
            _ => {}
        }
        if let Some(k) = &self.kinesis {
            k.problems(name, bad);
        }
        if let (Some(p), None) = (&self.pulsar, &self.kinesis) {
            p.problems(name, bad);
        }
    }
}

/// Amazon Kinesis, through Shardline's KPL-grade producer (see `producer`). A destination's
/// topic is a stream name; the route stage may choose each record's partition key and
/// explicit hash key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSinkConfig {
    /// Stream for destinations that name none.
    pub stream: String,
    /// Endpoint override for this sink (default: `aws.endpoints.kinesis`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region override for this sink (default: `aws.region`).
    #[serde(default)]
    pub region: Option<String>,
    /// Pack records bound for the same shard into KPL aggregates (KPL `AggregationEnabled`).
    #[serde(default = "defaults::yes")]
    pub aggregation: bool,
    /// Largest aggregate (KPL `AggregationMaxSize`).
    #[serde(default = "defaults::aggregation_max_size", deserialize_with = "size")]
    pub aggregation_max_size: u64,
    /// Longest a record waits to be aggregated and collected (KPL `RecordMaxBufferedTime`).
    #[serde(default = "defaults::max_buffered_time", deserialize_with = "duration")]
    pub max_buffered_time: Duration,
    /// Records per PutRecords request, 1 to 500 (KPL `CollectionMaxCount`).
    #[serde(default = "defaults::max_request_records")]
    pub max_request_records: usize,
    /// Bytes per PutRecords request, up to 5 MiB (KPL `CollectionMaxSize`).
    #[serde(default = "defaults::max_request_bytes", deserialize_with = "size")]
    pub max_request_bytes: u64,
    /// Per-shard rate limit, in percent of a shard's 1,000 records/s and 1 MiB/s (KPL
    /// `RateLimit`).
    #[serde(default = "defaults::rate_limit")]
    pub rate_limit: u32,
    /// How long a record may take to be stored, retries included (KPL `RecordTtl`).
    #[serde(default = "defaults::record_ttl", deserialize_with = "duration")]
    pub record_ttl: Duration,
    /// PutRecords requests in flight at once (KPL `MaxConnections`).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Time allowed for one PutRecords request (KPL `RequestTimeout`).
    #[serde(default = "defaults::request_timeout", deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Bound on records inside the producer; the pipeline waits beyond it.
    #[serde(default = "defaults::max_outstanding_records")]
    pub max_outstanding_records: usize,
    /// Bound on bytes inside the producer; the pipeline waits beyond it.
    #[serde(default = "defaults::max_outstanding_bytes", deserialize_with = "size")]
    pub max_outstanding_bytes: u64,
    /// Keep each partition key's records in order even across retries (one Kinesis record
    /// per shard in flight at a time).
    #[serde(default)]
    pub strict_ordering: bool,
    /// Send PutRecords in CBOR, as the AWS SDK for Java does (each record's bytes as they
    /// are, not base64); `false` sends JSON, for an endpoint that speaks only JSON.
    #[serde(default = "defaults::yes")]
    pub cbor: bool,
}

impl KinesisSinkConfig {
    /// The longest a record may wait to be stored: its producer gives it up after
    /// `record_ttl`.
    pub fn ack_timeout(&self) -> Duration {
        self.record_ttl
    }

    /// What is wrong with `sinks.<name>.kinesis`.
    fn problems(&self, name: &str, bad: &mut impl FnMut(&str, String)) {
        let k = self;
        let path = |key: &str| format!("sinks.{name}.kinesis.{key}");
        if k.stream.trim().is_empty() {
            bad(&path("stream"), "must not be empty".into());
        }
        if let Some(e) = &k.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                bad(
                    &path("endpoint"),
                    format!("must start with http:// or https://, got {e:?}"),
                );
            }
        }
        let max_agg = MAX_AGGREGATE_BYTES as u64;
        if k.aggregation_max_size < 64 || k.aggregation_max_size > max_agg {
            bad(
                &path("aggregation_max_size"),
                format!(
                    "must be between 64 bytes and {max_agg} bytes (a Kinesis record is at most 1 MiB with its partition key), got {}",
                    k.aggregation_max_size
                ),
            );
        }
        if k.max_request_records == 0 || k.max_request_records > MAX_REQUEST_RECORDS {
            bad(
                &path("max_request_records"),
                format!(
                    "must be between 1 and {MAX_REQUEST_RECORDS} (the PutRecords limit), got {}",
                    k.max_request_records
                ),
            );
        }
        if k.max_request_bytes < MAX_RECORD_BYTES as u64
            || k.max_request_bytes > MAX_REQUEST_BYTES as u64
        {
            bad(
                &path("max_request_bytes"),
                format!(
                    "must be between 1 MiB (one record) and 5 MiB (the PutRecords limit), got {} bytes",
                    k.max_request_bytes
                ),
            );
        }
        if k.rate_limit == 0 {
            bad(&path("rate_limit"), "must be at least 1 (percent)".into());
        }
        if k.max_connections == 0 {
            bad(&path("max_connections"), "must be at least 1".into());
        }
        if k.record_ttl.is_zero() {
            bad(&path("record_ttl"), "must be more than 0".into());
        }
        if k.max_outstanding_records == 0 {
            bad(
                &path("max_outstanding_records"),
                "must be at least 1".into(),
            );
        }
        if k.max_outstanding_bytes < MAX_RECORD_BYTES as u64 {
            bad(
                &path("max_outstanding_bytes"),
                format!(
                    "must be at least 1 MiB (the largest record), got {} bytes",
                    k.max_outstanding_bytes
                ),
            );
        }
    }
}

/// Apache Pulsar, through the `pulsar` crate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsarSinkConfig {
    /// e.g. `pulsar://127.0.0.1:6650`.
    pub service_url: String,
    /// Topic for destinations that name none.
    pub topic: String,
    /// Add `kinesis.shard.id` to every message (opt-in, as in Pulsar IO).
    #[serde(default)]
    pub shard_id_property: bool,
    /// Add `kinesis.millis.behind.latest` to every message (opt-in, as in Pulsar IO).
    #[serde(default)]
    pub millis_behind_latest_property: bool,
    /// Longest wait for a send receipt before the send is retried.
    #[serde(default = "defaults::send_timeout", deserialize_with = "duration")]
    pub send_timeout: Duration,
    /// Producer batching, on by default as in the Pulsar Java client (and so in Pulsar IO).
    #[serde(default)]
    pub batching: PulsarBatching,
    /// Effectively-once through broker deduplication: one producer per shard and topic
    /// under a stable name, and sequence ids that are the same when a shard is replayed.
    /// The topics' namespace (or the topics) must have deduplication enabled.
    #[serde(default)]
    pub deduplication: bool,
    /// The broker's admin (HTTP) URL, asked whether deduplication is enabled; by default
    /// the service URL's host on port 8080.
    #[serde(default)]
    pub admin_url: Option<String>,
}

impl PulsarSinkConfig {
    /// The admin URL: `admin_url`, or `http://<service host>:8080`.
    pub fn admin_url(&self) -> String {
        if let Some(u) = &self.admin_url {
            return u.trim_end_matches('/').to_string();
        }
        let rest = self
            .service_url
            .split_once("://")
            .map_or(self.service_url.as_str(), |(_, r)| r);
        let authority = rest.split(['/', ',']).next().unwrap_or(rest);
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => authority,
        };
        format!("http://{host}:8080")
    }

    /// The longest a send waits for the broker's receipt: `send_timeout`.
    pub fn ack_timeout(&self) -> Duration {
        self.send_timeout
    }

    /// What is wrong with `sinks.<name>.pulsar`.
    fn problems(&self, name: &str, bad: &mut impl FnMut(&str, String)) {
        if !(self.service_url.starts_with("pulsar://")
            || self.service_url.starts_with("pulsar+ssl://"))
        {
            bad(
                &format!("sinks.{name}.pulsar.service_url"),
                format!(
                    "must start with pulsar:// or pulsar+ssl://, got {:?}",
                    self.service_url
                ),
            );
        }
        if let Err(why) = pulsar_topic::check(&self.topic) {
            bad(&format!("sinks.{name}.pulsar.topic"), why);
        }
        if let Some(u) = &self.admin_url {
            if !u.starts_with("http://") {
                bad(
                    &format!("sinks.{name}.pulsar.admin_url"),
                    format!("must start with http:// (the deduplication check speaks plain HTTP), got {u:?}"),
                );
            }
        }
        let b = &self.batching;
        if b.enabled {
            if b.max_messages == 0 {
                bad(
                    &format!("sinks.{name}.pulsar.batching.max_messages"),
                    "must be at least 1".into(),
                );
            }
            // Pulsar's default maxMessageSize is 5 MiB; a batch is one entry.
            if b.max_bytes == 0 || b.max_bytes > 5 << 20 {
                bad(
                    &format!("sinks.{name}.pulsar.batching.max_bytes"),
                    format!(
                        "must be between 1 byte and 5MiB (the broker's default \
                         maxMessageSize), got {}",
                        b.max_bytes
                    ),
                );
            }
            if b.max_delay.is_zero() || b.max_delay > Duration::from_secs(10) {
                bad(
                    &format!("sinks.{name}.pulsar.batching.max_delay"),
                    format!("must be between 1ms and 10s, got {:?}", b.max_delay),
                );
            }
        }
    }
}

/// Pulsar producer batching: several messages travel and are acknowledged as one entry.
/// The sink writes the events of each delivery (the records of one fetch, after the
/// stages) into batches of at most `max_messages` and `max_bytes` and sends them at once,
/// so no message waits for more to come.
///
/// Consumers still see one message per event, keys and properties included. A batch mixes
/// keys, so a `Key_Shared` subscription on the topic should turn it off (the Java client's
/// key-based batcher has no equivalent in the Rust client).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsarBatching {
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// A batch is sent when it holds this many messages …
    #[serde(default = "defaults::batch_max_messages")]
    pub max_messages: u32,
    /// … or this many bytes …
    #[serde(default = "defaults::batch_max_bytes", deserialize_with = "size")]
    pub max_bytes: u64,
    /// … or when its first message has waited this long (the Java client's
    /// `batchingMaxPublishDelay`; checked, and met at once: a batch is sent as soon as
    /// it is written).
    #[serde(default = "defaults::batch_max_delay", deserialize_with = "duration")]
    pub max_delay: Duration,
}

impl Default for PulsarBatching {
    fn default() -> Self {
        Self {
            enabled: true,
            max_messages: defaults::batch_max_messages(),
            max_bytes: defaults::batch_max_bytes(),
            max_delay: defaults::batch_max_delay(),
        }
    }
}

mod defaults {
    use std::time::Duration;

    use super::producer_defaults as producer;

    pub fn yes() -> bool {
        true
    }
    pub fn aggregation_max_size() -> u64 {
        producer::AGGREGATION_MAX_SIZE as u64
    }
    pub fn max_buffered_time() -> Duration {
        producer::MAX_BUFFERED_TIME
    }
    pub fn max_request_records() -> usize {
        producer::MAX_REQUEST_RECORDS
    }
    pub fn max_request_bytes() -> u64 {
        producer::MAX_REQUEST_BYTES as u64
    }
    pub fn rate_limit() -> u32 {
        producer::RATE_LIMIT
    }
    pub fn record_ttl() -> Duration {
        producer::RECORD_TTL
    }
    pub fn max_connections() -> usize {
        producer::MAX_CONNECTIONS
    }
    pub fn request_timeout() -> Duration {
        producer::REQUEST_TIMEOUT
    }
    pub fn max_outstanding_records() -> usize {
        producer::MAX_OUTSTANDING_RECORDS
    }
    pub fn max_outstanding_bytes() -> u64 {
        producer::MAX_OUTSTANDING_BYTES as u64
    }
    pub fn send_timeout() -> Duration {
        Duration::from_secs(30)
    }
    /// The Pulsar Java client's batching defaults: 1,000 messages, 128 KiB, 1 ms.
    pub fn batch_max_messages() -> u32 {
        1000
    }
    pub fn batch_max_bytes() -> u64 {
        128 << 10
    }
    pub fn batch_max_delay() -> Duration {
        Duration::from_millis(1)
    }
}
