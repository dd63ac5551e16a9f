//! One live instance of a component: its store, its limits and its captured output.
//!
//! A trap leaves an instance unusable, so every failed call replaces the instance with a
//! fresh one from the pre-linked component (well under a millisecond).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::bindings::{
    deserializer, processor, router, transformer, BatchContext, Destination, Event, Processed,
    SourceRecord, Transformed,
};
use super::component::ComponentInfo;
use super::error::WasmError;
use super::grants::Grants;
use super::host_state::HostState;

/// Most guest stdout/stderr kept per instance; a guest that writes more is recycled.
const OUTPUT_CAPACITY: usize = 256 * 1024;
const OUTPUT_RECYCLE_AT: usize = 64 * 1024;

/// Why a call did not return a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("component {component} trapped: {message}")]
    Trap { component: String, message: String },
    #[error("component {component} ran longer than the call timeout of {timeout:?}")]
    Timeout {
        component: String,
        timeout: std::time::Duration,
    },
    #[error("component {component} needed more memory than wasm.memory_limit ({limit} bytes)")]
    Memory { component: String, limit: u64 },
    #[error("component {component} broke the stage contract: {message}")]
    Contract { component: String, message: String },
}

/// A live instance with typed handles to whatever stage interfaces it exports.
pub(crate) struct Instance {
    info: Arc<ComponentInfo>,
    settings: Arc<Vec<(String, String)>>,
    grants: Arc<Grants>,
    store: Store<HostState>,
    output: MemoryOutputPipe,
    processor: Option<processor::Guest>,
    deserializer: Option<deserializer::Guest>,
    transformer: Option<transformer::Guest>,
    router: Option<router::Guest>,
    metrics: crate::wasm::metrics::InstanceMetrics,
}

impl Instance {
    pub(crate) fn new(
        info: Arc<ComponentInfo>,
        settings: Arc<Vec<(String, String)>>,
        grants: Arc<Grants>,
    ) -> Result<Self, WasmError> {
        let output = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        // Unused (not linked) when the component imports no WASI.
        let wasi = grants
            .wasi_ctx(&output)
            .map_err(|message| WasmError::Instantiate {
                component: info.name.clone(),
                message,
            })?;
        let limits = StoreLimitsBuilder::new()
            .memory_size(info.engine.memory_limit as usize)
            .trap_on_grow_failure(true)
            .instances(16)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limits,
            component: Arc::from(info.name.as_str()),
            settings: settings.clone(),
            printed: 0,
        };
        let mut store = Store::new(&info.engine.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(info.engine.deadline_ticks());
        store.epoch_deadline_trap();
        let err = |e: wasmtime::Error| WasmError::Instantiate {
            component: info.name.clone(),
            message: format!("{e:#}"),
        };
        let instance = info.pre.instantiate(&mut store).map_err(err)?;
        let processor = match &info.processor {
            Some(i) => Some(i.load(&mut store, &instance).map_err(err)?),
            None => None,
        };
        let deserializer = match &info.deserializer {
            Some(i) => Some(i.load(&mut store, &instance).map_err(err)?),
            None => None,
        };
        let transformer = match &info.transformer {
            Some(i) => Some(i.load(&mut store, &instance).map_err(err)?),
            None => None,
        };
        let router = match &info.router {
            Some(i) => Some(i.load(&mut store, &instance).map_err(err)?),
            None => None,
        };
        Ok(Self {
            metrics: crate::wasm::metrics::InstanceMetrics::new(&info.name),
            info,
            settings,
            grants,
            store,
            output,
            processor,
            deserializer,
            transformer,
            router,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.info.name
    }

    pub(crate) fn process(
        &mut self,
        ctx: &BatchContext,
        records: &[SourceRecord],
    ) -> Result<Processed, CallError> {
        let Some(g) = self.processor.clone() else {
            return Err(self.contract("does not export processor"));
        };
        self.call(|store| g.call_process(store, ctx, records))
    }

    pub(crate) fn deserialize(
        &mut self,
        ctx: &BatchContext,
        records: &[SourceRecord],
    ) -> Result<Vec<Result<Event, String>>, CallError> {
        let Some(g) = self.deserializer.clone() else {
            return Err(self.contract("does not export deserializer"));
        };
        self.call(|store| g.call_deserialize(store, ctx, records))
    }

    pub(crate) fn transform(
        &mut self,
        ctx: &BatchContext,
        events: &[Event],
    ) -> Result<Transformed, CallError> {
        let Some(g) = self.transformer.clone() else {
            return Err(self.contract("does not export transformer"));
        };
        self.call(|store| g.call_transform(store, ctx, events))
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn route(
        &mut self,
        ctx: &BatchContext,
        events: &[Event],
    ) -> Result<Vec<Result<Vec<Destination>, String>>, CallError> {
        let Some(g) = self.router.clone() else {
            return Err(self.contract("does not export router"));
        };
        self.call(|store| g.call_route(store, ctx, events))
    }

    pub(crate) fn contract(&self, message: impl Into<String>) -> CallError {
        CallError::Contract {
            component: self.info.name.clone(),
            message: message.into(),
        }
    }

    /// Runs one call under the deadline; logs what the guest printed; on failure classifies
    /// the error and replaces the instance.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        self.store
            .set_epoch_deadline(self.info.engine.deadline_ticks());
        let result = f(&mut self.store);
        self.metrics.called(result.is_err());
        let printed = self.take_output();
        match result {
            Ok(v) => {
                if self.store.data().printed > OUTPUT_RECYCLE_AT {
                    self.recycle();
                }
                Ok(v)
            }
            Err(e) => {
                let err = self.classify(e, &printed);
                self.recycle();
                Err(err)
            }
        }
    }

    /// New text the guest wrote since the last call, logged line by line.
    fn take_output(&mut self) -> String {
        let all = self.output.contents();
        let before = self.store.data().printed.min(all.len());
        if before == all.len() {
            return String::new();
        }
        let text = String::from_utf8_lossy(&all[before..]).into_owned();
        self.store.data_mut().printed = all.len();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(component = %self.info.name, "guest: {line}");
        }
        text
    }

    fn classify(&self, e: wasmtime::Error, printed: &str) -> CallError {
        let component = self.info.name.clone();
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return CallError::Timeout {
                component,
                timeout: self.info.engine.call_timeout,
            };
        }
        let chain = format!("{e:#}");
        if chain.contains("forcing trap when growing memory") {
            return CallError::Memory {
                component,
                limit: self.info.engine.memory_limit,
            };
        }
        // A Rust guest's panic message reaches us only through its stderr: put it first.
        let guest_said = printed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" | ");
        let message = if guest_said.is_empty() {
            chain
        } else {
            format!("{guest_said} ({})", first_line(&chain))
        };
        CallError::Trap { component, message }
    }

    fn recycle(&mut self) {
        self.metrics.recycled();
        match Instance::new(
            self.info.clone(),
            self.settings.clone(),
            self.grants.clone(),
        ) {
            Ok(fresh) => *self = fresh,
            // Instantiation worked before, so this is unexpected; the next call will fail
            // with CannotEnterComponent and be reported as a trap of this component.
            Err(e) => {
                tracing::error!(component = %self.info.name, error = %e, "cannot recycle instance")
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
