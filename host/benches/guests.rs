//! The orders example in every language against the same logic compiled natively
//! (`guest-examples/rust-orders/src/orders.rs`): batches of 512 records of ~100 bytes and
//! ~1 KiB, each batch one `processor.process` call through the host's own stage code (what
//! `shardline run` does per batch); then a table of records/s per language with its ratio
//! to native Rust; then cold start (compiling each component without the artifact cache,
//! and loading it from the cache).
//!
//! The components come from `guest-examples/build.sh` (`target/guests/` or
//! `$SHARDLINE_GUESTS_OUT`): `orders.wasm` (Rust), `orders-c`, `orders-python`, `orders-js`,
//! `orders-go`; a language whose component is missing is skipped with a note. Any other
//! `orders-*.wasm` in that folder (`orders-handwritten`, the Rust guest without the SDK) is
//! measured too, named by its suffix.
//!
//! Run: `cargo bench -p shardline --bench guests` (`-- orders/js` for one language;
//! `SHARDLINE_BENCH_TABLE_SECS` sets the table's measuring time per cell, default 2).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use shardline::config::Config;
use shardline::wasm::bindings::{BatchContext, SourceRecord};
use shardline::wasm::{StagePlan, WasmEngine};

#[allow(dead_code, unused_imports, clippy::all)]
#[path = "../../guest-examples/rust-orders/src/orders.rs"]
mod orders;

/// The examples of `guest-examples/build.sh`: (name in the tables, file without `.wasm`).
const KNOWN: &[(&str, &str)] = &[
    ("rust", "orders"),
    ("c", "orders-c"),
    ("python", "orders-python"),
    ("js", "orders-js"),
    ("go", "orders-go"),
];

const BATCH: usize = 512;
/// Record sizes: (name, bytes).
const SIZES: &[(&str, usize)] = &[("100B", 100), ("1KiB", 1024)];

fn guests_dir() -> PathBuf {
    std::env::var_os("SHARDLINE_GUESTS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guests"))
}

/// The components present: the known ones in order, then any other `orders-*.wasm`.
fn guests() -> Vec<(String, PathBuf)> {
    let dir = guests_dir();
    let mut found = Vec::new();
    for (lang, file) in KNOWN {
        let p = dir.join(format!("{file}.wasm"));
        if p.is_file() {
            found.push((lang.to_string(), p));
        } else {
            println!(
                "note: {lang} skipped: {} missing (guest-examples/build.sh builds it)",
                p.display()
            );
        }
    }
    let mut others: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    others.sort();
    for p in others {
        let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wasm"))
        else {
            continue;
        };
        let Some(label) = stem.strip_prefix("orders-") else {
            continue;
        };
        if !KNOWN.iter().any(|(_, f)| *f == stem) {
            found.push((label.to_string(), p));
        }
    }
    found
}

