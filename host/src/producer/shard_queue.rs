//! What the producer's pipeline queues for each shard: user records waiting for a Kinesis
//! record ([`Pending`], each with its caller's [`Member`]), the KPL aggregate being built
//! and the Kinesis records ready to send ([`ShardQueue`]), and what becomes of a record
//! given up on (its members fail, each reported to its handle).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::buffer_pool::BufferPool;
use super::limiter::ShardLimiter;
use super::retrier::AttemptError;
use super::shard_map::MappedShard;
use super::{Permits, ProducerConfig, ProducerStats, PutFailure, PutResult, UserRecord};
use crate::agg::{Aggregator, Encoded};

/// The caller's side of one user record.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) tx: Option<oneshot::Sender<PutResult>>,
    pub(super) deadline: Instant,
    pub(super) arrived: Instant,
    pub(super) _permits: Permits,
}

/// A user record not yet in a Kinesis record.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) partition_key: String,
    pub(super) explicit_hash_key: Option<String>,
    /// Its hash key once known: an explicit one at once, the MD5 of its partition key
    /// when [`hash_partition_keys`] has run (see [`Pending::hash`]).
    hash: Option<u128>,
    pub(super) data: Vec<u8>,
    pub(super) member: Member,
}

impl Pending {
    /// Its hash key: the one [`hash_partition_keys`] or the caller gave it, else the MD5 of
    /// its partition key, computed here.
    pub(super) fn hash(&self) -> u128 {
        self.hash
            .unwrap_or_else(|| crate::agg::partition_key_hash(&self.partition_key))
    }

    /// `hash`: the record's hash key if it has an explicit one; `None` has the pipeline
    /// compute the MD5 of its partition key ([`hash_partition_keys`]).
    pub(super) fn new(
        r: UserRecord,
        hash: Option<u128>,
        tx: oneshot::Sender<PutResult>,
        permits: Permits,
        ttl: Duration,
    ) -> Self {
        let now = Instant::now();
        Self {
            partition_key: r.partition_key,
            explicit_hash_key: r.explicit_hash_key,
            hash,
            data: r.data,
            member: Member {
                tx: Some(tx),
                deadline: now + ttl,
                arrived: now,
                _permits: permits,
            },
        }
    }
}

/// Writes the hash key of each record whose partition key is not hashed yet, the MD5s
/// computed together (several per SIMD instruction; one at a time they were a few % of the
/// producer's CPU with 100-byte records).
pub(super) fn hash_partition_keys(records: &mut [&mut Pending]) {
    let keys: Vec<&[u8]> = records
        .iter()
        .filter(|p| p.hash.is_none())
        .map(|p| p.partition_key.as_bytes())
        .collect();
    let mut digests = vec![[0u8; crate::agg::DIGEST_LEN]; keys.len()];
    crate::agg::md5_each(&keys, &mut digests);
    drop(keys);
    let pending = records.iter_mut().filter(|p| p.hash.is_none());
    for (p, digest) in pending.zip(digests) {
        p.hash = Some(u128::from_be_bytes(digest));
    }
}

/// One record of a PutRecords request: a user record, or an aggregate of several.
#[derive(Debug)]
pub(super) struct KinesisRecord {
    /// Its data: a user record's, or an aggregate where the aggregator wrote it.
    pub(super) data: RecordData,
    pub(super) partition_key: String,
    pub(super) explicit_hash_key: Option<String>,
    /// Its user records, in sub-sequence order.
    pub(super) members: Vec<Member>,
    pub(super) aggregated: bool,
    /// An aggregate whose last 16 bytes are not its MD5 yet: [`Pipeline::send`] writes the
    /// digests of a request's aggregates together (several per SIMD instruction), and
    /// anything that reads the data before that writes its own ([`KinesisRecord::digest`]).
    pub(super) digest_pending: bool,
    /// While a JSON request carries it: where its data sits in the request's body, and the
    /// data's length. `data` is empty then (the body is its one copy; see
    /// [`super::request`]), and [`KinesisRecord::restore`] brings it back.
    pub(super) in_body: Option<(std::ops::Range<usize>, usize)>,
    /// Predicted shard.
    pub(super) shard: Arc<str>,
    /// Oldest member's arrival: the collection deadline counts from it.
    pub(super) arrived: Instant,
    /// Earliest member deadline: the whole record expires then.
    pub(super) deadline: Instant,
    pub(super) attempts: u32,
    pub(super) not_before: Instant,
    pub(super) last_error: Option<AttemptError>,
}

