//! Interoperability of the KPL aggregated-record format with AWS's reference implementation,
//! the PyPI package `aws-kinesis-agg` (pinned in dev/pyenv-requirements.txt, installed by
//! dev/setup). Both directions: what the reference aggregates, `shardline::agg` decodes to
//! exactly the user records given; what `shardline::agg::Aggregator` encodes, the reference
//! de-aggregates exactly; and for the same records and size limit both write the same bytes.
//! A differential test then feeds mutated messages to Google's protobuf parser (with the
//! reference's schema) and to `decode`, and requires every disagreement to be one the module
//! docs name.
//!
//! The reference runs as a subprocess: tests/interop/kpl_agg.py, one JSON request on stdin,
//! one JSON answer on stdout, bytes as hex. Its interpreter is
//! `$SHARDLINE_PYENV/bin/python` (default `~/.cache/shardline/pyenv`); a missing environment
//! fails the test with a message saying to run dev/setup.
//!
//! What aws-kinesis-agg 1.2.3 does differently, pinned by `reference_quirks` so that an
//! upgrade that changes them is noticed:
//! - its de-aggregator gives a user record *without* an explicit hash key the table's first
//!   entry when the aggregate's explicit hash key table is not empty (it reads the protobuf
//!   default 0 without checking presence);
//! - given `str` keys its size estimate counts a repeated key as new every time, so it closes
//!   aggregates early (given UTF-8 `bytes`, its estimate is exact);
//! - a user record that fits `max_size` alone but not with the 20 bytes of magic and digest is
//!   dropped, and an empty 20-byte aggregate returned in its place;
//! - its de-aggregator does not check required fields, key indices only as far as Python's
//!   list indexing (it keeps the user records before a bad index and drops the rest, printing
//!   an error), nor that explicit hash keys are numbers. `decode` reports all of these as
//!   corrupt, so the record is delivered whole (see `shardline::agg`).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shardline::agg::{
    deaggregate, decode, AggError, Aggregator, Deaggregated, KPL_DEFAULT_MAX_SIZE, MAGIC,
};

/// The reference's own limit (`aws_kinesis_agg.MAX_BYTES_PER_RECORD`, 1 MiB): the largest
/// `max_size` it accepts.
const ONE_MIB: usize = 1024 * 1024;

const U128_MAX: &str = "340282366920938463463374607431768211455";

// ---- the reference, as a subprocess ----

fn pyenv() -> PathBuf {
    match std::env::var_os("SHARDLINE_PYENV") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
            .join(".cache/shardline/pyenv"),
    }
}

fn python() -> PathBuf {
    let env = pyenv();
    let python = env.join("bin/python");
    assert!(
        python.is_file(),
        "no Python environment with aws-kinesis-agg at {}: run dev/setup, which creates it \
         from dev/pyenv-requirements.txt (or point SHARDLINE_PYENV at one)",
        env.display()
    );
    python
}

/// Sends one request to tests/interop/kpl_agg.py and returns its answer.
fn reference(request: Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/kpl_agg.py");
    let python = python();
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let input = serde_json::to_vec(&request).expect("request to JSON");
    let mut stdin = child.stdin.take().expect("stdin");
    // Written from another thread: a large answer must not block on a full stdout pipe
    // while the request is still being written.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("wait for the helper");
    writer
        .join()
        .expect("writer thread")
        .expect("write the request");
    assert!(
        output.status.success(),
        "{} {} failed ({}); if aws_kinesis_agg cannot be imported, run dev/setup.\n{}",
        python.display(),
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the helper's answer is JSON")
}

/// A user record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    pk: String,
    ehk: Option<String>,
    data: Vec<u8>,
}

fn rec(pk: &str, ehk: Option<&str>, data: &[u8]) -> Rec {
    Rec {
        pk: pk.to_string(),
        ehk: ehk.map(str::to_string),
        data: data.to_vec(),
    }
}

fn bytes_of(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().expect("hex string")).expect("hex")
}

