//! The coordinator (the KCL's Scheduler): keeps the lease table in step with the stream,
//! renews the leases this worker holds, takes leases that are free or expired, asks for
//! stolen ones in a [graceful handoff](super::lease_handoff), runs one shard consumer per
//! held lease, and on shutdown lets every shard drain and checkpoint before handing its
//! lease to the least loaded live worker (or releasing it) so another worker reads on at
//! once.
//!
//! Expiry is judged on the local monotonic clock: a lease whose `leaseCounter` has not
//! moved for `leases.duration` since this worker first saw that value is expired. No clock
//! synchronisation between workers is needed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpointer::HeldLease;
use super::lease_handoff;
use super::lease_renewer::{renewer, Registry};
use super::lease_table::LeaseTableError;
use super::lease_taker::{LeaseTaker, Reason};
use super::retrieval::consumer_registration::deregister;
use super::retrieval::ConsumerRegistration;
use super::shard_consumer::{self, ShardExit, Shared};
use super::shard_sync;
use crate::config::{RetrievalMode, StreamSpec};

struct Held {
    lease: Arc<HeldLease>,
    shutdown: CancellationToken,
}

/// Runs the worker until `shutdown` is cancelled (graceful) or a shard fails fatally.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg = shared.config.clone();
    let streams = cfg.streams();
    for spec in &streams {
        shard_sync::sync(&shared.kinesis, &shared.leases, spec).await?;
    }
    let registrations = register_fan_out(&shared, &streams).await?;
    tracing::info!(worker = %shared.worker, streams = %streams.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(","), table = %shared.leases.name(), "worker started");
    let mut worker = Worker::new(shared.clone(), streams, registrations, shutdown);
    // Renewals run in their own task: a slow scan or a hung call in this loop must not
    // delay them, and they go on while shards drain at shutdown.
    let renewer_stop = CancellationToken::new();
    let renewer = tokio::spawn(renewer(
        shared.clone(),
        worker.registry.clone(),
        cfg.leases.renew_interval(),
        renewer_stop.clone(),
    ));
    let fatal = worker.lead().await;
    let fatal = worker.hand_over(fatal).await;
    renewer_stop.cancel();
    let _ = renewer.await;
    if cfg.source.fan_out.deregister_on_shutdown
        && fatal.is_none()
        && !worker.registrations.is_empty()
    {
        deregister_if_last(&shared, &worker.streams, &worker.registrations).await;
    }
    shared.sinks.close().await;
    match fatal {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

/// Enhanced fan-out: the application's consumer on each such stream, ACTIVE before any
/// shard is read (a worker that cannot register it says so now, not per shard).
async fn register_fan_out(
    shared: &Shared,
    streams: &[StreamSpec],
) -> anyhow::Result<HashMap<String, Arc<ConsumerRegistration>>> {
    let mut registrations = HashMap::new();
    for spec in streams
        .iter()
        .filter(|s| s.retrieval == RetrievalMode::FanOut)
    {
        let r = Arc::new(ConsumerRegistration::new(
            shared.kinesis.clone(),
            &spec.name,
            shared.config.fan_out_consumer(),
        ));
        r.arn().await?;
        registrations.insert(spec.name.clone(), r);
    }
    Ok(registrations)
}

/// The worker while it runs: the leases it holds and their shard consumers.
struct Worker {
    shared: Arc<Shared>,
    streams: Vec<StreamSpec>,
    registrations: HashMap<String, Arc<ConsumerRegistration>>,
    held: HashMap<String, Held>,
    /// The held leases, for the renewer.
    registry: Registry,
    consumers: JoinSet<(String, ShardExit)>,
    taker: LeaseTaker,
    /// How long a lease may go unrenewed before its shard stops.
    stop_after: Duration,
    /// Steals are graceful handoffs (`leases.graceful_handoff_timeout` is not zero).
    graceful: bool,
    shutdown: CancellationToken,
}

impl Worker {
    fn new(
        shared: Arc<Shared>,
        streams: Vec<StreamSpec>,
        registrations: HashMap<String, Arc<ConsumerRegistration>>,
        shutdown: CancellationToken,
    ) -> Self {
        let leases = &shared.config.leases;
        // Another worker can take a lease `leases.duration` after the last renewal it saw,
        // at the earliest when that renewal was written; our clock starts when we sent it.
        // Stop a shard whose lease went unrenewed for all but a margin of that, so it is
        // never processed by two workers at once.
        let margin = (leases.renew_interval() / 2).max(Duration::from_millis(250));
        let taker = LeaseTaker::with_handoff_timeout(
            &shared.worker,
            leases.duration,
            leases.max_per_worker,
            leases.max_steal,
            leases.graceful_handoff_timeout,
        );
        Self {
            stop_after: leases.duration.saturating_sub(margin),
            graceful: !leases.graceful_handoff_timeout.is_zero(),
            taker,
            shared,
            streams,
            registrations,
            held: HashMap::new(),
            registry: Registry::default(),
            consumers: JoinSet::new(),
            shutdown,
        }
    }

    /// Keeps the lease table in step with the streams and takes leases every
    /// `leases.take_interval` (and those handed to this worker every
    /// `leases.assignment_check_interval`), until shutdown (`None`) or a fatal shard error
    /// (`Some`).
    async fn lead(&mut self) -> Option<String> {
        let cfg = self.shared.config.clone();
        let shutdown = self.shutdown.clone();
        let mut take_timer = tokio::time::interval(cfg.leases.take_interval());
        take_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut assignment_timer = tokio::time::interval(cfg.leases.assignment_check_interval);
        assignment_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sync = Instant::now();
        let mut resync = false;
        loop {
            tokio::select! {
                _ = take_timer.tick() => {}
                _ = assignment_timer.tick() => {
                    self.take_assigned().await;
                    continue;
                }
                _ = shutdown.cancelled() => return None,
                Some(done) = self.consumers.join_next() => {
                    match self.ended(done).await {
                        Ok(ended_shard) => resync |= ended_shard,
                        Err(fatal) => return Some(fatal),
                    }
                    continue;
                }
            }
            if resync || last_sync.elapsed() >= cfg.leases.shard_sync_interval {
                self.sync_shards().await;
                last_sync = Instant::now();
                resync = false;
            }
            self.take_leases().await;
            crate::consumer::metrics::LeaseMetrics::of(&self.shared.worker)
                .current
                .set(self.held.len() as i64);
        }
    }

    /// A shard consumer ended: its lease is released or forgotten. `Ok(true)` at a shard
    /// end (its children may be ready now); `Err` is fatal for the worker.
    async fn ended(
        &mut self,
        done: Result<(String, ShardExit), tokio::task::JoinError>,
    ) -> Result<bool, String> {
        let (key, exit) = done.map_err(|e| format!("a shard consumer panicked: {e}"))?;
        match exit {
            ShardExit::ShardEnd => {
                if let Some(h) = forget(&mut self.held, &self.registry, &key) {
                    let _ = h
                        .lease
                        .release(&self.shared.leases, &self.shared.worker)
                        .await;
                }
                return Ok(true);
            }
            ShardExit::LeaseLost => {
                crate::consumer::metrics::LeaseMetrics::of(&self.shared.worker)
                    .lost
                    .inc();
                tracing::warn!(shard = %key, "lease lost");
                forget(&mut self.held, &self.registry, &key);
            }
            ShardExit::Shutdown => {
                // Drained and checkpointed for a graceful handoff: hand the lease over now.
                // (Shutdown may also reach a consumer before this loop sees it.)
                if let Some(h) = forget(&mut self.held, &self.registry, &key) {
                    give_up(&self.shared, &key, &h.lease, None).await;
                }
            }
            ShardExit::Failed(why) => return Err(why.to_string()),
        }
        Ok(false)
    }

    /// Creates leases for new shards of every stream.
    async fn sync_shards(&self) {
        for spec in &self.streams {
            match shard_sync::sync(&self.shared.kinesis, &self.shared.leases, spec).await {
                Ok(n) if n > 0 => {
                    tracing::info!(stream = %spec.name, created = n, "new shards found")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "shard sync failed; will retry"),
            }
        }
    }

    /// Takes what balancing says: free and expired leases first, then steals.
    async fn take_leases(&mut self) {
        let mut leases = match self.shared.leases.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list leases");
                return;
            }
        };
        crate::health::readiness().leasing();
        // Leases of streams this config does not read (any more) are not ours to balance
        // or take.
        leases.retain(|l| stream_of(&self.streams, &l.key).is_some());
        if let Err(e) = shard_sync::clean_up_parents(&self.shared.leases, &leases).await {
            tracing::warn!(error = %e, "parent lease cleanup failed; will retry");
        }
        let keys = self.held.keys().cloned().collect();
        let plan = self.taker.plan(&leases, &keys, Instant::now());
        self.take(plan).await;
    }

    /// The quick check between taking rounds: takes the leases handed to this worker
    /// (a graceful handoff it asked for that completed, or a stopping worker's lease).
    async fn take_assigned(&mut self) {
        let mut owned = match self.shared.leases.owned_by(&self.shared.worker).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot look for leases handed to this worker");
                return;
            }
        };
        let keys: HashSet<String> = self.held.keys().cloned().collect();
        owned.retain(|l| stream_of(&self.streams, &l.key).is_some());
        let plan = self.taker.plan_assigned(&owned, &keys, Instant::now());
        self.take(plan).await;
    }

    /// Takes (or, for a steal with graceful handoff on, asks for) each planned lease.
    async fn take(&mut self, plan: Vec<(super::lease::Lease, Reason)>) {
        for (lease, reason) in plan {
            let Some(spec) = stream_of(&self.streams, &lease.key).cloned() else {
                continue;
            };
            if reason == Reason::Stolen && self.graceful {
                self.ask_for(&lease).await;
                continue;
            }
            let sent = Instant::now();
            match self.shared.leases.take(&lease, &self.shared.worker).await {
                Ok(counter) => {
                    tracing::info!(shard = %lease.key, previous_owner = ?lease.owner, checkpoint_owner = ?lease.checkpoint_owner, ?reason, checkpoint = %lease.checkpoint, "took lease");
                    crate::consumer::metrics::LeaseMetrics::of(&self.shared.worker)
                        .took(reason == Reason::Stolen);
                    self.start(HeldLease::new(&lease, counter, sent), spec);
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

    /// A steal as a graceful handoff: marks the lease for this worker; its owner hands it
    /// over after its final checkpoint, and the assignment check takes it then.
    async fn ask_for(&mut self, lease: &super::lease::Lease) {
        match self
            .shared
            .leases
            .mark_handoff(lease, &self.shared.worker)
            .await
        {
            Ok(()) => {
                tracing::info!(shard = %lease.key, owner = ?lease.owner, reason = ?Reason::Stolen,
                    "asked for lease (graceful handoff)");
                crate::consumer::metrics::LeaseMetrics::of(&self.shared.worker).took(true);
                self.taker.marked(lease, Instant::now());
            }
            Err(LeaseTableError::Conflict(_)) => {
                tracing::debug!(shard = %lease.key, "another worker changed the lease first");
            }
            Err(e) => tracing::warn!(shard = %lease.key, error = %e, "cannot ask for lease"),
        }
    }

    /// Starts the shard consumer of a lease just taken, and its watchdog and renewals.
    /// A graceful handoff asked for later stops the consumer (drain, final checkpoint).
    fn start(&mut self, lease: Arc<HeldLease>, spec: StreamSpec) {
        lease.spawn_watchdog(self.stop_after);
        if let Ok(mut r) = self.registry.lock() {
            r.insert(lease.key.clone(), lease.clone());
        }
        let token = self.shutdown.child_token();
        {
            let (lease, token) = (lease.clone(), token.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = lease.handoff_requested() => token.cancel(),
                    _ = token.cancelled() => {}
                    _ = lease.lost.cancelled() => {}
                }
            });
        }
        self.consumers.spawn(run_consumer(
            self.shared.clone(),
            lease.clone(),
            spec.clone(),
            self.registrations.get(&spec.name).cloned(),
            token.clone(),
        ));
        self.held.insert(
            lease.key.clone(),
            Held {
                lease,
                shutdown: token,
            },
        );
    }

    /// Graceful shutdown: every shard drains and checkpoints, and as each one is done its
    /// lease is handed to the least loaded other live worker (which notices at its next
    /// assignment check), or released when there is none. Returns the first fatal error,
    /// `fatal` or one a shard met while stopping.
    async fn hand_over(&mut self, mut fatal: Option<String>) -> Option<String> {
        tracing::info!(
            shards = self.held.len(),
            "shutting down: draining and checkpointing"
        );
        for h in self.held.values() {
            h.shutdown.cancel();
        }
        let mut receivers = self.receivers().await;
        while let Some(done) = self.consumers.join_next().await {
            let (key, exit) = match done {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!("a shard consumer panicked: {e}");
                    continue;
                }
            };
            let Some(h) = forget(&mut self.held, &self.registry, &key) else {
                continue;
            };
            match exit {
                ShardExit::LeaseLost => tracing::warn!(shard = %key, "lease lost"),
                // Finished: nobody is to read it again; released for the parent cleanup.
                ShardExit::ShardEnd => release(&self.shared, &key, &h.lease).await,
                ShardExit::Shutdown | ShardExit::Failed(_) => {
                    if let ShardExit::Failed(why) = exit {
                        tracing::error!(shard = %key, "{why}");
                        fatal.get_or_insert(why.to_string());
                    }
                    let to = receivers.remove(&key).flatten();
                    give_up(&self.shared, &key, &h.lease, to.as_deref()).await;
                }
            }
        }
        for (key, h) in std::mem::take(&mut self.held) {
            if let Ok(mut r) = self.registry.lock() {
                r.remove(&key);
            }
            give_up(&self.shared, &key, &h.lease, None).await;
        }
        self.release_unstarted().await;
        fatal
    }

    /// Leases handed to this worker (by another one stopping) that it had not started
    /// yet: released, so they are not left to expire under a worker that is gone. A lease
    /// whose handoff to this worker is still pending stays: its owner is processing it.
    async fn release_unstarted(&self) {
        let me = self.shared.worker.as_str();
        let Ok(leases) = self.shared.leases.owned_by(me).await else {
            return;
        };
        for l in leases
            .iter()
            .filter(|l| l.checkpoint_owner.is_none() && stream_of(&self.streams, &l.key).is_some())
        {
            match self.shared.leases.release(&l.key, me, l.counter).await {
                Ok(()) => {
                    tracing::info!(shard = %l.key, "released a lease handed to this worker before it started it")
                }
                Err(e) => {
                    tracing::debug!(shard = %l.key, error = %e, "cannot release a lease handed to this worker")
                }
            }
        }
    }

    /// Who receives each held lease at shutdown ([`lease_handoff::receivers`]), from one
    /// scan of the lease table; empty (release them all) when it cannot be read.
    async fn receivers(&mut self) -> HashMap<String, Option<String>> {
        let mut leases = match self.shared.leases.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the lease table; releasing the leases");
                return HashMap::new();
            }
        };
        leases.retain(|l| stream_of(&self.streams, &l.key).is_some());
        let loads = self.taker.live_loads(&leases, Instant::now());
        let held: Vec<(String, Option<String>)> = self
            .held
            .iter()
            .map(|(k, h)| (k.clone(), h.lease.handoff_to()))
            .collect();
        lease_handoff::receivers(&held, loads, self.shared.config.leases.max_per_worker)
            .into_iter()
            .collect()
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

/// Releases a finished lease (owner and any pending handoff removed).
async fn release(shared: &Shared, key: &str, lease: &HeldLease) {
    match lease.release(&shared.leases, &shared.worker).await {
        Ok(()) => tracing::info!(shard = %key, "released lease"),
        Err(e) => tracing::warn!(shard = %key, error = %e, "cannot release lease (it will expire)"),
    }
}

/// Gives a drained, checkpointed lease up so another worker reads on at once: to the
/// worker a pending graceful handoff is for, else to `to`, else released.
async fn give_up(shared: &Shared, key: &str, lease: &HeldLease, to: Option<&str>) {
    match lease.give_up(&shared.leases, &shared.worker, to).await {
        Ok(Some(to)) => {
            tracing::info!(shard = %key, %to, checkpoint = %lease.checkpoint(), "released lease: handed over")
        }
        Ok(None) => {
            tracing::info!(shard = %key, checkpoint = %lease.checkpoint(), "released lease")
        }
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
