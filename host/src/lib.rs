//! Shardline reads Amazon Kinesis the way the KCL does — leases and checkpoints in a
//! DynamoDB table shared by every worker of an application — hands each batch of records
//! to WebAssembly components that deserialize, transform and route them, and publishes the
//! results to Apache Pulsar or to Kinesis streams (through its own KPL-grade producer),
//! checkpointing only what the sinks acknowledged. The producer also stands alone
//! (`shardline produce`).
//!
//! - [`config`]: the YAML file (at the bottom of the imports: it uses no other part).
//! - [`consumer`]: leases, shard sync, retrieval, shard consumers, the record processor,
//!   checkpoints.
//! - [`wasm`]: the component runtime and the stages.
//! - [`sinks`]: the sink contract, Pulsar and Kinesis, dead letters.
//! - [`producer`]: putting records into Kinesis as the KPL does.
//! - [`agg`], [`kinesis_limits`]: the KPL aggregation format, Kinesis's record and request
//!   limits.
//! - [`aws`]: SDK clients and the calls both consumer and producer make.
//! - [`metrics`], [`health`], [`progress`]: what operators watch (CloudWatch, Prometheus,
//!   /ready, the progress line).
//! - [`migrate`]: configs of Pulsar IO, StateFun, Samza and Flink, converted.
//! - [`cli`]: the `shardline` command; [`code_pages`]: start-up code handed back to the
//!   kernel.

/// `eprintln!` that cannot panic. `eprintln!` panics when stderr fails (a full disk under
/// the log file, a closed terminal), and a panic would stop the pipeline over a log line.
#[macro_export]
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that cannot panic (see [`report!`]).
#[macro_export]
macro_rules! report_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod agg;
pub mod aws;
pub mod cli;
pub mod code_pages;
pub mod config;
pub mod consumer;
pub mod fanout;
pub mod guest_build;
pub mod health;
pub mod kinesis_limits;
pub mod metrics;
pub mod migrate;
pub mod preflight;
pub mod produce;
pub mod producer;
pub mod progress;
pub mod scaffold;
mod sdk_answer;
pub mod sinks;
pub mod tail;
pub mod try_cmd;
pub mod wasm;