fn opt_str(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

/// An aggregate as the reference returns it: its own partition and explicit hash key (those
/// of its first user record), data, and the size the reference believed it had.
#[derive(Debug)]
struct RefAggregate {
    pk: String,
    ehk: Option<String>,
    data: Vec<u8>,
    estimated_size: usize,
}

/// `RecordAggregator(max_size)`, keys handed over as `bytes` or `str`.
fn reference_aggregate(records: &[Rec], max_size: usize, key_type: &str) -> Vec<RefAggregate> {
    let records: Vec<Value> = records
        .iter()
        .map(|r| json!({"pk": r.pk, "ehk": r.ehk, "data": hex::encode(&r.data)}))
        .collect();
    let answer = reference(json!({
        "op": "aggregate", "max_size": max_size, "key_type": key_type, "records": records,
    }));
    answer["aggregates"]
        .as_array()
        .expect("aggregates")
        .iter()
        .map(|a| RefAggregate {
            pk: a["pk"].as_str().expect("pk").to_string(),
            ehk: opt_str(&a["ehk"]),
            data: bytes_of(&a["data"]),
            estimated_size: a["estimated_size"].as_u64().expect("size") as usize,
        })
        .collect()
}

/// What the reference's de-aggregator returns for one Kinesis record.
#[derive(Debug)]
struct RefResult {
    /// (user record, sub-sequence number, marked aggregated)
    records: Vec<(Rec, Option<u64>, bool)>,
    /// What it printed on stderr.
    log: String,
}

fn reference_deaggregate(kinesis_records: &[Vec<u8>]) -> Vec<RefResult> {
    let records: Vec<String> = kinesis_records.iter().map(hex::encode).collect();
    let answer = reference(json!({"op": "deaggregate", "records": records}));
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| RefResult {
            records: r["records"]
                .as_array()
                .expect("records")
                .iter()
                .map(|u| {
                    (
                        Rec {
                            pk: u["pk"].as_str().expect("pk").to_string(),
                            ehk: opt_str(&u["ehk"]),
                            data: bytes_of(&u["data"]),
                        },
                        u["sub"].as_u64(),
                        u["aggregated"].as_bool().expect("aggregated"),
                    )
                })
                .collect(),
            log: r["log"].as_str().expect("log").to_string(),
        })
        .collect()
}

// ---- ours ----

/// Packs records into aggregates of at most `max_size` bytes, in order, as the reference's
/// `RecordAggregator` does (a new aggregate when the next record would not fit).
fn shardline_aggregate(records: &[Rec], max_size: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut agg = Aggregator::new();
    for r in records {
        if !agg.fits(&r.pk, r.ehk.as_deref(), &r.data, max_size) {
            assert!(
                !agg.is_empty(),
                "a test record does not fit {max_size} alone"
            );
            out.push(agg.take());
        }
        agg.add(&r.pk, r.ehk.as_deref(), &r.data).expect("add");
    }
    if !agg.is_empty() {
        out.push(agg.take());
    }
    out
}

/// Decodes an aggregate, checking sub-sequence numbers and that `deaggregate` agrees.
fn shardline_decode(data: &[u8]) -> Vec<Rec> {
    let aggregate = match decode(data) {
        Ok(Some(aggregate)) => aggregate,
        other => panic!("expected an aggregate, got {other:?}"),
    };
    let records: Vec<Rec> = aggregate
        .iter()
        .enumerate()
        .map(|(i, u)| {
            assert_eq!(u.sub_sequence, i as u64);
            rec(u.partition_key, u.explicit_hash_key, u.data)
        })
        .collect();
    match deaggregate(data) {
        Deaggregated::Aggregate(users) => assert_eq!(users, aggregate.into_records()),
        other => panic!("deaggregate disagrees with decode: {other:?}"),
    }
    records
}

/// Index of the first differing byte, for messages that beat a 1 MiB assert_eq dump.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

// ---- inputs ----

const UNICODE_KEYS: &[&str] = &[
    "a",
    "é",
    "日本語のキー",
    "🦀",
    "\u{0}",
    "\u{10FFFF}",
    "mixed: é 日 🦀 \u{7f} \u{200d} \u{feff}",
    "", // not accepted by Kinesis for the Kinesis record, but legal inside an aggregate
    " ",
    "\"quoted\\back\"",
];

fn long_unicode_key() -> String {
    // 256 characters, 1,024 bytes: Kinesis's partition key limit counts characters.
    "🦀".repeat(256)
}

const HASH_KEYS: &[&str] = &[
    "0",
    U128_MAX,
    "1",
    "170141183460469231731687303715884105728", // 2^127
    "340282366920938463463374607431768211454",
    "85070591730234615865843651857942052864",
];

fn all_bytes() -> Vec<u8> {
    (0..=255).collect()
}

