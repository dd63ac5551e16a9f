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
//!   most `leases.max_steal` per round — so workers converge without ping-pong.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::checkpoint::Checkpoint;
use super::lease::Lease;

/// Why a lease is to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No owner, or the owner stopped renewing it.
    Free,
    /// Ours from an earlier run with the same worker id.
    Ours,
    /// Taken from a worker that holds more than its share.
    Stolen,
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
        Self {
            worker: worker.to_string(),
            duration,
            max_per_worker,
            max_steal,
            seen: HashMap::new(),
        }
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

        let mut free: Vec<(&Lease, Reason)> = Vec::new();
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
                Some(o) if o == self.worker => free.push((lease, Reason::Ours)),
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
        let mine = held.len();
        let needed = target.saturating_sub(mine);
        if needed == 0 {
            return Vec::new();
        }

        // Free and expired leases first, oldest-known first for determinism.
        free.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        let mut out: Vec<(Lease, Reason)> = free
            .into_iter()
            .take(needed)
            .map(|(l, r)| (l.clone(), r))
            .collect();
        if !out.is_empty() {
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
        let mut candidates: Vec<&Lease> = victim.clone();
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
