//! Observability against the local stack: metrics reach CloudWatch (moto) with the sums
//! of what flowed, the Prometheus endpoint moves while records flow and `/ready` turns
//! ready, an unreachable CloudWatch costs the pipeline nothing, and no secret of the config
//! reaches a log line, whatever the level.

use std::process::Stdio;
use std::time::Duration;

use crate::support::metrics::{endpoint_of, get, prometheus_total};
use crate::support::*;
use tokio::io::AsyncReadExt;

const LONG: Duration = Duration::from_secs(180);

fn cloudwatch_endpoint() -> String {
    env_or("SHARDLINE_CLOUDWATCH_ENDPOINT", "http://127.0.0.1:5000")
}

fn cloudwatch() -> aws_sdk_cloudwatch::Client {
    let conf = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(cloudwatch_endpoint())
        .build();
    aws_sdk_cloudwatch::Client::from_conf(conf)
}

fn records(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("{prefix}-{i}"),
                format!("{prefix} record {i}").into_bytes(),
            )
        })
        .collect()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Sum of a metric over the last hour, as GetMetricStatistics reports it.
async fn cloudwatch_sum(namespace: &str, metric: &str, dims: &[(&str, &str)]) -> f64 {
    let now = std::time::SystemTime::now();
    let hour = Duration::from_secs(3600);
    let mut req = cloudwatch()
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(metric)
        .start_time((now - hour).into())
        .end_time((now + hour).into())
        .period(60)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum);
    for (k, v) in dims {
        req = req.dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name(*k)
                .value(*v)
                .build(),
        );
    }
    let out = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetMetricStatistics {metric}: {e:?}"));
    out.datapoints().iter().filter_map(|d| d.sum()).sum()
}

/// Waits until the worker created its lease table.
async fn wait_for_table(table: &str) {
    wait_for("the lease table", LONG, || async move {
        table_exists(table).await.then_some(())
    })
    .await;
}

/// A config reading `stream` from kinesis-local into a Kinesis sink (the KPL-grade
/// producer) writing `out`, with `metrics` as its metrics section.
fn kinesis_to_kinesis(app: &str, stream: &str, out: &str, metrics: &str) -> String {
    format!(
        "application: {app}
source:
  stream: {stream}
  initial_position: trim_horizon
aws:
  region: us-east-1
  credentials:
    type: static
    access_key_id: test
    secret_access_key: test
  endpoints:
    kinesis: {kinesis}
    dynamodb: {dynamodb}
    cloudwatch: {cloudwatch}
leases:
  duration: 3s
checkpoint:
  interval: 1s
sinks:
  out:
    kinesis:
      stream: {out}
      max_buffered_time: 20ms
{metrics}",
        kinesis = kinesis_endpoint(),
        dynamodb = dynamodb_endpoint(),
        cloudwatch = cloudwatch_endpoint(),
    )
}

