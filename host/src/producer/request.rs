//! A PutRecords request as the producer sends it: the body in JSON
//! (`application/x-amz-json-1.1`, written here: one buffer of the exact size, each record's
//! data base64-encoded straight into it) or in CBOR ([`super::cbor`], the default), and the
//! call that sends either.
//!
//! Built through the SDK's model, a request held each record three times over while it was
//! in flight: the record, its copy in the entry's `Blob`, and the JSON body (grown by
//! doubling) — about 7 KB of memory per 1 KiB user record. A JSON body here is the only
//! copy: once it is written the records' data is dropped, and a record that must be put
//! again gets its bytes back by decoding its stretch of the body ([`data`]), which is rare.
//! The SDK still does the rest (endpoint, signing, sending, parsing the answer): the
//! request it serialises has no records, and its body is swapped for the [`Payload`]'s
//! before it is signed.
//!
//! The SHA-256 of the body that SigV4 signs is computed here too, a few KiB at a time
//! right after they are written, while they are still in the CPU's cache: the SDK's signer,
//! given the hash, would otherwise read the whole body (up to 5 MiB) back from memory to
//! hash it, and that was a sixth of the producer's CPU with 1 KiB records.

use std::ops::Range;
use std::sync::Arc;

use aws_runtime::auth::PayloadSigningOverride;
use aws_sdk_kinesis::error::SdkError;
use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsOutput};
use aws_sdk_kinesis::Client;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use base64_simd::STANDARD;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::buffer_pool::BufferPool;

/// Bytes written to the body between two feeds of its hash: small enough to still be in
/// the CPU's first caches, large enough that feeding it costs nothing per record.
const HASH_STEP: usize = 4096;

/// One record of a request as the body needs it.
#[derive(Clone, Copy)]
pub(super) struct Entry<'a> {
    pub(super) data: &'a [u8],
    pub(super) partition_key: &'a str,
    pub(super) explicit_hash_key: Option<&'a str>,
}

/// A request body, where each record's data sits in it, and its SHA-256 in lowercase hex
/// (what SigV4 signs as the payload hash).
pub(super) struct Body {
    pub(super) bytes: Vec<u8>,
    pub(super) ranges: Vec<Range<usize>>,
    pub(super) sha256_hex: String,
}

/// The JSON body of a PutRecords request (the `application/x-amz-json-1.1` the SDK sends),
/// where each record's base64 data sits in it, and its SHA-256; in a buffer from `pool`.
pub(super) fn write<'a>(
    stream: &str,
    entries: impl Iterator<Item = Entry<'a>> + Clone,
    pool: &BufferPool,
) -> Body {
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
    let mut body = pool.take(len);
    let mut ranges = Vec::with_capacity(n);
    let mut hash = Sha256::new();
    let mut hashed = 0;
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
        if body.len() - hashed >= HASH_STEP {
            hash.update(&body[hashed..]);
            hashed = body.len();
        }
    }
    body.extend_from_slice(END);
    hash.update(&body[hashed..]);
    debug_assert_eq!(body.len(), len);
    Body {
        bytes: body,
        ranges,
        sha256_hex: hex::encode(hash.finalize()),
    }
}

/// What one PutRecords request sends: its body as pieces sent one after another (one for
/// a JSON body; a CBOR body is its records' own buffers between fragments, see
/// [`super::cbor`]), their total length, the body's SHA-256 in lowercase hex (what SigV4
/// signs as the payload hash), and its content type.
#[derive(Clone)]
pub(super) struct Payload {
    pub(super) pieces: Arc<[Bytes]>,
    pub(super) len: usize,
    pub(super) sha256_hex: String,
    pub(super) content_type: &'static str,
}

impl Payload {
    /// A JSON body [`write`] wrote, as one piece.
    pub(super) fn json(body: Bytes, sha256_hex: String) -> Self {
        Self {
            len: body.len(),
            pieces: Arc::new([body]),
            sha256_hex,
            content_type: JSON,
        }
    }

    fn body(&self) -> SdkBody {
        match &self.pieces[..] {
            [one] => SdkBody::from(one.clone()),
            _ => {
                let pieces = self.pieces.clone();
                SdkBody::retryable(move || SdkBody::from_body_1_x(Pieces::new(pieces.clone())))
            }
        }
    }
}

/// The content type of a JSON request.
const JSON: &str = "application/x-amz-json-1.1";

