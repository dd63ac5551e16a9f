//! `shardline produce`: puts records into a stream through the KPL-grade
//! [producer](crate::producer) — aggregation, collection, per-shard rate limits, retries
//! until a TTL — and says how it went: a progress line every second (records/s, MB/s,
//! requests, retries, throttling, failures) and a final `produce:` line of `key=value`
//! pairs for scripts and benchmarks. Exits 1 when any record could not be stored.
//!
//! Records come from a file or stdin (`--input`, one per line or length-prefixed binary)
//! or are generated (`--sample orders|random`), so it is also the load generator of the
//! benchmarks.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{self, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::producer::{
    Producer, ProducerConfig, ProducerStats, PutHandle, StatsSnapshot, UserRecord,
};

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Config whose `aws` section and stream are used.
    #[arg(long, short)]
    config: PathBuf,
    /// Stream to write to (default: the config's first stream).
    #[arg(long)]
    stream: Option<String>,
    /// Kinesis endpoint (default: the config's `aws.endpoints.kinesis`).
    #[arg(long)]
    endpoint: Option<String>,
    /// Create the stream with this many shards if it does not exist (and wait until it is
    /// ACTIVE).
    #[arg(long)]
    create_shards: Option<i32>,
    /// Read records from this file (`-`: stdin) instead of generating them.
    #[arg(long)]
    input: Option<PathBuf>,
    /// How `--input` is framed.
    #[arg(long, value_enum, default_value = "lines")]
    format: Format,
    /// Partition keys of `--input` records.
    #[arg(long, value_enum, default_value = "line-number")]
    key: KeySource,
    /// What to generate without `--input`.
    #[arg(long, value_enum, default_value = "orders")]
    sample: Sample,
    /// How many records to generate.
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// With `--sample random`: bytes per record.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// With `--sample random`: distinct partition keys (0: one per record).
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// With `--sample orders`: every Nth order is invalid (0: none).
    #[arg(long, default_value_t = 0)]
    invalid_every: usize,
    /// Put every record alone (no KPL aggregation).
    #[arg(long)]
    no_aggregation: bool,
    /// Largest aggregate in bytes.
    #[arg(long, default_value_t = crate::agg::KPL_DEFAULT_MAX_SIZE)]
    aggregation_max_size: usize,
    /// Longest a record waits to be aggregated and collected, e.g. `100ms`.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    max_buffered_time: Duration,
    /// Per-shard rate limit in percent of the shard's write limits.
    #[arg(long, default_value_t = 150)]
    rate_limit: u32,
    /// How long a record may take to be stored, retries included, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    record_ttl: Duration,
    /// PutRecords requests in flight at once.
    #[arg(long, default_value_t = 24)]
    max_connections: usize,
    /// Records inside the producer at most; reading waits beyond it.
    #[arg(long, default_value_t = 100_000)]
    max_outstanding_records: usize,
    /// Keep each partition key's records in order across retries.
    #[arg(long)]
    strict_ordering: bool,
    /// Send PutRecords in JSON rather than CBOR (for an endpoint that speaks only JSON).
    #[arg(long)]
    json: bool,
    /// Seconds between progress lines (0: only the final line).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    progress: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::units::parse_duration(s)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// One record per line (without its line break).
    Lines,
    /// Each record is a 4-byte big-endian length followed by that many bytes.
    LengthPrefixed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeySource {
    /// The record's position in the input, from 0.
    LineNumber,
    /// A random key per record.
    Random,
    /// Lines only: the text before the first tab is the key, the rest the data.
    Tab,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Sample {
    /// JSON orders as the example guest expects them.
    Orders,
    /// `--size` random bytes per record.
    Random,
}

/// What the run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub stats: StatsSnapshot,
    pub failures: Vec<String>,
    pub elapsed: Duration,
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let mut config = Config::load(&args.config)?;
    if let Some(e) = &args.endpoint {
        config.aws.endpoints.kinesis = Some(e.clone());
    }
    let stream = args.stream.clone().unwrap_or_else(|| config.first_stream());
    let sdk = crate::aws::sdk_config(&config.aws).await?;
    crate::metrics::global().set_level(config.metrics.level);
    let exporters = crate::metrics::exporters::Exporters::start(&config, &sdk).await?;
    let client = crate::aws::kinesis(&sdk, &config.aws);
    if let Some(shards) = args.create_shards {
        ensure_stream(&client, &stream, shards).await?;
    }
    let producer = Producer::start(&client, &stream, producer_config(&args))
        .await
        .map_err(anyhow::Error::new)?;
    let producer = Arc::new(producer);

    // Up to 4,096 records read ahead, in batches of `BATCH`.
    let (tx, mut rx) = mpsc::channel::<Vec<anyhow::Result<UserRecord>>>(4096 / BATCH);
    let reader = spawn_source(&args, tx)?;
    // The handles of each batch go over together: one wake-up of the collector per batch.
    let (handles_tx, handles_rx) = mpsc::unbounded_channel::<Vec<PutHandle>>();
    let collector = tokio::spawn(collect(handles_rx, args.max_outstanding_records.max(1)));
    let progress = (!args.progress.is_zero())
        .then(|| tokio::spawn(report_progress(producer.clone(), args.progress)));

    let started = Instant::now();
    let mut input_error = None;
    'input: while let Some(batch) = rx.recv().await {
        let mut handles = Vec::with_capacity(batch.len());
        for r in batch {
            let put = match r {
                Ok(record) => producer.put(record).await.map_err(anyhow::Error::new),
                Err(e) => Err(e),
            };
            match put {
                Ok(h) => handles.push(h),
                Err(e) => {
                    input_error = Some(e);
                    let _ = handles_tx.send(handles);
                    break 'input;
                }
            }
        }
        let _ = handles_tx.send(handles);
    }
    drop(rx);
    drop(handles_tx);
    producer.flush().await;
    let failures = collector.await.context("result collector")?;
    if let Some(p) = progress {
        p.abort();
    }
    reader.abort();
    producer.close().await;
    exporters.stop().await;
    let summary = Summary {
        stats: producer.stats().snapshot(),
        failures,
        elapsed: started.elapsed(),
    };
    print_summary(&stream, &summary);
    if let Some(e) = input_error {
        return Err(e.context(format!(
            "stopped reading input; the {} records accepted before were handled as reported",
            summary.stats.user_records
        )));
    }
    if summary.stats.user_records_failed > 0 {
        for f in summary.failures.iter().take(5) {
            crate::report!("  {f}");
        }
        bail!(
            "{} of {} records were not stored in {stream}",
            summary.stats.user_records_failed,
            summary.stats.user_records
        );
    }
    Ok(())
}

