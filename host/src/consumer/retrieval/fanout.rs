//! Enhanced fan-out retrieval: SubscribeToShard on one shard through the application's
//! registered consumer. The service pushes events (records, the continuation sequence
//! number, MillisBehindLatest) over one HTTP/2 response for at most 5 minutes.
//!
//! The fetcher
//! - reads the event stream only when the shard consumer asks for records, so a slow sink
//!   pauses the stream (flow control) instead of filling memory: at most one event is
//!   held beyond what was asked for;
//! - subscribes again from the last continuation sequence number before the 5-minute
//!   limit (`fan_out.renewal_interval`), when the service ends the stream, after any
//!   error, and when a subscription delivers no event for `fan_out.idle_timeout` (AWS
//!   sends one at least every 5 s, so a silent subscription is a dead one);
//! - backs off on ResourceInUseException (the service refuses a second subscription to a
//!   shard within 5 s), throttling and errors;
//! - ends the shard on an event with child shards and no continuation sequence number. It
//!   never waits for an `initial-response` event (kinesis-local sends none).
//!
//! Dropping the fetcher drops the subscription: a lost lease stops reading at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::event_stream::EventReceiver;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{
    Record, ShardIteratorType, StartingPosition, SubscribeToShardEvent, SubscribeToShardEventStream,
};
use aws_sdk_kinesis::Client;
use rand::Rng;
use tokio::time::Instant;

use super::{ConsumerRegistration, FetchError, Fetched, Position};
use crate::config::FanOutConfig;
use crate::consumer::checkpoint::Checkpoint;

type Events = EventReceiver<SubscribeToShardEventStream, SubscribeToShardEventStreamError>;

/// One open subscription.
struct Subscription {
    events: Events,
    /// When SubscribeToShard was answered; renewal counts from here.
    opened: Instant,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

/// Counters of one shard's subscriptions (for logs, tests and metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Successful SubscribeToShard calls.
    pub subscriptions: u64,
    /// Subscriptions replaced because they reached `renewal_interval`.
    pub renewals: u64,
    /// Subscriptions replaced because they delivered nothing for `idle_timeout`.
    pub idle_replacements: u64,
    /// Subscriptions the service ended or that failed.
    pub ended: u64,
    /// Subscribe attempts refused (ResourceInUse, throttling, errors).
    pub refused: u64,
}

/// Reads one shard through enhanced fan-out.
#[derive(Debug)]
pub struct FanOutFetcher {
    client: Client,
    registration: Arc<ConsumerRegistration>,
    shard: String,
    config: FanOutConfig,
    /// Where the next subscription starts.
    start: Position,
    subscription: Option<Subscription>,
    /// Records of the last event not yet handed out.
    pending: VecDeque<Record>,
    millis_behind_latest: Option<i64>,
    /// The shard ended (with these children) once `pending` is handed out.
    end: Option<Vec<String>>,
    next_attempt: Instant,
    backoff: Duration,
    stats: SubscriptionStats,
}

/// What one event stream read brought.
enum Next {
    Event(Box<SubscribeToShardEvent>),
    /// The service closed the stream (5-minute limit, or it moved the shard elsewhere).
    Closed,
    Failed(String, Option<String>),
    /// An event of a type this SDK does not know.
    Unknown,
    Idle,
    Renew,
}

impl FanOutFetcher {
    /// Starts at `checkpoint` (the checkpointed record itself, as polling does).
    pub fn new(
        client: Client,
        registration: Arc<ConsumerRegistration>,
        shard: &str,
        checkpoint: &Checkpoint,
        at_timestamp: Option<SystemTime>,
        config: FanOutConfig,
    ) -> Self {
        let backoff = config.backoff;
        Self {
            client,
            registration,
            shard: shard.to_string(),
            config,
            start: Position::from_checkpoint(checkpoint, at_timestamp),
            subscription: None,
            pending: VecDeque::new(),
            millis_behind_latest: None,
            end: None,
            next_attempt: Instant::now(),
            backoff,
            stats: SubscriptionStats::default(),
        }
    }

    pub fn stats(&self) -> SubscriptionStats {
        self.stats
    }

