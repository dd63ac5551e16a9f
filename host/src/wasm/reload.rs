//! Hot reload: a new version of a component file replaces the running one without a
//! restart, between two batches.
//!
//! [`Plans`] holds the current [`StagePlan`] with a generation number. The [`watch`] task
//! notices a component file that changed (polled every `wasm.watch_interval`) or is asked
//! by SIGHUP, loads every component again exactly as at start (compile, link, check the
//! stage's export, instantiate once) and publishes the new plan only if all of that
//! succeeded; otherwise it logs why and the running version stays. Each shard consumer
//! compares generations before each batch and instantiates the new plan then, so a batch
//! runs wholly on one version and nothing is read again or skipped because of a reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::engine::WasmEngine;
use super::stages::StagePlan;
use crate::config::Config;

/// The current stage plan and its generation (1 at start, +1 per reload).
#[derive(Debug)]
pub struct Plans {
    current: watch::Sender<(u64, Arc<StagePlan>)>,
}

impl Plans {
    pub fn new(plan: Arc<StagePlan>) -> Self {
        Self {
            current: watch::Sender::new((1, plan)),
        }
    }

    /// The plan in use now, with its generation.
    pub fn current(&self) -> (u64, Arc<StagePlan>) {
        let c = self.current.borrow();
        (c.0, c.1.clone())
    }

    /// The plan, if it is newer than `generation`.
    pub fn newer_than(&self, generation: u64) -> Option<(u64, Arc<StagePlan>)> {
        let c = self.current.borrow();
        (c.0 > generation).then(|| (c.0, c.1.clone()))
    }

    /// Makes `plan` current; returns its generation.
    pub fn publish(&self, plan: Arc<StagePlan>) -> u64 {
        let mut generation = 0;
        self.current.send_modify(|c| {
            c.0 += 1;
            c.1 = plan;
            generation = c.0;
        });
        generation
    }
}

/// What identifies a version of a file without reading it: length and modification time.
type Fingerprint = Option<(u64, SystemTime)>;

fn fingerprints(files: &[PathBuf]) -> Vec<Fingerprint> {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}

/// Listens for SIGHUP; from this call on the signal no longer ends the process (tokio
/// keeps its handler installed), so call it first thing.
pub fn listen_for_hangup() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => {
            tracing::debug!("listening for SIGHUP: it reloads the components");
            Some(s)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: components reload on file change only");
            None
        }
    }
}

/// Reloads the config's components when their files change (every `interval`; `None`: only
/// on SIGHUP) or on `hangup` (see [`listen_for_hangup`]), until `shutdown`.
pub async fn watch(
    plans: Arc<Plans>,
    engine: WasmEngine,
    config: Arc<Config>,
    interval: Option<Duration>,
    mut hangup: Option<tokio::signal::unix::Signal>,
    shutdown: CancellationToken,
) {
    let files: Vec<PathBuf> = config
        .stage_configs()
        .into_iter()
        .map(|(_, s)| config.resolve(&s.component))
        .collect();
    // The version last tried (published or rejected): a rejected file is not tried again
    // until it changes.
    let mut tried = fingerprints(&files);
    loop {
        let poll = async {
            match interval {
                Some(i) => tokio::time::sleep(i).await,
                None => std::future::pending().await,
            }
        };
        let hup = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let requested = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = poll => false,
            _ = hup => true,
        };
        let now = fingerprints(&files);
        if !requested && now == tried {
            continue;
        }
        if requested {
            tracing::info!("SIGHUP: reloading components");
        }
        tried = now;
        let (engine, cfg) = (engine.clone(), config.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            let plan = StagePlan::load(&engine, &cfg).and_then(|plan| {
                // Instantiating once runs the component's start code: what fails there
                // fails now, not in a shard.
                plan.instantiate()?;
                Ok::<_, super::WasmError>(plan)
            });
            // The compiler ran for this reload only, as it did at start-up.
            crate::code_pages::release_after("the reload");
            plan
        })
        .await;
        match loaded {
            Ok(Ok(plan)) => {
                let described = plan.describe().join("; ");
                let generation = plans.publish(Arc::new(plan));
                tracing::info!(
                    generation,
                    "reloaded components, in use from each shard's next batch: {described}"
                );
            }
            Ok(Err(e)) => tracing::error!(
                "rejected the new version of a component, the running version stays: {e}"
            ),
            Err(e) => tracing::error!("component reload panicked, the running version stays: {e}"),
        }
    }
}