fn producer_config(args: &ProduceArgs) -> ProducerConfig {
    ProducerConfig {
        aggregation: !args.no_aggregation,
        aggregation_max_size: args.aggregation_max_size,
        max_buffered_time: args.max_buffered_time,
        rate_limit: args.rate_limit.max(1),
        record_ttl: args.record_ttl,
        max_connections: args.max_connections.max(1),
        max_outstanding_records: args.max_outstanding_records.max(1),
        strict_ordering: args.strict_ordering,
        cbor: !args.json,
        ..ProducerConfig::default()
    }
}

/// Awaits every handle; returns the messages of the first 100 failures (all of them are
/// counted in the producer's stats).
///
/// Handles are awaited oldest first: records are stored about in the order they were put,
/// so the oldest is nearly always the one still to wait for, and the others resolve
/// without waking this task. (A `FuturesUnordered` of them was woken by every record, a
/// third of the CPU of `produce` with 100-byte records.) When the oldest is held up (its
/// record is being retried, say) while more than twice `outstanding` (the producer's bound
/// on records it holds) are queued behind it, the resolved ones are taken from the queue
/// wherever they are, so it stays within a few times that bound.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<Vec<PutHandle>>,
    outstanding: usize,
) -> Vec<String> {
    let mut queue: VecDeque<PutHandle> = VecDeque::new();
    let mut failures = Vec::new();
    let mut note = |r: Result<_, crate::producer::PutFailure>| {
        if let Err(e) = r {
            if failures.len() < 100 {
                failures.push(e.to_string());
            }
        }
    };
    let mut open = true;
    // Unconstrained: this task polls thousands of resolved handles at once, and tokio's
    // per-task budget would have every poll past the 128th come back pending.
    tokio::task::unconstrained(std::future::poll_fn(|cx| {
        while open {
            match rx.poll_recv(cx) {
                Poll::Ready(Some(handles)) => queue.extend(handles),
                Poll::Ready(None) => open = false,
                Poll::Pending => break,
            }
        }
        if queue.len() > 2 * outstanding {
            let mut unwoken = task::Context::from_waker(Waker::noop());
            queue.retain_mut(|h| match Pin::new(h).poll(&mut unwoken) {
                Poll::Ready(r) => {
                    note(r);
                    false
                }
                Poll::Pending => true,
            });
        }
        while let Some(oldest) = queue.front_mut() {
            match Pin::new(oldest).poll(cx) {
                Poll::Ready(r) => {
                    queue.pop_front();
                    note(r);
                }
                Poll::Pending => break,
            }
        }
        if open || !queue.is_empty() {
            return Poll::Pending;
        }
        Poll::Ready(())
    }))
    .await;
    failures
}

