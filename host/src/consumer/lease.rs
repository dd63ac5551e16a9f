//! A lease: the right of one worker to process one shard, as an item of the KCL 2.x lease
//! table. The layout is the KCL's, so a table written by a KCL application (for example a
//! Pulsar IO Kinesis source) is read and continued as it is.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::checkpoint::Checkpoint;
use crate::sinks::sequence::Outputs;

/// Attribute names of the KCL 2.x lease table.
pub mod attr {
    pub const LEASE_KEY: &str = "leaseKey";
    pub const LEASE_OWNER: &str = "leaseOwner";
    pub const LEASE_COUNTER: &str = "leaseCounter";
    pub const CHECKPOINT: &str = "checkpoint";
    pub const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
    pub const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    pub const PARENT_SHARD_ID: &str = "parentShardId";
    pub const CHILD_SHARD_IDS: &str = "childShardIds";
    pub const STARTING_HASH_KEY: &str = "startingHashKey";
    pub const ENDING_HASH_KEY: &str = "endingHashKey";
    /// When the checkpoint was last written (Unix milliseconds, this host's clock). Not a
    /// KCL attribute: the KCL ignores it; `shardline status` shows its age.
    pub const CHECKPOINT_TIME: &str = "shardlineCheckpointMillis";
    /// KCL 3.x: what an item of the lease table is (`LEASE`, or the coordinator's and the
    /// worker metrics' own items, which share the table).
    pub const ENTITY_TYPE: &str = "entityType";
    /// The output sequence stored with the checkpoint (`sinks::sequence`), written only
    /// while a sink deduplicates; the KCL ignores them.
    pub const OUTPUTS: &str = "shardlineOutputs";
    /// The checkpoint (`sequence/sub`) `shardlineOutputs` belongs to: numbers stored with
    /// another checkpoint (one a KCL worker wrote since) say nothing of this one.
    pub const OUTPUTS_AT: &str = "shardlineOutputsAt";
    pub const OUTPUTS_RESERVED: &str = "shardlineOutputsReserved";
    pub const SEQUENCE_BASE: &str = "shardlineSequenceBase";
    pub const OUTPUT_TOPICS: &str = "shardlineOutputTopics";
    /// KCL 3.x graceful lease handoff: the worker that still processes the shard while
    /// `leaseOwner` already names the next one. Its final checkpoint removes it.
    pub const CHECKPOINT_OWNER: &str = "checkpointOwner";
}

/// The `entityType` of a lease, as the KCL 3.x writes it.
const LEASE_ENTITY: &str = "LEASE";

/// Keys of the KCL 3.x coordinator's items (client version migration, table migration,
/// leader lock), which early 3.x releases wrote without an `entityType`.
const KCL_COORDINATOR_KEYS: [&str; 3] = ["Migration3.0", "TableMigration3.5", "Leader"];

/// One lease item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The shard id (the KCL's single-stream form).
    pub key: String,
    pub owner: Option<String>,
    /// Bumped by every renewal, take, checkpoint and release; the compare-and-set value.
    pub counter: i64,
    pub checkpoint: Checkpoint,
    pub owner_switches: i64,
    pub parents: Vec<String>,
    pub children: Vec<String>,
    pub starting_hash_key: Option<String>,
    pub ending_hash_key: Option<String>,
    /// The output sequence stored with the checkpoint (all zero when none is).
    pub outputs: Outputs,
    /// KCL 3.x `checkpointOwner`: set while a graceful handoff is pending (the current
    /// processor; `owner` is then the next one). See [`super::lease_handoff`].
    pub checkpoint_owner: Option<String>,
}

/// Why an item is not a lease.
#[derive(Debug, thiserror::Error)]
#[error("lease table item {key:?} is malformed: {message}")]
pub struct MalformedLease {
    pub key: String,
    pub message: String,
}

