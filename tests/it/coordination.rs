//! Many workers, one stream: several `shardline run` processes share a stream's shards
//! through the DynamoDB lease table (the local stack's DynamoDB server), balance, hand over
//! gracefully, adopt a table the KCL wrote, and stop a shard before another worker can take
//! it when their lease table is cut off.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::support::faults::{merge_children_of, split_shard_zero};
use crate::support::relay::Relay;
use crate::support::*;
use aws_sdk_dynamodb::types::AttributeValue;

const LONG: Duration = Duration::from_secs(180);

/// Lease settings for quick tests: 5s failover (short, yet with room for a loaded CI
/// machine: a renewal may take 4.5s before a worker stops a shard), a take round every
/// 500ms.
const LEASE_DURATION: Duration = Duration::from_secs(5);
const TAKE_INTERVAL: Duration = Duration::from_millis(500);
const FAST_LEASES: &str =
    "leases:\n  duration: 5s\n  renew_interval: 1s\n  take_interval: 500ms\n  max_steal: 2\n";

fn config(app: &str, stream: &str, topic: &str, dynamodb: Option<&str>) -> String {
    let mut c =
        stack_config(app, stream, topic, "").replace("leases:\n  duration: 3s\n", FAST_LEASES);
    if let Some(endpoint) = dynamodb {
        c = c.replace(
            &format!("dynamodb: {}", dynamodb_endpoint()),
            &format!("dynamodb: {endpoint}"),
        );
    }
    c
}

/// Active (not SHARD_END) leases per owner.
async fn owners(table: &str) -> HashMap<String, usize> {
    let out = dynamodb()
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await;
    let Ok(out) = out else { return HashMap::new() };
    let mut m = HashMap::new();
    for item in out.items() {
        if let Some(AttributeValue::S(o)) = item.get("leaseOwner") {
            *m.entry(o.clone()).or_insert(0) += 1;
        }
    }
    m
}

/// Two workers of one application on a new four-shard stream, balanced 2/2 before any
/// record is put (stealing while they converge may redeliver; these tests measure
/// handoffs, not convergence). The stream is named after the application.
async fn balanced_pair(prefix: &str, mode: Mode) -> (String, Collector, Host, Host) {
    let app = unique(prefix);
    create_stream(&app, 4).await;
    let topic = format!("persistent://public/default/{app}");
    let collector = Collector::start(std::slice::from_ref(&topic)).await;
    let path = write_config(&in_mode(&config(&app, &app, &topic, None), mode, ""));
    let a = Host::start(&path);
    let b = Host::start(&path);
    wait_for("a 2/2 split", Duration::from_secs(60), || {
        let app = app.clone();
        async move {
            (owners(&app).await.values().copied().collect::<Vec<_>>() == [2, 2]).then_some(())
        }
    })
    .await;
    // A steal shows in the table at once, but the previous owner keeps reading the shard
    // until it hands the lease over (graceful handoff) or its next renewal fails. Wait until
    // every stolen lease was given up, so the tests' load starts on a settled split.
    wait_for(
        "every stolen lease to be given up",
        Duration::from_secs(60),
        || {
            let count = |h: &Host, what: &str| h.log().lines().filter(|l| l.contains(what)).count();
            let stolen = count(&a, "reason=Stolen") + count(&b, "reason=Stolen");
            let given_up = count(&a, "lease lost")
                + count(&b, "lease lost")
                + count(&a, "released lease: handed over")
                + count(&b, "released lease: handed over");
            async move { (given_up >= stolen).then_some(()) }
        },
    )
    .await;
    (app, collector, a, b)
}

