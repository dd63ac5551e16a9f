//! Shared helpers of the integration tests: the local stack's endpoints (from
//! `dev/stack env`), real Kinesis / DynamoDB / Pulsar clients, the `shardline` binary run
//! as a child process, and waits on conditions (never bare sleeps).

pub mod faults;
pub mod metrics;
pub mod proxy;
pub mod relay;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use futures::TryStreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, Pulsar, SubType, TokioExecutor};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

pub fn kinesis_endpoint() -> String {
    env_or("SHARDLINE_KINESIS_ENDPOINT", "http://127.0.0.1:4568")
}
/// ferrokinesis, run with `--enforce-limits` (real write throttling).
pub fn ferrokinesis_endpoint() -> String {
    env_or("SHARDLINE_FERROKINESIS_ENDPOINT", "http://127.0.0.1:4569")
}
pub fn dynamodb_endpoint() -> String {
    env_or("SHARDLINE_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000")
}
pub fn pulsar_url() -> String {
    env_or("SHARDLINE_PULSAR_URL", "pulsar://127.0.0.1:6650")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// A guest built by `guest-examples/build.sh`.
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("SHARDLINE_GUESTS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/guests"));
    let p = dir.join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: build the guests with guest-examples/build.sh",
        p.display()
    );
    p
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn sdk() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("test", "test", None, None, "tests"),
            ),
        )
        .build()
}

pub fn kinesis() -> aws_sdk_kinesis::Client {
    kinesis_at(&kinesis_endpoint())
}

pub fn kinesis_at(endpoint: &str) -> aws_sdk_kinesis::Client {
    let conf = aws_sdk_kinesis::config::Builder::from(&sdk())
        .endpoint_url(endpoint)
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

pub fn ferrokinesis() -> aws_sdk_kinesis::Client {
    kinesis_at(&ferrokinesis_endpoint())
}

pub fn dynamodb() -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk())
        .endpoint_url(dynamodb_endpoint())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// Polls `check` every 100ms until it returns `Some`, or fails the test after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a stream and waits until it is ACTIVE.
pub async fn create_stream(name: &str, shards: i32) {
    create_stream_on(&kinesis(), name, shards).await
}

/// Creates a stream on the emulator behind `k` and waits until it is ACTIVE.
pub async fn create_stream_on(k: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    let k = k.clone();
    k.create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStream {name} (is the stack up? dev/stack up): {e:?}"));
    wait_for("stream to become ACTIVE", Duration::from_secs(60), || {
        let k = k.clone();
        async move {
            let d = k
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .ok()?;
            (d.stream_description_summary()?.stream_status() == &StreamStatus::Active).then_some(())
        }
    })
    .await;
}

/// What PutRecords said of a record.
#[derive(Debug, Clone)]
pub struct Put {
    pub key: String,
    pub data: Vec<u8>,
    pub shard: String,
    pub sequence: String,
}

/// Puts records (≤ 500 per call, ≤ ~4 MiB per call), retrying refused ones; returns where
/// each landed, in input order.
pub async fn put_records(stream: &str, records: &[(String, Vec<u8>)]) -> Vec<Put> {
    put_records_on(&kinesis(), stream, records).await
}

/// [`put_records`] on the emulator behind `k`.
pub async fn put_records_on(
    k: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[(String, Vec<u8>)],
) -> Vec<Put> {
    let mut out: Vec<Option<Put>> = vec![None; records.len()];
    let mut start = 0;
    while start < records.len() {
        // Chunk by count and bytes.
        let mut end = start;
        let mut bytes = 0;
        while end < records.len()
            && end - start < 500
            && bytes + records[end].1.len() + records[end].0.len() <= 4 << 20
        {
            bytes += records[end].1.len() + records[end].0.len();
            end += 1;
        }
        if end == start {
            end = start + 1;
        }
        let mut pending: Vec<usize> = (start..end).collect();
        for attempt in 0..50 {
            assert!(attempt < 49, "records still refused after 50 attempts");
            let entries: Vec<_> = pending
                .iter()
                .map(|&i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(&records[i].0)
                        .data(Blob::new(records[i].1.clone()))
                        .build()
                        .expect("entry")
                })
                .collect();
            let r = k
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await
                .unwrap_or_else(|e| panic!("PutRecords: {e:?}"));
            let mut failed = Vec::new();
            for (res, &i) in r.records.iter().zip(&pending) {
                match (&res.shard_id, &res.sequence_number) {
                    (Some(shard), Some(seq)) if res.error_code.is_none() => {
                        out[i] = Some(Put {
                            key: records[i].0.clone(),
                            data: records[i].1.clone(),
                            shard: shard.clone(),
                            sequence: seq.clone(),
                        })
                    }
                    _ => failed.push(i),
                }
            }
            if failed.is_empty() {
                break;
            }
            pending = failed;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        start = end;
    }
    out.into_iter()
        .map(|p| p.expect("every record put"))
        .collect()
}

