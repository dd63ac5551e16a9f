//! Why a component cannot be used: the one error of loading, linking and instantiating.

use std::path::PathBuf;

use super::export::Export;

/// Why a component cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("cannot set up the Wasm engine: {0}")]
    Engine(String),
    #[error("cannot read component {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid Wasm component: {message}", path.display())]
    Compile { path: PathBuf, message: String },
    #[error("component {component} ({}) cannot be linked: {message}", path.display())]
    Link {
        component: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "component {component} ({}) does not export {missing}, which stage {stage} needs; it exports: {}",
        path.display(),
        if exports.is_empty() { "no shardline:connector interface".to_string() } else { exports.join(", ") }
    )]
    MissingExport {
        component: String,
        path: PathBuf,
        stage: String,
        missing: Export,
        exports: Vec<String>,
    },
    #[error("component {component}: cannot instantiate: {message}")]
    Instantiate { component: String, message: String },
}