/// Empty, binary (every byte value), text and a few sizes of random data; every key in
/// `UNICODE_KEYS` and `HASH_KEYS`, each used more than once.
fn edge_records(with_hash_keys: bool, rng: &mut StdRng) -> Vec<Rec> {
    let mut keys: Vec<String> = UNICODE_KEYS.iter().map(|k| k.to_string()).collect();
    keys.push(long_unicode_key());
    let payloads: Vec<Vec<u8>> = vec![
        Vec::new(),
        all_bytes(),
        all_bytes().into_iter().rev().collect(),
        vec![0],
        b"{\"order\":42}".to_vec(),
        (0..127).map(|_| rng.random()).collect(),
        (0..128).map(|_| rng.random()).collect(),
        (0..3000).map(|_| rng.random()).collect(),
    ];
    let mut out = Vec::new();
    for i in 0..3 * keys.len().max(payloads.len()) {
        let ehk = if with_hash_keys && i % 3 != 2 {
            Some(HASH_KEYS[i % HASH_KEYS.len()])
        } else {
            None
        };
        out.push(rec(
            &keys[(i * 7) % keys.len()],
            ehk,
            &payloads[i % payloads.len()],
        ));
    }
    out
}

/// Multi-KB records (1 to 64 KiB) filling one aggregate to exactly 1 MiB, the largest the
/// reference allows and the Kinesis record limit.
fn one_mib_records(rng: &mut StdRng) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut agg = Aggregator::new();
    loop {
        let pk = format!("big-{}", rng.random_range(0..8));
        let ehk = rng
            .random_bool(0.5)
            .then(|| HASH_KEYS[rng.random_range(0..2)]);
        let data: Vec<u8> = (0..rng.random_range(1024..=64 * 1024))
            .map(|_| rng.random())
            .collect();
        if !agg.fits(&pk, ehk, &data, ONE_MIB) {
            break;
        }
        agg.add(&pk, ehk, &data).expect("add");
        out.push(rec(&pk, ehk, &data));
    }
    // One more record, its data as long as still fits: the aggregate ends at the limit.
    let (pk, ehk) = ("filler 🦀", Some(U128_MAX));
    let mut len = 0;
    while agg.fits(pk, ehk, &vec![0; len + 1], ONE_MIB) {
        len += 1;
    }
    let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
    agg.add(pk, ehk, &data).expect("add");
    assert_eq!(agg.encoded_len(), ONE_MIB, "the filler lands on the limit");
    out.push(rec(pk, ehk, &data));
    out
}

/// What a KPL producer sends: `n` records of `size` bytes over ~1,000 partition keys.
fn kpl_stream(n: usize, size: usize, rng: &mut StdRng) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let pk = format!("customer-{:04}", rng.random_range(0..1000));
            let mut data = format!("{i:08}").into_bytes();
            data.resize(size, b'.');
            data[8..].iter_mut().for_each(|b| *b = rng.random());
            rec(&pk, None, &data)
        })
        .collect()
}

/// Records with keys drawn from small pools, random explicit hash keys, random data.
fn random_records(rng: &mut StdRng, n: usize) -> Vec<Rec> {
    let pks: Vec<String> = (0..rng.random_range(1..40))
        .map(|i| {
            let k = UNICODE_KEYS[rng.random_range(0..UNICODE_KEYS.len())];
            format!("{k}{i}")
        })
        .collect();
    (0..n)
        .map(|_| {
            let ehk = match rng.random_range(0..4) {
                0 => None,
                1 => Some(HASH_KEYS[rng.random_range(0..HASH_KEYS.len())].to_string()),
                _ => Some(rng.random::<u128>().to_string()),
            };
            let data: Vec<u8> = (0..rng.random_range(0..300))
                .map(|_| rng.random())
                .collect();
            Rec {
                pk: pks[rng.random_range(0..pks.len())].clone(),
                ehk,
                data,
            }
        })
        .collect()
}

