//! KPL aggregation throughput: packing user records into aggregates of at most 51,200 bytes
//! (the KPL's `AggregationMaxSize`) and reading them back, on the same input as
//! bench/agg/python_agg.py gives AWS's `aws-kinesis-agg`; bench/agg/run.sh runs both and
//! prints the comparison (BENCHMARKS.md).
//!
//! Input, identical on both sides: record `i` has `x = splitmix64(i)`, partition key
//! `pk-{x % 1000:04}` (1,000 distinct keys in random order) and data the 8 little-endian bytes
//! of `x` repeated to the record size; no explicit hash keys. Before measuring, each case
//! prints a line `agg-check <case> <aggregates> <md5 of all aggregates>` so run.sh can check
//! that both implementations wrote the same bytes.
//!
//! Time is the benchmark thread's CPU time (`/proc/thread-self/schedstat`), not wall time,
//! and the Python side uses `time.process_time()`: both are single-threaded, and on a
//! shared two-core machine wall time mostly measures the other processes. (schedstat lags
//! the running thread by up to a scheduler tick; the iterations here take 5 ms to 1 s and
//! criterion times batches of them, so that stays a small, unbiased error.)
//!
//! ```sh
//! cargo bench -p shardline --bench agg
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use md5::{Digest, Md5};
use shardline::agg::{
    deaggregate_many, decode, md5_each, write_digests, Aggregator, Deaggregated, Encoded,
    KPL_DEFAULT_MAX_SIZE,
};

