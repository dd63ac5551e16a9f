//! Guests written on the SDKs (`sdk/`), against the local stack.
//!
//! - `rejections_from_every_language_reach_the_dead_letter_topic`: the orders example in
//!   each of the five languages runs as the pipeline with `errors.policy: dead_letter`; its
//!   rejections (at `deserialize` and at `transform`) arrive on the dead-letter topic with
//!   the record's bytes, stream, shard and sequence number, the stage and the guest's reason,
//!   while the valid orders arrive on their topics.
//! - `every_scaffold_builds_checks_and_carries_records`: `shardline new guest --lang L` for
//!   each language, the project's own `build.sh`, `shardline check-guest --world pipeline`,
//!   `shardline try` on the project's sample (as its README says), then records end to
//!   end (a dropped `ping`, a rejected record, two routed events). Each
//!   language's build time is printed (`--nocapture`).
//!
//! Needs the stack (`eval "$(dev/stack env)"`) and the guests (`guest-examples/build.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

const LONG: Duration = Duration::from_secs(240);

const LANGUAGES: &[(&str, &str)] = &[
    ("rust", "orders"),
    ("c", "orders-c"),
    ("python", "orders-python"),
    ("js", "orders-js"),
    ("go", "orders-go"),
];

/// Go's runtime refuses to start on a monotonic clock that reads 0 (the sandbox's default):
/// Go guests are granted the clocks (sdk/go/README.md).
fn go_grants(language: &str) -> &'static str {
    if language == "go" {
        "    grants:\n      clocks: true\n"
    } else {
        ""
    }
}

/// What [`run_pipeline`] saw.
struct Run {
    /// The topics, `<prefix><suffix>` for each suffix asked for.
    topics: Vec<String>,
    /// (key, topic) of every message on them, sorted.
    routed: Vec<(String, String)>,
    /// The dead letters.
    dead: Vec<Received>,
}

/// Runs `wasm` as the pipeline on `stream` (setting `topic_prefix`, dead letters on), until
/// `n_routed` messages arrived on the `<prefix><suffix>` topics and `n_dead` on the
/// dead-letter topic; then stops the worker, which must exit cleanly.
async fn run_pipeline(
    language: &str,
    stream: &str,
    wasm: &Path,
    suffixes: &[&str],
    n_routed: usize,
    n_dead: usize,
) -> Run {
    let prefix = format!(
        "persistent://public/default/{}-",
        unique(&format!("sdk-{language}"))
    );
    let topics: Vec<String> = suffixes.iter().map(|s| format!("{prefix}{s}")).collect();
    let dlq = format!("{prefix}dead");
    let mut main = Collector::start(&topics).await;
    let mut dead = Collector::start(std::slice::from_ref(&dlq)).await;
    let extra = format!(
        "stages:\n  pipeline:\n    component: {}\n    settings:\n      topic_prefix: \"{prefix}\"\n{}\
         errors:\n  policy: dead_letter\n  dead_letter:\n    topic: {dlq}\n",
        wasm.display(),
        go_grants(language)
    );
    let config = write_config(&stack_config(
        &unique("sdk-app"),
        stream,
        &format!("{prefix}default"),
        &extra,
    ));
    let mut host = Host::start(&config);
    let got = main.wait_for(n_routed, LONG).await;
    let dead = dead.wait_for(n_dead, LONG).await;
    host.signal("TERM");
    assert_eq!(
        host.wait_exit(LONG).await,
        Some(0),
        "{language}: log:\n{}",
        host.log()
    );
    let mut routed: Vec<(String, String)> = got
        .iter()
        .map(|m| (m.key.clone().unwrap_or_default(), m.topic.clone()))
        .collect();
    routed.sort();
    Run {
        topics,
        routed,
        dead,
    }
}