impl Lease {
    /// A new, unowned lease for a shard.
    pub fn new(shard_id: &str, checkpoint: Checkpoint, parents: Vec<String>) -> Self {
        Self {
            key: shard_id.to_string(),
            owner: None,
            counter: 0,
            checkpoint,
            owner_switches: 0,
            parents,
            children: Vec::new(),
            starting_hash_key: None,
            ending_hash_key: None,
            outputs: Outputs::default(),
            checkpoint_owner: None,
        }
    }

    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        let mut m = HashMap::new();
        m.insert(attr::LEASE_KEY.into(), AttributeValue::S(self.key.clone()));
        if let Some(o) = &self.owner {
            m.insert(attr::LEASE_OWNER.into(), AttributeValue::S(o.clone()));
        }
        m.insert(
            attr::LEASE_COUNTER.into(),
            AttributeValue::N(self.counter.to_string()),
        );
        m.insert(
            attr::CHECKPOINT.into(),
            AttributeValue::S(self.checkpoint.as_kcl().to_string()),
        );
        m.insert(
            attr::CHECKPOINT_SUB.into(),
            AttributeValue::N(self.checkpoint.sub_sequence().to_string()),
        );
        m.insert(
            attr::OWNER_SWITCHES.into(),
            AttributeValue::N(self.owner_switches.to_string()),
        );
        // DynamoDB refuses empty sets: absent means none, as in the KCL.
        if !self.parents.is_empty() {
            m.insert(
                attr::PARENT_SHARD_ID.into(),
                AttributeValue::Ss(self.parents.clone()),
            );
        }
        if !self.children.is_empty() {
            m.insert(
                attr::CHILD_SHARD_IDS.into(),
                AttributeValue::Ss(self.children.clone()),
            );
        }
        if let Some(h) = &self.starting_hash_key {
            m.insert(attr::STARTING_HASH_KEY.into(), AttributeValue::S(h.clone()));
        }
        if let Some(h) = &self.ending_hash_key {
            m.insert(attr::ENDING_HASH_KEY.into(), AttributeValue::S(h.clone()));
        }
        if self.outputs != Outputs::default() {
            m.extend(outputs_item(&self.outputs, &self.checkpoint));
        }
        if let Some(o) = &self.checkpoint_owner {
            m.insert(attr::CHECKPOINT_OWNER.into(), AttributeValue::S(o.clone()));
        }
        m
    }

    /// Whether an item of the lease table is a lease, as the KCL 3.x decides: one with no
    /// `entityType` (every KCL 2.x lease, and Shardline's) or with `entityType = LEASE`.
    /// The KCL 3.x keeps other items in the same table (`Migration3.0`, `Leader`, one
    /// worker-metrics item per worker): they are no one's to take, count or rewrite.
    pub fn is_lease_item(item: &HashMap<String, AttributeValue>) -> bool {
        match item.get(attr::ENTITY_TYPE) {
            Some(AttributeValue::S(t)) => t == LEASE_ENTITY,
            Some(_) => false,
            None => !matches!(
                (item.get(attr::LEASE_KEY), item.get(attr::LEASE_COUNTER)),
                (Some(AttributeValue::S(k)), None) if KCL_COORDINATOR_KEYS.contains(&k.as_str())
            ),
        }
    }

    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Self, MalformedLease> {
        let key = match item.get(attr::LEASE_KEY) {
            Some(AttributeValue::S(s)) => s.clone(),
            _ => {
                return Err(MalformedLease {
                    key: String::new(),
                    message: "no string leaseKey".into(),
                })
            }
        };
        let bad = |message: String| MalformedLease {
            key: key.clone(),
            message,
        };
        let s = |name: &str| match item.get(name) {
            Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(other) => Err(bad(format!("{name} is not a string: {other:?}"))),
        };
        let n = |name: &str| match item.get(name) {
            Some(AttributeValue::N(n)) => n
                .parse::<i64>()
                .map(Some)
                .map_err(|e| bad(format!("{name} is not an integer ({n:?}): {e}"))),
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(other) => Err(bad(format!("{name} is not a number: {other:?}"))),
        };
        let ss = |name: &str| match item.get(name) {
            Some(AttributeValue::Ss(v)) => Ok(v.clone()),
            // Some writers store a single parent as a string.
            Some(AttributeValue::S(s)) => Ok(vec![s.clone()]),
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(other) => Err(bad(format!("{name} is not a string set: {other:?}"))),
        };
        let checkpoint_text = s(attr::CHECKPOINT)?.unwrap_or_else(|| "TRIM_HORIZON".into());
        let sub = n(attr::CHECKPOINT_SUB)?.unwrap_or(0).max(0) as u64;
        let checkpoint = Checkpoint::from_kcl(&checkpoint_text, sub);
        let count = |name: &str| n(name).map(|v| v.unwrap_or(0).max(0) as u64);
        let mut outputs = Outputs {
            checkpointed: count(attr::OUTPUTS)?,
            reserved: count(attr::OUTPUTS_RESERVED)?,
            base: count(attr::SEQUENCE_BASE)?,
            topics: ss(attr::OUTPUT_TOPICS)?.into_iter().collect(),
        };
        if s(attr::OUTPUTS_AT)?.as_deref() != Some(outputs_at(&checkpoint).as_str()) {
            // Stored with another checkpoint: no topic or reservation is known to be this
            // lineage's, so a broker ahead of it raises the base instead of dropping.
            outputs.topics.clear();
            outputs.reserved = 0;
        }
        Ok(Self {
            owner: s(attr::LEASE_OWNER)?.filter(|o| !o.is_empty()),
            counter: n(attr::LEASE_COUNTER)?.unwrap_or(0),
            checkpoint,
            owner_switches: n(attr::OWNER_SWITCHES)?.unwrap_or(0),
            parents: ss(attr::PARENT_SHARD_ID)?,
            children: ss(attr::CHILD_SHARD_IDS)?,
            starting_hash_key: s(attr::STARTING_HASH_KEY)?,
            ending_hash_key: s(attr::ENDING_HASH_KEY)?,
            outputs,
            checkpoint_owner: s(attr::CHECKPOINT_OWNER)?.filter(|o| !o.is_empty()),
            key,
        })
    }
}

