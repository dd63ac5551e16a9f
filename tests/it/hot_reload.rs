//! Hot reload against the local stack: while records keep arriving, the pipeline's
//! component file is replaced by another version (`tests/guests/stamp`, which marks every
//! message with `guest.version`), then by files that are no usable component. The new
//! version is used from the next batch of each shard; no record is lost or delivered
//! twice across the swap; a broken version is rejected with a log line and the running
//! version goes on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

const LONG: Duration = Duration::from_secs(180);
const STAMP: &str = "stamp-2";

/// Replaces `dst` atomically (write beside it, then rename), as a deploy would.
fn replace_file(dst: &Path, bytes: &[u8]) {
    let tmp = dst.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dst).expect("rename");
}

/// A folder holding `live.wasm`, a copy of the passthrough guest.
fn live_component() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("hot-reload"));
    std::fs::create_dir_all(&dir).expect("dir");
    let live = dir.join("live.wasm");
    std::fs::copy(guest("passthrough"), &live).expect("copy");
    live
}

fn config(app: &str, stream: &str, topic: &str, live: &Path, watch: &str) -> PathBuf {
    let extra = format!(
        "wasm:\n  watch_interval: {watch}\nstages:\n  pipeline:\n    component: {}\n",
        live.display()
    );
    write_config(&stack_config(app, stream, topic, &extra))
}

