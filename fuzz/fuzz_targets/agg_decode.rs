//! Fuzz target for KPL aggregate decoding: `decode` and `deaggregate` on arbitrary bytes must
//! not panic and must agree, and an aggregate that decodes must survive a round trip —
//! its user records, added to an `Aggregator`, encode to bytes that decode to the same
//! records, and encoding those again gives the same bytes.
//!
//! Each input is tried twice: as a Kinesis record's data, and as the protobuf message of
//! an aggregate (magic and MD5 added), because libFuzzer's mutations almost never keep an
//! MD5 digest right and the protobuf parser would otherwise see little.

#![no_main]

use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};
use shardline::agg::{deaggregate, decode, Aggregator, Deaggregated, MAGIC};

fuzz_target!(|data: &[u8]| {
    check(data);
    let digest: [u8; 16] = Md5::digest(data).into();
    check(&[&MAGIC[..], data, &digest[..]].concat());
});

fn check(data: &[u8]) {
    let decoded = decode(data);
    match (&decoded, deaggregate(data)) {
        (Ok(None), Deaggregated::Plain(d)) => assert_eq!(d, data),
        (Ok(Some(aggregate)), Deaggregated::Aggregate(records)) => {
            assert_eq!(aggregate.records(), &records[..])
        }
        (Err(e), Deaggregated::Corrupt { data: d, reason }) => {
            assert_eq!(d, data);
            assert_eq!(e, &reason);
        }
        (decoded, other) => panic!("decode gave {decoded:?}, deaggregate {other:?}"),
    }
    let Ok(Some(aggregate)) = decoded else {
        return;
    };
    if aggregate.is_empty() {
        return; // nothing to encode: an empty aggregator's 20 bytes read as a plain record
    }
    let mut agg = Aggregator::new();
    for (i, r) in aggregate.iter().enumerate() {
        assert_eq!(r.sub_sequence, i as u64);
        let sub = agg
            .add(r.partition_key, r.explicit_hash_key, r.data)
            .expect("decode checked the explicit hash key");
        assert_eq!(sub, r.sub_sequence);
    }
    let bytes = agg.encode();
    assert_eq!(bytes.len(), agg.encoded_len());
    let again = decode(&bytes)
        .expect("our encoding decodes")
        .expect("our encoding has the magic");
    assert_eq!(again.records(), aggregate.records());

    let mut twice = Aggregator::new();
    for r in again.iter() {
        twice
            .add(r.partition_key, r.explicit_hash_key, r.data)
            .expect("valid");
    }
    assert_eq!(twice.encode(), bytes, "encoding is a fixed point");
}
