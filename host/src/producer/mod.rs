//! The producer puts user records into a Kinesis stream the way the KPL does, and fixes
//! what KPL users complain about: memory that grows without bound, records dropped or
//! reordered without a word.
//!
//! A user record travels through these steps (each its own module):
//!
//! 1. [`shard_map`]: its hash key (MD5 of the partition key, or the explicit hash key)
//!    predicts its shard from the ListShards hash ranges.
//! 2. Aggregation: records predicted for the same shard are packed into one
//!    [KPL aggregate](crate::agg) of at most `aggregation_max_size` bytes (KPL default
//!    51,200). An aggregate is put with the first record's partition key and, as explicit
//!    hash key, the first record's hash key, so it lands in the predicted shard. A lone
//!    record, or one too large to aggregate, is put as it is.
//! 3. Collection: Kinesis records of any shards are collected into PutRecords requests of
//!    at most 500 records and 5 MiB. A request goes out when it is full or when its oldest
//!    user record has waited `max_buffered_time` (KPL `RecordMaxBufferedTime`, 100 ms).
//! 4. [`limiter`]: per-shard token buckets hold back what would exceed `rate_limit` % of a
//!    shard's 1,000 records/s and 1 MiB/s.
//! 5. [`retrier`]: a record PutRecords did not store is retried after an exponential backoff
//!    with jitter, until its time to live (`record_ttl`, 30 s) runs out; then, or on an
//!    error waiting cannot heal, each of its user records fails with that error. Nothing is
//!    dropped silently: every [`put`](Producer::put) resolves to a [`Receipt`] or a
//!    [`PutFailure`].
//!
//! **Backpressure.** At most `max_outstanding_records` user records and
//! `max_outstanding_bytes` bytes are in the producer at once (queued, in flight or waiting
//! for a retry); [`put`](Producer::put) waits for room instead of growing memory. It also
//! waits while 8,192 records it handed over are not taken in by the pipeline yet, so a
//! fast caller does not hold most of the records outstanding in their own buffers while
//! the aggregates they are copied into hold them again.
//!
//! **Order.** A failed record goes back to the front of its shard's queue, and the shard
//! waits out the backoff, so records of a shard are *sent* in order. With several requests
//! in flight, a later request can still be stored before the retry of an earlier one.
//! `strict_ordering` allows one Kinesis record per shard in flight at a time, so a
//! partition key's records are stored in the order they were put (across a reshard too,
//! since each shard is drained in order). The cost: one round trip per aggregate per shard
//! — with aggregation, up to `aggregation_max_size` bytes per round trip and shard.
//!
//! **Resharding.** A record stored in another shard than predicted, or a hash key no open
//! shard covers, makes the producer load the shard map again. Records queued for a shard
//! that closed are re-aggregated for the shards that replaced it. An aggregate of several
//! records that landed in the wrong shard is put again (the KCL drops an aggregate with a
//! record outside its shard): its user records may then be stored twice — at-least-once,
//! as everywhere in Shardline.

mod buffer_pool;
mod cbor;
pub mod limiter;
pub mod metrics;
mod pipeline;
mod request;
pub mod retrier;
pub mod shard_map;
mod shard_queue;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use self::shard_map::ShardMap;
use crate::kinesis_limits::{check_record, MAX_RECORD_BYTES};

