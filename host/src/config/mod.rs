//! Configuration: one YAML file says which stream to read, where leases and checkpoints
//! live, which Wasm stages run and where the records go.
//!
//! Unknown keys are errors. Every error names the key path (`sinks.main.pulsar.topic`) and,
//! where it is known, the line, so a typo is found without reading the code. Durations are
//! written with a unit (`200ms`, `10s`, `5m`), sizes like `64MiB`. Relative paths resolve
//! against the folder of the config file.

pub(crate) mod locate;
pub mod metrics;
pub mod nesting;
pub mod pulsar_topic;
pub mod sinks;
pub mod suggest;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use self::sinks::{KinesisSinkConfig, PulsarBatching, PulsarSinkConfig, SinkConfig};
use self::units::{duration, size};

/// Everything a worker needs, as the user wrote it (after defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Application name, as in the KCL: the lease table's name unless `leases.table` says
    /// otherwise. Workers with the same application name share the stream's shards.
    pub application: String,
    pub source: SourceConfig,
    #[serde(default)]
    pub aws: AwsConfig,
    #[serde(default)]
    pub leases: LeaseConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub stages: StagesConfig,
    #[serde(default)]
    pub wasm: WasmConfig,
    pub sinks: BTreeMap<String, SinkConfig>,
    /// The sink a destination without a sink name goes to. May be omitted when there is
    /// exactly one sink.
    #[serde(default)]
    pub default_sink: Option<String>,
    #[serde(default)]
    pub errors: ErrorsConfig,
    #[serde(default)]
    pub metrics: metrics::MetricsConfig,
    /// Folder of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

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

/// How to reach AWS (or a local stack).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region; when absent the default chain decides (AWS_REGION, profile).
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub credentials: Credentials,
    #[serde(default)]
    pub endpoints: Endpoints,
    /// An HTTP proxy for every AWS call (Kinesis, DynamoDB, CloudWatch, STS).
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
}

/// `aws.proxy`: requests to AWS go through this HTTP proxy (HTTPS is tunnelled with
/// CONNECT). Without it, no proxy is used, whatever HTTP(S)_PROXY say.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `http://host:port`.
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Hosts reached directly, comma-separated (`localhost,*.internal`), as NO_PROXY.
    #[serde(default)]
    pub no_proxy: Option<String>,
}

