//! Effectively-once into Pulsar (`deduplication: true`): workers killed with SIGKILL and
//! shards split and merged mid-stream leave no record lost and none stored twice, read back
//! with a real consumer; a broker that remembers more than the lease table does (a topic
//! written by an earlier run) drops nothing the host meant to send; a shard's producer name
//! held elsewhere holds the shard back until it is free; and a namespace without broker
//! deduplication is refused at start.
//!
//! Each test makes its own namespace under `public` and enables deduplication there through
//! the broker's admin API, as an operator would with `pulsar-admin namespaces
//! set-deduplication`.

use std::collections::HashMap;

use crate::support::faults::*;
use crate::support::*;

/// Every record exactly once, and for every key in the order it was put.
fn assert_exactly_once_in_key_order(label: &str, puts: &[Put], got: &[Received]) {
    let t = tally(label, puts, got);
    let mut copies: HashMap<(&str, &str), usize> = HashMap::new();
    for m in got {
        *copies
            .entry((
                m.prop("kinesis.shard.id"),
                m.prop("kinesis.sequence.number"),
            ))
            .or_default() += 1;
    }
    let mut duplicated_by_shard: HashMap<&str, usize> = HashMap::new();
    for ((shard, _), n) in copies {
        if n > 1 {
            *duplicated_by_shard.entry(shard).or_default() += n - 1;
        }
    }
    assert_eq!(
        (t.lost, t.duplicated),
        (0, 0),
        "{label}: every record exactly once; duplicates by shard: {duplicated_by_shard:?}"
    );
    assert_eq!(got.len(), puts.len(), "{label}: nothing else arrived");
    let mut last: HashMap<String, usize> = HashMap::new();
    for m in got {
        let text = String::from_utf8_lossy(&m.payload).into_owned();
        let (key, n) = text.split_once(':').expect("key:n");
        let n: usize = n.parse().expect("counter");
        let prev = last.insert(key.to_string(), n).unwrap_or(0);
        assert!(n > prev, "{label}: {key}: record {n} arrived after {prev}");
    }
}

/// kill -9 of the only worker, three times mid-stream, each time a new worker taking over
/// at the checkpoints: with deduplication nothing is lost and nothing stored twice, and
/// each key's records arrive in order. (Without it each kill re-delivers what followed the
/// last checkpoint: `cargo bench --bench dedup` counts those.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_three_times_mid_stream_with_deduplication_stores_each_record_once() {
    let o = killed_three_times(true, 1500).await;
    println!(
        "kill -9 x3: {} replayed messages dropped by the broker",
        o.dropped
    );
    assert!(
        o.dropped > 0,
        "the kills must have replayed something for this test to mean anything"
    );
    assert_exactly_once_in_key_order("kill -9 x3 with deduplication", &o.puts, &o.got);
}

/// SplitShard then MergeShards while records flow, the worker killed after each: child
/// shards have producers of their own names and start after their parents ended, and
/// nothing is lost or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_mid_stream_with_deduplication_store_each_record_once() {
    let o = split_and_merged(true, 1500).await;
    println!(
        "split and merge: {} replayed messages dropped by the broker",
        o.dropped
    );
    assert_exactly_once_in_key_order("split and merge with deduplication", &o.puts, &o.got);
}

/// A producer on `topic` under the name a worker of `app` (reading stream `app`) gives
/// shard 0's producer.
async fn shard_zero_producer(app: &str, topic: &str) -> pulsar::Producer<pulsar::TokioExecutor> {
    pulsar::Pulsar::builder(pulsar_url(), pulsar::TokioExecutor)
        .build()
        .await
        .expect("connect to Pulsar")
        .producer()
        .with_topic(topic)
        .with_name(format!("shardline-{app}-{app}-shardId-000000000000"))
        .build()
        .await
        .expect("a producer under shard 0's name (free at first)")
}

