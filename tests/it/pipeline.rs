//! End to end against the local stack (`dev/stack up`): Kinesis (kinesis-local) →
//! `shardline run` with a Wasm component → Pulsar, read back with a real Pulsar consumer,
//! checkpoints read from the DynamoDB lease table.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::support::*;

const LONG: Duration = Duration::from_secs(180);

fn passthrough_stage(settings: &str) -> String {
    format!(
        "stages:\n  pipeline:\n    component: {}\n    settings:\n      {settings}\n",
        guest("passthrough").display()
    )
}

/// 1,000 records of every awkward kind arrive byte-exact with the Pulsar IO key, properties
/// and event time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_exactly_with_pulsar_io_metadata() {
    let stream = unique("exact");
    let topic = format!("persistent://public/default/{}", unique("exact"));
    create_stream(&stream, 4).await;

    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    // JSON.
    for i in 0..600 {
        records.push((
            format!("json-{i}"),
            format!(r#"{{"n":{i},"text":"héllo \"quoted\" ✓"}}"#).into_bytes(),
        ));
    }
    // Arbitrary binary: every byte value, rotated, in every record.
    for i in 0..300usize {
        let data: Vec<u8> = (0..=255u8).cycle().skip(i % 256).take(256 + i).collect();
        records.push((format!("bin-{i}"), data));
    }
    // Key edge cases: one character, 256 characters (the maximum), Unicode, spaces and
    // symbols, keys that look like numbers or are repeated.
    let keys = [
        "k".to_string(),
        "x".repeat(256),
        "ключ-🔑-キー".to_string(),
        " leading and trailing ".to_string(),
        "a/b\\c:d?e=f&g#h".to_string(),
        "0".to_string(),
        "000".to_string(),
    ];
    for i in 0..90 {
        let k = keys[i % keys.len()].clone();
        records.push((k, format!("edge-{i}").into_bytes()));
    }
    // Empty data is refused by Kinesis; the smallest record is one byte.
    records.push(("tiny".into(), vec![0]));
    // Sizes up to the 1 MiB limit (data + partition key).
    for (i, size) in [
        1 << 10,
        64 << 10,
        256 << 10,
        512 << 10,
        (1 << 20) - 2,
        100,
        1000,
        10_000,
        100_000,
    ]
    .iter()
    .enumerate()
    {
        let key = format!("{i}b");
        let size = (*size).min((1 << 20) - key.len());
        records.push((key, (0..size).map(|j| (j * 31 + i) as u8).collect()));
    }
    assert_eq!(records.len(), 1000);

    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let puts = put_records(&stream, &records).await;
    let app = unique("exact-app");
    let config = write_config(&stack_config(
        &app,
        &stream,
        &topic,
        &passthrough_stage("unused: x"),
    ));
    let mut host = Host::start(&config);

    let got = collector.wait_for(1000, LONG).await;
    // Nothing more than the 1,000 arrives (no duplicates in a clean run).
    host.signal("TERM");
    assert_eq!(
        host.wait_exit(LONG).await,
        Some(0),
        "clean exit; log:\n{}",
        host.log()
    );
    let got_after = collector.all();
    assert_eq!(
        got_after.len(),
        1000,
        "exactly 1000 messages, no duplicates"
    );

    let by_seq: HashMap<&str, &Put> = puts.iter().map(|p| (p.sequence.as_str(), p)).collect();
    let mut seen = HashSet::new();
    for m in &got {
        let seq = m.prop("kinesis.sequence.number");
        let put = by_seq
            .get(seq)
            .unwrap_or_else(|| panic!("unknown sequence number {seq:?}"));
        assert!(seen.insert(seq.to_string()), "duplicate {seq}");
        assert_eq!(m.payload, put.data, "payload of {seq} is byte-exact");
        assert_eq!(m.key.as_deref(), Some(put.key.as_str()), "key of {seq}");
        assert_eq!(m.prop("kinesis.partition.key"), put.key);
        assert_eq!(m.prop("kinesis.shard.id"), put.shard);
        assert_eq!(m.prop("kinesis.encryption.type"), "NONE");
        // Event time = approximate arrival, printed like Java's Instant.
        let ts = m.prop("kinesis.arrival.timestamp");
        let parsed = humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("arrival {ts:?}: {e}"));
        let millis = parsed
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch")
            .as_millis() as u64;
        assert_eq!(
            m.event_time,
            Some(millis),
            "event time of {seq} is the arrival time"
        );
        assert!(
            ts.ends_with('Z') && !ts.ends_with(".000Z"),
            "Java Instant format: {ts}"
        );
    }
    // Order per shard (and so per key) is kept.
    assert_in_shard_order(&got);
}

