//! Errors a user can cause, seen from the command line: a non-zero exit, a message that
//! names the key, the file or the component and what it lacks, and nothing started.

use std::process::Output;

use crate::support::*;

fn shardline(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args(args)
        .env("SHARDLINE_LOG", "warn")
        .output()
        .expect("run shardline")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_config_exits_2_and_names_the_key_and_line() {
    let config = write_config(
        &stack_config("app", "s", "t", "").replace("  stream: s", "  stream: s\n  strem: typo"),
    );
    for cmd in ["validate", "run"] {
        let o = shardline(&[cmd, "--config", config.to_str().expect("utf-8 path")]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains("source: unknown field `strem`"), "{cmd}: {e}");
        assert!(e.contains("at line 4"), "{cmd}: {e}");
    }
}

#[test]
fn missing_config_file_is_named() {
    let o = shardline(&["validate", "--config", "/nonexistent/shardline.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read config file /nonexistent/shardline.yaml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_component_names_the_stage_key() {
    let extra = "stages:\n  transform:\n    component: nowhere/transform.wasm\n";
    let config = write_config(&stack_config("app", "s", "t", extra));
    let o = shardline(&["validate", "--config", config.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("stages.transform.component: component file"),
        "{e}"
    );
    assert!(e.contains("nowhere/transform.wasm does not exist"), "{e}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = std::env::temp_dir().join(unique("not-wasm"));
    std::fs::create_dir_all(&dir).expect("dir");
    for (file, bytes, what) in [
        (
            "junk.wasm",
            &b"not wasm at all"[..],
            "it is a text file, not WebAssembly",
        ),
        (
            "core.wasm",
            &b"\0asm\x01\0\0\0"[..],
            "it is a core Wasm module, not a component",
        ),
    ] {
        std::fs::write(dir.join(file), bytes).expect("write");
        let extra = format!(
            "stages:\n  route:\n    component: {}\n",
            dir.join(file).display()
        );
        let config = write_config(&stack_config("app", "s", "t", &extra));
        let o = shardline(&["validate", "--config", config.to_str().expect("utf-8 path")]);
        assert_eq!(o.status.code(), Some(2));
        let err = stderr(&o);
        // One line that says what the file is; no byte lists spread over lines.
        let line = err
            .lines()
            .find(|l| l.contains(&format!("{file} is not a valid Wasm component")))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(line.contains(what), "{line}");
        assert!(!err.contains("0x61") && !err.contains("expected="), "{err}");
    }
}

/// The passthrough guest exports only `processor`: using it as a transform stage must fail
/// before anything starts — in particular no lease table is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_lacking_an_export_starts_nothing() {
    let app = unique("lacking");
    let extra = format!(
        "stages:\n  transform:\n    component: {}\n",
        guest("passthrough").display()
    );
    let config = write_config(&stack_config(
        &app,
        "no-such-stream",
        "persistent://public/default/x",
        &extra,
    ));
    let path = config.to_str().expect("utf-8 path").to_string();
    for cmd in ["validate", "run"] {
        let o = tokio::task::spawn_blocking({
            let path = path.clone();
            move || shardline(&[cmd, "--config", &path])
        })
        .await
        .expect("join");
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("component passthrough")
                && e.contains("does not export shardline:connector/transformer@0.1.0, which stage transform needs")
                && e.contains("it exports: shardline:connector/processor@0.1.0"),
            "{cmd}: {e}"
        );
    }
    assert!(
        !table_exists(&app).await,
        "a lease table was created although nothing should start"
    );
}

#[test]
fn valid_config_validates_and_lists_components() {
    let extra = format!(
        "stages:\n  pipeline:\n    component: {}\n",
        guest("orders").display()
    );
    let config = write_config(&stack_config("app", "s", "t", &extra));
    let o = shardline(&["validate", "--config", config.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("valid"), "{out}");
    assert!(out.contains("pipeline: orders"), "{out}");
    assert!(out.contains("shardline:connector/processor@0.1.0"), "{out}");
}

/// Topic names that cannot work are refused by `validate` (and `run`), naming the key:
/// a sink's default topic and the dead-letter topic.
#[test]
fn topic_names_that_cannot_work_are_refused() {
    let cases = [
        (
            stack_config("app", "s", "persistnt://public/default/orders", ""),
            "sinks.pulsar.pulsar.topic: \"persistnt://public/default/orders\" is not a topic name",
        ),
        (
            stack_config(
                "app",
                "s",
                "t",
                "errors:\n  policy: dead_letter\n  dead_letter:\n    topic: public/dead\n",
            ),
            "errors.dead_letter.topic: \"public/dead\" is not a topic name",
        ),
    ];
    for (text, says) in cases {
        let config = write_config(&text);
        for cmd in ["validate", "run"] {
            let o = shardline(&[cmd, "--config", config.to_str().expect("utf-8 path")]);
            assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
            assert!(stderr(&o).contains(says), "{cmd}: {}", stderr(&o));
        }
    }
}

/// `validate --check-services` checks, reading only, that the source stream exists and
/// that every Pulsar topic's namespace does; without the flag it touches no service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_services_names_a_missing_stream_and_namespace() {
    let stream = unique("svc");
    create_stream(&stream, 1).await;
    let missing_ns = unique("no-such-ns");
    let run = |text: String, args: &'static [&'static str]| async move {
        let config = write_config(&text);
        tokio::task::spawn_blocking(move || {
            let path = config.to_str().expect("utf-8 path").to_string();
            let mut all = vec!["validate", "--config", &path];
            all.extend_from_slice(args);
            shardline(&all)
        })
        .await
        .expect("join")
    };
    let good = stack_config("svc-app", &stream, "persistent://public/default/svc", "");
    let o = run(good.clone(), &["--check-services"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("streams and Pulsar namespaces exist"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    let bad = stack_config(
        "svc-app",
        "no-such-stream",
        &format!("persistent://public/{missing_ns}/orders"),
        "",
    );
    let o = run(bad.clone(), &[]).await;
    assert_eq!(o.status.code(), Some(0), "without the flag: {}", stderr(&o));
    let o = run(bad, &["--check-services"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("source.stream: Kinesis stream \"no-such-stream\" does not exist"),
        "{e}"
    );
    assert!(
        e.contains("sinks.pulsar.pulsar.topic")
            && e.contains(&format!("namespace public/{missing_ns}"))
            && e.contains(&format!(
                "pulsar-admin namespaces create public/{missing_ns}"
            )),
        "{e}"
    );
}

/// `run` against a stream that does not exist stops before it creates the lease table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_a_missing_stream_leaves_no_lease_table() {
    let app = unique("nostream-app");
    let config = write_config(&stack_config(
        &app,
        &unique("no-such-stream"),
        "persistent://public/default/x",
        "",
    ));
    let o = tokio::task::spawn_blocking(move || {
        shardline(&["run", "--config", config.to_str().expect("utf-8 path")])
    })
    .await
    .expect("join");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(
        !table_exists(&app).await,
        "a lease table was created for a stream that does not exist"
    );
}