/// Test 1: after a run, CloudWatch (moto) holds the sums of what flowed: RecordsProcessed
/// under the KCL's dimensions, UserRecordsPut under the KPL's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_receives_the_sums_of_a_run() {
    const N: usize = 300;
    let (stream, out) = (unique("cw-in"), unique("cw-out"));
    create_stream(&stream, 2).await;
    create_stream(&out, 1).await;
    let puts = put_records(&stream, &records("cw", N)).await;
    let app = unique("cw-app");
    let namespace = unique("Shardline-test");
    let config = write_config(&kinesis_to_kinesis(
        &app,
        &stream,
        &out,
        &format!("metrics:\n  level: summary\n  cloudwatch: true\n  namespace: {namespace}\n  flush_interval: 1s\n"),
    ));
    let mut host = Host::start(&config);
    // Every record of both shards is checkpointed (so the sink acknowledged it).
    let mut last: std::collections::HashMap<&str, &str> = Default::default();
    for p in &puts {
        last.insert(p.shard.as_str(), p.sequence.as_str());
    }
    wait_for_table(&app).await;
    for seq in last.values() {
        wait_for_checkpoint(&app, seq, LONG).await;
    }
    host.signal("TERM");
    assert_eq!(
        host.wait_exit(LONG).await,
        Some(0),
        "clean exit; log:\n{}",
        host.log()
    );
    assert!(
        !host.log().contains("cannot publish metrics"),
        "every flush was accepted; log:\n{}",
        host.log()
    );

    let processed = cloudwatch_sum(
        &namespace,
        "RecordsProcessed",
        &[("Operation", "ProcessTask"), ("StreamName", &stream)],
    )
    .await;
    assert_eq!(processed, N as f64, "RecordsProcessed sum");
    let bytes = cloudwatch_sum(
        &namespace,
        "DataBytesProcessed",
        &[("Operation", "ProcessTask"), ("StreamName", &stream)],
    )
    .await;
    let expected: usize = puts.iter().map(|p| p.data.len()).sum();
    assert_eq!(bytes, expected as f64, "DataBytesProcessed sum");
    let put = cloudwatch_sum(&namespace, "UserRecordsPut", &[("StreamName", &out)]).await;
    assert_eq!(put, N as f64, "UserRecordsPut sum");
    // Summary level: no per-shard series.
    let shard = cloudwatch_sum(
        &namespace,
        "RecordsProcessed",
        &[
            ("Operation", "ProcessTask"),
            ("StreamName", &stream),
            ("ShardId", &puts[0].shard),
        ],
    )
    .await;
    assert_eq!(shard, 0.0, "no ShardId dimension at summary level");

    // `status` shows each shard's lag (nothing left behind its checkpoint) and how long ago
    // its checkpoint was written.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(text.contains("lag") && text.contains("cp age"), "{text}");
    for shard in last.keys() {
        let line = text
            .lines()
            .find(|l| l.starts_with(shard))
            .unwrap_or_else(|| panic!("no line for {shard}: {text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        // shard, owner (released: -), counter, checkpoint, lag, age, parents
        assert_eq!(cols[4], "0ms", "caught up: {line}");
        assert!(
            cols[5].ends_with('s') && cols[5] != "-",
            "checkpoint age: {line}"
        );
    }
}

/// Test 2: the Prometheus endpoint's counters move as records flow, /health answers and
/// /ready turns ready once the worker holds its leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counters_move_and_the_worker_turns_ready() {
    let stream = unique("prom");
    let topic = format!("persistent://public/default/{}", unique("prom"));
    create_stream(&stream, 2).await;
    let app = unique("prom-app");
    let config = write_config(&stack_config(
        &app,
        &stream,
        &topic,
        "metrics:\n  listen: 0\n",
    ));
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let mut host = Host::start(&config);
    let addr = endpoint_of(&mut host).await;
    assert_eq!(get(&addr, "/health").await.map(|r| r.0), Some(200));
    wait_for("/ready to answer 200", LONG, || {
        let addr = addr.clone();
        async move { (get(&addr, "/ready").await?.0 == 200).then_some(()) }
    })
    .await;

    let scrape = || {
        let addr = addr.clone();
        async move { get(&addr, "/metrics").await.map(|r| r.1) }
    };
    let before = scrape().await.expect("scrape");
    assert_eq!(
        prometheus_total(&before, "shardline_records_processed_total"),
        0
    );
    assert!(
        before.contains("# TYPE shardline_leases_owned gauge"),
        "{before}"
    );
    wait_for("both leases owned", LONG, || {
        let scrape = &scrape;
        async move { (prometheus_total(&scrape().await?, "shardline_leases_owned") == 2).then_some(()) }
    })
    .await;

    for (round, batch, total) in [(1, 100, 100u64), (2, 150, 250)] {
        put_records(&stream, &records(&format!("p{round}"), batch)).await;
        collector.wait_for(total as usize, LONG).await;
        let text = wait_for(&format!("{total} records in the metrics"), LONG, || {
            let scrape = &scrape;
            async move {
                let t = scrape().await?;
                // A message can reach the test's consumer before its producer has the
                // broker's receipt: wait for the acknowledgements too.
                (prometheus_total(&t, "shardline_records_processed_total") == total
                    && prometheus_total(&t, "shardline_sink_sends_total") == total
                    && prometheus_total(&t, "shardline_sink_ack_latency_milliseconds_count")
                        >= total)
                    .then_some(t)
            }
        })
        .await;
        assert!(
            prometheus_total(&text, "shardline_data_bytes_processed_total") > 0,
            "{text}"
        );
        assert!(
            text.contains(&format!("stream=\"{stream}\"")),
            "series carry the stream: {text}"
        );
        assert!(
            prometheus_total(&text, "shardline_get_records_success_total") > 0,
            "{text}"
        );
    }
    host.signal("TERM");
    assert_eq!(
        host.wait_exit(LONG).await,
        Some(0),
        "clean exit; log:\n{}",
        host.log()
    );
}

