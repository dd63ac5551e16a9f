//! `errors:` — what happens to a record a stage refuses or cannot process: stop, skip, or
//! send it to a dead-letter destination.

use serde::Deserialize;

/// What happens to a record a stage refuses or cannot process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsConfig {
    #[serde(default)]
    pub policy: ErrorPolicy,
    /// Required with `policy: dead_letter`.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// Stop the worker; nothing at or after the failed record is checkpointed.
    #[default]
    Fail,
    /// Log, count and acknowledge the record without delivering it.
    Skip,
    /// Publish the original record with the reason to `errors.dead_letter`.
    DeadLetter,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Sink name; defaults to the default sink.
    #[serde(default)]
    pub sink: Option<String>,
    pub topic: String,
}