/// Puts 40 rounds of 20 records into `stream`, a round every 200ms (about 8 s of load),
/// and returns where every record landed.
fn continuous_load(stream: &str, prefix: &str) -> tokio::task::JoinHandle<Vec<Put>> {
    let (stream, prefix) = (stream.to_string(), prefix.to_string());
    tokio::spawn(async move {
        let mut all = Vec::new();
        for round in 0..40 {
            all.extend(put_records(&stream, &records(&format!("{prefix}{round}"), 20)).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        all
    })
}

/// Three workers on an eight-shard stream converge to 3/3/2, and every record arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_balance_eight_shards() {
    let stream = unique("balance");
    create_stream(&stream, 8).await;
    let puts = put_records(&stream, &records("b", 800)).await;
    let topic = format!("persistent://public/default/{}", unique("balance"));
    let app = unique("balance-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let path = write_config(&config(&app, &stream, &topic, None));
    let mut workers: Vec<Host> = (0..3).map(|_| Host::start(&path)).collect();

    let started = tokio::time::Instant::now();
    let split = wait_for("a 3/3/2 split of 8 leases", Duration::from_secs(60), || {
        let app = app.clone();
        async move {
            let mut counts: Vec<usize> = owners(&app).await.into_values().collect();
            counts.sort();
            (counts == [2, 3, 3]).then_some(counts)
        }
    })
    .await;
    println!("converged to {split:?} in {:?}", started.elapsed());
    collector.wait_for_distinct(puts.len(), LONG).await;
    for w in &workers {
        w.signal("TERM");
    }
    for w in workers.iter_mut() {
        assert_eq!(w.wait_exit(LONG).await, Some(0), "log:\n{}", w.log());
    }
    let got: HashSet<String> = collector
        .all()
        .iter()
        .map(|m| m.prop("kinesis.sequence.number").to_string())
        .collect();
    assert!(
        puts.iter().all(|p| got.contains(&p.sequence)),
        "every record arrived"
    );
}

/// Under continuous load, SIGTERM one of two workers: its shards move to the other with
/// nothing lost and nothing delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_handoff_under_load_has_no_loss_and_no_duplicates() {
    graceful_handoff(Mode::Polling).await
}

/// [`graceful_handoff_under_load_has_no_loss_and_no_duplicates`] with enhanced fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_handoff_under_load_in_fan_out_mode() {
    graceful_handoff(Mode::FanOut).await
}

