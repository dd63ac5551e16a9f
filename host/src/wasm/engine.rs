//! The Wasm engine: compilation settings, the compiled-component cache and the epoch clock
//! that enforces call deadlines.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::component::{ComponentInfo, WasmError};

/// How often the epoch advances; call deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// One engine per process: compiled code, settings and the epoch ticker are shared by
/// every component and instance.
#[derive(Clone)]
pub struct WasmEngine {
    pub(crate) engine: Engine,
    cache_dir: Option<PathBuf>,
    pub(crate) memory_limit: u64,
    pub(crate) call_timeout: Duration,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("cache_dir", &self.cache_dir)
            .field("memory_limit", &self.memory_limit)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl WasmEngine {
    /// `cache_dir: None` compiles every time (tests); otherwise compiled components are kept
    /// there, keyed by the component's hash and the engine's compatibility hash.
    pub fn new(
        cache_dir: Option<PathBuf>,
        memory_limit: u64,
        call_timeout: Duration,
    ) -> Result<Self, WasmError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| WasmError::Engine(format!("{e:#}")))?;

        // The epoch clock: a thread that stops by itself once the engine is gone.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            })
            .map_err(|e| WasmError::Engine(format!("cannot start the epoch thread: {e}")))?;

        Ok(Self {
            engine,
            cache_dir,
            memory_limit,
            call_timeout,
        })
    }

    /// The default cache folder: `$XDG_CACHE_HOME/shardline/components` or
    /// `~/.cache/shardline/components`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("shardline").join("components"))
    }

    /// Deadline of one call, in epoch ticks.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        (self.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }

    /// Loads a component from a file (through the cache) and links it against the host.
    pub fn load(&self, path: &Path, name: &str) -> Result<Arc<ComponentInfo>, WasmError> {
        let component = self.compile(path)?;
        ComponentInfo::link(self, name, path, component).map(Arc::new)
    }

    /// Compiles a component file (through the cache), without linking it.
    pub(crate) fn compile(&self, path: &Path) -> Result<Component, WasmError> {
        let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.compile_cached(&bytes, path)
    }

    fn compile_cached(&self, bytes: &[u8], path: &Path) -> Result<Component, WasmError> {
        let compile = || {
            Component::new(&self.engine, bytes).map_err(|e| WasmError::Compile {
                path: path.to_path_buf(),
                message: format!("{e:#}"),
            })
        };
        let Some(dir) = &self.cache_dir else {
            return compile();
        };
        let artifact = dir.join(format!("{}.cwasm", self.cache_key(bytes)));
        if artifact.is_file() {
            match load_artifact(&self.engine, &artifact) {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(
                    artifact = %artifact.display(),
                    error = %e,
                    "cached component is unusable; compiling again"
                ),
            }
        }
        // Not cached: compile once, keep the artifact for the next start.
        let serialized =
            self.engine
                .precompile_component(bytes)
                .map_err(|e| WasmError::Compile {
                    path: path.to_path_buf(),
                    message: format!("{e:#}"),
                })?;
        if let Err(e) = store_artifact(dir, &artifact, &serialized) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot cache the compiled component");
            return compile();
        }
        load_artifact(&self.engine, &artifact).or_else(|_| compile())
    }

    /// Component hash + engine compatibility hash: an artifact made with other settings or
    /// another wasmtime is never loaded.
    fn cache_key(&self, bytes: &[u8]) -> String {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let mut h = Sha256::new();
        h.update(bytes);
        h.update(engine_hash.finish().to_le_bytes());
        hex::encode(&h.finalize()[..20])
    }
}

fn store_artifact(dir: &Path, artifact: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, artifact)
}

#[allow(unsafe_code)]
fn load_artifact(engine: &Engine, artifact: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts its input to be an artifact this engine produced.
    // Artifacts are only ever written by `store_artifact` above, into Shardline's own cache
    // folder, under a name that includes the engine's compatibility hash; wasmtime checks
    // the header and refuses artifacts from other versions or settings.
    unsafe { Component::deserialize_file(engine, artifact) }
}