/// A user record read back from a stream (de-aggregated), with where it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub shard: String,
    pub sequence: String,
    /// Position in its aggregate; `None` for a plain Kinesis record.
    pub sub: Option<u64>,
    pub key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// What a stream holds: its user records and how many Kinesis records carried them.
#[derive(Debug, Clone, Default)]
pub struct StreamContents {
    pub users: Vec<Stored>,
    pub kinesis_records: usize,
    pub aggregates: usize,
    /// Shard id -> (start, end) hash key range.
    pub ranges: HashMap<String, (u128, u128)>,
}

impl StreamContents {
    /// User records (in aggregates) whose hash key is outside the shard they were stored
    /// in: the KCL drops every user record of such an aggregate.
    pub fn outside_their_shard(&self) -> Vec<&Stored> {
        self.users
            .iter()
            .filter(|u| u.sub.is_some())
            .filter(|u| {
                let h = shardline::agg::hash_key(&u.key, u.explicit_hash_key.as_deref())
                    .expect("valid hash key");
                let (a, b) = self.ranges[&u.shard];
                h < a || h > b
            })
            .collect()
    }

    /// How often each data value was stored.
    pub fn data_counts(&self) -> HashMap<Vec<u8>, usize> {
        let mut m = HashMap::new();
        for u in &self.users {
            *m.entry(u.data.clone()).or_insert(0) += 1;
        }
        m
    }
}

/// Reads every shard of a stream from TRIM_HORIZON to its current end, de-aggregating
/// with `shardline::agg` (independently of the consumer), in shard order.
pub async fn read_stream(k: &aws_sdk_kinesis::Client, stream: &str) -> StreamContents {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let shards = k
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListShards {stream}: {e:?}"))
        .shards
        .unwrap_or_default();
    let mut out = StreamContents::default();
    for s in shards {
        let r = s.hash_key_range().expect("hash key range");
        out.ranges.insert(
            s.shard_id.clone(),
            (
                r.starting_hash_key.parse().expect("start"),
                r.ending_hash_key.parse().expect("end"),
            ),
        );
        let mut it = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&s.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetShardIterator: {e:?}"))
            .shard_iterator;
        while let Some(i) = it.take() {
            let got = match k
                .get_records()
                .shard_iterator(&i)
                .limit(10_000)
                .send()
                .await
            {
                Ok(g) => g,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_provisioned_throughput_exceeded_exception()) =>
                {
                    // read limits (5 calls/s per shard): come back a little later
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    it = Some(i);
                    continue;
                }
                Err(e) => panic!("GetRecords {stream}/{}: {e:?}", s.shard_id),
            };
            if got.records.is_empty() {
                break; // everything written before the call has been read
            }
            for rec in got.records {
                out.kinesis_records += 1;
                let data = rec.data.as_ref();
                match shardline::agg::deaggregate(data) {
                    shardline::agg::Deaggregated::Aggregate(a) => {
                        out.aggregates += 1;
                        for u in a.iter() {
                            out.users.push(Stored {
                                shard: s.shard_id.clone(),
                                sequence: rec.sequence_number.clone(),
                                sub: Some(u.sub_sequence),
                                key: u.partition_key.to_string(),
                                explicit_hash_key: u.explicit_hash_key.map(str::to_string),
                                data: u.data.to_vec(),
                            });
                        }
                    }
                    _ => out.users.push(Stored {
                        shard: s.shard_id.clone(),
                        sequence: rec.sequence_number.clone(),
                        sub: None,
                        key: rec.partition_key.clone().unwrap_or_default(),
                        explicit_hash_key: None,
                        data: data.to_vec(),
                    }),
                }
            }
            it = got.next_shard_iterator;
        }
    }
    out
}