/// The allocator the binary ships with (host/src/main.rs), so the bench measures the code
/// as `shardline produce` runs it: with glibc's malloc, aggregating 100-byte records with
/// batched digests took 12.8 ms per 100,000 instead of 7.7 (BENCHMARKS.md, "Performance
/// round").
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A PutRecords request: at most 500 records and 5 MiB (Kinesis's limits; the producer's
/// defaults). The batch aggregation path digests one request's aggregates together.
const REQUEST_RECORDS: usize = 500;
const REQUEST_BYTES: usize = 5 << 20;
/// A GetRecords batch as the consumer fetches it: at most 2 MiB (its per-fetch cap,
/// `receive_queue::MAX_FETCH_BYTES`). The batch de-aggregation path reads one such batch
/// at a time.
const FETCH_BYTES: usize = 2 << 20;

/// (name, records, bytes of data per record)
const CASES: &[(&str, usize, usize)] = &[("100k-100B", 100_000, 100), ("100k-1KiB", 100_000, 1024)];

fn splitmix64(i: u64) -> u64 {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn input(n: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..n as u64)
        .map(|i| {
            let x = splitmix64(i);
            let data = x.to_le_bytes().iter().copied().cycle().take(size).collect();
            (format!("pk-{:04}", x % 1000), data)
        })
        .collect()
}

/// What a producer does: fill an aggregate until the next record would not fit, encode it,
/// start the next.
fn aggregate(records: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut agg = Aggregator::new();
    for (pk, data) in records {
        if !agg.fits(pk, None, data, KPL_DEFAULT_MAX_SIZE) {
            out.push(agg.take());
        }
        agg.add(pk, None, data).expect("valid record");
    }
    if !agg.is_empty() {
        out.push(agg.take());
    }
    out
}

/// The same, but each aggregate finished without its digest, and the digests of one
/// PutRecords request's aggregates written together (`write_digests`), as a producer that
/// finishes a request at once can.
fn aggregate_batched(records: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut request_start = 0;
    let mut request_bytes = 0;
    let mut agg = Aggregator::new();
    let mut finish = |out: &mut Vec<Vec<u8>>, aggregate: Vec<u8>| {
        if out.len() - request_start == REQUEST_RECORDS
            || request_bytes + aggregate.len() > REQUEST_BYTES
        {
            write_digests(&mut out[request_start..]);
            request_start = out.len();
            request_bytes = 0;
        }
        request_bytes += aggregate.len();
        out.push(aggregate);
    };
    for (pk, data) in records {
        if !agg.fits(pk, None, data, KPL_DEFAULT_MAX_SIZE) {
            finish(&mut out, agg.take_without_digest());
        }
        agg.add(pk, None, data).expect("valid record");
    }
    if !agg.is_empty() {
        finish(&mut out, agg.take_without_digest());
    }
    write_digests(&mut out[request_start..]);
    out
}

/// [`aggregate_batched`] writing into the buffers of `out`, reused from the last call
/// (`take_without_digest_into`): what a producer that recycles its aggregates' buffers
/// pays, without the kernel handing out and zeroing ~104 MB of fresh pages per 100,000
/// 1 KiB records.
fn aggregate_batched_into(records: &[(String, Vec<u8>)], out: &mut Vec<Vec<u8>>) {
    aggregate_requests(records, out, |agg, out, n| {
        if n == out.len() {
            out.push(Vec::new());
        }
        agg.take_without_digest_into(&mut out[n]);
    });
}

/// [`aggregate_batched`] with each aggregate taken where its records were written
/// (`take_encoded`: magic and key tables put in front of them, no second copy), as the
/// producer does. `reuse`: the buffers of `out` from the last call are handed back to the
/// aggregator for the aggregates after them (`take_encoded_into`) instead of fresh ones.
fn aggregate_in_place(records: &[(String, Vec<u8>)], out: &mut Vec<Encoded>, reuse: bool) {
    if !reuse {
        out.clear();
    }
    aggregate_requests(records, out, |agg, out, n| {
        if n == out.len() {
            out.push(agg.take_encoded());
        } else {
            agg.take_encoded_into(&mut out[n]);
        }
    });
}

/// Aggregates `records` into `out[..n]`, `take` putting each aggregate at its index (in a
/// fresh buffer or in the one left there by the last call), and writes the digests of each
/// PutRecords request's aggregates together.
fn aggregate_requests<T: AsMut<[u8]>>(
    records: &[(String, Vec<u8>)],
    out: &mut Vec<T>,
    mut take: impl FnMut(&mut Aggregator, &mut Vec<T>, usize),
) {
    let (mut n, mut request_start, mut request_bytes) = (0, 0, 0);
    let mut agg = Aggregator::new();
    let mut finish = |out: &mut Vec<T>, agg: &mut Aggregator| {
        take(agg, out, n);
        let len = out[n].as_mut().len();
        if n - request_start == REQUEST_RECORDS || request_bytes + len > REQUEST_BYTES {
            write_digests(&mut out[request_start..n]);
            request_start = n;
            request_bytes = 0;
        }
        request_bytes += len;
        n += 1;
    };
    for (pk, data) in records {
        // As the producer adds: each key looked up once, the aggregate finished when the
        // record does not fit.
        let added = agg.add_within(pk, None, data, KPL_DEFAULT_MAX_SIZE);
        if added.expect("valid record").is_none() {
            finish(out, &mut agg);
            agg.add(pk, None, data).expect("valid record");
        }
    }
    if !agg.is_empty() {
        finish(out, &mut agg);
    }
    out.truncate(n);
    write_digests(&mut out[request_start..]);
}

/// The aggregates cut into GetRecords-sized batches (at most [`FETCH_BYTES`] each).
fn fetches(aggregates: &[Vec<u8>]) -> Vec<&[Vec<u8>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, a) in aggregates.iter().enumerate() {
        if bytes + a.len() > FETCH_BYTES && i > start {
            out.push(&aggregates[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += a.len();
    }
    out.push(&aggregates[start..]);
    out
}

/// CPU time of the calling thread, in nanoseconds, formatted as criterion formats time.
#[derive(Debug, Clone, Copy)]
struct CpuTime;

/// Only for its formatter (nanoseconds shown as time).
static WALL_TIME: WallTime = WallTime;

fn thread_cpu_ns() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux) gives the thread's CPU time");
    stat.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("schedstat starts with the CPU time in ns")
}

impl Measurement for CpuTime {
    type Intermediate = f64;
    type Value = f64;

    fn start(&self) -> f64 {
        thread_cpu_ns()
    }
    fn end(&self, start: f64) -> f64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &f64, b: &f64) -> f64 {
        a + b
    }
    fn zero(&self) -> f64 {
        0.0
    }
    fn to_f64(&self, value: &f64) -> f64 {
        *value
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL_TIME.formatter()
    }
}

