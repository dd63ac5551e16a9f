//! Output sequence: the number every event of a shard gets, so that a deduplicating sink
//! (Pulsar with `deduplication: true`) sends the same event under the same sequence id
//! however often the shard is replayed from a checkpoint.
//!
//! Events are numbered 1, 2, 3, … in shard order, across owners and restarts: the number
//! reached at a checkpoint is stored with it in the lease item. A replay from that
//! checkpoint numbers the same events the same way, provided the components are
//! deterministic (no clock, random or changed settings granted). A message's sequence id
//! is `base + number`; the broker keeps the last id per producer name and drops what is
//! not above it.
//!
//! The lease item also keeps what protects a new lineage from a broker that remembers an
//! older one (a lease table deleted and made again, a topic written under the same producer
//! name by an earlier run): the topics this shard's messages went to, and how far its
//! numbers were reserved. A producer that finds the broker ahead of anything this lineage
//! can have sent raises `base` above the broker's last id instead of having its new
//! messages dropped as duplicates: a silent loss becomes, at worst, a duplicate.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

/// How many numbers past the assigned ones a checkpoint reserves: a producer finding the
/// broker beyond `base + reserved` knows the ids were not this lineage's.
pub const RESERVE: u64 = 1 << 20;

/// What the lease item keeps of a shard's output sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Events numbered up to and including the checkpointed record.
    pub checkpointed: u64,
    /// Numbers reserved: no owner numbered an event above this.
    pub reserved: u64,
    /// Added to an event's number to make its sequence id.
    pub base: u64,
    /// Topics this shard's messages were sent to with deduplication.
    pub topics: BTreeSet<String>,
}

/// Where a shard's output sequence is stored (its lease item): a reservation is written
/// before a message is sent under numbers or to a topic the item does not cover yet, so a
/// later owner knows the broker's ids there are this lineage's.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Stores `reserved`, `base` and `topics` with the lease's current checkpoint.
    fn reserve(
        &self,
        reserved: u64,
        base: u64,
        topics: BTreeSet<String>,
    ) -> BoxFuture<'_, Result<(), String>>;
}

/// The output sequence of one shard while a worker holds it, shared by its consumer (which
/// numbers events and stores the state with each checkpoint) and its sinks (which turn
/// numbers into sequence ids and detect a broker ahead of this lineage).
#[derive(Debug)]
pub struct ShardSequence {
    /// The lease key (`shardId-…` or `stream:shardId-…`).
    pub lease_key: String,
    /// The producer name of this shard's messages, the same on every owner.
    pub producer_name: String,
    base: AtomicU64,
    /// Stored: numbers reserved, and the topics sent to.
    reserved: AtomicU64,
    topics: Mutex<BTreeSet<String>>,
    store: Option<Arc<dyn Store>>,
    /// Held while the stored state is written (a reservation or a checkpoint), so one
    /// write never undoes another.
    writing: tokio::sync::Mutex<()>,
}

