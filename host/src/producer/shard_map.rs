//! The shard map: which open shard owns which part of the 128-bit hash key space, as
//! ListShards reports it. Kinesis puts a record in the open shard whose
//! `[StartingHashKey, EndingHashKey]` contains the record's hash key (the MD5 of its
//! partition key, or its explicit hash key); the producer predicts that shard so it can
//! aggregate only records bound for the same shard and rate-limit each shard.
//!
//! The map goes stale when the stream is resharded. The producer learns it from PutRecords
//! results (a record landed in another shard than predicted) and from a hash key no open
//! shard covers, and then loads the map again.

use std::sync::Arc;

use aws_sdk_kinesis::types::Shard;

/// One open shard and its hash key range (inclusive at both ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedShard {
    pub id: Arc<str>,
    pub start: u128,
    pub end: u128,
}

impl MappedShard {
    pub fn contains(&self, hash: u128) -> bool {
        self.start <= hash && hash <= self.end
    }
}

/// Why ListShards output could not be turned into a map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardMapError {
    #[error("shard {shard}: hash key range {what} {value:?} is not a 128-bit decimal number")]
    BadHashKey {
        shard: String,
        what: &'static str,
        value: String,
    },
    #[error("stream has no open shards")]
    NoOpenShards,
}

/// Open shards, sorted by their starting hash key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<MappedShard>,
}

impl ShardMap {
    /// The open shards (no ending sequence number) of a ListShards answer.
    pub fn from_shards(shards: &[Shard]) -> Result<Self, ShardMapError> {
        let mut open = Vec::new();
        for s in shards {
            let closed = s
                .sequence_number_range
                .as_ref()
                .and_then(|r| r.ending_sequence_number.as_deref())
                .is_some();
            if closed {
                continue;
            }
            let Some(range) = s.hash_key_range.as_ref() else {
                continue;
            };
            let parse = |what: &'static str, v: &str| {
                v.parse::<u128>().map_err(|_| ShardMapError::BadHashKey {
                    shard: s.shard_id.clone(),
                    what,
                    value: v.to_string(),
                })
            };
            open.push(MappedShard {
                id: Arc::from(s.shard_id.as_str()),
                start: parse("start", &range.starting_hash_key)?,
                end: parse("end", &range.ending_hash_key)?,
            });
        }
        Self::from_ranges(open)
    }

    pub fn from_ranges(mut shards: Vec<MappedShard>) -> Result<Self, ShardMapError> {
        if shards.is_empty() {
            return Err(ShardMapError::NoOpenShards);
        }
        shards.sort_by_key(|s| s.start);
        Ok(Self { shards })
    }

    /// The open shard that owns `hash`, if the map covers it (a map read in the middle of a
    /// reshard may have a gap).
    pub fn lookup(&self, hash: u128) -> Option<&MappedShard> {
        // the first shard whose end is >= hash; it owns hash if it starts at or before it
        let i = self.shards.partition_point(|s| s.end < hash);
        self.shards.get(i).filter(|s| s.contains(hash))
    }

    pub fn get(&self, id: &str) -> Option<&MappedShard> {
        self.shards.iter().find(|s| &*s.id == id)
    }

    pub fn shards(&self) -> &[MappedShard] {
        &self.shards
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::{HashKeyRange, SequenceNumberRange};

    fn shard(id: &str, start: u128, end: u128, closed: bool) -> Shard {
        let mut seq = SequenceNumberRange::builder().starting_sequence_number("1");
        if closed {
            seq = seq.ending_sequence_number("2");
        }
        Shard::builder()
            .shard_id(id)
            .hash_key_range(
                HashKeyRange::builder()
                    .starting_hash_key(start.to_string())
                    .ending_hash_key(end.to_string())
                    .build()
                    .unwrap(),
            )
            .sequence_number_range(seq.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn looks_up_by_range_and_skips_closed_shards() {
        let half = u128::MAX / 2;
        let map = ShardMap::from_shards(&[
            shard("parent", 0, u128::MAX, true),
            shard("b", half + 1, u128::MAX, false),
            shard("a", 0, half, false),
        ])
        .unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(&*map.lookup(0).unwrap().id, "a");
        assert_eq!(&*map.lookup(half).unwrap().id, "a");
        assert_eq!(&*map.lookup(half + 1).unwrap().id, "b");
        assert_eq!(&*map.lookup(u128::MAX).unwrap().id, "b");
    }

    #[test]
    fn a_gap_is_not_covered() {
        let map = ShardMap::from_ranges(vec![
            MappedShard {
                id: "a".into(),
                start: 0,
                end: 9,
            },
            MappedShard {
                id: "b".into(),
                start: 20,
                end: 29,
            },
        ])
        .unwrap();
        assert!(map.lookup(10).is_none());
        assert!(map.lookup(19).is_none());
        assert!(map.lookup(30).is_none());
        assert_eq!(&*map.lookup(20).unwrap().id, "b");
    }

    #[test]
    fn every_hash_lands_in_exactly_one_of_many_shards() {
        // 7 equal shards, as CreateStream splits the space
        let n = 7u128;
        let width = u128::MAX / n;
        let ranges: Vec<_> = (0..n)
            .map(|i| MappedShard {
                id: format!("s{i}").into(),
                start: i * width,
                end: if i == n - 1 {
                    u128::MAX
                } else {
                    (i + 1) * width - 1
                },
            })
            .collect();
        let map = ShardMap::from_ranges(ranges.clone()).unwrap();
        for k in 0..10_000u32 {
            let h = crate::agg::partition_key_hash(&format!("key-{k}"));
            let owners: Vec<_> = ranges.iter().filter(|s| s.contains(h)).collect();
            assert_eq!(owners.len(), 1);
            assert_eq!(map.lookup(h).unwrap().id, owners[0].id);
        }
    }

    #[test]
    fn bad_ranges_and_empty_streams_are_errors() {
        let mut s = shard("x", 0, 1, false);
        s.hash_key_range = Some(
            HashKeyRange::builder()
                .starting_hash_key("zero")
                .ending_hash_key("1")
                .build()
                .unwrap(),
        );
        assert!(matches!(
            ShardMap::from_shards(&[s]),
            Err(ShardMapError::BadHashKey { .. })
        ));
        assert_eq!(
            ShardMap::from_shards(&[shard("p", 0, 1, true)]),
            Err(ShardMapError::NoOpenShards)
        );
    }
}