/// Puts `n` small JSON records into a new stream of `shards` shards.
async fn prepared_stream(prefix: &str, shards: i32, n: usize) -> (String, Vec<Put>) {
    let stream = unique(prefix);
    create_stream(&stream, shards).await;
    let records: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("key-{}", i % 37),
                format!(r#"{{"i":{i}}}"#).into_bytes(),
            )
        })
        .collect();
    let puts = put_records(&stream, &records).await;
    (stream, puts)
}

/// Waits until the last put record (one shard) is checkpointed, then stops the worker with
/// SIGTERM and expects a clean exit.
async fn stop_once_checkpointed(host: &mut Host, app: &str, puts: &[Put]) {
    let last = &puts.last().expect("records").sequence;
    wait_for_checkpoint(app, last, LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
}

/// Slow polling so that a stop lands mid-stream.
const SLOW: &str =
    "  polling:\n    max_records: 25\n    interval: 200ms\n    idle_interval: 200ms\n";

fn slow_config(app: &str, stream: &str, topic: &str) -> String {
    stack_config(app, stream, topic, &passthrough_stage("unused: x")).replace(
        "  initial_position: trim_horizon\n",
        &format!("  initial_position: trim_horizon\n{SLOW}"),
    )
}

fn assert_all_arrived(puts: &[Put], got: &[Received]) -> HashMap<String, usize> {
    let counts = deliveries_by_sequence(got);
    for p in puts {
        assert!(
            counts.contains_key(&p.sequence),
            "record {} of {} was lost",
            p.sequence,
            p.shard
        );
    }
    counts
}

/// kill -9 mid-stream, then start again: every record arrives at least once, and the only
/// duplicates are records after the checkpoint the killed worker had written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_redelivers_only_what_was_not_checkpointed() {
    let n = 1500;
    let (stream, puts) = prepared_stream("kill", 2, n).await;
    let topic = format!("persistent://public/default/{}", unique("kill"));
    let app = unique("kill-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let config = write_config(&slow_config(&app, &stream, &topic));

    let mut host = Host::start(&config);
    collector.wait_for(300, LONG).await;
    // Wait for a real checkpoint (a sequence number) so the restart resumes from it.
    wait_for("a sequence-number checkpoint", LONG, || {
        let app = app.clone();
        async move {
            let c = checkpoints(&app).await;
            c.values()
                .any(|v| v.chars().all(|c| c.is_ascii_digit()))
                .then_some(())
        }
    })
    .await;
    host.signal("KILL");
    host.wait_exit(LONG).await;
    assert!(
        collector.count() < n,
        "the kill landed after the end: make polling slower"
    );
    let at_kill = checkpoints(&app).await;

    let mut host = Host::start(&config);
    collector.wait_for_distinct(n, LONG).await;
    // Stop cleanly; anything still in flight lands first.
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());

    let got = collector.all();
    let counts = assert_all_arrived(&puts, &got);
    for p in &puts {
        if counts[&p.sequence] > 1 {
            let cp = at_kill
                .get(&p.shard)
                .map(String::as_str)
                .unwrap_or("TRIM_HORIZON");
            let checkpointed = cp.chars().all(|c| c.is_ascii_digit()) && seq_le(&p.sequence, cp);
            assert!(
                !checkpointed,
                "record {} of {} was checkpointed ({cp}) before the kill but delivered again",
                p.sequence, p.shard
            );
        }
    }
}

/// SIGTERM mid-stream: the worker drains, checkpoints and releases its leases; a new
/// worker takes over at once and nothing is delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_and_restart_delivers_everything_once() {
    let n = 1500;
    let (stream, puts) = prepared_stream("term", 2, n).await;
    let topic = format!("persistent://public/default/{}", unique("term"));
    let app = unique("term-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let config = write_config(&slow_config(&app, &stream, &topic));

    let mut host = Host::start(&config);
    collector.wait_for(300, LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    assert_eq!(
        host.log().matches("released lease").count(),
        2,
        "both leases released at once:\n{}",
        host.log()
    );
    let before = collector.count();
    assert!(
        before < n,
        "the stop landed after the end: make polling slower"
    );

    let mut host = Host::start(&config);
    collector.wait_for_distinct(n, LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());

    let got = collector.all();
    let counts = assert_all_arrived(&puts, &got);
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        dups.is_empty(),
        "{} records delivered twice, e.g. {:?}",
        dups.len(),
        dups.first()
    );
}

