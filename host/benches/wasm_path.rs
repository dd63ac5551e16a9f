//! The Wasm path: the example orders guest (`guest-examples/rust-orders`) against the same
//! logic compiled natively, on batches of 1, 64 and 512 records of about 100 bytes.
//!
//! - `native`: `orders::process` called directly (the ceiling);
//! - `wasm-processor`: one `processor.process` call per batch (the fused contract);
//! - `wasm-stages`: `deserialize`, `transform`, `route` as three calls per batch.
//!
//! Needs the guest built: `guest-examples/build.sh`. Run: `cargo bench --bench wasm_path`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardline::config::Config;
use shardline::wasm::bindings::{BatchContext, SourceRecord};
use shardline::wasm::{StagePlan, WasmEngine};

#[allow(dead_code, clippy::all)]
#[path = "../../guest-examples/rust-orders/src/orders.rs"]
mod orders;

fn guest() -> PathBuf {
    let dir = std::env::var_os("SHARDLINE_GUESTS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guests"));
    let p = dir.join("orders.wasm");
    assert!(
        p.is_file(),
        "{} missing: run guest-examples/build.sh",
        p.display()
    );
    p
}

/// ~100-byte JSON orders, all valid.
fn records(n: usize) -> Vec<SourceRecord> {
    (0..n)
        .map(|i| {
            let data = format!(
                r#"{{"id":"o-{i:06}","customer":"c-{:04}","amount":{}.{:02},"currency":"EUR","region":"eu","channel":"web"}}"#,
                i % 9973,
                1 + i % 500,
                i % 100
            )
            .into_bytes();
            SourceRecord {
                partition_key: format!("o-{i:06}"),
                arrival_millis: 1_700_000_000_000 + i as i64,
                data,
            }
        })
        .collect()
}

fn plan(stages: &str) -> StagePlan {
    let wasm = guest();
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

fn bench(c: &mut Criterion) {
    let ctx = BatchContext {
        stream_name: "orders".into(),
        shard_id: "shardId-000000000000".into(),
        millis_behind_latest: Some(0),
    };
    let fused = plan("stages:\n  pipeline:\n    component: WASM\n");
    let split = plan(
        "stages:\n  deserialize:\n    component: WASM\n  transform:\n    component: WASM\n  route:\n    component: WASM\n",
    );
    let settings = orders::Settings::default();
    let mut group = c.benchmark_group("orders");
    for batch in [1usize, 64, 512] {
        let recs = records(batch);
        let bytes: usize = recs.iter().map(|r| r.data.len()).sum();
        assert!(
            (90..=110).contains(&(bytes / batch)),
            "records are ~100 bytes"
        );
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

criterion_group!(benches, bench);
criterion_main!(benches);
