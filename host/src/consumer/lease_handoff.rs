//! Graceful lease handoff, as the KCL 3.x does it (`initiateGracefulLeaseHandoff`,
//! `LeaseGracefulShutdownHandler`): a lease moves from one worker to another without both
//! reading the shard, and without the new owner waiting for it to expire.
//!
//! **Steal.** The worker that wants a lease does not take it: it marks it with one
//! conditional write, `leaseOwner` := itself and `checkpointOwner` := the current owner,
//! only while `leaseCounter` and `leaseOwner` are what it saw and no `checkpointOwner` is
//! set ([`LeaseTable::mark_handoff`](super::lease_table::LeaseTable::mark_handoff); the
//! counter is not moved, so the owner's renewals go on). The owner's next renewal, whose
//! condition accepts "I am the `checkpointOwner`", answers that a handoff is asked for; its
//! shard stops fetching, waits for the records in flight to be acknowledged, writes its
//! final checkpoint and removes `checkpointOwner` (counter + 1,
//! [`LeaseTable::hand_off`](super::lease_table::LeaseTable::hand_off)). The new owner
//! starts the shard only once `checkpointOwner` is gone, at that checkpoint.
//!
//! **Timeout.** A handoff still pending [`Pending::timeout`] after it was first seen
//! (`leases.graceful_handoff_timeout`, the KCL's 30 s `gracefulLeaseHandoffTimeoutMillis`,
//! plus the lease duration the owner may take to notice, as the KCL counts it) is taken
//! outright, as a steal was before; a lease whose owner stopped renewing is taken when it
//! expires, as any.
//!
//! **Shutdown.** A stopping worker hands each drained, checkpointed lease directly to the
//! least loaded other live worker ([`receivers`]); workers look for leases handed to them
//! every `leases.assignment_check_interval`, much more often than a taking round.
//!
//! A KCL 2.x worker ignores `checkpointOwner`; a KCL 3.x worker reads it as its own.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::checkpoint::Checkpoint;
use super::lease::Lease;

/// Whether a lease may be asked for in a graceful handoff (the KCL 3.x
/// `isEligibleForGracefulShutdown`): owned, not finished, no handoff pending.
pub fn eligible(lease: &Lease) -> bool {
    lease.owner.is_some()
        && lease.checkpoint_owner.is_none()
        && lease.checkpoint != Checkpoint::ShardEnd
}

/// Handoffs to this worker still pending: since when each was first seen, and from whom.
#[derive(Debug)]
pub struct Pending {
    timeout: Duration,
    since: HashMap<String, (String, Instant)>,
}

impl Pending {
    /// `graceful_timeout` (`leases.graceful_handoff_timeout`) plus the lease duration, the
    /// longest the owner may take to notice at a renewal (the KCL adds it too).
    pub fn new(graceful_timeout: Duration, lease_duration: Duration) -> Self {
        Self {
            timeout: graceful_timeout + lease_duration,
            since: HashMap::new(),
        }
    }

    /// How long a handoff may stay pending before it is taken outright.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Notes a handoff this worker just asked for (the clock starts now).
    pub fn marked(&mut self, lease_key: &str, from: &str, now: Instant) {
        self.since
            .insert(lease_key.to_string(), (from.to_string(), now));
    }

    /// Whether a lease seen pending to this worker (`checkpointOwner` set) has waited
    /// longer than the timeout. The clock starts at the first sight of this handoff (the
    /// same lease key and checkpoint owner).
    pub fn timed_out(&mut self, lease: &Lease, now: Instant) -> bool {
        let from = lease.checkpoint_owner.clone().unwrap_or_default();
        let (seen_from, since) = self
            .since
            .entry(lease.key.clone())
            .or_insert_with(|| (from.clone(), now));
        if *seen_from != from {
            *seen_from = from;
            *since = now;
        }
        now.duration_since(*since) >= self.timeout
    }

    /// Forgets handoffs of leases that are no longer pending to this worker.
    pub fn retain(&mut self, pending: impl Fn(&str) -> bool) {
        self.since.retain(|k, _| pending(k));
    }
}

