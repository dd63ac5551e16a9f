//! `source:` — the Kinesis stream(s) to consume: where each starts, how it is read
//! (polling or enhanced fan-out), and the receive queue that bounds what a worker holds.

use std::time::Duration;

use serde::Deserialize;

use super::units::{duration, size};

/// The Kinesis stream(s) to consume.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The stream, when the application reads one (leases are keyed by shard id, as the
    /// KCL does for a single stream).
    #[serde(default)]
    pub stream: Option<String>,
    /// Several streams in one application (leases keyed `stream:shard`); each may set its
    /// own initial position.
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
    /// Where a shard with no checkpoint starts (default for every stream).
    #[serde(default)]
    pub initial_position: InitialPosition,
    /// RFC 3339 time, required with `initial_position: at_timestamp`.
    #[serde(default)]
    pub at_timestamp: Option<String>,
    /// How records are read: `polling` (GetRecords, the default) or `fan_out` (enhanced
    /// fan-out, SubscribeToShard). Streams of a multi-stream application may override it.
    #[serde(default)]
    pub retrieval: RetrievalMode,
    #[serde(default)]
    pub polling: PollingConfig,
    #[serde(default)]
    pub fan_out: FanOutConfig,
    /// Most records of one shard that may be fetched but not yet acknowledged by the sinks;
    /// reaching it pauses fetching (backpressure), as Pulsar IO's `receiveQueueSize`.
    #[serde(default = "defaults::receive_queue_size")]
    pub receive_queue_size: usize,
    /// Most bytes of one shard's records fetched and not yet acknowledged, as the KCL's
    /// prefetch `maxByteSize`; a record counts its data, its partition key and 1 KiB of the
    /// host's own memory for it. A fetch asks for no more records than fit at the shard's
    /// average record size.
    #[serde(default = "defaults::receive_queue_bytes", deserialize_with = "size")]
    pub receive_queue_bytes: u64,
    /// Most bytes of records fetched and not yet acknowledged across every shard this
    /// worker holds (counted as for `receive_queue_bytes`): the worker's memory does not
    /// grow with its shard count.
    #[serde(default = "defaults::max_in_flight_bytes", deserialize_with = "size")]
    pub max_in_flight_bytes: u64,
}

impl SourceConfig {
    /// What is wrong with `source`: its streams, start positions, retrieval and receive queue.
    pub(super) fn problems(&self, bad: &mut impl FnMut(&str, String)) {
        match (&self.stream, self.streams.is_empty()) {
            (None, true) => bad(
                "source",
                "needs stream (one stream) or streams (several)".into(),
            ),
            (Some(_), false) => bad(
                "source.streams",
                "cannot be combined with source.stream: list every stream under streams".into(),
            ),
            (Some(s), true) if s.trim().is_empty() => {
                bad("source.stream", "must not be empty".into())
            }
            _ => {}
        }
        let mut names = std::collections::HashSet::new();
        for (i, st) in self.streams.iter().enumerate() {
            if st.name.trim().is_empty() || st.name.contains(':') {
                bad(
                    &format!("source.streams.{i}.name"),
                    format!("must be a Kinesis stream name (no ':'), got {:?}", st.name),
                );
            }
            if !names.insert(st.name.as_str()) {
                bad(
                    &format!("source.streams.{i}.name"),
                    format!("stream {:?} is listed twice", st.name),
                );
            }
        }
        self.start_problems(bad);
        if !(1..=10_000).contains(&self.polling.max_records) {
            bad(
                "source.polling.max_records",
                format!(
                    "must be between 1 and 10000 (GetRecords limit), got {}",
                    self.polling.max_records
                ),
            );
        }
        if self.polling.interval < Duration::from_millis(200) {
            bad(
                "source.polling.interval",
                "must be at least 200ms: Kinesis allows 5 GetRecords per second per shard".into(),
            );
        }
        let fo = &self.fan_out;
        if fo.renewal_interval < Duration::from_secs(1)
            || fo.renewal_interval > Duration::from_secs(300)
        {
            bad(
                "source.fan_out.renewal_interval",
                "must be between 1s and 5m: a subscription lasts at most 5 minutes".into(),
            );
        }
        if fo.idle_timeout < Duration::from_secs(6) {
            bad(
                "source.fan_out.idle_timeout",
                "must be at least 6s: Kinesis sends an event only every 5 seconds on an idle shard"
                    .into(),
            );
        }
        if fo.consumer_name.as_deref().is_some_and(|n| {
            n.is_empty()
                || n.len() > 128
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        }) {
            bad(
                "source.fan_out.consumer_name",
                "must be 1-128 characters of letters, digits, '_', '.' and '-'".into(),
            );
        }
        if self.receive_queue_size == 0 {
            bad("source.receive_queue_size", "must be at least 1".into());
        }
        for (key, v) in [
            ("source.receive_queue_bytes", self.receive_queue_bytes),
            ("source.max_in_flight_bytes", self.max_in_flight_bytes),
        ] {
            if v < crate::kinesis_limits::MAX_RECORD_BYTES as u64 {
                bad(
                    key,
                    "must be at least 1MiB, the largest Kinesis record".into(),
                );
            }
        }
    }

