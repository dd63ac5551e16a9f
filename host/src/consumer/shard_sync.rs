//! Shard sync: list the stream's shards (every page) and make sure each has a lease.
//!
//! Leases are keyed by shard id when the application reads one stream (as the KCL does)
//! and `stream:shard` when it reads several.
//!
//! A new shard whose parent is known starts at TRIM_HORIZON, so nothing written after a
//! reshard is skipped; a shard without a known parent starts at the configured initial
//! position, as in the KCL.

use std::collections::{HashMap, HashSet};

use aws_sdk_kinesis::Client;

use super::checkpoint::Checkpoint;
use super::lease::Lease;
use super::lease_table::{LeaseTable, LeaseTableError};
use crate::aws::{list_shards, ListShardsError};
use crate::config::{InitialPosition, StreamSpec};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_of_leased_shards_are_superseded() {
        // a → b → c (a split chain); only c has a lease: a and b were cleaned up.
        let children: HashMap<String, Vec<String>> = [
            ("a".to_string(), vec!["b".to_string()]),
            ("b".to_string(), vec!["c".to_string()]),
        ]
        .into();
        let existing: HashSet<String> = ["c".to_string()].into();
        let s = superseded(&children, &existing);
        assert!(s.contains("a") && s.contains("b") && !s.contains("c"));
        // Nothing leased yet (a fresh application): nothing is superseded.
        assert!(superseded(&children, &HashSet::new()).is_empty());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShardSyncError {
    #[error(transparent)]
    ListShards(#[from] ListShardsError),
    #[error(transparent)]
    Leases(#[from] LeaseTableError),
}

/// Shards with a descendant that has a lease (children by parent key).
fn superseded(
    children: &HashMap<String, Vec<String>>,
    existing: &HashSet<String>,
) -> HashSet<String> {
    fn visit(
        k: &str,
        children: &HashMap<String, Vec<String>>,
        existing: &HashSet<String>,
        memo: &mut HashMap<String, bool>,
    ) -> bool {
        if let Some(&v) = memo.get(k) {
            return v;
        }
        memo.insert(k.to_string(), false); // shard graphs are acyclic; this guards anyway
        let v = children.get(k).is_some_and(|cs| {
            cs.iter()
                .any(|c| existing.contains(c) || visit(c, children, existing, memo))
        });
        memo.insert(k.to_string(), v);
        v
    }
    let mut memo = HashMap::new();
    children
        .keys()
        .filter(|k| visit(k, children, existing, &mut memo))
        .cloned()
        .collect()
}

/// Deletes the leases of finished parent shards once every child lease that names them has
/// started (its checkpoint moved past its start position), as the KCL's lease cleanup
/// does. Returns how many were deleted.
pub async fn clean_up_parents(
    table: &LeaseTable,
    leases: &[Lease],
) -> Result<usize, ShardSyncError> {
    let mut deleted = 0;
    for parent in leases
        .iter()
        .filter(|l| l.checkpoint == Checkpoint::ShardEnd && l.owner.is_none())
    {
        let children: Vec<&Lease> = leases
            .iter()
            .filter(|l| l.parents.contains(&parent.key))
            .collect();
        let started = |c: &&Lease| {
            matches!(
                c.checkpoint,
                Checkpoint::Sequence { .. } | Checkpoint::ShardEnd
            )
        };
        if !children.is_empty()
            && children.iter().all(started)
            && table.delete_finished(parent).await?
        {
            tracing::info!(lease = %parent.key, "deleted the lease of a finished parent shard");
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Creates the leases that are missing. Returns how many were created.
pub async fn sync(
    client: &Client,
    table: &LeaseTable,
    stream: &StreamSpec,
) -> Result<usize, ShardSyncError> {
    let shards = list_shards(client, &stream.name).await?;
    let leases = table.list().await?;
    let existing: HashSet<String> = leases.iter().map(|l| l.key.clone()).collect();

    let prefix = stream.lease_prefix.as_deref().unwrap_or("");
    let key = |shard: &str| format!("{prefix}{shard}");
    let known: HashSet<String> = shards.iter().map(|s| key(&s.shard_id)).collect();
    // A shard whose descendants already have leases was finished and its lease cleaned
    // up: creating it again would read it a second time.
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for s in &shards {
        for p in [&s.parent_shard_id, &s.adjacent_parent_shard_id]
            .into_iter()
            .flatten()
        {
            children.entry(key(p)).or_default().push(key(&s.shard_id));
        }
    }
    let superseded = superseded(&children, &existing);
    let mut created = 0;
    for shard in &shards {
        let lease_key = key(&shard.shard_id);
        if existing.contains(&lease_key) || superseded.contains(&lease_key) {
            continue;
        }
        let parents: Vec<String> = [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
            .into_iter()
            .flatten()
            .map(|p| key(p))
            .filter(|p| known.contains(p) || existing.contains(p))
            .collect();
        let checkpoint = if parents.is_empty() {
            match stream.initial_position {
                InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
                InitialPosition::Latest => Checkpoint::Latest,
                InitialPosition::AtTimestamp => Checkpoint::AtTimestamp,
            }
        } else {
            Checkpoint::TrimHorizon
        };
        let mut lease = Lease::new(&lease_key, checkpoint, parents);
        if let Some(r) = &shard.hash_key_range {
            lease.starting_hash_key = Some(r.starting_hash_key.clone());
            lease.ending_hash_key = Some(r.ending_hash_key.clone());
        }
        if table.create_if_absent(&lease).await? {
            tracing::info!(stream = %stream.name, shard = %shard.shard_id, lease = %lease_key, checkpoint = %lease.checkpoint, "created lease");
            created += 1;
        }
    }
    Ok(created)
}