async fn graceful_handoff(mode: Mode) {
    let (app, mut collector, mut a, mut b) = balanced_pair("handoff", mode).await;
    // Load for ~8 s while worker a is stopped in the middle.
    let load = continuous_load(&app, "r");
    collector.wait_for(200, LONG).await;
    a.signal("TERM");
    assert_eq!(a.wait_exit(LONG).await, Some(0), "log:\n{}", a.log());
    let log = a.log();
    // From the signal on: a shard whose consumer stops first is released before the
    // coordinator logs its own shutdown, and a release is as good as a hand-over here
    // (the other worker takes it at its next round; nothing is lost).
    let stopping = log.find("signal received").expect("a logged the signal");
    assert_eq!(
        log[stopping..].matches("released lease").count(),
        2,
        "both of a's leases released at once:\n{log}"
    );
    let puts = load.await.expect("load");
    collector.wait_for_distinct(puts.len(), LONG).await;
    b.signal("TERM");
    assert_eq!(b.wait_exit(LONG).await, Some(0), "log:\n{}", b.log());

    let counts = deliveries_by_sequence(&collector.all());
    assert!(
        puts.iter().all(|p| counts.contains_key(&p.sequence)),
        "nothing lost"
    );
    let dups = counts.values().filter(|c| **c > 1).count();
    let lease_events = |h: &Host| {
        h.log()
            .lines()
            .filter(|l| {
                l.contains("lease") || l.contains("rewind") || l.contains("reading the shard again")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        dups,
        0,
        "records delivered twice after a graceful handoff\na:\n{}\nb:\n{}",
        lease_events(&a),
        lease_events(&b)
    );
}

/// A lease table written in the KCL 2.x layout by someone else (a Pulsar IO Kinesis source,
/// say) is adopted: consumption resumes after its checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_a_kcl_lease_table_and_resumes_at_its_checkpoints() {
    let stream = unique("adopt");
    create_stream(&stream, 2).await;
    let puts = put_records(&stream, &records("a", 60)).await;
    let app = unique("adopt-app");
    // Shard 0 was checkpointed by the KCL at its 10th record; shard 1 never got past
    // TRIM_HORIZON. Both are owned by a KCL worker that is gone (its counter stands still).
    let shard0: Vec<&Put> = puts
        .iter()
        .filter(|p| p.shard.ends_with("000000000000"))
        .collect();
    assert!(shard0.len() > 10, "records spread over both shards");
    let kcl_worker = Some("ip-10-1-2-3:kcl-worker");
    write_kcl_lease_table(
        &app,
        &[
            ("shardId-000000000000", kcl_worker, &shard0[9].sequence, 0),
            ("shardId-000000000001", kcl_worker, "TRIM_HORIZON", 0),
        ],
    )
    .await;
    let topic = format!("persistent://public/default/{}", unique("adopt"));
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let path = write_config(&config(&app, &stream, &topic, None));
    let mut host = Host::start(&path);
    let expected = puts.len() - 10;
    collector.wait_for(expected, LONG).await;
    // Both leases were taken from the KCL worker once they expired.
    let o = owners(&app).await;
    assert!(!o.contains_key("ip-10-1-2-3:kcl-worker"), "{o:?}");
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    let got: HashSet<String> = collector
        .all()
        .iter()
        .map(|m| m.prop("kinesis.sequence.number").to_string())
        .collect();
    for (i, p) in shard0.iter().enumerate() {
        assert_eq!(
            got.contains(&p.sequence),
            i >= 10,
            "shard 0 record {i} (checkpoint after record 9)"
        );
    }
    assert_eq!(
        collector.count(),
        expected,
        "nothing before the KCL checkpoint, nothing twice"
    );
}

/// The items a KCL 3.5 application keeps in its lease table beside the leases, as it writes
/// them (`MigrationState`, the DynamoDB lock client's leader lock, `WorkerMetricStats`, each
/// with its `entityType`), keyed by `leaseKey`. Numbers are written as DynamoDB stores them
/// (normalised: `13`, not `13.0`), so reading an item back gives it unchanged.
fn kcl3_coordinator_items(kcl_worker: &str) -> Vec<HashMap<String, AttributeValue>> {
    let s = |v: &str| AttributeValue::S(v.to_string());
    let n = |v: &str| AttributeValue::N(v.to_string());
    let history = AttributeValue::L(vec![AttributeValue::M(HashMap::from([
        ("cv".to_string(), s("CLIENT_VERSION_3X_WITH_ROLLBACK")),
        ("mb".to_string(), s(kcl_worker)),
        ("mts".to_string(), n("1796600000000")),
    ]))]);
    vec![
        HashMap::from([
            ("leaseKey".to_string(), s("Migration3.0")),
            ("entityType".to_string(), s("CLIENT_VERSION_MIGRATION")),
            ("cv".to_string(), s("CLIENT_VERSION_3X")),
            ("mb".to_string(), s(kcl_worker)),
            ("mts".to_string(), n("1796600001000")),
            ("h".to_string(), history),
        ]),
        HashMap::from([
            ("leaseKey".to_string(), s("Leader")),
            ("entityType".to_string(), s("LEADER")),
            ("ownerName".to_string(), s(kcl_worker)),
            ("leaseDuration".to_string(), s("10000")),
            (
                "recordVersionNumber".to_string(),
                s("3f1b7a2e-4c5d-4e6f-8a9b-0c1d2e3f4a5b"),
            ),
        ]),
        HashMap::from([
            ("leaseKey".to_string(), s(kcl_worker)),
            ("entityType".to_string(), s("WORKER_METRIC_STATS")),
            ("lut".to_string(), n("1796600002")),
            (
                "sts".to_string(),
                AttributeValue::M(HashMap::from([(
                    "C".to_string(),
                    AttributeValue::L(vec![n("12.5"), n("13")]),
                )])),
            ),
            (
                "opr".to_string(),
                AttributeValue::M(HashMap::from([(
                    "C".to_string(),
                    AttributeValue::L(vec![n("-1")]),
                )])),
            ),
        ]),
    ]
}

/// A table a KCL 3.x application created holds items that are not leases. Two Shardline
/// workers taking it over balance its leases 1/1 as on a table of their own, and leave the
/// KCL's other items exactly as they were (never taken, counted, rewritten or deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcl3_items_in_the_lease_table_do_not_block_balancing() {
    let stream = unique("kcl3");
    create_stream(&stream, 2).await;
    let app = unique("kcl3-app");
    let kcl_worker = "ip-10-1-2-3.ec2.internal:6f0d1c2b-kcl";
    write_kcl_lease_table(
        &app,
        &[
            ("shardId-000000000000", Some(kcl_worker), "TRIM_HORIZON", 0),
            ("shardId-000000000001", Some(kcl_worker), "TRIM_HORIZON", 0),
        ],
    )
    .await;
    let items = kcl3_coordinator_items(kcl_worker);
    for item in &items {
        dynamodb()
            .put_item()
            .table_name(&app)
            .set_item(Some(item.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutItem {app}: {e:?}"));
    }
    let topic = format!("persistent://public/default/{app}");
    let path = write_config(&config(&app, &stream, &topic, None));
    let mut a = Host::start(&path);
    wait_for("worker a to hold both leases", LONG, || {
        let app = app.clone();
        async move {
            let o = owners(&app).await;
            (o.len() == 1 && o.values().all(|&n| n == 2) && !o.contains_key(kcl_worker))
                .then_some(())
        }
    })
    .await;
    let mut b = Host::start(&path);
    let started = tokio::time::Instant::now();
    wait_for(
        "a 1/1 split once worker b joins",
        Duration::from_secs(30),
        || {
            let app = app.clone();
            async move {
                (owners(&app).await.values().copied().collect::<Vec<_>>() == [1, 1]).then_some(())
            }
        },
    )
    .await;
    println!("balanced 1/1 in {:?}", started.elapsed());
    for h in [&a, &b] {
        h.signal("TERM");
    }
    for h in [&mut a, &mut b] {
        assert_eq!(h.wait_exit(LONG).await, Some(0), "log:\n{}", h.log());
    }
    for item in &items {
        let key = item["leaseKey"].clone();
        let now = dynamodb()
            .get_item()
            .table_name(&app)
            .key("leaseKey", key.clone())
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetItem {key:?}: {e:?}"));
        assert_eq!(
            now.item(),
            Some(item),
            "the KCL's item {key:?} is untouched"
        );
    }
}

fn log_time(line: &str) -> Option<humantime::Timestamp> {
    line.split_whitespace().next()?.parse().ok()
}

/// A worker whose lease table becomes unreachable stops its shards before another worker
/// can take them (and so never works on a shard it no longer owns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_worker_stops_before_its_leases_are_taken() {
    let stream = unique("cutoff");
    create_stream(&stream, 2).await;
    put_records(&stream, &records("c", 40)).await;
    let topic = format!("persistent://public/default/{}", unique("cutoff"));
    let app = unique("cutoff-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let mut relay = Relay::start();
    let mut a = Host::start(&write_config(&config(
        &app,
        &stream,
        &topic,
        Some(&relay.endpoint()),
    )));
    wait_for(
        "worker a to hold both leases",
        Duration::from_secs(60),
        || {
            let app = app.clone();
            async move { (owners(&app).await.values().sum::<usize>() == 2).then_some(()) }
        },
    )
    .await;
    collector.wait_for(40, LONG).await;
    // b never steals: it may only take what expires.
    let b_config =
        config(&app, &stream, &topic, None).replace("  max_steal: 2\n", "  max_steal: 0\n");
    assert!(b_config.contains("max_steal: 0"));
    let mut b = Host::start(&write_config(&b_config));
    b.wait_log("worker started", LONG).await;
    relay.cut();
    b.wait_log("took lease", LONG).await;
    a.wait_log("stopping the shard before another worker can take it", LONG)
        .await;
    let stops: Vec<_> = a
        .log()
        .lines()
        .filter(|l| l.contains("stopping the shard before"))
        .filter_map(log_time)
        .collect();
    let takes: Vec<_> = b
        .log()
        .lines()
        .filter(|l| l.contains("took lease"))
        .filter_map(log_time)
        .collect();
    assert_eq!(stops.len(), 2, "both shards stopped:\n{}", a.log());
    let last_stop = stops
        .iter()
        .map(|t| std::time::SystemTime::from(*t))
        .max()
        .expect("stops");
    let first_take = takes
        .iter()
        .map(|t| std::time::SystemTime::from(*t))
        .min()
        .expect("takes");
    assert!(
        last_stop < first_take,
        "a stopped at {last_stop:?}, b took at {first_take:?}"
    );
    println!(
        "a stopped its shards {:?} before b took the first lease",
        first_take.duration_since(last_stop).unwrap_or_default()
    );
    assert!(
        b.log()
            .lines()
            .filter(|l| l.contains("took lease"))
            .all(|l| l.contains("reason=Free")),
        "b took expired leases only:\n{}",
        b.log()
    );
    b.signal("TERM");
    a.signal("KILL");
    assert_eq!(b.wait_exit(LONG).await, Some(0), "log:\n{}", b.log());
}

/// Under continuous load, kill -9 one of two workers: the survivor takes its shards within
/// the lease duration plus a taking round, nothing is lost, and the only duplicates are
/// records after the killed worker's last checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_fails_over_without_loss() {
    killed_worker_fails_over(Mode::Polling).await
}

/// [`killed_worker_fails_over_without_loss`] with enhanced fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_fails_over_in_fan_out_mode() {
    killed_worker_fails_over(Mode::FanOut).await
}

