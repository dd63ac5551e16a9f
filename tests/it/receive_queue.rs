//! The receive queue's byte bounds against the local stack: a worker reading a backlog into
//! a slow sink holds no more record bytes than `source.max_in_flight_bytes`, whatever its
//! shard count and record size, and loses nothing while it waits.
//!
//! The slow sink is a real one: a Kinesis sink (ferrokinesis) whose producer is held to half
//! of one shard's write limit (`rate_limit: 50`, 512 KiB/s), so records wait in flight for
//! seconds. The source is kinesis-local, which has no write limits to slow the setup.
//! What the worker holds is read from its own gauge, `shardline_receive_queue_bytes`, sampled
//! from `/metrics` every 20 ms.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::metrics::{endpoint_of, get, prometheus_total};
use crate::support::*;

const LONG: Duration = Duration::from_secs(180);
const SHARDS: i32 = 4;
const RECORDS: usize = 400;
const RECORD_BYTES: usize = 10 * 1024;
const MIB: u64 = 1 << 20;

struct Run {
    /// Largest `shardline_receive_queue_bytes` sampled.
    peak: u64,
    samples: usize,
}

/// Puts 400 records of 10 KiB (4 MiB) on a 4-shard stream, then runs one worker with the
/// given `source` bounds into the rate-limited Kinesis sink until every record is stored
/// there, sampling the receive queue. Checks that every record arrived.
async fn backlog_through_a_slow_sink(label: &str, bounds: &str) -> Run {
    let source = unique(&format!("rq-{label}-src"));
    create_stream(&source, SHARDS).await;
    let records: Vec<(String, Vec<u8>)> = (0..RECORDS)
        .map(|i| {
            let mut data = format!("rec-{i:04};").into_bytes();
            data.resize(RECORD_BYTES, b'x');
            (format!("key-{}", i % 64), data)
        })
        .collect();
    put_records(&source, &records).await;
    let target = unique(&format!("rq-{label}-out"));
    create_stream_on(&ferrokinesis(), &target, 1).await;

    let app = unique(&format!("rq-{label}-app"));
    let unused = format!("persistent://public/default/{}", unique("rq-unused"));
    let extra = format!(
        "  out:
    kinesis:
      stream: {target}
      endpoint: {endpoint}
      max_buffered_time: 20ms
      rate_limit: 50
default_sink: out
metrics:
  listen: 0
",
        endpoint = ferrokinesis_endpoint(),
    );
    let config = stack_config(&app, &source, &unused, &extra).replacen(
        "  initial_position: trim_horizon\n",
        &format!("  initial_position: trim_horizon\n{bounds}"),
        1,
    );
    let config = write_config(&config);
    let mut host = Host::start(&config);
    let addr = endpoint_of(&mut host).await;

    let mut run = Run {
        peak: 0,
        samples: 0,
    };
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        if let Some((200, text)) = get(&addr, "/metrics").await {
            run.peak = run
                .peak
                .max(prometheus_total(&text, "shardline_receive_queue_bytes"));
            run.samples += 1;
            if prometheus_total(&text, "shardline_sink_sends_total") >= RECORDS as u64
                && prometheus_total(&text, "shardline_sink_in_flight") == 0
            {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{label}: the records were not all acknowledged within {LONG:?}; log:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());

    let stored = read_stream(&ferrokinesis(), &target).await.data_counts();
    let want: HashMap<Vec<u8>, usize> = records.iter().map(|(_, d)| (d.clone(), 1)).collect();
    let missing = want.keys().filter(|d| !stored.contains_key(*d)).count();
    assert_eq!(missing, 0, "{label}: records lost in the sink stream");
    assert_eq!(
        stored.len(),
        RECORDS,
        "{label}: only the records put arrive"
    );
    eprintln!(
        "{label}: peak receive queue {:.2} MiB over {} samples; {} records stored",
        run.peak as f64 / MIB as f64,
        run.samples,
        stored.len()
    );
    run
}

/// With a 1 MiB bound for the worker, four shards of 10 KiB records behind a sink that takes
/// 512 KiB/s hold at most 1 MiB (and one record per shard); with the bounds out of the way
/// (the control: only the record count of `receive_queue_size` applies) the same worker
/// holds most of the 4 MiB backlog at once, which shows the bound is what kept it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_holds_the_worker_to_its_byte_bound_and_nothing_is_lost() {
    let bounded = backlog_through_a_slow_sink(
        "bounded",
        "  receive_queue_bytes: 1MiB\n  max_in_flight_bytes: 1MiB\n",
    )
    .await;
    let control = backlog_through_a_slow_sink(
        "control",
        "  receive_queue_bytes: 1GiB\n  max_in_flight_bytes: 1GiB\n",
    )
    .await;
    assert!(
        bounded.peak > 0,
        "the gauge never showed records in flight ({} samples)",
        bounded.samples
    );
    assert!(
        control.peak >= 2 * MIB,
        "the control run held only {} bytes: the sink was not slow enough to test a bound",
        control.peak
    );
    // A fetch reserves its bytes before it asks Kinesis, so the bound is passed only by the
    // last record of a fetch that did not fit its reservation: one per shard at most.
    let slack = SHARDS as u64 * (RECORD_BYTES as u64 + 16);
    assert!(
        bounded.peak <= MIB + slack,
        "held {} bytes with max_in_flight_bytes: 1MiB (control: {})",
        bounded.peak,
        control.peak
    );
}
