//! Tests of the aggregate format. Hand-built messages use the small encoder below, written
//! apart from `wire.rs` so that a shared mistake cannot make both sides agree.
//!
//! One long file on purpose: every test here builds its messages with that one encoder.

use super::*;
use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---- an independent mini-encoder for hand-built messages ----

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return out;
        }
        out.push(low | 0x80);
    }
}

/// A field key (field number and wire type), as a varint.
fn key(field: u64, wire_type: u64) -> Vec<u8> {
    varint((field << 3) | wire_type)
}

fn f_varint(field: u64, v: u64) -> Vec<u8> {
    [varint(field << 3), varint(v)].concat()
}

fn f_bytes(field: u64, payload: &[u8]) -> Vec<u8> {
    [
        varint((field << 3) | 2),
        varint(payload.len() as u64),
        payload.to_vec(),
    ]
    .concat()
}

/// Magic + message + MD5 of the message.
fn wrap(message: &[u8]) -> Vec<u8> {
    let digest: [u8; 16] = Md5::digest(message).into();
    [&MAGIC[..], message, &digest[..]].concat()
}

fn decode_ok(data: &[u8]) -> Aggregate<'_> {
    match decode(data) {
        Ok(Some(aggregate)) => aggregate,
        other => panic!("expected an aggregate, got {other:?}"),
    }
}

fn decode_err(data: &[u8]) -> AggError {
    match decode(data) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The message must be rejected, with a reason mentioning `words`, by both `decode` and
/// `deaggregate`.
fn assert_corrupt(message: &[u8], words: &str) -> AggError {
    let data = wrap(message);
    let err = decode_err(&data);
    let text = err.to_string();
    assert!(text.contains(words), "{text:?} should mention {words:?}");
    match deaggregate(&data) {
        Deaggregated::Corrupt {
            data: whole,
            reason,
        } => {
            assert_eq!(whole, &data[..]);
            assert_eq!(reason, err);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    err
}

fn rec<'a>(pk: &'a str, ehk: Option<&'a str>, data: &'a [u8], sub: u64) -> UserRecord<'a> {
    UserRecord {
        partition_key: pk,
        explicit_hash_key: ehk,
        data,
        sub_sequence: sub,
    }
}

// ---- known vectors: the wire format pinned by hand from the schema ----

#[test]
fn known_vector_two_records() {
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        0xF3, 0x89, 0x9A, 0xC2,         // magic
        0x0A, 0x01, b'a',               // partition_key_table (1, LEN) "a"
        0x0A, 0x01, b'b',               // partition_key_table "b"
        0x1A, 0x05,                     // records (3, LEN), 5 bytes:
        0x08, 0x00,                     //   partition_key_index (1, VARINT) 0
        0x1A, 0x01, b'x',               //   data (3, LEN) "x"
        0x1A, 0x06,                     // records, 6 bytes:
        0x08, 0x01,                     //   partition_key_index 1
        0x1A, 0x02, b'y', b'z',         //   data "yz"
        // MD5 of the 21 bytes between magic and digest (computed outside this code)
        0x6f, 0xe1, 0xbc, 0x14, 0x07, 0xaa, 0xbc, 0x41,
        0xe3, 0xe0, 0xc8, 0x8f, 0x3f, 0x66, 0x8b, 0xaf,
    ];
    let mut agg = Aggregator::new();
    assert_eq!(agg.add("a", None, b"x").unwrap(), 0);
    assert_eq!(agg.add("b", None, b"yz").unwrap(), 1);
    assert_eq!(agg.encoded_len(), expected.len());
    assert_eq!(agg.encode(), expected);

    let decoded = decode_ok(&expected);
    assert_eq!(decoded.partition_key_table(), ["a", "b"]);
    assert!(decoded.explicit_hash_key_table().is_empty());
    assert_eq!(
        decoded.records(),
        [rec("a", None, b"x", 0), rec("b", None, b"yz", 1)]
    );
}

#[test]
fn known_vector_explicit_hash_keys_and_a_repeated_key() {
    #[rustfmt::skip]
    let message: Vec<u8> = vec![
        0x0A, 0x01, b'k',                           // partition_key_table "k"
        0x12, 0x01, b'5',                           // explicit_hash_key_table (2, LEN) "5"
        0x12, 0x02, b'1', b'2',                     // explicit_hash_key_table "12"
        0x1A, 0x06, 0x08, 0x00, 0x10, 0x00, 0x1A, 0x00,             // k, ehk 0, ""
        0x1A, 0x08, 0x08, 0x00, 0x10, 0x01, 0x1A, 0x02, 0x00, 0xFF, // k, ehk 1, 00 FF
        0x1A, 0x07, 0x08, 0x00, 0x10, 0x00, 0x1A, 0x01, b'z',       // k, ehk 0, "z"
        0x1A, 0x04, 0x08, 0x00, 0x1A, 0x00,                         // k, no ehk, ""
    ];
    #[rustfmt::skip]
    let digest = [
        0xf7, 0xda, 0x87, 0x65, 0x5b, 0x26, 0x02, 0xb1,
        0x69, 0x85, 0xf1, 0x4e, 0x14, 0xcc, 0xd2, 0xc7,
    ];
    let expected = [&MAGIC[..], &message, &digest].concat();

    let mut agg = Aggregator::new();
    agg.add("k", Some("5"), b"").unwrap();
    agg.add("k", Some("12"), &[0x00, 0xFF]).unwrap();
    agg.add("k", Some("5"), b"z").unwrap();
    agg.add("k", None, b"").unwrap();
    assert_eq!(agg.encode(), expected);

    let decoded = decode_ok(&expected);
    assert_eq!(decoded.explicit_hash_key_table(), ["5", "12"]);
    assert_eq!(
        decoded.records(),
        [
            rec("k", Some("5"), b"", 0),
            rec("k", Some("12"), &[0x00, 0xFF], 1),
            rec("k", Some("5"), b"z", 2),
            rec("k", None, b"", 3),
        ]
    );
}

#[test]
fn known_vector_multi_byte_lengths() {
    let data = [0x55u8; 200];
    // data length 200 = C8 01; record length 2 + 3 + 200 = 205 = CD 01.
    let message = [
        &[
            0x0A, 0x01, b'p', 0x1A, 0xCD, 0x01, 0x08, 0x00, 0x1A, 0xC8, 0x01,
        ][..],
        &data,
    ]
    .concat();
    #[rustfmt::skip]
    let digest = [
        0x7f, 0x00, 0x01, 0xbe, 0x21, 0x85, 0xb6, 0x3e,
        0x26, 0x89, 0x11, 0xd7, 0xb9, 0xcb, 0xd9, 0xb4,
    ];
    let expected = [&MAGIC[..], &message, &digest].concat();
    let mut agg = Aggregator::new();
    agg.add("p", None, &data).unwrap();
    assert_eq!(agg.encode(), expected);
    assert_eq!(decode_ok(&expected).records(), [rec("p", None, &data, 0)]);
}

