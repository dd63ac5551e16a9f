//! Reliability under faults (issue #10), the quick variants: faults injected into the real
//! stack while a worker consumes, and an account of every record put — delivered, lost,
//! duplicated. Any loss fails the test.
//!
//! Kinesis faults go through `support::proxy::FaultProxy` in front of ferrokinesis: the
//! emulators throttle on their own (ferrokinesis with `--enforce-limits`) but never answer
//! 500, drop a connection, expire an iterator early or stall, so the proxy does.

mod support;

use std::time::Duration;

use support::metrics::{endpoint_of, get, prometheus_total};
use support::proxy::{FaultProxy, Faults, ReadFaults};
use support::*;

const LONG: Duration = Duration::from_secs(240);

/// `n` records over 40 keys, each payload unique.
fn records(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("key-{}", i % 40),
                format!("{prefix}-{i:05}").into_bytes(),
            )
        })
        .collect()
}

/// GetRecords throttled, failed with 500, dropped, answered with an expired iterator and
/// slowed, all at once: every record arrives, in order per shard, and the worker's metrics
/// count the throttling and the expired iterators it recovered from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_read_faults_lose_nothing_and_show_in_metrics() {
    let stream = unique("chaos-reads");
    let topic = format!("persistent://public/default/{}", unique("chaos-reads"));
    create_stream_on(&ferrokinesis(), &stream, 2).await;
    let puts = put_records_on(&ferrokinesis(), &stream, &records("r", 3000)).await;
    let proxy = FaultProxy::start(
        &ferrokinesis_endpoint(),
        Faults {
            reads: ReadFaults {
                throttle: 0.3,
                fail: 0.15,
                drop: 0.08,
                expire: 0.1,
                slow: 0.1,
                delay: Duration::from_millis(1500),
            },
            ..Faults::default()
        },
        10,
    )
    .await;
    // Small GetRecords answers, so that the 3,000 records take many calls through the proxy.
    let extra = "metrics:\n  listen: 0\n";
    let config = ferro_stack_config(&unique("chaos-reads"), &stream, &topic, extra)
        .replace(
            &format!("kinesis: {}", ferrokinesis_endpoint()),
            &format!("kinesis: {}", proxy.endpoint),
        )
        .replacen(
            "  initial_position: trim_horizon\n",
            "  initial_position: trim_horizon\n  polling:\n    max_records: 30\n    backoff: 100ms\n    max_backoff: 1s\n",
            1,
        );
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let mut host = Host::start(&write_config(&config));
    let addr = endpoint_of(&mut host).await;

    let got = collector.wait_for_distinct(puts.len(), LONG).await;
    let t = tally("kinesis read faults", &puts, &got);
    let c = proxy.counts();
    println!(
        "proxy: GetRecords={} throttled={} failed={} dropped={} expired={} slowed={}",
        c.get_records_requests,
        c.reads_throttled,
        c.reads_failed,
        c.reads_dropped,
        c.reads_expired,
        c.reads_slowed
    );
    assert_eq!(t.lost, 0, "{t:?}");
    assert_in_shard_order(&got);
    assert!(
        c.reads_throttled > 0
            && c.reads_failed > 0
            && c.reads_dropped > 0
            && c.reads_expired > 0
            && c.reads_slowed > 0,
        "every fault was injected: {c:?}"
    );
    // The SDK retries throttling (and 500s, drops) itself up to three attempts; what gets
    // past it reaches the worker's own backoff and its metric. Expired iterators always do.
    let text = wait_for("throttling and expired iterators in /metrics", LONG, || {
        let addr = addr.clone();
        async move {
            let text = get(&addr, "/metrics").await?.1;
            (prometheus_total(&text, "shardline_get_records_throttled_total") > 0
                && prometheus_total(&text, "shardline_expired_iterator_total") > 0)
                .then_some(text)
        }
    })
    .await;
    println!(
        "metrics: throttled={} expired_iterators={}",
        prometheus_total(&text, "shardline_get_records_throttled_total"),
        prometheus_total(&text, "shardline_expired_iterator_total")
    );
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "{}", host.log());
}
