//! Every language's orders example gives the same output for the same batch.
//!
//! One batch (valid orders of every region, high-priority ones, invalid ones, odd JSON,
//! Unicode, edge numbers) goes through each example component (`guest-examples/*-orders`,
//! built by `guest-examples/build.sh` into `target/guests/` or `$SHARDLINE_GUESTS_OUT`),
//! with default and with custom settings, through the host's own stage code. The output of
//! the Rust example is pinned in `tests/golden/guests/orders.out` (run with
//! `SHARDLINE_BLESS=1` to rewrite it after a deliberate change); every other language must
//! match it line for line. A missing component fails the test: nothing is skipped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use shardline::config::Config;
use shardline::wasm::bindings::{BatchContext, SourceRecord};
use shardline::wasm::{BatchOutcome, StagePlan, WasmEngine};

/// The reference (pinned by the golden file) first, then the ports that must match it.
const EXAMPLES: &[(&str, &str)] = &[
    ("rust", "orders"),
    ("c", "orders-c"),
    ("python", "orders-python"),
    ("js", "orders-js"),
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

/// The batch: every rule of `guest-examples/rust-orders/src/orders.rs`, and JSON that a
/// naive port would parse, number or write differently from serde_json.
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
        r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": "eur", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": "EURO", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": "ÉUR", "region": "eu"}"#,
        r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": "EUR", "region": ""}"#,
        r#"{"id": 7, "customer": "c-7", "amount": 1, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o", "customer": null, "amount": 1, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o", "customer": false, "amount": 1, "currency": "EUR", "region": "eu"}"#,
        r#"{"id": "o", "customer": "c", "amount": 1, "currency": "EUR", "region": "eu", "priority": {"x": 1}}"#,
        r#"{"id": "o", "customer": "c", "amount": 1, "currency": "EUR", "region": "eu", "priority": 3}"#,
        r#"{"id": "", "customer": "c", "amount": 1, "currency": "EUR", "region": 5.5e-9}"#,
        r#"{"id": "o", "customer": "c", "amount": 1, "currency": "EUR", "region": 1e21}"#,
        r#"{}"#,
        "[1, 2]",
        "\"just a string\"",
        "42",
        "null",
        // odd JSON
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
        "{\"a\": \"half \\ud800 pair\"}",
        "{\"a\": \"unterminated",
        "{\"a\":\n  {\"b\":\n    [1,\n     2,\n     x]}}",
        // valid, with Unicode, escapes and odd numbers
        "{\"id\": \"ü-1\", \"customer\": \"Zoë \\\"Z\\\" \\u00e9\\ud83d\\ude00\", \"amount\": 3.5, \"currency\": \"CHF\", \"region\": \"südamerika\", \"priority\": \"high\", \"note\": \"tab\\there\\nnew\\u0001\\u007f/\\/\"}",
        "{\"id\": \"日本-1\", \"customer\": \"顧客\", \"amount\": 1000, \"currency\": \"JPY\", \"region\": \"東京\", \"\u{ff61}\": 1, \"\u{1f600}\": 2, \"é\": 3, \"e\": 4, \"E\": 5, \"\": 6}",
        "{\"id\": \"n-1\", \"customer\": \"c\", \"amount\": 1.5e3, \"currency\": \"EUR\", \"region\": \"eu\", \"nums\": [1e-7, 0.00001, 0.000001, 123456789012345678, 18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809, 1e15, 1e16, 1.5e16, 2.5E+2, 1e-400, -0, 3.0e0, 0.1, 0.30000000000000004]}",
        "{\"id\": \"n-2\", \"customer\": \"c\", \"amount\": 92233720368547758, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"n-3\", \"customer\": \"c\", \"amount\": 92233720368547759, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"n-4\", \"customer\": \"c\", \"amount\": 1e300, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"n-5\", \"customer\": \"c\", \"amount\": 0.001, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"n-6\", \"customer\": \"c\", \"amount\": 12345678.905, \"currency\": \"EUR\", \"region\": \"eu\"}",
        "{\"id\": \"d-1\", \"customer\": \"first\", \"customer\": \"second\", \"amount\": 1, \"currency\": \"EUR\", \"region\": \"eu\", \"region\": \"us\"}",
        "\n\t{ \"id\" : \"w-1\" ,\r\n \"customer\" : \"c\" , \"amount\" : 4.20 , \"currency\" : \"EUR\" , \"region\" : \"eu\" }  \n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    // Long values are cut in reasons (in Rust's `{:?}` form).
    v.push(
        format!(
            r#"{{"id": "o", "customer": "c", "amount": 1, "currency": "{}", "region": "eu"}}"#,
            "A".repeat(100)
        )
        .into_bytes(),
    );
    v.push(
        format!(
            r#"{{"id": "o", "customer": "c", "amount": 1, "currency": "{}\"\\\\\t", "region": "eu"}}"#,
            "é".repeat(38)
        )
        .into_bytes(),
    );
    // Bytes that are not UTF-8, inside and outside a string.
    v.push(b"{\"id\": \"\xff\xfe\", \"customer\": \"c\"}".to_vec());
    v.push(b"\xef\xbb\xbf{\"id\": \"bom\"}".to_vec());
    // Deep nesting: serde_json's recursion limit.
    v.push(
        format!(
            r#"{{"id": "deep", "customer": "c", "amount": 1, "currency": "EUR", "region": "eu", "x": {}1{}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        )
        .into_bytes(),
    );
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

/// The outcome as text, one line per output or failure, payloads escaped so the golden
/// file stays readable and every byte shows.
fn render(o: &BatchOutcome) -> String {
    let mut s = String::new();
    for out in &o.outputs {
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
        writeln!(
            s,
            "output {} key={:?} time={:?} props={:?} to=[{}]\n  {}",
            out.index,
            e.key,
            e.event_time_millis,
            e.properties,
            dests.join(", "),
            String::from_utf8(e.payload.clone())
                .unwrap_or_else(|_| format!("(not UTF-8) {:?}", e.payload)),
        )
        .expect("write to a String");
    }
    for f in &o.failures {
        writeln!(
            s,
            "failure {} {} {}: {}",
            f.index,
            f.stage,
            f.kind.as_str(),
            f.reason
        )
        .expect("write to a String");
    }
    s
}

const SETTINGS: &[(&str, &str)] = &[
    ("defaults", ""),
    (
        "custom settings",
        "    settings:\n      topic_prefix: \"persistent://t/ns/o-\"\n      processed_by: \"wörker \\\"7\\\"\"\n",
    ),
];

fn run(component: &Path, settings: &str) -> String {
    let yaml = format!(
        "application: golden\nsource:\n  stream: s\nsinks:\n  p:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: t\n\
         wasm:\n  call_timeout: 60s\nstages:\n  pipeline:\n    component: {}\n{settings}",
        component.display()
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
    let mut text = String::new();
    // The whole batch in one call, then the same records one per call: same answer.
    let whole = render(&set.run(&ctx, &records, false));
    let mut single = String::new();
    for (i, r) in records.iter().enumerate() {
        let o = set.run(&ctx, std::slice::from_ref(r), false);
        let mut o = o;
        for x in &mut o.outputs {
            x.index = i as u32;
        }
        for f in &mut o.failures {
            f.index = i as u32;
        }
        single.push_str(&render(&o));
    }
    let by_index = |t: &str| {
        let mut lines: Vec<String> = Vec::new();
        for l in t.lines() {
            if l.starts_with("  ") {
                let last = lines.last_mut().expect("payload follows its output line");
                last.push('\n');
                last.push_str(l);
            } else {
                lines.push(l.to_string());
            }
        }
        lines.sort();
        lines
    };
    assert_eq!(
        by_index(&whole),
        by_index(&single),
        "{}: one batch and one record per call disagree",
        component.display()
    );
    text.push_str(&whole);
    text
}

fn outputs_of(component: &Path) -> String {
    let mut all = String::new();
    for (name, settings) in SETTINGS {
        writeln!(all, "## {name}").expect("write to a String");
        all.push_str(&run(component, settings));
    }
    all
}

/// The first line where two renderings differ, with context, for a readable failure.
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
fn every_language_gives_the_same_output_as_the_rust_example() {
    let dir = guests_dir();
    let missing: Vec<String> = EXAMPLES
        .iter()
        .map(|(_, file)| dir.join(format!("{file}.wasm")))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "guest components missing: {}\nbuild them with guest-examples/build.sh (dev/setup installs the toolchains)",
        missing.join(", ")
    );

    let golden = repo().join("tests/golden/guests/orders.out");
    let reference = outputs_of(&dir.join(format!("{}.wasm", EXAMPLES[0].1)));
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

    let mut mismatches = Vec::new();
    for (language, file) in &EXAMPLES[1..] {
        let got = outputs_of(&dir.join(format!("{file}.wasm")));
        if got != reference {
            mismatches.push(format!(
                "{language} ({file}.wasm) differs from the Rust example: {}",
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
        " deserialize rejected: invalid JSON at line ",
        " deserialize rejected: invalid order: ",
        " transform rejected: amount ",
        "recursion limit exceeded",
        "invalid unicode code point",
        "wörker",
    ] {
        assert!(
            reference.contains(needle),
            "{needle:?} is in the Rust example's output"
        );
    }
}
