//! The GetRecords call of polling retrieval, its answer read straight from the JSON body.
//!
//! The SDK sends the request, signs it, retries it and reads every error answer as usual.
//! Only a successful answer of the usual shape — `Records` (each with `SequenceNumber`,
//! `ApproximateArrivalTimestamp`, `Data`, `PartitionKey` and optionally `EncryptionType`),
//! `NextShardIterator`, `MillisBehindLatest` and an empty `ChildShards`, any optional one
//! possibly `null` — is read here, in one pass over the bytes with each record's data
//! base64-decoded in place. Anything else (the `ChildShards` of a shard's end, a string
//! with an escape, a field this reader does not know) is handed to the SDK's own
//! deserializer, so the result is always the SDK's `GetRecordsOutput`, equal to what the
//! SDK would have made of the same body. The SDK's generic JSON reader was a tenth of the
//! pass-through's CPU, this one half that (BENCHMARKS.md, "Consumer: GetRecords").

use std::sync::LazyLock;

use aws_sdk_kinesis::error::SdkError;
use aws_sdk_kinesis::operation::get_records::{GetRecords, GetRecordsError, GetRecordsOutput};
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{EncryptionType, Record};
use aws_sdk_kinesis::Client;
use aws_smithy_runtime_api::client::interceptors::context::{Error, Output};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::ser_de::DeserializeResponse;
use aws_smithy_types::config_bag::ConfigBag;

use crate::sdk_answer::{ReadsAnswer, SdkDeserializer};

/// GetRecords for up to `limit` records from `iterator`.
pub(super) async fn get_records(
    client: &Client,
    iterator: String,
    limit: i32,
) -> Result<GetRecordsOutput, SdkError<GetRecordsError>> {
    client
        .get_records()
        .shard_iterator(iterator)
        .limit(limit)
        .customize()
        .interceptor(ReadsAnswer(Deserializer))
        .send()
        .await
}

/// The SDK's own deserializer of GetRecords answers.
static SDK: LazyLock<SdkDeserializer> = LazyLock::new(|| SdkDeserializer::of(GetRecords::new()));

/// A successful answer [`parse`] reads, everything else the SDK.
#[derive(Debug, Clone)]
struct Deserializer;

impl DeserializeResponse for Deserializer {
    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<Error>> {
        if response.status().is_success() {
            if let Some(output) = response.body().bytes().and_then(parse) {
                #[cfg(test)]
                tests::READ_HERE.with(|n| n.set(n.get() + 1));
                return Ok(Output::erase(output));
            }
        }
        SDK.deserialize_nonstreaming_with_config(response, cfg)
    }
}

/// A GetRecords answer of the usual shape; `None` for anything else (see the module docs).
pub(super) fn parse(body: &[u8]) -> Option<GetRecordsOutput> {
    let mut r = Reader { body, at: 0 };
    let (mut records, mut iterator, mut behind, mut children) = (Vec::new(), None, None, None);
    r.object(|r, key| {
        if key != b"Records" && r.null() {
            return Some(());
        }
        match key {
            b"Records" => records = r.records()?,
            b"NextShardIterator" => iterator = Some(r.string()?),
            b"MillisBehindLatest" => behind = Some(r.integer()?),
            // Empty but at a shard's end; that end's children are left to the SDK.
            b"ChildShards" => {
                (r.take(b'[') && r.take(b']')).then_some(())?;
                children = Some(Vec::new());
            }
            _ => return None,
        }
        Some(())
    })?;
    r.whitespace();
    (r.at == body.len()).then_some(())?;
    GetRecordsOutput::builder()
        .set_records(Some(records))
        .set_next_shard_iterator(iterator)
        .set_millis_behind_latest(behind)
        .set_child_shards(children)
        .build()
        .ok()
}

