//! Shardline guest SDK for Rust: write one function per record, get a component.
//!
//! ```ignore
//! use shardline_guest::{Context, Guest, Output, Record, Reject};
//!
//! pub struct Upper;
//!
//! impl Guest for Upper {
//!     fn on_record(record: &Record<'_>, _ctx: &Context) -> Result<Vec<Output>, Reject> {
//!         let text = record.text()?;                 // not UTF-8: rejected
//!         if text.is_empty() {
//!             return Ok(vec![]);                     // filtered out
//!         }
//!         Ok(vec![Output::bytes(text.to_uppercase()).to_topic("upper")])
//!     }
//! }
//!
//! shardline_guest::export!(Upper);
//! ```
//!
//! The host calls the component once per batch (the `processor` export of the `pipeline`
//! world of `shardline:connector@0.1.0`); the SDK calls [`Guest::on_record`] for every record
//! and gathers the outputs and rejections into that one answer. An `Err` rejects its record
//! alone, with the index and stage the host needs (dead letters name them), so one bad
//! record never fails its batch. [`Guest::on_batch`] is the entry point for code that needs
//! the whole batch.
//!
//! Build with `cargo build --target wasm32-wasip2 --release`: the target makes a component.
//! Don't panic in a guest: a panic traps the whole batch; return a [`Reject`] instead.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The stage a rejection names (the dead letter's `shardline.error.stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Parsing and validating the record.
    Deserialize,
    /// Reshaping, enriching, filtering.
    Transform,
    /// Choosing destinations.
    Route,
}

/// A record the guest refuses, with a reason for a person: it goes to the stage's error
/// policy (fail, skip or dead letter) while the rest of the batch goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The stage that refused the record.
    pub stage: Stage,
    /// Why, for the log and the dead-letter topic.
    pub reason: String,
}

impl Reject {
    /// A rejection at the `deserialize` stage (the usual one: the record is not valid).
    pub fn new(reason: impl Into<String>) -> Self {
        Self::at(Stage::Deserialize, reason)
    }

    /// A rejection at the `transform` stage.
    pub fn transform(reason: impl Into<String>) -> Self {
        Self::at(Stage::Transform, reason)
    }

    /// A rejection at the `route` stage.
    pub fn route(reason: impl Into<String>) -> Self {
        Self::at(Stage::Route, reason)
    }

    /// A rejection at any stage.
    pub fn at(stage: Stage, reason: impl Into<String>) -> Self {
        Self {
            stage,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} rejected: {}", self.stage, self.reason)
    }
}

impl std::error::Error for Reject {}

impl From<String> for Reject {
    fn from(reason: String) -> Self {
        Self::new(reason)
    }
}

impl From<&str> for Reject {
    fn from(reason: &str) -> Self {
        Self::new(reason)
    }
}

impl From<serde_json::Error> for Reject {
    fn from(e: serde_json::Error) -> Self {
        Self::new(format!("invalid JSON: {e}"))
    }
}

impl From<std::str::Utf8Error> for Reject {
    fn from(e: std::str::Utf8Error) -> Self {
        Self::new(format!("not UTF-8: {e}"))
    }
}

/// One Kinesis record of the batch (after KPL de-aggregation).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Position in the batch.
    pub index: usize,
    /// The producer's partition key.
    pub partition_key: &'a str,
    /// Approximate arrival time, milliseconds since the Unix epoch.
    pub arrival_millis: i64,
    /// The bytes as the producer wrote them.
    pub data: &'a [u8],
}

impl<'a> Record<'a> {
    /// The data as UTF-8 text; not UTF-8 is a `deserialize` rejection.
    pub fn text(&self) -> Result<&'a str, Reject> {
        Ok(std::str::from_utf8(self.data)?)
    }

    /// The data parsed as JSON into any `Deserialize` type (`serde_json::Value` for any
    /// JSON); invalid JSON is a `deserialize` rejection.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Reject> {
        Ok(serde_json::from_slice(self.data)?)
    }
}