async fn killed_worker_fails_over(mode: Mode) {
    let (app, mut collector, mut a, mut b) = balanced_pair("failover", mode).await;
    let load = continuous_load(&app, "f");
    collector.wait_for(200, LONG).await;
    let a_id = a
        .log()
        .lines()
        .find(|l| l.contains("worker started"))
        .and_then(|l| {
            l.split("worker=")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .expect("a's worker id in its log");
    let a_shards: HashSet<String> = lease_owners(&app)
        .await
        .into_iter()
        .filter(|(_, o)| *o == a_id)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(a_shards.len(), 2, "a owns two shards at the kill");
    a.signal("KILL");
    let killed = std::time::SystemTime::now();
    a.wait_exit(LONG).await;
    let at_kill = checkpoints(&app).await;
    let takes_before = b.log().matches("took lease").count();
    wait_for("b to take a's leases", LONG, || {
        let app = app.clone();
        async move { (owners(&app).await.values().copied().collect::<Vec<_>>() == [4]).then_some(()) }
    })
    .await;
    let failover = killed.elapsed().unwrap_or_default();
    println!("failover after kill -9: {failover:?} (lease duration {LEASE_DURATION:?}, take interval {TAKE_INTERVAL:?})");
    assert!(b.log().matches("took lease").count() > takes_before);
    assert!(
        // Lease duration + one taking round, plus a second for the scans and the polls.
        failover < LEASE_DURATION + TAKE_INTERVAL + Duration::from_secs(1),
        "failover took {failover:?}"
    );

    let puts = load.await.expect("load");
    collector.wait_for_distinct(puts.len(), LONG).await;
    b.signal("TERM");
    assert_eq!(b.wait_exit(LONG).await, Some(0), "log:\n{}", b.log());

    let counts = deliveries_by_sequence(&collector.all());
    assert!(
        puts.iter().all(|p| counts.contains_key(&p.sequence)),
        "nothing lost"
    );
    let mut dups = 0;
    for p in &puts {
        if counts[&p.sequence] > 1 {
            dups += 1;
            assert!(
                a_shards.contains(&p.shard),
                "duplicate {} on {}, which a did not own; b's lease and delivery events:\n{}",
                p.sequence,
                p.shard,
                b.log()
                    .lines()
                    .filter(|l| l.contains("lease") || l.contains("deliver") || l.contains("WARN"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let cp = at_kill
                .get(&p.shard)
                .map(String::as_str)
                .unwrap_or("TRIM_HORIZON");
            let checkpointed = cp.chars().all(|c| c.is_ascii_digit()) && seq_le(&p.sequence, cp);
            assert!(
                !checkpointed,
                "{} was checkpointed ({cp}) yet delivered twice",
                p.sequence
            );
        }
    }
    println!(
        "{dups} duplicates of {} records, all after a's last checkpoints",
        puts.len()
    );
}

/// Resharding during consumption (2 → 4 shards, then back to 2): nothing is lost, and for
/// every partition key the records arrive in the order they were put, across parent and
/// child shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_keeps_every_record_and_the_order_per_key() {
    resharding(Mode::Polling).await
}

/// [`resharding_keeps_every_record_and_the_order_per_key`] with enhanced fan-out. No
/// emulator ends a subscription at a closed shard as AWS does (ChildShards and no
/// continuation sequence number; docs/emulators.md), so the worker subscribes through
/// [`proxy::EfoFacade`], a test double of SubscribeToShard over kinesis-local; every other
/// call (consumer registration, leases' ListShards, …) reaches kinesis-local.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_in_fan_out_mode_ends_parents_on_child_shards_events() {
    resharding(Mode::FanOut).await
}

async fn resharding(mode: Mode) {
    let stream = unique("reshard");
    create_stream(&stream, 2).await;
    let topic = format!("persistent://public/default/{}", unique("reshard"));
    let app = unique("reshard-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let facade = match mode {
        Mode::FanOut => Some(proxy::EfoFacade::start(&kinesis_endpoint()).await),
        Mode::Polling => None,
    };
    let mut text = in_mode(&config(&app, &stream, &topic, None), mode, "").replace(
        "  max_steal: 2\n",
        "  max_steal: 2\n  shard_sync_interval: 1s\n",
    );
    if let Some(f) = &facade {
        text = text.replace(
            &format!("kinesis: {}", kinesis_endpoint()),
            &format!("kinesis: {}", f.endpoint),
        );
    }
    let path = write_config(&text);
    let mut host = Host::start(&path);
    let kinesis = kinesis();
    let mut puts = Vec::new();
    // Keys carry a counter in the payload: key-k:n is the n-th record of key k.
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut batch = |n: usize| -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let key = format!("key-{}", i % 17);
                let c = next.entry(key.clone()).or_default();
                *c += 1;
                (key.clone(), format!("{key}:{c}").into_bytes())
            })
            .collect()
    };
    puts.extend(put_records(&stream, &batch(150)).await);
    // SplitShard: shard 0 at the middle of its hash range.
    let shard0 = split_shard_zero(&kinesis, &stream).await;
    puts.extend(put_records(&stream, &batch(150)).await);
    // MergeShards: the two children of shard 0 back into one.
    let children = merge_children_of(&kinesis, &stream, &shard0).await;
    puts.extend(put_records(&stream, &batch(150)).await);

    collector.wait_for_distinct(puts.len(), LONG).await;
    // Finished parents are cleaned up once their children started (shard 0, then its two
    // children), and shard sync (every second here) does not bring them back.
    wait_for("only the two open shards' leases to remain", LONG, || {
        let app = app.clone();
        async move {
            let cps = checkpoints(&app).await;
            (cps.len() == 2 && cps.values().all(|c| c != "SHARD_END")).then_some(())
        }
    })
    .await;
    let created = host.log().matches("created lease").count();
    // A negative check needs a window: two shard-sync rounds.
    let window_end = tokio::time::Instant::now() + Duration::from_secs(3);
    wait_for(
        "two more shard syncs",
        Duration::from_secs(10),
        || async move { (tokio::time::Instant::now() > window_end).then_some(()) },
    )
    .await;
    assert_eq!(
        host.log().matches("created lease").count(),
        created,
        "a cleaned-up lease came back"
    );
    assert_eq!(checkpoints(&app).await.len(), 2);
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    let log = host.log();
    assert_eq!(
        log.matches("shard end reached").count(),
        3,
        "shard 0 and both children ended:\n{log}"
    );
    // childShardIds is recorded at shard end (from GetRecords' ChildShards).
    let end0 = log
        .lines()
        .find(|l| l.contains("shard end reached") && l.contains(&format!("shard={shard0}")))
        .expect("shard 0 ended");
    assert!(
        children.iter().all(|c| end0.contains(&c.shard_id)),
        "children recorded: {end0}"
    );
    assert_eq!(
        log.matches("deleted the lease of a finished parent shard")
            .count(),
        3,
        "{log}"
    );

    // Order per key, by first arrival.
    let mut seen: HashSet<String> = HashSet::new();
    let mut last: HashMap<String, usize> = HashMap::new();
    for m in collector.all() {
        let text = String::from_utf8_lossy(&m.payload).into_owned();
        if !seen.insert(text.clone()) {
            continue;
        }
        let (key, n) = text.split_once(':').expect("key:n");
        let n: usize = n.parse().expect("counter");
        let prev = last.insert(key.to_string(), n).unwrap_or(0);
        assert!(n > prev, "{key}: record {n} arrived after record {prev}");
    }
    assert_eq!(seen.len(), puts.len(), "every record arrived");
}