/// How `shardlineOutputsAt` names a checkpoint.
fn outputs_at(checkpoint: &Checkpoint) -> String {
    format!("{}/{}", checkpoint.as_kcl(), checkpoint.sub_sequence())
}

/// The attributes that store `outputs` with `checkpoint`.
pub fn outputs_item(outputs: &Outputs, checkpoint: &Checkpoint) -> Vec<(String, AttributeValue)> {
    let n = |v: u64| AttributeValue::N(v.to_string());
    let mut v = vec![
        (attr::OUTPUTS.to_string(), n(outputs.checkpointed)),
        (
            attr::OUTPUTS_AT.to_string(),
            AttributeValue::S(outputs_at(checkpoint)),
        ),
        (attr::OUTPUTS_RESERVED.to_string(), n(outputs.reserved)),
        (attr::SEQUENCE_BASE.to_string(), n(outputs.base)),
    ];
    // DynamoDB refuses empty sets.
    if !outputs.topics.is_empty() {
        v.push((
            attr::OUTPUT_TOPICS.to_string(),
            AttributeValue::Ss(outputs.topics.iter().cloned().collect()),
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_round_trip() {
        let mut l = Lease::new(
            "shardId-000000000003",
            Checkpoint::Sequence {
                sequence: "4959".into(),
                sub: 2,
            },
            vec!["shardId-000000000001".into()],
        );
        l.owner = Some("worker-a".into());
        l.counter = 17;
        l.starting_hash_key = Some("0".into());
        l.ending_hash_key = Some("170141183460469231731687303715884105727".into());
        assert_eq!(Lease::from_item(&l.to_item()).expect("parses"), l);
        l.outputs = Outputs {
            checkpointed: 40,
            reserved: 1040,
            base: 7,
            topics: ["persistent://public/default/out".to_string()].into(),
        };
        assert_eq!(Lease::from_item(&l.to_item()).expect("parses"), l);
    }

    /// Numbers stored with an older checkpoint (a KCL worker checkpointed since) vouch for
    /// no topic and no reservation.
    #[test]
    fn outputs_of_another_checkpoint_vouch_for_nothing() {
        let mut l = Lease::new("shardId-1", Checkpoint::TrimHorizon, vec![]);
        l.outputs = Outputs {
            checkpointed: 40,
            reserved: 1040,
            base: 7,
            topics: ["t".to_string()].into(),
        };
        let mut item = l.to_item();
        item.insert(attr::CHECKPOINT.into(), AttributeValue::S("4960".into()));
        let read = Lease::from_item(&item).expect("parses");
        assert!(read.outputs.topics.is_empty());
        assert_eq!(read.outputs.reserved, 0);
        assert_eq!((read.outputs.checkpointed, read.outputs.base), (40, 7));
        l.checkpoint_owner = Some("worker-b".into());
        assert_eq!(Lease::from_item(&l.to_item()).expect("parses"), l);
    }

    /// An item as the KCL 2.x writes it (the Pulsar IO Kinesis source uses the KCL).
    #[test]
    fn reads_kcl_written_items() {
        let mut item = HashMap::new();
        item.insert(
            "leaseKey".to_string(),
            AttributeValue::S("shardId-000000000000".into()),
        );
        item.insert(
            "leaseOwner".to_string(),
            AttributeValue::S("ip-10-0-0-1:uuid".into()),
        );
        item.insert("leaseCounter".to_string(), AttributeValue::N("1234".into()));
        item.insert(
            "checkpoint".to_string(),
            AttributeValue::S("SHARD_END".into()),
        );
        item.insert(
            "checkpointSubSequenceNumber".to_string(),
            AttributeValue::N("0".into()),
        );
        item.insert(
            "ownerSwitchesSinceCheckpoint".to_string(),
            AttributeValue::N("0".into()),
        );
        item.insert(
            "childShardIds".to_string(),
            AttributeValue::Ss(vec!["shardId-000000000002".into()]),
        );
        let l = Lease::from_item(&item).expect("parses");
        assert_eq!(l.checkpoint, Checkpoint::ShardEnd);
        assert_eq!(l.counter, 1234);
        assert_eq!(l.children, vec!["shardId-000000000002".to_string()]);
        assert!(l.parents.is_empty());
    }

    /// Items a KCL 3.x table holds besides its leases (as the KCL writes them) are not
    /// leases; KCL 2.x and 3.x leases, and Shardline's own, are.
    #[test]
    fn tells_leases_from_the_kcl3_coordinators_items() {
        let item = |pairs: &[(&str, &str)]| -> HashMap<String, AttributeValue> {
            pairs
                .iter()
                .map(|(k, v)| {
                    let value = if *k == "leaseCounter" || *k == "mts" || *k == "lut" {
                        AttributeValue::N(v.to_string())
                    } else {
                        AttributeValue::S(v.to_string())
                    };
                    (k.to_string(), value)
                })
                .collect()
        };
        let not_leases = [
            item(&[
                ("leaseKey", "Migration3.0"),
                ("entityType", "CLIENT_VERSION_MIGRATION"),
                ("cv", "CLIENT_VERSION_3X"),
                ("mts", "1796600001000"),
            ]),
            item(&[
                ("leaseKey", "Leader"),
                ("entityType", "LEADER"),
                ("ownerName", "kcl-worker"),
            ]),
            item(&[
                ("leaseKey", "kcl-worker"),
                ("entityType", "WORKER_METRIC_STATS"),
                ("lut", "1796600002"),
            ]),
            // As early 3.x releases wrote them, without an entity type.
            item(&[("leaseKey", "Migration3.0"), ("cv", "CLIENT_VERSION_3X")]),
            item(&[("leaseKey", "Leader"), ("ownerName", "kcl-worker")]),
        ];
        for i in &not_leases {
            assert!(!Lease::is_lease_item(i), "{i:?}");
        }
        let leases = [
            item(&[("leaseKey", "shardId-000000000000"), ("leaseCounter", "3")]),
            item(&[
                ("leaseKey", "shardId-000000000001"),
                ("entityType", "LEASE"),
                ("leaseCounter", "7"),
            ]),
            Lease::new("shardId-000000000002", Checkpoint::TrimHorizon, vec![]).to_item(),
        ];
        for i in &leases {
            assert!(Lease::is_lease_item(i), "{i:?}");
        }
    }

    #[test]
    fn malformed_items_name_the_lease() {
        let mut item = HashMap::new();
        item.insert(
            "leaseKey".to_string(),
            AttributeValue::S("shardId-1".into()),
        );
        item.insert("leaseCounter".to_string(), AttributeValue::S("x".into()));
        let e = Lease::from_item(&item).unwrap_err().to_string();
        assert!(e.contains("shardId-1") && e.contains("leaseCounter"), "{e}");
    }
}
