//! A loaded component: compiled code linked against the host, with the stage interfaces it
//! exports resolved once, before any instance exists.

use std::fmt;
use std::path::{Path, PathBuf};

use wasmtime::component::{Component, InstancePre, Linker};

use super::bindings::{self, deserializer, processor, router, transformer};
use super::engine::WasmEngine;
use super::error::WasmError;
use super::export::Export;
use super::host_state::HostState;

/// A component ready to be instantiated, with the indices of each exported interface.
pub struct ComponentInfo {
    pub name: String,
    pub path: PathBuf,
    pub(crate) engine: WasmEngine,
    /// Whether WASI is linked (the component imports some WASI interface).
    pub wasi: bool,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) processor: Option<processor::GuestIndices>,
    pub(crate) deserializer: Option<deserializer::GuestIndices>,
    pub(crate) transformer: Option<transformer::GuestIndices>,
    pub(crate) router: Option<router::GuestIndices>,
}

impl fmt::Debug for ComponentInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentInfo")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("exports", &self.exports())
            .finish()
    }
}

impl ComponentInfo {
    pub(crate) fn link(
        engine: &WasmEngine,
        name: &str,
        path: &Path,
        component: Component,
    ) -> Result<Self, WasmError> {
        let link_err = |e: wasmtime::Error| WasmError::Link {
            component: name.to_string(),
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let mut linker: Linker<HostState> = Linker::new(&engine.engine);
        // WASI p2 is linked only for a component that imports some of it (guests built for
        // wasm32-wasip2 do); what it reaches is the component's grants (see `grants`).
        let wasi = component
            .component_type()
            .imports(&engine.engine)
            .any(|(name, _)| name.starts_with("wasi:"));
        if wasi {
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_err)?;
        }
        bindings::Full::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(link_err)?;
        let pre = linker.instantiate_pre(&component).map_err(link_err)?;
        Ok(Self {
            name: name.to_string(),
            path: path.to_path_buf(),
            engine: engine.clone(),
            wasi,
            processor: processor::GuestIndices::new(&pre).ok(),
            deserializer: deserializer::GuestIndices::new(&pre).ok(),
            transformer: transformer::GuestIndices::new(&pre).ok(),
            router: router::GuestIndices::new(&pre).ok(),
            pre,
        })
    }

    /// The stage interfaces this component exports.
    pub fn exports(&self) -> Vec<Export> {
        Export::ALL.into_iter().filter(|e| self.has(*e)).collect()
    }

    pub fn has(&self, export: Export) -> bool {
        match export {
            Export::Processor => self.processor.is_some(),
            Export::Deserializer => self.deserializer.is_some(),
            Export::Transformer => self.transformer.is_some(),
            Export::Router => self.router.is_some(),
        }
    }

    /// Fails with a message naming the component, the stage and what it lacks.
    pub fn require(&self, export: Export, stage: &str) -> Result<(), WasmError> {
        if self.has(export) {
            return Ok(());
        }
        Err(WasmError::MissingExport {
            component: self.name.clone(),
            path: self.path.clone(),
            stage: stage.to_string(),
            missing: export,
            exports: self.exports().iter().map(|e| e.to_string()).collect(),
        })
    }
}