/// Where a message goes; [`Output::to_topic`] covers the common case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destination {
    /// Sink name from the config; `None` is the default sink.
    pub sink: Option<String>,
    /// Topic (Pulsar) or stream (Kinesis); `None` is the sink's default.
    pub topic: Option<String>,
    /// Key for this destination only (Pulsar key, Kinesis partition key).
    pub partition_key: Option<String>,
    /// Kinesis only: the explicit hash key (decimal) that picks the shard.
    pub explicit_hash_key: Option<String>,
}

impl Destination {
    /// A topic (or stream) of the default sink.
    pub fn topic(topic: impl Into<String>) -> Self {
        Self {
            topic: Some(topic.into()),
            ..Self::default()
        }
    }

    /// The default topic (or stream) of a named sink.
    pub fn sink(sink: impl Into<String>) -> Self {
        Self {
            sink: Some(sink.into()),
            ..Self::default()
        }
    }

    /// On this sink instead of the default one.
    pub fn on_sink(mut self, sink: impl Into<String>) -> Self {
        self.sink = Some(sink.into());
        self
    }

    /// With this partition key (Kinesis) or message key (Pulsar).
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// With this explicit hash key (Kinesis: decimal, 0 to 2^128-1).
    pub fn explicit_hash_key(mut self, key: impl ToString) -> Self {
        self.explicit_hash_key = Some(key.to_string());
        self
    }
}

/// One message to publish, built from a payload:
/// `Output::json(&value)?.key(id).property("k", "v").to_topic("t")`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Message key; `None` keeps the record's partition key.
    pub key: Option<String>,
    /// Message body.
    pub payload: Vec<u8>,
    /// Message properties, added to the `kinesis.*` ones.
    pub properties: Vec<(String, String)>,
    /// Event time (ms since the epoch); `None` keeps the arrival time.
    pub event_time_millis: Option<i64>,
    /// Where it goes; empty is the default sink's default topic.
    pub destinations: Vec<Destination>,
}

impl Output {
    /// A payload of bytes (or a `String`).
    pub fn bytes(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// A payload of compact JSON from any `Serialize` value (a `transform` rejection if
    /// it cannot be written, e.g. a map with non-string keys).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Reject> {
        serde_json::to_vec(value)
            .map(Self::bytes)
            .map_err(|e| Reject::transform(format!("cannot write JSON: {e}")))
    }

    /// The message key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// One more message property.
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    /// The event time, milliseconds since the Unix epoch.
    pub fn event_time(mut self, millis: i64) -> Self {
        self.event_time_millis = Some(millis);
        self
    }

    /// Also to this topic (Pulsar) or stream (Kinesis) of the default sink.
    pub fn to_topic(self, topic: impl Into<String>) -> Self {
        self.to(Destination::topic(topic))
    }

    /// Also to this destination.
    pub fn to(mut self, destination: Destination) -> Self {
        self.destinations.push(destination);
        self
    }
}

/// A malformed setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The setting's name.
    pub key: String,
    /// Its value as the config gave it.
    pub value: String,
    /// What it should have been.
    pub expected: &'static str,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "setting {}: {:?} is not {}",
            self.key, self.value, self.expected
        )
    }
}

impl std::error::Error for SettingError {}

impl From<SettingError> for Reject {
    fn from(e: SettingError) -> Self {
        Self::new(e.to_string())
    }
}

/// The stage's `settings:` from the config, with defaults and typed getters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    /// Settings from pairs (for unit tests; the component gets the host's).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// One setting, if the config gives it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// One setting, or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// A setting parsed with `FromStr` (numbers, durations of your own type…), or `default`.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, SettingError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| SettingError {
                key: key.to_owned(),
                value: v.to_owned(),
                expected: std::any::type_name::<T>(),
            }),
        }
    }

    /// A yes/no setting (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`), or `default`.
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool, SettingError> {
        match self.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["true", "yes", "on", "1"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["false", "no", "off", "0"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(SettingError {
                key: key.to_owned(),
                value: v,
                expected: "a boolean",
            }),
        }
    }

    /// Every setting, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The component's settings: read from the host once, then kept (they cannot change for
/// the life of an instance; a new config makes a new instance).
pub fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| {
        #[cfg(target_arch = "wasm32")]
        {
            Settings::from_pairs(bindings::shardline::connector::host::settings())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Settings::default()
        }
    })
}

