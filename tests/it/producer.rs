//! The KPL-grade producer against real emulators: ferrokinesis with `--enforce-limits`
//! (real `ProvisionedThroughputExceededException`s), a fault-injecting proxy in front of it
//! for the failures emulators do not produce, and the whole way back through Shardline's
//! consumer. Streams are read back independently of the producer (raw GetRecords,
//! de-aggregated with `shardline::agg`), so a test sees what a KCL consumer would.
//!
//! Emulator gaps worked around here: ferrokinesis's ListShards ignores paging (streams
//! here have few shards, so one page holds them all).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::proxy::{FaultProxy, Faults};
use crate::support::*;
use shardline::producer::{Producer, ProducerConfig, PutFailure, Receipt, UserRecord};

const LONG: Duration = Duration::from_secs(180);

/// Runs `shardline produce` with `args`; returns exit code and the `key=value` pairs of
/// its final line (and the whole stderr for failure messages).
async fn produce(
    config: &std::path::Path,
    args: &[&str],
) -> (i32, HashMap<String, String>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args(["produce", "--progress", "0s", "--config"])
        .arg(config)
        .args(args)
        .output()
        .await
        .expect("run shardline produce");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("produce: "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    let kv = summary
        .trim_start_matches("produce: ")
        .split_whitespace()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (out.status.code().unwrap_or(-1), kv, stderr)
}

fn num(kv: &HashMap<String, String>, k: &str) -> u64 {
    kv.get(k)
        .unwrap_or_else(|| panic!("{k} missing in {kv:?}"))
        .parse()
        .expect("number")
}

/// A config for `produce` against ferrokinesis (its source stream is the one written).
fn ferro_config(stream: &str) -> std::path::PathBuf {
    write_config(&ferro_stack_config("producer-test", stream, "unused", ""))
}

/// A producer talking to `endpoint`.
async fn producer_at(endpoint: &str, stream: &str, config: ProducerConfig) -> Producer {
    Producer::start(&kinesis_at(endpoint), stream, config)
        .await
        .expect("start producer")
}

/// Puts every record and waits for every result, in input order.
async fn put_all(p: &Producer, records: Vec<UserRecord>) -> Vec<Result<Receipt, PutFailure>> {
    let mut handles = Vec::with_capacity(records.len());
    for r in records {
        handles.push(p.put(r).await.expect("accepted"));
    }
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await);
    }
    out
}

fn numbered(n: usize, keys: usize, prefix: &str) -> Vec<UserRecord> {
    (0..n)
        .map(|i| UserRecord::new(format!("key-{}", i % keys), format!("{prefix}-{i:07}")))
        .collect()
}

/// Test 3 of the issue: 100,000 records through `produce` with aggregation reach
/// Shardline's consumer each exactly once, as the right user records; far fewer
/// PutRecords than records show aggregation happened, and no aggregate mixes shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_thousand_records_through_produce_arrive_once_at_the_consumer() {
    const N: usize = 100_000;
    let stream = unique("produce");
    create_stream_on(&ferrokinesis(), &stream, 4).await;
    let input = std::env::temp_dir().join(unique("produce-input"));
    let mut text = String::with_capacity(N * 40);
    for i in 0..N {
        // keys repeat (2,000 of them) so aggregates carry key tables
        text.push_str(&format!(
            "user-{}\t{{\"n\":{i},\"pad\":\"{}\"}}\n",
            i % 2000,
            "x".repeat(i % 50)
        ));
    }
    std::fs::write(&input, text).expect("write input");

    let config = ferro_config(&stream);
    let (code, kv, log) = produce(
        &config,
        &[
            "--stream",
            &stream,
            "--input",
            input.to_str().expect("utf-8"),
            "--key",
            "tab",
        ],
    )
    .await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(num(&kv, "stored"), N as u64, "{log}");
    assert_eq!(num(&kv, "failed"), 0);
    // Without aggregation, 100,000 records need at least 200 PutRecords.
    assert!(
        num(&kv, "requests") < 100,
        "aggregation cut requests: {kv:?}"
    );
    assert!(num(&kv, "aggregates") > 0);

    let contents = read_stream(&ferrokinesis(), &stream).await;
    assert!(
        contents.kinesis_records < N / 100,
        "{} Kinesis records carried {N} user records",
        contents.kinesis_records
    );
    assert!(
        contents.outside_their_shard().is_empty(),
        "aggregates only hold records of their own shard"
    );

    // Shardline's consumer reads them back as user records.
    let topic = format!("persistent://public/default/{}", unique("produced"));
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let cfg = ferro_stack_config(&unique("consume"), &stream, &topic, "");
    let mut host = Host::start(&write_config(&cfg));
    let got = collector.wait_for(N, LONG).await;
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for m in &got {
        *seen.entry(m.payload.clone()).or_insert(0) += 1;
        let body = String::from_utf8_lossy(&m.payload);
        let n: usize = body
            .trim_start_matches("{\"n\":")
            .split(',')
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("unexpected payload {body}"));
        assert_eq!(
            m.key.as_deref(),
            Some(format!("user-{}", n % 2000).as_str())
        );
        assert!(m.properties.contains_key("kinesis.sub.sequence.number"));
    }
    assert_eq!(seen.len(), N, "every record arrived");
    assert!(seen.values().all(|&c| c == 1), "each exactly once");
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "{}", host.log());
    let _ = std::fs::remove_file(input);
}