impl KinesisRecord {
    /// A record not yet sent; its collection deadline and TTL come from its oldest member.
    pub(super) fn new(
        data: Encoded,
        partition_key: String,
        explicit_hash_key: Option<String>,
        members: Vec<Member>,
        aggregated: bool,
        shard: Arc<str>,
    ) -> Option<Self> {
        let arrived = members.iter().map(|m| m.arrived).min()?;
        let deadline = members.iter().map(|m| m.deadline).min()?;
        Some(Self {
            data: RecordData::Own(data),
            partition_key,
            explicit_hash_key,
            members,
            aggregated,
            digest_pending: false,
            in_body: None,
            shard,
            arrived,
            deadline,
            attempts: 0,
            not_before: arrived,
            last_error: None,
        })
    }

    pub(super) fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// Length of its data, also while a request's body holds it.
    pub(super) fn data_len(&self) -> usize {
        self.in_body
            .as_ref()
            .map_or(self.data.len(), |(_, len)| *len)
    }

    /// Hands its data over to a request body that now holds it at `range`; an aggregate's
    /// own buffer goes back to `aggregates` for another aggregate.
    pub(super) fn move_into_body(
        &mut self,
        range: std::ops::Range<usize>,
        aggregates: &BufferPool,
    ) {
        self.in_body = Some((range, self.data.len()));
        if let RecordData::Own(e) = std::mem::take(&mut self.data) {
            if self.aggregated {
                aggregates.give(e.into_parts().0);
            }
        }
    }

    /// Its data to send, without copying it ([`RecordData::share`]): an aggregate's buffer
    /// goes back to `aggregates` once the last share is dropped, a lone user record's is
    /// its own.
    pub(super) fn share(&mut self, aggregates: &BufferPool) -> Bytes {
        self.data.share(self.aggregated.then_some(aggregates))
    }

    /// Its data again, decoded from the body of the request that carried it.
    pub(super) fn restore(&mut self, body: &[u8]) {
        if let Some((range, _)) = self.in_body.take() {
            self.data = RecordData::Own(super::request::data(body, range).into());
        }
    }

    /// Writes the pending digest of this record alone.
    pub(super) fn digest(&mut self) {
        write_pending_digests(std::slice::from_mut(self));
    }
}

/// A Kinesis record's data: its own buffer until a CBOR request first carries it, then
/// shared with the requests that send it ([`super::cbor`]), which read it from there, and
/// back in the aggregates' pool once the last of them is done.
#[derive(Debug)]
pub(super) enum RecordData {
    Own(Encoded),
    Shared(Bytes),
}

impl Default for RecordData {
    fn default() -> Self {
        Self::Own(Encoded::default())
    }
}

impl RecordData {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Own(e) => e.as_slice(),
            Self::Shared(b) => b,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// The data to write a digest into: only its own buffer can be (a digest is written
    /// before the record is first sent, so shared data already has its digest).
    fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
        match self {
            Self::Own(e) => Some(e.as_mut_slice()),
            Self::Shared(_) => None,
        }
    }

    /// The data to send, without copying it: its buffer is shared from now on, and goes
    /// back to `pool` (if any) when the last share is dropped.
    fn share(&mut self, pool: Option<&BufferPool>) -> Bytes {
        let shared = match std::mem::take(self) {
            Self::Own(e) => match pool {
                Some(pool) => {
                    let (buf, start) = e.into_parts();
                    pool.bytes(buf).slice(start..)
                }
                None => Bytes::from_owner(e),
            },
            Self::Shared(b) => b,
        };
        *self = Self::Shared(shared.clone());
        shared
    }

    pub(super) fn into_vec(self) -> Vec<u8> {
        match self {
            Self::Own(e) => e.into_vec(),
            Self::Shared(b) => b.into(),
        }
    }
}

/// Writes the pending digests of `records` together.
pub(super) fn write_pending_digests(records: &mut [KinesisRecord]) {
    let mut pending: Vec<&mut [u8]> = records
        .iter_mut()
        .filter(|r| r.digest_pending)
        .filter_map(|r| {
            r.digest_pending = false;
            r.data.as_mut_slice()
        })
        .collect();
    crate::agg::write_digests(&mut pending);
}