/// SIGTERM while the worker is still connecting to its sinks (here a Pulsar address that
/// accepts connections and never answers): it stops cleanly, exit 0, before taking any
/// lease, instead of being killed by the signal's default action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_signal_while_starting_exits_cleanly_and_takes_no_lease() {
    let app = unique("term-start");
    create_stream(&app, 1).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!("pulsar://{}", silent.local_addr().expect("address"));
    let config = write_config(
        &stack_config(&app, &app, "persistent://public/default/unused", "")
            .replace(&pulsar_url(), &silent_url),
    );

    let mut host = Host::start(&config);
    // Once the worker has connected here it is past the lease table, inside the sinks'
    // start; the connection is held open and never answered.
    let (_held, _) = tokio::time::timeout(LONG, silent.accept())
        .await
        .expect("the worker connects to the Pulsar address")
        .expect("accept");
    host.signal("TERM");
    assert_eq!(
        host.wait_exit(Duration::from_secs(30)).await,
        Some(0),
        "log:\n{}",
        host.log()
    );
    let log = host.log();
    assert!(log.contains("stopped while starting"), "{log}");
    assert!(!log.contains("took lease"), "{log}");
}

/// A guest that traps on one record, with `errors.policy: fail`: the worker stops with the
/// guest's message in the log, delivers what came before, and never checkpoints past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_with_fail_policy_stops_before_the_poison_record() {
    let stream = unique("trap");
    create_stream(&stream, 1).await;
    let mut records: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("k{i}"), format!("good-{i}").into_bytes()))
        .collect();
    records.push(("k-poison".into(), b"this is POISON".to_vec()));
    records.extend((10..20).map(|i| (format!("k{i}"), format!("good-{i}").into_bytes())));
    let puts = put_records(&stream, &records).await;
    let topic = format!("persistent://public/default/{}", unique("trap"));
    let app = unique("trap-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let config = write_config(&stack_config(
        &app,
        &stream,
        &topic,
        &passthrough_stage("panic_on: POISON"),
    ));

    let mut host = Host::start(&config);
    let code = host.wait_exit(LONG).await;
    let log = host.log();
    assert_eq!(code, Some(1), "a fatal stop exits 1; log:\n{log}");
    assert!(
        log.contains("poison record at index"),
        "the guest's panic message is in the log:\n{log}"
    );
    assert!(log.contains("errors.policy is fail"), "log:\n{log}");
    assert!(
        log.lines().any(|l| l.contains("guest: ")
            && l.contains("poison record at index")
            && l.contains("component=passthrough")),
        "the guest's stderr is in the log, tagged with the component:\n{log}"
    );

    let got = collector.wait_for(10, LONG).await;
    let payloads: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(
        payloads,
        (0..10).map(|i| format!("good-{i}")).collect::<Vec<_>>()
    );
    let cp = checkpoints(&app).await;
    assert_eq!(
        cp.values().next().map(String::as_str),
        Some(puts[9].sequence.as_str()),
        "checkpoint stops at the last record before the poison one"
    );
    // Nothing after the poison record was published.
    assert_eq!(collector.count(), 10);
}