/// What is the same for every record of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The Kinesis stream the batch was read from.
    pub stream_name: String,
    /// The shard, e.g. `shardId-000000000001`.
    pub shard_id: String,
    /// How far the batch is behind the tip of the shard, when known.
    pub millis_behind_latest: Option<u64>,
}

impl Context {
    /// The component's settings (same as [`settings()`]).
    pub fn settings(&self) -> &'static Settings {
        settings()
    }
}

/// Logging through the host's log, tagged with the component's name.
pub mod log {
    use std::fmt::Display;

    /// Log levels of the host.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Level {
        Trace,
        Debug,
        Info,
        Warn,
        Error,
    }

    /// Writes one line to the host's log (natively: to stderr).
    pub fn log(level: Level, message: impl Display) {
        #[cfg(target_arch = "wasm32")]
        {
            use crate::bindings::shardline::connector::host::{self, Level as L};
            let level = match level {
                Level::Trace => L::Trace,
                Level::Debug => L::Debug,
                Level::Info => L::Info,
                Level::Warn => L::Warn,
                Level::Error => L::Error,
            };
            host::log(level, &message.to_string());
        }
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("{level:?}: {message}");
    }

    pub fn trace(message: impl Display) {
        log(Level::Trace, message)
    }
    pub fn debug(message: impl Display) {
        log(Level::Debug, message)
    }
    pub fn info(message: impl Display) {
        log(Level::Info, message)
    }
    pub fn warn(message: impl Display) {
        log(Level::Warn, message)
    }
    pub fn error(message: impl Display) {
        log(Level::Error, message)
    }
}

/// What a guest implements. Only [`on_record`](Guest::on_record) is required.
pub trait Guest {
    /// Called for every record of every batch: no output filters the record out, several
    /// split it; `Err` rejects it (the rest of the batch goes on).
    fn on_record(record: &Record<'_>, ctx: &Context) -> Result<Vec<Output>, Reject>;

    /// The whole batch at once: one result per record, in order. The default calls
    /// [`on_record`](Guest::on_record) for each; override it to look across records.
    /// Missing results count as filtered out.
    fn on_batch(records: &[Record<'_>], ctx: &Context) -> Vec<Result<Vec<Output>, Reject>> {
        records.iter().map(|r| Self::on_record(r, ctx)).collect()
    }
}

/// The WIT bindings (`pipeline` world). Used by [`export!`]; guests need not touch them.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[allow(unsafe_code, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "pipeline",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_pipeline",
        default_bindings_module: "shardline_guest::bindings",
    });
}

/// Connects a [`Guest`] to the `processor` export. Used through [`export!`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Adapter<T>(std::marker::PhantomData<T>);

#[cfg(target_arch = "wasm32")]
impl<T: Guest> bindings::exports::shardline::connector::processor::Guest for Adapter<T> {
    fn process(
        ctx: bindings::shardline::connector::types::BatchContext,
        records: Vec<bindings::shardline::connector::types::SourceRecord>,
    ) -> bindings::shardline::connector::types::Processed {
        use bindings::shardline::connector::types as wit;
        let context = Context {
            stream_name: ctx.stream_name,
            shard_id: ctx.shard_id,
            millis_behind_latest: ctx.millis_behind_latest,
        };
        let batch: Vec<Record<'_>> = records
            .iter()
            .enumerate()
            .map(|(index, r)| Record {
                index,
                partition_key: &r.partition_key,
                arrival_millis: r.arrival_millis,
                data: &r.data,
            })
            .collect();
        let results = T::on_batch(&batch, &context);
        let mut outputs = Vec::with_capacity(records.len());
        let mut rejections = Vec::new();
        for (i, result) in results.into_iter().enumerate().take(records.len()) {
            // Batches are far below u32::MAX records.
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            match result {
                Ok(outs) => outputs.extend(outs.into_iter().map(|o| {
                    wit::Output {
                        index,
                        event: wit::Event {
                            key: o.key,
                            payload: o.payload,
                            properties: o.properties,
                            event_time_millis: o.event_time_millis,
                        },
                        destinations: o
                            .destinations
                            .into_iter()
                            .map(|d| wit::Destination {
                                sink: d.sink,
                                topic: d.topic,
                                partition_key: d.partition_key,
                                explicit_hash_key: d.explicit_hash_key,
                            })
                            .collect(),
                    }
                })),
                Err(r) => rejections.push(wit::Rejection {
                    index,
                    stage: match r.stage {
                        Stage::Deserialize => wit::Stage::Deserialize,
                        Stage::Transform => wit::Stage::Transform,
                        Stage::Route => wit::Stage::Route,
                    },
                    reason: r.reason,
                }),
            }
        }
        wit::Processed {
            outputs,
            rejections,
        }
    }
}