fn rate(stats: &StatsSnapshot, elapsed: Duration) -> (f64, f64) {
    let secs = elapsed.as_secs_f64().max(0.001);
    (
        stats.user_records_ok as f64 / secs,
        stats.bytes_stored as f64 / secs / 1e6,
    )
}

async fn report_progress(producer: Arc<Producer>, every: Duration) {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let stats: &ProducerStats = producer.stats();
    loop {
        tokio::time::sleep(every).await;
        let s = stats.snapshot();
        let (rps, mbps) = rate(&s, started.elapsed());
        let line = format!(
            "{} stored ({rps:.0} rec/s, {mbps:.2} MB/s) · {} requests · retries {} · throttled {} · failed {} · in producer {}",
            s.user_records_ok,
            s.requests,
            s.retries,
            s.throttled,
            s.user_records_failed,
            producer.outstanding_records()
        );
        if tty {
            crate::report_inline!("\r{line}   ");
            let _ = std::io::stderr().flush();
        } else {
            crate::report!("{line}");
        }
    }
}

fn print_summary(stream: &str, s: &Summary) {
    let st = &s.stats;
    let (rps, mbps) = rate(st, s.elapsed);
    if std::io::stderr().is_terminal() {
        crate::report!();
    }
    crate::report!(
        "produce: stream={stream} records={} stored={} failed={} expired={} requests={} kinesis_records={} aggregates={} retries={} throttled={} wrong_shard={} seconds={:.3} records_per_sec={rps:.0} mb_per_sec={mbps:.3}",
        st.user_records,
        st.user_records_ok,
        st.user_records_failed,
        st.user_records_expired,
        st.requests,
        st.kinesis_records,
        st.aggregates,
        st.retries,
        st.throttled,
        st.wrong_shard,
        s.elapsed.as_secs_f64(),
    );
}

/// Records per batch from the reading thread to the producer.
const BATCH: usize = 256;

/// The reading thread's end of the channel: records go over in batches of [`BATCH`] (a
/// send per record cost more than the rest of reading), and a reader sends what it has
/// before it may block, so a record typed into stdin still goes out at once.
struct Batches {
    tx: mpsc::Sender<Vec<anyhow::Result<UserRecord>>>,
    batch: Vec<anyhow::Result<UserRecord>>,
}

impl Batches {
    /// Adds a record; false once the receiving side is gone.
    fn push(&mut self, r: anyhow::Result<UserRecord>) -> bool {
        self.batch.push(r);
        self.batch.len() < BATCH || self.flush()
    }

    /// Sends what is batched; false once the receiving side is gone.
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.blocking_send(batch).is_ok()
    }
}

/// Starts the thread that reads or generates records into `tx`.
fn spawn_source(
    args: &ProduceArgs,
    tx: mpsc::Sender<Vec<anyhow::Result<UserRecord>>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let input: Option<Box<dyn Read + Send>> = match args.input.as_deref() {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdin())),
        Some(p) => Some(Box::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
    };
    let (format, key, sample) = (args.format, args.key, args.sample);
    let (count, size, keys, invalid_every) = (args.count, args.size, args.keys, args.invalid_every);
    let name = args
        .input
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok(tokio::task::spawn_blocking(move || {
        let mut out = Batches {
            tx,
            batch: Vec::with_capacity(BATCH),
        };
        match input {
            Some(input) => read_input(input, &name, format, key, &mut out),
            None => {
                // Random test data needs no cryptographic generator: a fast one (as the
                // KPL's bench program uses, `SplittableRandom`), seeded from the OS.
                let mut rng = rand::rngs::SmallRng::from_os_rng();
                for i in 0..count {
                    let record = match sample {
                        Sample::Orders => {
                            let (k, v) = sample_order(i as usize, invalid_every);
                            UserRecord::new(k, v)
                        }
                        Sample::Random => {
                            let k = if keys == 0 {
                                i
                            } else {
                                rng.random_range(0..keys)
                            };
                            let mut data = vec![0u8; size];
                            rng.fill(&mut data[..]);
                            UserRecord::new(format!("k{k}"), data)
                        }
                    };
                    if !out.push(Ok(record)) {
                        return;
                    }
                }
            }
        }
        out.flush();
    }))
}