/// Test 4 of the issue, real throttling: a rate limit far above the shard's lets
/// ferrokinesis throttle; throttled records are retried until every one is stored, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_records_are_retried_until_stored_once() {
    const N: usize = 6_000;
    let stream = unique("throttle");
    create_stream_on(&ferrokinesis(), &stream, 1).await;
    let input = std::env::temp_dir().join(unique("throttle-input"));
    let lines: String = (0..N).map(|i| format!("t-{i:06}\n")).collect();
    std::fs::write(&input, lines).expect("write input");
    let (code, kv, log) = produce(
        &ferro_config(&stream),
        &[
            "--stream",
            &stream,
            "--input",
            input.to_str().expect("utf-8"),
            "--no-aggregation",
            "--rate-limit",
            "500",
        ],
    )
    .await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(num(&kv, "stored"), N as u64);
    assert!(num(&kv, "throttled") > 0, "the emulator throttled: {kv:?}");
    assert!(num(&kv, "retries") > 0, "{kv:?}");
    let contents = read_stream(&ferrokinesis(), &stream).await;
    let counts = contents.data_counts();
    assert_eq!(counts.len(), N);
    assert!(counts.values().all(|&c| c == 1), "each record stored once");
    let _ = std::fs::remove_file(input);
}

/// Test 4 of the issue, injected failures: refused records, failed requests and dropped
/// connections are retried; every record is stored exactly once, and each receipt names
/// the shard, sequence number and sub-sequence number where its record really is — with
/// PutRecords in CBOR (the default: the proxy answers in CBOR, errors included) and in JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_are_retried_and_receipts_are_exact() {
    for cbor in [true, false] {
        injected_failures(cbor).await;
    }
}

