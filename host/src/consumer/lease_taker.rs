//! The lease taker (the KCL's LeaseTaker): decides, from one scan of the lease table,
//! which leases this worker should take so that work spreads evenly.
//!
//! - A lease is **expired** when its `leaseCounter` has not moved for the lease duration,
//!   judged on this worker's monotonic clock from the moment it first saw that counter
//!   value; no clock synchronisation between workers is needed.
//! - **Live workers** are the owners of unexpired leases, plus this one.
//! - **Target** per worker = ceil(active leases / live workers), capped by
//!   `leases.max_per_worker`. Finished shards (`SHARD_END`) do not count.
//! - Below target, a worker takes free and expired leases first; when there are none, it
//!   **steals** from the most loaded worker — only leases above that worker's target, at
//!   most `leases.max_steal` per round — so workers converge without ping-pong. A steal
//!   is a [graceful handoff](super::lease_handoff) when `leases.graceful_handoff_timeout`
//!   is not zero: a lease pending to this worker counts as its own, and is taken once its
//!   previous owner finished with it, or when the handoff times out or the lease expires.
//! - Leases whose `leaseOwner` names this worker and that it does not hold (handed over by
//!   their previous owner, or from an earlier run with the same worker id) are taken at
//!   once, also by the quick [assignment check](LeaseTaker::plan_assigned).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::checkpoint::Checkpoint;
use super::lease::Lease;
use super::lease_handoff::{self, Pending};

/// Why a lease is to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No owner, or the owner stopped renewing it.
    Free,
    /// Its `leaseOwner` names this worker: handed over by its previous owner, or ours
    /// from an earlier run with the same worker id.
    Ours,
    /// Taken from a worker that holds more than its share (asked for in a graceful
    /// handoff when that is on).
    Stolen,
    /// Handed over to this worker, but its previous owner did not finish in time.
    HandoffTimedOut,
}

struct Seen {
    counter: i64,
    since: Instant,
}

/// What the taker remembers between scans.
pub struct LeaseTaker {
    worker: String,
    duration: Duration,
    max_per_worker: Option<usize>,
    max_steal: usize,
    seen: HashMap<String, Seen>,
    /// Handoffs to this worker still pending.
    pending: Pending,
}

impl std::fmt::Debug for LeaseTaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseTaker")
            .field("worker", &self.worker)
            .field("duration", &self.duration)
            .finish()
    }
}

impl LeaseTaker {
    pub fn new(
        worker: &str,
        duration: Duration,
        max_per_worker: Option<usize>,
        max_steal: usize,
    ) -> Self {
        Self::with_handoff_timeout(worker, duration, max_per_worker, max_steal, Duration::ZERO)
    }

    /// With graceful handoffs that time out after `handoff_timeout`
    /// (`leases.graceful_handoff_timeout`; see [`Pending::new`]).
    pub fn with_handoff_timeout(
        worker: &str,
        duration: Duration,
        max_per_worker: Option<usize>,
        max_steal: usize,
        handoff_timeout: Duration,
    ) -> Self {
        Self {
            worker: worker.to_string(),
            duration,
            max_per_worker,
            max_steal,
            seen: HashMap::new(),
            pending: Pending::new(handoff_timeout, duration),
        }
    }

    /// Notes a graceful handoff this worker just asked for.
    pub fn marked(&mut self, lease: &Lease, now: Instant) {
        if let Some(from) = &lease.owner {
            self.pending.marked(&lease.key, from, now);
        }
    }

    /// What to do with a lease whose `leaseOwner` is this worker and that it does not
    /// hold: `Some(reason)` to take it now, `None` to wait for a pending handoff.
    fn assigned(&mut self, lease: &Lease, now: Instant) -> Option<Reason> {
        if lease.checkpoint_owner.is_none() {
            return Some(Reason::Ours);
        }
        if self.expired(lease, now) {
            // The previous owner stopped renewing: taken as any expired lease.
            return Some(Reason::Free);
        }
        self.pending
            .timed_out(lease, now)
            .then_some(Reason::HandoffTimedOut)
    }