// ---- round trips and sizes ----

const UNICODE: &[&str] = &[
    "é",
    "日本語",
    "🦀",
    "\u{0}",
    "ß",
    "Ω",
    "\u{10FFFF}",
    " ",
    "a",
];

fn random_key(rng: &mut StdRng) -> String {
    let len = rng.random_range(0..12);
    (0..len)
        .map(|_| {
            if rng.random_bool(0.3) {
                UNICODE[rng.random_range(0..UNICODE.len())].to_string()
            } else {
                char::from(rng.random_range(b'!'..=b'~')).to_string()
            }
        })
        .collect()
}

fn random_ehk(rng: &mut StdRng) -> String {
    match rng.random_range(0..5) {
        0 => "0".to_string(),
        1 => u128::MAX.to_string(),
        2 => format!("00{}", rng.random_range(0..1000u32)),
        _ => rng.random::<u128>().to_string(),
    }
}

fn random_data(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.random_range(0..20) {
        0..=3 => 0,
        4 => rng.random_range(120..140),
        5 => 256,
        6 if rng.random_bool(0.05) => rng.random_range(16_380..16_390),
        _ => rng.random_range(1..48),
    };
    if len == 256 {
        return (0..=255).collect();
    }
    (0..len).map(|_| rng.random()).collect()
}

type Input = (String, Option<String>, Vec<u8>);

/// User records for one aggregate: keys drawn from small pools (so they repeat) or fresh
/// (so tables pass 128 entries and indices take two bytes).
fn random_inputs(rng: &mut StdRng, n: usize) -> Vec<Input> {
    let pks: Vec<String> = (0..rng.random_range(1..20))
        .map(|_| random_key(rng))
        .collect();
    let ehks: Vec<String> = (0..rng.random_range(1..8))
        .map(|_| random_ehk(rng))
        .collect();
    let fresh = rng.random_bool(0.3);
    (0..n)
        .map(|_| {
            let pk = if fresh && rng.random_bool(0.8) {
                random_key(rng) + &rng.random::<u32>().to_string()
            } else {
                pks[rng.random_range(0..pks.len())].clone()
            };
            let ehk = if rng.random_bool(0.5) {
                None
            } else if fresh && rng.random_bool(0.8) {
                Some(random_ehk(rng))
            } else {
                Some(ehks[rng.random_range(0..ehks.len())].clone())
            };
            (pk, ehk, random_data(rng))
        })
        .collect()
}

fn distinct_in_order<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    keys.filter(|k| seen.insert(*k)).collect()
}

#[test]
fn random_aggregates_round_trip() {
    let mut rng = StdRng::seed_from_u64(0x5EED_0A66);
    let mut sizes = vec![0, 1, 2, 127, 128, 129, 500];
    sizes.extend((0..60).map(|_| rng.random_range(0..=500)));
    let mut agg = Aggregator::new();
    for n in sizes {
        let inputs = random_inputs(&mut rng, n);
        agg.clear();
        for (i, (pk, ehk, data)) in inputs.iter().enumerate() {
            let before = agg.encoded_len();
            let predicted = agg.added_len(pk, ehk.as_deref(), data);
            assert_eq!(agg.add(pk, ehk.as_deref(), data).unwrap(), i as u64);
            assert_eq!(agg.encoded_len() - before, predicted, "record {i}");
        }
        assert_eq!(agg.len(), n);
        let bytes = agg.encode();
        assert_eq!(bytes.len(), agg.encoded_len());

        if n == 0 {
            // Magic and digest of an empty message: the KCL reads it as a plain record.
            assert_eq!(bytes.len(), OVERHEAD);
            assert!(matches!(decode_err(&bytes), AggError::TooShort { len: 20 }));
            continue;
        }
        let decoded = decode_ok(&bytes);
        assert_eq!(decoded.len(), n);
        for (i, (r, (pk, ehk, data))) in decoded.iter().zip(&inputs).enumerate() {
            assert_eq!(*r, rec(pk, ehk.as_deref(), data, i as u64));
            let expected = match ehk {
                Some(e) => parse_explicit_hash_key(e).unwrap(),
                None => partition_key_hash(pk),
            };
            assert_eq!(r.hash_key().unwrap(), expected);
        }
        // Each key stored once, in order of first use.
        let pks = distinct_in_order(inputs.iter().map(|(pk, _, _)| pk.as_str()));
        let ehks = distinct_in_order(inputs.iter().filter_map(|(_, e, _)| e.as_deref()));
        assert_eq!(decoded.partition_key_table(), pks);
        assert_eq!(decoded.explicit_hash_key_table(), ehks);
        assert!(matches!(deaggregate(&bytes), Deaggregated::Aggregate(r) if r.len() == n));
    }
}

/// `take_encoded` (the records left where they were written, magic and tables put in front
/// of them) gives the bytes `encode_without_digest` copies together: on a fresh aggregator
/// and a used one, for tables that outgrow the room left for them part-way (fresh keys pass
/// 128 entries), and into buffers handed back for reuse (`take_encoded_into`).
#[test]
fn aggregates_taken_in_place_are_the_encoded_bytes() {
    let mut rng = StdRng::seed_from_u64(0x1A_7ACE);
    let (mut agg, mut reusing) = (Aggregator::new(), Aggregator::new());
    let mut slot = Encoded::default();
    let mut sizes = vec![0, 1, 2, 500, 3, 0];
    sizes.extend((0..80).map(|_| rng.random_range(0..=500)));
    for n in sizes {
        let inputs = random_inputs(&mut rng, n);
        for (pk, ehk, data) in &inputs {
            agg.add(pk, ehk.as_deref(), data).unwrap();
            reusing.add(pk, ehk.as_deref(), data).unwrap();
        }
        let expected = agg.encode_without_digest();
        let signed = agg.encode();
        let mut taken = agg.take_encoded();
        assert_eq!(taken.as_slice(), expected, "{n} records");
        assert!(agg.is_empty());
        assert_eq!(agg.encoded_len(), OVERHEAD);
        assert_eq!(agg.encode(), Aggregator::new().encode(), "cleared");
        write_digests(std::slice::from_mut(&mut taken));
        assert_eq!(taken.as_slice(), signed);
        assert_eq!(taken.into_vec(), signed);

        reusing.take_encoded_into(&mut slot);
        assert_eq!(slot.as_slice(), expected, "{n} records, reused buffer");
        assert!(reusing.is_empty());
    }
}

