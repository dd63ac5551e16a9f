//! Dead letters: a source record a stage failed on, published with why and where it came
//! from instead of stopping the shard (`errors.policy` or a stage's `on_error` set to
//! `dead_letter`).
//!
//! On a **Pulsar** dead-letter sink the message is the original record — same key, the
//! original bytes as payload, the usual `kinesis.*` properties — plus the properties
//! [`STAGE`], [`KIND`], [`COMPONENT`], [`REASON`], [`STREAM`], [`SHARD`],
//! [`SEQUENCE_NUMBER`] and, for a user record of a KPL aggregate,
//! [`SUB_SEQUENCE_NUMBER`].
//!
//! A **Kinesis** record has no properties, so on a Kinesis dead-letter sink the record is
//! a JSON [envelope](envelope): an object with the same property names, plus
//! `kinesis.partition.key`, `kinesis.arrival.timestamp` and `data`, the original bytes in
//! standard base64. Its partition key is the original record's. Base64 makes data a third
//! larger: when the envelope would not fit in a Kinesis record (1 MiB with its key), `data`
//! is left out and `data.omitted` says how many bytes the record had.

use super::RecordContext;
use crate::wasm::RecordFailure;

/// Stage that failed ([`crate::config::StageKind`]): `deserialize`, `transform`, `route`,
/// or `pipeline` when a fused call failed as a whole.
pub const STAGE: &str = "shardline.error.stage";
/// `rejected`, `trap`, `timeout`, `memory` or `contract`.
pub const KIND: &str = "shardline.error.kind";
/// The component's name (its file name without `.wasm`).
pub const COMPONENT: &str = "shardline.error.component";
/// The message: the guest's reason for a rejection, the trap or limit otherwise.
pub const REASON: &str = "shardline.error.reason";
/// The source stream.
pub const STREAM: &str = "shardline.error.stream";
/// The source shard id.
pub const SHARD: &str = "shardline.error.shard";
/// The source record's sequence number.
pub const SEQUENCE_NUMBER: &str = "shardline.error.sequence.number";
/// Position inside a KPL aggregate (only for user records that came in one).
pub const SUB_SEQUENCE_NUMBER: &str = "shardline.error.sub.sequence.number";

/// The dead-letter properties of a failed record, in a fixed order.
pub fn properties(
    failure: &RecordFailure,
    record: &RecordContext<'_>,
) -> Vec<(&'static str, String)> {
    let mut p = vec![
        (STAGE, failure.stage.to_string()),
        (KIND, failure.kind.as_str().to_string()),
        (COMPONENT, failure.component.clone()),
        (REASON, failure.reason.clone()),
        (STREAM, record.stream.to_string()),
        (SHARD, record.shard_id.to_string()),
        (SEQUENCE_NUMBER, record.sequence_number.to_string()),
    ];
    if let Some(sub) = record.sub_sequence_number {
        p.push((SUB_SEQUENCE_NUMBER, sub.to_string()));
    }
    p
}

/// The JSON record put on a Kinesis dead-letter stream: every dead-letter property,
/// `kinesis.partition.key`, `kinesis.arrival.timestamp`, and `data` (base64) — or, when
/// that would make it larger than `max_len` bytes, `data.omitted` (the data's length).
pub fn envelope(
    failure: &RecordFailure,
    record: &RecordContext<'_>,
    data: &[u8],
    max_len: usize,
) -> Vec<u8> {
    use super::properties::{java_instant, ARRIVAL_TIMESTAMP, PARTITION_KEY};
    let mut o = serde_json::Map::new();
    for (k, v) in properties(failure, record) {
        o.insert(k.to_string(), v.into());
    }
    o.insert(PARTITION_KEY.to_string(), record.partition_key.into());
    o.insert(
        ARRIVAL_TIMESTAMP.to_string(),
        java_instant(record.arrival_millis).into(),
    );
    let mut with_data = o.clone();
    with_data.insert("data".to_string(), base64(data).into());
    let full = serde_json::Value::Object(with_data)
        .to_string()
        .into_bytes();
    if full.len() <= max_len {
        return full;
    }
    o.insert("data.omitted".to_string(), data.len().into());
    serde_json::Value::Object(o).to_string().into_bytes()
}

/// Most bytes of a Kinesis dead-letter envelope: a record with its partition key fits in
/// 1 MiB.
pub fn max_envelope_len(partition_key: &str) -> usize {
    crate::kinesis_limits::MAX_RECORD_BYTES.saturating_sub(partition_key.len())
}

/// Standard base64 (RFC 4648 §4) with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::FailureKind;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn envelope_carries_every_property_and_the_bytes() {
        let f = RecordFailure {
            index: 0,
            stage: crate::config::StageKind::Transform,
            component: "orders".into(),
            kind: FailureKind::Rejected,
            reason: "bad \"json\"".into(),
        };
        let rc = RecordContext {
            stream: "s",
            shard_id: "shardId-000000000001",
            partition_key: "k",
            sequence_number: "123",
            sub_sequence_number: Some(2),
            arrival_millis: 1_700_000_000_123,
            encryption_type: None,
            millis_behind_latest: None,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&envelope(&f, &rc, b"\x00raw", 1 << 20)).expect("JSON");
        assert_eq!(v[STAGE], "transform");
        assert_eq!(v[KIND], "rejected");
        assert_eq!(v[COMPONENT], "orders");
        assert_eq!(v[REASON], "bad \"json\"");
        assert_eq!(v[STREAM], "s");
        assert_eq!(v[SHARD], "shardId-000000000001");
        assert_eq!(v[SEQUENCE_NUMBER], "123");
        assert_eq!(v[SUB_SEQUENCE_NUMBER], "2");
        assert_eq!(v["kinesis.partition.key"], "k");
        assert_eq!(v["kinesis.arrival.timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["data"], base64(b"\x00raw"));
        assert!(v.get("data.omitted").is_none());

        // A record whose base64 would not fit in a Kinesis record: the data is left out.
        let big = vec![7u8; 900_000];
        let e = envelope(&f, &rc, &big, max_envelope_len("k"));
        assert!(e.len() <= max_envelope_len("k"));
        let v: serde_json::Value = serde_json::from_slice(&e).expect("JSON");
        assert!(v.get("data").is_none());
        assert_eq!(v["data.omitted"], 900_000);
        assert_eq!(v[SEQUENCE_NUMBER], "123");
    }
}
