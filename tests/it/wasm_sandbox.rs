//! The Wasm sandbox, without any service: a guest gets no environment, files or network;
//! a runaway call is interrupted at `wasm.call_timeout`; an instance that grows past
//! `wasm.memory_limit` traps; a trap names the record and the instance is replaced so the
//! next records go on. Uses the test guest `tests/guests/passthrough`.

use std::path::PathBuf;

use shardline::config::Config;
use shardline::wasm::bindings::{BatchContext, SourceRecord};
use shardline::wasm::{BatchOutcome, FailureKind, StagePlan, StageSet, WasmEngine};

fn stages(settings: &str, wasm: &str) -> StageSet {
    let yaml = format!(
        "application: t\nsource:\n  stream: s\nsinks:\n  p:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: t\n\
         wasm:\n{wasm}stages:\n  pipeline:\n    component: {}\n    settings:\n{settings}",
        crate::support::guest("passthrough").display()
    );
    let config = Config::from_yaml(&yaml, "sandbox.yaml", PathBuf::from(".")).expect("config");
    let engine =
        WasmEngine::new(None, config.wasm.memory_limit, config.wasm.call_timeout).expect("engine");
    StagePlan::load(&engine, &config)
        .expect("load")
        .instantiate()
        .expect("instantiate")
}

fn ctx() -> BatchContext {
    BatchContext {
        stream_name: "s".into(),
        shard_id: "shardId-000000000000".into(),
        millis_behind_latest: None,
    }
}

fn batch(payloads: &[&str]) -> Vec<SourceRecord> {
    payloads
        .iter()
        .map(|p| SourceRecord {
            partition_key: "k".into(),
            arrival_millis: 0,
            data: p.as_bytes().to_vec(),
        })
        .collect()
}

fn payloads(o: &BatchOutcome) -> Vec<String> {
    o.outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.event.payload).into_owned())
        .collect()
}

#[test]
fn guests_get_no_environment_files_or_network() {
    // The host process has an environment, a file system and a Pulsar port: none of them
    // may be visible to the guest.
    assert!(std::env::vars().count() > 0);
    let mut s = stages("      probe_on: PROBE\n", "  call_timeout: 5s\n");
    let o = s.run(&ctx(), &batch(&["PROBE"]), true);
    assert!(o.failures.is_empty(), "{:?}", o.failures);
    let props: std::collections::HashMap<_, _> =
        o.outputs[0].event.properties.iter().cloned().collect();
    assert_eq!(props["probe.env"], "0", "no environment variables");
    assert!(
        props["probe.fs"].starts_with("err"),
        "no file system: {}",
        props["probe.fs"]
    );
    assert!(
        props["probe.net"].starts_with("err"),
        "no network: {}",
        props["probe.net"]
    );
    assert_eq!(props["probe.clock"], "0", "clocks read 0 unless granted");
}

/// The probe's properties for one record through a fresh instance.
fn probe(settings: &str) -> std::collections::HashMap<String, String> {
    let mut s = stages(settings, "  call_timeout: 5s\n");
    let o = s.run(&ctx(), &batch(&["PROBE"]), true);
    assert!(o.failures.is_empty(), "{:?}", o.failures);
    o.outputs[0].event.properties.iter().cloned().collect()
}

#[test]
fn a_guest_sees_exactly_what_its_grants_give() {
    let dir = std::env::temp_dir().join(crate::support::unique("granted"));
    std::fs::create_dir_all(&dir).expect("dir");
    for f in ["a", "b", "c"] {
        std::fs::write(dir.join(f), f).expect("file");
    }
    let props = probe(&format!(
        "      probe_on: PROBE\n      probe_dir: {dir}\n    grants:\n      env:\n        GREETING: hello\n        N: 2\n      read_only_dirs: [{dir}]\n      clocks: true\n",
        dir = dir.display()
    ));
    assert_eq!(props["probe.env"], "2", "exactly the granted variables");
    assert_eq!(props["probe.dir"], "ok: 3 entries", "the granted directory");
    assert!(
        props["probe.fs"].starts_with("err"),
        "nothing outside it: {}",
        props["probe.fs"]
    );
    assert!(props["probe.net"].starts_with("err"), "never the network");
    let clock: u64 = props["probe.clock"].parse().expect("seconds");
    assert!(clock > 1_700_000_000, "the host's clock: {clock}");

    // The same probe without grants sees none of it.
    let props = probe(&format!(
        "      probe_on: PROBE\n      probe_dir: {}\n",
        dir.display()
    ));
    assert_eq!(props["probe.env"], "0");
    assert!(
        props["probe.dir"].starts_with("err"),
        "{}",
        props["probe.dir"]
    );
    assert_eq!(props["probe.clock"], "0");
}

