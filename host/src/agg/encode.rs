//! Building an aggregate.
//!
//! Each record is written once, straight into the buffer that will hold the finished
//! aggregate: the aggregator leaves room at the front of that buffer for the magic and the
//! key tables (which come first in the output but keep growing as records arrive), and
//! [`Aggregator::take_encoded`] writes them into that room, just before the records, and
//! hands the buffer over as it is ([`Encoded`]). Copying the records a second time, from
//! the aggregator into a new buffer, was a third of the time of aggregating 1 KiB records
//! (BENCHMARKS.md, *KPL aggregation*).

use super::key_table::{Found, KeyTable};
use super::wire::{
    key, len_field_size, put_len_field, put_varint, put_varint_field, varint_field_size, WIRE_LEN,
};
use super::{parse_explicit_hash_key, write_digests, AggError, DIGEST_LEN, MAGIC, OVERHEAD};

const PARTITION_KEY_TABLE: u32 = 1;
const EXPLICIT_HASH_KEY_TABLE: u32 = 2;
const RECORDS: u32 = 3;
const RECORD_PARTITION_KEY_INDEX: u32 = 1;
const RECORD_EXPLICIT_HASH_KEY_INDEX: u32 = 2;
const RECORD_DATA: u32 = 3;

/// Least room left in front of the records for the magic and the key tables.
const MIN_ROOM: usize = 256;

/// Accumulates user records into one aggregate and knows its exact encoded length at every
/// step. See the [module docs](super) for how a producer should use it.
///
/// The three protobuf fields are kept encoded so that the output is in field order (tables
/// first) while the tables keep growing as records arrive: the tables each in a buffer of
/// their own, the records in `out` behind `room` bytes left for magic and tables.
#[derive(Debug, Clone)]
pub struct Aggregator {
    partition_keys: KeyTable,
    explicit_hash_keys: KeyTable,
    /// `room` bytes for magic and tables, then the encoded `records` fields.
    out: Vec<u8>,
    /// Kept from one aggregate to the next: the tables of the last one fitted.
    room: usize,
    count: usize,
}

/// An aggregate where [`Aggregator::take_encoded`] left it: the bytes `buf[start..]`
/// (written in place, behind room the key tables did not fill). Also holds any other
/// record data as `start == 0` ([`From<Vec<u8>>`](#impl-From<Vec<u8>>-for-Encoded)), so a
/// producer can keep plain records and aggregates alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    buf: Vec<u8>,
    start: usize,
}

impl Encoded {
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer and where the bytes start in it (`buf[start..]`), for a caller that shares
    /// the buffer as it is.
    pub fn into_parts(self) -> (Vec<u8>, usize) {
        (self.buf, self.start)
    }

    /// The bytes as a vector of their own: moved to the front of the buffer if they do
    /// not start there.
    pub fn into_vec(mut self) -> Vec<u8> {
        self.buf.drain(..self.start);
        self.buf
    }
}

impl From<Vec<u8>> for Encoded {
    fn from(buf: Vec<u8>) -> Self {
        Self { buf, start: 0 }
    }
}

impl AsRef<[u8]> for Encoded {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsMut<[u8]> for Encoded {
    fn as_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl Default for Aggregator {
    fn default() -> Self {
        Self {
            partition_keys: KeyTable::new(PARTITION_KEY_TABLE),
            explicit_hash_keys: KeyTable::new(EXPLICIT_HASH_KEY_TABLE),
            out: Vec::new(),
            room: 0,
            count: 0,
        }
    }
}

impl Aggregator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of user records added.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The exact length [`encode`](Self::encode) would return now: magic, protobuf, digest.
    pub fn encoded_len(&self) -> usize {
        OVERHEAD + self.tables_len() + self.records().len()
    }

    fn tables_len(&self) -> usize {
        self.partition_keys.encoded().len() + self.explicit_hash_keys.encoded().len()
    }

    /// The encoded `records` fields.
    fn records(&self) -> &[u8] {
        self.out.get(self.room..).unwrap_or_default()
    }

    /// Makes the room in front of the records fit magic and tables, moving the records
    /// back if it does not (rarely: the room is kept from one aggregate to the next, and
    /// doubles when it grows).
    fn fit_room(&mut self) {
        let need = MAGIC.len() + self.tables_len();
        if need <= self.room && self.out.len() >= self.room {
            return;
        }
        let room = if need <= self.room {
            self.room
        } else {
            (2 * need).max(MIN_ROOM)
        };
        let records = self.room.min(self.out.len())..self.out.len();
        let moved = records.len();
        self.out.resize(room + moved, 0);
        self.out.copy_within(records, room);
        self.room = room;
    }