/// A message read back from Pulsar.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub properties: HashMap<String, String>,
    pub event_time: Option<u64>,
    /// When the collector received it (latency benchmarks).
    #[allow(
        dead_code,
        reason = "read by host/benches/latency.rs, which includes this module"
    )]
    pub received_at: std::time::SystemTime,
}

impl Received {
    pub fn prop(&self, k: &str) -> &str {
        self.properties.get(k).map(String::as_str).unwrap_or("")
    }
}

/// How often each Kinesis sequence number was delivered.
pub fn deliveries_by_sequence(got: &[Received]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in got {
        *counts
            .entry(m.prop("kinesis.sequence.number").to_string())
            .or_default() += 1;
    }
    counts
}

/// Fails unless each shard's records (and so each partition key's) arrived in the order
/// the shard stored them.
pub fn assert_in_shard_order(got: &[Received]) {
    let mut last: HashMap<String, String> = HashMap::new();
    for m in got {
        let shard = m.prop("kinesis.shard.id").to_string();
        let seq = m.prop("kinesis.sequence.number").to_string();
        if let Some(prev) = last.get(&shard) {
            assert!(
                seq_le(prev, &seq),
                "shard {shard}: {seq} arrived after {prev}"
            );
        }
        last.insert(shard, seq);
    }
}

/// A real Pulsar consumer reading topics from the earliest message into a shared list.
pub struct Collector {
    rx: watch::Receiver<Vec<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start(topics: &[String]) -> Self {
        let pulsar: Pulsar<TokioExecutor> = Pulsar::builder(pulsar_url(), TokioExecutor)
            .build()
            .await
            .expect("connect to Pulsar (is the stack up? dev/stack up)");
        let mut consumer: Consumer<Vec<u8>, TokioExecutor> = pulsar
            .consumer()
            .with_topics(topics)
            .with_subscription(unique("test-sub"))
            .with_subscription_type(SubType::Exclusive)
            .with_options(
                pulsar::ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .build()
            .await
            .expect("subscribe");
        let (tx, rx) = watch::channel(Vec::new());
        let task = tokio::spawn(async move {
            while let Ok(Some(msg)) = consumer.try_next().await {
                let _ = consumer.ack(&msg).await;
                let meta = &msg.payload.metadata;
                let r = Received {
                    topic: msg.topic.clone(),
                    key: meta.partition_key.clone(),
                    payload: msg.payload.data.clone(),
                    properties: meta
                        .properties
                        .iter()
                        .map(|kv| (kv.key.clone(), kv.value.clone()))
                        .collect(),
                    event_time: meta.event_time,
                    received_at: std::time::SystemTime::now(),
                };
                tx.send_modify(|v| v.push(r));
            }
        });
        Self { rx, task }
    }

    pub fn count(&self) -> usize {
        self.rx.borrow().len()
    }

    pub fn all(&self) -> Vec<Received> {
        self.rx.borrow().clone()
    }

    /// Waits until `n` distinct Kinesis records (by sequence number) arrived, however many
    /// duplicates came with them.
    pub async fn wait_for_distinct(&mut self, n: usize, limit: Duration) -> Vec<Received> {
        let distinct = |v: &Vec<Received>| {
            v.iter()
                .map(|m| m.prop("kinesis.sequence.number"))
                .collect::<std::collections::HashSet<_>>()
                .len()
        };
        let r = tokio::time::timeout(limit, self.rx.wait_for(|v| distinct(v) >= n))
            .await
            .map(|r| r.map(|v| v.clone()));
        match r {
            Ok(Ok(v)) => v,
            _ => panic!(
                "timed out after {limit:?}: {} of {n} distinct records arrived in Pulsar",
                distinct(&self.rx.borrow())
            ),
        }
    }

    /// Waits until at least `n` messages arrived.
    pub async fn wait_for(&mut self, n: usize, limit: Duration) -> Vec<Received> {
        let r = tokio::time::timeout(limit, self.rx.wait_for(|v| v.len() >= n))
            .await
            .map(|r| r.map(|v| v.clone()));
        match r {
            Ok(Ok(v)) => v,
            _ => panic!(
                "timed out after {limit:?}: {} of {n} messages arrived in Pulsar",
                self.count()
            ),
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `shardline` binary running as a child, its stderr collected.
pub struct Host {
    child: tokio::process::Child,
    log: watch::Receiver<String>,
    /// The task copying stderr into `log`; it ends at the pipe's end of file.
    reader: Option<tokio::task::JoinHandle<()>>,
    pub config: PathBuf,
}

impl Host {
    pub fn start(config: &Path) -> Self {
        Self::start_with(config, &[])
    }

    /// `shardline run --config CONFIG ARGS…` (e.g. `--from pulsar-io --to TOPIC`).
    pub fn start_with(config: &Path, args: &[&str]) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardline"));
        command.args(["run", "--config"]).arg(config).args(args);
        Self::spawn(command, config)
    }

    /// Starts `command` (`shardline run`, however wrapped; it must end up as the child's
    /// own process for [`signal`](Self::signal)) with its stderr as the log.
    pub fn spawn(mut command: tokio::process::Command, config: &Path) -> Self {
        let mut child = command
            .env("SHARDLINE_LOG", "info,shardline=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start shardline");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = watch::channel(String::new());
        let reader = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tx.send_modify(|s| {
                    s.push_str(&line);
                    s.push('\n');
                });
            }
        });
        Self {
            child,
            log,
            reader: Some(reader),
            config: config.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        self.log.borrow().clone()
    }

    /// Waits until the log contains `text`.
    pub async fn wait_log(&mut self, text: &str, limit: Duration) {
        let ok = tokio::time::timeout(limit, self.log.wait_for(|s| s.contains(text)))
            .await
            .is_ok_and(|r| r.is_ok());
        if !ok {
            panic!(
                "timed out after {limit:?} waiting for {text:?} in the log:\n{}",
                self.log()
            );
        }
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running");
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(s)) => {
                // The process has exited, but its last lines (the error it exits with) may
                // still be in the pipe: read it to its end before anyone looks at the log.
                if let Some(reader) = self.reader.take() {
                    let _ = tokio::time::timeout(limit, reader).await;
                }
                s.code()
            }
            _ => panic!(
                "shardline did not exit within {limit:?}; log:\n{}",
                self.log()
            ),
        }
    }
}