async fn injected_failures(cbor: bool) {
    let stream = unique("faults");
    create_stream_on(&ferrokinesis(), &stream, 2).await;
    let proxy = FaultProxy::start(
        &ferrokinesis_endpoint(),
        Faults {
            refuse_records: 0.3,
            fail_requests: 0.1,
            drop_connections: 0.05,
            ..Faults::default()
        },
        7,
    )
    .await;
    let config = ProducerConfig {
        max_buffered_time: Duration::from_millis(20),
        retry_backoff: Duration::from_millis(20),
        request_timeout: Duration::from_secs(2),
        // small aggregates and requests: well over 100 requests, so every kind of fault
        // is drawn (a handful of large requests may draw none)
        aggregation_max_size: 100,
        max_request_records: 5,
        cbor,
        ..ProducerConfig::default()
    };
    let p = producer_at(&proxy.endpoint, &stream, config).await;
    let records = numbered(4_000, 300, "f");
    let results = put_all(&p, records.clone()).await;
    let receipts: Vec<Receipt> = results
        .into_iter()
        .map(|r| r.expect("stored despite the faults"))
        .collect();
    let c = proxy.counts();
    assert!(
        c.records_refused > 0 && c.requests_failed > 0 && c.connections_dropped > 0,
        "{c:?}"
    );
    let in_cbor = if cbor { c.put_records_requests } else { 0 };
    assert_eq!(c.put_records_cbor, in_cbor, "cbor: {cbor}, {c:?}");
    let stats = p.stats().snapshot();
    assert!(stats.retries > 0);
    assert_eq!(stats.user_records_ok, 4_000);
    assert_eq!(stats.user_records_failed, 0);

    let contents = read_stream(&ferrokinesis(), &stream).await;
    let counts = contents.data_counts();
    assert_eq!(counts.len(), 4_000);
    assert!(counts.values().all(|&c| c == 1), "nothing stored twice");
    let at: HashMap<(String, String, Option<u64>), &Stored> = contents
        .users
        .iter()
        .map(|u| ((u.shard.clone(), u.sequence.clone(), u.sub), u))
        .collect();
    for (r, rc) in records.iter().zip(&receipts) {
        let u = at
            .get(&(
                rc.shard_id.to_string(),
                rc.sequence_number.to_string(),
                rc.sub_sequence_number,
            ))
            .unwrap_or_else(|| panic!("no record where the receipt {rc:?} points"));
        assert_eq!(u.data, r.data);
        assert_eq!(u.key, r.partition_key);
    }
    assert!(contents.outside_their_shard().is_empty());
    p.close().await;
}

/// A record whose TTL runs out is reported, with the last error, never dropped silently —
/// through the library and through `shardline produce` (exit 1, failures counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_are_reported_with_their_last_error() {
    let stream = unique("ttl");
    create_stream_on(&ferrokinesis(), &stream, 1).await;
    let proxy = FaultProxy::start(
        &ferrokinesis_endpoint(),
        Faults {
            refuse_all: true,
            ..Faults::default()
        },
        1,
    )
    .await;
    let p = producer_at(
        &proxy.endpoint,
        &stream,
        ProducerConfig {
            record_ttl: Duration::from_millis(1500),
            retry_backoff: Duration::from_millis(50),
            ..ProducerConfig::default()
        },
    )
    .await;
    let results = put_all(&p, numbered(50, 7, "ttl")).await;
    for (i, r) in results.iter().enumerate() {
        let f = r.as_ref().expect_err("nothing can be stored");
        assert!(f.expired, "{f}");
        assert!(f.attempts >= 2, "{f}");
        assert_eq!(f.partition_key, format!("key-{}", i % 7));
        assert!(
            f.reason.contains("InternalFailure")
                || f.reason.contains("ProvisionedThroughputExceededException"),
            "{f}"
        );
        assert!(f.to_string().contains(&stream));
    }
    let s = p.stats().snapshot();
    assert_eq!((s.user_records_failed, s.user_records_expired), (50, 50));
    p.close().await;

    // The command says so and fails.
    let input = std::env::temp_dir().join(unique("ttl-input"));
    std::fs::write(&input, "a\nb\nc\n").expect("write input");
    let (code, kv, log) = produce(
        &ferro_config(&stream),
        &[
            "--stream",
            &stream,
            "--endpoint",
            &proxy.endpoint,
            "--input",
            input.to_str().expect("utf-8"),
            "--record-ttl",
            "1s",
        ],
    )
    .await;
    assert_eq!(code, 1, "{log}");
    assert_eq!(num(&kv, "failed"), 3, "{log}");
    assert_eq!(num(&kv, "expired"), 3, "{log}");
    assert!(log.contains("3 of 3 records were not stored"), "{log}");
    assert!(log.contains("record TTL of 1s expired"), "{log}");
    assert!(read_stream(&ferrokinesis(), &stream).await.users.is_empty());
    let _ = std::fs::remove_file(input);
}

