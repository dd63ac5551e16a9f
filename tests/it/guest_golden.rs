//! The orders example in every language: byte-exact for the Rust reference, equal in
//! meaning for every other language.
//!
//! One batch of ~75 records (valid orders of every region, high-priority ones, filtered
//! ones, invalid orders, broken JSON, Unicode, edge numbers) goes through each example
//! component (`guest-examples/*-orders`, built by `guest-examples/build.sh` into
//! `target/guests/` or `$SHARDLINE_GUESTS_OUT`), with default and custom settings, through
//! the host's own stage code, as one batch and as one record per call.
//!
//! - `rust_reference_is_byte_exact`: the Rust example (on the SDK) is pinned byte for byte in
//!   `tests/golden/guests/orders.out` (`SHARDLINE_BLESS=1` rewrites it after a deliberate
//!   change), and the hand-written guest (`tests/guests/orders-handwritten`, same rules, raw
//!   bindings) gives exactly the same bytes: the SDK's glue changes nothing.
//! - `every_language_conforms_to_the_rust_reference`: C, Python, JavaScript and Go give the
//!   same outputs as the Rust example, payloads compared as parsed JSON values (numbers as
//!   doubles: `1500.0` and `1500` are equal, key order is free), the same keys, event
//!   times, properties and destinations, and the same rejected indices with the same stage;
//!   the reason's wording is each language's own (it must not be empty).
//!
//! Where idiomatic JSON parsers legitimately disagree the batch has no record: nesting
//! deeper than serde_json's 128 levels, lone UTF-16 surrogates inside a *valid* order, and
//! numbers beyond a double's range in fields the order keeps (JavaScript writes them back
//! as `null`). Invalid records of those kinds are in it (every language rejects them).
//! A missing component fails the test: nothing is skipped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use shardline::config::Config;
use shardline::wasm::bindings::{BatchContext, SourceRecord};
use shardline::wasm::{BatchOutcome, StagePlan, WasmEngine};