/// Tunables, with the KPL's defaults where the KPL has one.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Pack user records bound for the same shard into KPL aggregates.
    pub aggregation: bool,
    /// Largest aggregate, in encoded bytes (KPL `AggregationMaxSize`).
    pub aggregation_max_size: usize,
    /// Records per PutRecords request (KPL `CollectionMaxCount`, at most 500).
    pub max_request_records: usize,
    /// Bytes (data + partition keys) per PutRecords request (KPL `CollectionMaxSize`).
    pub max_request_bytes: usize,
    /// How long a user record may wait to be aggregated and collected.
    pub max_buffered_time: Duration,
    /// Share of a shard's write limits each shard's token buckets allow, in percent.
    pub rate_limit: u32,
    /// How long a user record may take to be stored, retries included.
    pub record_ttl: Duration,
    /// PutRecords requests in flight at once (KPL `MaxConnections`).
    pub max_connections: usize,
    /// Time allowed for one PutRecords request (KPL `RequestTimeout`).
    pub request_timeout: Duration,
    /// First retry backoff; it doubles per attempt up to `max_retry_backoff`.
    pub retry_backoff: Duration,
    pub max_retry_backoff: Duration,
    /// Bound on user records inside the producer; `put` waits beyond it.
    pub max_outstanding_records: usize,
    /// Bound on user record bytes inside the producer; `put` waits beyond it.
    pub max_outstanding_bytes: usize,
    /// One Kinesis record per shard in flight at a time (see the module docs).
    pub strict_ordering: bool,
    /// Send PutRecords in CBOR, as the AWS SDK for Java does (see [`cbor`]); JSON, the
    /// encoding of every other AWS SDK, when false.
    pub cbor: bool,
}

impl Default for ProducerConfig {
    /// The defaults a Kinesis sink's section also starts from.
    fn default() -> Self {
        use crate::config::sinks::producer_defaults as d;
        Self {
            aggregation: true,
            aggregation_max_size: d::AGGREGATION_MAX_SIZE,
            max_request_records: d::MAX_REQUEST_RECORDS,
            max_request_bytes: d::MAX_REQUEST_BYTES,
            max_buffered_time: d::MAX_BUFFERED_TIME,
            rate_limit: d::RATE_LIMIT,
            record_ttl: d::RECORD_TTL,
            max_connections: d::MAX_CONNECTIONS,
            request_timeout: d::REQUEST_TIMEOUT,
            retry_backoff: Duration::from_millis(100),
            max_retry_backoff: Duration::from_secs(3),
            max_outstanding_records: d::MAX_OUTSTANDING_RECORDS,
            max_outstanding_bytes: d::MAX_OUTSTANDING_BYTES,
            strict_ordering: false,
            cbor: true,
        }
    }
}

/// One record as the user gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    /// Decimal 0..=2^128-1; overrides the partition key's MD5 for choosing the shard.
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

impl UserRecord {
    pub fn new(partition_key: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            partition_key: partition_key.into(),
            explicit_hash_key: None,
            data: data.into(),
        }
    }
}

/// Where a user record was stored. The records of one aggregate share its shard id and
/// sequence number (`Arc<str>`), rather than each holding copies of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub shard_id: Arc<str>,
    pub sequence_number: Arc<str>,
    /// Its position in the aggregate that carried it; `None` when it was put alone.
    pub sub_sequence_number: Option<u64>,
    /// PutRecords attempts it took.
    pub attempts: u32,
}

/// A user record the producer gave up on, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream}: record with partition key {partition_key:?} not stored after {attempts} attempt(s): {reason}")]
pub struct PutFailure {
    pub stream: String,
    pub partition_key: String,
    pub attempts: u32,
    /// `record_ttl` ran out (otherwise the error was one waiting cannot heal).
    pub expired: bool,
    pub reason: String,
}

/// Errors of the producer itself (not of one record's put).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProducerError {
    #[error("stream {stream}: cannot read its shards: {message}")]
    ShardMap {
        stream: String,
        message: String,
        /// Whether retrying cannot help (the stream does not exist, access is refused).
        permanent: bool,
    },
    #[error("stream {stream}: record with partition key {partition_key:?} refused: {reason}")]
    Invalid {
        stream: String,
        partition_key: String,
        reason: String,
    },
    #[error("stream {stream}: the producer is closed")]
    Closed { stream: String },
}

