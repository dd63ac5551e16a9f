//! Duplicates per 10,000 records under each fault, with Pulsar deduplication off and on, on
//! the local stack (`dev/stack up` first): the scenarios of `tests/it/dedup.rs` (kill -9 of
//! the only worker three times; SplitShard and MergeShards with a kill -9 after each), with
//! `SHARDLINE_DEDUP_RECORDS` records (default 10,000). Prints one line per fault and mode.
//! Run: `cargo bench -p shardline --bench dedup`.

#[path = "../../tests/it/support/mod.rs"]
#[allow(dead_code)] // the bench uses a part of the tests' helpers
mod support;

use support::faults::{killed_three_times, split_and_merged, Outcome};
use support::tally;

fn report(fault: &str, dedup: bool, o: &Outcome) {
    let t = tally(&format!("{fault}, deduplication {dedup}"), &o.puts, &o.got);
    let per_10k = t.duplicated as f64 * 10_000.0 / t.put.max(1) as f64;
    println!(
        "{fault:<16} deduplication={dedup:<5} put={} lost={} duplicated={} per_10000={per_10k:.1} dropped_by_broker={}",
        t.put, t.lost, t.duplicated, o.dropped
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("SHARDLINE_DEDUP_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    for dedup in [false, true] {
        report("kill -9 x3", dedup, &killed_three_times(dedup, n).await);
        report("split+merge", dedup, &split_and_merged(dedup, n).await);
    }
}