fn read_input(
    input: Box<dyn Read + Send>,
    name: &str,
    format: Format,
    key: KeySource,
    out: &mut Batches,
) {
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut rng = rand::rng();
    let mut n: u64 = 0;
    loop {
        let data = match format {
            Format::Lines => {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => return,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                            if line.last() == Some(&b'\r') {
                                line.pop();
                            }
                        }
                        line
                    }
                    Err(e) => {
                        out.push(Err(anyhow::Error::new(e).context(format!("reading {name}"))));
                        return;
                    }
                }
            }
            Format::LengthPrefixed => {
                let mut len = [0u8; 4];
                match read_exact_or_eof(&mut reader, &mut len) {
                    Ok(false) => return,
                    Ok(true) => {}
                    Err(e) => {
                        out.push(Err(e.context(format!("{name}: record {n}: length prefix"))));
                        return;
                    }
                }
                let len = u32::from_be_bytes(len) as usize;
                if len > crate::kinesis_limits::MAX_RECORD_BYTES {
                    out.push(Err(anyhow::anyhow!(
                        "{name}: record {n} says it is {len} bytes long, over Kinesis's 1 MiB record limit (is the input really length-prefixed?)"
                    )));
                    return;
                }
                let mut data = vec![0u8; len];
                if let Err(e) = reader.read_exact(&mut data) {
                    out.push(Err(anyhow::Error::new(e)
                        .context(format!("{name}: record {n}: {len} bytes announced"))));
                    return;
                }
                data
            }
        };
        let record = match key {
            KeySource::LineNumber => UserRecord::new(n.to_string(), data),
            KeySource::Random => UserRecord::new(format!("{:032x}", rng.random::<u128>()), data),
            KeySource::Tab => match data.iter().position(|&b| b == b'\t') {
                Some(i) => {
                    let Ok(k) = std::str::from_utf8(&data[..i]) else {
                        out.push(Err(anyhow::anyhow!(
                            "{name}: line {}: the key before the tab is not UTF-8",
                            n + 1
                        )));
                        return;
                    };
                    UserRecord::new(k, data[i + 1..].to_vec())
                }
                None => {
                    out.push(Err(anyhow::anyhow!(
                        "{name}: line {}: no tab between key and data (--key tab)",
                        n + 1
                    )));
                    return;
                }
            },
        };
        // Whatever is batched goes before the next read, which may wait for input.
        if !out.push(Ok(record)) || (reader.buffer().is_empty() && !out.flush()) {
            return;
        }
        n += 1;
    }
}

/// Fills `buf`; `Ok(false)` at a clean end of input (nothing read).
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> anyhow::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => bail!("input ends inside it ({got} of {} bytes)", buf.len()),
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Creates the stream unless it exists, then waits until it is ACTIVE.
async fn ensure_stream(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: i32,
) -> anyhow::Result<()> {
    use aws_sdk_kinesis::types::StreamStatus;
    let exists = match client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("DescribeStreamSummary {stream}")))
        }
    };
    if !exists {
        crate::report!("creating stream {stream} with {shards} shards");
        client
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
            .with_context(|| format!("CreateStream {stream}"))?;
    }
    for _ in 0..600 {
        let d = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .with_context(|| format!("DescribeStreamSummary {stream}"))?;
        if d.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("stream {stream} did not become ACTIVE within 60s")
}

/// A JSON order the example guest understands; every `invalid_every`th one is not valid.
pub fn sample_order(i: usize, invalid_every: usize) -> (String, Vec<u8>) {
    const REGIONS: [&str; 3] = ["eu", "us", "apac"];
    const CURRENCIES: [&str; 3] = ["EUR", "USD", "SGD"];
    let region = REGIONS[i % 3];
    let id = format!("o-{i}");
    if invalid_every > 0 && i % invalid_every == invalid_every - 1 {
        return (
            id.clone(),
            format!(r#"{{"id":"{id}","customer":"c-{}"}}"#, i % 97).into_bytes(),
        );
    }
    let priority = if i.is_multiple_of(10) {
        r#","priority":"high""#
    } else {
        ""
    };
    let body = format!(
        r#"{{"id":"{id}","customer":"c-{}","amount":{}.{:02},"currency":"{}","region":"{region}"{priority}}}"#,
        i % 97,
        1 + i % 500,
        i % 100,
        CURRENCIES[i % 3],
    );
    (id, body.into_bytes())
}
