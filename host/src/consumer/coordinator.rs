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

use super::lease_table::LeaseTableError;
use super::lease_taker::{LeaseTaker, Reason};
use super::retrieval::consumer_registration::deregister;
use super::retrieval::ConsumerRegistration;
use super::shard_consumer::{self, HeldLease, ShardExit, Shared};
use super::shard_sync;
use crate::config::{RetrievalMode, StreamSpec};

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
    shutdown: CancellationToken,
}

/// The leases the renewer keeps alive.
type Registry = Arc<std::sync::Mutex<HashMap<String, Arc<HeldLease>>>>;

/// Runs the worker until `shutdown` is cancelled (graceful) or a shard fails fatally.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg = shared.config.clone();
    let streams = cfg.streams();
    let lease_duration = cfg.leases.duration;
    let renew_interval = cfg.leases.renew_interval();
    // Another worker can take a lease `lease_duration` after the last renewal it saw, at
    // the earliest when that renewal was written; our clock starts when we sent it. Stop a
    // shard whose lease went unrenewed for all but a margin of that, so it is never
    // processed by two workers at once.
    let margin = (renew_interval / 2).max(Duration::from_millis(250));
    let stop_after = lease_duration.saturating_sub(margin);

    for spec in &streams {
        shard_sync::sync(&shared.kinesis, &shared.leases, spec).await?;
    }
    // Enhanced fan-out: the application's consumer on each such stream, ACTIVE before
    // any shard is read (a worker that cannot register it says so now, not per shard).
    let mut registrations: HashMap<String, Arc<ConsumerRegistration>> = HashMap::new();
    for spec in streams
        .iter()
        .filter(|s| s.retrieval == RetrievalMode::FanOut)
    {
        let r = Arc::new(ConsumerRegistration::new(
            shared.kinesis.clone(),
            &spec.name,
            cfg.fan_out_consumer(),
        ));
        r.arn().await?;
        registrations.insert(spec.name.clone(), r);
    }
    let mut last_sync = Instant::now();
    let mut last_progress = Instant::now();

    let mut held: HashMap<String, Held> = HashMap::new();
    let mut taker = LeaseTaker::new(
        &shared.worker,
        lease_duration,
        cfg.leases.max_per_worker,
        cfg.leases.max_steal,
    );
    let mut consumers: JoinSet<(String, ShardExit)> = JoinSet::new();
    let mut fatal: Option<String> = None;
    let mut resync = false;

    tracing::info!(worker = %shared.worker, streams = %streams.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(","), table = %shared.leases.name(), "worker started");
    // Renewals run in their own task: a slow scan or a hung call in this loop must not
    // delay them, and they go on while shards drain at shutdown.
    let registry: Registry = Arc::default();
    let renewer_stop = CancellationToken::new();
    let renewer = tokio::spawn(renewer(
        shared.clone(),
        registry.clone(),
        renew_interval,
        renewer_stop.clone(),
    ));
    let mut take_timer = tokio::time::interval(cfg.leases.take_interval());
    take_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = take_timer.tick() => {}
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
                        if let Some(h) = forget(&mut held, &registry, &key) {
                            let _ = h.lease.release(&shared.leases, &shared.worker).await;
                        }
                        resync = true; // children may be ready now
                    }
                    ShardExit::LeaseLost => {
                        crate::consumer::metrics::LeaseMetrics::of(&shared.worker).lost.inc();
                        tracing::warn!(shard = %key, "lease lost");
                        forget(&mut held, &registry, &key);
                    }
                    ShardExit::Shutdown => {
                        // Drained and checkpointed: hand the lease over now. (Shutdown
                        // may reach a consumer before this loop sees it.)
                        if let Some(h) = forget(&mut held, &registry, &key) {
                            release(&shared, &key, &h.lease).await;
                        }
                    }
                    ShardExit::Failed(why) => {
                        fatal = Some(why.to_string());
                        break;
                    }
                }
                continue;
            }
        }

        if resync || last_sync.elapsed() >= cfg.leases.shard_sync_interval {
            for spec in &streams {
                match shard_sync::sync(&shared.kinesis, &shared.leases, spec).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(stream = %spec.name, created = n, "new shards found")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "shard sync failed; will retry"),
                }
            }
            last_sync = Instant::now();
            resync = false;
        }

        // Take what balancing says: free and expired leases first, then steal.
        match shared.leases.list().await {
            Ok(mut leases) => {
                crate::health::readiness().leasing();
                // Leases of streams this config does not read (any more) are not ours to
                // balance or take.
                leases.retain(|l| stream_of(&streams, &l.key).is_some());
                if let Err(e) = shard_sync::clean_up_parents(&shared.leases, &leases).await {
                    tracing::warn!(error = %e, "parent lease cleanup failed; will retry");
                }
                let keys = held.keys().cloned().collect();
                for (lease, reason) in taker.plan(&leases, &keys, Instant::now()) {
                    let Some(spec) = stream_of(&streams, &lease.key) else {
                        continue;
                    };
                    let sent = Instant::now();
                    match shared.leases.take(&lease, &shared.worker).await {
                        Ok(counter) => {
                            tracing::info!(shard = %lease.key, previous_owner = ?lease.owner, ?reason, checkpoint = %lease.checkpoint, "took lease");
                            crate::consumer::metrics::LeaseMetrics::of(&shared.worker)
                                .took(reason == Reason::Stolen);
                            let hl = HeldLease::new(&lease, counter, sent);
                            hl.spawn_watchdog(stop_after);
                            if let Ok(mut r) = registry.lock() {
                                r.insert(lease.key.clone(), hl.clone());
                            }
                            let token = shutdown.child_token();
                            consumers.spawn(run_consumer(
                                shared.clone(),
                                hl.clone(),
                                spec.clone(),
                                registrations.get(&spec.name).cloned(),
                                token.clone(),
                            ));
                            held.insert(
                                lease.key.clone(),
                                Held {
                                    lease: hl,
                                    shutdown: token,
                                },
                            );
                        }
                        Err(LeaseTableError::Conflict(_)) => {
                            tracing::debug!(shard = %lease.key, "another worker changed the lease first");
                        }
                        Err(e) => {
                            tracing::warn!(shard = %lease.key, error = %e, "cannot take lease")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list leases"),
        }

        crate::consumer::metrics::LeaseMetrics::of(&shared.worker)
            .current
            .set(held.len() as i64);
        if last_progress.elapsed() >= PROGRESS_INTERVAL {
            last_progress = Instant::now();
            tracing::info!(
                shards = held.len(),
                records = shared.stats.records.load(Ordering::Relaxed),
                deliveries = shared.stats.deliveries.load(Ordering::Relaxed),
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
            fatal.get_or_insert(why.to_string());
        }
    }
    for (key, h) in held {
        if let Ok(mut r) = registry.lock() {
            r.remove(&key);
        }
        release(&shared, &key, &h.lease).await;
    }
    renewer_stop.cancel();
    let _ = renewer.await;
    if cfg.source.fan_out.deregister_on_shutdown && fatal.is_none() && !registrations.is_empty() {
        deregister_if_last(&shared, &streams, &registrations).await;
    }
    shared.sinks.close().await;
    match fatal {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

/// On a clean shutdown with `fan_out.deregister_on_shutdown`: deregisters the fan-out
/// consumers when no worker of the application holds a lease of their streams any more.
/// A worker that crashed still owns its leases until one takes them over, so a crash
/// keeps the consumer registered (billed, but never pulled from under a live worker; a
/// worker that starts while this one deregisters registers it again).
async fn deregister_if_last(
    shared: &Shared,
    streams: &[StreamSpec],
    registrations: &HashMap<String, Arc<ConsumerRegistration>>,
) {
    let leases = match shared.leases.list().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the lease table; fan-out consumers stay registered");
            return;
        }
    };
    for (stream, r) in registrations {
        let owner = leases.iter().find_map(|l| {
            let s = stream_of(streams, &l.key)?;
            (&s.name == stream).then_some(l.owner.as_deref()).flatten()
        });
        if let Some(owner) = owner {
            tracing::info!(%stream, consumer = %r.name(), %owner,
                "another worker still holds leases; the fan-out consumer stays registered");
            continue;
        }
        if let Err(e) = deregister(&shared.kinesis, stream, r.name()).await {
            tracing::warn!(error = %e, "cannot deregister the fan-out consumer");
        }
    }
}

/// Gives a drained, checkpointed lease up so another worker takes it at once.
async fn release(shared: &Shared, key: &str, lease: &HeldLease) {
    match lease.release(&shared.leases, &shared.worker).await {
        Ok(()) => tracing::info!(shard = %key, "released lease"),
        Err(e) => tracing::warn!(shard = %key, error = %e, "cannot release lease (it will expire)"),
    }
}

/// The configured stream a lease key belongs to: `stream:shard` with several streams, a
/// bare shard id with one.
fn stream_of<'a>(streams: &'a [StreamSpec], key: &str) -> Option<&'a StreamSpec> {
    match key.split_once(':') {
        Some((name, _)) => streams
            .iter()
            .find(|s| s.lease_prefix.is_some() && s.name == name),
        None => streams.iter().find(|s| s.lease_prefix.is_none()),
    }
}

fn forget(held: &mut HashMap<String, Held>, registry: &Registry, key: &str) -> Option<Held> {
    if let Ok(mut r) = registry.lock() {
        r.remove(key);
    }
    held.remove(key)
}

/// Renews every registered lease each `interval`, each renewal bounded by the interval so
/// an unreachable table cannot pile calls up. A lease that cannot be renewed is stopped by
/// its watchdog ([`HeldLease::spawn_watchdog`]), not here.
async fn renewer(
    shared: Arc<Shared>,
    registry: Registry,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = stop.cancelled() => return,
        }
        let leases: Vec<Arc<HeldLease>> = match registry.lock() {
            Ok(r) => r.values().cloned().collect(),
            Err(_) => return,
        };
        let shared = &shared;
        let renewals = leases.iter().map(|l| async move {
            let r = tokio::time::timeout(interval, l.renew(&shared.leases, &shared.worker)).await;
            (l, r)
        });
        for (lease, result) in futures::future::join_all(renewals).await {
            if !matches!(result, Ok(Ok(()))) {
                crate::consumer::metrics::LeaseMetrics::of(&shared.worker)
                    .renew_failures
                    .inc();
            }
            match result {
                Ok(Ok(())) => {}
                Ok(Err(LeaseTableError::Conflict(_))) => {
                    tracing::warn!(shard = %lease.key, "lease taken by another worker; stopping the shard");
                }
                Ok(Err(e)) => {
                    tracing::warn!(shard = %lease.key, error = %e, "lease renewal failed")
                }
                Err(_) => {
                    tracing::warn!(shard = %lease.key, "lease renewal got no answer within {interval:?}")
                }
            }
        }
    }
}

async fn run_consumer(
    shared: Arc<Shared>,
    lease: Arc<HeldLease>,
    stream: StreamSpec,
    fan_out: Option<Arc<ConsumerRegistration>>,
    shutdown: CancellationToken,
) -> (String, ShardExit) {
    let key = lease.key.clone();
    let exit = shard_consumer::run(shared, lease, stream, fan_out, shutdown).await;
    (key, exit)
}