#[test]
fn encoded_len_is_exact_for_every_prefix() {
    let mut rng = StdRng::seed_from_u64(42);
    for _ in 0..12 {
        let n = rng.random_range(0..=300);
        let inputs = random_inputs(&mut rng, n);
        let mut agg = Aggregator::new();
        assert_eq!(agg.encoded_len(), agg.encode().len());
        for (pk, ehk, data) in &inputs {
            let expected = agg.encoded_len() + agg.added_len(pk, ehk.as_deref(), data);
            agg.add(pk, ehk.as_deref(), data).unwrap();
            let bytes = agg.encode();
            assert_eq!(agg.encoded_len(), bytes.len());
            assert_eq!(bytes.len(), expected);
        }
    }
}

#[test]
fn sizes_across_varint_boundaries() {
    // Index 127 -> 128 (one to two varint bytes), data and record lengths around 127/128
    // and 16383/16384.
    let mut agg = Aggregator::new();
    for i in 0..300u32 {
        let key = format!("key-{i}");
        let data = vec![7u8; [0, 120, 125, 126, 127, 128, 16_370, 16_379, 16_384][i as usize % 9]];
        let predicted = agg.encoded_len() + agg.added_len(&key, Some(&i.to_string()), &data);
        agg.add(&key, Some(&i.to_string()), &data).unwrap();
        assert_eq!(agg.encoded_len(), predicted);
    }
    let bytes = agg.encode();
    assert_eq!(bytes.len(), agg.encoded_len());
    assert_eq!(decode_ok(&bytes).len(), 300);
}

/// `add_within` adds exactly what `fits` then `add` would, and nothing when they would not:
/// the same sub-sequence numbers, the same bytes, aggregate after aggregate.
#[test]
fn add_within_is_fits_then_add() {
    let mut rng = StdRng::seed_from_u64(0xADD_3171);
    let (mut within, mut checked) = (Aggregator::new(), Aggregator::new());
    let (mut added, mut refused) = (0, 0);
    for _ in 0..40 {
        let limit = rng.random_range(OVERHEAD..4000);
        for (pk, ehk, data) in random_inputs(&mut rng, 300) {
            let ehk = ehk.as_deref();
            let got = within.add_within(&pk, ehk, &data, limit).unwrap();
            let want = checked
                .fits(&pk, ehk, &data, limit)
                .then(|| checked.add(&pk, ehk, &data).unwrap());
            assert_eq!(got, want, "key {pk:?}, {} bytes, limit {limit}", data.len());
            assert_eq!(within.encoded_len(), checked.encoded_len());
            assert!(within.encoded_len() <= limit);
            match got {
                Some(_) => added += 1,
                None => refused += 1,
            }
        }
        assert_eq!(within.take(), checked.take());
    }
    assert!(
        added > 1000 && refused > 1000,
        "{added} added, {refused} refused"
    );
    let mut agg = Aggregator::new();
    assert!(agg
        .add_within("k", Some("not a number"), b"x", 1000)
        .is_err());
    assert!(agg.is_empty(), "nothing added on error");
}

#[test]
fn fills_up_to_the_kpl_limit() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut agg = Aggregator::new();
    loop {
        let pk = format!("pk-{}", rng.random_range(0..50));
        let data: Vec<u8> = (0..rng.random_range(0..400))
            .map(|_| rng.random())
            .collect();
        if !agg.fits(&pk, None, &data, KPL_DEFAULT_MAX_SIZE) {
            assert!(agg.encoded_len() + agg.added_len(&pk, None, &data) > KPL_DEFAULT_MAX_SIZE);
            break;
        }
        agg.add(&pk, None, &data).unwrap();
    }
    assert!(agg.encoded_len() <= KPL_DEFAULT_MAX_SIZE);
    assert!(agg.encoded_len() > KPL_DEFAULT_MAX_SIZE - 500);
    let n = agg.len();
    let bytes = agg.take();
    assert!(agg.is_empty());
    assert_eq!(agg.encoded_len(), OVERHEAD);
    assert!(bytes.len() <= KPL_DEFAULT_MAX_SIZE);
    assert_eq!(decode_ok(&bytes).len(), n);
}

#[test]
fn one_record_aggregate_is_valid() {
    let mut agg = Aggregator::new();
    agg.add("only", None, b"data").unwrap();
    assert_eq!(agg.len(), 1);
    let bytes = agg.encode();
    assert_eq!(
        deaggregate(&bytes),
        Deaggregated::Aggregate(vec![rec("only", None, b"data", 0)])
    );
}

#[test]
fn add_rejects_a_bad_explicit_hash_key_and_changes_nothing() {
    let mut agg = Aggregator::new();
    agg.add("a", Some("1"), b"x").unwrap();
    let before = agg.encode();
    for bad in ["", "-1", "x", "340282366920938463463374607431768211456"] {
        let err = agg.add("b", Some(bad), b"y").unwrap_err();
        assert!(
            matches!(err, AggError::InvalidExplicitHashKey { .. }),
            "{bad}"
        );
    }
    assert_eq!(agg.len(), 1);
    assert_eq!(agg.encode(), before);
}

#[test]
fn owned_records_round_trip() {
    let r = rec("pk", Some("9"), b"\x00data", 3);
    let owned = r.to_owned_record();
    assert_eq!(owned.partition_key, "pk");
    assert_eq!(owned.as_user_record(), r);
}

// ---- what other encoders may legally write ----

#[test]
fn unknown_fields_and_any_field_order_are_accepted() {
    let tag = [
        f_varint(15, 1),
        f_bytes(2, "vé".as_bytes()),
        f_bytes(1, b"tag-key"),
    ]
    .concat();
    // Record 0: fields backwards, unknown fields of every wire type between them, a
    // repeated scalar (last wins), and a known field with the wrong wire type.
    let record0 = [
        f_bytes(3, b"first"),
        f_varint(15, 123_456),
        f_bytes(9, b"unknown payload"),
        [key(20, 5), vec![1, 2, 3, 4]].concat(), // fixed32
        [key(21, 1), vec![1, 2, 3, 4, 5, 6, 7, 8]].concat(), // fixed64
        key(22, 3),                              // start group 22
        f_varint(1, 99),                         //   inside the group: not ours
        [key(23, 3), key(23, 4)].concat(),       //   a nested empty group
        key(22, 4),                              // end group 22
        f_bytes(4, &tag),
        f_varint(2, 0),
        f_varint(1, 0),
        f_varint(1, 1), // repeated: the last value wins
        f_bytes(
            2,
            b"wire type LEN: unknown, not the explicit hash key index",
        ),
    ]
    .concat();
    let record1 = [f_bytes(3, b"second"), f_varint(1, 0), f_varint(2, 1)].concat();
    // Top level: records before the tables, tables interleaved, unknown fields around.
    let message = [
        f_varint(15, 7),
        f_bytes(3, &record0),
        f_bytes(9, b"top-level unknown"),
        f_bytes(1, b"pk-0"),
        f_bytes(2, b"100"),
        f_varint(1, 5), // field 1 as a varint: unknown, not a table entry
        f_bytes(3, &record1),
        f_bytes(1, b"pk-1"),
        f_bytes(2, b"200"),
        [key(30, 1), vec![0; 8]].concat(),
    ]
    .concat();
    let data = wrap(&message);
    let decoded = decode_ok(&data);
    assert_eq!(decoded.partition_key_table(), ["pk-0", "pk-1"]);
    assert_eq!(decoded.explicit_hash_key_table(), ["100", "200"]);
    assert_eq!(
        decoded.records(),
        [
            rec("pk-1", Some("100"), b"first", 0),
            rec("pk-0", Some("200"), b"second", 1),
        ]
    );
}