/// The reference first, then every language that must conform to it.
const EXAMPLES: &[(&str, &str)] = &[
    ("rust", "orders"),
    ("c", "orders-c"),
    ("python", "orders-python"),
    ("js", "orders-js"),
    ("go", "orders-go"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn guests_dir() -> PathBuf {
    std::env::var_os("SHARDLINE_GUESTS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/guests"))
}

fn component(file: &str) -> PathBuf {
    let path = guests_dir().join(format!("{file}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build it with guest-examples/build.sh (dev/setup installs the toolchains)",
        path.display()
    );
    path
}

/// The batch: every rule of the orders example (guest-examples/README.md), and JSON that
/// parsers in different languages read, number or write differently.
fn inputs() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        // valid, every region, with and without priority
        r#"{"id": "o-1", "customer": "c-7", "amount": 12.5, "currency": "EUR", "region": "eu", "priority": "high"}"#,
        r#"{"id": "o-2", "customer": "c-8", "amount": 7, "currency": "USD", "region": "us"}"#,
        r#"{"id": "o-3", "customer": "c-9", "amount": 1.005, "currency": "JPY", "region": "apac", "priority": "low"}"#,
        r#"{"id": "o-4", "customer": "c-1", "amount": 2.675, "currency": "GBP", "region": "uk", "priority": null}"#,
        r#"{"id": "o-5", "customer": "c-2", "amount": 19.999, "currency": "BRL", "region": "latam", "priority": "HIGH"}"#,
        r#"{"id":"o-6","customer":"c-3","amount":0.125,"currency":"EUR","region":"eu","priority":"high","extra":{"z":[1,2.0,-3,true,false,null],"a":"x"}}"#,
        // filtered out: amount zero in every spelling
        r#"{"id": "z-1", "customer": "c", "amount": 0, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "z-2", "customer": "c", "amount": 0.0, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "z-3", "customer": "c", "amount": -0.0, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "z-4", "customer": "c", "amount": 0e5, "currency": "EUR", "region": "eu"}"#,
        // invalid orders
        r#"{"id": "o-1", "customer": "c-7", "amount": 1, "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": -3, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": -1.5, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": "12", "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": [1], "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": true, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": null, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": NaN, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": 1e999, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": "eur", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": "EURO", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": "ÉUR", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": 978, "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": "EUR", "region": ""}"#,
        r#"{"id": 7, "customer": "c-7", "amount": 1, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o", "customer": null, "amount": 1, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o", "customer": false, "amount": 1, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o", "customer": "c", "amount": 1, "currency": "EUR", "region": "eu", "priority": {"x": 1}}"#,
        r#"{"id": "o", "customer": "c", "amount": 1, "currency": "EUR", "region": "eu", "priority": 3}"#,
        r#"{"id": "o", "customer": "c", "amount": 1, "currency": "EUR", "region": "eu", "priority": true}"#,
        r#"{"id": "", "customer": "c", "amount": 1, "currency": "EUR", "region": 5.5e-9}"#,
        r#"{"id": "o", "customer": "c", "amount": 1, "currency": "EUR", "region": 1e21}"#,
        r#"{}"#,
        "[1, 2]",
        "\"just a string\"",
        "42",
        "null",
        // broken JSON
        "",
        "   \n  ",
        "{\"id\": ",
        "{\"id\": }",
        "{\"id\" \"o\"}",
        "{\"id\": \"o\",}",
        "{\"id\": \"o\" \"x\": 1}",
        "{id: \"o\"}",
        "{\"id\": \"o\"} x",
        "{\"id\": \"o\"}\n\n  }",
        "{\"a\": [1, 2,]}",
        "{\"a\": [1 2]}",
        "{\"a\": tru}",
        "{\"a\": nul",
        "{\"a\": 01}",
        "{\"a\": 1.}",
        "{\"a\": 1.e5}",
        "{\"a\": 1e}",
        "{\"a\": -}",
        "{\"a\": +1}",
        "{\"a\": .5}",
        "{\"a\": 1e999}",
        "{\"a\": \"bad \\x escape\"}",
        "{\"a\": \"tab\tinside\"}",
        "{\"a\": \"lone \\udc00\"}",
        "{\"a\": \"unterminated",
        "{\"a\":\n  {\"b\":\n    [1,\n     2,\n     x]}}",
        // valid, with Unicode, escapes and odd numbers
        "{\"id\": \"ü-1\", \"customer\": \"Zoë \\\"Z\\\" \\u00e9\\ud83d\\ude00\", \"amount\": 3.5, \"currency\": \"CHF\", \"region\": \"südamerika\", \"priority\": \"high\", \"note\": \"tab\\there\\nnew\\u0001\\u007f/\\/\"}",
        "{\"id\": \"日本-1\", \"customer\": \"顧客\", \"amount\": 1000, \"currency\": \"JPY\", \"region\": \"東京\", \"\u{ff61}\": 1, \"\u{1f600}\": 2, \"é\": 3, \"e\": 4, \"E\": 5, \"\": 6}",
        "{\"\\u0069d\": \"esc-1\", \"customer\": \"c\", \"amount\": 2, \"currency\": \"\\u0045UR\", \"region\": \"e\\u0075\", \"priority\": \"\\u0068igh\"}",
        "{\"id\": \"n-1\", \"customer\": \"c\", \"amount\": 1.5e3, \"currency\": \"EUR\", \"region\": \"eu\", \"nums\": [1e-7, 0.00001, 0.000001, 123456789012345678, 18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809, 1e15, 1e16, 1.5e16, 2.5E+2, 1e-400, -0, 3.0e0, 0.1, 0.30000000000000004]}",
        "{\"id\": \"n-2\", \"customer\": \"c\", \"amount\": 92233720368547758, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"n-3\", \"customer\": \"c\", \"amount\": 123.456, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"n-4\", \"customer\": \"c\", \"amount\": 1e300, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"n-5\", \"customer\": \"c\", \"amount\": 0.001, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"n-6\", \"customer\": \"c\", \"amount\": 12345678.905, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"n-7\", \"customer\": \"c\", \"amount\": 1e13, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"d-1\", \"customer\": \"first\", \"customer\": \"second\", \"amount\": 1, \"currency\": \"EUR\", \"region\": \"eu\", \"region\": \"us\"}",
        "\n\t{ \"id\" : \"w-1\" ,\r\n \"customer\" : \"c\" , \"amount\" : 4.20 , \"currency\" : \"EUR\" , \"region\" : \"eu\" }  \n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // Long values in reasons.
    v.push(
        format!(
            r#"{{"id": "o", "customer": "c", "amount": 1, "currency": "{}", "region": "eu"}}"#,
            "A".repeat(100)
        )
        .into_bytes(),
    );
    // Bytes that are not UTF-8, inside a string, and a byte-order mark.
    v.push(b"{\"id\": \"\xff\xfe\", \"customer\": \"c\", \"amount\": 1, \"currency\": \"EUR\", \"region\": \"eu\"}".to_vec());
    v.push(b"\xef\xbb\xbf{\"id\": \"bom\", \"customer\": \"c\", \"amount\": 1, \"currency\": \"EUR\", \"region\": \"eu\"}".to_vec());
    v
}

fn batch() -> Vec<SourceRecord> {
    inputs()
        .into_iter()
        .enumerate()
        .map(|(i, data)| SourceRecord {
            partition_key: format!("pk-{i}"),
            arrival_millis: 1_700_000_000_000 + i as i64,
            data,
        })
        .collect()
}

const SETTINGS: &[(&str, &str)] = &[
    ("defaults", ""),
    (
        "custom settings",
        "    settings:\n      topic_prefix: \"persistent://t/ns/o-\"\n      processed_by: \"wörker \\\"7\\\"\"\n",
    ),
];

/// How a rendering shows a payload.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// The bytes, as they are (the byte-exact golden file).
    Bytes,
    /// The parsed JSON value, numbers as doubles, keys sorted (cross-language).
    Value,
}