    /// Start times: each must parse, be used, and exist where at_timestamp is asked.
    fn start_problems(&self, bad: &mut impl FnMut(&str, String)) {
        let bad_time = |t: &str| {
            humantime::parse_rfc3339_weak(t).err().map(|e| {
                format!("invalid time {t:?} ({e}); write it like \"2026-01-31T12:00:00Z\"")
            })
        };
        let top_used = self.initial_position == InitialPosition::AtTimestamp
            || self.streams.iter().any(|s| {
                s.initial_position == Some(InitialPosition::AtTimestamp) && s.at_timestamp.is_none()
            });
        match &self.at_timestamp {
            Some(t) => {
                if let Some(m) = bad_time(t) {
                    bad("source.at_timestamp", m);
                } else if !top_used {
                    bad(
                        "source.at_timestamp",
                        "is only used with initial_position: at_timestamp".into(),
                    );
                }
            }
            None if self.stream.is_some()
                && self.initial_position == InitialPosition::AtTimestamp =>
            {
                bad(
                    "source.at_timestamp",
                    "is required when initial_position is at_timestamp".into(),
                )
            }
            None => {}
        }
        for (i, st) in self.streams.iter().enumerate() {
            let position = st.initial_position.unwrap_or(self.initial_position);
            let key = format!("source.streams.{i}.at_timestamp");
            match &st.at_timestamp {
                Some(t) => {
                    if let Some(m) = bad_time(t) {
                        bad(&key, m);
                    } else if position != InitialPosition::AtTimestamp {
                        bad(
                            &key,
                            "is only used with initial_position: at_timestamp".into(),
                        );
                    }
                }
                None if position == InitialPosition::AtTimestamp && self.at_timestamp.is_none() => {
                    bad(
                        &key,
                        "is required when initial_position is at_timestamp".into(),
                    )
                }
                None => {}
            }
        }
    }
}

/// One stream of a multi-stream application.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: String,
    /// Overrides `source.initial_position` for this stream.
    #[serde(default)]
    pub initial_position: Option<InitialPosition>,
    /// Overrides `source.at_timestamp` for this stream.
    #[serde(default)]
    pub at_timestamp: Option<String>,
    /// Overrides `source.retrieval` for this stream.
    #[serde(default)]
    pub retrieval: Option<RetrievalMode>,
}

/// A stream to consume, with its resolved start position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub initial_position: InitialPosition,
    pub at_timestamp: Option<std::time::SystemTime>,
    /// `Some("name:")` when leases of this stream are keyed `stream:shard`.
    pub lease_prefix: Option<String>,
    pub retrieval: RetrievalMode,
}

