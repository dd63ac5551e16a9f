//! `shardline produce`: put records into a stream — sample orders for demos, or one record
//! per line of stdin. Uses PutRecords (≤ 500 records per call) and retries the records a
//! call did not accept; the KPL-grade producer will replace the sending part.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use clap::{Args, ValueEnum};
use rand::Rng;

use crate::config::Config;

/// PutRecords takes at most 500 records per call.
const MAX_RECORDS_PER_CALL: usize = 500;
const MAX_ATTEMPTS: u32 = 20;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Config whose `aws` section and stream are used.
    #[arg(long, short)]
    config: PathBuf,
    /// Stream to write to (default: the config's first stream).
    #[arg(long)]
    stream: Option<String>,
    /// What to write.
    #[arg(long, value_enum, default_value = "orders")]
    sample: Sample,
    /// How many sample records.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// With `--sample orders`: every Nth order is invalid (0: none).
    #[arg(long, default_value_t = 0)]
    invalid_every: usize,
    /// Create the stream with this many shards if it does not exist (and wait until it is
    /// ACTIVE).
    #[arg(long)]
    create_shards: Option<i32>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Sample {
    /// JSON orders as the example guest expects them.
    Orders,
    /// One record per line of standard input (partition key = line number).
    Stdin,
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let stream = args.stream.clone().unwrap_or_else(|| config.first_stream());
    let sdk = crate::aws::sdk_config(&config.aws).await?;
    let client = crate::aws::kinesis(&sdk, &config.aws);
    if let Some(shards) = args.create_shards {
        ensure_stream(&client, &stream, shards).await?;
    }

    let records: Vec<(String, Vec<u8>)> = match args.sample {
        Sample::Orders => (0..args.count)
            .map(|i| sample_order(i, args.invalid_every))
            .collect(),
        Sample::Stdin => std::io::stdin()
            .lock()
            .lines()
            .enumerate()
            .map(|(i, l)| l.map(|l| (format!("line-{i}"), l.into_bytes())))
            .collect::<Result<_, _>>()
            .context("reading stdin")?,
    };
    let total = records.len();
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut done = 0;
    for chunk in records.chunks(MAX_RECORDS_PER_CALL) {
        put_all(&client, &stream, chunk).await?;
        done += chunk.len();
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        if tty {
            eprint!("\rproduced {done}/{total} records to {stream} ({rate:.0} rec/s)   ");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("produced {done}/{total} records to {stream} ({rate:.0} rec/s)");
        }
    }
    if tty {
        eprintln!();
    }
    Ok(())
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
        eprintln!("creating stream {stream} with {shards} shards");
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

/// Puts records, retrying those a call did not accept, with backoff.
async fn put_all(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut wait = Duration::from_millis(100);
    for attempt in 1..=MAX_ATTEMPTS {
        let entries = pending
            .iter()
            .map(|&i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&records[i].0)
                    .data(Blob::new(records[i].1.clone()))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        match client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                let failed: Vec<usize> = out
                    .records
                    .iter()
                    .zip(&pending)
                    .filter(|(r, _)| r.error_code.is_some())
                    .map(|(_, &i)| i)
                    .collect();
                if failed.is_empty() {
                    return Ok(());
                }
                pending = failed;
            }
            Err(e) if attempt < MAX_ATTEMPTS => {
                tracing::warn!(error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "PutRecords failed; retrying");
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("PutRecords to {stream}"))),
        }
        let jitter = rand::rng().random_range(0.5..1.0);
        tokio::time::sleep(wait.mul_f64(jitter)).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    bail!(
        "{} records were still refused by {stream} after {MAX_ATTEMPTS} attempts",
        pending.len()
    )
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