/// What is queued for one shard.
#[derive(Debug)]
pub(super) struct ShardQueue {
    pub(super) shard: MappedShard,
    pub(super) agg: Aggregator,
    pub(super) agg_members: Vec<Member>,
    /// First record of the aggregate being built: its key and hash key.
    pub(super) agg_first: Option<(String, u128)>,
    /// Earliest arrival among `agg_members` (kept as members are added: the loop asks for
    /// it on every turn, and re-routed records may arrive out of order).
    pub(super) agg_oldest: Option<Instant>,
    pub(super) ready: VecDeque<KinesisRecord>,
    /// Bytes of the records in `ready`.
    pub(super) ready_bytes: usize,
    pub(super) limiter: ShardLimiter,
    /// When the limiter refused the head record, the time it said to come back.
    pub(super) limited_until: Option<Instant>,
    pub(super) in_flight: usize,
}

impl ShardQueue {
    pub(super) fn new(shard: MappedShard, rate_limit: u32, now: Instant) -> Self {
        Self {
            shard,
            agg: Aggregator::new(),
            agg_members: Vec::new(),
            agg_first: None,
            agg_oldest: None,
            ready: VecDeque::new(),
            ready_bytes: 0,
            limiter: ShardLimiter::new(rate_limit, now.into_std()),
            limited_until: None,
            in_flight: 0,
        }
    }

    pub(super) fn push_back(&mut self, r: KinesisRecord) {
        self.ready_bytes += r.size();
        self.ready.push_back(r);
    }

    pub(super) fn push_front(&mut self, r: KinesisRecord) {
        self.ready_bytes += r.size();
        self.ready.push_front(r);
    }

    pub(super) fn pop_front(&mut self) -> Option<KinesisRecord> {
        let r = self.ready.pop_front()?;
        self.ready_bytes -= r.size();
        Some(r)
    }

    pub(super) fn agg_arrived(&self) -> Option<Instant> {
        self.agg_oldest
    }

    pub(super) fn add_member(&mut self, m: Member) {
        self.agg_oldest = Some(self.agg_oldest.map_or(m.arrived, |o| o.min(m.arrived)));
        self.agg_members.push(m);
    }