/// The named input sets and the size limit each is aggregated with.
fn cases() -> Vec<(&'static str, Vec<Rec>, usize)> {
    let mut rng = StdRng::seed_from_u64(0x1A7E_0A66);
    vec![
        (
            "edge values, explicit hash keys on most",
            edge_records(true, &mut rng),
            ONE_MIB,
        ),
        (
            "edge values, no explicit hash keys",
            edge_records(false, &mut rng),
            ONE_MIB,
        ),
        (
            "one aggregate of exactly 1 MiB, records of 1-64 KiB",
            one_mib_records(&mut rng),
            ONE_MIB,
        ),
        (
            "5,000 records of 100 bytes, 1,000 keys, the KPL's 51,200-byte limit",
            kpl_stream(5000, 100, &mut rng),
            KPL_DEFAULT_MAX_SIZE,
        ),
        (
            "400 random records, 4 KiB limit",
            random_records(&mut rng, 400),
            4096,
        ),
    ]
}

// ---- the reference aggregates, we decode ----

#[test]
fn reference_aggregates_decode_exactly_and_match_ours_byte_for_byte() {
    let version = reference(json!({"op": "version"}));
    eprintln!("reference: {version}");
    assert_eq!(
        version["aws-kinesis-agg"], "1.2.3",
        "the version pinned here"
    );

    for (name, records, max_size) in cases() {
        let theirs = reference_aggregate(&records, max_size, "bytes");
        let ours = shardline_aggregate(&records, max_size);
        assert_eq!(theirs.len(), ours.len(), "{name}: number of aggregates");

        let mut decoded = Vec::new();
        for (i, (t, o)) in theirs.iter().zip(&ours).enumerate() {
            // The same records and limit give the same bytes: field order, table order and
            // size accounting all agree.
            assert!(
                t.data == *o,
                "{name}: aggregate {i} differs from ours at byte {:?} ({} vs {} bytes)",
                first_difference(&t.data, o),
                t.data.len(),
                o.len()
            );
            assert!(t.data.len() <= max_size);
            assert_eq!(
                t.estimated_size,
                t.data.len(),
                "{name}: exact with bytes keys"
            );
            let users = shardline_decode(&t.data);
            // The aggregate's own keys are its first user record's.
            assert_eq!(t.pk, users[0].pk, "{name}");
            assert_eq!(t.ehk, users[0].ehk, "{name}");
            decoded.extend(users);
        }
        assert_eq!(decoded.len(), records.len(), "{name}");
        for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
            assert!(d == r, "{name}: user record {i} differs: {d:?} vs {r:?}");
        }
        eprintln!("{name}: {} aggregates", theirs.len());
    }
}

#[test]
fn reference_aggregates_with_str_keys_decode_exactly() {
    // Handed `str` keys, the reference closes aggregates early (see the module docs) but
    // what it writes must still decode to the records, in order.
    for (name, records, max_size) in cases() {
        let theirs = reference_aggregate(&records, max_size, "str");
        let mut decoded = Vec::new();
        for a in &theirs {
            assert!(a.data.len() <= max_size, "{name}");
            // It may over-estimate, never under-estimate (that would break the limit).
            assert!(a.estimated_size >= a.data.len(), "{name}");
            decoded.extend(shardline_decode(&a.data));
        }
        assert!(decoded == records, "{name}: decoded records differ");
    }
}

// ---- we aggregate, the reference de-aggregates ----

/// What aws-kinesis-agg 1.2.3 reports as a user record's explicit hash key: its own, or, for
/// a record without one, entry 0 of the aggregate's table if the table is not empty.
fn reference_view_of_hash_key(record: &Rec, table: &[&str]) -> Option<String> {
    record
        .ehk
        .clone()
        .or_else(|| table.first().map(|k| k.to_string()))
}

#[test]
fn reference_deaggregates_ours_exactly() {
    let mut inputs = cases();
    let mut rng = StdRng::seed_from_u64(0xDEA6);
    for n in [1, 2, 127, 128, 129, 300] {
        inputs.push(("random", random_records(&mut rng, n), ONE_MIB));
    }
    for (name, records, max_size) in inputs {
        let ours = shardline_aggregate(&records, max_size);
        let results = reference_deaggregate(&ours);
        assert_eq!(results.len(), ours.len());
        let mut next = 0;
        for (aggregate, result) in ours.iter().zip(&results) {
            assert_eq!(result.log, "", "{name}: the reference logged an error");
            let given = &records[next..next + result.records.len()];
            let table: Vec<&str> = {
                let mut seen = HashSet::new();
                given
                    .iter()
                    .filter_map(|r| r.ehk.as_deref())
                    .filter(|k| seen.insert(*k))
                    .collect()
            };
            for (i, ((got, sub, aggregated), want)) in result.records.iter().zip(given).enumerate()
            {
                assert!(aggregated, "{name}: user record {i} not marked aggregated");
                assert_eq!(*sub, Some(i as u64), "{name}: sub-sequence number");
                assert_eq!(got.pk, want.pk, "{name}: record {i} partition key");
                assert!(got.data == want.data, "{name}: record {i} data");
                assert_eq!(
                    got.ehk,
                    reference_view_of_hash_key(want, &table),
                    "{name}: record {i} explicit hash key"
                );
            }
            next += result.records.len();
            // Every user record of this aggregate came out: the reference's count agrees
            // with ours.
            assert_eq!(result.records.len(), shardline_decode(aggregate).len());
        }
        assert_eq!(next, records.len(), "{name}: every user record came out");
    }
}

