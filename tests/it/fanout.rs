//! Enhanced fan-out against the local stack (kinesis-local, which implements consumer
//! registration and SubscribeToShard over HTTP/1.1): records pushed through
//! SubscribeToShard reach Pulsar with the guarantees of polling, subscriptions are renewed
//! without loss, and the application's consumer is deregistered on request or by the last
//! worker to stop. Kill -9, SIGTERM handoff and resharding in fan-out mode are in
//! coordination.rs, which runs those tests in both modes; shard end there goes through a
//! test double of SubscribeToShard (`support::proxy::EfoFacade`), because no emulator
//! ends a subscription at a closed shard as AWS does.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::*;

const LONG: Duration = Duration::from_secs(180);

fn fan_out_config(app: &str, stream: &str, topic: &str, fan_out: &str) -> String {
    in_mode(&stack_config(app, stream, topic, ""), Mode::FanOut, fan_out)
}

/// The consumers registered on `stream`: name → status.
async fn consumers(k: &aws_sdk_kinesis::Client, stream: &str) -> HashMap<String, String> {
    let arn = k
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary
        .expect("summary")
        .stream_arn;
    let out = k
        .list_stream_consumers()
        .stream_arn(arn)
        .send()
        .await
        .expect("ListStreamConsumers");
    out.consumers
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.consumer_name, c.consumer_status.as_str().to_string()))
        .collect()
}

/// `rounds` rounds of `per_round` records over 23 keys, one round every 200ms, put while
/// the worker consumes.
fn load(
    k: aws_sdk_kinesis::Client,
    stream: &str,
    rounds: usize,
    per_round: usize,
) -> tokio::task::JoinHandle<Vec<Put>> {
    let stream = stream.to_string();
    tokio::spawn(async move {
        let mut all = Vec::new();
        for round in 0..rounds {
            let records: Vec<(String, Vec<u8>)> = (0..per_round)
                .map(|i| {
                    (
                        format!("key-{}", i % 23),
                        format!("r{round}-{i}").into_bytes(),
                    )
                })
                .collect();
            all.extend(put_records_on(&k, &stream, &records).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        all
    })
}

/// Every put record arrived exactly once, and each shard's records (so each key's) in
/// the order they were stored.
fn assert_exactly_once_in_order(puts: &[Put], got: &[Received]) {
    let counts = deliveries_by_sequence(got);
    for p in puts {
        assert_eq!(
            counts.get(&p.sequence).copied().unwrap_or(0),
            1,
            "record {} of {} (key {}) delivered {} times",
            p.sequence,
            p.shard,
            p.key,
            counts.get(&p.sequence).copied().unwrap_or(0)
        );
    }
    assert_eq!(got.len(), puts.len(), "nothing but the put records arrived");
    assert_in_shard_order(got);
}

/// Records put while the worker reads through fan-out arrive once each, in order per
/// shard, and the application's consumer is registered and ACTIVE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_put_during_consumption_arrive_once_in_order() {
    let stream = unique("efo");
    create_stream(&stream, 4).await;
    let topic = format!("persistent://public/default/{}", unique("efo"));
    let app = unique("efo-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let config = write_config(&fan_out_config(&app, &stream, &topic, ""));
    let mut host = Host::start(&config);
    wait_for("four subscriptions", LONG, || {
        let n = host.log().matches("subscribed").count();
        async move { (n >= 4).then_some(()) }
    })
    .await;
    assert_eq!(
        consumers(&kinesis(), &stream)
            .await
            .get(&app)
            .map(String::as_str),
        Some("ACTIVE"),
        "the consumer is named after the application"
    );

    let puts = load(kinesis(), &stream, 20, 50).await.expect("load");
    let got = collector.wait_for(puts.len(), LONG).await;
    stop_once_checkpointed(&mut host, &app, &puts).await;
    assert!(
        !host.log().contains("GetShardIterator"),
        "fan-out mode does not poll:\n{}",
        host.log()
    );
    assert_exactly_once_in_order(&puts, &got);
    assert_eq!(collector.all().len(), puts.len(), "no late duplicates");
}

/// Waits until every shard's last put record is checkpointed, then SIGTERM and a clean
/// exit.
async fn stop_once_checkpointed(host: &mut Host, app: &str, puts: &[Put]) {
    let mut last: HashMap<&str, &str> = HashMap::new();
    for p in puts {
        last.insert(&p.shard, &p.sequence);
    }
    for seq in last.values() {
        wait_for_checkpoint(app, seq, LONG).await;
    }
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
}

/// With subscriptions renewed every second, consumption goes on across many renewals
/// with nothing lost and nothing delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_subscriptions_lose_and_repeat_nothing() {
    let stream = unique("renew");
    create_stream(&stream, 2).await;
    let topic = format!("persistent://public/default/{}", unique("renew"));
    let app = unique("renew-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let config = write_config(&fan_out_config(
        &app,
        &stream,
        &topic,
        "    renewal_interval: 1s\n",
    ));
    let mut host = Host::start(&config);
    host.wait_log("subscribed", LONG).await;

    // About 12 s of load: a dozen renewals per shard while records flow.
    let puts = load(kinesis(), &stream, 60, 20).await.expect("load");
    let got = collector.wait_for(puts.len(), LONG).await;
    stop_once_checkpointed(&mut host, &app, &puts).await;
    let renewals = host.log().matches("renewing the subscription").count();
    // kinesis-local refuses a new subscription while it still sees the old connection
    // (AWS lets one made 5 s after the last take over), so some renewals back off.
    assert!(
        renewals >= 6,
        "only {renewals} renewals in ~12 s with renewal_interval 1s:\n{}",
        host.log()
    );
    println!("{renewals} renewals, {} records", puts.len());
    assert_exactly_once_in_order(&puts, &got);
    assert_eq!(collector.all().len(), puts.len(), "no late duplicates");
}

