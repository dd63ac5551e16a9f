//! Fuzz target for the values a guest hands back across the WIT boundary.
//!
//! A real component (`fuzz/guest`, built by run.sh) returns whatever a script tells it to:
//! outputs and events with any record index (in range or not, in any order), too many or
//! too few results, events with any key, properties and event time, destinations with any
//! sink, topic, partition key (empty, 256+ characters) and explicit hash key (valid, 2^128,
//! not digits), rejections with any index and stage, traps and a blown memory limit. The
//! host runs it exactly as a shard consumer does — `StageSet::run_until` over a batch, with
//! the fused `processor` or any mix of `deserialize`, `transform` and `route` (the missing
//! ones are the built-in defaults) — and the target checks what the host promises about
//! the outcome (`BatchOutcome`) and feeds it to the public code that turns it into
//! messages:
//!
//! - every index in `outputs` and `failures` is a record of the batch;
//! - both lists are in record order: the consumer's dispatch walks records and outputs
//!   together and skips an output whose record it has passed, so an output out of order
//!   would be dropped silently (the record counted as delivered);
//! - a record with a failure delivers none of its events, so each record is accounted for
//!   exactly once: failed (its error policy applies), or delivered with its outputs (none
//!   when filtered out);
//! - with a policy that stops at a failure, the record-by-record retry reports nothing past
//!   the first failing record it met;
//! - explicit hash keys are accepted exactly when they are decimals from 0 to 2^128-1 (the
//!   WIT contract); Pulsar messages and dead letters build from anything, and a Kinesis
//!   dead-letter envelope fits in a Kinesis record.
//!
//! The component's path: `SHARDLINE_FUZZ_GUEST`, else where run.sh builds it.

#![no_main]

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use shardline::config::Config;
use shardline::sinks::dead_letter;
use shardline::sinks::pulsar::{message, MessageOptions};
use shardline::sinks::RecordContext;
use shardline::wasm::bindings::{BatchContext, SourceRecord};
use shardline::wasm::{BatchOutcome, RecordFailure, StagePlan, StageSet, WasmEngine};

/// The stage sets: `[0]` the fused processor, `[1 + bits]` deserialize (bit 0), transform
/// (bit 1) and route (bit 2) as separate stages, `[1]` none at all.
fn stage_sets() -> &'static Mutex<Vec<StageSet>> {
    static SETS: OnceLock<Mutex<Vec<StageSet>>> = OnceLock::new();
    SETS.get_or_init(|| {
        let guest = guest_path();
        assert!(
            guest.is_file(),
            "{} is missing: build it with fuzz/run.sh (or set SHARDLINE_FUZZ_GUEST)",
            guest.display()
        );
        // Compiled once into a cache next to the build, not once per stage set and run.
        let cache = fuzz_target_dir().join("fuzz-guest-cache");
        let engine =
            WasmEngine::new(Some(cache), 16 << 20, Duration::from_secs(5)).expect("engine");
        let stage = |name: &str| format!("  {name}:\n    component: {}\n", guest.display());
        let mut stages = vec![stage("pipeline")];
        for bits in 0..8 {
            let mut s = String::new();
            for (bit, name) in ["deserialize", "transform", "route"].iter().enumerate() {
                if bits & (1 << bit) != 0 {
                    s.push_str(&stage(name));
                }
            }
            stages.push(s);
        }
        let sets = stages
            .iter()
            .map(|s| {
                let yaml = format!(
                    "application: fuzz\nsource:\n  stream: s\n\
                     sinks:\n  pulsar:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: t\n\
                     \x20 kinesis:\n    kinesis:\n      stream: k\n\
                     default_sink: pulsar\n\
                     stages:\n{s}"
                );
                let yaml = yaml.replace("stages:\n\n", "");
                let config = Config::from_yaml(&yaml, "fuzz.yaml", PathBuf::from("/"))
                    .unwrap_or_else(|e| panic!("fuzz config: {e}\n{yaml}"));
                StagePlan::load(&engine, &config)
                    .and_then(|p| p.instantiate())
                    .expect("the fuzz guest loads")
            })
            .collect();
        Mutex::new(sets)
    })
}

fn guest_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SHARDLINE_FUZZ_GUEST") {
        return p.into();
    }
    fuzz_target_dir().join("wasm32-wasip2/release/fuzz_guest.wasm")
}