#[test]
fn random_is_a_fixed_sequence_unless_granted() {
    let fixed = "      probe_on: PROBE\n";
    assert_eq!(
        probe(fixed)["probe.random"],
        probe(fixed)["probe.random"],
        "two instances without the grant see the same bytes"
    );
    let granted = "      probe_on: PROBE\n    grants:\n      random: true\n";
    assert_ne!(
        probe(granted)["probe.random"],
        probe(granted)["probe.random"],
        "with the grant each instance is seeded by the host"
    );
}

#[test]
fn a_component_that_imports_no_wasi_gets_none() {
    let dir = std::env::temp_dir().join(crate::support::unique("no-wasi"));
    std::fs::create_dir_all(&dir).expect("dir");
    let empty = dir.join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\x00\x01\x00").expect("an empty component");
    let engine =
        WasmEngine::new(None, 64 << 20, std::time::Duration::from_secs(5)).expect("engine");
    let info = engine.load(&empty, "empty").expect("loads");
    assert!(
        !info.wasi,
        "no WASI linked for a component that imports none"
    );
    let info = engine
        .load(&crate::support::guest("passthrough"), "passthrough")
        .expect("loads");
    assert!(info.wasi, "a wasm32-wasip2 guest imports WASI");
}

#[test]
fn a_runaway_call_is_interrupted_and_the_rest_goes_on() {
    let mut s = stages("      loop_on: SPIN\n", "  call_timeout: 200ms\n");
    let started = std::time::Instant::now();
    let o = s.run(&ctx(), &batch(&["a", "SPIN", "b"]), false);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "deadline enforced"
    );
    assert_eq!(
        payloads(&o),
        ["a", "b"],
        "records around the runaway one are processed"
    );
    assert_eq!(o.failures.len(), 1);
    assert_eq!(o.failures[0].index, 1);
    assert_eq!(o.failures[0].kind, FailureKind::Timeout);
    assert!(
        o.failures[0].reason.contains("call timeout"),
        "{}",
        o.failures[0].reason
    );
}

#[test]
fn memory_beyond_the_cap_traps_and_the_instance_is_replaced() {
    let mut s = stages("      alloc_on: HOG\n", "  memory_limit: 16MiB\n");
    let o = s.run(&ctx(), &batch(&["x", "HOG", "y"]), false);
    assert_eq!(payloads(&o), ["x", "y"]);
    assert_eq!(o.failures.len(), 1);
    assert_eq!(
        o.failures[0].kind,
        FailureKind::Memory,
        "{}",
        o.failures[0].reason
    );
    assert!(
        o.failures[0].reason.contains("wasm.memory_limit"),
        "{}",
        o.failures[0].reason
    );
    // The replaced instance works.
    let again = s.run(&ctx(), &batch(&["z"]), false);
    assert_eq!(payloads(&again), ["z"]);
}

#[test]
fn a_trap_names_the_record_and_only_that_record_fails() {
    let mut s = stages("      panic_on: POISON\n", "  call_timeout: 5s\n");
    let o = s.run(&ctx(), &batch(&["1", "2", "POISON", "4"]), false);
    assert_eq!(payloads(&o), ["1", "2", "4"]);
    assert_eq!(o.failures.len(), 1);
    let f = &o.failures[0];
    assert_eq!((f.index, f.kind), (2, FailureKind::Trap));
    assert!(
        f.reason.contains("poison record at index 0"),
        "the guest's panic text: {}",
        f.reason
    );
    assert_eq!(f.component, "passthrough");
}

#[test]
fn with_stop_at_first_failure_nothing_after_the_failure_is_processed() {
    let mut s = stages("      panic_on: POISON\n", "  call_timeout: 5s\n");
    let o = s.run(&ctx(), &batch(&["1", "POISON", "3"]), true);
    assert_eq!(payloads(&o), ["1"]);
    assert_eq!(o.failures.len(), 1);
    assert_eq!(o.failures[0].index, 1);
}

