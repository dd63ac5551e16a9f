//! The protobuf wire format, by hand: just what the aggregate schema needs.
//!
//! A message is a sequence of fields, each a varint key `field_number << 3 | wire_type`
//! followed by a value whose shape the wire type gives. Offsets in errors count from the
//! first byte of the Kinesis record (the first magic byte), so they point into a hex dump
//! of the record as received.

use super::AggError;

pub(super) const WIRE_VARINT: u8 = 0;
pub(super) const WIRE_FIXED64: u8 = 1;
pub(super) const WIRE_LEN: u8 = 2;
pub(super) const WIRE_START_GROUP: u8 = 3;
pub(super) const WIRE_END_GROUP: u8 = 4;
pub(super) const WIRE_FIXED32: u8 = 5;

/// Field numbers are 1..=2^29-1.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;
/// A varint is at most 10 bytes (64 bits, 7 per byte).
const MAX_VARINT_LEN: usize = 10;

/// The key byte(s) of a field: `field << 3 | wire_type`. Our fields are all below 16, so a
/// key is one byte; [`key_len`] is still exact for any field.
pub(super) fn key(field: u32, wire_type: u8) -> u64 {
    (u64::from(field) << 3) | u64::from(wire_type)
}

/// How many bytes `value` takes as a varint (1..=10).
pub(super) fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Size of a length-delimited field (key, length, payload) carrying `payload_len` bytes.
pub(super) fn len_field_size(field: u32, payload_len: usize) -> usize {
    varint_len(key(field, WIRE_LEN)) + varint_len(payload_len as u64) + payload_len
}

/// Size of a varint field (key and value).
pub(super) fn varint_field_size(field: u32, value: u64) -> usize {
    varint_len(key(field, WIRE_VARINT)) + varint_len(value)
}

pub(super) fn put_len_field(out: &mut Vec<u8>, field: u32, payload: &[u8]) {
    put_varint(out, key(field, WIRE_LEN));
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

pub(super) fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_varint(out, key(field, WIRE_VARINT));
    put_varint(out, value);
}

/// A field key as read: number, wire type, and the offset of its first byte.
#[derive(Debug, Clone, Copy)]
pub(super) struct Key {
    pub field: u32,
    pub wire_type: u8,
    pub offset: usize,
}

/// Reads one message: `buf[pos..end]`, where `buf` is the whole Kinesis record so that
/// offsets (and the slices handed out) refer to it.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    /// The message type being read, for errors.
    message: &'static str,
}

impl<'a> Reader<'a> {
    /// `start..end` must lie within `buf`.
    pub fn new(buf: &'a [u8], start: usize, end: usize, message: &'static str) -> Self {
        debug_assert!(start <= end && end <= buf.len());
        Reader {
            buf,
            pos: start,
            end,
            message,
        }
    }

    pub fn is_done(&self) -> bool {
        self.pos >= self.end
    }

    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn varint(&mut self) -> Result<u64, AggError> {
        let offset = self.pos;
        let mut value = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let byte = match self.buf.get(self.pos) {
                Some(&b) if self.pos < self.end => b,
                _ => {
                    return Err(AggError::TruncatedVarint {
                        message: self.message,
                        offset,
                    })
                }
            };
            self.pos += 1;
            // The tenth byte holds bit 63 only.
            if i == MAX_VARINT_LEN - 1 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(AggError::VarintOverflow {
            message: self.message,
            offset,
        })
    }

    /// The next field key. Call only when not [`is_done`](Self::is_done).
    pub fn key(&mut self) -> Result<Key, AggError> {
        let offset = self.pos;
        let raw = self.varint()?;
        let field = raw >> 3;
        if field == 0 || field > MAX_FIELD_NUMBER {
            return Err(AggError::InvalidFieldNumber {
                message: self.message,
                field,
                offset,
            });
        }
        Ok(Key {
            field: field as u32,
            wire_type: (raw & 7) as u8,
            offset,
        })
    }

    /// The value of a varint field.
    pub fn uint64(&mut self) -> Result<u64, AggError> {
        self.varint()
    }