/// Backpressure: with the service stalled, `put` stops accepting at the bound instead of
/// buffering without limit; once the service answers, everything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_stops_intake_at_the_bound() {
    let stream = unique("backpressure");
    create_stream_on(&ferrokinesis(), &stream, 1).await;
    let proxy = FaultProxy::start(&ferrokinesis_endpoint(), Faults::default(), 3).await;
    let p = Arc::new(
        producer_at(
            &proxy.endpoint,
            &stream,
            ProducerConfig {
                max_outstanding_records: 100,
                max_buffered_time: Duration::from_millis(10),
                ..ProducerConfig::default()
            },
        )
        .await,
    );
    proxy.hold().await;
    let putter = {
        let p = p.clone();
        tokio::spawn(async move { put_all(&p, numbered(1_000, 10, "bp")).await })
    };
    wait_for("the producer to fill up", LONG, || {
        let p = p.clone();
        async move { (p.outstanding_records() == 100).then_some(()) }
    })
    .await;
    // Full: the stalled PutRecords hold it there; intake waits.
    wait_for("a PutRecords to reach the proxy", LONG, || async {
        (proxy.counts().put_records_requests > 0).then_some(())
    })
    .await;
    assert_eq!(
        p.stats().snapshot().user_records,
        100,
        "intake stopped at the bound"
    );
    assert!(!putter.is_finished());
    proxy.release();
    let results = putter.await.expect("putter");
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        read_stream(&ferrokinesis(), &stream)
            .await
            .data_counts()
            .len(),
        1_000
    );
    p.close().await;
}

/// With strict ordering, refused records never let later records of their key pass them:
/// each key's records are stored in the order they were put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_ordering_keeps_each_keys_order_through_retries() {
    let stream = unique("ordered");
    create_stream_on(&ferrokinesis(), &stream, 2).await;
    let proxy = FaultProxy::start(
        &ferrokinesis_endpoint(),
        Faults {
            refuse_records: 0.3,
            fail_requests: 0.05,
            ..Faults::default()
        },
        11,
    )
    .await;
    let p = producer_at(
        &proxy.endpoint,
        &stream,
        ProducerConfig {
            strict_ordering: true,
            aggregation_max_size: 300, // many small aggregates: order spans many, faults are drawn
            max_buffered_time: Duration::from_millis(5),
            retry_backoff: Duration::from_millis(10),
            ..ProducerConfig::default()
        },
    )
    .await;
    let records: Vec<UserRecord> = (0..3_000)
        .map(|i| UserRecord::new(format!("k{}", i % 20), format!("{}:{i:06}", i % 20)))
        .collect();
    let results = put_all(&p, records).await;
    assert!(results.iter().all(Result::is_ok));
    assert!(proxy.counts().records_refused > 0);
    let contents = read_stream(&ferrokinesis(), &stream).await;
    assert_eq!(contents.users.len(), 3_000);
    let mut last: HashMap<String, String> = HashMap::new();
    for u in &contents.users {
        let d = String::from_utf8(u.data.clone()).expect("utf-8");
        if let Some(prev) = last.insert(u.key.clone(), d.clone()) {
            assert!(prev < d, "key {}: {d} stored after {prev}", u.key);
        }
    }
    p.close().await;
}

/// Explicit hash keys pick the shard; records Kinesis would refuse are refused before
/// they are accepted, naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_hash_keys_pick_shards_and_invalid_records_are_refused() {
    let stream = unique("ehk");
    create_stream_on(&ferrokinesis(), &stream, 2).await;
    let p = producer_at(&ferrokinesis_endpoint(), &stream, ProducerConfig::default()).await;
    let mut records = Vec::new();
    for i in 0..50 {
        let mut low = UserRecord::new(format!("any-{i}"), format!("low-{i}"));
        low.explicit_hash_key = Some("0".into());
        let mut high = UserRecord::new(format!("any-{i}"), format!("high-{i}"));
        high.explicit_hash_key = Some(u128::MAX.to_string());
        records.push(low);
        records.push(high);
    }
    let receipts: Vec<Receipt> = put_all(&p, records)
        .await
        .into_iter()
        .map(|r| r.expect("stored"))
        .collect();
    let contents = read_stream(&ferrokinesis(), &stream).await;
    let low_shard = contents
        .ranges
        .iter()
        .find(|(_, (a, _))| *a == 0)
        .map(|(s, _)| s.clone())
        .expect("a shard starting at 0");
    for (i, r) in receipts.iter().enumerate() {
        assert_eq!(*r.shard_id == *low_shard, i % 2 == 0, "{r:?}");
    }
    for u in &contents.users {
        assert_eq!(u.shard == low_shard, u.data.starts_with(b"low"), "{u:?}");
    }
    assert!(contents.outside_their_shard().is_empty());

    let bad = |pk: &str, ehk: Option<&str>, size: usize| UserRecord {
        partition_key: pk.into(),
        explicit_hash_key: ehk.map(Into::into),
        data: vec![0; size],
    };
    for (r, words) in [
        (bad("", None, 1), "1 to 256 characters, this one 0"),
        (bad(&"é".repeat(257), None, 1), "this one 257"),
        (bad("k", None, 1024 * 1024), "over Kinesis's limit"),
        (bad("k", Some("12x"), 1), "explicit hash key"),
        (
            bad("k", Some(&format!("{}0", u128::MAX)), 1),
            "explicit hash key",
        ),
    ] {
        let e = p.put(r).await.expect_err("refused").to_string();
        assert!(e.contains(words) && e.contains(&stream), "{e}");
    }
    assert_eq!(
        p.stats().snapshot().user_records,
        100,
        "refused records were not accepted"
    );
    p.close().await;
}