impl ShardSequence {
    /// The sequence of shard `lease_key` of `stream` in `application`, from its lease;
    /// reservations are written to `store`.
    pub fn new(
        application: &str,
        stream: &str,
        lease_key: &str,
        stored: &Outputs,
        store: Option<Arc<dyn Store>>,
    ) -> Self {
        let shard = lease_key.rsplit(':').next().unwrap_or(lease_key);
        Self {
            lease_key: lease_key.to_string(),
            producer_name: format!("shardline-{application}-{stream}-{shard}"),
            base: AtomicU64::new(stored.base),
            reserved: AtomicU64::new(stored.reserved),
            topics: Mutex::new(stored.topics.clone()),
            store,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before events up to number `last` are sent to `topic`: stores a reservation unless
    /// the stored one covers them and the topic, so whatever the broker then holds under
    /// this name is known to be this lineage's. `Err` says why it could not be stored
    /// (nothing may be sent then).
    pub async fn reserve(&self, topic: &str, last: u64) -> Result<(), String> {
        let covered =
            |s: &Self| last <= s.reserved.load(Ordering::Acquire) && s.topics().contains(topic);
        if covered(self) {
            return Ok(());
        }
        let _writing = self.writing.lock().await;
        if covered(self) {
            return Ok(());
        }
        let reserved = self.reserved.load(Ordering::Acquire).max(last + RESERVE);
        let mut topics = self.topics().clone();
        topics.insert(topic.to_string());
        if let Some(store) = &self.store {
            store
                .reserve(reserved, self.base.load(Ordering::Acquire), topics.clone())
                .await?;
        }
        self.reserved.fetch_max(reserved, Ordering::AcqRel);
        *self.topics() = topics;
        Ok(())
    }

    /// Holds off reservations while a checkpoint stores [`Self::to_store`].
    pub async fn writing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writing.lock().await
    }

    /// The sequence id of event number `number`.
    pub fn id(&self, number: u64) -> u64 {
        self.base.load(Ordering::Acquire) + number
    }

    /// A producer for `topic` was created and the broker's last persisted id for this
    /// shard's producer name is `broker_last` (-1: none). `first` is the number of the
    /// first event about to be sent there. When the broker is ahead of what this lineage
    /// can have sent (the topic is new to it, or the id is past the reservation), `base`
    /// is raised so that event gets `broker_last + 1`; returns the new base then.
    pub fn producer_created(&self, topic: &str, broker_last: i64, first: u64) -> Option<u64> {
        let known = self.topics().contains(topic);
        let Ok(last) = u64::try_from(broker_last) else {
            return None;
        };
        let base = self.base.load(Ordering::Acquire);
        let ours = known && last <= base + self.reserved.load(Ordering::Acquire);
        if ours || last < base + first {
            return None;
        }
        let raised = last + 1 - first;
        self.base.fetch_max(raised, Ordering::AcqRel);
        Some(raised)
    }

    /// What a checkpoint at `checkpointed` stores, with `assigned` events numbered so far;
    /// the reservation moves to `assigned + RESERVE`.
    pub fn to_store(&self, checkpointed: u64, assigned: u64) -> Outputs {
        let reserved = self
            .reserved
            .fetch_max(assigned + RESERVE, Ordering::AcqRel)
            .max(assigned + RESERVE);
        Outputs {
            checkpointed,
            reserved,
            base: self.base.load(Ordering::Acquire),
            topics: self.topics().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(checkpointed: u64, reserved: u64, topics: &[&str]) -> Outputs {
        Outputs {
            checkpointed,
            reserved,
            base: 0,
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn the_producer_name_is_the_same_for_every_owner() {
        let a = ShardSequence::new(
            "app",
            "orders",
            "shardId-000000000003",
            &stored(0, 0, &[]),
            None,
        );
        let b = ShardSequence::new(
            "app",
            "orders",
            "orders:shardId-000000000003",
            &stored(0, 0, &[]),
            None,
        );
        assert_eq!(a.producer_name, "shardline-app-orders-shardId-000000000003");
        assert_eq!(a.producer_name, b.producer_name);
    }

    #[test]
    fn a_replay_of_this_lineage_keeps_its_ids() {
        // Checkpoint at 100, numbers reserved to 1000; the broker has up to 150 (sent
        // before a crash): replayed events 101..=150 keep their ids and are dropped.
        let s = ShardSequence::new("app", "s", "shardId-0", &stored(100, 1000, &["t"]), None);
        assert_eq!(s.producer_created("t", 150, 101), None);
        assert_eq!(s.id(101), 101);
        assert_eq!(s.producer_created("t", -1, 101), None);
    }

    #[test]
    fn a_broker_ahead_of_a_new_lineage_raises_the_base() {
        // The lease table was made again: nothing stored, but the topic holds ids up to 500
        // under this producer name. Event 1 must get 501, not be dropped as a duplicate.
        let s = ShardSequence::new("app", "s", "shardId-0", &stored(0, 0, &[]), None);
        assert_eq!(s.producer_created("t", 500, 1), Some(500));
        assert_eq!(s.id(1), 501);
        // A topic first used mid-stream after some events were numbered.
        assert_eq!(s.producer_created("u", 900, 40), Some(861));
        assert_eq!(s.id(40), 901);
        assert!(s.id(41) > s.id(40));
    }

    #[test]
    fn a_known_topic_past_the_reservation_is_not_ours() {
        let s = ShardSequence::new("app", "s", "shardId-0", &stored(10, 20, &["t"]), None);
        assert_eq!(s.producer_created("t", 25, 11), Some(15));
        assert_eq!(s.id(11), 26);
    }

    #[test]
    fn a_new_topic_with_nothing_above_the_next_id_keeps_the_base() {
        let s = ShardSequence::new("app", "s", "shardId-0", &stored(10, 20, &[]), None);
        assert_eq!(s.producer_created("t", 5, 11), None);
        assert_eq!(s.id(11), 11);
    }

    /// Records the reservations a [`ShardSequence`] stores.
    #[derive(Debug, Default)]
    struct Recorded(Mutex<Vec<(u64, u64, Vec<String>)>>);

    impl Store for Recorded {
        fn reserve(
            &self,
            reserved: u64,
            base: u64,
            topics: BTreeSet<String>,
        ) -> BoxFuture<'_, Result<(), String>> {
            let topics = topics.into_iter().collect();
            self.0.lock().unwrap().push((reserved, base, topics));
            Box::pin(async { Ok(()) })
        }
    }

    /// What is sent before the first checkpoint is reserved first: a new owner after a
    /// crash finds the topic and the numbers stored, and takes the broker's ids for its own.
    #[tokio::test]
    async fn a_new_topic_or_numbers_past_the_reservation_are_stored_before_sending() {
        let store = Arc::new(Recorded::default());
        let s = ShardSequence::new(
            "app",
            "s",
            "shardId-0",
            &stored(0, 0, &[]),
            Some(store.clone()),
        );
        s.reserve("t", 25).await.unwrap();
        s.reserve("t", 26).await.unwrap();
        assert_eq!(
            *store.0.lock().unwrap(),
            [(25 + RESERVE, 0, vec!["t".to_string()])]
        );
        s.reserve("u", 30).await.unwrap();
        s.reserve("t", 31 + RESERVE).await.unwrap();
        assert_eq!(store.0.lock().unwrap().len(), 3);

        // The next owner, from what was stored, after a crash before any checkpoint.
        let (reserved, base, topics) = store.0.lock().unwrap()[2].clone();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let next = ShardSequence::new(
            "app",
            "s",
            "shardId-0",
            &Outputs {
                checkpointed: 0,
                reserved,
                base,
                topics: topics.iter().map(|t| t.to_string()).collect(),
            },
            None,
        );
        assert_eq!(
            next.producer_created("t", 27, 1),
            None,
            "ids up to 27 were ours"
        );
        assert_eq!(next.id(28), 28);
    }

    #[test]
    fn a_checkpoint_stores_the_reservation_and_the_topics() {
        let s = ShardSequence::new("app", "s", "shardId-0", &stored(0, 0, &["t"]), None);
        s.producer_created("t", -1, 1);
        let o = s.to_store(7, 9);
        assert_eq!(o.checkpointed, 7);
        assert_eq!(o.reserved, 9 + RESERVE);
        assert_eq!(o.topics.iter().collect::<Vec<_>>(), ["t"]);
        // The reservation never moves back.
        assert_eq!(s.to_store(8, 3).reserved, 9 + RESERVE);
    }
}
