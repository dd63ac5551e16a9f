//! KPL aggregation in the consumer, against the local stack: aggregated records reach
//! Pulsar as their user records, in order, with their own keys; a record with the KPL magic
//! that cannot be read is delivered whole (as the KCL does); checkpoints carry
//! sub-sequence numbers, so a restart inside an aggregate resumes after the last
//! acknowledged user record.

use std::time::Duration;

use crate::support::*;
use shardline::agg::{Aggregator, MAGIC};

const LONG: Duration = Duration::from_secs(180);

fn aggregate(prefix: &str, n: usize) -> Vec<u8> {
    let mut a = Aggregator::new();
    for i in 0..n {
        a.add(
            &format!("{prefix}-key-{i}"),
            None,
            format!("{prefix}-{i}").as_bytes(),
        )
        .expect("add");
    }
    a.encode()
}

/// p0, aggregate a (50), a corrupt "aggregate", aggregate b (30), p1 — one shard, in order.
async fn mixed_stream() -> (String, Vec<Put>, Vec<String>) {
    let stream = unique("agg");
    create_stream(&stream, 1).await;
    let mut corrupt = MAGIC.to_vec();
    corrupt.extend_from_slice(b"this is not protobuf and has no valid digest");
    let records = vec![
        ("p0".to_string(), b"p0".to_vec()),
        ("a".to_string(), aggregate("a", 50)),
        ("bad".to_string(), corrupt),
        ("b".to_string(), aggregate("b", 30)),
        ("p1".to_string(), b"p1".to_vec()),
    ];
    let puts = put_records(&stream, &records).await;
    let mut expected = vec!["p0".to_string()];
    expected.extend((0..50).map(|i| format!("a-{i}")));
    expected.push("corrupt".into());
    expected.extend((0..30).map(|i| format!("b-{i}")));
    expected.push("p1".into());
    (stream, puts, expected)
}

fn name(m: &Received) -> String {
    if m.payload.starts_with(&MAGIC) {
        "corrupt".into()
    } else {
        String::from_utf8_lossy(&m.payload).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_records_arrive_as_their_user_records() {
    let (stream, puts, expected) = mixed_stream().await;
    let topic = format!("persistent://public/default/{}", unique("agg"));
    let app = unique("agg-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let mut host = Host::start(&write_config(&stack_config(&app, &stream, &topic, "")));
    let got = collector.wait_for(expected.len(), LONG).await;
    // The checkpoint reaches the last record.
    wait_for_checkpoint(&app, &puts[4].sequence, LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());

    assert_eq!(got.iter().map(name).collect::<Vec<_>>(), expected);
    let a3 = got.iter().find(|m| m.payload == b"a-3").expect("a-3");
    assert_eq!(
        a3.key.as_deref(),
        Some("a-key-3"),
        "the user record's own key"
    );
    assert_eq!(a3.prop("kinesis.partition.key"), "a-key-3");
    assert_eq!(a3.prop("kinesis.sequence.number"), puts[1].sequence);
    assert_eq!(a3.prop("kinesis.sub.sequence.number"), "3");
    let p0 = &got[0];
    assert!(!p0.properties.contains_key("kinesis.sub.sequence.number"));
    let bad = got
        .iter()
        .find(|m| name(m) == "corrupt")
        .expect("corrupt record");
    assert_eq!(
        bad.key.as_deref(),
        Some("bad"),
        "delivered whole, with its own key"
    );
    assert!(host.log().contains("delivering it whole"), "{}", host.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_inside_an_aggregate_resumes_after_the_checkpointed_user_record() {
    let (stream, puts, expected) = mixed_stream().await;
    let app = unique("agg-resume");
    // A lease table (KCL layout) checkpointed at user record 19 of aggregate a.
    write_kcl_lease_table(&app, &[(&puts[1].shard, None, &puts[1].sequence, 19)]).await;

    let topic = format!("persistent://public/default/{}", unique("agg-resume"));
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let mut host = Host::start(&write_config(&stack_config(&app, &stream, &topic, "")));
    let want: Vec<String> = expected.into_iter().skip(1 + 20).collect();
    let got = collector.wait_for(want.len(), LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    assert_eq!(
        got.iter().map(name).collect::<Vec<_>>(),
        want,
        "a-20 onwards, nothing before"
    );
    assert_eq!(collector.count(), want.len());
}
