//! Reading an aggregate, borrowing from the input.

use super::checksum::{md5, md5_batch};
use super::wire::{Key, Reader, WIRE_LEN, WIRE_VARINT};
use super::{parse_explicit_hash_key, AggError, DIGEST_LEN, MAGIC, OVERHEAD};

/// One user record of an aggregate, borrowed from the Kinesis record's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRecord<'a> {
    pub partition_key: &'a str,
    pub explicit_hash_key: Option<&'a str>,
    pub data: &'a [u8],
    /// Position in the aggregate, from 0.
    pub sub_sequence: u64,
}

impl UserRecord<'_> {
    /// The hash key Kinesis would route this record by ([`super::hash_key`]). Never an error
    /// for a record [`decode`] returned: it checks explicit hash keys.
    pub fn hash_key(&self) -> Result<u128, AggError> {
        super::hash_key(self.partition_key, self.explicit_hash_key)
    }

    /// A copy that owns its keys and data.
    pub fn to_owned_record(&self) -> OwnedUserRecord {
        OwnedUserRecord {
            partition_key: self.partition_key.to_string(),
            explicit_hash_key: self.explicit_hash_key.map(str::to_string),
            data: self.data.to_vec(),
            sub_sequence: self.sub_sequence,
        }
    }
}

/// A [`UserRecord`] that owns its keys and data, to outlive the Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedUserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    pub sub_sequence: u64,
}

impl OwnedUserRecord {
    /// Borrows it back.
    pub fn as_user_record(&self) -> UserRecord<'_> {
        UserRecord {
            partition_key: &self.partition_key,
            explicit_hash_key: self.explicit_hash_key.as_deref(),
            data: &self.data,
            sub_sequence: self.sub_sequence,
        }
    }
}

/// A decoded aggregate: its key tables and its user records with the keys resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate<'a> {
    partition_key_table: Vec<&'a str>,
    explicit_hash_key_table: Vec<&'a str>,
    records: Vec<UserRecord<'a>>,
}

impl<'a> Aggregate<'a> {
    /// The user records, in sub-sequence order.
    pub fn records(&self) -> &[UserRecord<'a>] {
        &self.records
    }

    pub fn into_records(self) -> Vec<UserRecord<'a>> {
        self.records
    }

    pub fn iter(&self) -> std::slice::Iter<'_, UserRecord<'a>> {
        self.records.iter()
    }

    /// Number of user records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The partition key table as written (entries no record uses included).
    pub fn partition_key_table(&self) -> &[&'a str] {
        &self.partition_key_table
    }

    /// The explicit hash key table as written. Only entries some record uses are checked to
    /// be numbers, as in the KCL.
    pub fn explicit_hash_key_table(&self) -> &[&'a str] {
        &self.explicit_hash_key_table
    }
}

impl<'a> IntoIterator for Aggregate<'a> {
    type Item = UserRecord<'a>;
    type IntoIter = std::vec::IntoIter<UserRecord<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.records.into_iter()
    }
}

impl<'s, 'a> IntoIterator for &'s Aggregate<'a> {
    type Item = &'s UserRecord<'a>;
    type IntoIter = std::slice::Iter<'s, UserRecord<'a>>;

    fn into_iter(self) -> Self::IntoIter {
        self.records.iter()
    }
}

/// Decodes a Kinesis record's data: `Ok(None)` if it does not start with [`MAGIC`] (a
/// plain record), `Ok(Some(_))` for an aggregate, an error if it has the magic but is not
/// a valid aggregate. See the [module docs](super) for what the KCL does with each.
pub fn decode(data: &[u8]) -> Result<Option<Aggregate<'_>>, AggError> {
    match digested_part(data)? {
        None => Ok(None),
        Some(body) => decode_digested(data, &md5(body)).map(Some),
    }
}

/// [`decode`] of each record of a batch, in order, with the MD5s of all the aggregates
/// among them computed together (several per SIMD lane set; see `agg/checksum.rs`). The
/// results are exactly those of calling [`decode`] on each.
pub fn decode_many<D: AsRef<[u8]>>(records: &[D]) -> Vec<Result<Option<Aggregate<'_>>, AggError>> {
    let parts: Vec<_> = records.iter().map(|r| digested_part(r.as_ref())).collect();
    let bodies: Vec<&[u8]> = parts
        .iter()
        .filter_map(|p| p.as_ref().ok().copied().flatten())
        .collect();
    let mut digests = vec![[0u8; DIGEST_LEN]; bodies.len()];
    md5_batch(&bodies, &mut digests);
    let mut digests = digests.iter();
    records
        .iter()
        .zip(parts)
        .map(|(record, part)| match part? {
            None => Ok(None),
            // One digest per body, in order (a missing one cannot happen: hash it alone).
            Some(body) => match digests.next() {
                Some(digest) => decode_digested(record.as_ref(), digest).map(Some),
                None => decode_digested(record.as_ref(), &md5(body)).map(Some),
            },
        })
        .collect()
}