/// A cursor over a JSON body that accepts only what [`parse`] reads.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Takes a `null` if it is next: an optional field the service wrote out empty.
    fn null(&mut self) -> bool {
        self.whitespace();
        let next = self.body[self.at..].starts_with(b"null");
        self.at += if next { 4 } else { 0 };
        next
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.body.get(self.at) {
            self.at += 1;
        }
    }

    /// Skips whitespace, then takes `byte` if it is next.
    fn take(&mut self, byte: u8) -> bool {
        self.whitespace();
        let next = self.body.get(self.at) == Some(&byte);
        self.at += usize::from(next);
        next
    }

    /// An object: `member` is called at each key with the reader on its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.take(b'{').then_some(())?;
        if self.take(b'}') {
            return Some(());
        }
        loop {
            let key = self.raw_string()?;
            self.take(b':').then_some(())?;
            self.whitespace();
            member(self, key)?;
            if self.take(b'}') {
                return Some(());
            }
            self.take(b',').then_some(())?;
        }
    }

    /// A string's bytes between its quotes; `None` if it holds an escape.
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        self.take(b'"').then_some(())?;
        let rest = &self.body[self.at..];
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        (rest[end] == b'"').then_some(())?;
        self.at += end + 1;
        Some(&rest[..end])
    }

    fn string(&mut self) -> Option<String> {
        let raw = self.raw_string()?;
        // Control characters must be escaped in JSON; the SDK refuses them unescaped.
        (!raw.iter().any(|&b| b < 0x20)).then_some(())?;
        std::str::from_utf8(raw).ok().map(str::to_owned)
    }

    /// A number's text.
    fn number(&mut self) -> Option<&'a str> {
        self.whitespace();
        let start = self.at;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.body.get(self.at) {
            self.at += 1;
        }
        std::str::from_utf8(&self.body[start..self.at]).ok()
    }

    fn integer(&mut self) -> Option<i64> {
        self.number()?.parse().ok()
    }

    /// Epoch seconds, read as the SDK reads them: as a 64-bit float when written with a
    /// fraction or an exponent, else as an integer.
    fn epoch_seconds(&mut self) -> Option<DateTime> {
        let text = self.number()?;
        if text.contains(['.', 'e', 'E']) {
            let secs: f64 = text.parse().ok()?;
            (secs.is_finite() && (i64::MIN as f64..i64::MAX as f64).contains(&secs))
                .then(|| DateTime::from_secs_f64(secs))
        } else {
            text.parse().ok().map(DateTime::from_secs)
        }
    }

    fn records(&mut self) -> Option<Vec<Record>> {
        self.take(b'[').then_some(())?;
        let mut records = Vec::new();
        if self.take(b']') {
            return Some(records);
        }
        loop {
            records.push(self.record()?);
            if self.take(b']') {
                return Some(records);
            }
            self.take(b',').then_some(())?;
        }
    }

    fn record(&mut self) -> Option<Record> {
        let (mut sequence, mut arrival, mut data, mut key, mut encryption) =
            (None, None, None, None, None);
        self.object(|r, name| {
            if name != b"SequenceNumber" && name != b"Data" && r.null() {
                return Some(());
            }
            match name {
                b"SequenceNumber" => sequence = Some(r.string()?),
                b"ApproximateArrivalTimestamp" => arrival = Some(r.epoch_seconds()?),
                b"Data" => {
                    let bytes = base64_simd::STANDARD.decode_to_vec(r.raw_string()?).ok()?;
                    data = Some(Blob::new(bytes));
                }
                b"PartitionKey" => key = Some(r.string()?),
                b"EncryptionType" => encryption = Some(EncryptionType::from(r.string()?.as_str())),
                _ => return None,
            }
            Some(())
        })?;
        Record::builder()
            .set_sequence_number(sequence)
            .set_approximate_arrival_timestamp(arrival)
            .set_data(data)
            .set_partition_key(key)
            .set_encryption_type(encryption)
            .build()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sdk_answer::canned::Answers;

    thread_local! {
        /// Answers [`Deserializer`] read itself on this thread.
        pub(super) static READ_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn client(status: u16, body: &str) -> Client {
        Answers::new(status, "application/x-amz-json-1.1", body).client()
    }

    /// What the SDK alone and this module make of `body`.
    async fn both(status: u16, body: &str) -> [Result<GetRecordsOutput, String>; 2] {
        let client = client(status, body);
        let sdk = client.get_records().shard_iterator("i").send().await;
        let ours = get_records(&client, "i".into(), 10).await;
        let show = |e: SdkError<GetRecordsError>| format!("{:?}", e.into_service_error());
        [sdk.map_err(show), ours.map_err(show)]
    }

    fn record_json(seq: &str, ts: &str, data: &[u8], key: &str, more: &str) -> String {
        format!(
            r#"{{"SequenceNumber":"{seq}","ApproximateArrivalTimestamp":{ts},"Data":"{}","PartitionKey":"{key}"{more}}}"#,
            aws_smithy_types::base64::encode(data)
        )
    }

    /// Bodies of the usual shape, read here, and bodies left to the SDK: both give what
    /// the SDK gives.
    fn bodies() -> Vec<(String, bool)> {
        let seq = "49590338271490256608559692538361571095921575989136588898";
        let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let many: Vec<String> = (0..500)
            .map(|i| {
                let ts = format!("1796613086.{:03}", i % 1000);
                record_json(
                    &format!("{seq}{i}"),
                    &ts,
                    &data[..i * 5],
                    &format!("k{i}"),
                    "",
                )
            })
            .collect();
        let usual = |records: &[String], tail: &str| {
            format!(r#"{{"Records":[{}]{tail}}}"#, records.join(","))
        };
        vec![
            (usual(&many, r#","NextShardIterator":"AAAA/+==","MillisBehindLatest":0"#), true),
            (usual(&[], r#","NextShardIterator":"AAAA","MillisBehindLatest":12345"#), true),
            (
                format!(
                    " {{ \"MillisBehindLatest\" : 7 ,\n \"Records\" : [ {} ] , \"NextShardIterator\":\"x\" }} ",
                    record_json(seq, "1.7966130866891E9", b"x", "clé ✓", r#","EncryptionType":"KMS""#)
                ),
                true,
            ),
            (usual(&[record_json(seq, "1796613086", b"", "k", r#","EncryptionType":"NONE""#)], ""), true),
            (usual(&[record_json(seq, "-1.5", b"ab", "k", "")], r#","MillisBehindLatest":0"#), true),
            // Shard end: no iterator, the children named.
            (
                usual(
                    &[record_json(seq, "1796613086.5", b"end", "k", "")],
                    r#","MillisBehindLatest":0,"ChildShards":[{"ShardId":"shardId-000000000002","ParentShards":["shardId-000000000000"],"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"1"}}]"#,
                ),
                false,
            ),
            (usual(&[record_json(seq, "1796613086.5", b"x", r#"k \"quoted\" \u00e9"#, "")], ""), false),
            (usual(&[record_json(seq, "1796613086.5", b"x", "k", r#","Unknown":{"a":[1]}"#)], ""), false),
            (r#"{"Records":[{"SequenceNumber":"1","Data":"!!","PartitionKey":"k"}]}"#.into(), false),
            (r#"{"Records":[{"SequenceNumber":"1","Data":"","PartitionKey":"k"}]}"#.into(), true),
            (r#"{"Records":[{"SequenceNumber":"1","Data":""}]}"#.into(), true),
            (r#"{"Records":[{"Data":"","PartitionKey":"k"}]}"#.into(), false),
            (r#"{"Records":[]}"#.into(), true),
            // kinesis-local writes the optional fields it leaves empty as null.
            (
                usual(
                    &[record_json(seq, "1796613086.5", b"x", "k", r#","EncryptionType":null"#)],
                    r#","ChildShards":null,"MillisBehindLatest":null,"NextShardIterator":null"#,
                ),
                true,
            ),
            (r#"{"Records":[{"SequenceNumber":"1","ApproximateArrivalTimestamp":null,"Data":"","PartitionKey":null}]}"#.into(), true),
            (r#"{"ChildShards":[],"Records":[],"NextShardIterator":"i"}"#.into(), true),
            (r#"{"Records":null}"#.into(), false),
            (r#"{"Records":[{"SequenceNumber":null,"Data":""}]}"#.into(), false),
            (r#"{"Records":[{"SequenceNumber":"1","Data":null}]}"#.into(), false),
            (r#"{"Records":[]} x"#.into(), false),
            (r#"{"Records":[],}"#.into(), false),
            ("{}".into(), true),
            ("".into(), false),
        ]
    }

    #[tokio::test]
    async fn every_answer_is_what_the_sdk_makes_of_it() {
        for (body, read_here) in bodies() {
            assert_eq!(parse(body.as_bytes()).is_some(), read_here, "{body}");
            let before = READ_HERE.with(std::cell::Cell::get);
            let [sdk, ours] = both(200, &body).await;
            assert_eq!(ours, sdk, "{body}");
            let read = READ_HERE.with(std::cell::Cell::get) - before;
            assert_eq!(
                read,
                usize::from(read_here),
                "the call read it here: {body}"
            );
        }
    }

    #[tokio::test]
    async fn records_keep_their_data_timestamps_and_keys() {
        let body = &bodies()[0].0;
        let out = parse(body.as_bytes()).expect("read here");
        assert_eq!(out.records.len(), 500);
        let r = &out.records[7];
        let want: Vec<u8> = (0..=255u8).cycle().take(35).collect();
        assert_eq!(r.data.as_ref(), want.as_slice());
        assert_eq!(r.partition_key.as_deref(), Some("k7"));
        assert_eq!(
            crate::consumer::retrieval::arrival_millis(
                r.approximate_arrival_timestamp
                    .as_ref()
                    .expect("a timestamp")
            ),
            1_796_613_086_007
        );
        assert_eq!(out.next_shard_iterator.as_deref(), Some("AAAA/+=="));
        assert_eq!(out.millis_behind_latest, Some(0));
    }

    #[tokio::test]
    async fn errors_are_the_sdks() {
        let throttled = r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard"}"#;
        let expired = r#"{"__type":"ExpiredIteratorException","message":"Iterator expired"}"#;
        for body in [throttled, expired] {
            let [sdk, ours] = both(400, body).await;
            assert!(sdk.is_err(), "{body}");
            assert_eq!(ours, sdk, "{body}");
        }
        let client = client(400, expired);
        let e = get_records(&client, "i".into(), 1)
            .await
            .expect_err("an error");
        assert!(e.into_service_error().is_expired_iterator_exception());
    }
}