impl ProducerError {
    /// Whether putting again cannot succeed (the stream does not exist, access is refused,
    /// the record is invalid).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::ShardMap { permanent, .. } => *permanent,
            Self::Invalid { .. } => true,
            Self::Closed { .. } => false,
        }
    }
}

/// Counters, readable while the producer runs.
#[derive(Debug, Default)]
pub struct ProducerStats {
    /// User records accepted by `put`.
    pub user_records: AtomicU64,
    /// User records stored.
    pub user_records_ok: AtomicU64,
    /// User records given up on (each reported through its handle).
    pub user_records_failed: AtomicU64,
    /// Of those, because their TTL ran out.
    pub user_records_expired: AtomicU64,
    /// Kinesis records sent (each attempt counts).
    pub kinesis_records: AtomicU64,
    /// Of those, KPL aggregates of more than one user record.
    pub aggregates: AtomicU64,
    /// PutRecords requests sent.
    pub requests: AtomicU64,
    /// Attempts of Kinesis records after their first.
    pub retries: AtomicU64,
    /// Kinesis records refused with a throttling error.
    pub throttled: AtomicU64,
    /// Kinesis records stored in another shard than predicted.
    pub wrong_shard: AtomicU64,
    /// Data bytes of Kinesis records stored.
    pub bytes_stored: AtomicU64,
    /// Shard map loads after the first.
    pub shard_map_refreshes: AtomicU64,
}

/// A copy of [`ProducerStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub user_records: u64,
    pub user_records_ok: u64,
    pub user_records_failed: u64,
    pub user_records_expired: u64,
    pub kinesis_records: u64,
    pub aggregates: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub wrong_shard: u64,
    pub bytes_stored: u64,
    pub shard_map_refreshes: u64,
}

impl ProducerStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            user_records: g(&self.user_records),
            user_records_ok: g(&self.user_records_ok),
            user_records_failed: g(&self.user_records_failed),
            user_records_expired: g(&self.user_records_expired),
            kinesis_records: g(&self.kinesis_records),
            aggregates: g(&self.aggregates),
            requests: g(&self.requests),
            retries: g(&self.retries),
            throttled: g(&self.throttled),
            wrong_shard: g(&self.wrong_shard),
            bytes_stored: g(&self.bytes_stored),
            shard_map_refreshes: g(&self.shard_map_refreshes),
        }
    }

    fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

type PutResult = Result<Receipt, PutFailure>;

/// Resolves when the user record was stored or given up on. Dropping it does not cancel
/// the put.
#[derive(Debug)]
pub struct PutHandle {
    rx: oneshot::Receiver<PutResult>,
    stream: Arc<str>,
    partition_key: String,
}

impl Future for PutHandle {
    type Output = PutResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PutResult> {
        Pin::new(&mut self.rx).poll(cx).map(|r| match r {
            Ok(Ok(receipt)) => Ok(receipt),
            Ok(Err(mut f)) => {
                // The pipeline knows neither: the handle names the record's stream and key.
                f.stream = self.stream.to_string();
                f.partition_key = self.partition_key.clone();
                Err(f)
            }
            Err(_) => Err(PutFailure {
                stream: self.stream.to_string(),
                partition_key: self.partition_key.clone(),
                attempts: 0,
                expired: false,
                reason: "the producer stopped before the record was stored".into(),
            }),
        })
    }
}