/// Exports a [`Guest`] as the component's `processor`: `shardline_guest::export!(MyGuest);`
/// once, at the crate root. Does nothing outside Wasm, so `cargo test` works natively.
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type ShardlineComponent = $crate::Adapter<$ty>;
    $crate::bindings::__export_pipeline!(ShardlineComponent with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn output_builder_collects_everything() {
        let o = Output::json(&serde_json::json!({"a": 1}))
            .unwrap()
            .key("k")
            .property("p", "v")
            .event_time(7)
            .to_topic("t")
            .to(Destination::sink("kin")
                .partition_key("pk")
                .explicit_hash_key(42));
        assert_eq!(o.payload, br#"{"a":1}"#);
        assert_eq!(o.key.as_deref(), Some("k"));
        assert_eq!(o.properties, [("p".to_owned(), "v".to_owned())]);
        assert_eq!(o.event_time_millis, Some(7));
        assert_eq!(o.destinations[0], Destination::topic("t"));
        assert_eq!(o.destinations[1].sink.as_deref(), Some("kin"));
        assert_eq!(o.destinations[1].explicit_hash_key.as_deref(), Some("42"));
    }

    #[test]
    fn records_reject_bad_json_and_text_at_deserialize() {
        let r = Record {
            index: 0,
            partition_key: "pk",
            arrival_millis: 0,
            data: b"\xff{",
        };
        assert_eq!(r.text().unwrap_err().stage, Stage::Deserialize);
        let e = r.json::<serde_json::Value>().unwrap_err();
        assert_eq!(e.stage, Stage::Deserialize);
        assert!(e.reason.starts_with("invalid JSON"), "{e}");
    }

    #[test]
    fn settings_have_defaults_and_types() {
        let s = Settings::from_pairs([("n", " 12 "), ("b", "Yes"), ("x", "nope")]);
        assert_eq!(s.get_or("missing", "d"), "d");
        assert_eq!(s.parse_or("n", 0u32), Ok(12));
        assert_eq!(s.parse_or("missing", 5u32), Ok(5));
        assert!(s.parse_or("x", 0u32).is_err());
        assert_eq!(s.get_bool("b", false), Ok(true));
        assert!(s.get_bool("x", false).is_err());
    }

    #[test]
    fn on_batch_defaults_to_on_record_per_record() {
        struct Even;
        impl Guest for Even {
            fn on_record(record: &Record<'_>, _: &Context) -> Result<Vec<Output>, Reject> {
                if record.index.is_multiple_of(2) {
                    Ok(vec![Output::bytes(record.data)])
                } else {
                    Err(Reject::route("odd"))
                }
            }
        }
        let data = [b"a".as_slice(), b"b"];
        let records: Vec<Record<'_>> = data
            .iter()
            .enumerate()
            .map(|(index, d)| Record {
                index,
                partition_key: "",
                arrival_millis: 0,
                data: d,
            })
            .collect();
        let results = Even::on_batch(&records, &Context::default());
        assert_eq!(results[0].as_ref().unwrap()[0].payload, b"a");
        assert_eq!(results[1].as_ref().unwrap_err().stage, Stage::Route);
    }
}