/// `shardline fanout deregister` removes the application's consumer; `fanout list`
/// shows it before and not after; a second deregister says there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_command_leaves_no_consumer_registered() {
    let stream = unique("dereg");
    create_stream(&stream, 1).await;
    let topic = format!("persistent://public/default/{}", unique("dereg"));
    let app = unique("dereg-app");
    let config = write_config(&fan_out_config(&app, &stream, &topic, ""));
    let mut host = Host::start(&config);
    host.wait_log("subscribed", LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());

    let list = shardline(&["fanout", "list", "--config"], &config);
    assert!(list.status.success(), "{list:?}");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains(&format!("{app}  ACTIVE")) && text.contains("(this application)"),
        "{text}"
    );

    let out = shardline(&["fanout", "deregister", "--config"], &config);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("stream {stream}: deregistered consumer {app}")
    );
    wait_for("the consumer to be gone", LONG, || {
        let stream = stream.clone();
        let app = app.clone();
        async move { (!consumers(&kinesis(), &stream).await.contains_key(&app)).then_some(()) }
    })
    .await;
    let again = shardline(&["fanout", "deregister", "--config"], &config);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        format!("stream {stream}: no consumer {app} registered")
    );
}

/// With `deregister_on_shutdown`, the consumer stays while another worker still holds
/// leases and is deregistered when the last worker stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_worker_to_stop_deregisters_the_consumer() {
    let stream = unique("last");
    create_stream(&stream, 2).await;
    let topic = format!("persistent://public/default/{}", unique("last"));
    let app = unique("last-app");
    let config = write_config(&fan_out_config(
        &app,
        &stream,
        &topic,
        "    deregister_on_shutdown: true\n",
    ));
    let mut a = Host::start(&config);
    a.wait_log("subscribed", LONG).await;
    let mut b = Host::start(&config);
    b.wait_log("took lease", LONG).await;
    a.signal("TERM");
    assert_eq!(a.wait_exit(LONG).await, Some(0), "log:\n{}", a.log());
    assert!(
        a.log().contains("the fan-out consumer stays registered"),
        "a saw b's leases:\n{}",
        a.log()
    );
    assert!(consumers(&kinesis(), &stream).await.contains_key(&app));

    b.signal("TERM");
    assert_eq!(b.wait_exit(LONG).await, Some(0), "log:\n{}", b.log());
    assert!(
        b.log().contains("fan-out consumer deregistered"),
        "{}",
        b.log()
    );
    wait_for("the consumer to be gone", LONG, || {
        let stream = stream.clone();
        let app = app.clone();
        async move { (!consumers(&kinesis(), &stream).await.contains_key(&app)).then_some(()) }
    })
    .await;
}