// ---- records that are not readable aggregates ----

fn wrap(message: &[u8]) -> Vec<u8> {
    let digest: [u8; 16] = Md5::digest(message).into();
    [&MAGIC[..], message, &digest[..]].concat()
}

fn field_bytes(field: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 128 && field < 16);
    [&[(field << 3) | 2, payload.len() as u8][..], payload].concat()
}

fn field_varint(field: u8, value: u8) -> Vec<u8> {
    assert!(value < 128 && field < 16);
    vec![field << 3, value]
}

#[test]
fn both_pass_unreadable_records_whole() {
    let mut agg = Aggregator::new();
    agg.add("k", None, b"payload").expect("add");
    let good = agg.encode();
    let mut bad_digest = good.clone();
    *bad_digest.last_mut().expect("digest") ^= 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("plain", b"just bytes".to_vec()),
        ("empty", Vec::new()),
        ("three magic bytes", MAGIC[..3].to_vec()),
        ("magic only", MAGIC.to_vec()),
        ("magic and 16 bytes", [&MAGIC[..], &[0u8; 16]].concat()),
        (
            "empty aggregate (magic and digest)",
            Aggregator::new().encode(),
        ),
        ("digest mismatch", bad_digest),
        // The digest is right, the protobuf is not: a length past the end.
        ("truncated protobuf", wrap(&[0x0A, 0x05, b'a'])),
        ("wire type 7", wrap(&[0x0F])),
    ];
    let data: Vec<Vec<u8>> = cases.iter().map(|(_, d)| d.clone()).collect();
    let results = reference_deaggregate(&data);
    for ((name, data), result) in cases.iter().zip(&results) {
        assert_eq!(
            result.records.len(),
            1,
            "{name}: passed whole by the reference"
        );
        let (whole, sub, aggregated) = &result.records[0];
        assert!(!aggregated, "{name}");
        assert_eq!(*sub, None, "{name}");
        assert_eq!(whole.data, *data, "{name}");
        match deaggregate(data) {
            Deaggregated::Plain(d) => {
                assert!(!data.starts_with(&MAGIC), "{name}");
                assert_eq!(d, &data[..]);
            }
            Deaggregated::Corrupt { data: d, .. } => assert_eq!(d, &data[..], "{name}"),
            other => panic!("{name}: expected plain or corrupt, got {other:?}"),
        }
    }
}