/// A JSON value with every number as a double (`-0.0` as `0.0`), so `1500` and `1500.0`,
/// or an integer beyond 2^53 and its nearest double, compare equal.
fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            serde_json::Number::from_f64(if f == 0.0 { 0.0 } else { f })
                .map_or(Value::Null, Value::Number)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

/// The outcome as text: one line per output or failure, in index order.
fn render(o: &BatchOutcome, payload: Payload) -> String {
    let mut lines: BTreeMap<(u32, u8, usize), String> = BTreeMap::new();
    for (n, out) in o.outputs.iter().enumerate() {
        let e = &out.event;
        let dests: Vec<String> = out
            .destinations
            .iter()
            .map(|d| {
                format!(
                    "{}:{}:{}:{}",
                    d.sink.as_deref().unwrap_or("-"),
                    d.topic.as_deref().unwrap_or("-"),
                    d.partition_key.as_deref().unwrap_or("-"),
                    d.explicit_hash_key.as_deref().unwrap_or("-"),
                )
            })
            .collect();
        let body = match payload {
            Payload::Bytes => String::from_utf8(e.payload.clone())
                .unwrap_or_else(|_| format!("(not UTF-8) {:?}", e.payload)),
            Payload::Value => match serde_json::from_slice::<Value>(&e.payload) {
                Ok(v) => normalize(v).to_string(),
                Err(err) => format!(
                    "(not JSON: {err}) {:?}",
                    String::from_utf8_lossy(&e.payload)
                ),
            },
        };
        let mut properties = e.properties.clone();
        if payload == Payload::Value {
            properties.sort();
        }
        lines.insert(
            (out.index, 0, n),
            format!(
                "output {} key={:?} time={:?} props={:?} to=[{}]\n  {}",
                out.index,
                e.key,
                e.event_time_millis,
                properties,
                dests.join(", "),
                body
            ),
        );
    }
    for (n, f) in o.failures.iter().enumerate() {
        let line = match payload {
            Payload::Bytes => format!(
                "failure {} {} {}: {}",
                f.index,
                f.stage,
                f.kind.as_str(),
                f.reason
            ),
            Payload::Value => {
                assert!(
                    !f.reason.trim().is_empty(),
                    "record {}: a rejection without a reason",
                    f.index
                );
                format!("failure {} {} {}", f.index, f.stage, f.kind.as_str())
            }
        };
        lines.insert((f.index, 1, n), line);
    }
    let mut s = String::new();
    for line in lines.values() {
        writeln!(s, "{line}").expect("write to a String");
    }
    s
}

/// Go's runtime refuses to start on a monotonic clock that reads 0 (the sandbox's default):
/// Go guests run with `grants: {clocks: true}` (sdk/go/README.md).
fn grants(component: &Path) -> &'static str {
    let go = component
        .file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s.ends_with("-go"));
    if go {
        "    grants:\n      clocks: true\n"
    } else {
        ""
    }
}