/// Who receives each lease a stopping worker hands over: the least loaded live worker
/// (fewest leases, then name) at each step, counting what it was given so far. `None`
/// when there is no other live worker (the lease is then released for whoever comes).
/// A lease already pending to a worker goes to that worker.
pub fn receivers(
    leases: &[(String, Option<String>)],
    mut loads: BTreeMap<String, usize>,
    max_per_worker: Option<usize>,
) -> Vec<(String, Option<String>)> {
    let mut sorted: Vec<&(String, Option<String>)> = leases.iter().collect();
    sorted.sort();
    sorted
        .into_iter()
        .map(|(key, pending_to)| {
            let to = match pending_to {
                Some(to) => Some(to.clone()),
                None => loads
                    .iter()
                    .filter(|(_, n)| max_per_worker.is_none_or(|max| **n < max))
                    .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                    .map(|(w, _)| w.clone()),
            };
            if let Some(w) = &to {
                *loads.entry(w.clone()).or_default() += 1;
            }
            (key.clone(), to)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(key: &str, owner: Option<&str>, checkpoint_owner: Option<&str>) -> Lease {
        let mut l = Lease::new(key, Checkpoint::TrimHorizon, Vec::new());
        l.owner = owner.map(str::to_string);
        l.checkpoint_owner = checkpoint_owner.map(str::to_string);
        l
    }

    #[test]
    fn only_owned_unfinished_leases_without_a_pending_handoff_are_eligible() {
        assert!(eligible(&lease("s", Some("a"), None)));
        assert!(!eligible(&lease("s", None, None)), "free: take it");
        assert!(
            !eligible(&lease("s", Some("b"), Some("a"))),
            "a handoff is already pending"
        );
        let mut ended = lease("s", Some("a"), None);
        ended.checkpoint = Checkpoint::ShardEnd;
        assert!(!eligible(&ended));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_handoff_times_out_after_the_timeout_plus_the_lease_duration() {
        let mut p = Pending::new(Duration::from_secs(30), Duration::from_secs(10));
        assert_eq!(p.timeout(), Duration::from_secs(40));
        p.marked("s", "a", Instant::now());
        let pending = lease("s", Some("me"), Some("a"));
        tokio::time::advance(Duration::from_secs(39)).await;
        assert!(!p.timed_out(&pending, Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(p.timed_out(&pending, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_restarts_when_another_worker_becomes_the_checkpoint_owner() {
        let mut p = Pending::new(Duration::from_secs(1), Duration::from_secs(1));
        assert!(!p.timed_out(&lease("s", Some("me"), Some("a")), Instant::now()));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(
            !p.timed_out(&lease("s", Some("me"), Some("b")), Instant::now()),
            "a new handoff, a new clock"
        );
        p.retain(|_| false);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(
            !p.timed_out(&lease("s", Some("me"), Some("b")), Instant::now()),
            "forgotten: first sight again"
        );
    }

    #[test]
    fn leases_go_to_the_least_loaded_workers_in_turn() {
        let loads: BTreeMap<String, usize> = [("b".to_string(), 2), ("c".to_string(), 1)].into();
        let leases: Vec<(String, Option<String>)> =
            ["s0", "s1", "s2"].map(|k| (k.to_string(), None)).into();
        let got = receivers(&leases, loads, None);
        let to: Vec<Option<&str>> = got.iter().map(|(_, w)| w.as_deref()).collect();
        // c (1) gets s0 → 2/2; b wins the tie by name → 3/2; c gets s2.
        assert_eq!(to, [Some("c"), Some("b"), Some("c")]);
    }

    #[test]
    fn a_pending_handoff_keeps_its_receiver_and_lone_workers_release() {
        let loads: BTreeMap<String, usize> = [("b".to_string(), 0)].into();
        let leases = vec![
            ("s0".to_string(), Some("c".to_string())),
            ("s1".to_string(), None),
        ];
        assert_eq!(
            receivers(&leases, loads, None),
            [
                ("s0".to_string(), Some("c".to_string())),
                ("s1".to_string(), Some("b".to_string()))
            ]
        );
        assert_eq!(
            receivers(&[("s0".to_string(), None)], BTreeMap::new(), None),
            [("s0".to_string(), None)]
        );
    }

    #[test]
    fn workers_at_max_per_worker_receive_nothing() {
        let loads: BTreeMap<String, usize> = [("b".to_string(), 2)].into();
        assert_eq!(
            receivers(&[("s0".to_string(), None)], loads, Some(2)),
            [("s0".to_string(), None)]
        );
    }
}
