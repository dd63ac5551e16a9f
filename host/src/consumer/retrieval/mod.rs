//! Retrieval: getting records of one shard from Kinesis, as the KCL's retrieval specs —
//! polling (GetRecords, shared 2 MiB/s per shard) or enhanced fan-out (a registered
//! stream consumer with its own 2 MiB/s, records pushed through SubscribeToShard). Both
//! answer the shard consumer in the same shape: [`Fetched`] batches, bounded by the room
//! it has left.

pub mod consumer_registration;
pub mod fanout;
pub mod polling;

use std::time::SystemTime;

pub use consumer_registration::ConsumerRegistration;
pub use fanout::FanOutFetcher;
pub use polling::{FetchError, Fetched, PollingFetcher};

use crate::consumer::checkpoint::Checkpoint;

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
