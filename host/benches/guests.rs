//! The orders example in every language (`guest-examples/*-orders`) against the same logic
//! compiled natively (`guest-examples/rust-orders/src/orders.rs`), on batches of 1, 64 and
//! 512 records of about 100 bytes, each as one `processor.process` call per batch; then
//! cold start: compiling each component without the artifact cache, and loading it from
//! the cache.
//!
//! Needs the guests built: `guest-examples/build.sh`. Run:
//! `cargo bench -p shardline --bench guests` (`-- orders/js` for one language).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use shardline::config::Config;
use shardline::wasm::bindings::{BatchContext, SourceRecord};
use shardline::wasm::{StagePlan, WasmEngine};

#[allow(dead_code, clippy::all)]
#[path = "../../guest-examples/rust-orders/src/orders.rs"]
mod orders;

const LANGUAGES: &[(&str, &str)] = &[
    ("rust", "orders"),
    ("c", "orders-c"),
    ("python", "orders-python"),
    ("js", "orders-js"),
];

fn guest(file: &str) -> PathBuf {
    let dir = std::env::var_os("SHARDLINE_GUESTS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guests"));
    let p = dir.join(format!("{file}.wasm"));
    assert!(
        p.is_file(),
        "{} missing: run guest-examples/build.sh",
        p.display()
    );
    p
}

/// ~100-byte JSON orders, all valid (the records of `wasm_path.rs`).
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

fn config(wasm: &Path) -> Config {
    let yaml = format!(
        "application: bench\nsource:\n  stream: s\nsinks:\n  p:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: t\n\
         wasm:\n  call_timeout: 60s\nstages:\n  pipeline:\n    component: {}\n",
        wasm.display()
    );
    Config::from_yaml(&yaml, "bench.yaml", PathBuf::from(".")).expect("bench config")
}

fn plan(wasm: &Path) -> StagePlan {
    let config = config(wasm);
    let engine = WasmEngine::new(
        WasmEngine::default_cache_dir(),
        config.wasm.memory_limit,
        config.wasm.call_timeout,
    )
    .expect("engine");
    StagePlan::load(&engine, &config).expect("load guest")
}

fn throughput(c: &mut Criterion) {
    let ctx = BatchContext {
        stream_name: "orders".into(),
        shard_id: "shardId-000000000000".into(),
        millis_behind_latest: Some(0),
    };
    let settings = orders::Settings::default();
    let plans: Vec<(&str, StagePlan)> = LANGUAGES
        .iter()
        .map(|(lang, file)| (*lang, plan(&guest(file))))
        .collect();
    let mut group = c.benchmark_group("orders");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for batch in [1usize, 64, 512] {
        let recs = records(batch);
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
        for (lang, plan) in &plans {
            let mut set = plan.instantiate().expect("instantiate");
            group.bench_with_input(BenchmarkId::new(*lang, batch), &recs, |b, recs| {
                b.iter(|| {
                    let out = set.run(&ctx, recs, true);
                    assert_eq!(out.outputs.len(), recs.len(), "{:?}", out.failures);
                })
            });
        }
    }
    group.finish();
}

/// Compile without the cache (what every start would cost), then load from the cache (the
/// artifact already there): median of a few runs each, printed as a table.
fn cold_start() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "cold-start".contains(f.as_str())) {
        return;
    }
    println!("cold-start: component load (compile + link + instantiate), median");
    println!(
        "{:<8} {:>12} {:>16} {:>16}",
        "language", "size", "no cache", "from cache"
    );
    for (lang, file) in LANGUAGES {
        let wasm = guest(file);
        let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
        let config = config(&wasm);
        let median = |cache: Option<PathBuf>, runs: usize| {
            let mut times: Vec<Duration> = (0..runs)
                .map(|_| {
                    let engine = WasmEngine::new(cache.clone(), 64 << 20, Duration::from_secs(60))
                        .expect("engine");
                    let started = Instant::now();
                    StagePlan::load(&engine, &config)
                        .expect("load")
                        .instantiate()
                        .expect("instantiate");
                    started.elapsed()
                })
                .collect();
            times.sort();
            times[times.len() / 2]
        };
        let big = size > 1 << 20;
        let uncached = median(None, if big { 1 } else { 5 });
        let cache_dir =
            std::env::temp_dir().join(format!("shardline-bench-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache_dir);
        median(Some(cache_dir.clone()), 1); // fills the cache
        let cached = median(Some(cache_dir.clone()), 5);
        let _ = std::fs::remove_dir_all(&cache_dir);
        println!(
            "{lang:<8} {:>10} KB {:>13.1} ms {:>13.1} ms",
            size / 1024,
            uncached.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c);
    c.final_summary();
    cold_start();
}