    /// The quick assignment check: of the leases whose `leaseOwner` is this worker (a
    /// scan filtered on it), those to take now — handed over and no longer pending, or
    /// pending too long — within `leases.max_per_worker`.
    pub fn plan_assigned(
        &mut self,
        owned: &[Lease],
        held: &HashSet<String>,
        now: Instant,
    ) -> Vec<(Lease, Reason)> {
        let room = self
            .max_per_worker
            .map_or(usize::MAX, |m| m.saturating_sub(held.len()));
        let mut out = Vec::new();
        for lease in owned {
            if held.contains(&lease.key)
                || lease.checkpoint == Checkpoint::ShardEnd
                || lease.owner.as_deref() != Some(self.worker.as_str())
            {
                continue;
            }
            if let Some(reason) = self.assigned(lease, now) {
                out.push((lease.clone(), reason));
            }
        }
        out.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        out.truncate(room);
        out
    }

    /// The other live workers (owners of unexpired, unfinished leases) and how many leases
    /// each owns, for handing leases over at shutdown.
    pub fn live_loads(&mut self, leases: &[Lease], now: Instant) -> BTreeMap<String, usize> {
        let mut loads = BTreeMap::new();
        for lease in leases {
            if lease.checkpoint == Checkpoint::ShardEnd {
                continue;
            }
            match lease.owner.as_deref() {
                Some(o) if o != self.worker && !self.expired(lease, now) => {
                    *loads.entry(o.to_string()).or_insert(0) += 1;
                }
                _ => {}
            }
        }
        loads
    }

    /// Whether a lease we do not hold has expired (updates the observation clock).
    fn expired(&mut self, lease: &Lease, now: Instant) -> bool {
        let s = self.seen.entry(lease.key.clone()).or_insert(Seen {
            counter: lease.counter,
            since: now,
        });
        if s.counter != lease.counter {
            s.counter = lease.counter;
            s.since = now;
            return false;
        }
        now.duration_since(s.since) >= self.duration
    }

