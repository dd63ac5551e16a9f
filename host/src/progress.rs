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

/// Reports the progress of `shardline run` until `shutdown`, when it marks the worker
/// not ready (draining).
pub fn spawn_for_run(shutdown: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
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
                    crate::health::readiness().draining();
                    return;
                }
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