impl fmt::Debug for ProxyConfig {
    /// The password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// Where credentials come from. In YAML: `type: default | static | profile | assume_role`
/// and the keys that type uses.
#[derive(Clone, Default, Deserialize)]
#[serde(try_from = "CredentialsYaml")]
pub enum Credentials {
    /// The AWS default chain: environment, profile, web identity, container, instance.
    #[default]
    Default,
    /// Fixed keys (prefer the default chain outside tests).
    Static {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    /// A named profile of ~/.aws/config and ~/.aws/credentials, or of `file` (a
    /// credentials-format file, as the Java SDK's `ProfileCredentialsProvider(path, name)`).
    Profile { name: String, file: Option<PathBuf> },
    /// Assume a role with credentials from the default chain (web identity included:
    /// AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN are part of that chain).
    AssumeRole {
        role_arn: String,
        session_name: Option<String>,
        external_id: Option<String>,
        /// Session length (STS `DurationSeconds`, 15m to 12h); STS's default (1h) when absent.
        duration: Option<Duration>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum CredentialsType {
    Default,
    Static,
    Profile,
    AssumeRole,
}

/// The YAML shape of `aws.credentials`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsYaml {
    #[serde(rename = "type")]
    kind: CredentialsType,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    secret_access_key: Option<String>,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    role_arn: Option<String>,
    #[serde(default)]
    session_name: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    duration: Option<Duration>,
}

impl TryFrom<CredentialsYaml> for Credentials {
    type Error = String;

    fn try_from(c: CredentialsYaml) -> Result<Self, String> {
        let (kind, used): (&str, &[&str]) = match c.kind {
            CredentialsType::Default => ("default", &[]),
            CredentialsType::Static => (
                "static",
                &["access_key_id", "secret_access_key", "session_token"],
            ),
            CredentialsType::Profile => ("profile", &["profile", "file"]),
            CredentialsType::AssumeRole => (
                "assume_role",
                &["role_arn", "session_name", "external_id", "duration"],
            ),
        };
        let given = [
            ("access_key_id", c.access_key_id.is_some()),
            ("secret_access_key", c.secret_access_key.is_some()),
            ("session_token", c.session_token.is_some()),
            ("profile", c.profile.is_some()),
            ("file", c.file.is_some()),
            ("role_arn", c.role_arn.is_some()),
            ("session_name", c.session_name.is_some()),
            ("external_id", c.external_id.is_some()),
            ("duration", c.duration.is_some()),
        ];
        if let Some((k, _)) = given.iter().find(|(k, set)| *set && !used.contains(k)) {
            return Err(format!("credentials of type {kind} do not use {k}"));
        }
        let need = |v: Option<String>, k: &str| {
            v.ok_or_else(|| format!("credentials of type {kind} need {k}"))
        };
        Ok(match c.kind {
            CredentialsType::Default => Credentials::Default,
            CredentialsType::Static => Credentials::Static {
                access_key_id: need(c.access_key_id, "access_key_id")?,
                secret_access_key: need(c.secret_access_key, "secret_access_key")?,
                session_token: c.session_token,
            },
            CredentialsType::Profile => Credentials::Profile {
                name: need(c.profile, "profile")?,
                file: c.file,
            },
            CredentialsType::AssumeRole => {
                if let Some(d) = c.duration {
                    if d < Duration::from_secs(900) || d > Duration::from_secs(12 * 3600) {
                        return Err(format!(
                            "credentials of type assume_role need a duration between 15m and 12h (STS limits), got {}",
                            humantime::format_duration(d)
                        ));
                    }
                }
                Credentials::AssumeRole {
                    role_arn: need(c.role_arn, "role_arn")?,
                    session_name: c.session_name,
                    external_id: c.external_id,
                    duration: c.duration,
                }
            }
        })
    }
}

impl fmt::Debug for Credentials {
    /// Secrets never reach a log, not even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("Default"),
            Self::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .field("session_token", &"<redacted>")
                .finish(),
            Self::Profile { name, file } => f
                .debug_struct("Profile")
                .field("name", name)
                .field("file", file)
                .finish(),
            Self::AssumeRole {
                role_arn,
                session_name,
                external_id,
                duration,
            } => f
                .debug_struct("AssumeRole")
                .field("role_arn", role_arn)
                .field("session_name", session_name)
                .field("external_id", &external_id.as_ref().map(|_| "<redacted>"))
                .field("duration", duration)
                .finish(),
        }
    }
}

/// Endpoint overrides, for local stacks or VPC endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    #[serde(default)]
    pub kinesis: Option<String>,
    #[serde(default)]
    pub dynamodb: Option<String>,
    #[serde(default)]
    pub cloudwatch: Option<String>,
    /// STS, for `assume_role` (the default chain's web identity reads AWS_ENDPOINT_URL_STS).
    #[serde(default)]
    pub sts: Option<String>,
}

/// The DynamoDB lease table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// Table name; defaults to the application name (as the KCL does).
    #[serde(default)]
    pub table: Option<String>,
    /// A lease whose counter has not moved for this long is expired and may be taken
    /// (the KCL's failoverTimeMillis).
    #[serde(default = "defaults::lease_duration", deserialize_with = "duration")]
    pub duration: Duration,
    /// This worker's identity in `leaseOwner`; defaults to host name, process id and a
    /// random suffix.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// How often held leases are renewed; default a third of `duration`.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub renew_interval: Option<Duration>,
    /// How often the table is scanned for leases to take; default half of `duration`
    /// (the KCL waits twice the duration, which makes rebalancing slow).
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub take_interval: Option<Duration>,
    /// Most leases one worker holds (default: no limit).
    #[serde(default)]
    pub max_per_worker: Option<usize>,
    /// Most leases stolen from another worker in one taking round (KCL default 1; 0 never
    /// steals, leases then move only when they expire or are released).
    #[serde(default = "defaults::max_steal")]
    pub max_steal: usize,
    /// How often the stream's shard list is compared with the lease table.
    #[serde(
        default = "defaults::shard_sync_interval",
        deserialize_with = "duration"
    )]
    pub shard_sync_interval: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            table: None,
            duration: defaults::lease_duration(),
            worker_id: None,
            renew_interval: None,
            take_interval: None,
            max_per_worker: None,
            max_steal: defaults::max_steal(),
            shard_sync_interval: defaults::shard_sync_interval(),
        }
    }
}

