//! Wasm stages: user components that deserialize, transform and route records.
//!
//! A component implements the WIT package `shardline:connector` (`wit/`). The host calls it
//! once per batch; a component that exports `processor` runs all three stages in one call,
//! otherwise each configured stage is called in turn and missing stages use built-in
//! defaults. Every call runs under a memory cap and a CPU deadline; a trap recycles the
//! instance, and the batch is retried record by record so only the records that fail meet
//! the error policy.

mod artifact;
pub mod bindings;
mod component;
mod engine;
mod error;
mod export;
pub mod grants;
mod host_state;
pub mod inspect;
mod instance;
pub mod metrics;
pub mod reload;
mod stages;

pub use component::ComponentInfo;
pub use engine::WasmEngine;
pub use error::WasmError;
pub use export::Export;
pub use instance::CallError;
pub use stages::{stage_kind, BatchOutcome, FailureKind, RecordFailure, StagePlan, StageSet};
