//! Progress of a long-running worker: how many records per second go through and how far
//! behind the tip of their shards they are (the largest `MillisBehindLatest` of the last
//! batches), as a live line on a terminal (every second) and as a plain `progress` log
//! line otherwise (every 10 seconds). `shardline produce` has its own line (records/s,
//! MB/s, retries).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::{defs, global, Value};

/// Records processed so far and the largest latest lag, read from the metrics.
fn sample() -> (u64, Option<u64>) {
    let mut records = 0;
    let mut lag: Option<u64> = None;
    for s in global().series() {
        if std::ptr::eq(s.def, &defs::RECORDS_PROCESSED) {
            records += s.scalar().max(0) as u64;
        } else if std::ptr::eq(s.def, &defs::MILLIS_BEHIND_LATEST) {
            if let Value::Distribution(d) = &s.value {
                if d.count() > 0 {
                    lag = Some(lag.unwrap_or(0).max(d.last()));
                }
            }
        }
    }
    (records, lag)
}

/// "12.3k rec/s, 1.2s behind" style numbers.
pub fn describe(records: u64, per_sec: f64, lag: Option<u64>) -> String {
    let lag = match lag {
        None => "lag unknown".to_string(),
        Some(ms) if ms < 1000 => format!("{ms}ms behind"),
        Some(ms) => format!(
            "{} behind",
            humantime::format_duration(Duration::from_secs(ms / 1000))
        ),
    };
    format!("{records} records processed · {per_sec:.0} rec/s · {lag}")
}

/// Reports the progress of `shardline run` until `shutdown`.
pub fn spawn_for_run(shutdown: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    // The figures are the metrics' own: with `metrics.level: none` there are none to show.
    let figures = global().enabled(&defs::RECORDS_PROCESSED);
    if !figures {
        tracing::info!("metrics.level is none: no progress figures are recorded or shown");
    }
    tokio::spawn(async move {
        let (mut last_records, _) = sample();
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => {
                    if terminal {
                        crate::report!();
                    }
                    return;
                }
            }
            if !figures {
                continue;
            }
            let (records, lag) = sample();
            let per_sec =
                (records - last_records.min(records)) as f64 / last.elapsed().as_secs_f64();
            (last_records, last) = (records, Instant::now());
            let line = describe(records, per_sec, lag);
            if terminal {
                crate::report_inline!("\r{line}   ");
                let _ = std::io::stderr().flush();
            } else {
                tracing::info!(
                    component = "progress",
                    records,
                    records_per_sec = per_sec.round() as u64,
                    millis_behind_latest = lag,
                    "{line}"
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::sample;
    use crate::wasm::bindings::SourceRecord;

    /// The progress line reads the series the shard consumers write (through their own
    /// handles, made in another module), not copies of their definitions.
    #[test]
    fn progress_reads_what_shard_consumers_count() {
        let config = crate::config::Config::from_yaml(
            "application: progress-test\nsource:\n  stream: s\nsinks:\n  out:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: t\n",
            "progress.yaml",
            std::path::PathBuf::from("."),
        )
        .expect("config");
        let (before, _) = sample();
        let metrics =
            crate::consumer::metrics::ShardMetrics::new("progress-stream", "shard-0", &config);
        let record = SourceRecord {
            partition_key: "k".into(),
            arrival_millis: 0,
            data: b"x".to_vec(),
        };
        metrics.processed(&[record.clone(), record.clone(), record]);
        metrics.fetched(Some(1234));
        let (after, lag) = sample();
        // Other tests of this binary may count too: at least ours moved it.
        assert!(after >= before + 3, "records {before} -> {after}");
        assert!(lag.is_some_and(|l| l >= 1234), "lag {lag:?}");
    }
}