impl Drop for Host {
    /// A test that fails while a worker runs shows the end of that worker's log.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(150)..];
            eprintln!(
                "--- last {} lines of {} ---\n{}",
                tail.len(),
                self.config.display(),
                tail.join("\n")
            );
        }
    }
}

/// Writes a config into a fresh temp folder and returns its path.
pub fn write_config(text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("shardline-test"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join("config.yaml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// A config for the local stack; `extra` is appended (stages, errors, …).
pub fn stack_config(app: &str, stream: &str, topic: &str, extra: &str) -> String {
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
leases:
  duration: 3s
checkpoint:
  interval: 1s
sinks:
  pulsar:
    pulsar:
      service_url: {pulsar}
      topic: {topic}
      shard_id_property: true
{extra}",
        kinesis = kinesis_endpoint(),
        dynamodb = dynamodb_endpoint(),
        pulsar = pulsar_url(),
    )
}

/// How a test config reads its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Polling,
    /// Enhanced fan-out, with a 1s backoff after a refused subscription (the product's
    /// default of 5s is the service's own spacing; the emulators do not need it).
    FanOut,
}

/// `config` (from [`stack_config`]) read in `mode`; `fan_out` holds extra
/// `source.fan_out` lines (indented four spaces).
pub fn in_mode(config: &str, mode: Mode, fan_out: &str) -> String {
    match mode {
        Mode::Polling => config.to_string(),
        Mode::FanOut => config.replacen(
            "  initial_position: trim_horizon\n",
            &format!(
                "  initial_position: trim_horizon\n  retrieval: fan_out\n  fan_out:\n    backoff: 1s\n{fan_out}"
            ),
            1,
        ),
    }
}

/// [`stack_config`] reading from ferrokinesis instead of kinesis-local.
pub fn ferro_stack_config(app: &str, stream: &str, topic: &str, extra: &str) -> String {
    stack_config(app, stream, topic, extra).replace(
        &format!("kinesis: {}", kinesis_endpoint()),
        &format!("kinesis: {}", ferrokinesis_endpoint()),
    )
}

/// One string attribute of every lease item that has it, by lease key.
async fn lease_attribute(table: &str, attribute: &str) -> HashMap<String, String> {
    let out = dynamodb()
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("Scan {table}: {e:?}"));
    out.items()
        .iter()
        .filter_map(|i| match (i.get("leaseKey"), i.get(attribute)) {
            (Some(AttributeValue::S(k)), Some(AttributeValue::S(v))) => {
                Some((k.clone(), v.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The lease table's checkpoints by lease key.
pub async fn checkpoints(table: &str) -> HashMap<String, String> {
    lease_attribute(table, "checkpoint").await
}

/// Owner of every owned lease, by lease key.
pub async fn lease_owners(table: &str) -> HashMap<String, String> {
    lease_attribute(table, "leaseOwner").await
}

/// Writes a lease table the way the KCL 2.x does (key `leaseKey`, on-demand billing) with
/// one item per `(lease key, owner, checkpoint, sub-sequence number)`, as another
/// application (a Pulsar IO Kinesis source, say) would have left it.
pub async fn write_kcl_lease_table(table: &str, leases: &[(&str, Option<&str>, &str, u64)]) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let ddb = dynamodb();
    ddb.create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("leaseKey")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("leaseKey")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateTable {table}: {e:?}"));
    // As on AWS, a new table takes writes once it is ACTIVE.
    wait_for(
        &format!("table {table} to be ACTIVE"),
        Duration::from_secs(30),
        || {
            let ddb = ddb.clone();
            async move {
                let d = ddb.describe_table().table_name(table).send().await.ok()?;
                (d.table()?.table_status()? == &aws_sdk_dynamodb::types::TableStatus::Active)
                    .then_some(())
            }
        },
    )
    .await;
    for (key, owner, checkpoint, sub) in leases {
        let mut item = HashMap::from([
            ("leaseKey".to_string(), AttributeValue::S(key.to_string())),
            ("leaseCounter".to_string(), AttributeValue::N("1234".into())),
            (
                "checkpoint".to_string(),
                AttributeValue::S(checkpoint.to_string()),
            ),
            (
                "checkpointSubSequenceNumber".to_string(),
                AttributeValue::N(sub.to_string()),
            ),
            (
                "ownerSwitchesSinceCheckpoint".to_string(),
                AttributeValue::N("0".into()),
            ),
        ]);
        if let Some(o) = owner {
            item.insert("leaseOwner".to_string(), AttributeValue::S(o.to_string()));
        }
        ddb.put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutItem {table}: {e:?}"));
    }
}

/// Waits until some lease of `table` is checkpointed at `sequence`.
pub async fn wait_for_checkpoint(table: &str, sequence: &str, limit: Duration) {
    wait_for(
        &format!("a checkpoint at {sequence}"),
        limit,
        || async move {
            checkpoints(table)
                .await
                .values()
                .any(|c| c == sequence)
                .then_some(())
        },
    )
    .await
}

/// Whether a table exists.
pub async fn table_exists(table: &str) -> bool {
    match dynamodb().describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => panic!("DescribeTable {table}: {e:?}"),
    }
}

/// Kinesis sequence numbers compare as integers (they are up to 56 digits).
pub fn seq_le(a: &str, b: &str) -> bool {
    (a.len(), a) <= (b.len(), b)
}

/// What a run did with the records put: the figures every chaos test prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub put: usize,
    /// Records put that arrived at least once.
    pub delivered: usize,
    /// Records put that never arrived.
    pub lost: usize,
    /// Arrivals beyond the first of a record.
    pub duplicated: usize,
}

/// Matches arrivals to the records put (by sequence number and payload) and prints
/// `<label>: put=… delivered=… lost=… duplicated=…`.
pub fn tally(label: &str, puts: &[Put], got: &[Received]) -> Tally {
    let mut seen: HashMap<(&str, &[u8]), usize> = HashMap::new();
    for m in got {
        *seen
            .entry((m.prop("kinesis.sequence.number"), m.payload.as_slice()))
            .or_default() += 1;
    }
    let mut t = Tally {
        put: puts.len(),
        delivered: 0,
        lost: 0,
        duplicated: 0,
    };
    for p in puts {
        match seen.get(&(p.sequence.as_str(), p.data.as_slice())) {
            Some(&n) => {
                t.delivered += 1;
                t.duplicated += n - 1;
            }
            None => t.lost += 1,
        }
    }
    println!(
        "{label}: put={} delivered={} lost={} duplicated={}",
        t.put, t.delivered, t.lost, t.duplicated
    );
    t
}

/// Puts `n` records with distinct payloads, spread over keys.
pub fn records(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("key-{}", i % 53),
                format!("{prefix}-{i}").into_bytes(),
            )
        })
        .collect()
}
