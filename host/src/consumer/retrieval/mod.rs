//! Retrieval: getting records of one shard from Kinesis, as the KCL's retrieval specs —
//! polling (GetRecords, shared 2 MiB/s per shard) or enhanced fan-out (a registered
//! stream consumer with its own 2 MiB/s, records pushed through SubscribeToShard). Both
//! answer the shard consumer in the same shape: [`Fetched`] batches, bounded by the room
//! it has left.

pub mod consumer_registration;
pub mod fanout;
mod get_records;
pub mod polling;

use std::time::SystemTime;

use aws_sdk_kinesis::types::Record;
pub use consumer_registration::ConsumerRegistration;
pub use fanout::FanOutFetcher;
pub use polling::PollingFetcher;

use crate::consumer::checkpoint::Checkpoint;

/// A batch of one shard's records, whichever retrieval got them: a GetRecords answer
/// (polling) or the records of SubscribeToShard events (fan-out), at most the room the
/// shard consumer asked for.
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: Vec<Record>,
    pub millis_behind_latest: Option<i64>,
    /// The shard is closed and every record has been returned.
    pub shard_end: bool,
    /// At shard end, the shards that continue it, when the service says (`ChildShards`).
    pub child_shards: Vec<String>,
}

/// Why retrieval cannot go on (after retries).
#[derive(Debug, thiserror::Error)]
#[error("stream {stream} shard {shard}: {operation} failed: {message}")]
pub struct FetchError {
    pub stream: String,
    pub shard: String,
    pub operation: &'static str,
    pub message: String,
}

/// A record's `ApproximateArrivalTimestamp` in milliseconds since the epoch, rounded to the
/// nearest millisecond.
///
/// The service sends epoch seconds with three decimals (`1796613086.689`); the SDK reads
/// them as a 64-bit float, whose nearest value is often just below the decimal
/// (`…086.68899…`). Truncating would make about half of all records 1 ms early against
/// what the service said and what the Java SDK (decimal parsing) reports.
pub fn arrival_millis(t: &aws_smithy_types::DateTime) -> i64 {
    let nanos = i64::from(t.subsec_nanos());
    t.secs()
        .saturating_mul(1000)
        .saturating_add((nanos + 500_000) / 1_000_000)
}

/// Where reading (re)starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    TrimHorizon,
    Latest,
    AtTimestamp(SystemTime),
    /// The checkpointed record itself: its sub-records after the checkpoint may be pending.
    At(String),
    After(String),
}

impl Position {
    /// The start of a shard whose last checkpoint is `checkpoint`: the checkpointed record
    /// itself, so that the caller can skip what of a KPL aggregate was done.
    pub(crate) fn from_checkpoint(
        checkpoint: &Checkpoint,
        at_timestamp: Option<SystemTime>,
    ) -> Self {
        match checkpoint {
            Checkpoint::TrimHorizon | Checkpoint::ShardEnd => Self::TrimHorizon,
            Checkpoint::Latest => Self::Latest,
            Checkpoint::AtTimestamp => match at_timestamp {
                Some(t) => Self::AtTimestamp(t),
                None => Self::TrimHorizon,
            },
            Checkpoint::Sequence { sequence, .. } => Self::At(sequence.clone()),
        }
    }
}

/// The retrieval of one shard, whichever mode the stream uses.
// One per shard consumer, never moved around: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Fetcher {
    Polling(PollingFetcher),
    FanOut(FanOutFetcher),
}

impl Fetcher {
    /// The next batch of at most `limit` records. Retries what can be retried for as long
    /// as it takes; the caller cancels by dropping the future (or the fetcher, which ends
    /// a fan-out subscription at once).
    pub async fn fetch(&mut self, limit: usize) -> Result<Fetched, FetchError> {
        match self {
            Self::Polling(p) => p.fetch(limit).await,
            Self::FanOut(f) => f.fetch(limit).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_types::DateTime;

    use super::arrival_millis;

    #[test]
    fn arrival_times_are_the_services_milliseconds() {
        // Decimals a 64-bit float cannot hold exactly, as the SDK parses them from JSON.
        for (secs, millis) in [
            (1_796_613_086.689, 1_796_613_086_689),
            (1_700_000_000.001, 1_700_000_000_001),
            (1_763_784_405.12, 1_763_784_405_120),
            (1_763_784_405.999, 1_763_784_405_999),
            (1_763_784_405.0, 1_763_784_405_000),
        ] {
            let t = DateTime::from_secs_f64(secs);
            assert_eq!(arrival_millis(&t), millis, "{secs}");
        }
        // Every millisecond of one second, read back as the SDK reads the service's text.
        let mut truncated_early = 0;
        for ms in 0..1000 {
            let text = format!("1796613086.{ms:03}");
            let t = DateTime::from_secs_f64(text.parse().expect("a float"));
            assert_eq!(arrival_millis(&t), 1_796_613_086_000 + ms, "{text}");
            truncated_early +=
                i64::from(t.to_millis().expect("in range") != 1_796_613_086_000 + ms);
        }
        // The float really is below the decimal for many of them (what truncation got wrong).
        assert!(truncated_early > 100, "{truncated_early}");
    }
}