/// An HTTP body that sends its pieces in order, each as it is (no copy).
struct Pieces {
    pieces: Arc<[Bytes]>,
    next: usize,
    left: u64,
}

impl Pieces {
    fn new(pieces: Arc<[Bytes]>) -> Self {
        let left = pieces.iter().map(|p| p.len() as u64).sum();
        Self {
            pieces,
            next: 0,
            left,
        }
    }
}

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let Some(piece) = self.pieces.get(self.next).cloned() else {
            return std::task::Poll::Ready(None);
        };
        self.next += 1;
        self.left -= piece.len() as u64;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.pieces.len()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// One PutRecords call that sends `payload`: the SDK serialises a request without records,
/// the payload's body and content type are swapped in, and the signer is given the body's
/// SHA-256 instead of computing it (the same hash, so the same signature). A CBOR answer is
/// read as the JSON it stands for ([`super::cbor::Deserializer`]).
pub(super) async fn put_records(
    client: &Client,
    stream: &str,
    payload: &Payload,
) -> Result<PutRecordsOutput, SdkError<PutRecordsError>> {
    let sent = payload.clone();
    let content_type = payload.content_type;
    let call = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(Vec::new()))
        .customize()
        .mutate_request(move |req| {
            let headers = req.headers_mut();
            headers.insert("Content-Length", sent.len.to_string());
            headers.insert("Content-Type", sent.content_type);
            *req.body_mut() = sent.body();
        })
        .interceptor(PayloadHash(payload.sha256_hex.clone()));
    if content_type == super::cbor::CONTENT_TYPE {
        let reads = crate::sdk_answer::ReadsAnswer(super::cbor::Deserializer);
        call.interceptor(reads).send().await
    } else {
        call.send().await
    }
}

/// Gives the SigV4 signer a request's payload hash, computed while its body was written.
#[derive(Debug)]
struct PayloadHash(String);