/// Where the reference's de-aggregator and `decode` part ways, and its aggregator's
/// behaviour at the size limit: pinned, so that a new version that changes any of it shows
/// here. Ours reports each of these aggregates as corrupt: delivered whole, nothing lost.
#[test]
fn reference_quirks() {
    let record = |fields: &[Vec<u8>]| field_bytes(3, &fields.concat());
    let ok = |pk: u8, data: &[u8]| record(&[field_varint(1, pk), field_bytes(3, data)]);
    let tables = [field_bytes(1, b"a"), field_bytes(1, b"b")].concat();
    let cases: Vec<(&str, Vec<u8>, Vec<Rec>, bool)> = vec![
        (
            // The records before the bad index, the error printed, the rest dropped.
            "partition key index out of range in record 2",
            wrap(
                &[
                    tables.clone(),
                    ok(0, b"r0"),
                    ok(1, b"r1"),
                    ok(5, b"r2"),
                    ok(0, b"r3"),
                ]
                .concat(),
            ),
            vec![rec("a", None, b"r0"), rec("b", None, b"r1")],
            true,
        ),
        (
            // Protobuf's default 0 for the missing required index.
            "record without its partition key index",
            wrap(&[tables.clone(), record(&[field_bytes(3, b"x")])].concat()),
            vec![rec("a", None, b"x")],
            false,
        ),
        (
            "record without its data",
            wrap(&[tables.clone(), record(&[field_varint(1, 1)])].concat()),
            vec![rec("b", None, b"")],
            false,
        ),
        (
            "explicit hash key that is not a number",
            wrap(
                &[
                    tables.clone(),
                    field_bytes(2, b"not a number"),
                    record(&[field_varint(1, 0), field_varint(2, 0), field_bytes(3, b"x")]),
                ]
                .concat(),
            ),
            vec![rec("a", Some("not a number"), b"x")],
            false,
        ),
    ];
    let data: Vec<Vec<u8>> = cases.iter().map(|(_, d, _, _)| d.clone()).collect();
    let results = reference_deaggregate(&data);
    for ((name, data, expected, logs), result) in cases.iter().zip(&results) {
        let got: Vec<Rec> = result.records.iter().map(|(r, _, _)| r.clone()).collect();
        assert_eq!(&got, expected, "{name}: the reference's user records");
        assert!(result.records.iter().all(|(_, _, aggregated)| *aggregated));
        assert_eq!(!result.log.is_empty(), *logs, "{name}: {}", result.log);
        assert!(
            matches!(deaggregate(data), Deaggregated::Corrupt { data: d, .. } if d == &data[..]),
            "{name}: ours delivers it whole"
        );
    }

    // A record without an explicit hash key next to one with: the reference reports the
    // table's first entry for it.
    let mut agg = Aggregator::new();
    agg.add("p", Some("7"), b"with").expect("add");
    agg.add("q", None, b"without").expect("add");
    let result = &reference_deaggregate(&[agg.encode()])[0];
    assert_eq!(result.records[1].0, rec("q", Some("7"), b"without"));
    assert_eq!(
        shardline_decode(&agg.encode())[1],
        rec("q", None, b"without")
    );

    // str keys: a repeated key is counted as new each time, so aggregates close early.
    let records: Vec<Rec> = (0..20_000)
        .map(|i| rec(&format!("key-{}", i % 10), None, &[i as u8; 10]))
        .collect();
    let with_str = reference_aggregate(&records, KPL_DEFAULT_MAX_SIZE, "str");
    let with_bytes = reference_aggregate(&records, KPL_DEFAULT_MAX_SIZE, "bytes");
    assert!(
        with_str.len() > with_bytes.len(),
        "{} aggregates with str keys, {} with bytes keys",
        with_str.len(),
        with_bytes.len()
    );
    assert!(with_str.iter().all(|a| a.estimated_size > a.data.len()));
    assert!(with_bytes.iter().all(|a| a.estimated_size == a.data.len()));

    // A record that fits max_size alone but not with magic and digest: dropped, and an
    // empty aggregate returned in its place. Ours says it does not fit; the caller sends it
    // un-aggregated.
    let max_size = 1000;
    let data = vec![b'x'; 975]; // record field 983 bytes, key table 3: 986 + 20 > 1000
    let aggregates = reference_aggregate(&[rec("k", None, &data)], max_size, "bytes");
    assert_eq!(aggregates.len(), 1);
    assert_eq!(aggregates[0].data.len(), 20, "an empty aggregate");
    assert!(matches!(
        decode(&aggregates[0].data),
        Err(AggError::TooShort { len: 20 })
    ));
    assert!(!Aggregator::new().fits("k", None, &data, max_size));
    assert_eq!(Aggregator::new().added_len("k", None, &data), 986);
}

// ---- differential: Google's protobuf parser against `decode`, on mutants ----

/// One message as Google's protobuf (the reference's schema) parsed it.
#[derive(Debug)]
enum Parsed {
    Rejected(String),
    Accepted {
        pk_table: Vec<Option<String>>,
        ehk_table: Vec<Option<String>>,
        /// (partition key index, explicit hash key index, data)
        records: Vec<(u64, Option<u64>, Vec<u8>)>,
        initialized: bool,
        utf8: bool,
    },
}

