//! The checkpointer: a lease this worker holds, through which the shard consumer writes
//! its checkpoints (the KCL's `ShardRecordProcessorCheckpointer`) and the lease renewer
//! keeps it alive. Both move `leaseCounter`, so they take turns; a conflict on either
//! means another worker took the lease, and the shard stops at once. A watchdog stops the
//! shard when renewals fail for too long. A renewal may also answer that another worker
//! asked for the lease in a [graceful handoff](super::lease_handoff): the shard then
//! drains, checkpoints and hands the lease over ([`HeldLease::give_up`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::Checkpoint;
use super::lease::Lease;
use super::lease_table::{LeaseTable, LeaseTableError, Renewed};
use crate::sinks::sequence::{Outputs, Store};

/// A lease this worker holds. Renewals and checkpoints both move `leaseCounter`, so they
/// take turns through `counter`.
///
/// The last checkpoint and renewal are kept in watch channels: a value replaced whole,
/// read without a lock that a panic elsewhere could poison.
#[derive(Debug)]
pub struct HeldLease {
    pub key: String,
    pub parents: Vec<String>,
    counter: tokio::sync::Mutex<i64>,
    checkpoint: watch::Sender<Checkpoint>,
    /// The output sequence stored with that checkpoint.
    outputs: watch::Sender<Outputs>,
    /// When the last successful renewal (or the take) was sent.
    renewed_at: watch::Sender<Instant>,
    /// Cancelled when the lease is lost; the shard stops at once.
    pub lost: CancellationToken,
    /// The worker a graceful handoff asked this lease for (this worker is its
    /// `checkpointOwner`), once a renewal saw it.
    handoff_to: watch::Sender<Option<String>>,
}

impl HeldLease {
    /// A lease just taken with `counter`; `sent` is when the take was sent.
    pub fn new(lease: &Lease, counter: i64, sent: Instant) -> Arc<Self> {
        Arc::new(Self {
            key: lease.key.clone(),
            parents: lease.parents.clone(),
            counter: tokio::sync::Mutex::new(counter),
            checkpoint: watch::Sender::new(lease.checkpoint.clone()),
            outputs: watch::Sender::new(lease.outputs.clone()),
            renewed_at: watch::Sender::new(sent),
            lost: CancellationToken::new(),
            handoff_to: watch::Sender::new(None),
        })
    }

    /// The worker a pending graceful handoff is for, if one was seen.
    pub fn handoff_to(&self) -> Option<String> {
        self.handoff_to.borrow().clone()
    }

    /// Resolves when a graceful handoff of this lease is asked for.
    pub async fn handoff_requested(&self) {
        let mut rx = self.handoff_to.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }

    fn renewed_at(&self) -> Instant {
        *self.renewed_at.borrow()
    }

