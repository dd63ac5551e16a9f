//! `stages:` and `wasm:` — the components that deserialize, transform and route records,
//! what each is granted and handed, and the limits every guest call runs under.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::errors::ErrorPolicy;
use super::units::{duration, size};

/// A stage of the Wasm path: a key of `stages`, and the stage a failure or a dead letter
/// names. `Pipeline` is one component that runs the other three in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Pipeline,
    Deserialize,
    Transform,
    Route,
}

impl StageKind {
    /// In the order they run (a pipeline runs alone).
    pub const ALL: [StageKind; 4] = [
        StageKind::Pipeline,
        StageKind::Deserialize,
        StageKind::Transform,
        StageKind::Route,
    ];

    /// The name in the config, the logs and dead letters.
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Pipeline => "pipeline",
            StageKind::Deserialize => "deserialize",
            StageKind::Transform => "transform",
            StageKind::Route => "route",
        }
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

impl StagesConfig {
    /// What makes a component's outputs differ between two runs over the same records:
    /// one line per stage granted clocks or random sources.
    pub fn nondeterminism(&self) -> Vec<String> {
        let kinds = [
            StageKind::Pipeline,
            StageKind::Deserialize,
            StageKind::Transform,
            StageKind::Route,
        ];
        let mut out = Vec::new();
        for kind in kinds {
            let Some(stage) = self.get(kind) else {
                continue;
            };
            let granted: Vec<&str> = [
                ("clocks", stage.grants.clocks),
                ("random", stage.grants.random),
            ]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
            if !granted.is_empty() {
                out.push(format!(
                    "stages.{kind} ({}) is granted {}",
                    stage.component.display(),
                    granted.join(" and ")
                ));
            }
        }
        out
    }

    /// The section of stage `kind`, when configured.
    pub fn get(&self, kind: StageKind) -> Option<&StageConfig> {
        match kind {
            StageKind::Pipeline => self.pipeline.as_ref(),
            StageKind::Deserialize => self.deserialize.as_ref(),
            StageKind::Transform => self.transform.as_ref(),
            StageKind::Route => self.route.as_ref(),
        }
    }
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

impl WasmConfig {
    /// What is wrong with `wasm`.
    pub(super) fn problems(&self, bad: &mut impl FnMut(&str, String)) {
        if self.memory_limit < (1 << 20) {
            bad("wasm.memory_limit", "must be at least 1MiB".into());
        }
        if self.call_timeout < Duration::from_millis(10) {
            bad("wasm.call_timeout", "must be at least 10ms".into());
        }
    }
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

mod defaults {
    use std::time::Duration;

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
