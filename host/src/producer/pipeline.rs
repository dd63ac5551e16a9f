//! The producer's pipeline task: one task owns every queue (no locks), and reacts to new
//! records, finished requests, a reloaded shard map, and the clock. See the
//! [module docs](super) for the steps a record goes through; what is queued per shard is
//! in [`super::shard_queue`].
//!
//! A little over 600 lines: the task's methods (intake, collect, send, complete, retry,
//! tick) all work on the one state they own, and read best together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::operation::put_records::PutRecordsOutput;
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::buffer_pool::BufferPool;
use super::request::Payload;
use super::retrier::{AttemptError, Backoff};
use super::shard_map::ShardMap;
use super::shard_queue::{
    decompose, expire, fail, give_up, hash_partition_keys, write_pending_digests, KinesisRecord,
    Pending, ShardQueue,
};
use super::{Command, ProducerConfig, ProducerStats, Receipt};

/// How many queued commands are taken at once before the queues are looked at again.
const INTAKE_BATCH: usize = 4096;
/// Wait before loading the shard map again after a failed load.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

/// Result of one PutRecords request.
struct Completion {
    batch: Vec<KinesisRecord>,
    /// A JSON request's body: the one copy of its records' data ([`super::request`]);
    /// empty for a CBOR request, whose records kept theirs.
    body: Bytes,
    result: Result<PutRecordsOutput, AttemptError>,
}

pub(super) struct Pipeline {
    client: Client,
    stream: Arc<str>,
    config: ProducerConfig,
    stats: Arc<ProducerStats>,
    metrics: Arc<crate::producer::metrics::ProducerMetrics>,
    map: ShardMap,
    shards: HashMap<Arc<str>, ShardQueue>,
    /// Shard ids in hash order, for round-robin collection.
    order: Vec<Arc<str>>,
    next_shard: usize,
    /// Records waiting for a shard map that covers them.
    unrouted: Vec<Pending>,
    map_stale: bool,
    refreshing: bool,
    refresh_not_before: Instant,
    in_flight: usize,
    done_tx: mpsc::UnboundedSender<Completion>,
    done_rx: mpsc::UnboundedReceiver<Completion>,
    refresh_tx: mpsc::UnboundedSender<Result<ShardMap, String>>,
    refresh_rx: mpsc::UnboundedReceiver<Result<ShardMap, String>>,
    backoff: Backoff,
    rng: StdRng,
    flushing: bool,
    flush_waiters: Vec<oneshot::Sender<()>>,
    intake_closed: bool,
    /// Commands taken in at once (kept for its allocation).
    intake_batch: Vec<Command>,
    /// Buffers of JSON request bodies.
    bodies: BufferPool,
    /// Buffers of aggregates.
    aggregates: BufferPool,
}