#[test]
fn decoded_slices_borrow_from_the_input() {
    let mut agg = Aggregator::new();
    agg.add("key", Some("1"), b"payload").unwrap();
    let bytes = agg.encode();
    let range = bytes.as_ptr_range();
    let r = decode_ok(&bytes).records()[0];
    assert!(range.contains(&r.data.as_ptr()));
    assert!(range.contains(&r.partition_key.as_ptr()));
    assert!(range.contains(&r.explicit_hash_key.unwrap().as_ptr()));
}

#[test]
fn aggregate_without_records_yields_none() {
    // Valid digest, a table but no records: the KCL delivers nothing for it.
    let data = wrap(&f_bytes(1, b"lonely"));
    let decoded = decode_ok(&data);
    assert!(decoded.is_empty());
    assert_eq!(deaggregate(&data), Deaggregated::Aggregate(vec![]));
}

#[test]
fn unreferenced_table_entries_are_not_checked_as_numbers() {
    let message = [
        f_bytes(1, b"a"),
        f_bytes(2, b"not a number"),
        f_bytes(3, &[f_varint(1, 0), f_bytes(3, b"x")].concat()),
    ]
    .concat();
    assert_eq!(
        decode_ok(&wrap(&message)).records(),
        [rec("a", None, b"x", 0)]
    );
}

// ---- plain, corrupt ----

#[test]
fn plain_records() {
    for data in [
        &b""[..],
        b"hello",
        &MAGIC[..3],
        &[0xF3, 0x89, 0x9A, 0xC3, 0, 0],
    ] {
        assert!(decode(data).unwrap().is_none());
        assert_eq!(deaggregate(data), Deaggregated::Plain(data));
        assert!(!has_magic(data));
    }
}

#[test]
fn too_short() {
    for len in [0, 1, DIGEST_LEN - 1, DIGEST_LEN] {
        let data = [&MAGIC[..], &vec![0u8; len]].concat();
        let err = decode_err(&data);
        assert_eq!(err, AggError::TooShort { len: data.len() });
        assert!(err.to_string().contains("too short"));
        assert!(matches!(deaggregate(&data), Deaggregated::Corrupt { .. }));
    }
}

#[test]
fn digest_mismatch() {
    let mut agg = Aggregator::new();
    agg.add("a", None, b"x").unwrap();
    let good = agg.encode();
    for i in MAGIC.len()..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let err = decode_err(&bad);
        assert_eq!(err, AggError::DigestMismatch, "byte {i}");
        assert!(err.to_string().contains("MD5"));
    }
}

