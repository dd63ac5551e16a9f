//! The Wasm path: guests against the same logic compiled natively, on batches of 1, 64 and
//! 512 records of about 100 bytes and about 1 KiB.
//!
//! `orders` (the example guest `guest-examples/rust-orders`: parse, validate, enrich, route):
//! - `native`: `orders::process` called directly (the ceiling);
//! - `wasm-processor`: one `processor.process` call per batch (the fused contract);
//! - `wasm-stages`: `deserialize`, `transform`, `route` as three calls per batch (the same
//!   rules in `tests/guests/orders-handwritten`, which exports each stage; the SDK-built
//!   example exports the fused call only).
//!
//! `identity` (the test guest `tests/guests/passthrough`: every record out as it came in),
//! which isolates what a stage costs besides its own logic — the crossing:
//! - `native`: the same output built on the host (payload copied, as the host must);
//! - `wasm-processor`: one call per batch.
//!
//! Needs the guests built: `guest-examples/build.sh`. Run: `cargo bench --bench wasm_path`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardline::config::Config;
use shardline::wasm::bindings::{BatchContext, Event, Output, SourceRecord};
use shardline::wasm::{StagePlan, WasmEngine};

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../guest-examples/rust-orders/src/orders.rs"]
mod orders;

fn guest(file: &str) -> PathBuf {
    let dir = std::env::var_os("SHARDLINE_GUESTS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guests"));
    let p = dir.join(file);
    assert!(
        p.is_file(),
        "{} missing: run guest-examples/build.sh",
        p.display()
    );
    p
}

/// Valid JSON orders of about `size` bytes (a `note` field pads them past the ~100 bytes
/// of the bare order).
fn records(n: usize, size: usize) -> Vec<SourceRecord> {
    (0..n)
        .map(|i| {
            let mut data = format!(
                r#"{{"id":"o-{i:06}","customer":"c-{:04}","amount":{}.{:02},"currency":"EUR","region":"eu","channel":"web"}}"#,
                i % 9973,
                1 + i % 500,
                i % 100
            );
            if size > data.len() + 12 {
                let pad = "n".repeat(size - data.len() - 10);
                data.insert_str(data.len() - 1, &format!(r#","note":"{pad}""#));
            }
            SourceRecord {
                partition_key: format!("o-{i:06}"),
                arrival_millis: 1_700_000_000_000 + i as i64,
                data: data.into_bytes(),
            }
        })
        .collect()
}

fn plan(file: &str, stages: &str) -> StagePlan {
    let wasm = guest(file);
    let yaml = format!(
        "application: bench\nsource:\n  stream: s\nsinks:\n  p:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: t\n{}",
        stages.replace("WASM", &wasm.display().to_string())
    );
    let config = Config::from_yaml(&yaml, "bench.yaml", PathBuf::from(".")).expect("bench config");
    let engine = WasmEngine::new(
        WasmEngine::default_cache_dir(),
        config.wasm.memory_limit,
        config.wasm.call_timeout,
    )
    .expect("engine");
    StagePlan::load(&engine, &config).expect("load guest")
}

fn context() -> BatchContext {
    BatchContext {
        stream_name: "orders".into(),
        shard_id: "shardId-000000000000".into(),
        millis_behind_latest: Some(0),
    }
}

const BATCHES: [usize; 3] = [1, 64, 512];
const SIZES: [(usize, &str); 2] = [(100, "100B"), (1024, "1KiB")];

fn checked_records(batch: usize, size: usize) -> Vec<SourceRecord> {
    let recs = records(batch, size);
    let bytes: usize = recs.iter().map(|r| r.data.len()).sum();
    assert!(
        (size * 9 / 10..=size * 11 / 10).contains(&(bytes / batch)),
        "records are ~{size} bytes, got {}",
        bytes / batch
    );
    recs
}

fn bench_orders(c: &mut Criterion) {
    let ctx = context();
    let fused = plan("orders.wasm", "stages:\n  pipeline:\n    component: WASM\n");
    let split = plan(
        "orders-handwritten.wasm",
        "stages:\n  deserialize:\n    component: WASM\n  transform:\n    component: WASM\n  route:\n    component: WASM\n",
    );
    let settings = orders::Settings::default();
    for (size, label) in SIZES {
        let mut group = c.benchmark_group(format!("orders-{label}"));
        for batch in BATCHES {
            let recs = checked_records(batch, size);
            group.throughput(Throughput::Elements(batch as u64));

            group.bench_with_input(BenchmarkId::new("native", batch), &recs, |b, recs| {
                b.iter(|| {
                    let mut n = 0;
                    for r in recs {
                        if let Ok(Some(p)) = orders::process(&r.data, &settings) {
                            n += p.topics.len();
                        }
                    }
                    assert_eq!(n, recs.len());
                })
            });

            let mut set = fused.instantiate().expect("instantiate");
            group.bench_with_input(
                BenchmarkId::new("wasm-processor", batch),
                &recs,
                |b, recs| {
                    b.iter(|| {
                        let out = set.run(&ctx, recs, true);
                        assert_eq!(out.outputs.len(), recs.len());
                    })
                },
            );

            let mut set = split.instantiate().expect("instantiate");
            group.bench_with_input(BenchmarkId::new("wasm-stages", batch), &recs, |b, recs| {
                b.iter(|| {
                    let out = set.run(&ctx, recs, true);
                    assert_eq!(out.outputs.len(), recs.len());
                })
            });
        }
        group.finish();
    }
}

/// What the identity guest returns, built natively: each record's payload as an event, in
/// order, no destinations (the default sink).
fn identity_native(recs: &[SourceRecord]) -> Vec<Output> {
    recs.iter()
        .enumerate()
        .map(|(i, r)| Output {
            index: i as u32,
            event: Event {
                key: None,
                payload: r.data.clone(),
                properties: Vec::new(),
                event_time_millis: None,
            },
            destinations: Vec::new(),
        })
        .collect()
}

fn bench_identity(c: &mut Criterion) {
    let ctx = context();
    let fused = plan(
        "passthrough.wasm",
        "stages:\n  pipeline:\n    component: WASM\n",
    );
    for (size, label) in SIZES {
        let mut group = c.benchmark_group(format!("identity-{label}"));
        for batch in BATCHES {
            let recs = checked_records(batch, size);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new("native", batch), &recs, |b, recs| {
                b.iter(|| {
                    let out = identity_native(recs);
                    assert_eq!(out.len(), recs.len());
                    out
                })
            });
            let mut set = fused.instantiate().expect("instantiate");
            group.bench_with_input(
                BenchmarkId::new("wasm-processor", batch),
                &recs,
                |b, recs| {
                    b.iter(|| {
                        let out = set.run(&ctx, recs, true);
                        assert_eq!(out.outputs.len(), recs.len());
                        out
                    })
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, bench_orders, bench_identity);
criterion_main!(benches);
