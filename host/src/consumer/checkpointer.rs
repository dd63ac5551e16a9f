//! The checkpointer: a lease this worker holds, through which the shard consumer writes
//! its checkpoints (the KCL's `ShardRecordProcessorCheckpointer`) and the lease renewer
//! keeps it alive. Both move `leaseCounter`, so they take turns; a conflict on either
//! means another worker took the lease, and the shard stops at once. A watchdog stops the
//! shard when renewals fail for too long.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::Checkpoint;
use super::lease::Lease;
use super::lease_table::{LeaseTable, LeaseTableError};
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
        })
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
            Ok(next) => {
                *counter = next;
                self.renewed_at.send_replace(sent);
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