    /// How many bytes adding this record would add to [`encoded_len`](Self::encoded_len):
    /// the record, and its keys if they are not in the tables yet.
    pub fn added_len(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
    ) -> usize {
        let pk = self.partition_keys.find_key(partition_key);
        let ehk = explicit_hash_key.map(|k| (k, self.explicit_hash_keys.find_key(k)));
        added_len_found(partition_key, pk, ehk, data.len())
    }

    /// Whether adding this record keeps the aggregate within `limit` bytes.
    pub fn fits(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
        limit: usize,
    ) -> bool {
        self.encoded_len()
            .saturating_add(self.added_len(partition_key, explicit_hash_key, data))
            <= limit
    }

    /// Adds a user record if the aggregate stays within `limit` bytes with it, and returns
    /// its sub-sequence number; `Ok(None)` (nothing added) if it would not. The same as
    /// [`fits`](Self::fits) then [`add`](Self::add), with each key looked up once.
    pub fn add_within(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
        limit: usize,
    ) -> Result<Option<u64>, AggError> {
        if let Some(ehk) = explicit_hash_key {
            parse_explicit_hash_key(ehk)?;
        }
        let pk = self.partition_keys.find_key(partition_key);
        let ehk = explicit_hash_key.map(|k| (k, self.explicit_hash_keys.find_key(k)));
        let added = added_len_found(partition_key, pk, ehk, data.len());
        if self.encoded_len().saturating_add(added) > limit {
            return Ok(None);
        }
        let pk_index = self.partition_keys.insert(pk, partition_key);
        let ehk_index = ehk.map(|(k, f)| self.explicit_hash_keys.insert(f, k));
        Ok(Some(self.write_record(pk_index, ehk_index, data)))
    }

    /// Adds a user record and returns its sub-sequence number.
    ///
    /// The explicit hash key must be a decimal integer in 0..=2^128-1
    /// ([`parse_explicit_hash_key`](super::parse_explicit_hash_key)): the KCL stops reading
    /// an aggregate at a record whose explicit hash key is not a number. On error nothing is
    /// added. The partition key is not checked (Kinesis wants 1 to 256 characters for the
    /// record it is given, which is the producer's to enforce).
    pub fn add(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
    ) -> Result<u64, AggError> {
        if let Some(ehk) = explicit_hash_key {
            parse_explicit_hash_key(ehk)?;
        }
        let pk_index = self.partition_keys.intern(partition_key);
        let ehk_index = explicit_hash_key.map(|ehk| self.explicit_hash_keys.intern(ehk));
        Ok(self.write_record(pk_index, ehk_index, data))
    }

    /// Writes a record whose keys are in the tables; returns its sub-sequence number.
    fn write_record(&mut self, pk_index: u64, ehk_index: Option<u64>, data: &[u8]) -> u64 {
        self.fit_room();
        // The `records` field, its body written in place (its length is known first).
        let body_len = record_body_size(pk_index, ehk_index, data.len());
        let out = &mut self.out;
        out.reserve(len_field_size(RECORDS, body_len));
        put_varint(out, key(RECORDS, WIRE_LEN));
        put_varint(out, body_len as u64);
        let body_start = out.len();
        put_varint_field(out, RECORD_PARTITION_KEY_INDEX, pk_index);
        if let Some(ehk_index) = ehk_index {
            put_varint_field(out, RECORD_EXPLICIT_HASH_KEY_INDEX, ehk_index);
        }
        put_len_field(out, RECORD_DATA, data);
        debug_assert_eq!(out.len() - body_start, body_len);

        let sub_sequence = self.count as u64;
        self.count += 1;
        sub_sequence
    }

    /// The aggregate: magic, protobuf message, MD5 of the message. Exactly
    /// [`encoded_len`](Self::encoded_len) bytes. An empty aggregator gives 20 bytes that
    /// readers take for a plain record; do not send them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_without_digest();
        write_digests(std::slice::from_mut(&mut out));
        out
    }

    /// [`encode`](Self::encode) with the 16 digest bytes left zero, for a caller that
    /// finishes several aggregates at once with [`write_digests`](super::write_digests)
    /// (MD5 runs several messages per SIMD instruction; one at a time it is most of the
    /// cost of writing an aggregate). Not an aggregate until then: readers find a digest
    /// mismatch.
    pub fn encode_without_digest(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_without_digest_into(&mut out);
        out
    }