/// The same poison record with `errors.policy: dead_letter`: everything else is delivered,
/// the poison record goes to the dead-letter topic with the reason, the shard goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_with_dead_letter_policy_isolates_the_record() {
    let stream = unique("dlq");
    create_stream(&stream, 1).await;
    let mut records: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("k{i}"), format!("good-{i}").into_bytes()))
        .collect();
    records.push(("k-poison".into(), b"this is POISON".to_vec()));
    records.push(("k-reject".into(), b"please REJECT me".to_vec()));
    records.extend((10..20).map(|i| (format!("k{i}"), format!("good-{i}").into_bytes())));
    let puts = put_records(&stream, &records).await;
    let topic = format!("persistent://public/default/{}", unique("dlq-main"));
    let dlq = format!("persistent://public/default/{}", unique("dlq-dead"));
    let app = unique("dlq-app");
    let mut main = Collector::start(std::slice::from_ref(&topic)).await;
    let mut dead = Collector::start(std::slice::from_ref(&dlq)).await;
    let extra = format!(
        "{}errors:\n  policy: dead_letter\n  dead_letter:\n    topic: {dlq}\n",
        passthrough_stage("panic_on: POISON\n      reject_on: REJECT")
    );
    let config = write_config(&stack_config(&app, &stream, &topic, &extra));
    let mut host = Host::start(&config);

    let got = main.wait_for(20, LONG).await;
    let dl = dead.wait_for(2, LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());

    let payloads: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(
        payloads,
        (0..20).map(|i| format!("good-{i}")).collect::<Vec<_>>()
    );
    let poison = dl
        .iter()
        .find(|m| m.payload == b"this is POISON")
        .expect("poison record dead-lettered");
    assert_eq!(poison.prop("shardline.error.kind"), "trap");
    assert_eq!(
        poison.prop("shardline.error.stage"),
        "pipeline",
        "a fused call has no single stage"
    );
    assert_eq!(poison.prop("shardline.error.component"), "passthrough");
    assert!(
        poison
            .prop("shardline.error.reason")
            .contains("poison record at index"),
        "{:?}",
        poison.properties
    );
    assert_eq!(poison.key.as_deref(), Some("k-poison"));
    // Where the record came from, as documented dead-letter properties.
    for (m, put) in [
        (poison, &puts[10]),
        (&dl[0], &puts[10]),
        (&dl[1], &puts[11]),
    ] {
        assert_eq!(m.payload, put.data, "the original bytes");
        assert_eq!(m.prop("shardline.error.stream"), stream);
        assert_eq!(m.prop("shardline.error.shard"), put.shard);
        assert_eq!(m.prop("shardline.error.sequence.number"), put.sequence);
        assert_eq!(m.prop("kinesis.sequence.number"), put.sequence);
        assert_eq!(m.prop("kinesis.partition.key"), put.key);
    }
    let rejected = dl
        .iter()
        .find(|m| m.payload == b"please REJECT me")
        .expect("rejected record dead-lettered");
    assert_eq!(rejected.prop("shardline.error.kind"), "rejected");
    assert_eq!(rejected.prop("shardline.error.stage"), "transform");
    assert!(rejected.prop("shardline.error.reason").contains("REJECT"));
}

/// A route that names a sink that is not configured broke the contract: under
/// `dead_letter` each record goes to the dead-letter topic naming the component that
/// routed it, the stage and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_an_unknown_sink_is_dead_lettered_naming_the_component() {
    let (stream, puts) = prepared_stream("badroute", 1, 5).await;
    let topic = format!("persistent://public/default/{}", unique("badroute"));
    let dlq = format!("persistent://public/default/{}", unique("badroute-dead"));
    let app = unique("badroute-app");
    let main = Collector::start(std::slice::from_ref(&topic)).await;
    let mut dead = Collector::start(std::slice::from_ref(&dlq)).await;
    let extra = format!(
        "{}errors:\n  policy: dead_letter\n  dead_letter:\n    topic: {dlq}\n",
        passthrough_stage("sink: nowhere")
    );
    let config = write_config(&stack_config(&app, &stream, &topic, &extra));
    let mut host = Host::start(&config);
    let dl = dead.wait_for(5, LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    for (m, put) in dl.iter().zip(&puts) {
        assert_eq!(m.payload, put.data);
        assert_eq!(m.prop("shardline.error.sequence.number"), put.sequence);
        assert_eq!(m.prop("shardline.error.stage"), "route");
        assert_eq!(m.prop("shardline.error.kind"), "contract");
        assert_eq!(m.prop("shardline.error.component"), "passthrough");
        assert!(
            m.prop("shardline.error.reason")
                .contains("\"nowhere\", which is not configured"),
            "{:?}",
            m.properties
        );
    }
    assert_eq!(main.count(), 0);
}

/// How often a worker's log says it rewound a shard after a failed delivery.
fn rewinds(host: &Host) -> usize {
    host.log()
        .matches("reading the shard again from the last checkpoint")
        .count()
}

/// A route to a topic in a namespace that does not exist is an error no retry can fix:
/// under `dead_letter` every record bound there is dead-lettered with the broker's reason,
/// and the shard is not held rewinding (at most the first failure rewinds it once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_in_a_missing_namespace_is_dead_lettered_not_retried_forever() {
    let (stream, puts) = prepared_stream("nons", 1, 10).await;
    let topic = format!("persistent://public/default/{}", unique("nons"));
    let missing = format!("persistent://public/{}/orders", unique("no-such-ns"));
    let dlq = format!("persistent://public/default/{}", unique("nons-dead"));
    let app = unique("nons-app");
    let main = Collector::start(std::slice::from_ref(&topic)).await;
    let mut dead = Collector::start(std::slice::from_ref(&dlq)).await;
    let extra = format!(
        "{}errors:\n  policy: dead_letter\n  dead_letter:\n    topic: {dlq}\n",
        passthrough_stage(&format!("fanout: {missing}"))
    );
    let config = write_config(&stack_config(&app, &stream, &topic, &extra));
    let mut host = Host::start(&config);
    let dl = dead.wait_for(10, LONG).await;
    let table = app.clone();
    let last = puts.last().expect("records").sequence.clone();
    wait_for_checkpoint(&table, &last, LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    assert!(
        rewinds(&host) <= 1,
        "rewound {} times:\n{}",
        rewinds(&host),
        host.log()
    );
    for (m, put) in dl.iter().zip(&puts) {
        assert_eq!(m.payload, put.data);
        assert_eq!(m.prop("shardline.error.sequence.number"), put.sequence);
        assert_eq!(m.prop("shardline.error.stage"), "route");
        assert_eq!(m.prop("shardline.error.kind"), "sink");
        let reason = m.prop("shardline.error.reason");
        assert!(
            reason.contains(&missing) && reason.contains("permanent"),
            "{reason}"
        );
    }
    assert_eq!(main.count(), 0);
}

