//! Configuration: one YAML file says which stream to read, where leases and checkpoints
//! live, which Wasm stages run and where the records go.
//!
//! Unknown keys are errors. Every error names the key path (`sinks.main.pulsar.topic`) and,
//! where it is known, the line, so a typo is found without reading the code. Durations are
//! written with a unit (`200ms`, `10s`, `5m`), sizes like `64MiB`. Relative paths resolve
//! against the folder of the config file.

pub mod aws;
pub mod errors;
pub(crate) mod locate;
pub mod metrics;
pub mod nesting;
pub mod pulsar_topic;
pub mod sinks;
pub mod source;
pub mod stages;
pub mod suggest;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use self::aws::{AwsConfig, Credentials, Endpoints, ProxyConfig};
pub use self::errors::{DeadLetterConfig, ErrorPolicy, ErrorsConfig};
pub use self::sinks::{KinesisSinkConfig, PulsarBatching, PulsarSinkConfig, SinkConfig};
pub use self::source::{
    FanOutConfig, InitialPosition, PollingConfig, RetrievalMode, SourceConfig, StreamConfig,
    StreamSpec,
};
pub use self::stages::{
    GrantsConfig, SettingValue, StageConfig, StageKind, StagesConfig, WasmConfig,
};
use self::units::duration;

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
    /// How long a worker that asked for a lease in a graceful handoff (a steal) waits for
    /// its owner to checkpoint and hand it over before it takes it outright, counted from
    /// the request plus `duration` (the owner notices at its next renewal). The KCL 3.x
    /// `gracefulLeaseHandoffTimeoutMillis` (30s). `0s` turns graceful handoff off: steals
    /// take the lease at once, and its previous owner reads on until its next renewal.
    #[serde(
        default = "defaults::graceful_handoff_timeout",
        deserialize_with = "duration"
    )]
    pub graceful_handoff_timeout: Duration,
    /// How often a worker looks for leases handed to it (by a graceful handoff it asked
    /// for, or by a worker that shut down): a scan filtered on `leaseOwner`, between the
    /// full taking rounds.
    #[serde(
        default = "defaults::assignment_check_interval",
        deserialize_with = "duration"
    )]
    pub assignment_check_interval: Duration,
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
            graceful_handoff_timeout: defaults::graceful_handoff_timeout(),
            assignment_check_interval: defaults::assignment_check_interval(),
        }
    }
}

impl LeaseConfig {
    /// What is wrong with `leases`.
    pub(super) fn problems(&self, bad: &mut impl FnMut(&str, String)) {
        if self.duration < Duration::from_secs(1) {
            bad("leases.duration", "must be at least 1s".into());
        }
        if self.renew_interval() * 2 > self.duration {
            bad(
                "leases.renew_interval",
                format!(
                    "must be at most half of leases.duration ({:?}) so a lease survives one failed renewal",
                    self.duration
                ),
            );
        }
        if self.max_per_worker == Some(0) {
            bad("leases.max_per_worker", "must be at least 1".into());
        }
        if self.assignment_check_interval < Duration::from_millis(100) {
            bad(
                "leases.assignment_check_interval",
                "must be at least 100ms (each check scans the lease table)".into(),
            );
        }
    }

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

mod defaults {
    use std::time::Duration;

    pub fn lease_duration() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_steal() -> usize {
        1
    }
    pub fn shard_sync_interval() -> Duration {
        Duration::from_secs(60)
    }
    /// The KCL 3.x default `gracefulLeaseHandoffTimeoutMillis`.
    pub fn graceful_handoff_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn assignment_check_interval() -> Duration {
        Duration::from_millis(500)
    }
    pub fn checkpoint_interval() -> Duration {
        Duration::from_secs(10)
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
    /// With a deduplicating sink: what voids its guarantee, one warning each. Replays are
    /// deduplicated only if the components give the same outputs for the same records.
    pub fn deduplication_warnings(&self) -> Vec<String> {
        let deduplicating: Vec<&str> = self
            .sinks
            .iter()
            .filter(|(_, s)| s.pulsar.as_ref().is_some_and(|p| p.deduplication))
            .map(|(name, _)| name.as_str())
            .collect();
        if deduplicating.is_empty() {
            return Vec::new();
        }
        self.stages
            .nondeterminism()
            .into_iter()
            .map(|why| {
                format!(
                    "sink {} deduplicates replays on the assumption that components are \
                     deterministic, but {why}: a replay after a failure may give other outputs, \
                     which can then be dropped or stored twice",
                    deduplicating.join(", ")
                )
            })
            .collect()
    }

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
        self.source.problems(&mut bad);
        self.leases.problems(&mut bad);
        self.wasm.problems(&mut bad);
        self.stage_problems(&mut bad);

        if self.sinks.is_empty() {
            bad("sinks", "at least one sink is required".into());
        }
        for (name, sink) in &self.sinks {
            sink.problems(name, &mut bad);
        }
        self.routing_problems(&mut bad);
        self.metrics.problems(&mut bad);
        out
    }

    /// What is wrong with `stages`: how they combine, and the files they name.
    fn stage_problems(&self, bad: &mut impl FnMut(&str, String)) {
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
    }

    /// What is wrong with where events go: the default sink, the dead-letter destination.
    fn routing_problems(&self, bad: &mut impl FnMut(&str, String)) {
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
    }

    fn sink_names(&self) -> String {
        self.sinks.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// The configured stages, in the order they run.
    pub fn stage_configs(&self) -> Vec<(StageKind, &StageConfig)> {
        StageKind::ALL
            .into_iter()
            .filter_map(|k| self.stages.get(k).map(|c| (k, c)))
            .collect()
    }

    /// The policy for a failure reported in `stage`, with the key that chose it: a
    /// `pipeline` component's `on_error` covers every failure of the fused call; otherwise
    /// the failing stage's `on_error`; otherwise `errors.policy`.
    pub fn error_policy(&self, stage: StageKind) -> (ErrorPolicy, String) {
        let s = &self.stages;
        let (kind, configured) = match &s.pipeline {
            Some(p) => (StageKind::Pipeline, Some(p)),
            None => (stage, s.get(stage)),
        };
        match configured.and_then(|c| c.on_error) {
            Some(p) => (p, format!("stages.{kind}.on_error")),
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
mod tests;
