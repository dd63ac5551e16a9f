//! The Wasm engine: compilation settings, the compiled-component cache and the epoch clock
//! that enforces call deadlines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::artifact::{self, ArtifactKey};
use super::component::ComponentInfo;
use super::error::WasmError;

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
    /// The engine a config asks for: its `wasm.cache_dir` (relative to the config's
    /// folder; by default the user's cache), memory limit and call timeout.
    pub fn for_config(config: &crate::config::Config) -> Result<Self, WasmError> {
        Self::new(
            config
                .wasm
                .cache_dir
                .as_ref()
                .map(|p| config.resolve(p))
                .or_else(Self::default_cache_dir),
            config.wasm.memory_limit,
            config.wasm.call_timeout,
        )
    }

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
        if let Some(what) = not_a_component(bytes) {
            return Err(WasmError::Compile {
                path: path.to_path_buf(),
                message: what,
            });
        }
        // wasmtime's cause chain can span lines (byte lists): one line for the user.
        let compile_err = |e: wasmtime::Error| WasmError::Compile {
            path: path.to_path_buf(),
            message: format!("{e:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
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

/// What a file that is not a Wasm component is, in words a user can act on; `None` for a
/// component (whether it then compiles is the compiler's to say).
pub(crate) fn not_a_component(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.is_empty() {
        return Some("it is an empty file".into());
    }
    if !bytes.starts_with(MAGIC) || bytes.len() < 8 {
        let head = &bytes[..bytes.len().min(512)];
        let text = std::str::from_utf8(head)
            .map(|t| !t.contains('\0'))
            .unwrap_or_else(|e| e.valid_up_to() > head.len().saturating_sub(4));
        if head.starts_with(b"(module") || head.starts_with(b"(component") {
            return Some(
                "it is WebAssembly text (WAT); compile it to a binary component first".into(),
            );
        }
        return Some(if text {
            "it is a text file, not WebAssembly".into()
        } else {
            let shown: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!(
                "it is not WebAssembly (it starts with {}, not 00 61 73 6d)",
                shown.join(" ")
            )
        });
    }
    match bytes[4..8] {
        // Version 1, layer 0: a core module.
        [1, 0, 0, 0] => Some(
            "it is a core Wasm module, not a component: build for wasm32-wasip2, or wrap it \
             with `wasm-tools component new`"
                .into(),
        ),
        // Layer 1: a component (its version is the compiler's to judge).
        [_, _, 1, 0] => None,
        [v0, v1, l0, l1] => Some(format!(
            "it is WebAssembly of an unknown kind (version {v0:02x} {v1:02x}, layer {l0:02x} {l1:02x})"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod file_kind_tests {
    use super::not_a_component;

    #[test]
    fn says_what_a_file_is_in_one_line() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "an empty file"),
            (b"fn main() {}\n", "a text file"),
            (b"(module (func))", "WebAssembly text"),
            (b"\x7fELF\x02\x01\x01\0\0\0", "starts with 7f 45 4c 46"),
            (b"\0asm\x01\0\0\0", "a core Wasm module, not a component"),
            (b"\0asm\x02\0\x07\0", "unknown kind"),
        ];
        for (bytes, want) in cases {
            let got = not_a_component(bytes).expect("not a component");
            assert!(got.contains(want), "{got}");
            assert!(!got.contains('\n'), "one line: {got}");
        }
        assert_eq!(not_a_component(b"\0asm\x0d\0\x01\0"), None);
    }
}
