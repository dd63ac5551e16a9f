//! The Wasm engine: compilation settings, the compiled-component cache and the epoch clock
//! that enforces call deadlines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::artifact::{self, ArtifactKey};
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
    /// there as verified [artifacts](super::artifact), keyed by the component's hash and the
    /// engine's compatibility hash.
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
        let compile_err = |e: wasmtime::Error| WasmError::Compile {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let compile = || Component::new(&self.engine, bytes).map_err(compile_err);
        let Some(dir) = &self.cache_dir else {
            return compile();
        };
        let key = ArtifactKey::new(&self.engine, bytes);
        if key.path(dir).is_file() {
            match artifact::load(&self.engine, dir, &key) {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(
                    artifact = %key.path(dir).display(),
                    component = %path.display(),
                    "cached artifact not used ({e}); compiling again"
                ),
            }
        }
        // Not cached: compile once, keep the artifact for the next start.
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(compile_err)?;
        if let Err(e) = artifact::store(dir, &key, &compiled) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot cache the compiled component");
        }
        artifact::load(&self.engine, dir, &key).or_else(|_| compile())
    }
}