#[test]
fn compiled_components_are_cached_and_a_corrupt_cache_entry_is_rebuilt() {
    let cache = std::env::temp_dir().join(crate::support::unique("component-cache"));
    let engine = WasmEngine::new(
        Some(cache.clone()),
        64 << 20,
        std::time::Duration::from_secs(5),
    )
    .expect("engine");
    let path = crate::support::guest("passthrough");
    engine
        .load(&path, "passthrough")
        .expect("first load compiles");
    let artifacts: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache dir created")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "one artifact for one component");
    let first = std::fs::metadata(&artifacts[0])
        .expect("meta")
        .modified()
        .expect("mtime");
    engine
        .load(&path, "passthrough")
        .expect("second load uses the cache");
    let second = std::fs::metadata(&artifacts[0])
        .expect("meta")
        .modified()
        .expect("mtime");
    assert_eq!(first, second, "the artifact was reused, not rewritten");

    std::fs::write(&artifacts[0], b"garbage").expect("corrupt it");
    let info = engine
        .load(&path, "passthrough")
        .expect("a corrupt artifact is rebuilt");
    assert!(info.has(shardline::wasm::Export::Processor));
    assert!(
        std::fs::read(&artifacts[0]).expect("read").len() > 1000,
        "rewritten"
    );
}

/// The `guest.version` a component stamps on a record (empty for passthrough), run from an
/// engine with a cache.
fn stamped_by(engine: &WasmEngine, component: &std::path::Path) -> String {
    let yaml = format!(
        "application: t\nsource:\n  stream: s\nsinks:\n  p:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: t\n\
         stages:\n  pipeline:\n    component: {}\n",
        component.display()
    );
    let config = Config::from_yaml(&yaml, "cache.yaml", PathBuf::from(".")).expect("config");
    let mut s = StagePlan::load(engine, &config)
        .expect("load")
        .instantiate()
        .expect("instantiate");
    let o = s.run(&ctx(), &batch(&["x"]), true);
    assert!(o.failures.is_empty(), "{:?}", o.failures);
    o.outputs[0]
        .event
        .properties
        .iter()
        .find(|(k, _)| k == "guest.version")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// An artifact is trusted for its content, not its name: another component's artifact
/// under this component's name (stale or planted), or one whose code was altered, is not
/// run; the component is compiled again and its artifact rewritten.
#[test]
fn a_stale_or_altered_artifact_is_never_run() {
    let cache = std::env::temp_dir().join(crate::support::unique("artifact-trust"));
    let engine = WasmEngine::new(
        Some(cache.clone()),
        64 << 20,
        std::time::Duration::from_secs(5),
    )
    .expect("engine");
    let artifacts = || -> Vec<PathBuf> {
        std::fs::read_dir(&cache)
            .expect("cache dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect()
    };
    let (passthrough, stamp) = (
        crate::support::guest("passthrough"),
        crate::support::guest("stamp"),
    );
    assert_eq!(stamped_by(&engine, &passthrough), "");
    let passthrough_artifact = artifacts().pop().expect("one artifact");
    assert_eq!(stamped_by(&engine, &stamp), "stamp-2");
    let stamp_artifact = artifacts()
        .into_iter()
        .find(|p| *p != passthrough_artifact)
        .expect("a second artifact");

    // passthrough's (valid, same engine) artifact under stamp's name
    std::fs::copy(&passthrough_artifact, &stamp_artifact).expect("plant");
    assert_eq!(
        stamped_by(&engine, &stamp),
        "stamp-2",
        "stamp runs, not the planted passthrough code"
    );
    assert_ne!(
        std::fs::read(&stamp_artifact).expect("read"),
        std::fs::read(&passthrough_artifact).expect("read"),
        "the planted artifact was replaced"
    );

    // one bit of compiled code flipped
    let mut altered = std::fs::read(&stamp_artifact).expect("read");
    let middle = altered.len() / 2;
    altered[middle] ^= 0x40;
    std::fs::write(&stamp_artifact, &altered).expect("alter");
    assert_eq!(stamped_by(&engine, &stamp), "stamp-2");
    assert_ne!(
        std::fs::read(&stamp_artifact).expect("read"),
        altered,
        "the altered artifact was rewritten"
    );
}