/// Runs the orders example of one language on a stream of six records; checks what was
/// published and what was dead-lettered.
async fn dead_letters_of(language: &str, file: &str) {
    let stream = unique(&format!("sdk-dlq-{language}"));
    create_stream(&stream, 1).await;
    let valid = |id: &str, priority: &str| {
        format!(
            r#"{{"id":"{id}","customer":"c","amount":2.5,"currency":"EUR","region":"eu","priority":"{priority}"}}"#
        )
    };
    let records: Vec<(String, Vec<u8>)> = [
        valid("o-1", "low"),
        r#"{"id": "#.to_string(),
        valid("o-2", "high"),
        r#"{"id":"o-3","customer":"c","amount":1,"region":"eu"}"#.to_string(),
        r#"{"id":"o-4","customer":"c","amount":1e300,"currency":"EUR","region":"eu"}"#.to_string(),
        r#"{"id":"o-5","customer":"c","amount":0,"currency":"EUR","region":"eu"}"#.to_string(),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, data)| (format!("k{i}"), data.into_bytes()))
    .collect();
    let puts = put_records(&stream, &records).await;

    let Run {
        topics,
        routed,
        dead: dl,
    } = run_pipeline(language, &stream, &guest(file), &["eu", "priority"], 3, 3).await;
    assert_eq!(
        routed,
        [
            ("o-1".to_string(), topics[0].clone()),
            ("o-2".to_string(), topics[0].clone()),
            ("o-2".to_string(), topics[1].clone()),
        ],
        "{language}: valid orders routed by region and priority"
    );
    for (index, stage) in [(1, "deserialize"), (3, "deserialize"), (4, "transform")] {
        let put = &puts[index];
        let m = dl
            .iter()
            .find(|m| m.payload == put.data)
            .unwrap_or_else(|| panic!("{language}: record {index} was not dead-lettered: {dl:?}"));
        assert_eq!(
            m.prop("shardline.error.kind"),
            "rejected",
            "{language} #{index}"
        );
        assert_eq!(
            m.prop("shardline.error.stage"),
            stage,
            "{language} #{index}"
        );
        assert_eq!(
            m.prop("shardline.error.component"),
            file,
            "{language} #{index}"
        );
        assert!(
            !m.prop("shardline.error.reason").trim().is_empty(),
            "{language} #{index}: a reason"
        );
        assert_eq!(
            m.prop("shardline.error.stream"),
            stream,
            "{language} #{index}"
        );
        assert_eq!(
            m.prop("shardline.error.shard"),
            put.shard,
            "{language} #{index}"
        );
        assert_eq!(
            m.prop("shardline.error.sequence.number"),
            put.sequence,
            "{language} #{index}"
        );
        assert_eq!(
            m.key.as_deref(),
            Some(put.key.as_str()),
            "{language} #{index}"
        );
    }
    eprintln!(
        "{language}: dead-letter reasons: {:?}",
        dl.iter()
            .map(|m| m.prop("shardline.error.reason").to_string())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejections_from_every_language_reach_the_dead_letter_topic() {
    let runs = LANGUAGES
        .iter()
        .map(|(language, file)| tokio::spawn(dead_letters_of(language, file)));
    let mut failures = Vec::new();
    for (run, (language, _)) in futures::future::join_all(runs)
        .await
        .into_iter()
        .zip(LANGUAGES)
    {
        if let Err(e) = run {
            failures.push(format!("{language}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `shardline new guest --lang LANG DIR`, then the project's build.sh; returns the component.
fn scaffold_and_build(language: &str, root: &Path) -> (PathBuf, Duration) {
    let name = format!("hello-{language}");
    let dir = root.join(&name);
    let out = Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args(["new", "guest", "--lang", language])
        .arg(&dir)
        .output()
        .expect("run shardline new");
    assert!(
        out.status.success(),
        "{language}: new guest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    let mut build = Command::new(dir.join("build.sh"));
    build.env("SHARDLINE", env!("CARGO_BIN_EXE_shardline"));
    if language == "rust" {
        // Share compiled dependencies with the rest of the build (the project is standalone).
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target"));
        build.env("CARGO_TARGET_DIR", target.join("scaffold"));
    }
    let out = build.output().expect("run build.sh");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{language}: build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = dir.join(format!("{name}.wasm"));
    let check = Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args(["check-guest", "--world", "pipeline"])
        .arg(&wasm)
        .output()
        .expect("run check-guest");
    assert!(
        check.status.success(),
        "{language}: check-guest:\n{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // What the README says next: `shardline try` on the sample, no service needed.
    let tried = Command::new(env!("CARGO_BIN_EXE_shardline"))
        .current_dir(&dir)
        .args(["try", &format!("{name}.wasm"), "--config", "config.yaml"])
        .args(["--input", "sample.txt", "--format", "lines"])
        .output()
        .expect("run shardline try");
    // The report and its summary line go to stdout (stderr with `--json`).
    let summary = String::from_utf8_lossy(&tried.stdout);
    assert_eq!(
        tried.status.code(),
        Some(1),
        "{language}: try exits 1 for the one rejection:\n{summary}\n{}",
        String::from_utf8_lossy(&tried.stderr)
    );
    assert!(
        summary.contains("2 ok (2 messages), 1 filtered out, 1 rejected, 0 failed"),
        "{language}: {summary}"
    );
    (wasm, took)
}

async fn carries_records(language: &str, wasm: &Path) {
    let stream = unique(&format!("scaffold-{language}"));
    create_stream(&stream, 1).await;
    let records: Vec<(String, Vec<u8>)> = [
        r#"{"type":"click","n":1}"#,
        r#"{"type":"ping"}"#,
        r#"{"no":"type"}"#,
        r#"{"type":"view","n":2}"#,
    ]
    .iter()
    .enumerate()
    .map(|(i, d)| (format!("user-{i}"), d.as_bytes().to_vec()))
    .collect();
    let puts = put_records(&stream, &records).await;
    let Run {
        topics,
        routed,
        dead: dl,
    } = run_pipeline(language, &stream, wasm, &["click", "view"], 2, 1).await;
    assert_eq!(
        routed,
        [
            ("user-0".to_string(), topics[0].clone()),
            ("user-3".to_string(), topics[1].clone())
        ],
        "{language}"
    );
    assert_eq!(
        dl[0].payload, puts[2].data,
        "{language}: the record without a type"
    );
    assert_eq!(
        dl[0].prop("shardline.error.stage"),
        "deserialize",
        "{language}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_scaffold_builds_checks_and_carries_records() {
    let root = std::env::temp_dir().join(unique("scaffolds"));
    std::fs::create_dir_all(&root).expect("temp dir");
    let mut built = Vec::new();
    // Builds one after the other (they compete for the same cores), then the runs together.
    for language in ["rust", "python", "js", "go", "c"] {
        let (wasm, took) = scaffold_and_build(language, &root);
        eprintln!("scaffold {language}: built in {:.1} s", took.as_secs_f64());
        built.push((language, wasm));
    }
    let runs: Vec<_> = built
        .iter()
        .map(|(language, wasm)| {
            let (language, wasm) = (language.to_string(), wasm.clone());
            tokio::spawn(async move { carries_records(&language, &wasm).await })
        })
        .collect();
    let mut failures = Vec::new();
    for (run, (language, _)) in futures::future::join_all(runs)
        .await
        .into_iter()
        .zip(&built)
    {
        if let Err(e) = run {
            failures.push(format!("{language}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(&root).ok();
}