/// `initial_position: at_timestamp` starts where asked; a restart then resumes from the
/// checkpoints, not from the timestamp again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_timestamp_starts_where_asked_and_restarts_resume_from_checkpoints() {
    let stream = unique("attime");
    create_stream(&stream, 2).await;
    let before = put_records(&stream, &records("before", 20)).await;
    // A start time strictly between the two groups of records, a second away from both.
    let wait_until = |t: std::time::SystemTime| async move {
        wait_for(
            "the wall clock to pass a point",
            Duration::from_secs(5),
            || async move { (std::time::SystemTime::now() > t).then_some(()) },
        )
        .await
    };
    wait_until(std::time::SystemTime::now() + Duration::from_secs(1)).await;
    let start = std::time::SystemTime::now();
    wait_until(start + Duration::from_secs(1)).await;
    let after = put_records(&stream, &records("after", 20)).await;

    let topic = format!("persistent://public/default/{}", unique("attime"));
    let app = unique("attime-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let at = humantime::format_rfc3339_millis(start).to_string();
    let cfg = config(&app, &stream, &topic, None).replace(
        "  initial_position: trim_horizon\n",
        &format!("  initial_position: at_timestamp\n  at_timestamp: \"{at}\"\n"),
    );
    assert!(cfg.contains("at_timestamp: \""));
    let path = write_config(&cfg);
    let mut host = Host::start(&path);
    collector.wait_for(after.len(), LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    let got: HashSet<String> = collector
        .all()
        .iter()
        .map(|m| m.prop("kinesis.sequence.number").to_string())
        .collect();
    assert!(
        after.iter().all(|p| got.contains(&p.sequence)),
        "everything after {at}"
    );
    assert!(
        before.iter().all(|p| !got.contains(&p.sequence)),
        "nothing before {at}"
    );
    assert_eq!(collector.count(), after.len());

    // Restart: only what came since, once.
    let later = put_records(&stream, &records("later", 20)).await;
    let mut host = Host::start(&path);
    collector.wait_for(after.len() + later.len(), LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    assert_eq!(
        collector.count(),
        after.len() + later.len(),
        "resumed from the checkpoints"
    );
}

/// One application reading two streams: leases are keyed `stream:shard`, every record of
/// both streams arrives with its bare shard id, and `shardline status` shows both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_application_reads_several_streams() {
    let (s1, s2) = (unique("multi-a"), unique("multi-b"));
    create_stream(&s1, 2).await;
    create_stream(&s2, 1).await;
    let mut puts = put_records(&s1, &records("one", 30)).await;
    puts.extend(put_records(&s2, &records("two", 30)).await);
    let topic = format!("persistent://public/default/{}", unique("multi"));
    let app = unique("multi-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let cfg = config(&app, &s1, &topic, None).replace(
        &format!("  stream: {s1}\n"),
        &format!("  streams:\n    - name: {s1}\n    - name: {s2}\n"),
    );
    assert!(cfg.contains("streams:"));
    let path = write_config(&cfg);
    let mut host = Host::start(&path);
    // Sequence numbers repeat across streams: count messages, then compare payloads.
    collector.wait_for(puts.len(), LONG).await;

    let status = std::process::Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args(["status", "--config"])
        .arg(&path)
        .output()
        .expect("status");
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());

    let keys: HashSet<String> = lease_owners(&app).await.into_keys().collect::<HashSet<_>>();
    let cps = checkpoints(&app).await;
    let all_keys: HashSet<&String> = cps.keys().collect();
    assert_eq!(all_keys.len(), 3, "three leases: {all_keys:?}");
    assert!(
        cps.keys()
            .filter(|k| k.starts_with(&format!("{s1}:shardId-")))
            .count()
            == 2,
        "{cps:?}"
    );
    assert!(
        cps.keys()
            .filter(|k| k.starts_with(&format!("{s2}:shardId-")))
            .count()
            == 1,
        "{cps:?}"
    );
    assert!(keys.is_empty(), "released at shutdown: {keys:?}");
    for m in collector.all() {
        assert!(
            m.prop("kinesis.shard.id").starts_with("shardId-"),
            "bare shard id: {:?}",
            m.properties
        );
    }
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        table.contains(&format!("{s1}:shardId-")) && table.contains(&format!("{s2}:shardId-")),
        "{table}"
    );
}

