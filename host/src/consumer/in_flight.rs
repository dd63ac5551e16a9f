//! In-flight tracking: the deliveries of one pass over a shard that the sinks have not
//! acknowledged yet. Each record handed to the sinks is registered in an [`AckTracker`];
//! receipts acknowledge its deliveries as they resolve, and the acknowledged prefix is
//! what the shard consumer checkpoints. The first failed send fails the pass (the shard
//! rewinds to that prefix). A tracker poisoned by a panic is never read again: the shard
//! stops instead of guessing what is done.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;

use super::checkpoint::{AckTracker, Checkpoint, RecordId};
use super::receive_queue::{Reservation, WorkerQueue};
use crate::sinks::{Acks, SinkError};

/// The acknowledgement tracker of a shard was poisoned by a panic in the middle of an
/// update: which records are done is unknown, so nothing is checkpointed from it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("shard {shard}: the acknowledgement tracker was poisoned by a panic; stopping without checkpointing")]
pub struct TrackerPoisoned {
    pub shard: String,
}

/// Why a pass over the shard stopped taking acknowledgements.
#[derive(Debug)]
pub(super) enum FlowFailure {
    /// A send failed: the shard rewinds to the acknowledged prefix and reads again.
    Sink(SinkError),
    /// The tracker is unusable: the shard stops ([`TrackerPoisoned`]).
    TrackerPoisoned,
}

/// Deliveries in flight for one pass over the shard.
#[derive(Debug)]
pub(super) struct Flow {
    shard: String,
    /// Where the bytes of this pass's records are counted for the whole worker; what is
    /// still held when the pass is gone (records never acknowledged) is given back then.
    worker_queue: Arc<WorkerQueue>,
    tracker: Mutex<AckTracker>,
    /// Delivery tasks not finished (acknowledged or failed).
    pub(super) outstanding: AtomicUsize,
    /// The first failure; set once.
    failure: OnceLock<FlowFailure>,
    pub(super) changed: Notify,
}

impl Flow {
    /// A pass whose first event gets number `numbered + 1` (`sinks::sequence`).
    pub(super) fn new(shard: &str, worker_queue: Arc<WorkerQueue>, numbered: u64) -> Self {
        Self {
            shard: shard.to_string(),
            worker_queue,
            tracker: Mutex::new(AckTracker::numbered_from(numbered)),
            outstanding: AtomicUsize::new(0),
            failure: OnceLock::new(),
            changed: Notify::new(),
        }
    }

    /// The tracker; poisoned by a panic in the middle of an update, it is never read
    /// again (what it says may be wrong), and the shard stops.
    fn tracker(&self) -> Result<MutexGuard<'_, AckTracker>, TrackerPoisoned> {
        self.tracker.lock().map_err(|_| TrackerPoisoned {
            shard: self.shard.clone(),
        })
    }

    pub(super) fn in_flight(&self) -> Result<usize, TrackerPoisoned> {
        Ok(self.tracker()?.in_flight())
    }

    /// Bytes of this pass's records not done yet.
    pub(super) fn held_bytes(&self) -> Result<u64, TrackerPoisoned> {
        Ok(self.tracker()?.held_bytes())
    }

    /// The acknowledged prefix, with the events numbered up to it, and the events numbered
    /// so far.
    pub(super) fn checkpointable(&self) -> Result<Option<(Checkpoint, u64, u64)>, TrackerPoisoned> {
        let t = self.tracker()?;
        Ok(t.checkpointable_numbered()
            .map(|(cp, upto)| (cp, upto, t.numbered())))
    }

    pub(super) fn failure(&self) -> Option<&FlowFailure> {
        self.failure.get()
    }

    pub(super) fn fail(&self, why: FlowFailure) {
        let _ = self.failure.set(why);
        self.wake();
    }

    /// Wakes whoever waits for progress; the stored permit covers a waiter that is about
    /// to wait but has not registered yet.
    fn wake(&self) {
        self.changed.notify_waiters();
        self.changed.notify_one();
    }

    /// Registers a record handed to the sinks: `pending` deliveries, `bytes` of data and
    /// key held (out of the fetch's `reservation`) until the last of them is acknowledged.
    /// Returns its id and the number of its first delivery (the others follow in order).
    pub(super) fn push(
        &self,
        sequence: &Arc<str>,
        sub: u64,
        pending: u32,
        bytes: u32,
        reservation: &mut Reservation,
    ) -> Result<(RecordId, u64), TrackerPoisoned> {
        let pushed = self.tracker()?.push(sequence.clone(), sub, pending, bytes);
        if pending > 0 {
            reservation.take(u64::from(bytes));
        }
        Ok(pushed)
    }

    /// One delivery of each of `ids` was acknowledged.
    fn ack_all(&self, ids: &[RecordId]) {
        let released = match self.tracker() {
            Ok(mut t) => ids.iter().map(|&id| t.ack(id)).sum(),
            Err(_) => {
                self.fail(FlowFailure::TrackerPoisoned);
                return;
            }
        };
        self.worker_queue.release(released);
    }

    /// Waits for a send's acknowledgements on a task of their own: they acknowledge one
    /// delivery of each of `ids`, or fail the flow (the shard rewinds to the acknowledged
    /// prefix).
    pub(super) fn await_acks(self: &Arc<Self>, acks: Acks, ids: Vec<RecordId>) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        let flow = self.clone();
        tokio::spawn(async move {
            match acks.await {
                Ok(()) => flow.ack_all(&ids),
                Err(e) => flow.fail(FlowFailure::Sink(e)),
            }
            flow.outstanding.fetch_sub(1, Ordering::AcqRel);
            flow.wake();
        });
    }
}

impl Drop for Flow {
    /// Records of a pass that ended (rewind, lease lost, shutdown) before all their
    /// deliveries were acknowledged: nothing holds their data any more.
    fn drop(&mut self) {
        let held = self
            .tracker
            .get_mut()
            .map(|t| t.held_bytes())
            .unwrap_or_else(|p| p.into_inner().held_bytes());
        self.worker_queue.release(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_tracker_stops_the_shard_instead_of_reading_as_empty() {
        let queue = Arc::new(WorkerQueue::new(1 << 20));
        let flow = Arc::new(Flow::new("shardId-000000000000", queue.clone(), 0));
        let mut reservation = queue.reserve(1024).expect("room in the queue");
        let sequence: Arc<str> =
            Arc::from("49590338271490256608559692538361571095921575989136588898");
        let (id, _) = flow
            .push(&sequence, 0, 1, 100, &mut reservation)
            .expect("tracker usable");
        assert_eq!(flow.in_flight().expect("tracker usable"), 1);

        // A panic while the tracker is held, in the middle of an update.
        let f = flow.clone();
        let panicked = std::thread::spawn(move || {
            let _held = f.tracker.lock();
            panic!("in the middle of an update");
        })
        .join();
        assert!(panicked.is_err());

        // Nothing is read from it as if it were empty: no 0 in flight, no checkpoint.
        assert!(flow.in_flight().is_err());
        assert!(flow.held_bytes().is_err());
        assert!(flow.checkpointable().is_err());
        assert!(flow.push(&sequence, 1, 1, 100, &mut reservation).is_err());
        // An acknowledgement arriving now fails the pass instead of vanishing.
        flow.ack_all(&[id]);
        assert!(matches!(flow.failure(), Some(FlowFailure::TrackerPoisoned)));
    }
}