    /// Moves the aggregate being built to the ready queue (a lone record un-aggregated); the
    /// next aggregate is written into a buffer from `pool`.
    pub(super) fn seal(&mut self, stats: &ProducerStats, pool: &BufferPool) {
        if self.agg.is_empty() {
            return;
        }
        // The next aggregate likely holds as many: room for them up front, rather than
        // growing (and moving) the list five times over as they come.
        let next = Vec::with_capacity(self.agg_members.len());
        let members = std::mem::replace(&mut self.agg_members, next);
        self.agg_oldest = None;
        let (first_key, first_hash) = self.agg_first.take().unwrap_or_default();
        let shard = self.shard.id.clone();
        let record = if members.len() == 1 {
            let data = self.agg.take();
            let user = crate::agg::decode(&data)
                .ok()
                .flatten()
                .and_then(|a| a.records().first().map(|u| u.to_owned_record()));
            let Some(user) = user else {
                // cannot happen: we just encoded it; fail loudly rather than drop
                for m in members {
                    let why = "internal error: aggregate unreadable";
                    fail(m, 0, false, why, stats);
                }
                return;
            };
            let (pk, ehk) = (user.partition_key, user.explicit_hash_key);
            KinesisRecord::new(user.data.into(), pk, ehk, members, false, shard)
        } else {
            let ehk = Some(first_hash.to_string());
            // (The pool adds a sixteenth of room to a buffer it makes.)
            let mut data = Encoded::from(pool.take(self.agg.buffer_len()));
            self.agg.take_encoded_into(&mut data);
            KinesisRecord::new(data, first_key, ehk, members, true, shard).map(|mut r| {
                r.digest_pending = true;
                r
            })
        };
        if let Some(r) = record {
            self.push_back(r);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.agg.is_empty() && self.ready.is_empty()
    }
}

/// A Kinesis record back as its user records.
pub(super) fn decompose(mut r: KinesisRecord) -> Vec<Pending> {
    r.digest();
    if !r.aggregated {
        let hash = crate::agg::hash_key(&r.partition_key, r.explicit_hash_key.as_deref())
            .unwrap_or_default();
        let mut members = r.members;
        let Some(member) = members.pop() else {
            return Vec::new();
        };
        return vec![Pending {
            partition_key: r.partition_key,
            explicit_hash_key: r.explicit_hash_key,
            hash: Some(hash),
            data: r.data.into_vec(),
            member,
        }];
    }
    let users: Vec<_> = match crate::agg::decode(r.data.as_slice()) {
        Ok(Some(a)) => a.records().iter().map(|u| u.to_owned_record()).collect(),
        _ => Vec::new(),
    };
    users
        .into_iter()
        .zip(r.members)
        .map(|(u, member)| Pending {
            hash: Some(
                crate::agg::hash_key(&u.partition_key, u.explicit_hash_key.as_deref())
                    .unwrap_or_default(),
            ),
            partition_key: u.partition_key,
            explicit_hash_key: u.explicit_hash_key,
            data: u.data,
            member,
        })
        .collect()
}

pub(super) fn expire(
    r: KinesisRecord,
    config: &ProducerConfig,
    stream: &str,
    stats: &ProducerStats,
) {
    let last = r.last_error.as_ref().map_or_else(
        || "never sent (rate limit or backoff)".to_string(),
        ToString::to_string,
    );
    let reason = format!(
        "record TTL of {:?} expired; last error: {last}",
        config.record_ttl
    );
    give_up(r, true, &reason, stream, stats);
}

pub(super) fn give_up(
    r: KinesisRecord,
    expired: bool,
    reason: &str,
    stream: &str,
    stats: &ProducerStats,
) {
    tracing::warn!(
        stream,
        shard = %r.shard,
        user_records = r.members.len(),
        attempts = r.attempts,
        "giving up on a Kinesis record: {reason}"
    );
    for m in r.members {
        if expired {
            stats
                .user_records_expired
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fail(m, r.attempts, expired, reason, stats);
    }
}

/// Reports a user record given up on to its handle, which names its stream and key.
pub(super) fn fail(
    mut m: Member,
    attempts: u32,
    expired: bool,
    reason: &str,
    stats: &ProducerStats,
) {
    stats
        .user_records_failed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(tx) = m.tx.take() {
        let _ = tx.send(Err(PutFailure {
            // the handle, which knows both, fills them in
            stream: String::new(),
            partition_key: String::new(),
            attempts,
            expired,
            reason: reason.to_string(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Semaphore;

    use super::super::Permits;
    use super::*;
    use crate::agg::{decode, AggError, DIGEST_LEN};

    fn member() -> Member {
        let permits = Arc::new(Semaphore::new(2));
        let take = || permits.clone().try_acquire_owned().expect("a free permit");
        let now = Instant::now();
        Member {
            tx: None,
            deadline: now + Duration::from_secs(60),
            arrived: now,
            _permits: Permits {
                _records: take(),
                _bytes: take(),
            },
        }
    }

    /// The partition keys hashed together are the MD5s each gets alone; a record given its
    /// hash key (an explicit one) keeps it.
    #[test]
    fn keys_hashed_together_get_their_own_md5() {
        let pending = |key: String, hash: Option<u128>| Pending {
            partition_key: key,
            explicit_hash_key: None,
            hash,
            data: Vec::new(),
            member: member(),
        };
        let mut records: Vec<Pending> = (0..40)
            .map(|i| pending("k".repeat(i * 7), (i % 5 == 0).then_some(i as u128)))
            .collect();
        let mut refs: Vec<&mut Pending> = records.iter_mut().collect();
        hash_partition_keys(&mut refs);
        for (i, p) in records.iter().enumerate() {
            let want = if i % 5 == 0 {
                i as u128
            } else {
                crate::agg::partition_key_hash(&p.partition_key)
            };
            assert_eq!(p.hash, Some(want), "record {i}");
            assert_eq!(p.hash(), want);
        }
    }

    /// Adds `records` (key, data) to the queue's aggregate, each with its member.
    fn fill(q: &mut ShardQueue, records: &[(&str, &[u8])]) {
        for (key, data) in records {
            q.agg.add(key, None, data).expect("valid");
            q.agg_first.get_or_insert(((*key).into(), 7));
            q.add_member(member());
        }
    }

    /// A shard queue holding an aggregate of `records` (key, data), sealed; and the
    /// aggregate as `Aggregator::encode` writes it.
    fn sealed(records: &[(&str, &[u8])]) -> (ShardQueue, Vec<u8>) {
        let shard = MappedShard {
            id: "shardId-000000000000".into(),
            start: 0,
            end: u128::MAX,
        };
        let mut q = ShardQueue::new(shard, 100, Instant::now());
        let mut expected = Aggregator::new();
        for (key, data) in records {
            expected.add(key, None, data).expect("valid");
        }
        fill(&mut q, records);
        q.seal(&ProducerStats::default(), &BufferPool::new(1));
        (q, expected.encode())
    }

    #[test]
    fn aggregates_get_their_digest_before_they_are_sent_or_read() {
        let records: &[(&str, &[u8])] = &[("a", b"one"), ("b", b"two"), ("a", b"three")];
        let (mut q, expected) = sealed(records);
        let mut batch = Vec::new();
        for _ in 0..3 {
            let (mut more, _) = sealed(records);
            batch.extend(more.pop_front());
        }
        let r = q.pop_front().expect("sealed");
        assert!(r.aggregated && r.digest_pending);
        let data = r.data.as_slice();
        assert_eq!(data.len(), expected.len());
        assert_eq!(data[data.len() - DIGEST_LEN..], [0; DIGEST_LEN]);
        assert_eq!(decode(data), Err(AggError::DigestMismatch));

        // What `send` does to a request: every pending digest written, together.
        batch.push(r);
        write_pending_digests(&mut batch);
        for r in &batch {
            assert!(!r.digest_pending);
            assert_eq!(r.data.as_slice(), expected);
        }

        // Read back (a queue drained on a shard map change) before being sent.
        let (mut q, _) = sealed(records);
        let r = q.pop_front().expect("sealed");
        assert!(r.digest_pending);
        let users = decompose(r);
        let got: Vec<_> = users
            .iter()
            .map(|p| (p.partition_key.as_str(), p.data.as_slice()))
            .collect();
        assert_eq!(got, records);
    }

    #[test]
    fn a_lone_record_is_sent_as_itself() {
        let (mut q, _) = sealed(&[("a", b"one")]);
        let r = q.pop_front().expect("sealed");
        assert!(!r.aggregated && !r.digest_pending);
        assert_eq!(r.data.as_slice(), b"one");
    }

    /// An aggregate's buffer, once the last request carrying it is done, is where a later
    /// aggregate is written: sealing takes the next aggregate's buffer from the pool, and
    /// sharing an aggregate hands its buffer back when the last share is dropped.
    #[test]
    fn a_sent_aggregates_buffer_is_written_into_again() {
        let records: &[(&str, &[u8])] = &[("a", b"one"), ("b", b"two")];
        let pool = BufferPool::new(4);
        let (mut q, expected) = sealed(records);
        let mut first = q.pop_front().expect("sealed");
        first.digest();
        let shared = first.share(&pool);
        assert_eq!(&shared[..], expected, "shared as it is");
        let buffer = shared.as_ptr();
        drop(first);
        assert_eq!(pool.kept(), 0, "the request still holds it");
        drop(shared);
        assert_eq!(pool.kept(), 1, "back once the request is done");

        // Sealing writes the next aggregate into the pool's buffer.
        fill(&mut q, records);
        q.seal(&ProducerStats::default(), &pool);
        assert_eq!(pool.kept(), 0, "taken for the aggregate after this one");
        fill(&mut q, records);
        q.seal(&ProducerStats::default(), &pool);
        let third = q.ready.back().expect("sealed").data.as_slice();
        assert_eq!(third.as_ptr(), buffer, "written in the buffer given back");
        assert_eq!(third.len(), expected.len());
    }

    /// The buffer made for the next aggregate has a sixteenth of room over this one's
    /// length (the pool's), not more: a 50 KB aggregate in a 64 KiB allocation held 25 %
    /// more memory than its records.
    #[test]
    fn the_next_aggregates_buffer_is_sized_like_this_one() {
        let data = vec![7u8; 1024];
        let records: Vec<(&str, &[u8])> = (0..40).map(|_| ("k", &data[..])).collect();
        let pool = BufferPool::new(4);
        let (mut q, expected) = sealed(&records);
        // The next aggregate, in the buffer sealing made for it.
        fill(&mut q, &records);
        q.seal(&ProducerStats::default(), &pool);
        let mut second = q.ready.pop_back().expect("sealed");
        second.digest();
        drop(second.share(&pool));
        drop(second);
        let capacity = pool.take(0).capacity();
        let len = expected.len();
        assert!(
            capacity >= len && capacity <= len + len / 16 + 1024,
            "{capacity} bytes for an aggregate of {len}"
        );
    }
}
