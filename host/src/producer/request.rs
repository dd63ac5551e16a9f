//! The body of a PutRecords request, written by the producer itself: one buffer of the
//! exact size, each record's data base64-encoded straight into it.
//!
//! Built through the SDK's model, a request held each record three times over while it was
//! in flight: the record, its copy in the entry's `Blob`, and the JSON body (grown by
//! doubling) — about 7 KB of memory per 1 KiB user record. Here the body is the only copy:
//! once it is written the records' data is dropped, and a record that must be put again
//! gets its bytes back by decoding its stretch of the body ([`data`]), which is rare. The
//! SDK still does the rest (endpoint, signing, sending, parsing the answer): the request
//! it serialises has no records, and its body is swapped for this one before it is signed
//! ([`super::pipeline`]).

use std::ops::Range;

use base64_simd::STANDARD;

/// One record of a request as the body needs it.
pub(super) struct Entry<'a> {
    pub(super) data: &'a [u8],
    pub(super) partition_key: &'a str,
    pub(super) explicit_hash_key: Option<&'a str>,
}

/// The JSON body of a PutRecords request (the `application/x-amz-json-1.1` the SDK sends),
/// and where each record's base64 data sits in it.
pub(super) fn write<'a>(
    stream: &str,
    entries: impl Iterator<Item = Entry<'a>> + Clone,
) -> (Vec<u8>, Vec<Range<usize>>) {
    const HEAD: &[u8] = b"{\"StreamName\":\"";
    const RECORDS: &[u8] = b"\",\"Records\":[";
    const DATA: &[u8] = b"{\"Data\":\"";
    const KEY: &[u8] = b"\",\"PartitionKey\":\"";
    const HASH_KEY: &[u8] = b"\",\"ExplicitHashKey\":\"";
    const END_RECORD: &[u8] = b"\"}";
    const END: &[u8] = b"]}";
    let mut len = HEAD.len() + escaped_len(stream) + RECORDS.len() + END.len();
    let mut n = 0usize;
    for e in entries.clone() {
        n += 1;
        len += DATA.len() + STANDARD.encoded_length(e.data.len()) + KEY.len();
        len += escaped_len(e.partition_key) + END_RECORD.len();
        if let Some(h) = e.explicit_hash_key {
            len += HASH_KEY.len() + escaped_len(h);
        }
    }
    len += n.saturating_sub(1); // the commas between records
    let mut body = Vec::with_capacity(len);
    let mut ranges = Vec::with_capacity(n);
    body.extend_from_slice(HEAD);
    escape_into(&mut body, stream);
    body.extend_from_slice(RECORDS);
    for (i, e) in entries.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(DATA);
        let start = body.len();
        STANDARD.encode_append(e.data, &mut body);
        ranges.push(start..body.len());
        body.extend_from_slice(KEY);
        escape_into(&mut body, e.partition_key);
        if let Some(h) = e.explicit_hash_key {
            body.extend_from_slice(HASH_KEY);
            escape_into(&mut body, h);
        }
        body.extend_from_slice(END_RECORD);
    }
    body.extend_from_slice(END);
    debug_assert_eq!(body.len(), len);
    (body, ranges)
}

/// A record's data again, from its stretch of a body [`write`] wrote.
pub(super) fn data(body: &[u8], range: Range<usize>) -> Vec<u8> {
    STANDARD
        .decode_to_vec(&body[range])
        .expect("the producer's own base64")
}

/// Length of `s` as a JSON string's contents.
fn escaped_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// `s` as a JSON string's contents (RFC 8259: quote, backslash and control characters
/// escaped, everything else as it is).
fn escape_into(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_json_the_sdk_would_send_and_gives_each_record_back() {
        let records: Vec<(Vec<u8>, String, Option<String>)> = vec![
            (b"hello".to_vec(), "key \"one\"\\\n\u{1}é".into(), None),
            ((0..=255u8).collect(), "k2".into(), Some("42".into())),
            (Vec::new(), "k3".into(), None),
        ];
        let entries = records.iter().map(|(d, k, h)| Entry {
            data: d,
            partition_key: k,
            explicit_hash_key: h.as_deref(),
        });
        let (body, ranges) = write("orders \"eu\"", entries);
        assert_eq!(body.capacity(), body.len(), "sized exactly");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(json["StreamName"], "orders \"eu\"");
        let got = json["Records"].as_array().expect("records");
        assert_eq!(got.len(), records.len());
        for (i, (d, k, h)) in records.iter().enumerate() {
            let want = aws_smithy_types::base64::encode(d);
            assert_eq!(got[i]["Data"], want.as_str());
            assert_eq!(got[i]["PartitionKey"], k.as_str());
            match h {
                Some(h) => assert_eq!(got[i]["ExplicitHashKey"], h.as_str()),
                None => assert!(got[i].get("ExplicitHashKey").is_none()),
            }
            assert_eq!(data(&body, ranges[i].clone()), *d);
        }
    }
}