fn protobuf_parse(messages: &[Vec<u8>]) -> Vec<Parsed> {
    let hex: Vec<String> = messages.iter().map(hex::encode).collect();
    let answer = reference(json!({"op": "parse", "messages": hex}));
    let table = |v: &Value| -> Vec<Option<String>> {
        v.as_array().expect("table").iter().map(opt_str).collect()
    };
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            if !r["ok"].as_bool().expect("ok") {
                return Parsed::Rejected(r["error"].as_str().expect("error").to_string());
            }
            Parsed::Accepted {
                pk_table: table(&r["pk_table"]),
                ehk_table: table(&r["ehk_table"]),
                records: r["records"]
                    .as_array()
                    .expect("records")
                    .iter()
                    .map(|u| {
                        (
                            u["pk_index"].as_u64().expect("pk_index"),
                            u["ehk_index"].as_u64(),
                            bytes_of(&u["data"]),
                        )
                    })
                    .collect(),
                initialized: r["initialized"].as_bool().expect("initialized"),
                utf8: r["utf8"].as_bool().expect("utf8"),
            }
        })
        .collect()
}

fn mutate(rng: &mut StdRng, message: &[u8]) -> Vec<u8> {
    let mut m = message.to_vec();
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..6) {
            0 if !m.is_empty() => {
                let i = rng.random_range(0..m.len());
                m[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !m.is_empty() => {
                let i = rng.random_range(0..m.len());
                m[i] = rng.random();
            }
            2 if !m.is_empty() => {
                m.remove(rng.random_range(0..m.len()));
            }
            3 if !m.is_empty() => m.truncate(rng.random_range(0..m.len())),
            4 if m.len() > 2 => {
                // Duplicate a slice somewhere else: repeated fields, a field given twice.
                let a = rng.random_range(0..m.len());
                let b = rng.random_range(a..=m.len().min(a + 24));
                let slice = m[a..b].to_vec();
                let at = rng.random_range(0..=m.len());
                m.splice(at..at, slice);
            }
            _ => {
                let i = rng.random_range(0..=m.len());
                m.insert(i, rng.random());
            }
        }
    }
    m
}

/// A message of random fields (numbers 1-5, any wire type, sometimes a nested `Record`), so
/// wrong wire types, groups and tags are reached more often than by mutation.
fn random_fields(rng: &mut StdRng, depth: u32) -> Vec<u8> {
    let mut m = Vec::new();
    for _ in 0..rng.random_range(0..8) {
        let field = rng.random_range(1..=5u8);
        let wire = match rng.random_range(0..10) {
            0..=3 => 2,
            4..=6 => 0,
            w => [1, 3, 4, 5, 6, 7][w % 6],
        };
        m.push((field << 3) | wire);
        match wire {
            0 => m.push(rng.random_range(0..4)),
            1 => m.extend((0..8).map(|_| rng.random::<u8>())),
            5 => m.extend((0..4).map(|_| rng.random::<u8>())),
            2 => {
                let payload = if depth < 2 && rng.random_bool(0.5) {
                    random_fields(rng, depth + 1)
                } else if rng.random_bool(0.5) {
                    rng.random_range(0..3u128).to_string().into_bytes()
                } else {
                    (0..rng.random_range(0..6)).map(|_| rng.random()).collect()
                };
                m.push(payload.len().min(127) as u8);
                m.extend(&payload[..payload.len().min(127)]);
            }
            _ => {}
        }
    }
    m
}

fn differential_inputs() -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(0xD1FF);
    let mut bases = Vec::new();
    for n in [1, 3, 10] {
        let mut agg = Aggregator::new();
        for r in random_records(&mut rng, n) {
            let data = &r.data[..r.data.len().min(20)];
            agg.add(&r.pk, r.ehk.as_deref(), data).expect("add");
        }
        let bytes = agg.encode();
        bases.push(bytes[MAGIC.len()..bytes.len() - 16].to_vec());
    }
    // A record with tags, which the aggregator never writes.
    let tag = [field_bytes(1, b"key"), field_bytes(2, "välue".as_bytes())].concat();
    bases.push(
        [
            field_bytes(1, b"a"),
            field_bytes(2, b"5"),
            field_bytes(
                3,
                &[
                    field_varint(1, 0),
                    field_varint(2, 0),
                    field_bytes(3, b"d"),
                    field_bytes(4, &tag),
                    field_bytes(4, &field_bytes(1, b"k2")),
                ]
                .concat(),
            ),
        ]
        .concat(),
    );
    let mut inputs = bases.clone();
    for i in 0..4000 {
        inputs.push(mutate(&mut rng, &bases[i % bases.len()]));
    }
    for _ in 0..1500 {
        inputs.push(random_fields(&mut rng, 0));
    }
    inputs.retain(|m| !m.is_empty()); // 20 bytes: plain for everyone, tested above
    inputs
}