fn bench(c: &mut Criterion<CpuTime>) {
    for &(name, n, size) in CASES {
        let records = input(n, size);
        let aggregates = aggregate(&records);
        let mut md5 = Md5::new();
        aggregates.iter().for_each(|a| md5.update(a));
        println!(
            "agg-check {name} {} {}",
            aggregates.len(),
            hex::encode(md5.finalize())
        );

        assert_eq!(
            aggregate_batched(&records),
            aggregates,
            "batched digests differ"
        );
        let mut reused = Vec::new();
        aggregate_batched_into(&records, &mut reused);
        assert_eq!(reused, aggregates, "reused buffers differ");
        let mut in_place = Vec::new();
        for reuse in [false, true, true] {
            aggregate_in_place(&records, &mut in_place, reuse);
            let got: Vec<&[u8]> = in_place.iter().map(Encoded::as_slice).collect();
            assert_eq!(got, aggregates, "aggregates taken in place differ");
        }
        let batches = fetches(&aggregates);

        let mut group = c.benchmark_group("agg");
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(8))
            .throughput(Throughput::Elements(n as u64));

        group.bench_with_input(BenchmarkId::new("aggregate", name), &records, |b, r| {
            b.iter(|| aggregate(black_box(r)))
        });

        group.bench_with_input(
            BenchmarkId::new("aggregate-batch", name),
            &records,
            |b, r| b.iter(|| aggregate_batched(black_box(r))),
        );

        group.bench_with_input(
            BenchmarkId::new("aggregate-batch-reuse", name),
            &records,
            |b, r| b.iter(|| aggregate_batched_into(black_box(r), &mut reused)),
        );

        group.bench_with_input(
            BenchmarkId::new("aggregate-in-place", name),
            &records,
            |b, r| b.iter(|| aggregate_in_place(black_box(r), &mut in_place, false)),
        );

        group.bench_with_input(
            BenchmarkId::new("aggregate-in-place-reuse", name),
            &records,
            |b, r| b.iter(|| aggregate_in_place(black_box(r), &mut in_place, true)),
        );

        // Reading, borrowing keys and data from the aggregates (what the consumer does
        // before it copies a record into its batch).
        group.bench_with_input(
            BenchmarkId::new("deaggregate", name),
            &aggregates,
            |b, a| {
                b.iter(|| {
                    let mut count = 0;
                    for data in black_box(a) {
                        let aggregate = decode(data).expect("valid").expect("aggregate");
                        for r in aggregate.iter() {
                            black_box(r);
                            count += 1;
                        }
                    }
                    assert_eq!(count, n);
                })
            },
        );

        // The same, one GetRecords batch at a time, the batch's aggregates hashed together.
        group.bench_with_input(
            BenchmarkId::new("deaggregate-batch", name),
            &batches,
            |b, batches| {
                b.iter(|| {
                    let mut count = 0;
                    for batch in black_box(batches) {
                        for d in deaggregate_many(batch) {
                            let Deaggregated::Aggregate(users) = d else {
                                panic!("not an aggregate")
                            };
                            for r in &users {
                                black_box(r);
                                count += 1;
                            }
                        }
                    }
                    assert_eq!(count, n);
                })
            },
        );

        // Reading into owned records, each key and payload copied out (closer to what the
        // Python library hands back: new objects per user record).
        group.bench_with_input(
            BenchmarkId::new("deaggregate-owned", name),
            &aggregates,
            |b, a| {
                b.iter(|| {
                    let mut out = Vec::with_capacity(n);
                    for data in black_box(a) {
                        let aggregate = decode(data).expect("valid").expect("aggregate");
                        out.extend(aggregate.iter().map(|r| r.to_owned_record()));
                    }
                    assert_eq!(out.len(), n);
                    out
                })
            },
        );
        // The floor for both directions: one MD5 over every aggregate, which writing and
        // reading must both compute (aws-kinesis-agg gets it from OpenSSL).
        group.bench_with_input(BenchmarkId::new("md5-only", name), &aggregates, |b, a| {
            b.iter(|| {
                for data in black_box(a) {
                    black_box(Md5::digest(&data[4..data.len() - 16]));
                }
            })
        });
        // The floor of the batch paths: the MD5s of each GetRecords batch's aggregates
        // computed together (the in-tree multi-buffer MD5, agg/checksum.rs).
        group.bench_with_input(
            BenchmarkId::new("md5-batch", name),
            &batches,
            |b, batches| {
                let mut digests = vec![[0u8; 16]; aggregates.len()];
                b.iter(|| {
                    for batch in black_box(batches) {
                        let bodies: Vec<&[u8]> =
                            batch.iter().map(|a| &a[4..a.len() - 16]).collect();
                        md5_each(&bodies, &mut digests[..bodies.len()]);
                    }
                    black_box(&digests);
                })
            },
        );
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench
}
criterion_main!(benches);