/// The bytes the digest covers (between magic and digest), `None` without the magic, or
/// [`AggError::TooShort`].
pub(super) fn digested_part(data: &[u8]) -> Result<Option<&[u8]>, AggError> {
    if !data.starts_with(&MAGIC) {
        return Ok(None);
    }
    if data.len() <= OVERHEAD {
        return Err(AggError::TooShort { len: data.len() });
    }
    Ok(data.get(MAGIC.len()..data.len() - DIGEST_LEN))
}

/// Decodes an aggregate whose [`digested_part`] had MD5 `computed`.
fn decode_digested<'a>(
    data: &'a [u8],
    computed: &[u8; DIGEST_LEN],
) -> Result<Aggregate<'a>, AggError> {
    let body_end = data.len() - DIGEST_LEN;
    if data.get(body_end..) != Some(computed.as_slice()) {
        return Err(AggError::DigestMismatch);
    }
    parse(Reader::new(data, MAGIC.len(), body_end, "AggregatedRecord"))
}

/// A `Record` as read, before its indices are resolved (the tables may come after it).
struct RawRecord<'a> {
    partition_key_index: u64,
    explicit_hash_key_index: Option<u64>,
    data: &'a [u8],
}

fn parse(mut reader: Reader<'_>) -> Result<Aggregate<'_>, AggError> {
    let mut partition_key_table = Vec::new();
    let mut explicit_hash_key_table = Vec::new();
    let mut raw = Vec::new();
    while !reader.is_done() {
        let key = reader.key()?;
        match (key.field, key.wire_type) {
            (1, WIRE_LEN) => {
                partition_key_table.push(reader.string(key, "partition_key_table")?);
            }
            (2, WIRE_LEN) => {
                explicit_hash_key_table.push(reader.string(key, "explicit_hash_key_table")?);
            }
            (3, WIRE_LEN) => {
                let record = reader.message(key, "Record")?;
                raw.push(parse_record(record, raw.len())?);
            }
            _ => reader.skip(key)?,
        }
    }

    let mut records = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let partition_key = *usize::try_from(r.partition_key_index)
            .ok()
            .and_then(|index| partition_key_table.get(index))
            .ok_or(AggError::PartitionKeyIndexOutOfRange {
                record: i,
                index: r.partition_key_index,
                table_len: partition_key_table.len(),
            })?;
        let explicit_hash_key = match r.explicit_hash_key_index {
            None => None,
            Some(index) => {
                let key = *usize::try_from(index)
                    .ok()
                    .and_then(|index| explicit_hash_key_table.get(index))
                    .ok_or(AggError::ExplicitHashKeyIndexOutOfRange {
                        record: i,
                        index,
                        table_len: explicit_hash_key_table.len(),
                    })?;
                parse_explicit_hash_key(key).map_err(|_| AggError::InvalidExplicitHashKey {
                    value: key.to_string(),
                    record: Some(i),
                })?;
                Some(key)
            }
        };
        records.push(UserRecord {
            partition_key,
            explicit_hash_key,
            data: r.data,
            sub_sequence: i as u64,
        });
    }
    Ok(Aggregate {
        partition_key_table,
        explicit_hash_key_table,
        records,
    })
}

fn parse_record(mut reader: Reader<'_>, index: usize) -> Result<RawRecord<'_>, AggError> {
    let mut partition_key_index = None;
    let mut explicit_hash_key_index = None;
    let mut data = None;
    while !reader.is_done() {
        let key = reader.key()?;
        // A non-repeated field seen twice: the last one wins, as in protobuf.
        match (key.field, key.wire_type) {
            (1, WIRE_VARINT) => partition_key_index = Some(reader.uint64()?),
            (2, WIRE_VARINT) => explicit_hash_key_index = Some(reader.uint64()?),
            (3, WIRE_LEN) => data = Some(reader.bytes(key)?.0),
            (4, WIRE_LEN) => check_tag(reader.message(key, "Tag")?, index)?,
            _ => reader.skip(key)?,
        }
    }
    let missing = |field| AggError::MissingField {
        record: index,
        field,
    };
    Ok(RawRecord {
        partition_key_index: partition_key_index.ok_or_else(|| missing("partition_key_index"))?,
        explicit_hash_key_index,
        data: data.ok_or_else(|| missing("data"))?,
    })
}

/// Tags are not returned (the KCL drops them too), but a `Tag` must still be well formed
/// for the message to parse: `key` is required, and both are strings.
fn check_tag(mut reader: Reader<'_>, record: usize) -> Result<(), AggError> {
    let mut has_key = false;
    while !reader.is_done() {
        let key: Key = reader.key()?;
        match (key.field, key.wire_type) {
            (1, WIRE_LEN) => {
                reader.string(key, "Tag.key")?;
                has_key = true;
            }
            (2, WIRE_LEN) => {
                reader.string(key, "Tag.value")?;
            }
            _ => reader.skip(key)?,
        }
    }
    if has_key {
        Ok(())
    } else {
        Err(AggError::MissingField {
            record,
            field: "tags.key",
        })
    }
}