/// Puts small records into `stream` until `stop`, 20 at a time; returns every put.
fn start_load(stream: &str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Put>> {
    let stream = stream.to_string();
    tokio::spawn(async move {
        let mut puts = Vec::new();
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<(String, Vec<u8>)> = (i..i + 20)
                .map(|n| (format!("key-{}", n % 13), format!("rec-{n}").into_bytes()))
                .collect();
            i += 20;
            puts.extend(put_records(&stream, &batch).await);
            // pacing of the load, not synchronisation
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        puts
    })
}

fn version(m: &Received) -> &str {
    m.prop("guest.version")
}

/// Waits until `text` occurs `n` times in the host's log.
async fn wait_log_count(host: &Host, text: &str, n: usize) {
    wait_for(&format!("{n}× {text:?} in the log"), LONG, || async move {
        (host.log().matches(text).count() >= n).then_some(())
    })
    .await
}

/// Waits until `n` more messages arrived than `after`, and returns those.
async fn more(collector: &mut Collector, after: usize, n: usize) -> Vec<Received> {
    collector.wait_for(after + n, LONG).await[after..].to_vec()
}

/// Every put delivered exactly once; per shard, once the new version appears the old one
/// never does again.
fn assert_once_each_and_versions_in_order(puts: &[Put], got: &[Received]) {
    let counts = deliveries_by_sequence(got);
    let lost: Vec<_> = puts
        .iter()
        .filter(|p| !counts.contains_key(&p.sequence))
        .collect();
    assert!(
        lost.is_empty(),
        "{} records lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        dups.is_empty(),
        "{} records delivered twice, e.g. {:?}",
        dups.len(),
        dups.first()
    );
    assert_eq!(got.len(), puts.len(), "nothing but the records put");
    let mut switched: HashMap<&str, bool> = HashMap::new();
    for m in got {
        let shard = m.prop("kinesis.shard.id");
        let new = version(m) == STAMP;
        let seen_new = switched.entry(shard).or_default();
        assert!(
            new || !*seen_new,
            "shard {shard}: record {} was handled by the old version after the new one",
            m.prop("kinesis.sequence.number")
        );
        *seen_new |= new;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_applies_mid_stream_and_broken_ones_are_rejected() {
    let stream = unique("reload");
    create_stream(&stream, 2).await;
    let topic = format!("persistent://public/default/{}", unique("reload"));
    let app = unique("reload-app");
    let live = live_component();
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&stream, stop.clone());
    let mut host = Host::start(&config(&app, &stream, &topic, &live, "200ms"));

    // The first version runs.
    let first = collector.wait_for(200, LONG).await;
    assert!(first.iter().all(|m| version(m).is_empty()));

    // Swap in the second version under load: it is used from the next batch.
    replace_file(&live, &std::fs::read(guest("stamp")).expect("stamp guest"));
    host.wait_log("reloaded components", LONG).await;
    wait_for("both shards handled by the new version", LONG, || {
        let got = collector.all();
        async move {
            let shards: std::collections::HashSet<&str> = got
                .iter()
                .filter(|m| version(m) == STAMP)
                .map(|m| m.prop("kinesis.shard.id"))
                .collect();
            (shards.len() == 2).then_some(())
        }
    })
    .await;

    // Garbage, then a valid component without the processor export: both rejected and
    // logged with the reason, and the running (second) version goes on.
    replace_file(&live, b"this is not a component");
    wait_log_count(&host, "rejected the new version", 1).await;
    assert!(
        host.log().contains("is not a valid Wasm component"),
        "{}",
        host.log()
    );
    replace_file(&live, b"\0asm\x0d\x00\x01\x00"); // an empty component
    wait_log_count(&host, "rejected the new version", 2).await;
    assert!(
        host.log()
            .contains("does not export shardline:connector/processor@0.1.0"),
        "{}",
        host.log()
    );
    let before = collector.count();
    let after = more(&mut collector, before, 200).await;
    assert!(
        after.iter().all(|m| version(m) == STAMP),
        "after the rejections every record is handled by the running version"
    );
    assert_eq!(
        host.log().matches("reloaded components, in use").count(),
        1,
        "only the good version was published:\n{}",
        host.log()
    );

    stop.store(true, Ordering::Relaxed);
    let puts = load.await.expect("load task");
    collector.wait_for_distinct(puts.len(), LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    assert_once_each_and_versions_in_order(&puts, &collector.all());
}

/// With file watching off (`watch_interval: 0s`), a changed file is not picked up until
/// SIGHUP asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_when_watching_is_off() {
    let stream = unique("hup");
    create_stream(&stream, 1).await;
    let topic = format!("persistent://public/default/{}", unique("hup"));
    let app = unique("hup-app");
    let live = live_component();
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&stream, stop.clone());
    let mut host = Host::start(&config(&app, &stream, &topic, &live, "0s"));
    // A SIGHUP while the worker is still starting does not end it; it is served once the
    // watcher runs (reloading the same version).
    host.wait_log("listening for SIGHUP", LONG).await;
    host.signal("HUP");
    wait_log_count(&host, "reloaded components, in use", 1).await;

    collector.wait_for(100, LONG).await;
    replace_file(&live, &std::fs::read(guest("stamp")).expect("stamp guest"));
    // Records put after the swap are still handled by the running version.
    let before = collector.count();
    let after = more(&mut collector, before, 200).await;
    assert!(after.iter().all(|m| version(m).is_empty()));
    assert_eq!(
        host.log().matches("reloaded components, in use").count(),
        1,
        "a changed file is not picked up without SIGHUP:\n{}",
        host.log()
    );

    host.signal("HUP");
    wait_log_count(&host, "reloaded components, in use", 2).await;
    wait_for("a message handled by the new version", LONG, || {
        let got = collector.all();
        async move { got.iter().any(|m| version(m) == STAMP).then_some(()) }
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let puts = load.await.expect("load task");
    collector.wait_for_distinct(puts.len(), LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    assert_once_each_and_versions_in_order(&puts, &collector.all());
}

/// Puts valid orders (guest-examples' rules; region `eu`, no priority: one message each)
/// into `stream` until `stop`, 20 at a time; returns every put.
fn start_order_load(stream: &str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Put>> {
    let stream = stream.to_string();
    tokio::spawn(async move {
        let mut puts = Vec::new();
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<(String, Vec<u8>)> = (i..i + 20)
                .map(|n| {
                    let order = format!(
                        r#"{{"id":"o-{n}","customer":"c-{}","amount":{}.5,"currency":"EUR","region":"eu"}}"#,
                        n % 7,
                        n % 100
                    );
                    (format!("key-{}", n % 13), order.into_bytes())
                })
                .collect();
            i += 20;
            puts.extend(put_records(&stream, &batch).await);
            // pacing of the load, not synchronisation
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        puts
    })
}

/// Which orders example wrote a message: Go's encoding/json sorts keys, Python's json keeps
/// the input's order (the orders start with `id`).
fn writer(m: &Received) -> &'static str {
    if m.payload.starts_with(br#"{"amount":"#) {
        "go"
    } else if m.payload.starts_with(br#"{"id":"#) {
        "python"
    } else {
        "unknown"
    }
}

/// The SDK guests hot-reload like any other: under load, the Python orders component is
/// swapped for the Go one, then back; every record is delivered exactly once, and each shard
/// goes Python → Go → Python, never back and forth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_go_components_swap_under_load_without_loss_or_duplicates() {
    let stream = unique("reload-sdk");
    create_stream(&stream, 2).await;
    let prefix = format!("persistent://public/default/{}-", unique("reload-sdk"));
    let topic = format!("{prefix}eu");
    let app = unique("reload-sdk-app");
    let dir = std::env::temp_dir().join(unique("hot-reload-sdk"));
    std::fs::create_dir_all(&dir).expect("dir");
    let live = dir.join("orders.wasm");
    let python = std::fs::read(guest("orders-python")).expect("python guest");
    let go = std::fs::read(guest("orders-go")).expect("go guest");
    std::fs::write(&live, &python).expect("write");
    let extra = format!(
        "wasm:\n  watch_interval: 200ms\nstages:\n  pipeline:\n    component: {}\n    settings:\n      topic_prefix: \"{prefix}\"\n    grants:\n      clocks: true    # Go's runtime needs a clock that moves\n",
        live.display()
    );
    let config = write_config(&stack_config(
        &app,
        &stream,
        &format!("{prefix}default"),
        &extra,
    ));
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_order_load(&stream, stop.clone());
    let mut host = Host::start(&config);

    let first = collector.wait_for(100, LONG).await;
    assert!(
        first.iter().all(|m| writer(m) == "python"),
        "the Python guest runs first"
    );

    for (bytes, name, reloads) in [(&go, "go", 1), (&python, "python", 2)] {
        let before = collector.count();
        replace_file(&live, bytes);
        wait_log_count(&host, "reloaded components, in use", reloads).await;
        wait_for(
            &format!("both shards handled by the {name} guest"),
            LONG,
            || {
                let got = collector.all();
                async move {
                    let shards: std::collections::HashSet<&str> = got[before..]
                        .iter()
                        .filter(|m| writer(m) == name)
                        .map(|m| m.prop("kinesis.shard.id"))
                        .collect();
                    (shards.len() == 2).then_some(())
                }
            },
        )
        .await;
    }

    stop.store(true, Ordering::Relaxed);
    let puts = load.await.expect("load task");
    collector.wait_for_distinct(puts.len(), LONG).await;
    host.signal("TERM");
    assert_eq!(host.wait_exit(LONG).await, Some(0), "log:\n{}", host.log());
    let got = collector.all();
    let counts = deliveries_by_sequence(&got);
    let lost = puts
        .iter()
        .filter(|p| !counts.contains_key(&p.sequence))
        .count();
    let dups = counts.values().filter(|c| **c > 1).count();
    assert_eq!(
        (lost, dups),
        (0, 0),
        "records lost, records delivered twice"
    );
    assert_eq!(got.len(), puts.len(), "nothing but the records put");
    let mut runs: HashMap<&str, Vec<&str>> = HashMap::new();
    for m in &got {
        let w = writer(m);
        assert_ne!(w, "unknown", "{:?}", String::from_utf8_lossy(&m.payload));
        let seq = runs.entry(m.prop("kinesis.shard.id")).or_default();
        if seq.last() != Some(&w) {
            seq.push(w);
        }
    }
    for (shard, seq) in runs {
        assert_eq!(
            seq,
            ["python", "go", "python"],
            "shard {shard}: guests in the order swapped in"
        );
    }
}