#[test]
fn malformed_protobuf_is_corrupt_with_a_reason() {
    let record = |fields: &[Vec<u8>]| f_bytes(3, &fields.concat());
    let a = f_bytes(1, b"a");

    // Truncated varints: a key, a value, a length.
    assert_corrupt(&[0x80], "AggregatedRecord: truncated varint at byte 4");
    assert_corrupt(&[0x08, 0x80], "truncated varint at byte 5");
    assert_corrupt(
        &[&a[..], &[0x1A, 0x03, 0x08, 0x80, 0x80]].concat(),
        "Record: truncated varint",
    );
    assert_corrupt(&[0x0A, 0xFF], "truncated varint");
    assert_corrupt(
        &[
            0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02,
        ],
        "overflows 64 bits",
    );

    // Lengths past the end: of the whole message, of a record, of fixed-width values.
    let e = assert_corrupt(&[0x0A, 0x05, b'a'], "past the end");
    assert_eq!(
        e,
        AggError::LengthPastEnd {
            message: "AggregatedRecord",
            field: 1,
            offset: 5,
            len: 5,
            available: 1
        }
    );
    assert_corrupt(
        &[&a[..], &[0x1A, 0x04, 0x08, 0x00, 0x1A, 0x05, b'x']].concat(),
        "Record: field 3",
    );
    assert_corrupt(
        &[&a[..], &[0x1A, 0x09, 0x08, 0x00]].concat(),
        "past the end",
    );
    assert_corrupt(&[0x09, 1, 2, 3], "field 1 at byte 5 has length 8");
    assert_corrupt(&[0x0D, 1, 2], "has length 4");
    assert_corrupt(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], "past the end");
    // Off by exactly one, with more bytes right after the message (the next field, or the
    // digest), which must not be read.
    assert_corrupt(
        &[0x0A, 0x02, b'a'],
        "length 2, past the end of the message (1 bytes left)",
    );
    assert_corrupt(
        &[0x09, 1, 2, 3, 4, 5, 6, 7],
        "has length 8, past the end of the message (7 bytes left)",
    );
    assert_corrupt(
        &[0x0D, 1, 2, 3],
        "has length 4, past the end of the message (3 bytes left)",
    );
    let e = assert_corrupt(
        &[&a[..], &[0x1A, 0x04, 0x08, 0x00, 0x1A, 0x01, b'x']].concat(),
        "Record: field 3",
    );
    assert!(matches!(
        e,
        AggError::LengthPastEnd {
            len: 1,
            available: 0,
            ..
        }
    ));
    assert_corrupt(
        &[&a[..], &[0x1A, 0x04, 0x08, 0x00, 0x0A, 0x01, b'x']].concat(),
        "Record: field 1",
    );

    // Indices out of the tables.
    let e = assert_corrupt(
        &[a.clone(), record(&[f_varint(1, 1), f_bytes(3, b"")])].concat(),
        "partition key index 1 is out of the partition key table (1 entries)",
    );
    assert!(matches!(
        e,
        AggError::PartitionKeyIndexOutOfRange { record: 0, .. }
    ));
    assert_corrupt(
        &[a.clone(), record(&[f_varint(1, u64::MAX), f_bytes(3, b"")])].concat(),
        "out of the partition key table",
    );
    assert_corrupt(
        &[
            a.clone(),
            record(&[f_varint(1, 0), f_bytes(3, b"")]),
            record(&[f_varint(1, 0), f_varint(2, 0), f_bytes(3, b"")]),
        ]
        .concat(),
        "record 1: explicit hash key index 0 is out of the explicit hash key table",
    );
    assert_corrupt(
        &[record(&[f_varint(1, 0), f_bytes(3, b"")])].concat(),
        "(0 entries)",
    );

    // An explicit hash key that is not a number.
    let e = assert_corrupt(
        &[
            a.clone(),
            f_bytes(2, b"12x"),
            record(&[f_varint(1, 0), f_varint(2, 0), f_bytes(3, b"")]),
        ]
        .concat(),
        "explicit hash key \"12x\" is not a decimal integer",
    );
    assert!(e.to_string().contains("(record 0)"));

    // Missing required fields.
    assert_corrupt(
        &record(&[f_bytes(3, b"x")]),
        "record 0: missing required field partition_key_index",
    );
    assert_corrupt(
        &[
            a.clone(),
            record(&[f_varint(1, 0), f_bytes(3, b"")]),
            record(&[f_varint(1, 0)]),
        ]
        .concat(),
        "record 1: missing required field data",
    );
    assert_corrupt(
        &[
            a.clone(),
            record(&[
                f_varint(1, 0),
                f_bytes(3, b""),
                f_bytes(4, &f_bytes(2, b"v")),
            ]),
        ]
        .concat(),
        "missing required field tags.key",
    );
    // A required field with the wrong wire type does not count.
    assert_corrupt(
        &[a.clone(), record(&[f_bytes(1, b"0"), f_bytes(3, b"")])].concat(),
        "missing required field partition_key_index",
    );

    // Invalid UTF-8.
    assert_corrupt(
        &f_bytes(1, &[b'o', b'k', 0xC3, 0x28]),
        "partition_key_table: invalid UTF-8 at byte 8",
    );
    assert_corrupt(
        &f_bytes(2, &[0xFF]),
        "explicit_hash_key_table: invalid UTF-8",
    );
    assert_corrupt(
        &[
            a.clone(),
            record(&[
                f_varint(1, 0),
                f_bytes(3, b""),
                f_bytes(4, &f_bytes(1, &[0x80])),
            ]),
        ]
        .concat(),
        "Tag.key: invalid UTF-8",
    );
    assert_corrupt(
        &[
            a.clone(),
            record(&[
                f_varint(1, 0),
                f_bytes(3, b""),
                f_bytes(
                    4,
                    &[f_bytes(1, b"k"), f_bytes(2, &[0xED, 0xA0, 0x80])].concat(),
                ),
            ]),
        ]
        .concat(),
        "Tag.value: invalid UTF-8",
    );

    // Wire format violations.
    assert_corrupt(&[0x0E, 0x00], "invalid wire type 6 for field 1");
    assert_corrupt(
        &[&a[..], &[0x1A, 0x02, 0x0F, 0x00]].concat(),
        "Record: invalid wire type 7",
    );
    assert_corrupt(&[0x00, 0x00], "invalid field number 0 at byte 4");
    assert_corrupt(&[0x02, 0x00], "invalid field number 0");
    assert_corrupt(
        &[0x80, 0x80, 0x80, 0x80, 0x10],
        "invalid field number 536870912",
    );
    assert_corrupt(
        &[0x0C],
        "end-group for field 1 at byte 4 matches no open group",
    );
    assert_corrupt(
        &[0x0B, 0x14],
        "end-group for field 2 at byte 5 matches no open group",
    );
    assert_corrupt(
        &[0x0B, 0x08, 0x01],
        "group for field 1 at byte 4 is never closed",
    );
    assert_corrupt(
        &[0x0B, 0x13, 0x14],
        "group for field 1 at byte 4 is never closed",
    );
}

#[test]
fn deeply_nested_groups_do_not_overflow_the_stack() {
    let depth = 200_000;
    let message = [vec![0x0B; depth], vec![0x0C; depth], a_record()].concat();
    assert_eq!(decode_ok(&wrap(&message)).len(), 1);
    let unclosed = vec![0x0B; depth];
    assert_corrupt(&unclosed, "never closed");
}

fn a_record() -> Vec<u8> {
    [
        f_bytes(1, b"a"),
        f_bytes(3, &[f_varint(1, 0), f_bytes(3, b"x")].concat()),
    ]
    .concat()
}

// ---- mutations never panic ----

/// Where in the record an error points, if it names a byte.
fn error_offset(e: &AggError) -> Option<usize> {
    match *e {
        AggError::TruncatedVarint { offset, .. }
        | AggError::VarintOverflow { offset, .. }
        | AggError::LengthPastEnd { offset, .. }
        | AggError::InvalidFieldNumber { offset, .. }
        | AggError::InvalidWireType { offset, .. }
        | AggError::UnmatchedEndGroup { offset, .. }
        | AggError::UnclosedGroup { offset, .. }
        | AggError::InvalidUtf8 { offset, .. } => Some(offset),
        _ => None,
    }
}

/// Whatever `decode` makes of `data`, it must not panic, and what it returns must hold up:
/// an error points into the protobuf message, and an aggregate's user records, encoded
/// again, decode to the same user records. Returns what happened, for tallies.
fn check_mutant(data: &[u8]) -> Result<usize, AggError> {
    let result = match decode(data) {
        Ok(None) => {
            assert!(!data.starts_with(&MAGIC));
            Ok(0)
        }
        Ok(Some(aggregate)) => {
            let range = data.as_ptr_range();
            let mut again = Aggregator::new();
            for (i, r) in aggregate.iter().enumerate() {
                assert_eq!(r.sub_sequence, i as u64);
                assert!(r.hash_key().is_ok());
                assert!(r.data.is_empty() || range.contains(&r.data.as_ptr()));
                assert_eq!(
                    again
                        .add(r.partition_key, r.explicit_hash_key, r.data)
                        .unwrap(),
                    r.sub_sequence
                );
            }
            if !aggregate.is_empty() {
                let bytes = again.encode();
                assert_eq!(bytes.len(), again.encoded_len());
                assert_eq!(decode_ok(&bytes).records(), aggregate.records());
            }
            Ok(aggregate.len())
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if let Some(offset) = error_offset(&e) {
                // A varint or value cut short by the end of the message is reported where
                // it should start, which may be the end itself; other errors name a byte of
                // the message.
                let end = data.len() - DIGEST_LEN;
                let at_end_ok = matches!(
                    e,
                    AggError::TruncatedVarint { .. } | AggError::LengthPastEnd { .. }
                );
                assert!(
                    offset >= MAGIC.len() && (offset < end || at_end_ok && offset == end),
                    "{e} points outside the message, {}..{end}",
                    MAGIC.len()
                );
            }
            Err(e)
        }
    };
    match (&result, deaggregate(data)) {
        (Ok(0), Deaggregated::Plain(d)) => assert_eq!(d, data),
        (Ok(n), Deaggregated::Aggregate(records)) => assert_eq!(records.len(), *n),
        (Err(e), Deaggregated::Corrupt { data: d, reason }) => {
            assert_eq!(d, data);
            assert_eq!(&reason, e);
        }
        (result, other) => panic!("decode gave {result:?}, deaggregate {other:?}"),
    }
    result
}