impl LeaseConfig {
    pub fn renew_interval(&self) -> Duration {
        self.renew_interval.unwrap_or(self.duration / 3)
    }

    pub fn take_interval(&self) -> Duration {
        self.take_interval.unwrap_or(self.duration / 2)
    }
}

/// When acknowledged progress is written to the lease table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Time between two checkpoints of a shard (when it made progress). Shard end and
    /// shutdown always checkpoint.
    #[serde(
        default = "defaults::checkpoint_interval",
        deserialize_with = "duration"
    )]
    pub interval: Duration,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval: defaults::checkpoint_interval(),
        }
    }
}

/// The Wasm stages. Either one `pipeline` component that runs all three stages in one call
/// per batch, or any of `deserialize`, `transform`, `route` (each optional, with built-in
/// defaults: bytes as they are, identity, the default destination).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagesConfig {
    #[serde(default)]
    pub pipeline: Option<StageConfig>,
    #[serde(default)]
    pub deserialize: Option<StageConfig>,
    #[serde(default)]
    pub transform: Option<StageConfig>,
    #[serde(default)]
    pub route: Option<StageConfig>,
}

/// One component and the settings it is handed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Path of the `.wasm` component.
    pub component: PathBuf,
    /// Key/value settings the guest reads through the `host` import.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
    /// What happens to a record this stage fails on; overrides `errors.policy`. For a
    /// `pipeline` component it covers every failure of the fused call.
    #[serde(default)]
    pub on_error: Option<ErrorPolicy>,
    /// The WASI capabilities this component is given; none by default.
    #[serde(default)]
    pub grants: GrantsConfig,
}

/// `stages.<stage>.grants`: every capability a component gets, explicitly. What is not
/// granted is absent (environment, directories, network) or inert (clocks read 0, random
/// is a fixed sequence). See `wasm::grants`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsConfig {
    /// Environment variables the guest sees.
    #[serde(default)]
    pub env: BTreeMap<String, SettingValue>,
    /// Directories the guest may read, at the same (absolute) path as on the host;
    /// relative paths resolve against the config's folder.
    #[serde(default)]
    pub read_only_dirs: Vec<PathBuf>,
    /// The host's wall and monotonic clocks.
    #[serde(default)]
    pub clocks: bool,
    /// The host's random sources.
    #[serde(default)]
    pub random: bool,
}

/// A setting value: any YAML scalar, handed to the guest as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingValue(pub String);

impl<'de> Deserialize<'de> for SettingValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => Ok(Self(s)),
            serde_yaml::Value::Bool(b) => Ok(Self(b.to_string())),
            serde_yaml::Value::Number(n) => Ok(Self(n.to_string())),
            _ => Err(D::Error::custom(
                "a setting must be a string, number or boolean (guests receive text)",
            )),
        }
    }
}

/// Limits every guest call runs under.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmConfig {
    /// Where compiled components are cached (by content hash and engine settings).
    /// Defaults to `$XDG_CACHE_HOME/shardline/components` or `~/.cache/shardline/components`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Most linear memory one instance may grow to.
    #[serde(default = "defaults::memory_limit", deserialize_with = "size")]
    pub memory_limit: u64,
    /// Longest one call (one batch) may run before it is interrupted.
    #[serde(default = "defaults::call_timeout", deserialize_with = "duration")]
    pub call_timeout: Duration,
    /// How often component files are checked for a new version, which is loaded, checked
    /// and used from each shard's next batch (hot reload); `0s` checks only on SIGHUP.
    #[serde(default = "defaults::watch_interval", deserialize_with = "duration")]
    pub watch_interval: Duration,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            memory_limit: defaults::memory_limit(),
            call_timeout: defaults::call_timeout(),
            watch_interval: defaults::watch_interval(),
        }
    }
}

/// What happens to a record a stage refuses or cannot process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsConfig {
    #[serde(default)]
    pub policy: ErrorPolicy,
    /// Required with `policy: dead_letter`.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// Stop the worker; nothing at or after the failed record is checkpointed.
    #[default]
    Fail,
    /// Log, count and acknowledge the record without delivering it.
    Skip,
    /// Publish the original record with the reason to `errors.dead_letter`.
    DeadLetter,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Sink name; defaults to the default sink.
    #[serde(default)]
    pub sink: Option<String>,
    pub topic: String,
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
    pub fn lease_duration() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_steal() -> usize {
        1
    }
    pub fn shard_sync_interval() -> Duration {
        Duration::from_secs(60)
    }
    pub fn checkpoint_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn memory_limit() -> u64 {
        64 << 20
    }
    pub fn call_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn watch_interval() -> Duration {
        Duration::from_secs(1)
    }
}