    /// [`encode_without_digest`](Self::encode_without_digest) into `out`, replacing what it
    /// held: a caller that recycles its buffers writes aggregates into memory that is
    /// already there instead of fresh pages.
    pub fn encode_without_digest_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve_exact(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(self.partition_keys.encoded());
        out.extend_from_slice(self.explicit_hash_keys.encoded());
        out.extend_from_slice(self.records());
        out.resize(out.len() + DIGEST_LEN, 0);
    }

    /// Empties it for the next aggregate, keeping its allocations.
    pub fn clear(&mut self) {
        self.partition_keys.clear();
        self.explicit_hash_keys.clear();
        self.out.truncate(self.room);
        self.count = 0;
    }

    /// [`encode_without_digest`](Self::encode_without_digest), then [`clear`](Self::clear),
    /// without copying the records: the aggregate is the buffer they were written into,
    /// with magic and tables written in front of them. The next aggregate gets a buffer of
    /// about this one's size (so it grows seldom while records are added).
    pub fn take_encoded(&mut self) -> Encoded {
        let next = Vec::with_capacity(self.next_capacity());
        self.take_encoded_swap(next)
    }

    /// [`take_encoded`](Self::take_encoded) into `out`, whose buffer the aggregator keeps
    /// for the next aggregate: a caller that recycles its aggregates writes into memory
    /// that is already there instead of fresh pages.
    pub fn take_encoded_into(&mut self, out: &mut Encoded) {
        let mut next = std::mem::take(&mut out.buf);
        next.clear();
        *out = self.take_encoded_swap(next);
    }

    /// Room, records so far, digest, and a sixteenth more.
    fn next_capacity(&self) -> usize {
        let len = self.buffer_len();
        len + len / 16
    }

    /// How much of its buffer this aggregate fills: room, records, digest. A caller that
    /// hands [`take_encoded_into`](Self::take_encoded_into) its buffers makes them about
    /// this large, with some room: aggregates near the size limit differ by a record.
    pub fn buffer_len(&self) -> usize {
        self.out.len() + DIGEST_LEN
    }

    fn take_encoded_swap(&mut self, next: Vec<u8>) -> Encoded {
        self.fit_room();
        let start = self.room - MAGIC.len() - self.tables_len();
        let mut head = start;
        let parts = [
            &MAGIC[..],
            self.partition_keys.encoded(),
            self.explicit_hash_keys.encoded(),
        ];
        for part in parts {
            self.out[head..head + part.len()].copy_from_slice(part);
            head += part.len();
        }
        self.out.resize(self.out.len() + DIGEST_LEN, 0);
        let buf = std::mem::replace(&mut self.out, next);
        self.clear();
        self.fit_room();
        Encoded { buf, start }
    }

    /// [`encode`](Self::encode), then [`clear`](Self::clear).
    pub fn take(&mut self) -> Vec<u8> {
        let out = self.encode();
        self.clear();
        out
    }

    /// [`encode_without_digest`](Self::encode_without_digest), then [`clear`](Self::clear).
    pub fn take_without_digest(&mut self) -> Vec<u8> {
        let out = self.encode_without_digest();
        self.clear();
        out
    }

    /// [`encode_without_digest_into`](Self::encode_without_digest_into), then
    /// [`clear`](Self::clear).
    pub fn take_without_digest_into(&mut self, out: &mut Vec<u8>) {
        self.encode_without_digest_into(out);
        self.clear();
    }
}

/// [`Aggregator::added_len`] of a record whose keys were looked up in the tables: the
/// record, and each key new to its table.
fn added_len_found(
    partition_key: &str,
    pk: Found,
    ehk: Option<(&str, Found)>,
    data_len: usize,
) -> usize {
    let mut added = record_field_size(pk.index, ehk.map(|(_, f)| f.index), data_len);
    if pk.new {
        added += len_field_size(PARTITION_KEY_TABLE, partition_key.len());
    }
    if let Some((k, _)) = ehk.filter(|(_, f)| f.new) {
        added += len_field_size(EXPLICIT_HASH_KEY_TABLE, k.len());
    }
    added
}

fn record_body_size(pk_index: u64, ehk_index: Option<u64>, data_len: usize) -> usize {
    varint_field_size(RECORD_PARTITION_KEY_INDEX, pk_index)
        + ehk_index.map_or(0, |i| varint_field_size(RECORD_EXPLICIT_HASH_KEY_INDEX, i))
        + len_field_size(RECORD_DATA, data_len)
}

fn record_field_size(pk_index: u64, ehk_index: Option<u64>, data_len: usize) -> usize {
    len_field_size(RECORDS, record_body_size(pk_index, ehk_index, data_len))
}