/// Room a user record holds in the producer until it is stored or given up on.
#[derive(Debug)]
struct Permits {
    _records: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

impl Permits {
    /// Takes over `other`'s room, to give both back at once: one lock of each semaphore
    /// for a whole aggregate's records instead of one per record.
    fn merge(&mut self, other: Self) {
        self._records.merge(other._records);
        self._bytes.merge(other._bytes);
    }
}

enum Command {
    Put(Box<shard_queue::Pending>),
    Flush(oneshot::Sender<()>),
}

/// A KPL-grade producer for one stream. Cheap to share behind an `Arc`; every method
/// takes `&self`.
#[derive(Debug)]
pub struct Producer {
    stream: Arc<str>,
    intake: mpsc::UnboundedSender<Command>,
    records: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    /// Room in the intake for records the pipeline has not taken yet ([`INTAKE_ROOM`]).
    intake_room: Arc<Semaphore>,
    config: ProducerConfig,
    stats: Arc<ProducerStats>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Records `put` may hand over before the pipeline has taken them in. Without it, a caller
/// faster than the pipeline queued up to `max_outstanding_records` user records as they
/// came (their own buffers) while as many were already copied into aggregates, and the
/// allocator kept the memory of both.
const INTAKE_ROOM: usize = 8192;

impl Producer {
    /// Reads the stream's shard map and starts the producer. Fails when the stream cannot
    /// be listed (it does not exist, no permission, no connection).
    pub async fn start(
        client: &Client,
        stream: &str,
        config: ProducerConfig,
    ) -> Result<Self, ProducerError> {
        // Retries are the producer's: it knows each record's TTL, the SDK does not.
        let client = Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
                .build(),
        );
        let map = load_shard_map(&client, stream).await?;
        let stream: Arc<str> = Arc::from(stream);
        let stats = Arc::new(ProducerStats::default());
        let (intake, rx) = mpsc::unbounded_channel();
        let intake_room = Arc::new(Semaphore::new(INTAKE_ROOM));
        let task =
            pipeline::Pipeline::new(client, stream.clone(), config.clone(), stats.clone(), map);
        let task = tokio::spawn(task.run(rx, intake_room.clone()));
        Ok(Self {
            stream,
            intake,
            records: Arc::new(Semaphore::new(config.max_outstanding_records.max(1))),
            bytes: Arc::new(Semaphore::new(
                config.max_outstanding_bytes.max(MAX_RECORD_BYTES),
            )),
            intake_room,
            config,
            stats,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn stats(&self) -> &ProducerStats {
        &self.stats
    }

    /// User records inside the producer now.
    pub fn outstanding_records(&self) -> usize {
        self.config
            .max_outstanding_records
            .max(1)
            .saturating_sub(self.records.available_permits())
    }

    /// Checks a record against Kinesis's rules, so a record Kinesis would refuse is
    /// refused here, before it is accepted.
    pub fn validate(&self, r: &UserRecord) -> Result<u128, ProducerError> {
        let hash = self.check(r)?;
        Ok(hash.unwrap_or_else(|| crate::agg::partition_key_hash(&r.partition_key)))
    }

    /// [`validate`](Self::validate) without the MD5 of the partition key, which cannot fail:
    /// the hash key when the record has an explicit one, else `None`. The pipeline hashes
    /// the partition keys of the records it takes in together (several per SIMD
    /// instruction).
    fn check(&self, r: &UserRecord) -> Result<Option<u128>, ProducerError> {
        let invalid = |reason: String| ProducerError::Invalid {
            stream: self.stream.to_string(),
            partition_key: r.partition_key.clone(),
            reason,
        };
        check_record(&r.partition_key, r.data.len()).map_err(invalid)?;
        r.explicit_hash_key
            .as_deref()
            .map(crate::agg::parse_explicit_hash_key)
            .transpose()
            .map_err(|e| invalid(e.to_string()))
    }

    /// Hands a record to the producer, waiting while the producer is full. The handle
    /// resolves when it was stored or given up on.
    pub async fn put(&self, record: UserRecord) -> Result<PutHandle, ProducerError> {
        let hash = self.check(&record)?;
        let closed = || ProducerError::Closed {
            stream: self.stream.to_string(),
        };
        let size = (record.data.len() + record.partition_key.len()).max(1) as u32;
        let records = self
            .records
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let bytes = self
            .bytes
            .clone()
            .acquire_many_owned(size)
            .await
            .map_err(|_| closed())?;
        self.intake_room
            .acquire()
            .await
            .map_err(|_| closed())?
            .forget();
        let (tx, rx) = oneshot::channel();
        let handle = PutHandle {
            rx,
            stream: self.stream.clone(),
            partition_key: record.partition_key.clone(),
        };
        let pending = shard_queue::Pending::new(
            record,
            hash,
            tx,
            Permits {
                _records: records,
                _bytes: bytes,
            },
            self.config.record_ttl,
        );
        self.intake
            .send(Command::Put(Box::new(pending)))
            .map_err(|_| closed())?;
        ProducerStats::add(&self.stats.user_records, 1);
        Ok(handle)
    }

    /// Sends what is buffered without waiting for `max_buffered_time`, and returns once
    /// every record put before the call was stored or given up on.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.intake.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Flushes and stops the producer; further puts fail.
    pub async fn close(&self) {
        self.flush().await;
        self.records.close();
        self.bytes.close();
        self.intake_room.close();
        if let Some(task) = self.task.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn load_shard_map(client: &Client, stream: &str) -> Result<ShardMap, ProducerError> {
    let shards =
        crate::aws::list_shards(client, stream)
            .await
            .map_err(|e| ProducerError::ShardMap {
                stream: stream.to_string(),
                permanent: e.permanent,
                message: e.to_string(),
            })?;
    ShardMap::from_shards(&shards).map_err(|e| ProducerError::ShardMap {
        stream: stream.to_string(),
        message: e.to_string(),
        permanent: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_names_the_stream_and_key_of_its_record() {
        let (tx, rx) = oneshot::channel();
        let handle = PutHandle {
            rx,
            stream: Arc::from("orders"),
            partition_key: "customer-7".into(),
        };
        // Whatever name the pipeline had at hand where it gave up (a shard id, say).
        tx.send(Err(PutFailure {
            stream: "shardId-000000000000".into(),
            partition_key: String::new(),
            attempts: 3,
            expired: true,
            reason: "record TTL expired".into(),
        }))
        .expect("the handle is alive");
        let f = handle.await.expect_err("given up");
        assert_eq!(f.stream, "orders");
        assert_eq!(f.partition_key, "customer-7");
        assert_eq!((f.attempts, f.expired), (3, true));
    }

    /// A producer whose pipeline never takes anything in: the intake and its room.
    fn stalled() -> (Producer, mpsc::UnboundedReceiver<Command>) {
        let (intake, rx) = mpsc::unbounded_channel();
        let p = Producer {
            stream: Arc::from("orders"),
            intake,
            records: Arc::new(Semaphore::new(1 << 20)),
            bytes: Arc::new(Semaphore::new(1 << 30)),
            intake_room: Arc::new(Semaphore::new(INTAKE_ROOM)),
            config: ProducerConfig::default(),
            stats: Arc::default(),
            task: tokio::sync::Mutex::new(None),
        };
        (p, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn put_waits_while_the_pipeline_has_not_taken_in_what_was_put() {
        let (p, _rx) = stalled();
        let record = || UserRecord::new("k", vec![1u8; 1024]);
        let mut handles = Vec::new();
        for _ in 0..INTAKE_ROOM {
            handles.push(p.put(record()).await.expect("room"));
        }
        let wait = Duration::from_secs(3600);
        let next = tokio::time::timeout(wait, p.put(record())).await;
        assert!(next.is_err(), "the intake is full: put waits");
        // The pipeline taking one in makes room for one.
        p.intake_room.add_permits(1);
        let next = tokio::time::timeout(wait, p.put(record())).await;
        assert!(next.expect("room again").is_ok());
        let next = tokio::time::timeout(wait, p.put(record())).await;
        assert!(next.is_err(), "and for one only");
        p.intake_room.close();
        let e = p.put(record()).await.err().map(|e| e.to_string());
        assert!(
            e.is_some_and(|e| e.contains("closed")),
            "a closed producer refuses"
        );
    }
}