/// Test 3: with CloudWatch unreachable the pipeline delivers everything as fast as without
/// metrics; the failed publications are logged and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cloudwatch_costs_the_pipeline_nothing() {
    const N: usize = 2000;
    let stream = unique("cw-down");
    let topic = format!("persistent://public/default/{}", unique("cw-down"));
    create_stream(&stream, 2).await;
    put_records(&stream, &records("down", N)).await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let config_text = stack_config(
        &unique("cw-down-app"),
        &stream,
        &topic,
        "metrics:\n  cloudwatch: true\n  flush_interval: 1s\n  listen: 0\n",
    )
    .replace(
        &format!("    dynamodb: {}\n", dynamodb_endpoint()),
        &format!(
            "    dynamodb: {}\n    cloudwatch: {dead}\n",
            dynamodb_endpoint()
        ),
    );
    let config = write_config(&config_text);
    let mut collector = Collector::start(std::slice::from_ref(&topic)).await;
    let mut host = Host::start(&config);
    let addr = endpoint_of(&mut host).await;
    collector.wait_for(N, LONG).await;
    // Publication keeps failing, and each failure is counted.
    let text = wait_for("two failed publications", LONG, || {
        let addr = addr.clone();
        async move {
            let t = get(&addr, "/metrics").await?.1;
            (prometheus_total(&t, "shardline_metrics_publish_failures_total") >= 2).then_some(t)
        }
    })
    .await;
    assert_eq!(
        prometheus_total(&text, "shardline_records_processed_total"),
        N as u64
    );
    assert!(host.log().contains("cannot publish metrics to CloudWatch"));
    // Shutdown is not held up by the last flush beyond its bound either.
    let stop = std::time::Instant::now();
    host.signal("TERM");
    assert_eq!(
        host.wait_exit(LONG).await,
        Some(0),
        "clean exit; log:\n{}",
        host.log()
    );
    assert!(
        stop.elapsed() < Duration::from_secs(30),
        "{:?}",
        stop.elapsed()
    );
}

/// Test 4: a recognisable fake secret in the config's static credentials appears in no log
/// line at trace level (human and JSON), nor in the config's Debug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    const SECRET: &str = "FAKE-SECRET-d0ntl0gme-7f3a9c";
    const TOKEN: &str = "FAKE-TOKEN-d0ntl0gme-51e2b8";
    let stream = unique("secret");
    let topic = format!("persistent://public/default/{}", unique("secret"));
    create_stream(&stream, 1).await;
    let puts = put_records(&stream, &records("s", 20)).await;
    let config_for = |app: &str| {
        stack_config(
            app,
            &stream,
            &topic,
            "metrics:\n  cloudwatch: true\n  flush_interval: 1s\n",
        )
        .replace(
            "    secret_access_key: test\n",
            &format!("    secret_access_key: {SECRET}\n    session_token: {TOKEN}\n"),
        )
        .replace(
            &format!("    dynamodb: {}\n", dynamodb_endpoint()),
            &format!(
                "    dynamodb: {}\n    cloudwatch: {}\n",
                dynamodb_endpoint(),
                cloudwatch_endpoint()
            ),
        )
    };
    let text = config_for("secret-app");
    assert!(text.contains(SECRET) && text.contains(TOKEN));
    let config = write_config(&text);

    let parsed = shardline::config::Config::load(&config).expect("config loads");
    let debug = format!("{parsed:?} {parsed:#?}");
    assert!(!debug.contains(SECRET) && !debug.contains(TOKEN), "{debug}");

    for format in ["human", "json"] {
        // A fresh application each time: the worker takes its leases and reads everything.
        let app = unique("secret-app");
        let config = write_config(&config_for(&app));
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardline"))
            .args(["--log-format", format, "run", "--config"])
            .arg(&config)
            .env("SHARDLINE_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start shardline");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let out = tokio::spawn(async move {
            let mut b = Vec::new();
            let _ = stdout.read_to_end(&mut b).await;
            b
        });
        let err = tokio::spawn(async move {
            let mut b = Vec::new();
            let _ = stderr.read_to_end(&mut b).await;
            b
        });
        // Signed requests to Kinesis, DynamoDB and CloudWatch happened: the run
        // checkpointed the last record and published metrics.
        wait_for_table(&app).await;
        wait_for_checkpoint(&app, &puts[puts.len() - 1].sequence, LONG).await;
        tokio::time::sleep(Duration::from_millis(1500)).await; // one metrics flush interval
        let pid = child.id().expect("running").to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success());
        let status = tokio::time::timeout(LONG, child.wait())
            .await
            .expect("exits")
            .expect("wait");
        let (out, err) = (out.await.expect("stdout"), err.await.expect("stderr"));
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
        assert_eq!(status.code(), Some(0), "{format}: clean exit");
        assert!(
            log.len() > 10_000,
            "{format}: trace logging was on ({} bytes)",
            log.len()
        );
        assert!(
            log.contains("publishing metrics to CloudWatch"),
            "{format}: metrics were on"
        );
        for (what, s) in [("secret access key", SECRET), ("session token", TOKEN)] {
            if let Some(at) = log.find(s) {
                let from = at.saturating_sub(300);
                panic!(
                    "{format}: the {what} is in the log: …{}…",
                    &log[from..(at + 100).min(log.len())]
                );
            }
        }
    }
}