    /// The next batch of at most `limit` records; an empty batch when an event carried
    /// none (MillisBehindLatest still moves).
    pub async fn fetch(&mut self, limit: usize) -> Result<Fetched, FetchError> {
        let limit = limit.max(1);
        loop {
            if !self.pending.is_empty() || self.end.is_some() {
                return Ok(self.hand_out(limit));
            }
            if self.subscription.is_none() {
                self.subscribe().await?;
                continue;
            }
            match self.next_event().await {
                Next::Event(ev) => {
                    self.backoff = self.config.backoff;
                    self.take(*ev);
                    return Ok(self.hand_out(limit));
                }
                Next::Unknown => {}
                Next::Renew => {
                    self.stats.renewals += 1;
                    tracing::debug!(shard = %self.shard, "renewing the subscription before its 5-minute limit");
                    self.subscription = None;
                }
                Next::Idle => {
                    self.stats.idle_replacements += 1;
                    self.silent();
                }
                Next::Closed => {
                    self.stats.ended += 1;
                    tracing::debug!(shard = %self.shard, "the service ended the subscription; subscribing again");
                    self.subscription = None;
                }
                Next::Failed(why, code) => {
                    self.stats.ended += 1;
                    self.subscription = None;
                    if code.as_deref() == Some("ResourceNotFoundException") {
                        self.refresh_consumer().await?;
                    }
                    self.back_off("SubscribeToShard event stream", &why);
                }
            }
        }
    }

    /// Drops a subscription (or a SubscribeToShard call) that has been silent for
    /// `idle_timeout`; the next one waits `backoff` (AWS refuses one within 5 s of the
    /// last).
    fn silent(&mut self) {
        tracing::warn!(stream = %self.registration.stream(), shard = %self.shard,
            idle_ms = self.config.idle_timeout.as_millis() as u64,
            "subscription delivered nothing; replacing it");
        self.subscription = None;
        self.next_attempt = Instant::now() + self.config.backoff;
    }

    /// Records of the pending event, at most `limit`; shard end with the last of them.
    fn hand_out(&mut self, limit: usize) -> Fetched {
        let n = limit.min(self.pending.len());
        let records: Vec<Record> = self.pending.drain(..n).collect();
        let shard_end = self.pending.is_empty() && self.end.is_some();
        let child_shards = if shard_end {
            self.end.take().unwrap_or_default()
        } else {
            Vec::new()
        };
        if shard_end {
            // Nothing more comes from this shard: close the stream now.
            self.subscription = None;
        }
        Fetched {
            records,
            millis_behind_latest: self.millis_behind_latest,
            shard_end,
            child_shards,
        }
    }