fn run(component: &Path, settings: &str, payload: Payload) -> String {
    let yaml = format!(
        "application: golden\nsource:\n  stream: s\nsinks:\n  p:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: t\n\
         wasm:\n  call_timeout: 60s\nstages:\n  pipeline:\n    component: {}\n{}{settings}",
        component.display(),
        grants(component)
    );
    let config = Config::from_yaml(&yaml, "golden.yaml", PathBuf::from(".")).expect("config");
    let engine = WasmEngine::new(
        WasmEngine::default_cache_dir(),
        config.wasm.memory_limit,
        config.wasm.call_timeout,
    )
    .expect("engine");
    let plan = StagePlan::load(&engine, &config)
        .unwrap_or_else(|e| panic!("{}: cannot load: {e}", component.display()));
    let mut set = plan
        .instantiate()
        .unwrap_or_else(|e| panic!("{}: cannot instantiate: {e}", component.display()));
    let ctx = BatchContext {
        stream_name: "orders".into(),
        shard_id: "shardId-000000000000".into(),
        millis_behind_latest: Some(0),
    };
    let records = batch();
    // The whole batch in one call, then the same records one per call: same answer.
    let whole = render(&set.run(&ctx, &records, false), payload);
    let mut single = String::new();
    for (i, r) in records.iter().enumerate() {
        let mut o = set.run(&ctx, std::slice::from_ref(r), false);
        for x in &mut o.outputs {
            x.index = i as u32;
        }
        for f in &mut o.failures {
            f.index = i as u32;
        }
        single.push_str(&render(&o, payload));
    }
    assert!(
        whole == single,
        "{}: one batch and one record per call disagree\n{}",
        component.display(),
        first_difference(&whole, &single)
    );
    whole
}

fn outputs_of(component: &Path, payload: Payload) -> String {
    let mut all = String::new();
    for (name, settings) in SETTINGS {
        writeln!(all, "## {name}").expect("write to a String");
        all.push_str(&run(component, settings, payload));
    }
    all
}

/// The first line where two renderings differ, for a readable failure.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    for i in 0..w.len().max(g.len()) {
        if w.get(i) != g.get(i) {
            return format!(
                "first difference at line {}:\n  want: {}\n  got:  {}",
                i + 1,
                w.get(i).unwrap_or(&"(end)"),
                g.get(i).unwrap_or(&"(end)")
            );
        }
    }
    "no difference".to_string()
}

#[test]
fn rust_reference_is_byte_exact() {
    let golden = repo().join("tests/golden/guests/orders.out");
    let reference = outputs_of(&component("orders"), Payload::Bytes);
    covers_every_outcome(&reference);
    if std::env::var_os("SHARDLINE_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().expect("parent")).expect("golden dir");
        std::fs::write(&golden, &reference).expect("write golden file");
    } else {
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with SHARDLINE_BLESS=1 to create it)",
                golden.display()
            )
        });
        assert!(
            want == reference,
            "the Rust example no longer matches {} (SHARDLINE_BLESS=1 rewrites it after a deliberate change)\n{}",
            golden.display(),
            first_difference(&want, &reference)
        );
    }
    let handwritten = outputs_of(&component("orders-handwritten"), Payload::Bytes);
    assert!(
        handwritten == reference,
        "the hand-written guest and the SDK guest differ\n{}",
        first_difference(&reference, &handwritten)
    );
}

#[test]
fn every_language_conforms_to_the_rust_reference() {
    // Resolve every component first: one missing one is named with all the others.
    let components: Vec<(&str, PathBuf)> = EXAMPLES
        .iter()
        .map(|(language, file)| (*language, component(file)))
        .collect();
    let reference = outputs_of(&components[0].1, Payload::Value);
    let mut mismatches = Vec::new();
    for (language, path) in &components[1..] {
        let got = outputs_of(path, Payload::Value);
        if got != reference {
            mismatches.push(format!(
                "{language} ({}) differs from the Rust example: {}",
                path.display(),
                first_difference(&reference, &got)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

/// Guards the input batch against edits that would drop a kind of case.
fn covers_every_outcome(reference: &str) {
    assert!(
        !reference.contains("failure 0 "),
        "the first record is a valid order"
    );
    for needle in [
        "orders-priority",
        "orders-apac",
        "südamerika",
        " deserialize rejected: invalid JSON",
        " deserialize rejected: amount must be",
        " deserialize rejected: currency must be",
        " transform rejected: amount ",
        "wörker",
        "\"amount_cents\":13,",
        "\"amount_cents\":100,",
    ] {
        assert!(
            reference.contains(needle),
            "{needle:?} is in the Rust example's output"
        );
    }
}
