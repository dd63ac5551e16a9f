//! Shardline's integration tests, one binary (one link of wasmtime, the AWS SDK and Pulsar
//! for all of them), one module per area. Most need the local stack (`dev/stack up`,
//! `eval "$(dev/stack env)"`) and the guest components (`guest-examples/build.sh`).
//!
//! Two modules need the machine to themselves and are left out of a plain `cargo test` by
//! `#[ignore]`: `chaos` stops and starts the stack's services (every other test would see
//! them go), and `go_stress` keeps a core busy for minutes (timing-sensitive tests beside
//! it would slow down). `dev/test` runs them after the rest, alone:
//! `cargo test -p shardline --test it -- --ignored`.

mod support;

mod agg_interop;
mod aggregation;
mod chaos;
mod check_guest;
mod cli_errors;
mod config_golden;
mod convert_golden;
mod coordination;
mod credentials;
mod dedup;
mod fanout;
mod go_stress;
mod guest_golden;
mod guest_sdks;
mod handoff;
mod hot_reload;
mod migrate;
mod observability;
mod pipeline;
mod producer;
mod receive_queue;
mod try_golden;
mod wasm_sandbox;
