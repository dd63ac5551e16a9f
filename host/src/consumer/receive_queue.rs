//! The receive queue: records fetched from Kinesis that the sinks have not all acknowledged
//! yet — what a consumer holds in memory. Pulsar IO bounds it per shard in records
//! (`receiveQueueSize`); the KCL's prefetching publisher per shard in records and bytes
//! (`maxRecordsCount`, `maxByteSize`). Shardline bounds it per shard in records
//! (`source.receive_queue_size`) and in bytes (`source.receive_queue_bytes`), and for the
//! whole worker in bytes (`source.max_in_flight_bytes`), so that a worker's memory does not
//! grow with the number of shards it holds or with the size of their records.
//!
//! A record's size is its data plus its partition key plus [`RECORD_OVERHEAD`], the memory
//! the host spends on a record in flight besides those (its place in the batch, the event
//! the stages made of it, the message built for the sink, its acknowledgement): counted
//! from the moment it is handed to the sinks until its last delivery is acknowledged (or
//! its pass over the shard ends). Without the overhead, small records never reached the
//! byte bounds, and a worker's memory grew with its shard count after all.
//! Before a fetch a shard *reserves* bytes of the worker's queue — at most its own byte
//! room; its fair share of the worker's bound (the bound divided by the shards the worker
//! runs), so that shards starting together cannot all take the same room and an idle shard
//! waiting on a subscription cannot hold what busy ones need; and what [`MAX_FETCH_BYTES`]
//! of data comes to (a shard's read throughput per second, so that batches stay small) —
//! and asks for no more records than fit in the reservation at the average size of its
//! recent records (GetRecords and SubscribeToShard take a record count, not a byte count).
//! The records it gets are held out of the reservation; what is left of it is given back.
//! So a bound is passed only by how much a batch's records are larger than the shard's
//! average (and by the one record a fetch always asks for), never by a growing amount.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::metrics::Gauge;

/// The bytes every shard of the worker holds.
#[derive(Debug)]
pub struct WorkerQueue {
    limit: u64,
    /// Bytes held by records and reserved by fetches.
    used: AtomicU64,
    /// Shard consumers running, for the fair share.
    shards: AtomicUsize,
    /// Woken when `used` falls below `limit` again.
    below_limit: Notify,
    gauge: Option<Arc<Gauge>>,
}

impl WorkerQueue {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
            shards: AtomicUsize::new(0),
            below_limit: Notify::new(),
            gauge: None,
        }
    }

    /// Reports the bytes held by records (not the reservations of fetches under way) on
    /// `gauge` too.
    pub fn with_gauge(mut self, gauge: Arc<Gauge>) -> Self {
        self.gauge = Some(gauge);
        self
    }

    /// Bytes held and reserved by every shard.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Bytes that may still be fetched.
    pub fn room(&self) -> u64 {
        self.limit.saturating_sub(self.used())
    }

    /// Resolves after the next time the queue falls below its limit. Create it *before*
    /// reading [`room`](Self::room): a release between the two then still wakes it.
    pub fn below_limit(&self) -> Notified<'_> {
        self.below_limit.notified()
    }

    /// Counts a shard consumer in the fair share while the returned slot lives.
    pub fn join(self: &Arc<Self>) -> ShardSlot {
        self.shards.fetch_add(1, Ordering::SeqCst);
        ShardSlot {
            queue: self.clone(),
        }
    }

    /// What one fetch may reserve: the bound shared equally by the running shards.
    pub fn fair_share(&self) -> u64 {
        self.limit / self.shards.load(Ordering::SeqCst).max(1) as u64
    }

    /// Reserves up to `want` bytes for a fetch: what the queue has room for, at most
    /// `want`. `None` when it is full (wait on [`below_limit`](Self::below_limit)).
    pub fn reserve(self: &Arc<Self>, want: u64) -> Option<Reservation> {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            let take = want.min(self.limit.saturating_sub(used));
            if take == 0 {
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used + take,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    return Some(Reservation {
                        queue: self.clone(),
                        bytes: take,
                    });
                }
                Err(now) => used = now,
            }
        }
    }

    pub(crate) fn hold(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.used.fetch_add(bytes, Ordering::SeqCst);
        self.gauge_add(bytes);
    }

    /// A record's last delivery was acknowledged (or its pass ended): its bytes are free.
    pub(crate) fn release(&self, bytes: u64) {
        if let Some(g) = &self.gauge {
            g.add(-(bytes as i64));
        }
        self.free(bytes);
    }

    fn gauge_add(&self, bytes: u64) {
        if let Some(g) = &self.gauge {
            g.add(bytes as i64);
        }
    }

    /// Gives bytes back (held or reserved); the gauge counts only held ones.
    fn free(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let before = self.used.fetch_sub(bytes, Ordering::SeqCst);
        debug_assert!(before >= bytes, "released more than was held");
        // Only a shard that saw the queue full waits on it.
        if before >= self.limit && before - bytes < self.limit {
            self.below_limit.notify_waiters();
        }
    }
}