    /// Takes `len` bytes; `offset` is where the field's value starts, for the error.
    fn take(&mut self, key: Key, offset: usize, len: u64) -> Result<&'a [u8], AggError> {
        let available = self.remaining();
        let slice = usize::try_from(len)
            .ok()
            .filter(|&n| n <= available)
            .and_then(|n| self.buf.get(self.pos..self.pos + n));
        match slice {
            Some(slice) => {
                self.pos += slice.len();
                Ok(slice)
            }
            None => Err(AggError::LengthPastEnd {
                message: self.message,
                field: key.field,
                offset,
                len,
                available,
            }),
        }
    }

    /// The payload of a length-delimited field, and the offset where it starts.
    pub fn bytes(&mut self, key: Key) -> Result<(&'a [u8], usize), AggError> {
        let offset = self.pos;
        let len = self.varint()?;
        let start = self.pos;
        Ok((self.take(key, offset, len)?, start))
    }

    /// A `string` field: its payload must be UTF-8.
    pub fn string(&mut self, key: Key, what: &'static str) -> Result<&'a str, AggError> {
        let (bytes, offset) = self.bytes(key)?;
        std::str::from_utf8(bytes).map_err(|e| AggError::InvalidUtf8 {
            field: what,
            offset: offset + e.valid_up_to(),
        })
    }

    /// An embedded message field, as a reader of its own.
    pub fn message(&mut self, key: Key, message: &'static str) -> Result<Reader<'a>, AggError> {
        let (bytes, start) = self.bytes(key)?;
        Ok(Reader::new(self.buf, start, start + bytes.len(), message))
    }

    /// Skips the value of a field this schema does not know (or knows with another wire
    /// type, which protobuf parsers treat as unknown too).
    pub fn skip(&mut self, key: Key) -> Result<(), AggError> {
        match key.wire_type {
            WIRE_START_GROUP => self.skip_group(key),
            WIRE_END_GROUP => Err(AggError::UnmatchedEndGroup {
                message: self.message,
                field: key.field,
                offset: key.offset,
            }),
            _ => self.skip_scalar(key),
        }
    }

    fn skip_scalar(&mut self, key: Key) -> Result<(), AggError> {
        match key.wire_type {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.take(key, self.pos, 8).map(drop),
            WIRE_LEN => self.bytes(key).map(drop),
            WIRE_FIXED32 => self.take(key, self.pos, 4).map(drop),
            wire_type => Err(AggError::InvalidWireType {
                message: self.message,
                field: key.field,
                wire_type,
                offset: key.offset,
            }),
        }
    }

    /// Skips a (deprecated, but legal) group up to its matching end-group key. Iterative,
    /// so deeply nested groups in hostile input cannot overflow the stack.
    fn skip_group(&mut self, start: Key) -> Result<(), AggError> {
        let mut open = vec![start];
        while let Some(&innermost) = open.last() {
            if self.is_done() {
                return Err(AggError::UnclosedGroup {
                    message: self.message,
                    field: innermost.field,
                    offset: innermost.offset,
                });
            }
            let key = self.key()?;
            match key.wire_type {
                WIRE_START_GROUP => open.push(key),
                WIRE_END_GROUP if key.field == innermost.field => {
                    open.pop();
                }
                WIRE_END_GROUP => {
                    return Err(AggError::UnmatchedEndGroup {
                        message: self.message,
                        field: key.field,
                        offset: key.offset,
                    })
                }
                _ => self.skip_scalar(key)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_matches_encoding() {
        let mut edges = vec![0u64, 1, u64::MAX];
        for shift in 1..64 {
            edges.extend([(1u64 << shift) - 1, 1u64 << shift, (1u64 << shift) + 1]);
        }
        for v in edges {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&out, 0, out.len(), "test");
            assert_eq!(r.uint64().unwrap(), v);
            assert!(r.is_done());
        }
    }

    #[test]
    fn tenth_varint_byte_carries_one_bit() {
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&max, 0, 10, "t").uint64().unwrap(), u64::MAX);
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(matches!(
            Reader::new(&over, 0, 10, "t").uint64(),
            Err(AggError::VarintOverflow { offset: 0, .. })
        ));
        let long = [0x80; 11];
        assert!(matches!(
            Reader::new(&long, 0, 11, "t").uint64(),
            Err(AggError::VarintOverflow { .. })
        ));
    }

    #[test]
    fn reader_stops_at_its_end_not_the_buffer_end() {
        // A varint continuing past the message end is truncated even if the buffer goes on.
        let buf = [0x80, 0x01];
        assert!(matches!(
            Reader::new(&buf, 0, 1, "t").uint64(),
            Err(AggError::TruncatedVarint { offset: 0, .. })
        ));
    }
}