/// run.sh's build folder: `SHARDLINE_FUZZ_TARGET`, else `~/.cache/shardline/fuzz-target`.
fn fuzz_target_dir() -> PathBuf {
    std::env::var_os("SHARDLINE_FUZZ_TARGET")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/shardline/fuzz-target")
        })
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let set_index = usize::from(u.arbitrary::<u8>()? % 9);
    let stop_at_failure: bool = u.arbitrary()?;
    let n = 1 + usize::from(u.arbitrary::<u8>()? % 8);
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let key_len = usize::from(u.arbitrary::<u8>()? % 4);
        let partition_key = String::from_utf8_lossy(u.bytes(key_len)?).into_owned();
        // Kinesis's arrival time: any value must print (RELIABILITY.md, "Fuzzing").
        let arrival_millis: i64 = u.arbitrary()?;
        let len = usize::from(u.arbitrary::<u8>()? % 8);
        records.push(SourceRecord {
            partition_key,
            arrival_millis,
            data: u.bytes(len)?.to_vec(),
        });
    }
    // The four scripts (process, deserialize, transform, route); the last takes the rest.
    let mut shard_id = String::from("fuzz");
    for i in 0..4 {
        let len = if i == 3 {
            u.len()
        } else {
            usize::from(u.arbitrary::<u8>()?)
        };
        shard_id.push('/');
        shard_id.push_str(&hex(u.bytes(len.min(u.len()))?));
    }
    let ctx = BatchContext {
        stream_name: "s".into(),
        shard_id,
        millis_behind_latest: None,
    };

    let outcome = {
        let mut sets = stage_sets().lock().unwrap_or_else(|e| e.into_inner());
        sets[set_index].run_until(&ctx, &records, &|_| stop_at_failure)
    };
    check(&records, &outcome, stop_at_failure);
    Ok(())
}

fn check(records: &[SourceRecord], outcome: &BatchOutcome, stop_at_failure: bool) {
    let n = records.len() as u32;
    let out: Vec<u32> = outcome.outputs.iter().map(|o| o.index).collect();
    let failed: Vec<u32> = outcome.failures.iter().map(|f| f.index).collect();
    assert!(
        out.iter().chain(&failed).all(|&i| i < n),
        "an index outside the batch of {n}: outputs {out:?}, failures {failed:?}"
    );
    assert!(
        out.is_sorted(),
        "outputs out of record order (dispatch would drop some): {out:?}"
    );
    assert!(
        failed.is_sorted(),
        "failures out of record order: {failed:?}"
    );
    if let Some(i) = out.iter().find(|i| failed.binary_search(i).is_ok()) {
        panic!("record {i} both failed and has outputs: outputs {out:?}, failures {failed:?}");
    }
    if stop_at_failure && outcome.failures.len() > 1 {
        // Only the record-by-record retry stops, and only it can fail several records
        // with the batch's failures beyond; a whole batch that ran reports them all.
        let whole_call = outcome
            .failures
            .iter()
            .any(|f| f.kind != shardline::wasm::FailureKind::Rejected);
        if whole_call {
            let first = failed[0];
            assert!(
                out.iter().chain(&failed).all(|&i| i <= first),
                "past the first failure {first} under a stopping policy: outputs {out:?}, failures {failed:?}"
            );
        }
    }

    // What the sinks make of it (the parts that need no connection).
    let opts = MessageOptions {
        shard_id_property: true,
        millis_behind_latest_property: true,
    };
    for o in &outcome.outputs {
        let rec = &records[o.index as usize];
        let rc = context(rec);
        for d in &o.destinations {
            if let Some(e) = &d.explicit_hash_key {
                let parsed = shardline::agg::parse_explicit_hash_key(e);
                assert_eq!(
                    parsed.is_ok(),
                    is_hash_key(e),
                    "explicit hash key {e:?}: {parsed:?}"
                );
                if let Ok(v) = parsed {
                    let digits = e.trim_start_matches('0');
                    let canonical = if digits.is_empty() { "0" } else { digits };
                    assert_eq!(v.to_string(), canonical, "{e:?}");
                }
                let pk = d.partition_key.as_deref().unwrap_or(&rec.partition_key);
                let _ = shardline::agg::hash_key(pk, Some(e));
            }
        }
        let m = message(&opts, &rc, o.event.clone(), &[]);
        assert_eq!(m.payload, o.event.payload);
    }
    for f in &outcome.failures {
        let rec = &records[f.index as usize];
        dead_letter_fits(f, rec);
    }
}

fn context(rec: &SourceRecord) -> RecordContext<'_> {
    RecordContext {
        stream: "s",
        shard_id: "shardId-000000000000",
        partition_key: &rec.partition_key,
        sequence_number: "49590338271490256608559692538361571095921575989136588898",
        sub_sequence_number: None,
        arrival_millis: rec.arrival_millis,
        encryption_type: None,
        millis_behind_latest: Some(0),
    }
}

fn dead_letter_fits(f: &RecordFailure, rec: &SourceRecord) {
    let rc = context(rec);
    let props = dead_letter::properties(f, &rc);
    assert!(props
        .iter()
        .any(|(k, v)| *k == dead_letter::REASON && *v == f.reason));
    let max = dead_letter::max_envelope_len(&rec.partition_key);
    let envelope = dead_letter::envelope(f, &rc, &rec.data, max);
    assert!(
        envelope.len() <= max,
        "a Kinesis dead letter of {} bytes, over its limit of {max} (reason of {} bytes)",
        envelope.len(),
        f.reason.len()
    );
}

/// The WIT contract's explicit hash key: a decimal from 0 to 2^128-1 (leading zeros allowed).
fn is_hash_key(s: &str) -> bool {
    const MAX: &str = "340282366920938463463374607431768211455";
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let digits = s.trim_start_matches('0');
    digits.len() < MAX.len() || (digits.len() == MAX.len() && digits <= MAX)
}
