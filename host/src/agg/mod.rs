//! An aggregated record packs many user records into one Kinesis record, the way the KPL
//! writes them when aggregation is on (its default): small records then share one Kinesis
//! record's per-record limits (1,000 records per second per shard) instead of each using one.
//! This module reads and writes that format; deciding what to do with the results is the
//! consumer's and the producer's business.
//!
//! # Format
//!
//! ```text
//! F3 89 9A C2 | AggregatedRecord (protobuf) | MD5 of the protobuf bytes (16 bytes)
//! ```
//!
//! ```protobuf
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Tag { required string key = 1; optional string value = 2; }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! ```
//!
//! A user record's *sub-sequence number* is its position in `records`, from 0. Together with
//! the Kinesis sequence number of the record that carried it, it names the user record; the
//! KCL checkpoints both (`checkpointSubSequenceNumber`). A user record's *hash key* is its
//! explicit hash key if it has one, else the MD5 of its partition key read as a 128-bit
//! big-endian unsigned integer — the rule Kinesis itself uses to pick a shard ([`hash_key`]).
//!
//! The protobuf is encoded and decoded by hand (`agg/wire.rs` is all of it). Decoding takes
//! anything a protobuf encoder may legally write: fields in any order, a non-repeated field
//! given twice (the last wins), unknown fields of every wire type skipped (groups included),
//! and a known field number with an unexpected wire type treated as unknown, as
//! protobuf-java does. Decoding borrows: keys are `&str` and data `&[u8]` into the input.
//!
//! # Reading, and what the KCL does
//!
//! [`deaggregate`] sorts a Kinesis record's data into one of three cases, so the consumer's
//! rule is: [`Plain`](Deaggregated::Plain) and [`Corrupt`](Deaggregated::Corrupt) are
//! delivered whole as one record with sub-sequence number 0 (count the corrupt ones);
//! [`Aggregate`](Deaggregated::Aggregate) delivers its user records. For a batch of
//! Kinesis records (a GetRecords response), [`deaggregate_many`] / [`decode_many`] give the
//! same results record by record, with the MD5s of all its aggregates computed together —
//! several per SIMD instruction, a multiple of the speed of one at a time.
//!
//! The KCL (`AggregatorUtil.deaggregate` in 2.x, `UserRecord.deaggregate` in 1.x) checks:
//!
//! 1. No magic → a plain record. Here: [`Deaggregated::Plain`].
//! 2. The magic, but no more than 20 bytes in all (nothing between magic and digest) → the
//!    KCL passes it whole as a plain record. Here: `Corrupt` ([`AggError::TooShort`]) — the
//!    caller does the same, and can count it.
//! 3. The digest is not the MD5 of the bytes between magic and digest → passed whole.
//!    Here: `Corrupt` ([`AggError::DigestMismatch`]).
//! 4. The protobuf does not parse (truncated, a length past the end, a required field
//!    missing, …) → passed whole. Here: `Corrupt`, the reason naming the problem.
//! 5. Otherwise each `Record` becomes a user record.
//!
//! Where the KCL does something else, this module reports `Corrupt`, so the record is passed
//! whole rather than partly or silently lost:
//!
//! - A key index outside its table, or an explicit hash key that is not a number: the KCL
//!   (1.x and 2.x alike) logs an error and keeps the user records *before* the bad one,
//!   dropping the bad one and all after it; the record is not passed through either.
//!   Here: [`AggError::PartitionKeyIndexOutOfRange`],
//!   [`AggError::ExplicitHashKeyIndexOutOfRange`], [`AggError::InvalidExplicitHashKey`].
//!   So every user record [`decode`] returns has a valid [`UserRecord::hash_key`].
//! - Invalid UTF-8 in a `string` field (keys, tags): protobuf-java's proto2 strings decode
//!   it with replacement characters; here it is [`AggError::InvalidUtf8`].
//!
//! Two more KCL rules the consumer has to apply itself:
//!
//! - **Hash key outside the shard.** The KCL is given the shard's hash key range, and if
//!   *any* user record of an aggregate has a hash key outside it, it drops *every* user
//!   record of that aggregate (and does not pass the record through). The KPL only
//!   aggregates records it predicts go to the same shard, so this happens when a producer
//!   aggregated across shards or its shard map was stale. [`hash_key`] /
//!   [`UserRecord::hash_key`] give what is needed to apply (or deliberately not apply) it.
//! - **An aggregate with no records** (valid digest, zero `Record`s) yields no user records
//!   in the KCL and is not passed through. Here: `Aggregate` with an empty list; the Kinesis
//!   record still counts as processed for checkpointing.
//!
//! # Writing
//!
//! An [`Aggregator`] collects user records, stores each distinct partition key and explicit
//! hash key once in its table, and always knows its exact encoded length
//! ([`Aggregator::encoded_len`]) and what one more record would add
//! ([`Aggregator::added_len`]), so a producer can stop at a size limit — the KPL's default,
//! `AggregationMaxSize`, is [`KPL_DEFAULT_MAX_SIZE`] (51,200 bytes, compared with the whole
//! encoded aggregate). The output lays fields out as the KPL's protobuf-C++ serializer does:
//! partition key table, explicit hash key table, records; each table in order of first use.
//!
//! For the KCL to keep what the producer wrote, every user record in one aggregate must hash
//! into the shard the aggregate lands in (see above): aggregate only records bound for the
//! same shard, and put the aggregate with an explicit hash key inside that shard (the first
//! user record's hash key, say). The KPL sends a lone record un-aggregated; that choice is
//! left to the producer ([`Aggregator::len`]). Never send an empty aggregate: its 20 bytes
//! read back as a plain record. The Kinesis limit on one record (data plus partition key) is
//! the producer's to check too.
//!
//! A producer that sends several aggregates at once (a PutRecords request) can finish each
//! with [`Aggregator::take_without_digest`] and then write all their digests together with
//! [`write_digests`], which gives the same bytes as [`Aggregator::take`] faster.
//! [`Aggregator::take_encoded`] does what `take_without_digest` does without copying the
//! records once more: they stay where they were written ([`Encoded`]).

mod checksum;
mod decode;
mod encode;
mod key_table;
mod wire;

#[cfg(test)]
mod tests;

use checksum::{md5, md5_batch};

pub use decode::{decode, decode_many, Aggregate, OwnedUserRecord, UserRecord};
pub use encode::{Aggregator, Encoded};

/// The first four bytes of an aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 digest that ends an aggregated record.
pub const DIGEST_LEN: usize = 16;

/// Bytes an aggregate carries besides its protobuf message: magic and digest.
pub const OVERHEAD: usize = MAGIC.len() + DIGEST_LEN;

/// The KPL's default `AggregationMaxSize`: the largest encoded aggregate it builds.
pub const KPL_DEFAULT_MAX_SIZE: usize = 51_200;

/// Why a record with the magic is not a readable aggregate, or a key is not valid.
///
/// Offsets count from the first byte of the Kinesis record's data (the first magic byte).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggError {
    #[error(
        "too short for an aggregate: {len} bytes with the magic, need more than {OVERHEAD} \
         (magic, protobuf message, {DIGEST_LEN}-byte MD5)"
    )]
    TooShort { len: usize },

    #[error(
        "MD5 digest mismatch: the last {DIGEST_LEN} bytes are not the MD5 of the protobuf message"
    )]
    DigestMismatch,

    #[error("{message}: truncated varint at byte {offset}")]
    TruncatedVarint {
        message: &'static str,
        offset: usize,
    },

    #[error("{message}: varint at byte {offset} overflows 64 bits")]
    VarintOverflow {
        message: &'static str,
        offset: usize,
    },

    #[error(
        "{message}: field {field} at byte {offset} has length {len}, past the end of the \
         message ({available} bytes left)"
    )]
    LengthPastEnd {
        message: &'static str,
        field: u32,
        offset: usize,
        len: u64,
        available: usize,
    },

    #[error("{message}: invalid field number {field} at byte {offset}")]
    InvalidFieldNumber {
        message: &'static str,
        field: u64,
        offset: usize,
    },

    #[error("{message}: invalid wire type {wire_type} for field {field} at byte {offset}")]
    InvalidWireType {
        message: &'static str,
        field: u32,
        wire_type: u8,
        offset: usize,
    },

    #[error("{message}: end-group for field {field} at byte {offset} matches no open group")]
    UnmatchedEndGroup {
        message: &'static str,
        field: u32,
        offset: usize,
    },

    #[error("{message}: group for field {field} at byte {offset} is never closed")]
    UnclosedGroup {
        message: &'static str,
        field: u32,
        offset: usize,
    },

    #[error("record {record}: missing required field {field}")]
    MissingField { record: usize, field: &'static str },

    #[error(
        "record {record}: partition key index {index} is out of the partition key table \
         ({table_len} entries)"
    )]
    PartitionKeyIndexOutOfRange {
        record: usize,
        index: u64,
        table_len: usize,
    },

    #[error(
        "record {record}: explicit hash key index {index} is out of the explicit hash key \
         table ({table_len} entries)"
    )]
    ExplicitHashKeyIndexOutOfRange {
        record: usize,
        index: u64,
        table_len: usize,
    },

    #[error("{field}: invalid UTF-8 at byte {offset}")]
    InvalidUtf8 { field: &'static str, offset: usize },

    #[error(
        "explicit hash key {value:?} is not a decimal integer in 0..=2^128-1{}",
        in_record(.record)
    )]
    InvalidExplicitHashKey {
        value: String,
        /// The user record that referenced it, when decoding.
        record: Option<usize>,
    },
}

fn in_record(record: &Option<usize>) -> String {
    match record {
        Some(r) => format!(" (record {r})"),
        None => String::new(),
    }
}

/// What a Kinesis record's data is, for a consumer. See the [module docs](self) for the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deaggregated<'a> {
    /// No magic: an ordinary record.
    Plain(&'a [u8]),
    /// An aggregate: its user records, in sub-sequence order (possibly none).
    Aggregate(Vec<UserRecord<'a>>),
    /// The magic, but not a readable aggregate: deliver `data` whole as a plain record, as
    /// the KCL does, and count it.
    Corrupt { data: &'a [u8], reason: AggError },
}

/// Sorts a Kinesis record's data into plain, aggregate or corrupt ([`decode`] without the
/// `Result`).
pub fn deaggregate(data: &[u8]) -> Deaggregated<'_> {
    match decode(data) {
        Ok(None) => Deaggregated::Plain(data),
        Ok(Some(aggregate)) => Deaggregated::Aggregate(aggregate.into_records()),
        Err(reason) => Deaggregated::Corrupt { data, reason },
    }
}

/// [`deaggregate`] of each record of a batch, in order, hashing the aggregates among them
/// together (MD5 of several aggregates per SIMD instruction; see [`decode_many`]). Same
/// decisions as [`deaggregate`] on each record, digest mismatches included.
pub fn deaggregate_many<D: AsRef<[u8]>>(records: &[D]) -> Vec<Deaggregated<'_>> {
    records
        .iter()
        .zip(decode_many(records))
        .map(|(data, decoded)| {
            let data = data.as_ref();
            match decoded {
                Ok(None) => Deaggregated::Plain(data),
                Ok(Some(aggregate)) => Deaggregated::Aggregate(aggregate.into_records()),
                Err(reason) => Deaggregated::Corrupt { data, reason },
            }
        })
        .collect()
}

/// Whether `data` starts with the aggregate magic (it may still be corrupt).
pub fn has_magic(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// The hash key Kinesis routes a record by: the explicit hash key if given, else the MD5 of
/// the partition key's UTF-8 bytes as a 128-bit big-endian unsigned integer.
pub fn hash_key(partition_key: &str, explicit_hash_key: Option<&str>) -> Result<u128, AggError> {
    match explicit_hash_key {
        Some(explicit) => parse_explicit_hash_key(explicit),
        None => Ok(partition_key_hash(partition_key)),
    }
}

/// MD5 of the partition key as a 128-bit big-endian unsigned integer.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(md5(partition_key.as_bytes()))
}

/// Parses an explicit hash key: ASCII decimal digits only (no sign, no spaces), value in
/// 0..=2^128-1.
///
/// Leading zeros are accepted, as the KCL's `BigInteger` accepts them; the Kinesis API
/// itself takes only the canonical form (`0|[1-9][0-9]{0,38}`), so a producer that sends a
/// hash key to Kinesis should send `u128::to_string` of the parsed value.
pub fn parse_explicit_hash_key(text: &str) -> Result<u128, AggError> {
    let invalid = || AggError::InvalidExplicitHashKey {
        value: text.to_string(),
        record: None,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    // Digits only, so the only possible failure is overflow.
    text.parse::<u128>().map_err(|_| invalid())
}

/// Writes the MD5 digest into each of `aggregates`, which came from
/// [`Aggregator::encode_without_digest`] (or [`take_without_digest`](Aggregator::take_without_digest)),
/// hashing them together: several aggregates per SIMD instruction, a multiple of the
/// speed of one at a time. Each then is exactly what [`Aggregator::encode`] gives. A slice
/// shorter than [`OVERHEAD`] is not one of those and is left as it is.
pub fn write_digests<B: AsMut<[u8]>>(aggregates: &mut [B]) {
    let mut bodies = Vec::with_capacity(aggregates.len());
    for a in aggregates.iter_mut() {
        let a = a.as_mut();
        if let Some(body) = unsigned_body(a) {
            bodies.push(body);
        }
    }
    let mut digests = vec![[0u8; DIGEST_LEN]; bodies.len()];
    md5_batch(&bodies, &mut digests);
    drop(bodies);
    let mut digests = digests.into_iter();
    for a in aggregates.iter_mut() {
        let a = a.as_mut();
        if unsigned_body(a).is_some() {
            if let (Some(digest), Some(tail)) = (digests.next(), a.last_chunk_mut::<DIGEST_LEN>()) {
                *tail = digest;
            }
        }
    }
}

/// MD5 of each of `inputs` into the same place of `outputs` (as long), several messages at
/// once in SIMD lanes: what [`write_digests`] and [`decode_many`] compute. Public for the
/// benchmarks (host/benches/agg.rs), not an API.
#[doc(hidden)]
pub fn md5_each(inputs: &[&[u8]], outputs: &mut [[u8; DIGEST_LEN]]) {
    md5_batch(inputs, outputs);
}

/// What the digest of an aggregate from [`Aggregator::encode_without_digest`] covers: the
/// bytes between magic and digest (`None` if it is shorter than [`OVERHEAD`]).
fn unsigned_body(aggregate: &[u8]) -> Option<&[u8]> {
    aggregate.get(MAGIC.len()..aggregate.len().checked_sub(DIGEST_LEN)?)
}
