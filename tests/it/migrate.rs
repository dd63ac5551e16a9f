//! The seeds' own example configs (tests/golden/convert/*/seed-*) run against the local
//! stack with `shardline run --from FORMAT`: records put into Kinesis arrive in Pulsar shaped
//! as the Pulsar IO connector shapes them (key = partition key, `kinesis.*` properties), or
//! in the egress stream for the StateFun egress module.
//!
//! The seeds name placeholder streams, regions and keys; an overlay points them at the
//! local stack (endpoints, test keys, a unique application and stream) and starts at the
//! oldest record, so a record put before the worker took its lease is read too. Nothing
//! else of the seed is overridden: Pulsar IO's default `useEnhancedFanOut: true` stays, so
//! with the fan-out consumer in the tree this runs over SubscribeToShard (kinesis-local
//! supports it).

use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;

fn seed(format: &str, name: &str) -> PathBuf {
    repo().join("tests/golden/convert").join(format).join(name)
}

/// An overlay that points a converted seed at the local stack.
fn overlay(app: &str, source: &str, extra: &str) -> PathBuf {
    let text = format!(
        "application: {app}\nsource:\n{source}  initial_position: trim_horizon\naws:\n  region: us-east-1\n  credentials:\n    type: static\n    access_key_id: test\n    secret_access_key: test\n  endpoints:\n    kinesis: {}\n    dynamodb: {}\n{extra}",
        kinesis_endpoint(),
        dynamodb_endpoint()
    );
    let p = write_config(&text);
    let o = p.with_file_name("overlay.yaml");
    std::fs::rename(&p, &o).expect("rename");
    o
}

fn records(n: usize, tag: &str) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("key-{tag}-{i}"),
                format!("{tag} record {i}").into_bytes(),
            )
        })
        .collect()
}

/// Runs a seed into a Pulsar topic and checks the messages are shaped like Pulsar IO's.
async fn seed_into_pulsar(format: &str, file: &str, streams: usize, extra_args: &[&str]) {
    let app = unique(&format!("mig-{format}"));
    let names: Vec<String> = (0..streams)
        .map(|i| unique(&format!("mig-{format}-{i}")))
        .collect();
    for n in &names {
        create_stream(n, 2).await;
    }
    let source = if streams == 1 {
        format!("  stream: {}\n", names[0])
    } else {
        format!(
            "  streams:\n{}",
            names
                .iter()
                .map(|n| format!("    - name: {n}\n"))
                .collect::<String>()
        )
    };
    let overlay = overlay(&app, &source, "");
    let topic = format!("persistent://public/default/{}", unique("mig"));
    let collector = Collector::start(std::slice::from_ref(&topic)).await;
    let mut put = Vec::new();
    for n in &names {
        put.extend(put_records(n, &records(5, n)).await);
    }
    let config = seed(format, file);
    let overlay = overlay.display().to_string();
    let pulsar = pulsar_url();
    let mut args = vec![
        "--from",
        format,
        "--to",
        &topic,
        "--pulsar-url",
        &pulsar,
        "--overlay",
        &overlay,
    ];
    args.extend_from_slice(extra_args);
    let mut host = Host::start_with(&config, &args);
    // Sequence numbers of different streams may be equal: a record is its key (unique here).
    let all_keys = || {
        let got = collector.all();
        let done = put
            .iter()
            .all(|p| got.iter().any(|m| m.key.as_deref() == Some(p.key.as_str())));
        async move { done.then_some(()) }
    };
    if tokio::time::timeout(
        Duration::from_secs(60),
        wait_for("every record in Pulsar", Duration::from_secs(60), all_keys),
    )
    .await
    .is_err()
    {
        panic!("{format}: records missing in Pulsar; log:\n{}", host.log());
    }
    let got = collector.all();
    for p in &put {
        let m = got
            .iter()
            .find(|m| {
                m.prop("kinesis.partition.key") == p.key
                    && m.prop("kinesis.sequence.number") == p.sequence
            })
            .unwrap_or_else(|| panic!("{format}: record {} missing; log:\n{}", p.key, host.log()));
        assert_eq!(
            m.key.as_deref(),
            Some(p.key.as_str()),
            "key = partition key"
        );
        assert_eq!(m.prop("kinesis.partition.key"), p.key);
        assert_eq!(m.payload, p.data);
        assert_eq!(m.prop("kinesis.encryption.type"), "NONE");
        assert!(!m.prop("kinesis.arrival.timestamp").is_empty());
    }
    let log = host.log();
    assert!(
        log.contains(&format!("converted a {format} config")),
        "{log}"
    );
    host.signal("TERM");
    assert_eq!(
        host.wait_exit(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        host.log()
    );
}

#[tokio::test]
async fn pulsar_io_seed_runs() {
    seed_into_pulsar("pulsar-io", "seed-minimal.yaml", 1, &[]).await;
}

#[tokio::test]
async fn statefun_ingress_seed_runs_with_both_streams() {
    seed_into_pulsar("statefun", "seed-ingress.yaml", 2, &[]).await;
}

#[tokio::test]
async fn samza_seed_runs() {
    seed_into_pulsar("samza", "seed-basic.properties", 1, &[]).await;
}

#[tokio::test]
async fn flink_consumer_seed_runs() {
    seed_into_pulsar(
        "flink",
        "seed-consumer.properties",
        1,
        &["--stream", "placeholder"],
    )
    .await;
}

#[tokio::test]
async fn statefun_egress_seed_writes_to_its_stream() {
    let app = unique("mig-egress");
    let input = unique("mig-egress-in");
    let output = unique("mig-egress-out");
    create_stream(&input, 1).await;
    create_stream(&output, 1).await;
    // The seed's egress endpoint (https://localhost:4567) and region go to the sink; the
    // overlay points the sink at the local stack too.
    let overlay = overlay(
        &app,
        &format!("  stream: {input}\n"),
        &format!(
            "sinks:\n  output-messages:\n    kinesis:\n      stream: {output}\n      endpoint: {}\n      region: us-east-1\n",
            kinesis_endpoint()
        ),
    );
    let put = put_records(&input, &records(4, "egress")).await;
    let overlay = overlay.display().to_string();
    let mut host = Host::start_with(
        &seed("statefun", "seed-egress.yaml"),
        &["--from", "statefun", "--overlay", &overlay],
    );
    let k = kinesis();
    let stored = wait_for(
        "the egress stream to hold every record",
        Duration::from_secs(60),
        || {
            let k = k.clone();
            let output = output.clone();
            async move {
                let c = read_stream(&k, &output).await;
                (c.users.len() >= 4).then_some(c)
            }
        },
    )
    .await;
    for p in &put {
        assert!(
            stored
                .users
                .iter()
                .any(|s| s.key == p.key && s.data == p.data),
            "{} missing in {output}; log:\n{}",
            p.key,
            host.log()
        );
    }
    host.signal("TERM");
    assert_eq!(
        host.wait_exit(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        host.log()
    );
}
