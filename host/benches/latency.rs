//! Put → Pulsar latency, polling vs enhanced fan-out, on the local stack (kinesis-local and
//! ferrokinesis, dynalite, Pulsar standalone; `dev/stack up` first). One record is put every
//! 100 ms into a one-shard stream while one `shardline run` worker reads it; latency is
//! the time from just before PutRecord to the record's arrival at a Pulsar consumer.
//! Prints p50/p90/p99/max per mode. Run: `cargo bench -p shardline --bench latency`
//! (`SHARDLINE_LATENCY_RECORDS` sets the records per mode, default 300).

#[path = "../../tests/it/support/mod.rs"]
#[allow(dead_code)] // the bench uses a part of the tests' helpers
mod support;

use std::time::{Duration, SystemTime};

use support::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Which emulator serves Kinesis.
#[derive(Clone, Copy)]
enum On {
    KinesisLocal,
    Ferrokinesis,
}

async fn measure(label: &str, on: On, mode: Mode, polling: &str, n: usize) {
    let k = match on {
        On::KinesisLocal => kinesis(),
        On::Ferrokinesis => ferrokinesis(),
    };
    let stream = unique("latency");
    create_stream_on(&k, &stream, 1).await;
    let topic = format!("persistent://public/default/{}", unique("latency"));
    let app = unique("latency-app");
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let base = match on {
        On::KinesisLocal => stack_config(&app, &stream, &topic, ""),
        On::Ferrokinesis => ferro_stack_config(&app, &stream, &topic, ""),
    };
    let mut text = in_mode(&base, mode, "");
    if !polling.is_empty() {
        text = text.replacen(
            "  initial_position: trim_horizon\n",
            &format!("  initial_position: trim_horizon\n{polling}"),
            1,
        );
    }
    let config = write_config(&text);
    let mut host = Host::start(&config);
    host.wait_log("processing shard", Duration::from_secs(60))
        .await;
    // Warm-up: the first record also waits for the subscription / first poll.
    put_records_on(&k, &stream, &[("warm".into(), b"warm".to_vec())]).await;
    collector.wait_for(1, Duration::from_secs(60)).await;

    let mut sent: Vec<(Vec<u8>, SystemTime)> = Vec::with_capacity(n);
    for i in 0..n {
        let data = format!("latency-{i}").into_bytes();
        let at = SystemTime::now();
        put_records_on(&k, &stream, &[(format!("k{i}"), data.clone())]).await;
        sent.push((data, at));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = collector.wait_for(n + 1, Duration::from_secs(120)).await;
    host.signal("TERM");
    host.wait_exit(Duration::from_secs(60)).await;
    let mut lat: Vec<Duration> = sent
        .iter()
        .map(|(data, at)| {
            let m = got
                .iter()
                .find(|m| &m.payload == data)
                .expect("every record arrived");
            m.received_at.duration_since(*at).unwrap_or_default()
        })
        .collect();
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<42} n={n} p50={:.0}ms p90={:.0}ms p99={:.0}ms max={:.0}ms",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.9)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().expect("records"))
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing to run here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("SHARDLINE_LATENCY_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use On::*;
        let idle = "  polling:\n    idle_interval: 200ms\n";
        for (label, on, mode, polling) in [
            (
                "kinesis-local, polling (defaults)",
                KinesisLocal,
                Mode::Polling,
                "",
            ),
            (
                "kinesis-local, polling (idle 200ms)",
                KinesisLocal,
                Mode::Polling,
                idle,
            ),
            ("kinesis-local, fan-out", KinesisLocal, Mode::FanOut, ""),
            (
                "ferrokinesis, polling (defaults)",
                Ferrokinesis,
                Mode::Polling,
                "",
            ),
            (
                "ferrokinesis, polling (idle 200ms)",
                Ferrokinesis,
                Mode::Polling,
                idle,
            ),
            ("ferrokinesis, fan-out", Ferrokinesis, Mode::FanOut, ""),
        ] {
            measure(label, on, mode, polling, n).await;
        }
    });
}