/// A stream that does not exist is an error at start, naming it.
#[tokio::test]
async fn a_missing_stream_is_named_at_start() {
    let e = Producer::start(
        &ferrokinesis(),
        "no-such-stream-xyz",
        ProducerConfig::default(),
    )
    .await
    .expect_err("no stream");
    let text = e.to_string();
    assert!(
        text.contains("no-such-stream-xyz") && text.contains("ResourceNotFound"),
        "{text}"
    );
}

/// Resharding under the producer: records predicted with the old shard map land in a
/// child shard; the producer notices, reloads the map, and puts again every aggregate that
/// landed where a KCL consumer would drop it. Every record ends up stored at least once
/// in a shard that covers its hash key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_reloads_the_map_and_no_record_is_left_where_the_kcl_drops_it() {
    let stream = unique("reshard");
    let k = ferrokinesis();
    create_stream_on(&k, &stream, 2).await;
    let p = producer_at(&ferrokinesis_endpoint(), &stream, ProducerConfig::default()).await;
    let first = put_all(&p, numbered(2_000, 500, "before")).await;
    assert!(first.iter().all(Result::is_ok));

    k.update_shard_count()
        .stream_name(&stream)
        .target_shard_count(4)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    wait_for("4 open shards", LONG, || {
        let k = k.clone();
        let stream = stream.clone();
        async move {
            let shards = k
                .list_shards()
                .stream_name(&stream)
                .send()
                .await
                .ok()?
                .shards?;
            let open = shards
                .iter()
                .filter(|s| {
                    s.sequence_number_range()
                        .is_some_and(|r| r.ending_sequence_number.is_none())
                })
                .count();
            (open == 4).then_some(())
        }
    })
    .await;

    let second = put_all(&p, numbered(2_000, 500, "after")).await;
    assert!(second.iter().all(Result::is_ok));
    let s = p.stats().snapshot();
    assert!(
        s.wrong_shard > 0,
        "the old map sent records to closed shards: {s:?}"
    );
    assert!(s.shard_map_refreshes > 0, "{s:?}");

    let contents = read_stream(&k, &stream).await;
    let misplaced = contents.outside_their_shard();
    let well_placed: std::collections::HashSet<&[u8]> = contents
        .users
        .iter()
        .filter(|u| !misplaced.contains(u))
        .map(|u| u.data.as_slice())
        .collect();
    for r in numbered(2_000, 500, "before")
        .iter()
        .chain(&numbered(2_000, 500, "after"))
    {
        assert!(
            well_placed.contains(r.data.as_slice()),
            "{} is not stored where a KCL consumer keeps it",
            String::from_utf8_lossy(&r.data)
        );
    }
    p.close().await;
}