#[test]
fn protobuf_and_decode_disagree_only_where_documented() {
    let inputs = differential_inputs();
    let parsed = protobuf_parse(&inputs);
    assert_eq!(parsed.len(), inputs.len());
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    for (message, parsed) in inputs.iter().zip(&parsed) {
        let data = wrap(message);
        let ours = decode(&data);
        let context = || {
            format!(
                "message {}: ours {ours:?}, protobuf {parsed:?}",
                hex::encode(message)
            )
        };
        let outcome = match (parsed, &ours) {
            (Parsed::Rejected(why), Ok(_)) => {
                panic!("we accept what protobuf rejects ({why}): {}", context())
            }
            (Parsed::Rejected(_), Err(_)) => "both reject",
            (Parsed::Accepted { .. }, Ok(None)) => unreachable!("wrapped data has the magic"),
            (
                Parsed::Accepted {
                    pk_table,
                    ehk_table,
                    records,
                    initialized,
                    utf8,
                },
                Ok(Some(aggregate)),
            ) => {
                assert!(*initialized && *utf8, "{}", context());
                let ours_pk: Vec<Option<String>> = aggregate
                    .partition_key_table()
                    .iter()
                    .map(|k| Some(k.to_string()))
                    .collect();
                let ours_ehk: Vec<Option<String>> = aggregate
                    .explicit_hash_key_table()
                    .iter()
                    .map(|k| Some(k.to_string()))
                    .collect();
                assert_eq!(&ours_pk, pk_table, "{}", context());
                assert_eq!(&ours_ehk, ehk_table, "{}", context());
                assert_eq!(aggregate.len(), records.len(), "{}", context());
                for (u, (pk_index, ehk_index, data)) in aggregate.iter().zip(records) {
                    let pk = pk_table[*pk_index as usize].as_deref();
                    let ehk = ehk_index.map(|i| ehk_table[i as usize].as_deref().expect("utf8"));
                    assert_eq!(Some(u.partition_key), pk, "{}", context());
                    assert_eq!(u.explicit_hash_key, ehk, "{}", context());
                    assert_eq!(u.data, &data[..], "{}", context());
                }
                "both accept, same records"
            }
            (
                Parsed::Accepted {
                    pk_table,
                    ehk_table,
                    records,
                    initialized,
                    utf8,
                },
                Err(reason),
            ) => {
                // Protobuf parsed it; ours must name a rule protobuf leaves to the reader,
                // and that rule must really be broken.
                let justified = match reason {
                    AggError::MissingField { .. } => !*initialized,
                    AggError::InvalidUtf8 { .. } => !*utf8,
                    AggError::PartitionKeyIndexOutOfRange { .. } => records
                        .iter()
                        .any(|(pk, _, _)| *pk as usize >= pk_table.len()),
                    AggError::ExplicitHashKeyIndexOutOfRange { .. } => records
                        .iter()
                        .any(|(_, e, _)| e.is_some_and(|e| e as usize >= ehk_table.len())),
                    AggError::InvalidExplicitHashKey { value, .. } => {
                        value.parse::<u128>().is_err() || !value.bytes().all(|b| b.is_ascii_digit())
                    }
                    // Protobuf (like protobuf-java) takes a 10-byte varint whose last byte
                    // holds more than bit 63 and drops the excess bits; ours rejects it.
                    AggError::VarintOverflow { .. } => true,
                    _ => false,
                };
                assert!(justified, "unexplained rejection: {}", context());
                match reason {
                    AggError::MissingField { .. } => "required field missing: we reject",
                    AggError::InvalidUtf8 { .. } => "invalid UTF-8 in a string: we reject",
                    AggError::VarintOverflow { .. } => "varint past 64 bits: we reject",
                    _ => "key index or hash key invalid: we reject",
                }
            }
        };
        *tally.entry(outcome).or_default() += 1;
    }
    eprintln!("{} messages: {tally:#?}", inputs.len());
    // The inputs must reach every branch, or the test proves less than it says.
    for outcome in [
        "both reject",
        "both accept, same records",
        "required field missing: we reject",
        "invalid UTF-8 in a string: we reject",
        "key index or hash key invalid: we reject",
    ] {
        assert!(
            tally.get(outcome).copied().unwrap_or(0) >= 10,
            "too few inputs reach {outcome:?}: {tally:?}"
        );
    }
}
