//! PutRecords in CBOR (`application/x-amz-cbor-1.1`, RFC 8949), the encoding the AWS SDK
//! for Java speaks to Kinesis. A record's data travels as a CBOR byte string — its own
//! bytes, not base64 text — so the request body is not a copy of the records at all: it is
//! sent as the Kinesis records' own buffers, between short fragments (map headers, keys,
//! partition keys) written here into one small buffer. Nothing is base64-encoded, the
//! SigV4 payload hash reads a quarter fewer bytes than the JSON body has, and a request in
//! flight holds no memory beyond its records and those fragments.
//!
//! The answer comes back in CBOR too. [`Deserializer`] turns it into the JSON the SDK's own
//! deserializer reads, so successes and errors (their codes and messages) are the SDK's,
//! exactly as with the JSON protocol. Answers are small (a sequence number or an error per
//! Kinesis record), so the turn costs little.

use std::sync::LazyLock;

use aws_sdk_kinesis::operation::put_records::PutRecords;
use aws_smithy_runtime_api::client::interceptors::context::{Error, Output};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::ser_de::DeserializeResponse;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use base64_simd::STANDARD;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::request::Payload;
use crate::sdk_answer::SdkDeserializer;

/// The content type of a CBOR request, and of its answer.
pub(super) const CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

/// One record of a request: its data (shared with the Kinesis record, not copied) and keys.
pub(super) struct Entry<'a> {
    pub(super) data: Bytes,
    pub(super) partition_key: &'a str,
    pub(super) explicit_hash_key: Option<&'a str>,
}

/// CBOR major types written here (RFC 8949, 3.1).
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;

/// The PutRecords body `{"StreamName": stream, "Records": [{"Data": …, "PartitionKey": …,
/// "ExplicitHashKey": …}, …]}`, with definite lengths throughout, as pieces: fragment, data,
/// fragment, data, …, fragment. Also its length and SHA-256.
pub(super) fn write<'a>(
    stream: &str,
    entries: impl ExactSizeIterator<Item = Entry<'a>>,
) -> Payload {
    let n = entries.len();
    let mut fragments = Vec::with_capacity(64 + n * 48);
    // where each record's data goes: the fragments before it end there
    let mut cuts = Vec::with_capacity(n);
    let mut data = Vec::with_capacity(n);
    head(&mut fragments, MAP, 2);
    text(&mut fragments, "StreamName");
    text(&mut fragments, stream);
    text(&mut fragments, "Records");
    head(&mut fragments, ARRAY, n as u64);
    for e in entries {
        head(
            &mut fragments,
            MAP,
            2 + u64::from(e.explicit_hash_key.is_some()),
        );
        text(&mut fragments, "Data");
        head(&mut fragments, BYTES, e.data.len() as u64);
        cuts.push(fragments.len());
        data.push(e.data);
        text(&mut fragments, "PartitionKey");
        text(&mut fragments, e.partition_key);
        if let Some(h) = e.explicit_hash_key {
            text(&mut fragments, "ExplicitHashKey");
            text(&mut fragments, h);
        }
    }
    let fragments = Bytes::from(fragments);
    let mut pieces = Vec::with_capacity(2 * n + 1);
    let mut from = 0;
    for (cut, d) in cuts.into_iter().zip(data) {
        pieces.push(fragments.slice(from..cut));
        pieces.push(d);
        from = cut;
    }
    pieces.push(fragments.slice(from..));
    pieces.retain(|p| !p.is_empty());
    let mut hash = Sha256::new();
    let mut len = 0;
    for p in &pieces {
        hash.update(p);
        len += p.len();
    }
    Payload {
        pieces: pieces.into(),
        len,
        sha256_hex: hex::encode(hash.finalize()),
        content_type: CONTENT_TYPE,
    }
}