#[test]
fn truncations_and_byte_flips_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xF1A5);
    let mut agg = Aggregator::new();
    for (pk, ehk, data) in random_inputs(&mut rng, 40) {
        agg.add(&pk, ehk.as_deref(), &data[..data.len().min(40)])
            .unwrap();
    }
    // A tag, so the mutations reach the Tag parser too.
    let tagged = f_bytes(
        3,
        &[
            f_varint(1, 0),
            f_bytes(3, b"t"),
            f_bytes(4, &[f_bytes(1, b"k"), f_bytes(2, b"v")].concat()),
        ]
        .concat(),
    );
    let good = agg.encode();
    let message = [&good[MAGIC.len()..good.len() - DIGEST_LEN], &tagged[..]].concat();
    let good = wrap(&message);
    assert_eq!(decode_ok(&good).len(), 41);

    for len in 0..good.len() {
        // Truncated as received (digest broken), and truncated then re-digested (so the
        // protobuf parser sees the cut).
        let _ = check_mutant(&good[..len]);
        let _ = check_mutant(&wrap(&message[..len.min(message.len())]));
    }
    for _ in 0..4000 {
        let mut m = message.clone();
        for _ in 0..rng.random_range(1..4) {
            match rng.random_range(0..4) {
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
                _ => {
                    let i = rng.random_range(0..=m.len());
                    m.insert(i, rng.random());
                }
            }
        }
        let _ = check_mutant(&wrap(&m));
        // Without fixing the digest, it must be caught (or, flipped magic, be plain).
        let mut raw = good.clone();
        let i = rng.random_range(0..raw.len());
        raw[i] ^= 1 << rng.random_range(0..8);
        let _ = check_mutant(&raw);
        if i >= MAGIC.len() {
            assert_eq!(decode_err(&raw), AggError::DigestMismatch);
        }
    }
    for _ in 0..2000 {
        let garbage: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
        let _ = check_mutant(&wrap(&garbage));
    }
}

/// A message built field by field, each field usually well formed for the schema and
/// sometimes not (a wrong wire type, an index past the table, a bad hash key, invalid UTF-8,
/// an unknown field, a group, a missing required field), so that the parser's every branch
/// is reached with valid digests, and often enough the whole message is valid.
fn structured_message(rng: &mut StdRng, depth: u32) -> Vec<u8> {
    let mut m = Vec::new();
    let string = |rng: &mut StdRng| -> Vec<u8> {
        match rng.random_range(0..40) {
            0 => vec![0xC3, 0x28], // invalid UTF-8
            1 => vec![],
            _ => random_key(rng).into_bytes(),
        }
    };
    let pks = rng.random_range(0..4u64);
    let ehks = rng.random_range(0..3u64);
    for _ in 0..pks {
        m.extend(f_bytes(1, &string(rng)));
    }
    for _ in 0..ehks {
        let ehk = match rng.random_range(0..10) {
            0 => b"12x".to_vec(),
            1 => b"340282366920938463463374607431768211456".to_vec(),
            _ => random_ehk(rng).into_bytes(),
        };
        m.extend(f_bytes(2, &ehk));
    }
    for _ in 0..rng.random_range(0..5) {
        let mut record = Vec::new();
        // Now and then an index one past the table.
        if rng.random_ratio(19, 20) {
            let past = u64::from(rng.random_ratio(1, 15));
            record.extend(f_varint(1, rng.random_range(0..pks.max(1)) + past));
        }
        if ehks > 0 && rng.random_bool(0.5) {
            let past = u64::from(rng.random_ratio(1, 15));
            record.extend(f_varint(2, rng.random_range(0..ehks) + past));
        }
        if rng.random_ratio(19, 20) {
            record.extend(f_bytes(
                3,
                &random_data(rng)[..]
                    .iter()
                    .take(40)
                    .copied()
                    .collect::<Vec<_>>(),
            ));
        }
        if rng.random_ratio(1, 6) {
            let mut tag = Vec::new();
            if rng.random_ratio(9, 10) {
                tag.extend(f_bytes(1, &string(rng)));
            }
            if rng.random_bool(0.5) {
                tag.extend(f_bytes(2, &string(rng)));
            }
            record.extend(f_bytes(4, &tag));
        }
        if depth < 3 && rng.random_ratio(1, 8) {
            record.extend(odd_field(rng, depth));
        }
        // Fields in any order: swap two halves now and then.
        if rng.random_ratio(1, 10) {
            let at = rng.random_range(0..=record.len());
            record.rotate_left(at); // may cut a field in two: a malformed record
        }
        m.extend(f_bytes(3, &record));
    }
    if depth < 3 && rng.random_ratio(1, 4) {
        let at = rng.random_range(0..=m.len());
        let odd = odd_field(rng, depth);
        m.splice(at..at, odd);
    }
    m
}

/// A field the schema does not expect: unknown number, wrong wire type, group, or junk.
fn odd_field(rng: &mut StdRng, depth: u32) -> Vec<u8> {
    let field = rng.random_range(1..=6u64);
    match rng.random_range(0..7) {
        0 => f_varint(field, rng.random()),
        1 => [key(field, 1), (0..8).map(|_| rng.random()).collect()].concat(),
        2 => [key(field, 5), (0..4).map(|_| rng.random()).collect()].concat(),
        3 => f_bytes(field, &structured_message(rng, depth + 1)),
        4 => [
            key(field, 3),
            structured_message(rng, depth + 1),
            key(field, 4),
        ]
        .concat(),
        5 => key(field, rng.random_range(3..8)),
        _ => (0..rng.random_range(1..6)).map(|_| rng.random()).collect(),
    }
}

