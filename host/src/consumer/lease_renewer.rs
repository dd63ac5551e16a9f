//! The lease renewer (the KCL's `LeaseRenewer`): renews every lease the worker holds, on a
//! task of its own so that a slow scan or a hung call elsewhere cannot delay renewals, and
//! so that they go on while shards drain at shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::checkpointer::HeldLease;
use super::lease_table::LeaseTableError;
use super::shard_consumer::Shared;

/// The leases the renewer keeps alive, by lease key.
pub(super) type Registry = Arc<std::sync::Mutex<HashMap<String, Arc<HeldLease>>>>;

/// Renews every registered lease each `interval`, each renewal bounded by the interval so
/// an unreachable table cannot pile calls up. A lease that cannot be renewed is stopped by
/// its watchdog ([`HeldLease::spawn_watchdog`]), not here.
pub(super) async fn renewer(
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