/// `produce` reads length-prefixed binary records from stdin: every byte value, line
/// breaks inside records and an empty record arrive byte-exact; a truncated input is an
/// error naming the record, and what came before it is still stored. The second run sends
/// PutRecords in JSON (`--json`), and stores the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_reads_length_prefixed_binary_from_stdin() {
    use tokio::io::AsyncWriteExt;
    let stream = unique("binary");
    create_stream_on(&ferrokinesis(), &stream, 1).await;
    let mut records: Vec<Vec<u8>> = (0..=255u8)
        .map(|b| vec![b, b'\n', b, b'\r', b'\n'])
        .collect();
    records.push(Vec::new());
    records.push((0..=255u8).cycle().take(300_000).collect());
    let mut input = Vec::new();
    for r in &records {
        input.extend_from_slice(&(r.len() as u32).to_be_bytes());
        input.extend_from_slice(r);
    }
    let run = |input: Vec<u8>, json: bool| {
        let config = ferro_config(&stream);
        let stream = stream.clone();
        async move {
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardline"))
                .args([
                    "produce",
                    "--progress",
                    "0s",
                    "--format",
                    "length-prefixed",
                    "--input",
                    "-",
                ])
                .args(["--stream", &stream, "--config"])
                .arg(&config)
                .args(json.then_some("--json"))
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run produce");
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(&input).await.expect("write stdin");
            drop(stdin);
            let out = child.wait_with_output().await.expect("produce");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        }
    };
    let (code, log) = run(input.clone(), false).await;
    assert_eq!(code, Some(0), "{log}");
    let contents = read_stream(&ferrokinesis(), &stream).await;
    let counts = contents.data_counts();
    for r in &records {
        assert_eq!(counts.get(r), Some(&1), "record of {} bytes", r.len());
    }
    assert_eq!(contents.users.len(), records.len());

    // cut inside the last record's bytes: the records before it are stored, the error names it
    let (code, log) = run(input[..input.len() - 10].to_vec(), true).await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("record 257: 300000 bytes announced"), "{log}");
    assert!(log.contains("stored=257"), "{log}");
    let counts = read_stream(&ferrokinesis(), &stream).await.data_counts();
    for r in &records[..257] {
        assert_eq!(
            counts.get(r),
            Some(&2),
            "record of {} bytes, twice",
            r.len()
        );
    }
}

/// kinesis-local, a second implementation of the service's CBOR protocol (and of its JSON
/// one): records of every byte value, explicit hash keys and keys with non-ASCII characters
/// are stored byte-exact in both encodings, and each receipt points at its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_local_stores_what_either_encoding_sends() {
    for cbor in [true, false] {
        let stream = unique(if cbor { "cbor" } else { "json" });
        create_stream(&stream, 2).await;
        let config = ProducerConfig {
            max_buffered_time: Duration::from_millis(20),
            cbor,
            ..ProducerConfig::default()
        };
        let p = producer_at(&kinesis_endpoint(), &stream, config).await;
        let mut records: Vec<UserRecord> = (0..300u32)
            .map(|i| {
                let data: Vec<u8> = (0..(i * 7) % 700).map(|j| (i + j) as u8).collect();
                UserRecord::new(format!("clé-{}", i % 40), data)
            })
            .collect();
        let mut high = UserRecord::new("high", b"to the last shard".to_vec());
        high.explicit_hash_key = Some(u128::MAX.to_string());
        records.push(high);
        let receipts: Vec<Receipt> = put_all(&p, records.clone())
            .await
            .into_iter()
            .map(|r| r.expect("stored"))
            .collect();
        p.close().await;
        let contents = read_stream(&kinesis(), &stream).await;
        let at: HashMap<(String, String, Option<u64>), &Stored> = contents
            .users
            .iter()
            .map(|u| ((u.shard.clone(), u.sequence.clone(), u.sub), u))
            .collect();
        assert_eq!(contents.users.len(), records.len(), "cbor: {cbor}");
        for (r, rc) in records.iter().zip(&receipts) {
            let key = (
                rc.shard_id.to_string(),
                rc.sequence_number.to_string(),
                rc.sub_sequence_number,
            );
            let u = at
                .get(&key)
                .unwrap_or_else(|| panic!("cbor: {cbor}: {rc:?}"));
            assert_eq!(
                (&u.data, &u.key),
                (&r.data, &r.partition_key),
                "cbor: {cbor}"
            );
        }
        assert!(contents.outside_their_shard().is_empty(), "cbor: {cbor}");
    }
}