impl Pipeline {
    pub(super) fn new(
        client: Client,
        stream: Arc<str>,
        config: ProducerConfig,
        stats: Arc<ProducerStats>,
        map: ShardMap,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (refresh_tx, refresh_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let backoff = Backoff {
            base: config.retry_backoff,
            max: config.max_retry_backoff,
        };
        let bodies = BufferPool::new(config.max_connections.max(1));
        // Enough for the aggregates of two full requests: a request gives all of its back
        // at once, and the aggregators take them one at a time.
        let per_request = (config.max_request_bytes / config.aggregation_max_size.max(1))
            .clamp(1, config.max_request_records.max(1));
        let aggregates = BufferPool::new(2 * per_request);
        let mut p = Self {
            metrics: Arc::new(crate::producer::metrics::ProducerMetrics::new(
                &stream, &stats,
            )),
            client,
            stream,
            config,
            stats,
            map: ShardMap::default(),
            shards: HashMap::new(),
            order: Vec::new(),
            next_shard: 0,
            unrouted: Vec::new(),
            map_stale: false,
            refreshing: false,
            refresh_not_before: now,
            in_flight: 0,
            done_tx,
            done_rx,
            refresh_tx,
            refresh_rx,
            backoff,
            rng: StdRng::from_os_rng(),
            flushing: false,
            flush_waiters: Vec::new(),
            intake_closed: false,
            intake_batch: Vec::new(),
            bodies,
            aggregates,
        };
        p.apply_map(map, now);
        p
    }

    /// Runs until the intake closes and everything is done; gives `intake_room` a permit back
    /// for each record it takes in.
    pub(super) async fn run(
        mut self,
        mut intake: mpsc::UnboundedReceiver<Command>,
        intake_room: Arc<tokio::sync::Semaphore>,
    ) {
        loop {
            let now = Instant::now();
            self.tick(now);
            self.dispatch(now);
            if self.idle() {
                self.bodies.clear();
                self.aggregates.clear();
                if self.flushing {
                    for w in self.flush_waiters.drain(..) {
                        let _ = w.send(());
                    }
                    self.flushing = self.intake_closed;
                }
                if self.intake_closed {
                    return;
                }
            }
            let wake = self.next_wake(now);
            tokio::select! {
                biased;
                Some(c) = self.done_rx.recv() => self.complete(c),
                Some(r) = self.refresh_rx.recv() => self.refreshed(r),
                cmd = intake.recv(), if !self.intake_closed => {
                    match cmd {
                        None => { self.intake_closed = true; self.flushing = true; }
                        Some(c) => {
                            let mut batch = std::mem::take(&mut self.intake_batch);
                            batch.push(c);
                            while batch.len() <= INTAKE_BATCH {
                                match intake.try_recv() {
                                    Ok(c) => batch.push(c),
                                    Err(_) => break,
                                }
                            }
                            let mut puts: Vec<&mut Pending> = batch
                                .iter_mut()
                                .filter_map(|c| match c {
                                    Command::Put(p) => Some(&mut **p),
                                    Command::Flush(_) => None,
                                })
                                .collect();
                            hash_partition_keys(&mut puts);
                            intake_room.add_permits(puts.len());
                            drop(puts);
                            for c in batch.drain(..) {
                                self.command(c);
                            }
                            self.intake_batch = batch;
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Put(p) => self.route(*p),
            Command::Flush(tx) => {
                self.flushing = true;
                self.flush_waiters.push(tx);
            }
        }
    }

    fn idle(&self) -> bool {
        self.in_flight == 0
            && self.unrouted.is_empty()
            && self.shards.values().all(|q| q.is_empty())
    }

    /// Adds a user record to the aggregate (or queue) of its predicted shard.
    fn route(&mut self, p: Pending) {
        let Some(shard) = self.map.lookup(p.hash()) else {
            self.unrouted.push(p);
            self.map_stale = true;
            return;
        };
        let Some(q) = self.shards.get_mut(&shard.id) else {
            self.unrouted.push(p);
            self.map_stale = true;
            return;
        };
        // an aggregate travels as one Kinesis record: with its partition key, at most 1 MiB
        let max = self
            .config
            .aggregation_max_size
            .min(crate::kinesis_limits::MAX_AGGREGATE_BYTES);
        let ehk = p.explicit_hash_key.as_deref();
        let mut added = Ok(None);
        if self.config.aggregation {
            added = q.agg.add_within(&p.partition_key, ehk, &p.data, max);
            if matches!(added, Ok(None)) && !q.agg.is_empty() {
                // full: the record starts the next aggregate
                q.seal(&self.stats, &self.aggregates);
                added = q.agg.add_within(&p.partition_key, ehk, &p.data, max);
            }
        }
        match added {
            Ok(Some(_)) => {}
            Ok(None) => {
                // alone: too large to aggregate, or aggregation is off
                let (pk, ehk, shard) = (p.partition_key, p.explicit_hash_key, q.shard.id.clone());
                let data = p.data.into();
                if let Some(r) = KinesisRecord::new(data, pk, ehk, vec![p.member], false, shard) {
                    q.push_back(r);
                }
                return;
            }
            Err(_) => {
                // validated in `put`; cannot happen
                fail(p.member, 0, false, "invalid explicit hash key", &self.stats);
                return;
            }
        }
        if q.agg_first.is_none() {
            let hash = p.hash();
            q.agg_first = Some((p.partition_key, hash));
        }
        q.add_member(p.member);
    }

    /// Seals aggregates whose time is up, expires unrouted records, reloads a stale map.
    fn tick(&mut self, now: Instant) {
        let max_wait = self.config.max_buffered_time;
        for q in self.shards.values_mut() {
            if let Some(a) = q.agg_arrived() {
                if self.flushing || a + max_wait <= now {
                    q.seal(&self.stats, &self.aggregates);
                }
            }
        }
        if !self.unrouted.is_empty() {
            let (expired, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unrouted)
                .into_iter()
                .partition(|p| p.member.deadline <= now);
            self.unrouted = keep;
            for p in expired {
                self.stats
                    .user_records_expired
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let reason = format!(
                    "record TTL of {:?} expired: no open shard of the stream covers its hash key {} (the shard map could not be brought up to date)",
                    self.config.record_ttl, p.hash()
                );
                fail(p.member, 0, true, &reason, &self.stats);
            }
        }
        if self.map_stale && !self.refreshing && now >= self.refresh_not_before {
            self.refreshing = true;
            self.map_stale = false;
            let client = self.client.clone();
            let stream = self.stream.clone();
            let tx = self.refresh_tx.clone();
            tokio::spawn(async move {
                let r = super::load_shard_map(&client, &stream)
                    .await
                    .map_err(|e| e.to_string());
                let _ = tx.send(r);
            });
        }
    }

    fn refreshed(&mut self, r: Result<ShardMap, String>) {
        self.refreshing = false;
        let now = Instant::now();
        self.stats
            .shard_map_refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match r {
            Ok(map) => {
                tracing::info!(stream = %self.stream, shards = map.len(), "shard map reloaded");
                self.apply_map(map, now);
            }
            Err(e) => {
                tracing::warn!(stream = %self.stream, "reloading the shard map failed: {e}");
                self.map_stale = true;
                self.refresh_not_before = now + REFRESH_RETRY;
            }
        }
    }

    /// Switches to a new map: queues of shards that closed give their records back to be
    /// routed again; waiting records are routed.
    fn apply_map(&mut self, map: ShardMap, now: Instant) {
        let mut reroute = std::mem::take(&mut self.unrouted);
        let mut old = std::mem::take(&mut self.shards);
        for s in map.shards() {
            let q = match old.remove(&s.id) {
                Some(mut q) if q.shard == *s => {
                    q.shard = s.clone();
                    q
                }
                Some(mut q) => {
                    // same id, other range (cannot happen on Kinesis): re-route its records
                    reroute.extend(self.drain_queue(&mut q));
                    ShardQueue::new(s.clone(), self.config.rate_limit, now)
                }
                None => ShardQueue::new(s.clone(), self.config.rate_limit, now),
            };
            self.shards.insert(s.id.clone(), q);
        }
        for (_, mut q) in old {
            reroute.extend(self.drain_queue(&mut q));
        }
        self.order = map.shards().iter().map(|s| s.id.clone()).collect();
        self.next_shard = 0;
        self.map = map;
        // oldest first, so records keep their order as far as they can
        reroute.sort_by_key(|p| p.member.arrived);
        for p in reroute {
            self.route(p);
        }
    }

    /// Everything queued for a shard, as user records (in-flight records stay counted).
    fn drain_queue(&self, q: &mut ShardQueue) -> Vec<Pending> {
        q.seal(&self.stats, &self.aggregates);
        q.ready_bytes = 0;
        q.ready.drain(..).flat_map(decompose).collect()
    }

    /// Sends requests while connections are free and something is due.
    fn dispatch(&mut self, now: Instant) {
        while self.in_flight < self.config.max_connections.max(1) {
            if !self.send_due(now) {
                return;
            }
            let batch = self.collect(now);
            if batch.is_empty() {
                return;
            }
            self.send(batch);
        }
    }

    /// Whether a request should go out now: one is full, or a record's time is up.
    fn send_due(&self, now: Instant) -> bool {
        let (mut n, mut bytes) = (0usize, 0usize);
        let max_wait = self.config.max_buffered_time;
        for q in self.shards.values() {
            if self.blocked_by_order(q) {
                continue;
            }
            let Some(head) = q.ready.front() else {
                continue;
            };
            if head.not_before <= now
                && (self.flushing || head.attempts > 0 || head.arrived + max_wait <= now)
            {
                return true;
            }
            n += q.ready.len();
            bytes += q.ready_bytes;
        }
        n >= self.config.max_request_records || bytes >= self.config.max_request_bytes
    }

    /// With strict ordering, a shard with a record in flight sends nothing else.
    fn blocked_by_order(&self, q: &ShardQueue) -> bool {
        self.config.strict_ordering && q.in_flight > 0
    }

    /// Takes records for one request, shard by shard in turn, within the request limits,
    /// the shards' rate limits and backoffs, and (if asked) one in flight per shard.
    fn collect(&mut self, now: Instant) -> Vec<KinesisRecord> {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let n = self.order.len();
        if n == 0 {
            return batch;
        }
        let max_records = self
            .config
            .max_request_records
            .clamp(1, crate::kinesis_limits::MAX_REQUEST_RECORDS);
        let max_bytes = self
            .config
            .max_request_bytes
            .clamp(1, crate::kinesis_limits::MAX_REQUEST_BYTES);
        let start = self.next_shard % n;
        self.next_shard = (start + 1) % n;
        'shards: for k in 0..n {
            let id = &self.order[(start + k) % n];
            let Some(q) = self.shards.get_mut(id) else {
                continue;
            };
            loop {
                if self.config.strict_ordering && q.in_flight > 0 {
                    break;
                }
                let Some(head) = q.ready.front() else { break };
                if head.deadline <= now {
                    if let Some(r) = q.pop_front() {
                        expire(r, &self.config, &self.stream, &self.stats);
                    }
                    continue;
                }
                if head.not_before > now {
                    break;
                }
                let size = head.size();
                if batch.len() >= max_records {
                    break 'shards;
                }
                if bytes + size > max_bytes {
                    if batch.is_empty() {
                        // cannot happen: records are at most 1 MiB
                    } else {
                        break;
                    }
                }
                if let Err(wait) = q.limiter.try_take(size, now.into_std()) {
                    q.limited_until = Some(now + wait);
                    break;
                }
                q.limited_until = None;
                let Some(r) = q.pop_front() else { break };
                bytes += size;
                q.in_flight += 1;
                batch.push(r);
                if self.config.strict_ordering {
                    break;
                }
            }
        }
        batch
    }

    fn send(&mut self, mut batch: Vec<KinesisRecord>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.in_flight += 1;
        self.stats.requests.fetch_add(1, Relaxed);
        self.stats
            .kinesis_records
            .fetch_add(batch.len() as u64, Relaxed);
        let now = Instant::now();
        for r in &mut batch {
            if r.attempts == 0 {
                self.metrics
                    .buffering_time
                    .observe((now - r.arrived).as_millis() as u64);
            }
            if r.attempts > 0 {
                self.stats.retries.fetch_add(1, Relaxed);
            } else if r.aggregated {
                self.stats.aggregates.fetch_add(1, Relaxed);
            }
            r.attempts += 1;
        }
        let client = self.client.clone();
        let stream = self.stream.clone();
        let timeout = self.config.request_timeout;
        let tx = self.done_tx.clone();
        let metrics = self.metrics.clone();
        let bodies = self.bodies.clone();
        let aggregates = self.aggregates.clone();
        let cbor = self.config.cbor;
        tokio::spawn(async move {
            // Digests and body here, off the pipeline's task: the runtime's other workers
            // take a share.
            write_pending_digests(&mut batch);
            let (payload, body) = if cbor {
                (
                    write_cbor_body(&stream, &mut batch, &aggregates),
                    Bytes::new(),
                )
            } else {
                let (body, sha256_hex) = write_body(&stream, &mut batch, &bodies, &aggregates);
                (Payload::json(body.clone(), sha256_hex), body)
            };
            let sent = std::time::Instant::now();
            let put = super::request::put_records(&client, &stream, &payload);
            let result = tokio::time::timeout(timeout, put).await;
            metrics.request_time.observe_since(sent);
            // The request's shares of the aggregates go back before the pipeline hears of
            // it: an idle pipeline empties the pools, and a share dropped after that would
            // bring its buffer back into a pool nobody empties until the next burst.
            drop(payload);
            let result = match result {
                Ok(Ok(out)) => Ok(out),
                Ok(Err(e)) => Err(AttemptError::Request {
                    code: e
                        .as_service_error()
                        .and_then(aws_sdk_kinesis::error::ProvideErrorMetadata::code)
                        .map(str::to_string),
                    message: crate::aws::describe(&e),
                }),
                Err(_) => Err(AttemptError::Request {
                    code: None,
                    message: format!("no answer within {timeout:?}"),
                }),
            };
            let _ = tx.send(Completion {
                batch,
                body,
                result,
            });
        });
    }

    fn complete(&mut self, c: Completion) {
        self.in_flight -= 1;
        let now = Instant::now();
        for r in &c.batch {
            if let Some(q) = self.shards.get_mut(&r.shard) {
                q.in_flight = q.in_flight.saturating_sub(1);
            }
        }
        let mut batch = c.batch;
        let out = match c.result {
            Ok(out) if out.records.len() == batch.len() => out,
            Ok(out) => {
                let e = AttemptError::Request {
                    code: None,
                    message: format!(
                        "the answer had {} results for {} records",
                        out.records.len(),
                        batch.len()
                    ),
                };
                batch.iter_mut().for_each(|r| r.restore(&c.body));
                self.retry_all(batch, &e, now);
                return;
            }
            Err(e) => {
                batch.iter_mut().for_each(|r| r.restore(&c.body));
                self.retry_all(batch, &e, now);
                return;
            }
        };
        let mut failed = Vec::new();
        for (mut r, entry) in batch.into_iter().zip(out.records) {
            if entry.error_code.is_some() || entry.sequence_number.is_none() {
                r.restore(&c.body);
            }
            match (entry.error_code, entry.shard_id, entry.sequence_number) {
                (Some(code), _, _) => failed.push((
                    r,
                    AttemptError::Record {
                        code,
                        message: entry.error_message.unwrap_or_default(),
                    },
                )),
                (None, Some(shard), Some(seq)) => self.stored(r, shard, seq, &c.body),
                (None, _, _) => failed.push((
                    r,
                    AttemptError::Record {
                        code: "InvalidResponse".into(),
                        message: "a result had neither an error nor a shard and sequence number"
                            .into(),
                    },
                )),
            }
        }
        // back to the front of their queues, in their original order
        for (r, e) in failed.into_iter().rev() {
            self.retry(r, e, now);
        }
    }

    fn stored(&mut self, mut r: KinesisRecord, shard: String, seq: String, body: &[u8]) {
        use std::sync::atomic::Ordering::Relaxed;
        if *r.shard != *shard {
            self.stats.wrong_shard.fetch_add(1, Relaxed);
            self.map_stale = true;
            if r.aggregated {
                r.restore(body);
                tracing::debug!(
                    stream = %self.stream, predicted = %r.shard, actual = %shard,
                    "aggregate stored in another shard than predicted: putting its records again"
                );
                self.unrouted.extend(decompose(r));
                return;
            }
        }
        self.stats
            .bytes_stored
            .fetch_add(r.data_len() as u64, Relaxed);
        self.metrics.stored(r.attempts);
        let aggregated = r.aggregated;
        let attempts = r.attempts;
        let (shard, seq): (Arc<str>, Arc<str>) = (shard.into(), seq.into());
        // The records' room in the producer, given back once for all of them.
        let mut room: Option<super::Permits> = None;
        for (i, m) in r.members.into_iter().enumerate() {
            let super::shard_queue::Member {
                tx,
                _permits: permits,
                ..
            } = m;
            match &mut room {
                Some(room) => room.merge(permits),
                None => room = Some(permits),
            }
            self.stats.user_records_ok.fetch_add(1, Relaxed);
            if let Some(tx) = tx {
                let _ = tx.send(Ok(Receipt {
                    shard_id: shard.clone(),
                    sequence_number: seq.clone(),
                    sub_sequence_number: aggregated.then_some(i as u64),
                    attempts,
                }));
            }
        }
    }

    fn retry_all(&mut self, batch: Vec<KinesisRecord>, e: &AttemptError, now: Instant) {
        for r in batch.into_iter().rev() {
            self.retry(r, e.clone(), now);
        }
    }

    /// Schedules another attempt, or gives up on the record.
    fn retry(&mut self, mut r: KinesisRecord, e: AttemptError, now: Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.error(e.code());
        if e.is_throttling() {
            self.stats.throttled.fetch_add(1, Relaxed);
        }
        if e.is_permanent() {
            let reason = e.to_string();
            give_up(r, false, &reason, &self.stream, &self.stats);
            return;
        }
        let delay = self.backoff.delay(r.attempts, &mut self.rng);
        tracing::debug!(
            stream = %self.stream, shard = %r.shard, attempts = r.attempts,
            retry_in = ?delay, "put again: {e}"
        );
        r.last_error = Some(e);
        if now + delay >= r.deadline {
            expire(r, &self.config, &self.stream, &self.stats);
            return;
        }
        r.not_before = now + delay;
        match self.shards.get_mut(&r.shard) {
            Some(q) => q.push_front(r),
            None => {
                // its shard closed meanwhile
                self.unrouted.extend(decompose(r));
                self.map_stale = true;
            }
        }
    }

    /// When the loop must look again even if nothing happens. Queues that cannot send
    /// now whatever the time — every connection busy, or (strict ordering) a record of the
    /// shard in flight — wait for a completion, which wakes the loop by itself.
    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(1);
        let max_wait = self.config.max_buffered_time;
        let connection_free = self.in_flight < self.config.max_connections.max(1);
        for q in self.shards.values() {
            if let Some(a) = q.agg_arrived() {
                wake = wake.min(a + max_wait);
            }
            if !connection_free || self.blocked_by_order(q) {
                continue;
            }
            if let Some(h) = q.ready.front() {
                let mut t = h.not_before.max(h.arrived + max_wait).min(h.deadline);
                if h.attempts > 0 || self.flushing {
                    t = h.not_before.min(h.deadline);
                }
                if let Some(l) = q.limited_until {
                    t = t.max(l);
                }
                wake = wake.min(t);
            }
        }
        if let Some(d) = self.unrouted.iter().map(|p| p.member.deadline).min() {
            wake = wake.min(d);
        }
        if self.map_stale && !self.refreshing {
            wake = wake.min(self.refresh_not_before);
        }
        wake.max(now + Duration::from_micros(100))
    }
}

/// The request's CBOR body: the records' data is shared with it, not copied.
fn write_cbor_body(stream: &str, batch: &mut [KinesisRecord], aggregates: &BufferPool) -> Payload {
    let data: Vec<Bytes> = batch.iter_mut().map(|r| r.share(aggregates)).collect();
    let entries = batch.iter().zip(data).map(|(r, data)| super::cbor::Entry {
        data,
        partition_key: &r.partition_key,
        explicit_hash_key: r.explicit_hash_key.as_deref(),
    });
    super::cbor::write(stream, entries)
}

/// Writes the request's JSON body; the records' data moves into it. Also gives the body's
/// SHA-256 (hex), for the signer.
fn write_body(
    stream: &str,
    batch: &mut [KinesisRecord],
    bodies: &BufferPool,
    aggregates: &BufferPool,
) -> (Bytes, String) {
    let entries = batch.iter().map(|r| super::request::Entry {
        data: r.data.as_slice(),
        partition_key: &r.partition_key,
        explicit_hash_key: r.explicit_hash_key.as_deref(),
    });
    let body = super::request::write(stream, entries, bodies);
    for (r, range) in batch.iter_mut().zip(body.ranges) {
        r.move_into_body(range, aggregates);
    }
    (bodies.bytes(body.bytes), body.sha256_hex)
}