/// The head of a data item of type `major` and argument `arg` (a length, or the value of
/// an unsigned integer), in its shortest form.
fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// A text string.
fn text(out: &mut Vec<u8>, s: &str) {
    head(out, TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The SDK's own deserializer of PutRecords answers.
static SDK: LazyLock<SdkDeserializer> = LazyLock::new(|| SdkDeserializer::of(PutRecords::new()));

/// The SDK's deserializer, given a CBOR answer as the JSON it stands for (see the module
/// docs).
#[derive(Debug, Clone)]
pub(super) struct Deserializer;

impl DeserializeResponse for Deserializer {
    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<Error>> {
        let sdk = &*SDK;
        let is_cbor = response
            .headers()
            .get("content-type")
            .is_some_and(|t| t.starts_with(CONTENT_TYPE));
        let json = match response.body().bytes() {
            Some(body) if is_cbor => to_json(body),
            // an answer in another form (a proxy's, say): the SDK reads what it can
            _ => return sdk.deserialize_nonstreaming_with_config(response, cfg),
        };
        let json = match json {
            Ok(json) => json,
            Err(e) => {
                let e = format!("PutRecords answered with CBOR that cannot be read: {e}");
                return Err(OrchestratorError::other(e));
            }
        };
        let mut turned = HttpResponse::new(response.status(), SdkBody::from(json));
        for (name, value) in response.headers() {
            turned
                .headers_mut()
                .append(name.to_string(), value.to_string());
        }
        turned
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        sdk.deserialize_nonstreaming_with_config(&turned, cfg)
    }
}

/// A CBOR data item as JSON: byte strings as base64 text (as the JSON protocol sends
/// blobs), tags dropped for the item they tag, keys that are not text written as text.
pub(super) fn to_json(cbor: &[u8]) -> Result<Vec<u8>, String> {
    let value: ciborium::Value = ciborium::from_reader(cbor).map_err(|e| e.to_string())?;
    serde_json::to_vec(&json(value)).map_err(|e| e.to_string())
}

fn json(v: ciborium::Value) -> serde_json::Value {
    use ciborium::Value as C;
    use serde_json::Value as J;
    match v {
        C::Integer(i) => {
            let i = i128::from(i);
            match (i64::try_from(i), u64::try_from(i)) {
                (Ok(i), _) => J::from(i),
                (_, Ok(u)) => J::from(u),
                _ => J::from(i as f64),
            }
        }
        C::Bytes(b) => J::String(STANDARD.encode_to_string(b)),
        C::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        C::Text(s) => J::String(s),
        C::Bool(b) => J::Bool(b),
        C::Null => J::Null,
        C::Tag(_, v) => json(*v),
        C::Array(a) => J::Array(a.into_iter().map(json).collect()),
        C::Map(m) => J::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let k = match k {
                        C::Text(k) => k,
                        k => json(k).to_string(),
                    };
                    (k, json(v))
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sdk_answer::canned::Answers;

    const UNSIGNED: u8 = 0;

    /// What PutRecords of one CBOR record makes of an answer, and the content type sent.
    async fn put(
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> (
        Result<
            aws_sdk_kinesis::operation::put_records::PutRecordsOutput,
            aws_sdk_kinesis::error::SdkError<
                aws_sdk_kinesis::operation::put_records::PutRecordsError,
            >,
        >,
        String,
    ) {
        let answers = Answers::new(status, content_type, body);
        let client = answers.client();
        let entry = Entry {
            data: Bytes::from_static(b"data"),
            partition_key: "k",
            explicit_hash_key: None,
        };
        let payload = write("s", std::iter::once(entry));
        let out = super::super::request::put_records(&client, "s", &payload).await;
        let sent = answers.sent.lock().expect("not poisoned").concat();
        (out, sent)
    }

    fn cbor(v: &serde_json::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).expect("CBOR");
        out
    }

    #[tokio::test]
    async fn answers_and_errors_in_cbor_are_the_sdks() {
        let ok = serde_json::json!({"FailedRecordCount": 0, "Records": [
            {"SequenceNumber": "4959", "ShardId": "shardId-000000000001"}]});
        let (out, sent) = put(200, CONTENT_TYPE, cbor(&ok)).await;
        assert_eq!(sent, CONTENT_TYPE);
        let out = out.expect("read");
        assert_eq!(out.failed_record_count, Some(0));
        assert_eq!(out.records[0].sequence_number.as_deref(), Some("4959"));
        assert_eq!(
            out.records[0].shard_id.as_deref(),
            Some("shardId-000000000001")
        );

        let missing = serde_json::json!({"__type": "ResourceNotFoundException",
            "message": "Stream s under account 000000000000 not found."});
        let e = put(400, CONTENT_TYPE, cbor(&missing))
            .await
            .0
            .expect_err("an error");
        let e = e.into_service_error();
        assert!(e.is_resource_not_found_exception(), "{e:?}");
        assert!(format!("{e}").contains("not found"), "{e}");

        // an answer in JSON (a proxy's, say) is read as JSON
        let throttled = br#"{"__type":"ProvisionedThroughputExceededException","message":"slow"}"#;
        let e = put(400, "application/x-amz-json-1.1", throttled.to_vec())
            .await
            .0;
        let e = e.expect_err("an error").into_service_error();
        assert!(e.is_provisioned_throughput_exceeded_exception(), "{e:?}");

        let e = put(200, CONTENT_TYPE, vec![0xbf, 0x61])
            .await
            .0
            .expect_err("unreadable");
        let e = crate::aws::describe(&e);
        assert!(e.contains("CBOR that cannot be read"), "{e}");
    }

    fn concat(p: &Payload) -> Vec<u8> {
        p.pieces.iter().flat_map(|p| p.iter().copied()).collect()
    }

    #[test]
    fn the_body_is_the_cbor_of_the_request_and_sends_the_data_it_was_given() {
        let records: Vec<(Bytes, String, Option<String>)> = vec![
            (Bytes::from_static(b"hello"), "key \"one\"é".into(), None),
            ((0..=255u8).collect(), "k2".into(), Some("42".into())),
            (Bytes::new(), "k3".into(), None),
            (vec![9u8; 70_000].into(), "k".repeat(256), None),
        ];
        let entries = records.iter().map(|(d, k, h)| Entry {
            data: d.clone(),
            partition_key: k,
            explicit_hash_key: h.as_deref(),
        });
        let payload = write("orders", entries);
        let body = concat(&payload);
        assert_eq!(payload.len, body.len());
        assert_eq!(payload.sha256_hex, hex::encode(Sha256::digest(&body)));
        // The data pieces are the records' own buffers.
        for (d, _, _) in records.iter().filter(|(d, _, _)| !d.is_empty()) {
            assert!(payload.pieces.iter().any(|p| p.as_ptr() == d.as_ptr()));
        }
        let value: ciborium::Value = ciborium::from_reader(&body[..]).expect("valid CBOR");
        let map = value.as_map().expect("a map");
        let get = |m: &[(ciborium::Value, ciborium::Value)], k: &str| {
            m.iter()
                .find(|(key, _)| key.as_text() == Some(k))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get(map, "StreamName").and_then(|v| v.into_text().ok()),
            Some("orders".into())
        );
        let got = get(map, "Records")
            .and_then(|v| v.into_array().ok())
            .expect("records");
        assert_eq!(got.len(), records.len());
        for (r, (d, k, h)) in got.iter().zip(&records) {
            let r = r.as_map().expect("a record");
            assert_eq!(
                get(r, "Data").and_then(|v| v.into_bytes().ok()),
                Some(d.to_vec())
            );
            assert_eq!(
                get(r, "PartitionKey")
                    .and_then(|v| v.into_text().ok())
                    .as_ref(),
                Some(k)
            );
            assert_eq!(
                get(r, "ExplicitHashKey").and_then(|v| v.into_text().ok()),
                h.clone()
            );
        }
    }

    #[test]
    fn heads_take_their_shortest_form() {
        for (arg, want) in [
            (0u64, vec![0x40]),
            (23, vec![0x57]),
            (24, vec![0x58, 24]),
            (255, vec![0x58, 0xff]),
            (256, vec![0x59, 1, 0]),
            (65_536, vec![0x5a, 0, 1, 0, 0]),
            (1 << 32, vec![0x5b, 0, 0, 0, 1, 0, 0, 0, 0]),
        ] {
            let mut out = Vec::new();
            head(&mut out, BYTES, arg);
            assert_eq!(out, want, "{arg}");
            let mut unsigned = Vec::new();
            head(&mut unsigned, UNSIGNED, arg);
            assert_eq!(unsigned[0] & 0x1f, want[0] & 0x1f);
        }
    }

    #[test]
    fn an_answer_reads_as_its_json() {
        // {"FailedRecordCount": 1, "Records": [{"SequenceNumber": "49…", "ShardId":
        // "shardId-000000000001"}, {"ErrorCode": "ProvisionedThroughputExceededException",
        // "ErrorMessage": "slow down"}], "EncryptionType": "NONE"} with an indefinite-length
        // map, as some encoders write them, and a blob.
        let mut cbor = vec![0xbf];
        text(&mut cbor, "FailedRecordCount");
        head(&mut cbor, UNSIGNED, 1);
        text(&mut cbor, "Records");
        head(&mut cbor, ARRAY, 2);
        head(&mut cbor, MAP, 2);
        text(&mut cbor, "SequenceNumber");
        text(
            &mut cbor,
            "49590338271490256608559692538361571095921575989136588898",
        );
        text(&mut cbor, "ShardId");
        text(&mut cbor, "shardId-000000000001");
        head(&mut cbor, MAP, 2);
        text(&mut cbor, "ErrorCode");
        text(&mut cbor, "ProvisionedThroughputExceededException");
        text(&mut cbor, "ErrorMessage");
        text(&mut cbor, "slow down");
        text(&mut cbor, "Blob");
        head(&mut cbor, BYTES, 3);
        cbor.extend_from_slice(b"abc");
        cbor.push(0xff);
        let json: serde_json::Value =
            serde_json::from_slice(&to_json(&cbor).expect("read")).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "FailedRecordCount": 1,
                "Records": [
                    {"SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                     "ShardId": "shardId-000000000001"},
                    {"ErrorCode": "ProvisionedThroughputExceededException",
                     "ErrorMessage": "slow down"}
                ],
                "Blob": "YWJj"
            })
        );
        assert!(to_json(&cbor[..cbor.len() - 1]).is_err(), "cut short");
    }
}
