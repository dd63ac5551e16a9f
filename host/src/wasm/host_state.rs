//! What a store holds for its guest, and the host functions the guest imports (`host`:
//! logging and settings; WASI).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, host};

/// What a store holds for its guest.
pub struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
    pub(super) component: Arc<str>,
    pub(super) settings: Arc<Vec<(String, String)>>,
    /// Bytes of guest output already logged.
    pub(super) printed: usize,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::shardline::connector::types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let c = &*self.component;
        match level {
            host::Level::Trace => tracing::trace!(component = c, "{message}"),
            host::Level::Debug => tracing::debug!(component = c, "{message}"),
            host::Level::Info => tracing::info!(component = c, "{message}"),
            host::Level::Warn => tracing::warn!(component = c, "{message}"),
            host::Level::Error => tracing::error!(component = c, "{message}"),
        }
    }

    fn settings(&mut self) -> Vec<(String, String)> {
        self.settings.as_ref().clone()
    }

    fn setting(&mut self, key: String) -> Option<String> {
        self.settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
}