/// Valid JSON orders of about `size` bytes each (a `note` field pads them).
fn records(n: usize, size: usize) -> Vec<SourceRecord> {
    (0..n)
        .map(|i| {
            let mut data = format!(
                r#"{{"id":"o-{i:06}","customer":"c-{:04}","amount":{}.{:02},"currency":"EUR","region":"{}","channel":"web""#,
                i % 9973,
                1 + i % 500,
                i % 100,
                ["eu", "us", "apac"][i % 3]
            );
            let pad = size.saturating_sub(data.len() + 12);
            if pad > 0 {
                data.push_str(r#","note":""#);
                data.extend(std::iter::repeat_n('x', pad));
                data.push('"');
            }
            data.push('}');
            SourceRecord {
                partition_key: format!("o-{i:06}"),
                arrival_millis: 1_700_000_000_000 + i as i64,
                data: data.into_bytes(),
            }
        })
        .collect()
}

fn config(wasm: &Path) -> Config {
    // Go's runtime needs a clock that moves (sdk/go/README.md): Go guests are granted it.
    let go = wasm
        .file_stem()
        .is_some_and(|s| s.to_string_lossy().starts_with("orders-go"));
    let grants = if go {
        "    grants:\n      clocks: true\n"
    } else {
        ""
    };
    let yaml = format!(
        "application: bench\nsource:\n  stream: s\nsinks:\n  p:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: t\n\
         wasm:\n  call_timeout: 60s\n  memory_limit: 512MiB\nstages:\n  pipeline:\n    component: {}\n{grants}",
        wasm.display()
    );
    Config::from_yaml(&yaml, "bench.yaml", PathBuf::from(".")).expect("bench config")
}

fn plan(wasm: &Path) -> Option<StagePlan> {
    let config = config(wasm);
    let engine = WasmEngine::new(
        WasmEngine::default_cache_dir(),
        config.wasm.memory_limit,
        config.wasm.call_timeout,
    )
    .expect("engine");
    match StagePlan::load(&engine, &config) {
        Ok(p) => Some(p),
        Err(e) => {
            println!("note: {} skipped: {e}", wasm.display());
            None
        }
    }
}

fn ctx() -> BatchContext {
    BatchContext {
        stream_name: "orders".into(),
        shard_id: "shardId-000000000000".into(),
        millis_behind_latest: Some(0),
    }
}

fn native(recs: &[SourceRecord], settings: &orders::Settings) {
    let mut n = 0;
    for r in recs {
        if let Ok(Some(p)) = orders::process(&r.data, settings) {
            n += p.topics.len();
        }
    }
    assert!(n >= recs.len());
}

fn throughput(c: &mut Criterion, plans: &[(String, StagePlan)]) {
    let ctx = ctx();
    let settings = orders::Settings::default();
    let mut group = c.benchmark_group("orders");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (size_name, size) in SIZES {
        let recs = records(BATCH, *size);
        let id = format!("{BATCH}x{size_name}");
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_with_input(BenchmarkId::new("native", &id), &recs, |b, recs| {
            b.iter(|| native(recs, &settings))
        });
        for (lang, plan) in plans {
            let mut set = plan.instantiate().expect("instantiate");
            group.bench_with_input(BenchmarkId::new(lang.as_str(), &id), &recs, |b, recs| {
                b.iter(|| {
                    let out = set.run(&ctx, recs, true);
                    assert_eq!(out.outputs.len(), recs.len(), "{:?}", out.failures);
                })
            });
        }
    }
    group.finish();
}

/// Records/s of `f` over one batch: the median of five runs of about `secs / 5` each.
fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    f(); // warm
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let mut batches = 0u64;
            while started.elapsed().as_secs_f64() < secs / 5.0 || batches < 2 {
                f();
                batches += 1;
            }
            (batches * BATCH as u64) as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[2]
}

/// The figures BENCHMARKS.md quotes: records/s per language and size, ratio to native.
fn table(plans: &[(String, StagePlan)], filter: &[String]) {
    if !filter.is_empty() && !filter.iter().any(|f| "table".contains(f.as_str())) {
        return;
    }
    let secs = std::env::var("SHARDLINE_BENCH_TABLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let ctx = ctx();
    let settings = orders::Settings::default();
    println!("table: orders, batch {BATCH}, records/s (median of 5) and ratio to native Rust");
    print!("{:<20}", "language");
    for (name, _) in SIZES {
        print!(" {:>12} {:>9}", format!("{name} rec/s"), "÷native");
    }
    println!();
    let recs: Vec<Vec<SourceRecord>> = SIZES.iter().map(|(_, s)| records(BATCH, *s)).collect();
    let base: Vec<f64> = recs
        .iter()
        .map(|r| rate(secs, || native(r, &settings)))
        .collect();
    print!("{:<20}", "native");
    for b in &base {
        print!(" {:>12.0} {:>9}", b, "1");
    }
    println!();
    for (lang, plan) in plans {
        let mut set = plan.instantiate().expect("instantiate");
        print!("{lang:<20}");
        for (r, b) in recs.iter().zip(&base) {
            let v = rate(secs, || {
                let out = set.run(&ctx, r, true);
                assert_eq!(out.outputs.len(), r.len(), "{:?}", out.failures);
            });
            print!(" {:>12.0} {:>9}", v, format!("{:.3}", v / b));
        }
        println!();
    }
}

/// Compile without the cache (what every start would cost), then load from the cache (the
/// artifact already there): median of a few runs each, printed as a table.
fn cold_start(guests: &[(String, PathBuf)], filter: &[String]) {
    if !filter.is_empty() && !filter.iter().any(|f| "cold-start".contains(f.as_str())) {
        return;
    }
    println!("cold-start: component load (compile + link + instantiate), median");
    println!(
        "{:<20} {:>12} {:>16} {:>16}",
        "language", "size", "no cache", "from cache"
    );
    for (lang, wasm) in guests {
        let size = std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0);
        let config = config(wasm);
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
            "{lang:<20} {:>10} KB {:>13.1} ms {:>13.1} ms",
            size / 1024,
            uncached.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3
        );
    }
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let guests = guests();
    let plans: Vec<(String, StagePlan)> = guests
        .iter()
        .filter_map(|(lang, wasm)| plan(wasm).map(|p| (lang.clone(), p)))
        .collect();
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c, &plans);
    c.final_summary();
    table(&plans, &filter);
    cold_start(&guests, &filter);
}