/// Most data (and partition keys) one fetch asks for. Kinesis serves at most 2 MiB/s of
/// reads per shard, so a larger batch buys no throughput against AWS, and it costs memory
/// several times over: the response body, the records decoded from it, and the component's
/// linear memory, which grows to hold the largest batch in and out and never shrinks.
pub const MAX_FETCH_BYTES: u64 = 2 << 20;

/// What a record in flight costs the host besides its data and partition key, as the
/// receive queue counts it. Measured on the pass-through (8 shards of 100-byte records
/// through the identity component to Pulsar): (peak − idle resident memory) ÷ records in
/// flight came to 1.3–1.4 KB (BENCHMARKS.md, "Memory"); 1 KiB is the part every record
/// pays whatever its stages and sinks.
pub const RECORD_OVERHEAD: u32 = 1024;

/// A shard consumer counted in the worker's fair share.
#[derive(Debug)]
pub struct ShardSlot {
    queue: Arc<WorkerQueue>,
}

impl Drop for ShardSlot {
    fn drop(&mut self) {
        self.queue.shards.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Bytes of the worker's queue set aside for one fetch; the fetched records are held out
/// of it ([`take`](Self::take)), and what is left is given back when it is dropped.
#[derive(Debug)]
pub struct Reservation {
    queue: Arc<WorkerQueue>,
    bytes: u64,
}

impl Reservation {
    /// Bytes still reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// A fetched record of `bytes` is now held: it comes out of the reservation, and out
    /// of the queue's room beyond it when the record is larger than what is left.
    pub fn take(&mut self, bytes: u64) {
        let from_reservation = bytes.min(self.bytes);
        self.bytes -= from_reservation;
        self.queue.gauge_add(from_reservation);
        self.queue.hold(bytes - from_reservation);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.queue.free(self.bytes);
    }
}

/// The largest record as the receive queue counts it: 1 MiB of data and key (Kinesis's
/// limit for the two together) and the overhead.
const LARGEST_RECORD: u64 = (1 << 20) + RECORD_OVERHEAD as u64;

/// The size of a record as the receive queue counts it: data, partition key, overhead.
pub fn record_bytes(partition_key: &str, data: &[u8]) -> u32 {
    u32::try_from(partition_key.len() + data.len())
        .unwrap_or(u32::MAX)
        .saturating_add(RECORD_OVERHEAD)
}

/// What a shard has learnt of its records' sizes: a moving average over recent batches.
#[derive(Debug, Clone, Default)]
pub struct RecordSize {
    average: Option<f64>,
}

impl RecordSize {
    /// Weight of the newest batch in the average.
    const WEIGHT: f64 = 0.5;

    /// A batch of `records` records of `bytes` bytes in all was fetched.
    pub fn observe(&mut self, records: usize, bytes: u64) {
        if records == 0 {
            return;
        }
        let batch = bytes as f64 / records as f64;
        self.average = Some(match self.average {
            Some(a) => a + (batch - a) * Self::WEIGHT,
            None => batch,
        });
    }

    /// The bytes a fetch may reserve for [`MAX_FETCH_BYTES`] of data at the average record
    /// size (the queue counts each record's overhead too). Before any batch, records of the
    /// largest size are assumed, as in [`Self::limit`].
    pub fn fetch_bytes(&self) -> u64 {
        let average = self.average.unwrap_or(LARGEST_RECORD as f64);
        let data = (average - f64::from(RECORD_OVERHEAD)).max(1.0);
        (MAX_FETCH_BYTES as f64 * (average / data)) as u64
    }

    /// How many records to ask for: at most `records_room`, and no more than fit in
    /// `bytes_room` at the average size (at least one, so a record larger than the room
    /// is still read once the room is not zero). Before any batch the size of the largest
    /// record Kinesis takes is assumed: the first fetch of a shard may cost one more round
    /// trip, but never fills the queue past its bound with records of unknown size.
    pub fn limit(&self, records_room: usize, bytes_room: u64) -> usize {
        let average = self.average.unwrap_or(LARGEST_RECORD as f64).max(1.0);
        let fit = (bytes_room as f64 / average).floor();
        if fit >= records_room as f64 {
            records_room
        } else {
            (fit as usize).clamp(1, records_room.max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_what_the_limit_leaves() {
        let q = WorkerQueue::new(1_000);
        assert_eq!(q.room(), 1_000);
        q.hold(600);
        q.hold(600);
        assert_eq!(
            (q.used(), q.room()),
            (1_200, 0),
            "a bound passed by a batch"
        );
        q.release(600);
        assert_eq!((q.used(), q.room()), (600, 400));
        q.release(600);
        assert_eq!(q.room(), 1_000);
    }

    #[tokio::test(start_paused = true)]
    async fn falling_below_the_limit_wakes_a_waiting_shard() {
        let q = Arc::new(WorkerQueue::new(100));
        q.hold(150);
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move {
                let below = q.below_limit();
                tokio::pin!(below);
                below.as_mut().enable();
                if q.room() == 0 {
                    below.await;
                }
                q.room()
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        q.release(20); // 130: still full
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "still at or above the limit");
        q.release(40); // 90
        assert_eq!(waiter.await.unwrap(), 10);
    }

    #[tokio::test]
    async fn a_release_between_creating_the_wait_and_reading_the_room_is_not_missed() {
        let q = WorkerQueue::new(100);
        q.hold(100);
        let below = q.below_limit();
        q.release(1); // before the room is read
        assert_eq!(q.room(), 1);
        // Had the room read 0, `below` must still resolve:
        tokio::time::timeout(std::time::Duration::from_secs(1), below)
            .await
            .expect("woken");
    }

    #[test]
    fn the_limit_follows_the_average_record_size() {
        let mut s = RecordSize::default();
        assert_eq!(
            s.limit(10_000, 8 << 20),
            7,
            "nothing known: records of 1 MiB (and their overhead)"
        );
        assert_eq!(
            s.limit(10_000, 1),
            1,
            "nothing known, little room: one record"
        );
        s.observe(100, 100 * 1024);
        assert_eq!(s.limit(10_000, 8 << 20), 8_192);
        assert_eq!(s.limit(500, 8 << 20), 500, "the record room binds");
        assert_eq!(s.limit(10_000, 100), 1, "at least one record");
        s.observe(10, 10 * 3 * 1024); // the average moves halfway to 3 KiB
        assert_eq!(s.limit(10_000, 2 * 1024 * 100), 100);
        s.observe(0, 0);
        assert_eq!(
            s.limit(10_000, 2 * 1024 * 100),
            100,
            "an empty batch says nothing"
        );
    }

    #[test]
    fn reservations_share_the_room_and_records_are_held_out_of_them() {
        let q = Arc::new(WorkerQueue::new(1_000));
        let slots: Vec<_> = (0..4).map(|_| q.join()).collect();
        assert_eq!(q.fair_share(), 250);
        // Four shards starting together: each gets its share, none more.
        let mut rs: Vec<_> = (0..4).map(|_| q.reserve(q.fair_share()).unwrap()).collect();
        assert!(
            q.reserve(1).is_none(),
            "full: the four reservations are the bound"
        );
        // A fetch that got less than it reserved gives the rest back...
        rs[0].take(100);
        drop(rs.remove(0));
        assert_eq!(q.used(), 850);
        // ...one that got more takes the excess from the queue's room.
        rs[0].take(300);
        assert_eq!(q.used(), 900, "250 reserved, 300 held");
        drop(rs);
        assert_eq!(q.used(), 400, "the two batches' records");
        q.release(400);
        assert_eq!(q.used(), 0);
        drop(slots);
        assert_eq!(q.fair_share(), 1_000);
        // A reservation takes what room there is.
        q.hold(900);
        assert_eq!(q.reserve(500).map(|r| r.bytes()), Some(100));
    }

    #[test]
    fn record_bytes_are_data_key_and_overhead() {
        assert_eq!(record_bytes("key", b"12345"), 8 + RECORD_OVERHEAD);
        let huge = vec![0u8; 1 << 20];
        assert_eq!(
            u64::from(record_bytes("k", &huge)),
            (1 << 20) + 1 + u64::from(RECORD_OVERHEAD)
        );
    }

    #[test]
    fn a_fetch_reserves_what_two_mib_of_data_come_to() {
        let mut s = RecordSize::default();
        let unknown = s.fetch_bytes();
        assert!(
            (MAX_FETCH_BYTES..MAX_FETCH_BYTES + 8 * 1024).contains(&unknown),
            "records of the largest size: the overhead adds next to nothing ({unknown})"
        );
        // 100-byte records with 10-byte keys: 2 MiB of data are 19,065 records, which
        // the queue counts at 1,134 bytes each.
        s.observe(
            1_000,
            1_000 * u64::from(record_bytes("0123456789", &[0; 100])),
        );
        let small = s.fetch_bytes();
        assert_eq!(s.limit(usize::MAX, small), (MAX_FETCH_BYTES / 110) as usize);
        // 10 KiB records: the overhead is a tenth.
        let mut s = RecordSize::default();
        s.observe(10, 10 * u64::from(record_bytes("", &[0; 10 * 1024])));
        assert_eq!(s.limit(usize::MAX, s.fetch_bytes()), 204);
    }
}