/// The silent-loss trap: the topic already holds messages under the producer name the
/// host will use for shard 0, with sequence ids far above anything this (new) lease table
/// accounts for, as an earlier run would leave them. A client that numbers from 0, or
/// trusts the broker's last id as its own, has every new message dropped as a duplicate;
/// the host must store every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_written_by_an_earlier_run_loses_nothing() {
    let ns = namespace("dedup-trap", true).await;
    let app = unique("dedup-trap");
    create_stream(&app, 1).await;
    let topic = format!("persistent://{ns}/out");
    // The earlier run: 50 messages under shard 0's producer name, ids 0..=9,999 apart.
    let mut producer = shard_zero_producer(&app, &topic).await;
    for i in 0..50u64 {
        let receipt = producer
            .send_non_blocking(pulsar::producer::Message {
                payload: format!("earlier:{i}").into_bytes(),
                sequence_id: Some(i * 200),
                ..Default::default()
            })
            .await
            .expect("send")
            .await
            .expect("stored");
        assert_ne!(
            receipt.message_id.map(|m| m.ledger_id),
            Some(u64::MAX),
            "the earlier run's messages are stored"
        );
    }
    producer.close().await.expect("close");

    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    collector.wait_for(50, LONG).await;
    let puts = put_records(&app, &records("trap", 300)).await;
    let path = write_config(&dedup_config(&app, &app, &topic, true, ""));
    let mut worker = Host::start(&path);
    collector.wait_for(50 + puts.len(), LONG).await;
    worker.signal("TERM");
    assert_eq!(
        worker.wait_exit(LONG).await,
        Some(0),
        "log:\n{}",
        worker.log()
    );
    let got = barrier(&mut collector, &topic).await;
    assert!(
        worker.log().contains("numbering from 9801 on"),
        "the host says it moved past the broker's ids:\n{}",
        worker.log()
    );
    let ours: Vec<Received> = got
        .into_iter()
        .filter(|m| !m.payload.starts_with(b"earlier:"))
        .collect();
    let t = tally("earlier run's topic", &puts, &ours);
    assert_eq!((t.lost, t.duplicated), (0, 0));
}

/// `deduplication: true` on a namespace without broker deduplication: the worker does not
/// start, and says which namespace and how to enable it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduplication_on_a_namespace_without_it_is_refused_at_start() {
    let ns = namespace("dedup-off", false).await;
    let app = unique("dedup-off");
    create_stream(&app, 1).await;
    let topic = format!("persistent://{ns}/out");
    let path = write_config(&dedup_config(&app, &app, &topic, true, ""));
    let mut worker = Host::start(&path);
    let code = worker.wait_exit(LONG).await;
    assert_ne!(code, Some(0), "refused:\n{}", worker.log());
    let log = worker.log();
    assert!(
        log.contains(&format!(
            "broker deduplication is not enabled for namespace {ns}"
        )) && log.contains(&format!(
            "pulsar-admin namespaces set-deduplication {ns} --enable"
        )),
        "names the namespace and the command:\n{log}"
    );
}

/// A shard's producer name is a fence: while another client holds it open on the topic
/// (a previous owner that has not let go yet) the broker refuses the worker's producer with
/// `ProducerBusy`, the worker retries, and once the name is free every record arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_name_still_held_elsewhere_holds_the_shard_back() {
    let ns = namespace("dedup-busy", true).await;
    let app = unique("dedup-busy");
    create_stream(&app, 1).await;
    let topic = format!("persistent://{ns}/out");
    let mut held = shard_zero_producer(&app, &topic).await;
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let puts = put_records(&app, &records("busy", 200)).await;
    let path = write_config(&dedup_config(&app, &app, &topic, true, ""));
    let mut worker = Host::start(&path);
    worker.wait_log("ProducerBusy", LONG).await;
    assert_eq!(collector.count(), 0, "nothing sent while the name is held");
    held.close().await.expect("let the name go");
    collector.wait_for(puts.len(), LONG).await;
    worker.signal("TERM");
    assert_eq!(
        worker.wait_exit(LONG).await,
        Some(0),
        "log:\n{}",
        worker.log()
    );
    let got = barrier(&mut collector, &topic).await;
    let t = tally("a held producer name", &puts, &got);
    assert_eq!((t.lost, t.duplicated), (0, 0));
}
