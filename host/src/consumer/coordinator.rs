//! The coordinator (the KCL's Scheduler): keeps the lease table in step with the stream,
//! renews the leases this worker holds, takes leases that are free or expired, runs one
//! shard consumer per held lease, and on shutdown lets every shard drain and checkpoint
//! before releasing its lease so another worker can take it at once.
//!
//! Expiry is judged on the local monotonic clock: a lease whose `leaseCounter` has not
//! moved for `leases.duration` since this worker first saw that value is expired. No clock
//! synchronisation between workers is needed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::Checkpoint;
use super::lease::Lease;
use super::lease_table::LeaseTableError;
use super::shard_consumer::{self, HeldLease, ShardExit, Shared};
use super::shard_sync;

/// How often the shard list is compared with the lease table.
const SHARD_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// How often progress is logged.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Counters shared by the shard consumers.
#[derive(Debug, Default)]
pub struct Stats {
    pub records: AtomicU64,
    pub deliveries: AtomicU64,
}

struct Held {
    lease: Arc<HeldLease>,
    last_renewed: Instant,
    shutdown: CancellationToken,
}

/// What the taker remembers of a lease it does not hold.
struct Seen {
    counter: i64,
    since: Instant,
}

/// Runs the worker until `shutdown` is cancelled (graceful) or a shard fails fatally.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg = shared.config.clone();
    let stream = cfg.source.stream.clone();
    let lease_duration = cfg.leases.duration;
    let tick = lease_duration / 3;

    shard_sync::sync(
        &shared.kinesis,
        &shared.leases,
        &stream,
        cfg.source.initial_position,
    )
    .await?;
    let mut last_sync = Instant::now();
    let mut last_progress = Instant::now();

    let mut held: HashMap<String, Held> = HashMap::new();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut consumers: JoinSet<(String, ShardExit)> = JoinSet::new();
    let mut fatal: Option<String> = None;
    let mut resync = false;

    tracing::info!(worker = %shared.worker, stream = %stream, table = %shared.leases.name(), "worker started");
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => break,
            Some(done) = consumers.join_next() => {
                let (key, exit) = match done {
                    Ok(v) => v,
                    Err(e) => {
                        fatal = Some(format!("a shard consumer panicked: {e}"));
                        break;
                    }
                };
                match exit {
                    ShardExit::ShardEnd => {
                        if let Some(h) = held.remove(&key) {
                            let _ = h.lease.release(&shared.leases, &shared.worker).await;
                        }
                        resync = true; // children may be ready now
                    }
                    ShardExit::LeaseLost => {
                        tracing::warn!(shard = %key, "lease lost");
                        held.remove(&key);
                    }
                    ShardExit::Shutdown => {
                        held.remove(&key);
                    }
                    ShardExit::Failed(why) => {
                        fatal = Some(why);
                        break;
                    }
                }
                continue;
            }
        }

        // Renew what we hold; a lease we could not renew within its duration may already
        // be someone else's, so its shard stops.
        for (key, h) in held.iter_mut() {
            match h.lease.renew(&shared.leases, &shared.worker).await {
                Ok(()) => h.last_renewed = Instant::now(),
                Err(LeaseTableError::Conflict(_)) => {
                    tracing::warn!(shard = %key, "lease taken by another worker");
                }
                Err(e) => {
                    tracing::warn!(shard = %key, error = %e, "lease renewal failed");
                    if h.last_renewed.elapsed() >= lease_duration {
                        tracing::warn!(shard = %key, "lease not renewed within its duration; stopping the shard");
                        h.lease.lost.cancel();
                    }
                }
            }
        }

        if resync || last_sync.elapsed() >= SHARD_SYNC_INTERVAL {
            match shard_sync::sync(
                &shared.kinesis,
                &shared.leases,
                &stream,
                cfg.source.initial_position,
            )
            .await
            {
                Ok(n) if n > 0 => tracing::info!(created = n, "new shards found"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "shard sync failed; will retry"),
            }
            last_sync = Instant::now();
            resync = false;
        }

        // Take leases that are free or expired.
        match shared.leases.list().await {
            Ok(leases) => {
                for lease in leases {
                    if held.contains_key(&lease.key) || lease.checkpoint == Checkpoint::ShardEnd {
                        continue;
                    }
                    if !takeable(&lease, &shared.worker, &mut seen, lease_duration) {
                        continue;
                    }
                    match shared.leases.take(&lease, &shared.worker).await {
                        Ok(counter) => {
                            tracing::info!(shard = %lease.key, previous_owner = ?lease.owner, checkpoint = %lease.checkpoint, "took lease");
                            seen.remove(&lease.key);
                            let hl = HeldLease::new(&lease, counter);
                            let token = shutdown.child_token();
                            consumers.spawn(run_consumer(
                                shared.clone(),
                                hl.clone(),
                                stream.clone(),
                                token.clone(),
                            ));
                            held.insert(
                                lease.key.clone(),
                                Held {
                                    lease: hl,
                                    last_renewed: Instant::now(),
                                    shutdown: token,
                                },
                            );
                        }
                        Err(LeaseTableError::Conflict(_)) => {
                            tracing::debug!(shard = %lease.key, "another worker took the lease first");
                        }
                        Err(e) => {
                            tracing::warn!(shard = %lease.key, error = %e, "cannot take lease")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list leases"),
        }

        if last_progress.elapsed() >= PROGRESS_INTERVAL {
            last_progress = Instant::now();
            tracing::info!(
                shards = held.len(),
                records = shared_stats(&shared).records.load(Ordering::Relaxed),
                deliveries = shared_stats(&shared).deliveries.load(Ordering::Relaxed),
                "progress"
            );
        }
    }

    // Graceful handoff: every shard drains and checkpoints, then its lease is released.
    tracing::info!(
        shards = held.len(),
        "shutting down: draining and checkpointing"
    );
    for h in held.values() {
        h.shutdown.cancel();
    }
    while let Some(done) = consumers.join_next().await {
        if let Ok((key, ShardExit::Failed(why))) = done {
            tracing::error!(shard = %key, "{why}");
            fatal.get_or_insert(why);
        }
    }
    for (key, h) in held {
        match h.lease.release(&shared.leases, &shared.worker).await {
            Ok(()) => tracing::info!(shard = %key, "released lease"),
            Err(e) => {
                tracing::warn!(shard = %key, error = %e, "cannot release lease (it will expire)")
            }
        }
    }
    shared.sinks.close().await;
    match fatal {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

fn shared_stats(shared: &Shared) -> &Stats {
    &shared.stats
}

async fn run_consumer(
    shared: Arc<Shared>,
    lease: Arc<HeldLease>,
    stream: String,
    shutdown: CancellationToken,
) -> (String, ShardExit) {
    let key = lease.key.clone();
    let exit = shard_consumer::run(shared, lease, stream, shutdown).await;
    (key, exit)
}

/// Whether a lease we do not hold may be taken now: unowned, ours from an earlier run with
/// the same worker id, or expired (counter unchanged for the lease duration, on our clock).
fn takeable(
    lease: &Lease,
    worker: &str,
    seen: &mut HashMap<String, Seen>,
    duration: Duration,
) -> bool {
    match lease.owner.as_deref() {
        None => return true,
        Some(o) if o == worker => return true,
        Some(_) => {}
    }
    let now = Instant::now();
    let s = seen.entry(lease.key.clone()).or_insert(Seen {
        counter: lease.counter,
        since: now,
    });
    if s.counter != lease.counter {
        s.counter = lease.counter;
        s.since = now;
        return false;
    }
    now.duration_since(s.since) >= duration
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(counter: i64) -> Lease {
        let mut l = Lease::new("shardId-1", Checkpoint::TrimHorizon, Vec::new());
        l.owner = Some("other".into());
        l.counter = counter;
        l
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_only_after_its_counter_stood_still_for_the_duration() {
        let d = Duration::from_secs(10);
        let mut seen = HashMap::new();
        assert!(
            !takeable(&owned(5), "me", &mut seen, d),
            "first sight starts the clock"
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!takeable(&owned(5), "me", &mut seen, d));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            !takeable(&owned(6), "me", &mut seen, d),
            "renewed: clock restarts"
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!takeable(&owned(6), "me", &mut seen, d));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(takeable(&owned(6), "me", &mut seen, d));
    }

    #[test]
    fn free_and_own_leases_are_takeable_at_once() {
        let mut seen = HashMap::new();
        let mut l = owned(1);
        l.owner = None;
        assert!(takeable(&l, "me", &mut seen, Duration::from_secs(10)));
        l.owner = Some("me".into());
        assert!(takeable(&l, "me", &mut seen, Duration::from_secs(10)));
    }
}
