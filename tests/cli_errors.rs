//! Errors a user can cause, seen from the command line: a non-zero exit, a message that
//! names the key, the file or the component and what it lacks, and nothing started.

mod support;

use std::process::Output;

use support::*;

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
    std::fs::write(dir.join("junk.wasm"), b"not wasm at all").expect("write");
    let extra = format!(
        "stages:\n  route:\n    component: {}\n",
        dir.join("junk.wasm").display()
    );
    let config = write_config(&stack_config("app", "s", "t", &extra));
    let o = shardline(&["validate", "--config", config.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("junk.wasm is not a valid Wasm component"),
        "{}",
        stderr(&o)
    );
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