/// A route to a topic name the broker cannot parse (`persistnt://`) fails the record at
/// once, naming what is wrong, with no send and no rewind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_topic_name_is_dead_lettered_at_once() {
    let (stream, puts) = prepared_stream("badname", 1, 5).await;
    let topic = format!("persistent://public/default/{}", unique("badname"));
    let dlq = format!("persistent://public/default/{}", unique("badname-dead"));
    let app = unique("badname-app");
    let mut dead = Collector::start(std::slice::from_ref(&dlq)).await;
    let extra = format!(
        "{}errors:\n  policy: dead_letter\n  dead_letter:\n    topic: {dlq}\n",
        passthrough_stage("fanout: persistnt://public/default/orders")
    );
    let config = write_config(&stack_config(&app, &stream, &topic, &extra));
    let mut host = Host::start(&config);
    let dl = dead.wait_for(5, LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    assert_eq!(rewinds(&host), 0, "{}", host.log());
    for (m, put) in dl.iter().zip(&puts) {
        assert_eq!(m.prop("shardline.error.sequence.number"), put.sequence);
        assert!(
            m.prop("shardline.error.reason")
                .contains("the domain must be persistent:// or non-persistent://"),
            "{:?}",
            m.properties
        );
    }
}

/// Under `fail`, a default topic in a missing namespace stops the worker with a message
/// that names the topic, instead of rewinding without end; a dead-letter topic that cannot
/// work stops it too, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_sink_error_stops_a_fail_policy_and_a_broken_dead_letter_topic() {
    let (stream, _) = prepared_stream("permfail", 1, 5).await;
    let missing = format!("persistent://public/{}/orders", unique("no-such-ns"));
    // The dead-letter case rewinds twice: once for the main topic, once for the dead-letter
    // topic, each on its first failure.
    for (case, extra, says, max_rewinds) in [
        ("fail", String::new(), "errors.policy is fail", 1),
        (
            "dead letter",
            format!(
                "errors:\n  policy: dead_letter\n  dead_letter:\n    topic: persistent://public/{}/dead\n",
                unique("no-such-ns")
            ),
            "dead letter: sink pulsar cannot publish to",
            2,
        ),
    ] {
        let app = unique("permfail-app");
        let config = write_config(&stack_config(&app, &stream, &missing, &extra));
        let mut host = Host::start(&config);
        let code = host.wait_exit(LONG).await;
        let log = host.log();
        assert!(code.is_some_and(|c| c != 0), "{case}: exit {code:?}\n{log}");
        assert!(log.contains(&missing), "{case}: names the topic:\n{log}");
        assert!(log.contains(says), "{case}: says {says:?}:\n{log}");
        assert!(
            rewinds(&host) <= max_rewinds,
            "{case}: rewound {}:\n{log}",
            rewinds(&host)
        );
    }
}

