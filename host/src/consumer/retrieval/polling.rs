//! Polling retrieval: GetRecords on one shard, at most one call per `polling.interval`
//! (Kinesis allows 5 reads/s per shard across all consumers), waiting `idle_interval`
//! after an empty answer, backing off with jitter on throttling and transient errors, and
//! getting a fresh iterator when one expires.

use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use rand::Rng;
use tokio::time::Instant;

use super::{FetchError, Fetched, Position};
use crate::config::PollingConfig;
use crate::consumer::checkpoint::Checkpoint;

/// Polls one shard. Starting from a checkpoint, the first record returned is the
/// checkpointed one (AT_SEQUENCE_NUMBER): the caller skips what of it was done, which is
/// what lets a restart resume inside a KPL aggregate.
#[derive(Debug)]
pub struct PollingFetcher {
    client: Client,
    stream: String,
    shard: String,
    config: PollingConfig,
    start: Position,
    iterator: Option<String>,
    next_call: Instant,
    backoff: Duration,
    metrics: crate::consumer::metrics::RetrievalMetrics,
}

impl PollingFetcher {
    /// Starts after `checkpoint` (or at the initial position it names).
    pub fn new(
        client: Client,
        stream: &str,
        shard: &str,
        checkpoint: &Checkpoint,
        at_timestamp: Option<SystemTime>,
        config: PollingConfig,
    ) -> Self {
        let start = Position::from_checkpoint(checkpoint, at_timestamp);
        let backoff = config.backoff;
        Self {
            client,
            stream: stream.to_string(),
            shard: shard.to_string(),
            config,
            start,
            iterator: None,
            next_call: Instant::now(),
            backoff,
            metrics: crate::consumer::metrics::RetrievalMetrics::new(stream, shard),
        }
    }

    /// The next batch of at most `limit` records (capped by `polling.max_records`). Waits
    /// for the rate limit; retries throttling and transient errors with backoff for as
    /// long as it takes (the caller cancels by dropping the future).
    pub async fn fetch(&mut self, limit: usize) -> Result<Fetched, FetchError> {
        let limit = i32::try_from(limit)
            .unwrap_or(i32::MAX)
            .clamp(1, self.config.max_records);
        loop {
            tokio::time::sleep_until(self.next_call).await;
            let iterator = match self.iterator.clone() {
                Some(i) => i,
                None => match self.get_iterator().await {
                    Ok(Some(i)) => i,
                    Ok(None) => {
                        return Ok(Fetched {
                            shard_end: true,
                            ..Fetched::default()
                        })
                    }
                    Err(Retry::Later(why)) => {
                        self.back_off("GetShardIterator", &why);
                        continue;
                    }
                    Err(Retry::Never(message)) => {
                        return Err(self.error("GetShardIterator", message))
                    }
                },
            };
            let sent = Instant::now();
            let r = super::get_records::get_records(&self.client, iterator, limit).await;
            match r {
                Ok(out) => {
                    self.metrics.got_records(sent);
                    self.backoff = self.config.backoff;
                    let records = out.records;
                    self.next_call = sent
                        + if records.is_empty() {
                            self.config.idle_interval.max(self.config.interval)
                        } else {
                            self.config.interval
                        };
                    if let Some(last) = records.last() {
                        self.start = Position::After(last.sequence_number.clone());
                    }
                    self.iterator = out.next_shard_iterator;
                    let shard_end = self.iterator.is_none();
                    return Ok(Fetched {
                        records,
                        millis_behind_latest: out.millis_behind_latest,
                        shard_end,
                        child_shards: out
                            .child_shards
                            .unwrap_or_default()
                            .into_iter()
                            .map(|c| c.shard_id)
                            .collect(),
                    });
                }
                Err(e) => match classify(&e) {
                    ErrorClass::ExpiredIterator => {
                        self.metrics.expired_iterator();
                        tracing::debug!(shard = %self.shard, "iterator expired; getting a new one");
                        self.iterator = None;
                    }
                    ErrorClass::Throttled => {
                        self.metrics.throttled();
                        tracing::debug!(shard = %self.shard, "GetRecords throttled");
                        self.back_off("GetRecords", "throttled");
                    }
                    ErrorClass::Transient(why) => {
                        self.iterator = None;
                        self.back_off("GetRecords", &why);
                    }
                    ErrorClass::Fatal(why) => return Err(self.error("GetRecords", why)),
                },
            }
        }
    }

    async fn get_iterator(&self) -> Result<Option<String>, Retry> {
        let mut req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&self.shard);
        req = match &self.start {
            Position::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Position::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
            Position::AtTimestamp(t) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from(*t)),
            Position::At(seq) => req
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(seq),
            Position::After(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
        };
        match req.send().await {
            Ok(out) => Ok(out.shard_iterator),
            Err(e) => {
                let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
                let why = crate::aws::describe(&e);
                match code {
                    "ProvisionedThroughputExceededException" | "LimitExceededException" => {
                        Err(Retry::Later(why))
                    }
                    "ResourceNotFoundException"
                    | "InvalidArgumentException"
                    | "AccessDeniedException" => Err(Retry::Never(why)),
                    _ => Err(Retry::Later(why)),
                }
            }
        }
    }

    fn back_off(&mut self, operation: &str, why: &str) {
        let jitter = rand::rng().random_range(0.5..1.0);
        let wait = self.backoff.mul_f64(jitter);
        tracing::warn!(stream = %self.stream, shard = %self.shard, operation, error = why, wait_ms = wait.as_millis() as u64, "retrying after backoff");
        self.next_call = Instant::now() + wait;
        self.backoff = (self.backoff * 2).min(self.config.max_backoff);
    }

    fn error(&self, operation: &'static str, message: String) -> FetchError {
        FetchError {
            stream: self.stream.clone(),
            shard: self.shard.clone(),
            operation,
            message,
        }
    }
}

enum Retry {
    Later(String),
    Never(String),
}

enum ErrorClass {
    ExpiredIterator,
    Throttled,
    Transient(String),
    Fatal(String),
}

fn classify<R: std::fmt::Debug>(e: &SdkError<GetRecordsError, R>) -> ErrorClass {
    let why = crate::aws::describe(e);
    match e.as_service_error() {
        Some(se) => match se.code().unwrap_or("") {
            "ExpiredIteratorException" => ErrorClass::ExpiredIterator,
            "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException" => ErrorClass::Throttled,
            "ResourceNotFoundException"
            | "AccessDeniedException"
            | "KMSAccessDeniedException"
            | "KMSDisabledException"
            | "KMSNotFoundException"
            | "KMSInvalidStateException" => ErrorClass::Fatal(why),
            // InvalidArgument on an iterator (some emulators answer it, or HTTP 500, for a
            // stale iterator): get a new iterator from the last position and retry.
            _ => ErrorClass::Transient(why),
        },
        None => ErrorClass::Transient(why),
    }
}