/// How a shard's records are read, as the KCL's retrieval specs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetrievalMode {
    /// GetRecords: 5 calls/s and 2 MiB/s per shard shared by every consumer.
    #[default]
    Polling,
    /// Enhanced fan-out: a registered stream consumer with its own 2 MiB/s per shard,
    /// records pushed through SubscribeToShard.
    FanOut,
}

/// Enhanced fan-out (SubscribeToShard).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOutConfig {
    /// Name of the stream consumer; the application name when absent. Workers of one
    /// application share it.
    #[serde(default)]
    pub consumer_name: Option<String>,
    /// A subscription lasts at most 5 minutes; it is replaced from the last continuation
    /// sequence number after this long (at most 5m).
    #[serde(default = "defaults::renewal_interval", deserialize_with = "duration")]
    pub renewal_interval: Duration,
    /// A subscription that delivers no event for this long is replaced (Kinesis sends an
    /// event at least every 5 s, even with no records).
    #[serde(default = "defaults::idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// First wait after a refused subscription (ResourceInUse, throttling) or an error;
    /// doubles up to `max_backoff`.
    #[serde(default = "defaults::fan_out_backoff", deserialize_with = "duration")]
    pub backoff: Duration,
    #[serde(default = "defaults::max_backoff", deserialize_with = "duration")]
    pub max_backoff: Duration,
    /// Deregisters the consumer when the last worker of the application shuts down
    /// cleanly (no lease of the application is held any more). Off by default: a
    /// registered consumer is billed, but registering again takes time.
    #[serde(default)]
    pub deregister_on_shutdown: bool,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        Self {
            consumer_name: None,
            renewal_interval: defaults::renewal_interval(),
            idle_timeout: defaults::idle_timeout(),
            backoff: defaults::fan_out_backoff(),
            max_backoff: defaults::max_backoff(),
            deregister_on_shutdown: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialPosition {
    /// The oldest record still in the stream.
    TrimHorizon,
    /// Only records written after the worker started (the KCL default).
    #[default]
    Latest,
    /// Records at or after `source.at_timestamp`.
    AtTimestamp,
}

/// GetRecords polling.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollingConfig {
    /// `Limit` of one GetRecords call (1–10000).
    #[serde(default = "defaults::max_records")]
    pub max_records: i32,
    /// Least time between two GetRecords calls on one shard. Kinesis allows 5 reads per
    /// second per shard shared by every consumer, so it cannot go below 200ms.
    #[serde(default = "defaults::poll_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// Wait after a call that returned nothing (the KCL's idleTimeBetweenReads).
    #[serde(default = "defaults::idle_interval", deserialize_with = "duration")]
    pub idle_interval: Duration,
    /// First wait after throttling or a transient error; doubles up to `max_backoff`.
    #[serde(default = "defaults::backoff", deserialize_with = "duration")]
    pub backoff: Duration,
    #[serde(default = "defaults::max_backoff", deserialize_with = "duration")]
    pub max_backoff: Duration,
}

impl Default for PollingConfig {
    fn default() -> Self {
        Self {
            max_records: defaults::max_records(),
            interval: defaults::poll_interval(),
            idle_interval: defaults::idle_interval(),
            backoff: defaults::backoff(),
            max_backoff: defaults::max_backoff(),
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub fn receive_queue_size() -> usize {
        10_000
    }
    pub fn receive_queue_bytes() -> u64 {
        8 << 20
    }
    pub fn max_in_flight_bytes() -> u64 {
        64 << 20
    }
    pub fn max_records() -> i32 {
        10_000
    }
    pub fn poll_interval() -> Duration {
        Duration::from_millis(200)
    }
    pub fn idle_interval() -> Duration {
        Duration::from_millis(1000)
    }
    pub fn backoff() -> Duration {
        Duration::from_millis(500)
    }
    pub fn max_backoff() -> Duration {
        Duration::from_secs(10)
    }
    pub fn renewal_interval() -> Duration {
        Duration::from_secs(290)
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(35)
    }
    pub fn fan_out_backoff() -> Duration {
        // A second SubscribeToShard within 5 s of the last one is refused.
        Duration::from_secs(5)
    }
}