/// A guest that loops forever and one that allocates without bound, under
/// `dead_letter`: each call is stopped (CPU deadline, memory cap), the two records are
/// dead-lettered with kind `timeout` and `memory`, every other record is delivered and the
/// host keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_and_hungry_records_are_dead_lettered_and_the_shard_goes_on() {
    let stream = unique("limits");
    create_stream(&stream, 1).await;
    let mut records: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("k{i}"), format!("good-{i}").into_bytes()))
        .collect();
    records.push(("k-spin".into(), b"please SPIN".to_vec()));
    records.extend((5..10).map(|i| (format!("k{i}"), format!("good-{i}").into_bytes())));
    records.push(("k-hog".into(), b"memory HOG".to_vec()));
    records.extend((10..15).map(|i| (format!("k{i}"), format!("good-{i}").into_bytes())));
    let puts = put_records(&stream, &records).await;
    let topic = format!("persistent://public/default/{}", unique("limits"));
    let dlq = format!("persistent://public/default/{}", unique("limits-dead"));
    let app = unique("limits-app");
    let mut main = Collector::start(std::slice::from_ref(&topic)).await;
    let mut dead = Collector::start(std::slice::from_ref(&dlq)).await;
    let extra = format!(
        "wasm:\n  call_timeout: 1s\n  memory_limit: 16MiB\n{}errors:\n  policy: dead_letter\n  dead_letter:\n    topic: {dlq}\n",
        passthrough_stage("loop_on: SPIN\n      alloc_on: HOG")
    );
    let config = write_config(&stack_config(&app, &stream, &topic, &extra));
    let mut host = Host::start(&config);

    let got = main.wait_for(15, LONG).await;
    let dl = dead.wait_for(2, LONG).await;
    stop_once_checkpointed(&mut host, &app, &puts).await;

    let payloads: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(
        payloads,
        (0..15).map(|i| format!("good-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(dl.len(), 2, "{dl:?}");
    assert_eq!(dl[0].payload, b"please SPIN");
    assert_eq!(dl[0].prop("shardline.error.kind"), "timeout");
    assert!(
        dl[0]
            .prop("shardline.error.reason")
            .contains("call timeout"),
        "{:?}",
        dl[0].properties
    );
    assert_eq!(
        dl[0].prop("shardline.error.sequence.number"),
        puts[5].sequence
    );
    assert_eq!(dl[1].payload, b"memory HOG");
    assert_eq!(dl[1].prop("shardline.error.kind"), "memory");
    assert!(
        dl[1]
            .prop("shardline.error.reason")
            .contains("wasm.memory_limit"),
        "{:?}",
        dl[1].properties
    );
    assert_eq!(
        dl[1].prop("shardline.error.sequence.number"),
        puts[11].sequence
    );
}

/// A stage's `on_error` overrides `errors.policy`: with the global policy `fail` and the
/// pipeline's `on_error: skip`, a trap and a rejection are both skipped (and logged), every
/// other record is delivered and the checkpoint moves past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_on_error_overrides_the_global_policy() {
    let stream = unique("onerr");
    create_stream(&stream, 1).await;
    let mut records: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("k{i}"), format!("good-{i}").into_bytes()))
        .collect();
    records.push(("k-poison".into(), b"this is POISON".to_vec()));
    records.push(("k-reject".into(), b"please REJECT me".to_vec()));
    records.extend((10..20).map(|i| (format!("k{i}"), format!("good-{i}").into_bytes())));
    let puts = put_records(&stream, &records).await;
    let topic = format!("persistent://public/default/{}", unique("onerr"));
    let app = unique("onerr-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let extra = format!(
        "{}    on_error: skip\nerrors:\n  policy: fail\n",
        passthrough_stage("panic_on: POISON\n      reject_on: REJECT")
    );
    let config = write_config(&stack_config(&app, &stream, &topic, &extra));
    let mut host = Host::start(&config);

    let got = collector.wait_for(20, LONG).await;
    stop_once_checkpointed(&mut host, &app, &puts).await;
    let payloads: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(
        payloads,
        (0..20).map(|i| format!("good-{i}")).collect::<Vec<_>>()
    );
    let log = host.log();
    for (what, seq) in [
        ("(trap)", &puts[10].sequence),
        ("(rejected)", &puts[11].sequence),
    ] {
        assert!(
            log.lines().any(|l| l.contains(seq.as_str())
                && l.contains(what)
                && l.contains("stages.pipeline.on_error is skip")),
            "the skipped {what} record {seq} is logged with the key that chose the policy:\n{log}"
        );
    }
    assert!(!log.contains("errors.policy is fail"), "log:\n{log}");
}