impl Intercept for PayloadHash {
    fn name(&self) -> &'static str {
        "shardline::producer::PayloadHash"
    }

    fn modify_before_signing(
        &self,
        _: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(PayloadSigningOverride::Precomputed(self.0.clone()));
        Ok(())
    }
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
        let Body {
            bytes: body,
            ranges,
            sha256_hex,
        } = write("orders \"eu\"", entries, &BufferPool::new(1));
        // The length was computed exactly: the buffer is the one made for it, not grown.
        assert_eq!(body.capacity(), body.len() + body.len() / 16, "sized ahead");
        assert_eq!(sha256_hex, hex::encode(Sha256::digest(&body)));
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

    #[test]
    fn the_hash_fed_a_few_kib_at_a_time_is_the_hash_of_the_whole_body() {
        // Records of every size around the step, so that feeds fall everywhere.
        let records: Vec<Vec<u8>> = (0..700u32)
            .map(|i| (0..(i * 37) % 5000).map(|j| (i + j) as u8).collect())
            .collect();
        let entries = records.iter().map(|d| Entry {
            data: d,
            partition_key: "k",
            explicit_hash_key: None,
        });
        let body = write("s", entries, &BufferPool::new(1));
        assert!(body.bytes.len() > 100 * HASH_STEP);
        assert_eq!(body.sha256_hex, hex::encode(Sha256::digest(&body.bytes)));
    }

    /// A request's headers, lower-case names.
    type Headers = Vec<(String, String)>;

    /// The request as it would leave, stopped just before it is sent: its headers (all but
    /// the random invocation id).
    #[derive(Debug, Default, Clone)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<Headers>>>);

    impl Intercept for Capture {
        fn name(&self) -> &'static str {
            "capture"
        }

        fn read_before_transmit(
            &self,
            context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            let headers = context.request().headers().iter();
            // Every attempt gets a random invocation id; it is not signed.
            let headers = headers
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .filter(|(k, _)| k != "amz-sdk-invocation-id");
            self.0.lock().expect("not poisoned").push(headers.collect());
            Err("captured; not sent".into())
        }
    }

    #[derive(Debug)]
    struct FixedClock;

    impl aws_smithy_async::time::TimeSource for FixedClock {
        fn now(&self) -> std::time::SystemTime {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000)
        }
    }

    #[tokio::test]
    async fn a_precomputed_payload_hash_signs_the_request_as_the_sdk_would() {
        let capture = Capture::default();
        let conf = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "test",
            ))
            .endpoint_url("http://127.0.0.1:9")
            .time_source(FixedClock)
            .interceptor(capture.clone())
            .build();
        let client = Client::from_conf(conf);
        let records: Vec<Vec<u8>> = (0..300u32).map(|i| vec![i as u8; 1000]).collect();
        let body = write(
            "orders",
            records.iter().map(|d| Entry {
                data: d,
                partition_key: "k",
                explicit_hash_key: None,
            }),
            &BufferPool::new(1),
        );
        let bytes = Bytes::from(body.bytes);

        // The SDK hashing the body itself, as before.
        let sdk_hashed = {
            let b = bytes.clone();
            client
                .put_records()
                .stream_name("orders")
                .set_records(Some(Vec::new()))
                .customize()
                .mutate_request(move |req| {
                    req.headers_mut()
                        .insert("Content-Length", b.len().to_string());
                    *req.body_mut() = SdkBody::from(b.clone());
                })
                .send()
                .await
        };
        assert!(sdk_hashed.is_err(), "stopped before sending");
        let payload = Payload::json(bytes.clone(), body.sha256_hex);
        assert!(put_records(&client, "orders", &payload).await.is_err());
        let wrong = hex::encode(Sha256::digest(b"another body"));
        let payload = Payload::json(bytes.clone(), wrong);
        assert!(put_records(&client, "orders", &payload).await.is_err());

        let sent = capture.0.lock().expect("not poisoned").clone();
        assert_eq!(sent.len(), 3);
        let auth = |h: &[(String, String)]| {
            let v = h.iter().find(|(k, _)| k == "authorization");
            v.expect("signed").1.clone()
        };
        assert!(auth(&sent[0]).starts_with("AWS4-HMAC-SHA256 "));
        assert_eq!(sent[0], sent[1], "same headers, signature included");
        assert_ne!(
            auth(&sent[0]),
            auth(&sent[2]),
            "the hash given is the one signed"
        );
    }

    /// A body of one record of `n` bytes, in a buffer from `pool`.
    fn write_one(pool: &BufferPool, n: usize) -> Body {
        let data = vec![7u8; n];
        let entry = Entry {
            data: &data,
            partition_key: "k",
            explicit_hash_key: None,
        };
        write("s", std::iter::once(entry), pool)
    }

    #[test]
    fn a_body_buffer_is_used_again_once_every_copy_is_dropped() {
        let pool = BufferPool::new(1);
        let write_one = |n: usize| write_one(&pool, n);
        let first = write_one(3000);
        let ptr = first.bytes.as_ptr();
        let (bytes, copy) = {
            let b = pool.bytes(first.bytes);
            (b.clone(), b)
        };
        drop(bytes);
        assert!(pool.kept() == 0, "a copy is alive");
        drop(copy);
        let second = write_one(100);
        assert_eq!(second.bytes.as_ptr(), ptr, "the same buffer");
        let json: serde_json::Value = serde_json::from_slice(&second.bytes).expect("JSON");
        assert_eq!(json["Records"].as_array().map(Vec::len), Some(1));
        let _third = pool.bytes(write_one(10).bytes);
        drop(pool.bytes(second.bytes));
        pool.clear();
        assert!(pool.kept() == 0);
    }

    #[test]
    fn a_slightly_longer_body_gets_a_buffer_the_next_ones_fit_in() {
        let pool = BufferPool::new(2);
        let write_one = |n: usize| write_one(&pool, n);
        let first = write_one(30_000);
        let room = first.bytes.capacity();
        drop(pool.bytes(first.bytes));
        // Longer than the kept buffer's room: a new buffer with room of its own is made
        // (and the kept one let go, not grown).
        let longer = write_one(33_000);
        assert!(longer.bytes.len() > room);
        assert_eq!(
            longer.bytes.capacity(),
            longer.bytes.len() + longer.bytes.len() / 16
        );
        let ptr = longer.bytes.as_ptr();
        drop(pool.bytes(longer.bytes));
        assert_eq!(pool.kept(), 1);
        // Longer again, and shorter: both in that buffer.
        let again = write_one(34_000);
        assert_eq!(again.bytes.as_ptr(), ptr, "a longer body fits the room");
        drop(pool.bytes(again.bytes));
        let shorter = write_one(29_000);
        assert_eq!(shorter.bytes.as_ptr(), ptr, "a shorter body fits too");
        // With two kept, the largest is handed out.
        let small = write_one(10);
        let big = pool.bytes(shorter.bytes);
        drop(pool.bytes(small.bytes));
        drop(big);
        assert_eq!(write_one(20).bytes.as_ptr(), ptr, "the largest kept");
    }
}