    /// Stops the shard when the lease went unrenewed for `stop_after`: another worker
    /// counts expiry from the last renewal it saw, which was written after we sent it, so
    /// stopping before `leases.duration` has passed since sending means the shard is never
    /// processed by two workers at once.
    pub fn spawn_watchdog(self: &Arc<Self>, stop_after: Duration) {
        let lease = self.clone();
        tokio::spawn(async move {
            loop {
                let deadline = lease.renewed_at() + stop_after;
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = lease.lost.cancelled() => return,
                }
                let unrenewed = lease.renewed_at().elapsed();
                if unrenewed >= stop_after {
                    tracing::warn!(shard = %lease.key, unrenewed_ms = unrenewed.as_millis() as u64,
                        "lease not renewed in time; stopping the shard before another worker can take it");
                    lease.lost.cancel();
                    return;
                }
            }
        });
    }

    /// The last checkpoint written (or read when the lease was taken).
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint.borrow().clone()
    }

    /// The output sequence stored with [`Self::checkpoint`].
    pub fn outputs(&self) -> Outputs {
        self.outputs.borrow().clone()
    }

    pub async fn renew(&self, table: &LeaseTable, worker: &str) -> Result<(), LeaseTableError> {
        let mut counter = self.counter.lock().await;
        if self.lost.is_cancelled() {
            return Err(LeaseTableError::Conflict(self.key.clone()));
        }
        let sent = Instant::now();
        match table.renew(&self.key, worker, *counter).await {
            Ok(Renewed {
                counter: next,
                handoff_to,
            }) => {
                *counter = next;
                self.renewed_at.send_replace(sent);
                if let Some(to) = handoff_to {
                    if self.handoff_to.borrow().as_deref() != Some(to.as_str()) {
                        tracing::info!(shard = %self.key, to = %to,
                            "lease handoff requested: stopping the shard to hand it over after its final checkpoint");
                        self.handoff_to.send_replace(Some(to));
                    }
                }
                Ok(())
            }
            Err(e) => {
                if matches!(e, LeaseTableError::Conflict(_)) {
                    self.lost.cancel();
                }
                Err(e)
            }
        }
    }

    /// Writes `cp` if the lease is still ours, with the output sequence at `cp` when a
    /// sink deduplicates. A conflict means the lease is lost.
    pub async fn write_checkpoint(
        &self,
        table: &LeaseTable,
        worker: &str,
        cp: &Checkpoint,
        outputs: Option<Outputs>,
    ) -> Result<(), LeaseTableError> {
        self.write(table, worker, cp, &[], outputs).await
    }

    /// As [`Self::write_checkpoint`], recording child shard ids (at shard end).
    pub async fn write_checkpoint_with_children(
        &self,
        table: &LeaseTable,
        worker: &str,
        cp: &Checkpoint,
        child_shards: &[String],
    ) -> Result<(), LeaseTableError> {
        self.write(table, worker, cp, child_shards, None).await
    }

    async fn write(
        &self,
        table: &LeaseTable,
        worker: &str,
        cp: &Checkpoint,
        child_shards: &[String],
        outputs: Option<Outputs>,
    ) -> Result<(), LeaseTableError> {
        // Children are lease keys: `stream:` prefixed like this lease when it is.
        let prefix = self.key.split_once(':').map(|(s, _)| format!("{s}:"));
        let children: Vec<String> = child_shards
            .iter()
            .map(|c| format!("{}{c}", prefix.as_deref().unwrap_or("")))
            .collect();
        let mut counter = self.counter.lock().await;
        if self.lost.is_cancelled() {
            return Err(LeaseTableError::Conflict(self.key.clone()));
        }
        match table
            .checkpoint(&self.key, worker, *counter, cp, &children, outputs.as_ref())
            .await
        {
            Ok(next) => {
                *counter = next;
                self.checkpoint.send_replace(cp.clone());
                if let Some(o) = outputs {
                    self.outputs.send_replace(o);
                }
                Ok(())
            }
            Err(e) => {
                if matches!(e, LeaseTableError::Conflict(_)) {
                    self.lost.cancel();
                }
                Err(e)
            }
        }
    }

    /// Gives the lease up so another worker can take it at once.
    pub async fn release(&self, table: &LeaseTable, worker: &str) -> Result<(), LeaseTableError> {
        let counter = self.counter.lock().await;
        if self.lost.is_cancelled() {
            return Ok(());
        }
        let r = table.release(&self.key, worker, *counter).await;
        self.lost.cancel();
        r
    }

    /// Gives a drained, checkpointed lease up: to the worker a pending graceful handoff
    /// is for, else to `to` (a live worker chosen at shutdown), else released for anyone.
    /// A handoff asked for since the last renewal makes the plain release fail its
    /// condition; the lease is then read again and the handoff completed. Answers who got
    /// the lease (`None`: released).
    pub async fn give_up(
        &self,
        table: &LeaseTable,
        worker: &str,
        to: Option<&str>,
    ) -> Result<Option<String>, LeaseTableError> {
        let counter = self.counter.lock().await;
        if self.lost.is_cancelled() {
            return Err(LeaseTableError::Conflict(self.key.clone()));
        }
        let target = self.handoff_to().or_else(|| to.map(str::to_string));
        let r = match &target {
            Some(t) => table.hand_off(&self.key, worker, *counter, t).await,
            None => table.release(&self.key, worker, *counter).await,
        };
        let r = match r {
            Err(LeaseTableError::Conflict(_)) => match table.get(&self.key).await {
                // Marked since our last renewal: hand it to the worker that asked.
                Ok(Some(l))
                    if l.counter == *counter
                        && l.checkpoint_owner.as_deref() == Some(worker)
                        && l.owner.is_some() =>
                {
                    let next = l.owner.unwrap_or_default();
                    table
                        .hand_off(&self.key, worker, *counter, &next)
                        .await
                        .map(|()| Some(next))
                }
                _ => Err(LeaseTableError::Conflict(self.key.clone())),
            },
            other => other.map(|()| target),
        };
        self.lost.cancel();
        r
    }
}

/// A held lease as the [store](Store) of its shard's output sequence: a reservation is
/// written with the lease's current checkpoint, conditional on still holding it.
#[derive(Debug)]
pub struct LeaseStore {
    pub lease: Arc<HeldLease>,
    pub table: LeaseTable,
    pub worker: String,
}

impl Store for LeaseStore {
    fn reserve(
        &self,
        reserved: u64,
        base: u64,
        topics: std::collections::BTreeSet<String>,
    ) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut outputs = self.lease.outputs();
            outputs.reserved = reserved;
            outputs.base = base;
            outputs.topics = topics;
            let checkpoint = self.lease.checkpoint();
            self.lease
                .write_checkpoint(&self.table, &self.worker, &checkpoint, Some(outputs))
                .await
                .map_err(|e| format!("cannot store the output sequence's reservation: {e}"))
        })
    }
}