#[test]
fn structured_messages_never_panic_and_round_trip() {
    let mut rng = StdRng::seed_from_u64(0x57A7E);
    let mut aggregates = 0;
    let mut user_records = 0;
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..20_000 {
        let message = structured_message(&mut rng, 0);
        match check_mutant(&wrap(&message)) {
            Ok(n) => {
                aggregates += 1;
                user_records += n;
            }
            Err(e) => {
                let kind = format!("{e:?}");
                let kind = kind
                    .split([' ', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                *errors.entry(kind).or_default() += 1;
            }
        }
    }
    eprintln!("{aggregates} aggregates, {user_records} user records, errors: {errors:?}");
    // The generator must reach both sides and most error kinds, or the test proves little.
    assert!(aggregates > 3000, "{aggregates} valid aggregates");
    assert!(user_records > 4000, "{user_records} user records");
    for kind in [
        "TruncatedVarint",
        "LengthPastEnd",
        "InvalidFieldNumber",
        "InvalidWireType",
        "UnmatchedEndGroup",
        "UnclosedGroup",
        "MissingField",
        "PartitionKeyIndexOutOfRange",
        "ExplicitHashKeyIndexOutOfRange",
        "InvalidUtf8",
        "InvalidExplicitHashKey",
    ] {
        assert!(
            errors.get(kind).copied().unwrap_or(0) >= 20,
            "{kind}: {errors:?}"
        );
    }
}

/// The top-level fields of an aggregate of `inputs`, one `Vec` each, as our encoder lays
/// them out (tables in order of first use, then the records).
fn top_level_fields(inputs: &[Input]) -> Vec<Vec<u8>> {
    let pks = distinct_in_order(inputs.iter().map(|(pk, _, _)| pk.as_str()));
    let ehks = distinct_in_order(inputs.iter().filter_map(|(_, e, _)| e.as_deref()));
    let index = |table: &[&str], key: &str| table.iter().position(|k| *k == key).unwrap() as u64;
    let mut fields: Vec<Vec<u8>> = pks.iter().map(|k| f_bytes(1, k.as_bytes())).collect();
    fields.extend(ehks.iter().map(|k| f_bytes(2, k.as_bytes())));
    for (pk, ehk, data) in inputs {
        let mut record = f_varint(1, index(&pks, pk));
        if let Some(ehk) = ehk {
            record.extend(f_varint(2, index(&ehks, ehk)));
        }
        record.extend(f_bytes(3, data));
        fields.push(f_bytes(3, &record));
    }
    fields
}

#[test]
fn splices_of_valid_aggregates_never_panic_and_round_trip() {
    // Fields copied between and within valid messages, dropped, reordered, repeated: tables
    // that grow or shrink under their records, records pointing into another message's
    // tables, now and then a field cut short.
    let mut rng = StdRng::seed_from_u64(0x5B11CE);
    let messages: Vec<Vec<Vec<u8>>> = (0..8)
        .map(|_| {
            let mut inputs = random_inputs(&mut rng, 12);
            inputs.iter_mut().for_each(|(_, _, data)| data.truncate(30));
            let fields = top_level_fields(&inputs);
            // The hand-built layout is the encoder's, byte for byte.
            let mut agg = Aggregator::new();
            for (pk, ehk, data) in &inputs {
                agg.add(pk, ehk.as_deref(), data).unwrap();
            }
            assert_eq!(wrap(&fields.concat()), agg.encode());
            fields
        })
        .collect();
    let mut decoded = 0;
    for _ in 0..5000 {
        let mut fields = messages[rng.random_range(0..messages.len())].clone();
        for _ in 0..rng.random_range(1..4) {
            let n = fields.len();
            match rng.random_range(0..6) {
                0 if n > 1 => {
                    fields.remove(rng.random_range(0..n));
                }
                1 => {
                    let copy = fields[rng.random_range(0..n)].clone();
                    fields.insert(rng.random_range(0..=n), copy);
                }
                2 => fields.swap(rng.random_range(0..n), rng.random_range(0..n)),
                3 => {
                    let other = &messages[rng.random_range(0..messages.len())];
                    let field = other[rng.random_range(0..other.len())].clone();
                    fields.insert(rng.random_range(0..=n), field);
                }
                4 if rng.random_ratio(1, 4) => {
                    let field = &mut fields[rng.random_range(0..n)];
                    field.truncate(rng.random_range(0..field.len()));
                }
                _ => {
                    let at = rng.random_range(0..=n);
                    fields[at..].rotate_left(usize::from(at < n));
                }
            }
        }
        if check_mutant(&wrap(&fields.concat())).is_ok() {
            decoded += 1;
        }
    }
    eprintln!("{decoded} of 5000 splices decoded");
    assert!(decoded > 1000, "only {decoded} splices decoded");
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xA4B1);
    for _ in 0..20_000 {
        let len = rng.random_range(0..80);
        let mut data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if rng.random_bool(0.5) {
            data.splice(0..0, MAGIC);
        }
        match check_mutant(&data) {
            Ok(_) => assert!(!data.starts_with(&MAGIC)),
            Err(e) => assert!(matches!(
                e,
                AggError::TooShort { .. } | AggError::DigestMismatch
            )),
        }
    }
}

// ---- hash keys ----

#[test]
fn partition_key_hash_is_md5_big_endian() {
    assert_eq!(
        partition_key_hash("a"),
        0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661
    );
    assert_eq!(
        partition_key_hash(""),
        0xd41d_8cd9_8f00_b204_e980_0998_ecf8_427e
    );
    assert_eq!(hash_key("a", None).unwrap(), partition_key_hash("a"));
    assert_eq!(hash_key("a", Some("5")).unwrap(), 5);
}

#[test]
fn explicit_hash_key_parsing() {
    let max = "340282366920938463463374607431768211455";
    assert_eq!(max, u128::MAX.to_string());
    assert_eq!(parse_explicit_hash_key("0").unwrap(), 0);
    assert_eq!(parse_explicit_hash_key("1").unwrap(), 1);
    assert_eq!(parse_explicit_hash_key(max).unwrap(), u128::MAX);
    assert_eq!(parse_explicit_hash_key("007").unwrap(), 7);
    assert_eq!(
        parse_explicit_hash_key(&format!("0000{max}")).unwrap(),
        u128::MAX
    );
    for bad in [
        "340282366920938463463374607431768211456", // 2^128
        "999999999999999999999999999999999999999999",
        "",
        "-1",
        "-0",
        "+1",
        " 1",
        "1 ",
        "1_000",
        "1e3",
        "0x10",
        "12a",
        "１", // fullwidth digit
        "١",  // Arabic-Indic digit
    ] {
        let err = parse_explicit_hash_key(bad).unwrap_err();
        assert_eq!(
            err,
            AggError::InvalidExplicitHashKey {
                value: bad.to_string(),
                record: None
            }
        );
        assert!(err.to_string().contains("0..=2^128-1"), "{err}");
        assert!(hash_key("a", Some(bad)).is_err());
    }
}

// ---- batches: the same results as one record at a time ----

/// `decode_many` and `deaggregate_many` over `records`, cut into batches of random sizes,
/// on every instruction set of the batch MD5: each result must equal `decode` /
/// `deaggregate` of the same record.
fn assert_batches_agree(records: &[Vec<u8>], rng: &mut StdRng) {
    let one_by_one: Vec<_> = records.iter().map(|r| decode(r)).collect();
    let deaggregated: Vec<_> = records.iter().map(|r| deaggregate(r)).collect();
    for (name, kernel) in checksum::tests::kernels() {
        checksum::tests::with_kernel(kernel, || {
            let mut start = 0;
            while start < records.len() {
                let n = match rng.random_range(0..4) {
                    0 => 1,
                    1 => 17,
                    _ => rng.random_range(1..200),
                };
                let end = (start + n).min(records.len());
                let batch = &records[start..end];
                assert_eq!(decode_many(batch), one_by_one[start..end], "{name}");
                assert_eq!(deaggregate_many(batch), deaggregated[start..end], "{name}");
                // Borrowed slices work as well as owned buffers.
                let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                assert_eq!(
                    deaggregate_many(&slices),
                    deaggregated[start..end],
                    "{name}"
                );
                start = end;
            }
        });
    }
}

#[test]
fn batch_decoding_agrees_with_decode_on_valid_plain_and_corrupt_records() {
    let mut rng = StdRng::seed_from_u64(0xBA7C4);
    let mut records = Vec::new();
    let mut agg = Aggregator::new();
    for _ in 0..300 {
        agg.clear();
        let n = rng.random_range(1..60);
        for (pk, ehk, data) in random_inputs(&mut rng, n) {
            agg.add(&pk, ehk.as_deref(), &data).unwrap();
        }
        let good = agg.encode();
        match rng.random_range(0..8) {
            // A digest mismatch: one byte of the message or the digest flipped.
            0 => {
                let mut bad = good.clone();
                let i = rng.random_range(MAGIC.len()..bad.len());
                bad[i] ^= 1 << rng.random_range(0..8);
                records.push(bad);
            }
            // Too short, with the magic.
            1 => records.push(good[..rng.random_range(0..=OVERHEAD)].to_vec()),
            // Plain: no magic, or nearly the magic.
            2 => records.push(good[1..].to_vec()),
            3 => records.push(random_data(&mut rng)),
            // Valid digest, protobuf that does not parse.
            4 => records.push(wrap(&good[MAGIC.len()..good.len() / 2])),
            // Empty aggregate (valid digest, no records).
            5 => records.push(wrap(&[])),
            _ => records.push(good),
        }
    }
    // Large ones too: near the KPL's size limit and beyond.
    for size in [KPL_DEFAULT_MAX_SIZE, 1 << 20] {
        agg.clear();
        let data = vec![7u8; 1000];
        while agg.fits("k", None, &data, size) {
            agg.add("k", None, &data).unwrap();
        }
        records.push(agg.encode());
    }
    let kinds = |r: &Deaggregated<'_>| match r {
        Deaggregated::Plain(_) => 0,
        Deaggregated::Aggregate(_) => 1,
        Deaggregated::Corrupt {
            reason: AggError::DigestMismatch,
            ..
        } => 2,
        Deaggregated::Corrupt { .. } => 3,
    };
    let mut seen = [0; 4];
    records
        .iter()
        .for_each(|r| seen[kinds(&deaggregate(r))] += 1);
    assert!(seen.iter().all(|&n| n > 10), "every case covered: {seen:?}");
    assert_batches_agree(&records, &mut rng);
    assert!(deaggregate_many::<Vec<u8>>(&[]).is_empty());
}