/// Dead letters to a Kinesis stream (ferrokinesis): a Kinesis record has no properties, so
/// each is a JSON envelope with the documented properties and the original bytes in
/// base64, under the original partition key. A trap and a guest rejection both go there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_to_a_kinesis_stream_are_json_envelopes() {
    let stream = unique("kdlq");
    create_stream(&stream, 1).await;
    let mut records: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("k{i}"), format!("good-{i}").into_bytes()))
        .collect();
    let mut poison = b"\x00\xff binary POISON \xfe".to_vec();
    poison.extend(0..=255u8);
    records.push(("k-poison".into(), poison));
    records.push(("k-reject".into(), b"please REJECT me".to_vec()));
    records.extend((10..20).map(|i| (format!("k{i}"), format!("good-{i}").into_bytes())));
    let puts = put_records(&stream, &records).await;
    let dlq = unique("kdlq-dead");
    create_stream_on(&ferrokinesis(), &dlq, 1).await;
    let topic = format!("persistent://public/default/{}", unique("kdlq-main"));
    let app = unique("kdlq-app");
    let mut main = Collector::start(std::slice::from_ref(&topic)).await;
    let extra = format!(
        "  dead:
    kinesis:
      stream: {dlq}
      endpoint: {endpoint}
      max_buffered_time: 20ms
default_sink: pulsar
{stage}errors:
  policy: dead_letter
  dead_letter:
    sink: dead
    topic: {dlq}
",
        endpoint = ferrokinesis_endpoint(),
        stage = passthrough_stage("panic_on: POISON\n      reject_on: REJECT"),
    );
    let config = write_config(&stack_config(&app, &stream, &topic, &extra));
    let mut host = Host::start(&config);
    main.wait_for(20, LONG).await;
    stop_once_checkpointed(&mut host, &app, &puts).await;

    let contents = read_stream(&ferrokinesis(), &dlq).await;
    assert_eq!(
        contents.users.len(),
        2,
        "two dead letters: {:?}",
        contents.users
    );
    for (u, put, kind, stage) in [
        (&contents.users[0], &puts[10], "trap", "pipeline"),
        (&contents.users[1], &puts[11], "rejected", "transform"),
    ] {
        assert_eq!(u.key, put.key, "the original partition key");
        let v: serde_json::Value = serde_json::from_slice(&u.data).unwrap_or_else(|e| {
            panic!(
                "a JSON envelope: {e}: {:?}",
                String::from_utf8_lossy(&u.data)
            )
        });
        assert_eq!(v["shardline.error.kind"], kind);
        assert_eq!(v["shardline.error.stage"], stage);
        assert_eq!(v["shardline.error.component"], "passthrough");
        assert!(
            v["shardline.error.reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{v}"
        );
        assert_eq!(v["shardline.error.stream"], stream.as_str());
        assert_eq!(v["shardline.error.shard"], put.shard.as_str());
        assert_eq!(v["shardline.error.sequence.number"], put.sequence.as_str());
        assert_eq!(v["kinesis.partition.key"], put.key.as_str());
        let data = v["data"].as_str().expect("data");
        assert_eq!(base64_decode(data), put.data, "the original bytes");
    }
}

/// Standard base64 with padding, decoded independently of the host's encoder.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        assert_eq!(chunk.len(), 4, "padded base64");
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .take(4 - pad)
            .fold(0u32, |n, &c| (n << 6) | value(c))
            << (6 * pad);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

/// A route that sends each record to two topics: every record reaches both, and the
/// checkpoint covers a record only once both topics acknowledged it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_fans_out_to_several_topics() {
    let (stream, puts) = prepared_stream("fanout", 1, 50).await;
    let a = format!("persistent://public/default/{}", unique("fan-a"));
    let b = format!("persistent://public/default/{}", unique("fan-b"));
    let default = format!("persistent://public/default/{}", unique("fan-default"));
    let app = unique("fanout-app");
    let mut ca = Collector::start(std::slice::from_ref(&a)).await;
    let mut cb = Collector::start(std::slice::from_ref(&b)).await;
    let cd = Collector::start(std::slice::from_ref(&default)).await;
    let config = write_config(&stack_config(
        &app,
        &stream,
        &default,
        &passthrough_stage(&format!("fanout: {a},{b}")),
    ));
    let mut host = Host::start(&config);
    let got_a = ca.wait_for(50, LONG).await;
    let got_b = cb.wait_for(50, LONG).await;
    stop_once_checkpointed(&mut host, &app, &puts).await;
    for got in [&got_a, &got_b] {
        let seqs: Vec<&str> = got
            .iter()
            .map(|m| m.prop("kinesis.sequence.number"))
            .collect();
        let want: Vec<&str> = puts.iter().map(|p| p.sequence.as_str()).collect();
        assert_eq!(seqs, want, "every record, in order, on each topic");
    }
    assert_eq!(cd.count(), 0, "nothing went to the default topic");
}