    /// The leases to take now, given a fresh scan and the leases this worker holds.
    pub fn plan(
        &mut self,
        leases: &[Lease],
        held: &HashSet<String>,
        now: Instant,
    ) -> Vec<(Lease, Reason)> {
        let keys: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
        self.seen.retain(|k, _| keys.contains(k.as_str()));
        let pending_to_me: HashSet<&str> = leases
            .iter()
            .filter(|l| {
                l.owner.as_deref() == Some(self.worker.as_str()) && l.checkpoint_owner.is_some()
            })
            .map(|l| l.key.as_str())
            .collect();
        self.pending.retain(|k| pending_to_me.contains(k));

        let mut free: Vec<(&Lease, Reason)> = Vec::new();
        // Handed to this worker: taken whatever the balance says (within max_per_worker).
        let mut ours: Vec<(&Lease, Reason)> = Vec::new();
        // Handoffs to this worker still pending: counted as ours.
        let mut waiting = 0usize;
        // Unexpired leases held by other workers, by owner.
        let mut others: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        let mut active = 0usize;
        for lease in leases {
            if lease.checkpoint == Checkpoint::ShardEnd {
                continue;
            }
            active += 1;
            if held.contains(&lease.key) {
                continue;
            }
            match lease.owner.as_deref() {
                None => free.push((lease, Reason::Free)),
                Some(o) if o == self.worker => match self.assigned(lease, now) {
                    Some(reason) => ours.push((lease, reason)),
                    None => waiting += 1,
                },
                Some(o) => {
                    if self.expired(lease, now) {
                        free.push((lease, Reason::Free));
                    } else {
                        others.entry(o).or_default().push(lease);
                    }
                }
            }
        }
        let workers = others.len() + 1;
        let mut target = active.div_ceil(workers);
        if let Some(max) = self.max_per_worker {
            target = target.min(max);
        }
        ours.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        let room = self
            .max_per_worker
            .map_or(usize::MAX, |m| m.saturating_sub(held.len()));
        let mut out: Vec<(Lease, Reason)> = ours
            .into_iter()
            .take(room)
            .map(|(l, r)| (l.clone(), r))
            .collect();
        let mine = held.len() + out.len() + waiting;
        let needed = target.saturating_sub(mine);
        if needed == 0 {
            return out;
        }

        // Free and expired leases first, oldest-known first for determinism.
        free.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        let taken = out.len();
        out.extend(free.into_iter().take(needed).map(|(l, r)| (l.clone(), r)));
        if out.len() > taken {
            return out;
        }

        // Nothing free: steal from the most loaded worker, only what it has above target.
        let Some((_, victim)) = others
            .iter()
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(a.0)))
        else {
            return out;
        };
        let over = victim.len().saturating_sub(target);
        // A worker exactly at target still gives one lease when we are two or more below
        // it and it would keep at least as many as we then have (7 leases on 3 workers:
        // 3/3/1 becomes 3/2/2, never ping-pong).
        let mut steal = if over == 0 && needed > 1 && victim.len() > mine + 1 {
            1
        } else {
            over.min(needed)
        };
        steal = steal.min(self.max_steal);
        // A lease with a handoff pending is on its way already.
        let mut candidates: Vec<&Lease> = victim
            .iter()
            .copied()
            .filter(|l| lease_handoff::eligible(l))
            .collect();
        candidates.sort_by(|a, b| a.key.cmp(&b.key));
        out.extend(
            candidates
                .into_iter()
                .take(steal)
                .map(|l| (l.clone(), Reason::Stolen)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(key: &str, owner: Option<&str>, counter: i64) -> Lease {
        let mut l = Lease::new(key, Checkpoint::TrimHorizon, Vec::new());
        l.owner = owner.map(str::to_string);
        l.counter = counter;
        l
    }

    fn keys(plan: &[(Lease, Reason)]) -> Vec<&str> {
        plan.iter().map(|(l, _)| l.key.as_str()).collect()
    }

    const D: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn expiry_is_counted_from_when_the_counter_last_moved() {
        let mut t = LeaseTaker::new("me", D, None, 1);
        let held = HashSet::new();
        let scan = |c| vec![lease("s1", Some("other"), c)];
        assert!(
            t.plan(&scan(5), &held, Instant::now()).is_empty(),
            "first sight starts the clock"
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(t.plan(&scan(5), &held, Instant::now()).is_empty());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            t.plan(&scan(6), &held, Instant::now()).is_empty(),
            "renewed: clock restarts"
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(t.plan(&scan(6), &held, Instant::now()).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        let p = t.plan(&scan(6), &held, Instant::now());
        assert_eq!(keys(&p), ["s1"]);
        assert_eq!(p[0].1, Reason::Free);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_worker_takes_everything_free() {
        let mut t = LeaseTaker::new("me", D, None, 1);
        let leases: Vec<_> = (0..8).map(|i| lease(&format!("s{i}"), None, 0)).collect();
        assert_eq!(t.plan(&leases, &HashSet::new(), Instant::now()).len(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn target_is_ceil_of_leases_over_live_workers() {
        // 8 leases: 4 held by a, 4 free; b (me) and a live → target 4.
        let mut t = LeaseTaker::new("b", D, None, 1);
        let mut leases: Vec<_> = (0..4)
            .map(|i| lease(&format!("a{i}"), Some("a"), 1))
            .collect();
        leases.extend((0..4).map(|i| lease(&format!("f{i}"), None, 0)));
        let p = t.plan(&leases, &HashSet::new(), Instant::now());
        assert_eq!(keys(&p), ["f0", "f1", "f2", "f3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn steals_from_the_most_loaded_only_above_its_target() {
        // a holds 6, c holds 2, b (me) holds 0: 3 workers, 8 leases → target 3.
        let mut t = LeaseTaker::new("b", D, None, 5);
        let mut leases: Vec<_> = (0..6)
            .map(|i| lease(&format!("a{i}"), Some("a"), 1))
            .collect();
        leases.extend((0..2).map(|i| lease(&format!("c{i}"), Some("c"), 1)));
        let p = t.plan(&leases, &HashSet::new(), Instant::now());
        assert_eq!(
            keys(&p),
            ["a0", "a1", "a2"],
            "a is 3 over target, b needs 3"
        );
        assert!(p.iter().all(|(_, r)| *r == Reason::Stolen));
    }

    #[tokio::test(start_paused = true)]
    async fn steals_at_most_max_steal_per_round() {
        let mut t = LeaseTaker::new("b", D, None, 1);
        let leases: Vec<_> = (0..8)
            .map(|i| lease(&format!("a{i}"), Some("a"), 1))
            .collect();
        let p = t.plan(&leases, &HashSet::new(), Instant::now());
        assert_eq!(p.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn balanced_workers_leave_each_other_alone() {
        // 3/3/2 with me holding 2: target 3, I need 1, a and c hold exactly 3: no steal
        // (stealing would just move the imbalance).
        let mut t = LeaseTaker::new("b", D, None, 5);
        let mut leases: Vec<_> = (0..3)
            .map(|i| lease(&format!("a{i}"), Some("a"), 1))
            .collect();
        leases.extend((0..3).map(|i| lease(&format!("c{i}"), Some("c"), 1)));
        leases.extend((0..2).map(|i| lease(&format!("b{i}"), Some("b"), 1)));
        let held: HashSet<String> = ["b0".to_string(), "b1".to_string()].into();
        assert!(t.plan(&leases, &held, Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn max_per_worker_caps_the_target_and_finished_shards_do_not_count() {
        let mut t = LeaseTaker::new("me", D, Some(2), 1);
        let mut leases: Vec<_> = (0..5).map(|i| lease(&format!("s{i}"), None, 0)).collect();
        let mut done = lease("ended", None, 0);
        done.checkpoint = Checkpoint::ShardEnd;
        leases.push(done);
        let p = t.plan(&leases, &HashSet::new(), Instant::now());
        assert_eq!(keys(&p), ["s0", "s1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn own_leases_from_an_earlier_run_are_taken_at_once() {
        let mut t = LeaseTaker::new("me", D, None, 1);
        let p = t.plan(
            &[lease("s0", Some("me"), 9)],
            &HashSet::new(),
            Instant::now(),
        );
        assert_eq!(p[0].1, Reason::Ours);
    }

    fn pending(key: &str, to: &str, from: &str, counter: i64) -> Lease {
        let mut l = lease(key, Some(to), counter);
        l.checkpoint_owner = Some(from.to_string());
        l
    }

    const HANDOFF: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_steal_never_picks_a_lease_whose_handoff_is_pending() {
        // a owns 6 (two of them already on their way to c), b (me) holds none.
        let mut t = LeaseTaker::with_handoff_timeout("b", D, None, 5, HANDOFF);
        let mut leases: Vec<_> = (0..4)
            .map(|i| lease(&format!("a{i}"), Some("a"), 1))
            .collect();
        leases.push(pending("p0", "c", "a", 1));
        leases.push(pending("p1", "c", "a", 1));
        let p = t.plan(&leases, &HashSet::new(), Instant::now());
        assert!(p
            .iter()
            .all(|(l, r)| *r == Reason::Stolen && l.owner.as_deref() == Some("a")));
        assert!(p.iter().all(|(l, _)| l.checkpoint_owner.is_none()), "{p:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_pending_to_me_counts_as_mine_until_its_owner_hands_it_over() {
        // 5 leases, a and me: target 3. a holds 3; I hold one, and one is pending to me.
        let mut t = LeaseTaker::with_handoff_timeout("me", D, None, 5, HANDOFF);
        let mut leases: Vec<_> = (0..3)
            .map(|i| lease(&format!("a{i}"), Some("a"), 1))
            .collect();
        leases.push(pending("s", "me", "a", 1));
        let held = HashSet::from(["mine".to_string()]);
        leases.push(lease("mine", Some("me"), 1));
        assert!(
            t.plan(&leases, &held, Instant::now()).is_empty(),
            "at target with the pending lease: wait, steal nothing more"
        );
        // a checkpointed and handed it over (checkpointOwner removed, counter + 1).
        leases[3] = lease("s", Some("me"), 2);
        let p = t.plan(&leases, &held, Instant::now());
        assert_eq!(keys(&p), ["s"]);
        assert_eq!(p[0].1, Reason::Ours);
    }

    #[tokio::test(start_paused = true)]
    async fn a_handoff_pending_too_long_is_taken_outright() {
        let mut t = LeaseTaker::with_handoff_timeout("me", D, None, 1, HANDOFF);
        let held = HashSet::new();
        let l = lease("s", Some("a"), 1);
        t.marked(&l, Instant::now());
        // a keeps renewing (the lease never expires) but never hands it over.
        for secs in 1..=40 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let scan = [pending("s", "me", "a", secs + 1)];
            let p = t.plan_assigned(&scan, &held, Instant::now());
            if secs < 40 {
                assert!(p.is_empty(), "still within 30s + 10s at {secs}s");
            } else {
                assert_eq!(p[0].1, Reason::HandoffTimedOut);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_handoff_whose_owner_died_is_taken_when_the_lease_expires() {
        let mut t = LeaseTaker::with_handoff_timeout("me", D, None, 1, HANDOFF);
        let scan = [pending("s", "me", "a", 7)];
        assert!(t.plan(&scan, &HashSet::new(), Instant::now()).is_empty());
        tokio::time::advance(D).await;
        let p = t.plan(&scan, &HashSet::new(), Instant::now());
        assert_eq!(keys(&p), ["s"]);
        assert_eq!(p[0].1, Reason::Free);
    }

    #[tokio::test(start_paused = true)]
    async fn leases_handed_to_me_are_taken_even_above_target_within_max_per_worker() {
        // A stopping worker handed me 3 leases while I hold 4 of 8 with two live workers.
        let mut t = LeaseTaker::with_handoff_timeout("me", D, Some(6), 1, HANDOFF);
        let mut leases: Vec<_> = (0..4)
            .map(|i| lease(&format!("m{i}"), Some("me"), 1))
            .collect();
        leases.extend((0..3).map(|i| lease(&format!("h{i}"), Some("me"), 3)));
        leases.push(lease("b0", Some("b"), 1));
        let held: HashSet<String> = (0..4).map(|i| format!("m{i}")).collect();
        let p = t.plan_assigned(&leases, &held, Instant::now());
        assert_eq!(keys(&p), ["h0", "h1"], "max_per_worker 6");
        let p = t.plan(&leases, &held, Instant::now());
        assert_eq!(keys(&p), ["h0", "h1"]);
        assert!(p.iter().all(|(_, r)| *r == Reason::Ours));
    }

    #[tokio::test(start_paused = true)]
    async fn live_loads_count_other_workers_whose_leases_are_renewed() {
        let mut t = LeaseTaker::new("me", D, None, 1);
        let scan = |c: i64| {
            vec![
                lease("s0", Some("a"), c),
                lease("s1", Some("a"), c),
                lease("s2", Some("dead"), 1),
                pending("s3", "b", "a", c),
                lease("s4", Some("me"), c),
            ]
        };
        t.live_loads(&scan(1), Instant::now());
        tokio::time::advance(D).await;
        let loads = t.live_loads(&scan(2), Instant::now());
        assert_eq!(
            loads,
            BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 1)])
        );
    }

    /// Simulated rounds with graceful handoff: a third worker joins two that share eight
    /// shards; every steal is a handoff the owner completes at its next renewal, and no
    /// shard is ever held by two workers at once.
    #[tokio::test(start_paused = true)]
    async fn graceful_steals_converge_without_a_shard_held_twice() {
        let names = ["w1", "w2", "w3"];
        let mut takers: Vec<LeaseTaker> = names
            .iter()
            .map(|n| LeaseTaker::with_handoff_timeout(n, D, None, 1, HANDOFF))
            .collect();
        let mut table: Vec<Lease> = (0..8)
            .map(|i| lease(&format!("s{i}"), Some(names[i % 2]), 1))
            .collect();
        let mut held: Vec<HashSet<String>> = vec![
            (0..8).step_by(2).map(|i| format!("s{i}")).collect(),
            (1..8).step_by(2).map(|i| format!("s{i}")).collect(),
            HashSet::new(),
        ];
        for round in 0..30 {
            for (w, taker) in takers.iter_mut().enumerate() {
                let plan = taker.plan(&table, &held[w], Instant::now());
                for (l, reason) in plan {
                    let item = table.iter_mut().find(|x| x.key == l.key).expect("lease");
                    if item.counter != l.counter {
                        continue;
                    }
                    if reason == Reason::Stolen {
                        assert!(item.checkpoint_owner.is_none());
                        item.checkpoint_owner = item.owner.replace(names[w].to_string());
                    } else {
                        item.owner = Some(names[w].to_string());
                        item.checkpoint_owner = None;
                        item.counter += 1;
                        held[w].insert(l.key.clone());
                    }
                }
            }
            // Renewals: an owner asked for a handoff drains, checkpoints and hands over.
            for (w, name) in names.iter().enumerate() {
                let mine: Vec<String> = held[w].iter().cloned().collect();
                for key in mine {
                    let item = table.iter_mut().find(|x| x.key == key).expect("lease");
                    if item.checkpoint_owner.as_deref() == Some(*name) {
                        item.checkpoint_owner = None;
                        item.counter += 1;
                        held[w].remove(&key);
                    } else if item.owner.as_deref() == Some(*name) {
                        item.counter += 1;
                    } else {
                        held[w].remove(&key);
                    }
                }
            }
            for key in table.iter().map(|l| &l.key) {
                let holders = held.iter().filter(|h| h.contains(key)).count();
                assert!(
                    holders <= 1,
                    "{key} held by {holders} workers in round {round}"
                );
            }
            tokio::time::advance(Duration::from_secs(1)).await;
            let mut counts: Vec<usize> = held.iter().map(HashSet::len).collect();
            counts.sort();
            if counts == [2, 3, 3] {
                return;
            }
        }
        panic!("did not converge: {held:?}");
    }

    /// Simulated rounds: three workers on eight shards always converge to 3/3/2.
    #[tokio::test(start_paused = true)]
    async fn three_workers_converge_on_eight_leases() {
        let names = ["w1", "w2", "w3"];
        let mut takers: Vec<LeaseTaker> = names
            .iter()
            .map(|n| LeaseTaker::new(n, D, None, 1))
            .collect();
        let mut table: Vec<Lease> = (0..8).map(|i| lease(&format!("s{i}"), None, 0)).collect();
        for round in 0..20 {
            for (w, taker) in names.iter().zip(takers.iter_mut()) {
                let held: HashSet<String> = table
                    .iter()
                    .filter(|l| l.owner.as_deref() == Some(*w))
                    .map(|l| l.key.clone())
                    .collect();
                for (l, _) in taker.plan(&table, &held, Instant::now()) {
                    let item = table.iter_mut().find(|x| x.key == l.key).expect("lease");
                    if item.counter == l.counter {
                        item.owner = Some(w.to_string());
                        item.counter += 1;
                    }
                }
            }
            // Every owner renews.
            for l in table.iter_mut() {
                l.counter += 1;
            }
            tokio::time::advance(Duration::from_secs(1)).await;
            let mut counts: Vec<usize> = names
                .iter()
                .map(|n| {
                    table
                        .iter()
                        .filter(|l| l.owner.as_deref() == Some(*n))
                        .count()
                })
                .collect();
            counts.sort();
            if counts == [2, 3, 3] {
                assert!(round < 10, "converged only after {round} rounds");
                return;
            }
        }
        panic!("did not converge");
    }
}