    fn take(&mut self, ev: SubscribeToShardEvent) {
        self.millis_behind_latest = Some(ev.millis_behind_latest);
        // The continuation sequence number is where a new subscription resumes. Without
        // one (the Rust SDK reads a missing one as empty) and with child shards, the
        // shard has ended.
        let continuation = ev.continuation_sequence_number;
        let children: Vec<String> = ev
            .child_shards
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.shard_id)
            .collect();
        if !continuation.is_empty() {
            self.start = Position::After(continuation.clone());
        } else if let Some(last) = ev.records.last() {
            self.start = Position::After(last.sequence_number.clone());
        }
        self.pending.extend(ev.records);
        if continuation.is_empty() && !children.is_empty() {
            self.end = Some(children);
        }
    }

    /// Waits for the next event, at most until the subscription is due for renewal or
    /// has been silent for `idle_timeout` (counted from now: time paused by backpressure
    /// does not count as silence).
    async fn next_event(&mut self) -> Next {
        let Some(sub) = self.subscription.as_mut() else {
            return Next::Closed;
        };
        let renew_at = sub.opened + self.config.renewal_interval;
        if Instant::now() >= renew_at {
            return Next::Renew;
        }
        let idle_at = Instant::now() + self.config.idle_timeout;
        tokio::select! {
            r = sub.events.recv() => match r {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(ev))) => Next::Event(Box::new(ev)),
                // An event type this SDK does not know: skip it, the stream goes on.
                Ok(Some(_)) => Next::Unknown,
                Ok(None) => Next::Closed,
                Err(e) => {
                    let code = e.as_service_error().and_then(|s| s.code()).map(str::to_string);
                    Next::Failed(crate::aws::describe(&e), code)
                }
            },
            _ = tokio::time::sleep_until(renew_at) => Next::Renew,
            _ = tokio::time::sleep_until(idle_at) => Next::Idle,
        }
    }

    /// One SubscribeToShard call (after the backoff wait). Retryable refusals back off
    /// and return `Ok` without a subscription; the caller loops.
    async fn subscribe(&mut self) -> Result<(), FetchError> {
        tokio::time::sleep_until(self.next_attempt).await;
        let arn = self
            .registration
            .arn()
            .await
            .map_err(|e| self.error("RegisterStreamConsumer", e.to_string()))?;
        let position = self.starting_position()?;
        // The SDK answers once the first message of the stream arrived (AWS sends an
        // initial-response at once; kinesis-local sends nothing until there are records):
        // a call that stays silent is as dead as a silent subscription.
        let call = self
            .client
            .subscribe_to_shard()
            .consumer_arn(&arn)
            .shard_id(&self.shard)
            .starting_position(position)
            .send();
        let Ok(r) = tokio::time::timeout(self.config.idle_timeout, call).await else {
            self.stats.idle_replacements += 1;
            self.silent();
            return Ok(());
        };
        match r {
            Ok(out) => {
                self.stats.subscriptions += 1;
                tracing::debug!(shard = %self.shard, start = ?self.start, "subscribed");
                self.subscription = Some(Subscription {
                    events: out.event_stream,
                    opened: Instant::now(),
                });
                // The next subscription to this shard, whenever it comes, may not follow
                // within 5 s of this one.
                self.next_attempt =
                    Instant::now() + Duration::from_secs(5).min(self.config.backoff);
                Ok(())
            }
            Err(e) => {
                let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
                let why = crate::aws::describe(&e);
                match code {
                    "ResourceNotFoundException" => {
                        // The consumer is gone (or the stream): register it again; that
                        // fails with a clear error when the stream is what is missing.
                        self.refresh_consumer_arn(&arn).await?;
                        self.back_off("SubscribeToShard", &why);
                        Ok(())
                    }
                    "AccessDeniedException"
                    | "InvalidArgumentException"
                    | "KMSAccessDeniedException"
                    | "KMSDisabledException"
                    | "KMSNotFoundException"
                    | "KMSInvalidStateException"
                    | "KMSOptInRequired" => Err(self.error("SubscribeToShard", why)),
                    // ResourceInUse (a subscription to this shard within 5 s, or the
                    // consumer not ACTIVE yet), LimitExceeded, throttling, 5xx, network.
                    _ => {
                        self.back_off("SubscribeToShard", &why);
                        Ok(())
                    }
                }
            }
        }
    }

    async fn refresh_consumer(&mut self) -> Result<(), FetchError> {
        let arn = self
            .registration
            .arn()
            .await
            .map_err(|e| self.error("RegisterStreamConsumer", e.to_string()))?;
        self.refresh_consumer_arn(&arn).await
    }

    async fn refresh_consumer_arn(&mut self, stale: &str) -> Result<(), FetchError> {
        tracing::warn!(stream = %self.registration.stream(), consumer = %self.registration.name(),
            "fan-out consumer not found; registering it again");
        self.registration
            .refresh(stale)
            .await
            .map(|_| ())
            .map_err(|e| self.error("RegisterStreamConsumer", e.to_string()))
    }

    fn starting_position(&self) -> Result<StartingPosition, FetchError> {
        let b = StartingPosition::builder();
        let b = match &self.start {
            Position::TrimHorizon => b.r#type(ShardIteratorType::TrimHorizon),
            Position::Latest => b.r#type(ShardIteratorType::Latest),
            Position::AtTimestamp(t) => b
                .r#type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from(*t)),
            Position::At(seq) => b
                .r#type(ShardIteratorType::AtSequenceNumber)
                .sequence_number(seq),
            Position::After(seq) => b
                .r#type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
        };
        b.build()
            .map_err(|e| self.error("SubscribeToShard", e.to_string()))
    }

    fn back_off(&mut self, operation: &str, why: &str) {
        self.stats.refused += 1;
        let jitter = rand::rng().random_range(0.8..1.2);
        let wait = self.backoff.mul_f64(jitter);
        tracing::warn!(stream = %self.registration.stream(), shard = %self.shard, operation, error = why,
            wait_ms = wait.as_millis() as u64, "subscribing again after backoff");
        self.next_attempt = Instant::now() + wait;
        self.backoff = (self.backoff * 2).min(self.config.max_backoff);
    }

    fn error(&self, operation: &'static str, message: String) -> FetchError {
        FetchError {
            stream: self.registration.stream().to_string(),
            shard: self.shard.clone(),
            operation,
            message,
        }
    }
}
