//! One aggregate's table of partition keys (or of explicit hash keys): the encoded
//! `repeated string` fields as they go on the wire, and an index from a key to its
//! position in the table.
//!
//! The keys are stored once, in the encoded fields; the index maps a key's hash to its
//! position and where its bytes are, and compares the bytes. (A `HashMap<String, _>` kept a
//! copy of every key, allocated per key: with 1 KiB records, whose aggregates hold ~50
//! records and as many new keys, inserting into it was a fifth of the time of aggregating.)
//! Two keys with the same 64-bit hash are still told apart: the index keeps the first, and
//! a key that matches the hash but not the bytes is looked for among all the keys.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use super::wire::put_len_field;

/// Hashes that are already hashes: the index's keys are the keys' 64-bit foldhash.
#[derive(Debug, Default, Clone, Copy)]
struct Unmixed(u64);

impl Hasher for Unmixed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A key looked for in a table: its hash, and the position it has or would get.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    hash: u64,
    pub(super) index: u64,
    pub(super) new: bool,
}

#[derive(Debug, Clone)]
pub(super) struct KeyTable {
    /// The protobuf field number of the table.
    field: u32,
    /// The encoded fields.
    encoded: Vec<u8>,
    /// Where each key's bytes are in `encoded`, in table order.
    keys: Vec<(usize, usize)>,
    /// The table position of the first key with each hash.
    by_hash: HashMap<u64, u64, BuildHasherDefault<Unmixed>>,
    hasher: foldhash::fast::RandomState,
}

impl KeyTable {
    pub(super) fn new(field: u32) -> Self {
        Self {
            field,
            encoded: Vec::new(),
            keys: Vec::new(),
            by_hash: HashMap::default(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The encoded fields.
    pub(super) fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The position of `key`, appended if new.
    pub(super) fn intern(&mut self, key: &str) -> u64 {
        let found = self.find_key(key);
        self.insert(found, key)
    }

    /// Where `key` is or would go, for [`insert`](Self::insert) to add it without looking
    /// for it again.
    pub(super) fn find_key(&self, key: &str) -> Found {
        let hash = self.hasher.hash_one(key);
        let (index, new) = self.find(hash, key);
        Found { hash, index, new }
    }

    /// Appends `key` if `found` (this table's [`find_key`](Self::find_key) of it, with
    /// nothing added since) says it is new; returns its position.
    pub(super) fn insert(&mut self, found: Found, key: &str) -> u64 {
        debug_assert_eq!(
            found.index,
            self.find(found.hash, key).0,
            "found in this table"
        );
        if found.new {
            put_len_field(&mut self.encoded, self.field, key.as_bytes());
            self.keys.push((self.encoded.len() - key.len(), key.len()));
            self.by_hash.entry(found.hash).or_insert(found.index);
        }
        found.index
    }

    pub(super) fn clear(&mut self) {
        self.encoded.clear();
        self.keys.clear();
        self.by_hash.clear();
    }

    fn find(&self, hash: u64, key: &str) -> (u64, bool) {
        let is = |i: u64| {
            let (start, len) = self.keys[i as usize];
            self.encoded.get(start..start + len) == Some(key.as_bytes())
        };
        let new = (self.keys.len() as u64, true);
        match self.by_hash.get(&hash) {
            None => new,
            Some(&i) if is(i) => (i, false),
            // Another key with this hash: look through them all.
            Some(_) => (0..self.keys.len() as u64)
                .find(|&i| is(i))
                .map_or(new, |i| (i, false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position `key` has or would get in `t`, and whether it is new.
    fn lookup(t: &KeyTable, key: &str) -> (u64, bool) {
        let found = t.find_key(key);
        (found.index, found.new)
    }

    #[test]
    fn keys_with_the_same_hash_are_told_apart() {
        let mut t = KeyTable::new(1);
        assert_eq!(t.intern("a"), 0);
        assert_eq!(t.intern("b"), 1);
        // Make "c" collide with "a": point the index at "a" for the hash of "c".
        let hash_c = t.hasher.hash_one("c");
        t.by_hash.insert(hash_c, 0);
        assert_eq!(lookup(&t, "c"), (2, true));
        assert_eq!(t.intern("c"), 2);
        assert_eq!(lookup(&t, "c"), (2, false), "found by the scan");
        assert_eq!(t.intern("c"), 2);
        assert_eq!(lookup(&t, "a"), (0, false));
        assert_eq!(t.encoded(), b"\x0a\x01a\x0a\x01b\x0a\x01c");
        t.clear();
        assert_eq!(lookup(&t, "b"), (0, true));
        assert!(t.encoded().is_empty());
    }
}