/// A worker that lost its lease can never write a checkpoint for it: the write is
/// conditional on the counter and owner it last knew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_cannot_checkpoint() {
    use shardline::consumer::checkpoint::Checkpoint;
    use shardline::consumer::lease::Lease;
    use shardline::consumer::lease_table::{LeaseTable, LeaseTableError};

    let table = LeaseTable::new(dynamodb(), unique("stale"));
    table.ensure().await.expect("create table");
    let lease = Lease::new("shardId-000000000000", Checkpoint::TrimHorizon, Vec::new());
    assert!(table.create_if_absent(&lease).await.expect("create"));
    let a_counter = table.take(&lease, "worker-a").await.expect("a takes");
    // b takes over (say a's lease expired while a was cut off).
    let seen = table.list().await.expect("list").remove(0);
    let b_counter = table.take(&seen, "worker-b").await.expect("b takes");
    let cp = Checkpoint::Sequence {
        sequence: "4242".into(),
        sub: 0,
    };
    let stale = table
        .checkpoint(&lease.key, "worker-a", a_counter, &cp, &[], None)
        .await;
    assert!(
        matches!(stale, Err(LeaseTableError::Conflict(_))),
        "{stale:?}"
    );
    assert!(matches!(
        table.renew(&lease.key, "worker-a", a_counter).await,
        Err(LeaseTableError::Conflict(_))
    ));
    let before = table.list().await.expect("list").remove(0);
    assert_eq!(before.owner_switches, 2, "a and b each took it: {before:?}");
    assert_eq!(
        before.checkpoint,
        Checkpoint::TrimHorizon,
        "a's write did not land"
    );
    // The owner's write goes through and resets the owner switches, as in the KCL.
    table
        .checkpoint(&lease.key, "worker-b", b_counter, &cp, &[], None)
        .await
        .expect("b checkpoints");
    let now = table.list().await.expect("list").remove(0);
    assert_eq!(now.owner.as_deref(), Some("worker-b"));
    assert_eq!(now.checkpoint, cp);
    assert_eq!(now.owner_switches, 0, "{now:?}");
}