#[test]
fn batch_decoding_agrees_with_decode_on_mutants() {
    let mut rng = StdRng::seed_from_u64(0x3A7);
    let mut agg = Aggregator::new();
    for (pk, ehk, data) in random_inputs(&mut rng, 30) {
        agg.add(&pk, ehk.as_deref(), &data).unwrap();
    }
    let good = agg.encode();
    let message = good[MAGIC.len()..good.len() - DIGEST_LEN].to_vec();
    let mut records = Vec::new();
    for len in 0..good.len() {
        records.push(good[..len].to_vec());
        records.push(wrap(&message[..len.min(message.len())]));
    }
    for _ in 0..1000 {
        let mut m = message.clone();
        let i = rng.random_range(0..m.len());
        m[i] = rng.random();
        records.push(wrap(&m));
        let mut raw = good.clone();
        let i = rng.random_range(0..raw.len());
        raw[i] ^= 1 << rng.random_range(0..8);
        records.push(raw);
    }
    assert_batches_agree(&records, &mut rng);
}

#[test]
fn write_digests_gives_what_encode_gives() {
    let mut rng = StdRng::seed_from_u64(0xD16E57);
    let mut agg = Aggregator::new();
    for round in 0..16 {
        let count = match round {
            0 => 0,
            1 => 1,
            2 => 17,
            _ => rng.random_range(0..40),
        };
        let mut expected = Vec::new();
        let mut unsigned = Vec::new();
        for _ in 0..count {
            agg.clear();
            let n = rng.random_range(0..60);
            for (pk, ehk, data) in random_inputs(&mut rng, n) {
                agg.add(&pk, ehk.as_deref(), &data).unwrap();
            }
            let without = agg.encode_without_digest();
            assert_eq!(without.len(), agg.encoded_len());
            assert_eq!(without[without.len() - DIGEST_LEN..], [0; DIGEST_LEN]);
            expected.push(agg.encode());
            unsigned.push(if rng.random_bool(0.5) {
                without
            } else {
                agg.take_without_digest()
            });
        }
        for (name, kernel) in checksum::tests::kernels() {
            let mut batch = unsigned.clone();
            checksum::tests::with_kernel(kernel, || write_digests(&mut batch));
            assert_eq!(batch, expected, "{name}, round {round}");
            // In place through mutable slices as well.
            let mut batch = unsigned.clone();
            let mut slices: Vec<&mut [u8]> = batch.iter_mut().map(Vec::as_mut_slice).collect();
            checksum::tests::with_kernel(kernel, || write_digests(&mut slices));
            assert_eq!(batch, expected, "{name}, round {round}, slices");
        }
    }
    // Shorter than magic and digest: not an aggregate, left alone.
    let mut short: Vec<Vec<u8>> = (0..OVERHEAD).map(|len| vec![9u8; len]).collect();
    let before = short.clone();
    write_digests(&mut short);
    assert_eq!(short, before);
}

#[test]
fn take_without_digest_clears() {
    let mut agg = Aggregator::new();
    agg.add("a", None, b"x").unwrap();
    let expected = agg.encode();
    let mut without = [agg.take_without_digest()];
    assert!(agg.is_empty());
    assert_eq!(agg.encoded_len(), OVERHEAD);
    write_digests(&mut without);
    assert_eq!(without[0], expected);
}