/// Kinesis → Wasm route → Kinesis: the route sends every record to two streams of a
/// Kinesis sink (ferrokinesis), choosing each record's partition key and, for some, an
/// explicit hash key. Both streams get every record once, byte-exact, under the chosen
/// key and in the shard the explicit hash key names; the source checkpoint moves only
/// once Kinesis stored them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_to_kinesis_with_keys_chosen_by_the_route() {
    const N: usize = 200;
    let source = unique("k2k-src");
    create_stream(&source, 2).await;
    let data = |i: usize| match i % 4 {
        0 => format!("ehk:0;rec-{i}"),
        1 => format!("ehk:{};rec-{i}", u128::MAX),
        _ => format!("rec-{i}"),
    };
    let records: Vec<(String, Vec<u8>)> = (0..N)
        .map(|i| (format!("key-{}", i % 37), data(i).into_bytes()))
        .collect();
    let puts = put_records(&source, &records).await;
    let targets = [unique("k2k-a"), unique("k2k-b")];
    for t in &targets {
        create_stream_on(&ferrokinesis(), t, 2).await;
    }
    let app = unique("k2k-app");
    let unused = format!("persistent://public/default/{}", unique("k2k-unused"));
    let extra = format!(
        "  out:
    kinesis:
      stream: {a}
      endpoint: {endpoint}
      max_buffered_time: 20ms
default_sink: pulsar
stages:
  pipeline:
    component: {component}
    settings:
      sink: out
      fanout: {a},{b}
      key_prefix: rk-
      ehk_prefix: \"ehk:\"
",
        a = targets[0],
        b = targets[1],
        endpoint = ferrokinesis_endpoint(),
        component = guest("passthrough").display(),
    );
    let config = write_config(&stack_config(&app, &source, &unused, &extra));
    let mut host = Host::start(&config);
    host.wait_log("processing shard", LONG).await;
    // each shard's last record checkpointed: everything was acknowledged by Kinesis
    let mut last: HashMap<&str, &str> = HashMap::new();
    for p in &puts {
        last.insert(&p.shard, &p.sequence);
    }
    for seq in last.values() {
        wait_for_checkpoint(&app, seq, LONG).await;
    }
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());

    let key_of: HashMap<Vec<u8>, String> = records
        .iter()
        .map(|(k, d)| (d.clone(), k.clone()))
        .collect();
    for t in &targets {
        let contents = read_stream(&ferrokinesis(), t).await;
        let counts = contents.data_counts();
        assert_eq!(counts.len(), N, "stream {t}: every record");
        assert!(counts.values().all(|&c| c == 1), "stream {t}: once each");
        let low = contents
            .ranges
            .iter()
            .find(|(_, (a, _))| *a == 0)
            .map(|(s, _)| s.clone())
            .expect("a shard starting at 0");
        for u in &contents.users {
            assert_eq!(
                u.key,
                format!("rk-{}", key_of[&u.data]),
                "route chose the key"
            );
            if u.data.starts_with(b"ehk:0;") {
                assert_eq!(u.shard, low, "explicit hash key 0 picks the first shard");
            } else if u.data.starts_with(b"ehk:") {
                assert_ne!(
                    u.shard, low,
                    "explicit hash key 2^128-1 picks the last shard"
                );
            }
        }
        assert!(contents.outside_their_shard().is_empty());
    }
}

/// A partitioned topic: the sink writes its batches per partition (the client's routing,
/// message by message), and every record arrives once, spread over the partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_topic_gets_every_record_once() {
    const N: usize = 300;
    let (stream, puts) = prepared_stream("parts", 2, N).await;
    let name = unique("parts");
    let topic = format!("persistent://public/default/{name}");
    let (status, body) = crate::support::faults::pulsar_admin(
        "PUT",
        &format!("/admin/v2/persistent/public/default/{name}/partitions"),
        "3",
    )
    .await;
    assert!(status < 300, "create partitioned topic: {status} {body}");
    let app = unique("parts-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let config = write_config(&stack_config(
        &app,
        &stream,
        &topic,
        &passthrough_stage("unused: x"),
    ));
    let mut host = Host::start(&config);
    let got = collector.wait_for(N, LONG).await;
    stop_once_checkpointed(&mut host, &app, &puts).await;
    let seqs: HashSet<&str> = got
        .iter()
        .map(|m| m.prop("kinesis.sequence.number"))
        .collect();
    let want: HashSet<&str> = puts.iter().map(|p| p.sequence.as_str()).collect();
    assert_eq!(got.len(), N, "each record once");
    assert_eq!(seqs, want, "every record");
    let (status, stats) = crate::support::faults::pulsar_admin(
        "GET",
        &format!("/admin/v2/persistent/public/default/{name}/partitioned-stats?perPartition=true"),
        "",
    )
    .await;
    assert!(status < 300, "partitioned stats: {status} {stats}");
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("stats JSON");
    let used = stats["partitions"]
        .as_object()
        .expect("per-partition stats")
        .values()
        .filter(|p| p["msgInCounter"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(used > 1, "records spread over the partitions: {stats}");
}
