//! Faults under load, with or without Pulsar deduplication: the scenarios the `dedup`
//! tests assert on (no loss, no duplicate) and `benches/dedup.rs` measures (duplicates per
//! 10,000 records with deduplication off and on). Each returns what was put and what a
//! real consumer read back from the topic.

use std::collections::HashMap;
use std::time::Duration;

use super::metrics::{endpoint_of, get, prometheus_total};
use super::*;

pub const LONG: Duration = Duration::from_secs(180);

/// One admin REST call on the stack's Pulsar: the status and the body.
pub async fn pulsar_admin(method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = env_or("SHARDLINE_PULSAR_ADMIN", "http://127.0.0.1:8080")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("Pulsar's admin port (is the stack up?)");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())
        .await
        .expect("admin request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("admin answer");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

/// A new namespace `public/<prefix…>`, with broker deduplication `enabled` or not, as an
/// operator sets it with `pulsar-admin namespaces set-deduplication`.
pub async fn namespace(prefix: &str, enabled: bool) -> String {
    let ns = format!("public/{}", unique(prefix));
    let (status, body) = pulsar_admin("PUT", &format!("/admin/v2/namespaces/{ns}"), "").await;
    assert!(status < 300, "create namespace {ns}: {status} {body}");
    let (status, body) = pulsar_admin(
        "POST",
        &format!("/admin/v2/namespaces/{ns}/deduplication"),
        &enabled.to_string(),
    )
    .await;
    assert!(status < 300, "set deduplication on {ns}: {status} {body}");
    ns
}

/// A stack config whose Pulsar sink deduplicates or not (the admin URL is the default one,
/// the service URL's host on port 8080, where the stack's broker answers).
pub fn dedup_config(app: &str, stream: &str, topic: &str, dedup: bool, extra: &str) -> String {
    stack_config(app, stream, topic, extra).replace(
        "      shard_id_property: true\n",
        &format!("      shard_id_property: true\n      deduplication: {dedup}\n"),
    )
}

/// Puts `total` records, 25 every 100 ms, each payload `key:n` (the n-th record of its
/// key, 13 keys).
pub fn load(stream: &str, total: usize) -> tokio::task::JoinHandle<Vec<Put>> {
    let stream = stream.to_string();
    tokio::spawn(async move {
        let mut all = Vec::new();
        let mut next: HashMap<String, usize> = HashMap::new();
        while all.len() < total {
            let batch: Vec<(String, Vec<u8>)> = (0..25.min(total - all.len()))
                .map(|i| {
                    let key = format!("key-{}", i % 13);
                    let n = next.entry(key.clone()).or_default();
                    *n += 1;
                    (key.clone(), format!("{key}:{n}").into_bytes())
                })
                .collect();
            all.extend(put_records(&stream, &batch).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        all
    })
}

/// Everything the collector received from `topic` before a marker sent now: once the
/// workers are gone, nothing sent earlier can still be on its way.
pub async fn barrier(collector: &mut Collector, topic: &str) -> Vec<Received> {
    let client = Pulsar::builder(pulsar_url(), TokioExecutor)
        .build()
        .await
        .expect("connect to Pulsar");
    let mut producer = client
        .producer()
        .with_topic(topic)
        .build()
        .await
        .expect("producer");
    let marker = unique("barrier").into_bytes();
    producer
        .send_non_blocking(marker.clone())
        .await
        .expect("send")
        .await
        .expect("stored");
    wait_for("the barrier to arrive", LONG, || {
        let all = collector.all();
        let marker = marker.clone();
        async move { all.iter().any(|m| m.payload == marker).then_some(()) }
    })
    .await;
    collector
        .all()
        .into_iter()
        .take_while(|m| m.payload != marker)
        .collect()
}

/// The messages a worker's deduplicating sink did not store again, from its metrics.
pub async fn duplicates_dropped(host: &mut Host) -> u64 {
    let addr = endpoint_of(host).await;
    let (_, text) = get(&addr, "/metrics")
        .await
        .expect("metrics endpoint answers");
    prometheus_total(&text, "shardline_sink_duplicates_total")
}

/// What a scenario did.
pub struct Outcome {
    pub puts: Vec<Put>,
    pub got: Vec<Received>,
    /// Replayed messages the workers' sinks reported dropped as duplicates.
    pub dropped: u64,
}

/// `total` records into a 4-shard stream while the only worker is killed with SIGKILL
/// three times (after 20 %, 45 % and 70 % of the records arrived), a new worker taking
/// over at the checkpoints each time; a fourth worker finishes.
pub async fn killed_three_times(dedup: bool, total: usize) -> Outcome {
    let ns = namespace("faults-kill", dedup).await;
    let app = unique("faults-kill");
    create_stream(&app, 4).await;
    let topic = format!("persistent://{ns}/out");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let path = write_config(&dedup_config(
        &app,
        &app,
        &topic,
        dedup,
        "metrics:\n  listen: 0\n",
    ));
    let load = load(&app, total);
    let mut dropped = 0;
    for at in [20, 45, 70] {
        let mut worker = Host::start(&path);
        // Under load, past its first checkpoints (every second) and with sends in flight.
        collector.wait_for(total * at / 100, LONG).await;
        dropped += duplicates_dropped(&mut worker).await;
        worker.signal("KILL");
        worker.wait_exit(LONG).await;
    }
    let mut last = Host::start(&path);
    let puts = load.await.expect("load");
    collector.wait_for_distinct(puts.len(), LONG).await;
    dropped += duplicates_dropped(&mut last).await;
    last.signal("TERM");
    assert_eq!(last.wait_exit(LONG).await, Some(0), "log:\n{}", last.log());
    let got = barrier(&mut collector, &topic).await;
    Outcome { puts, got, dropped }
}

/// `total` records into a 2-shard stream; shard 0 is split, then its two children merged,
/// while records flow, and the worker is killed with SIGKILL after each, a new one taking
/// over.
pub async fn split_and_merged(dedup: bool, total: usize) -> Outcome {
    let ns = namespace("faults-reshard", dedup).await;
    let app = unique("faults-reshard");
    create_stream(&app, 2).await;
    let topic = format!("persistent://{ns}/out");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let text = dedup_config(&app, &app, &topic, dedup, "metrics:\n  listen: 0\n").replace(
        "leases:\n  duration: 3s\n",
        "leases:\n  duration: 3s\n  shard_sync_interval: 1s\n",
    );
    let path = write_config(&text);
    let load = load(&app, total);
    let k = kinesis();
    let mut dropped = 0;
    let mut worker = Host::start(&path);
    collector.wait_for(total / 5, LONG).await;

    let shard0 = split_shard_zero(&k, &app).await;
    worker.wait_log("shard end reached", LONG).await;
    collector.wait_for(total * 2 / 5, LONG).await;
    dropped += duplicates_dropped(&mut worker).await;
    worker.signal("KILL");
    worker.wait_exit(LONG).await;
    let mut worker = Host::start(&path);

    collector.wait_for(total / 2, LONG).await;
    merge_children_of(&k, &app, &shard0).await;
    collector.wait_for(total * 7 / 10, LONG).await;
    dropped += duplicates_dropped(&mut worker).await;
    worker.signal("KILL");
    worker.wait_exit(LONG).await;
    let mut worker = Host::start(&path);
    let puts = load.await.expect("load");
    collector.wait_for_distinct(puts.len(), LONG).await;
    dropped += duplicates_dropped(&mut worker).await;
    worker.signal("TERM");
    assert_eq!(
        worker.wait_exit(LONG).await,
        Some(0),
        "log:\n{}",
        worker.log()
    );
    let got = barrier(&mut collector, &topic).await;
    Outcome { puts, got, dropped }
}

/// SplitShard of shard 0 at the middle of its hash range, waiting until the stream is
/// ACTIVE again; answers shard 0's id.
pub async fn split_shard_zero(k: &aws_sdk_kinesis::Client, stream: &str) -> String {
    let shard0 = open_shards(k, stream)
        .await
        .into_iter()
        .find(|s| s.shard_id.ends_with("000000000000"))
        .expect("shard 0");
    let range = shard0.hash_key_range.clone().expect("hash range");
    let (lo, hi): (u128, u128) = (
        range.starting_hash_key.parse().expect("u128"),
        range.ending_hash_key.parse().expect("u128"),
    );
    k.split_shard()
        .stream_name(stream)
        .shard_to_split(&shard0.shard_id)
        .new_starting_hash_key((lo + (hi - lo) / 2 + 1).to_string())
        .send()
        .await
        .expect("SplitShard");
    wait_active(k, stream).await;
    shard0.shard_id
}

/// MergeShards of the two children of `parent` (a shard split before), waiting until the
/// stream is ACTIVE again; answers the two children, by hash range.
pub async fn merge_children_of(
    k: &aws_sdk_kinesis::Client,
    stream: &str,
    parent: &str,
) -> Vec<aws_sdk_kinesis::types::Shard> {
    let mut children: Vec<_> = open_shards(k, stream)
        .await
        .into_iter()
        .filter(|s| s.parent_shard_id.as_deref() == Some(parent))
        .collect();
    assert_eq!(children.len(), 2, "the split made two children");
    children.sort_by_key(|s| {
        s.hash_key_range
            .as_ref()
            .map(|r| r.starting_hash_key.parse::<u128>().unwrap_or(0))
    });
    k.merge_shards()
        .stream_name(stream)
        .shard_to_merge(&children[0].shard_id)
        .adjacent_shard_to_merge(&children[1].shard_id)
        .send()
        .await
        .expect("MergeShards");
    wait_active(k, stream).await;
    children
}

/// The open shards of `stream`.
pub async fn open_shards(
    k: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Vec<aws_sdk_kinesis::types::Shard> {
    let out = k
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    out.shards
        .unwrap_or_default()
        .into_iter()
        .filter(|s| {
            s.sequence_number_range
                .as_ref()
                .is_some_and(|r| r.ending_sequence_number.is_none())
        })
        .collect()
}

/// Waits until `stream` is ACTIVE (after a reshard).
pub async fn wait_active(k: &aws_sdk_kinesis::Client, stream: &str) {
    wait_for("the stream to be ACTIVE again", LONG, || async move {
        let d = k
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .ok()?;
        (d.stream_description_summary()?.stream_status() == &StreamStatus::Active).then_some(())
    })
    .await
}