/// One thing wrong with a config that parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `sinks.main.pulsar.topic`.
    pub path: String,
    /// 1-based line of that key, when it could be found.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(line) = self.line {
            write!(f, " at line {line}")?;
        }
        Ok(())
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{}", problems.iter().map(|p| format!("{file}: {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

/// A config file's text and the folder its relative paths resolve against.
pub(crate) fn read_source(path: &Path) -> std::io::Result<(String, PathBuf)> {
    let text = std::fs::read_to_string(path)?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((text, base_dir))
}

impl Config {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let (text, base_dir) = read_source(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_yaml(&text, &file, base_dir)
    }

    /// Parses and checks config text; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str, base_dir: PathBuf) -> Result<Self, ConfigError> {
        nesting::check(text).map_err(|message| ConfigError::Parse {
            file: file.to_string(),
            message,
        })?;
        let mut config: Config = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            message: suggest::annotate_serde_message(&e.to_string()),
        })?;
        config.base_dir = base_dir;
        let problems = config.problems(text);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                file: file.to_string(),
                problems,
            })
        }
    }

    /// Checks what serde cannot: values in range, references between sections.
    fn problems(&self, text: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |path: &str, message: String| {
            out.push(Problem {
                path: path.to_string(),
                line: locate::line_of(text, path),
                message,
            });
        };
        if self.application.trim().is_empty() {
            bad("application", "must not be empty".into());
        }
        match (&self.source.stream, self.source.streams.is_empty()) {
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
        for (i, st) in self.source.streams.iter().enumerate() {
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
        // Start times: each must parse, be used, and exist where at_timestamp is asked.
        let bad_time = |t: &str| {
            humantime::parse_rfc3339_weak(t).err().map(|e| {
                format!("invalid time {t:?} ({e}); write it like \"2026-01-31T12:00:00Z\"")
            })
        };
        let top_used = self.source.initial_position == InitialPosition::AtTimestamp
            || self.source.streams.iter().any(|s| {
                s.initial_position == Some(InitialPosition::AtTimestamp) && s.at_timestamp.is_none()
            });
        match &self.source.at_timestamp {
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
            None if self.source.stream.is_some()
                && self.source.initial_position == InitialPosition::AtTimestamp =>
            {
                bad(
                    "source.at_timestamp",
                    "is required when initial_position is at_timestamp".into(),
                )
            }
            None => {}
        }
        for (i, st) in self.source.streams.iter().enumerate() {
            let position = st.initial_position.unwrap_or(self.source.initial_position);
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
                None if position == InitialPosition::AtTimestamp
                    && self.source.at_timestamp.is_none() =>
                {
                    bad(
                        &key,
                        "is required when initial_position is at_timestamp".into(),
                    )
                }
                None => {}
            }
        }
        if !(1..=10_000).contains(&self.source.polling.max_records) {
            bad(
                "source.polling.max_records",
                format!(
                    "must be between 1 and 10000 (GetRecords limit), got {}",
                    self.source.polling.max_records
                ),
            );
        }
        if self.source.polling.interval < Duration::from_millis(200) {
            bad(
                "source.polling.interval",
                "must be at least 200ms: Kinesis allows 5 GetRecords per second per shard".into(),
            );
        }
        let fo = &self.source.fan_out;
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
        if self.source.receive_queue_size == 0 {
            bad("source.receive_queue_size", "must be at least 1".into());
        }
        for (key, v) in [
            (
                "source.receive_queue_bytes",
                self.source.receive_queue_bytes,
            ),
            (
                "source.max_in_flight_bytes",
                self.source.max_in_flight_bytes,
            ),
        ] {
            if v < crate::kinesis_limits::MAX_RECORD_BYTES as u64 {
                bad(
                    key,
                    "must be at least 1MiB, the largest Kinesis record".into(),
                );
            }
        }
        if self.leases.duration < Duration::from_secs(1) {
            bad("leases.duration", "must be at least 1s".into());
        }
        if self.leases.renew_interval() * 2 > self.leases.duration {
            bad(
                "leases.renew_interval",
                format!(
                    "must be at most half of leases.duration ({:?}) so a lease survives one failed renewal",
                    self.leases.duration
                ),
            );
        }
        if self.leases.max_per_worker == Some(0) {
            bad("leases.max_per_worker", "must be at least 1".into());
        }
        if self.wasm.memory_limit < (1 << 20) {
            bad("wasm.memory_limit", "must be at least 1MiB".into());
        }
        if self.wasm.call_timeout < Duration::from_millis(10) {
            bad("wasm.call_timeout", "must be at least 10ms".into());
        }

        let s = &self.stages;
        if s.pipeline.is_some()
            && (s.deserialize.is_some() || s.transform.is_some() || s.route.is_some())
        {
            bad(
                "stages.pipeline",
                "cannot be combined with stages.deserialize, stages.transform or stages.route: \
                 a pipeline component runs all three"
                    .into(),
            );
        }
        for (name, stage) in self.stage_configs() {
            let path = self.resolve(&stage.component);
            if !path.is_file() {
                bad(
                    &format!("stages.{name}.component"),
                    format!("component file {} does not exist", path.display()),
                );
            }
            for dir in &stage.grants.read_only_dirs {
                let path = self.resolve(dir);
                if !path.is_dir() {
                    bad(
                        &format!("stages.{name}.grants.read_only_dirs"),
                        format!("{} is not a directory", path.display()),
                    );
                }
            }
        }

        if self.sinks.is_empty() {
            bad("sinks", "at least one sink is required".into());
        }
        for (name, sink) in &self.sinks {
            sink.problems(name, &mut bad);
        }
        match &self.default_sink {
            Some(d) if !self.sinks.contains_key(d) => bad(
                "default_sink",
                format!(
                    "names sink {d:?}, which is not in sinks ({})",
                    self.sink_names()
                ),
            ),
            None if self.sinks.len() > 1 => bad(
                "default_sink",
                format!(
                    "is required when there is more than one sink ({})",
                    self.sink_names()
                ),
            ),
            _ => {}
        }
        // The key whose policy is dead_letter, if any (the global one first).
        let dead_letter_key =
            std::iter::once(("errors.policy".to_string(), self.errors.policy))
                .chain(self.stage_configs().into_iter().filter_map(|(name, s)| {
                    s.on_error.map(|p| (format!("stages.{name}.on_error"), p))
                }))
                .find(|(_, p)| *p == ErrorPolicy::DeadLetter)
                .map(|(k, _)| k);
        match (dead_letter_key, &self.errors.dead_letter) {
            (Some(key), None) => bad(
                "errors.dead_letter",
                format!("is required when {key} is dead_letter"),
            ),
            (Some(_), Some(dl)) => {
                let sink = dl.sink.as_deref().unwrap_or(self.default_sink_name());
                if self.sinks.get(sink).is_some_and(|s| s.pulsar.is_some()) {
                    if let Err(why) = pulsar_topic::check(&dl.topic) {
                        bad("errors.dead_letter.topic", why);
                    }
                }
                if let Some(s) = &dl.sink {
                    if !self.sinks.contains_key(s) {
                        bad(
                            "errors.dead_letter.sink",
                            format!(
                                "names sink {s:?}, which is not in sinks ({})",
                                self.sink_names()
                            ),
                        );
                    }
                }
            }
            (None, Some(_)) => bad(
                "errors.dead_letter",
                "is only used when errors.policy or a stage's on_error is dead_letter".into(),
            ),
            _ => {}
        }
        self.metrics.problems(&mut bad);
        out
    }

    fn sink_names(&self) -> String {
        self.sinks.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// The configured stages by name, in the order they run.
    pub fn stage_configs(&self) -> Vec<(&'static str, &StageConfig)> {
        let s = &self.stages;
        [
            ("pipeline", &s.pipeline),
            ("deserialize", &s.deserialize),
            ("transform", &s.transform),
            ("route", &s.route),
        ]
        .into_iter()
        .filter_map(|(n, c)| c.as_ref().map(|c| (n, c)))
        .collect()
    }

    /// The policy for a failure reported in `stage` (`pipeline`, `deserialize`,
    /// `transform` or `route`), with the key that chose it: a `pipeline` component's
    /// `on_error` covers every failure of the fused call; otherwise the failing stage's
    /// `on_error`; otherwise `errors.policy`.
    pub fn error_policy(&self, stage: &str) -> (ErrorPolicy, String) {
        let s = &self.stages;
        let (name, configured) = match (&s.pipeline, stage) {
            (Some(p), _) => ("pipeline", Some(p)),
            (None, "deserialize") => ("deserialize", s.deserialize.as_ref()),
            (None, "transform") => ("transform", s.transform.as_ref()),
            (None, "route") => ("route", s.route.as_ref()),
            (None, _) => ("", None),
        };
        match configured.and_then(|c| c.on_error) {
            Some(p) => (p, format!("stages.{name}.on_error")),
            None => (self.errors.policy, "errors.policy".to_string()),
        }
    }

    /// A path from the config, made absolute against the config's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Lease table name.
    pub fn lease_table(&self) -> &str {
        self.leases.table.as_deref().unwrap_or(&self.application)
    }

    /// Name of the sink used when a destination names none.
    pub fn default_sink_name(&self) -> &str {
        match &self.default_sink {
            Some(d) => d,
            // `problems` guarantees exactly one sink here.
            None => self.sinks.keys().next().map(String::as_str).unwrap_or(""),
        }
    }

    /// The streams to consume with their start positions.
    pub fn streams(&self) -> Vec<StreamSpec> {
        let parse = |t: Option<&String>| t.and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        let top_at = parse(self.source.at_timestamp.as_ref());
        if let Some(name) = &self.source.stream {
            return vec![StreamSpec {
                name: name.clone(),
                initial_position: self.source.initial_position,
                at_timestamp: top_at,
                lease_prefix: None,
                retrieval: self.source.retrieval,
            }];
        }
        self.source
            .streams
            .iter()
            .map(|s| StreamSpec {
                name: s.name.clone(),
                initial_position: s.initial_position.unwrap_or(self.source.initial_position),
                at_timestamp: parse(s.at_timestamp.as_ref()).or(top_at),
                lease_prefix: Some(format!("{}:", s.name)),
                retrieval: s.retrieval.unwrap_or(self.source.retrieval),
            })
            .collect()
    }

    /// The name of the enhanced fan-out consumer.
    pub fn fan_out_consumer(&self) -> &str {
        self.source
            .fan_out
            .consumer_name
            .as_deref()
            .unwrap_or(&self.application)
    }

    /// The CloudWatch namespace of the metrics.
    pub fn metrics_namespace(&self) -> &str {
        self.metrics
            .namespace
            .as_deref()
            .unwrap_or(&self.application)
    }

    /// The stream named first (for commands that write to one stream).
    pub fn first_stream(&self) -> String {
        self.streams()
            .into_iter()
            .next()
            .map(|s| s.name)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
application: app
source:
  stream: orders
sinks:
  main:
    pulsar:
      service_url: pulsar://127.0.0.1:6650
      topic: persistent://public/default/out
";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, "test.yaml", PathBuf::from("."))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).expect("minimal config parses");
        assert_eq!(c.lease_table(), "app");
        assert_eq!(c.default_sink_name(), "main");
        assert_eq!(c.source.initial_position, InitialPosition::Latest);
        assert_eq!(c.source.polling.interval, Duration::from_millis(200));
        assert_eq!(c.errors.policy, ErrorPolicy::Fail);
        assert!(c.stage_configs().is_empty());
    }

    #[test]
    fn static_credentials_are_redacted_in_debug() {
        let text = format!(
            "{MINIMAL}aws:\n  credentials:\n    type: static\n    access_key_id: AKIDEXAMPLE\n    secret_access_key: hunter2secret\n"
        );
        let c = parse(&text).expect("parses");
        let dbg = format!("{c:?}");
        assert!(dbg.contains("AKIDEXAMPLE"));
        assert!(!dbg.contains("hunter2secret"), "{dbg}");
    }

    #[test]
    fn semantic_problems_name_path_and_line() {
        let text = MINIMAL.replace(
            "stream: orders",
            "stream: orders\n  initial_position: at_timestamp",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "test.yaml: source.at_timestamp: is required when initial_position is at_timestamp"
        );
        let text = format!("{MINIMAL}default_sink: other\n");
        let err = parse(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "test.yaml: default_sink: names sink \"other\", which is not in sinks (main) at line 9"
        );
    }

    #[test]
    fn several_streams_resolve_their_start_positions() {
        let text = MINIMAL.replace(
            "  stream: orders\n",
            "  initial_position: trim_horizon\n  streams:\n    - name: a\n    - name: b\n      initial_position: at_timestamp\n      at_timestamp: \"2026-01-31T12:00:00Z\"\n",
        );
        let c = parse(&text).expect("parses");
        let s = c.streams();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "a");
        assert_eq!(s[0].initial_position, InitialPosition::TrimHorizon);
        assert_eq!(s[0].lease_prefix.as_deref(), Some("a:"));
        assert_eq!(s[1].initial_position, InitialPosition::AtTimestamp);
        assert_eq!(
            s[1].at_timestamp,
            Some(humantime::parse_rfc3339("2026-01-31T12:00:00Z").expect("time"))
        );
        let one = parse(MINIMAL).expect("parses").streams();
        assert_eq!(
            one[0].lease_prefix, None,
            "one stream: leases keyed by shard id"
        );
    }

    #[test]
    fn a_stage_on_error_overrides_the_global_policy() {
        let stages = "stages:\n  transform:\n    component: Cargo.toml\n    on_error: skip\n  route:\n    component: Cargo.toml\n";
        let c = parse(&format!("{MINIMAL}{stages}")).expect("parses");
        assert_eq!(
            c.error_policy("transform"),
            (ErrorPolicy::Skip, "stages.transform.on_error".into())
        );
        assert_eq!(
            c.error_policy("route"),
            (ErrorPolicy::Fail, "errors.policy".into())
        );
        assert_eq!(
            c.error_policy("deserialize"),
            (ErrorPolicy::Fail, "errors.policy".into()),
            "a stage that is not configured follows errors.policy"
        );
        // A pipeline component's on_error covers whatever stage its failure names.
        let pipeline = "stages:\n  pipeline:\n    component: Cargo.toml\n    on_error: skip\nerrors:\n  policy: fail\n";
        let c = parse(&format!("{MINIMAL}{pipeline}")).expect("parses");
        for stage in ["pipeline", "deserialize", "transform", "route"] {
            assert_eq!(
                c.error_policy(stage),
                (ErrorPolicy::Skip, "stages.pipeline.on_error".into())
            );
        }
    }

    #[test]
    fn a_stage_dead_letter_policy_needs_a_dead_letter_destination() {
        let stages = "stages:\n  pipeline:\n    component: Cargo.toml\n    on_error: dead_letter\n";
        let err = parse(&format!("{MINIMAL}{stages}"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "test.yaml: errors.dead_letter: is required when stages.pipeline.on_error is dead_letter"
        );
        let ok = format!("{MINIMAL}{stages}errors:\n  dead_letter:\n    topic: dlq\n");
        let c = parse(&ok).expect("a stage's dead_letter uses errors.dead_letter");
        assert_eq!(c.error_policy("route").0, ErrorPolicy::DeadLetter);
        let unused = format!("{MINIMAL}errors:\n  dead_letter:\n    topic: dlq\n");
        let err = parse(&unused).unwrap_err().to_string();
        assert!(
            err.contains("errors.dead_letter: is only used when"),
            "{err}"
        );
    }

    #[test]
    fn granted_directories_must_exist() {
        let text = format!(
            "{MINIMAL}stages:\n  pipeline:\n    component: Cargo.toml\n    grants:\n      read_only_dirs: [src, nowhere]\n      env:\n        A: 1\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("stages.pipeline.grants.read_only_dirs: ./nowhere is not a directory"),
            "{err}"
        );
        assert!(!err.contains("./src"), "{err}");
        let text = format!(
            "{MINIMAL}stages:\n  pipeline:\n    component: Cargo.toml\n    grants:\n      network: true\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `network`"), "{err}");
    }

    #[test]
    fn settings_accept_scalars_only() {
        let text = format!(
            "{MINIMAL}stages:\n  transform:\n    component: Cargo.toml\n    settings:\n      a: 1\n      b: true\n      c: text\n"
        );
        let c = parse(&text).expect("parses");
        let t = c.stages.transform.expect("transform stage");
        assert_eq!(t.settings["a"], SettingValue("1".into()));
        assert_eq!(t.settings["b"], SettingValue("true".into()));
        let text = format!(
            "{MINIMAL}stages:\n  transform:\n    component: Cargo.toml\n    settings:\n      a: [1, 2]\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("stages.transform.settings: a setting must be a string")
                && err.contains("at line 13"),
            "{err}"
        );
    }
}