fn shardline(args: &[&str], config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args(args)
        .arg(config)
        .output()
        .expect("run shardline")
}

/// A worker reading `stream` on kinesis-local through the SubscribeToShard test double
/// (which sends no event while there are no records, so a subscription goes silent).
async fn through_facade(
    app: &str,
    stream: &str,
    topic: &str,
    fan_out: &str,
    extra: &str,
) -> (proxy::EfoFacade, Host) {
    let facade = proxy::EfoFacade::start(&kinesis_endpoint()).await;
    let text = fan_out_config(app, stream, topic, fan_out)
        .replace(
            &format!("kinesis: {}", kinesis_endpoint()),
            &format!("kinesis: {}", facade.endpoint),
        )
        .replace("leases:\n  duration: 3s\n", extra);
    let host = Host::start(&write_config(&text));
    (facade, host)
}

/// A subscription that delivers nothing for `idle_timeout` is replaced, and records put
/// afterwards arrive once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscription_is_replaced() {
    let stream = unique("silent");
    create_stream(&stream, 1).await;
    let topic = format!("persistent://public/default/{}", unique("silent"));
    let app = unique("silent-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let (_facade, mut host) = through_facade(
        &app,
        &stream,
        &topic,
        "    idle_timeout: 6s\n",
        "leases:\n  duration: 3s\n",
    )
    .await;
    // The test double, like kinesis-local, sends nothing before the first records, so
    // the first SubscribeToShard call stays silent and is replaced after 6 s.
    host.wait_log("subscription delivered nothing; replacing it", LONG)
        .await;
    let puts = load(kinesis(), &stream, 3, 20).await.expect("load");
    let got = collector.wait_for(puts.len(), LONG).await;
    stop_once_checkpointed(&mut host, &app, &puts).await;
    assert_exactly_once_in_order(&puts, &got);
}

/// A worker whose lease is taken drops that shard's subscription at once (by its next
/// renewal), not at the subscription's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_closes_its_subscription() {
    use shardline::consumer::lease_table::LeaseTable;

    let stream = unique("lost");
    create_stream(&stream, 1).await;
    let topic = format!("persistent://public/default/{}", unique("lost"));
    let app = unique("lost-app");
    // A record, so that the subscription answers at once (AWS would send its
    // initial-response; the test double sends nothing before the first records).
    put_records(&stream, &[("k".into(), b"first".to_vec())]).await;
    let (facade, mut host) = through_facade(
        &app,
        &stream,
        &topic,
        "",
        "leases:\n  duration: 3s\n  renew_interval: 500ms\n",
    )
    .await;
    host.wait_log("subscribed", LONG).await;
    assert_eq!(facade.open_subscriptions(), 1);
    // Another worker takes the lease (as if this one had been cut off).
    let table = LeaseTable::new(dynamodb(), app.clone());
    let lease = table.list().await.expect("list").remove(0);
    table.take(&lease, "another-worker").await.expect("take");
    let taken = std::time::Instant::now();
    wait_for(
        "the subscription to be closed",
        Duration::from_secs(10),
        || {
            let n = facade.open_subscriptions();
            async move { (n == 0).then_some(()) }
        },
    )
    .await;
    let closed_after = taken.elapsed();
    println!("subscription closed {closed_after:?} after the lease was taken");
    // Bound: the lease duration, within which the next renewal (every 500ms) fails; a
    // subscription left open would last until its 5-minute end.
    assert!(
        closed_after < Duration::from_secs(3),
        "closed only after {closed_after:?} (renewals every 500ms)"
    );
    host.wait_log("lease lost", LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
}
