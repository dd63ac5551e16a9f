//! Parsing, defaults and the semantic checks of a whole config.

use super::*;

const MINIMAL: &str = "\
application: app
source:
  stream: orders
sinks:
  main:
    pulsar:
      service_url: pulsar://127.0.0.1:6650
      topic: persistent://public/default/out
";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, "test.yaml", PathBuf::from("."))
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).expect("minimal config parses");
    assert_eq!(c.lease_table(), "app");
    assert_eq!(c.default_sink_name(), "main");
    assert_eq!(c.source.initial_position, InitialPosition::Latest);
    assert_eq!(c.source.polling.interval, Duration::from_millis(200));
    assert_eq!(c.errors.policy, ErrorPolicy::Fail);
    assert!(c.stage_configs().is_empty());
}

#[test]
fn static_credentials_are_redacted_in_debug() {
    let text = format!(
            "{MINIMAL}aws:\n  credentials:\n    type: static\n    access_key_id: AKIDEXAMPLE\n    secret_access_key: hunter2secret\n"
        );
    let c = parse(&text).expect("parses");
    let dbg = format!("{c:?}");
    assert!(dbg.contains("AKIDEXAMPLE"));
    assert!(!dbg.contains("hunter2secret"), "{dbg}");
}

#[test]
fn semantic_problems_name_path_and_line() {
    let text = MINIMAL.replace(
        "stream: orders",
        "stream: orders\n  initial_position: at_timestamp",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert_eq!(
        err,
        "test.yaml: source.at_timestamp: is required when initial_position is at_timestamp"
    );
    let text = format!("{MINIMAL}default_sink: other\n");
    let err = parse(&text).unwrap_err().to_string();
    assert_eq!(
        err,
        "test.yaml: default_sink: names sink \"other\", which is not in sinks (main) at line 9"
    );
}

#[test]
fn several_streams_resolve_their_start_positions() {
    let text = MINIMAL.replace(
            "  stream: orders\n",
            "  initial_position: trim_horizon\n  streams:\n    - name: a\n    - name: b\n      initial_position: at_timestamp\n      at_timestamp: \"2026-01-31T12:00:00Z\"\n",
        );
    let c = parse(&text).expect("parses");
    let s = c.streams();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].name, "a");
    assert_eq!(s[0].initial_position, InitialPosition::TrimHorizon);
    assert_eq!(s[0].lease_prefix.as_deref(), Some("a:"));
    assert_eq!(s[1].initial_position, InitialPosition::AtTimestamp);
    assert_eq!(
        s[1].at_timestamp,
        Some(humantime::parse_rfc3339("2026-01-31T12:00:00Z").expect("time"))
    );
    let one = parse(MINIMAL).expect("parses").streams();
    assert_eq!(
        one[0].lease_prefix, None,
        "one stream: leases keyed by shard id"
    );
}

#[test]
fn a_stage_on_error_overrides_the_global_policy() {
    let stages = "stages:\n  transform:\n    component: Cargo.toml\n    on_error: skip\n  route:\n    component: Cargo.toml\n";
    let c = parse(&format!("{MINIMAL}{stages}")).expect("parses");
    assert_eq!(
        c.error_policy(StageKind::Transform),
        (ErrorPolicy::Skip, "stages.transform.on_error".into())
    );
    assert_eq!(
        c.error_policy(StageKind::Route),
        (ErrorPolicy::Fail, "errors.policy".into())
    );
    assert_eq!(
        c.error_policy(StageKind::Deserialize),
        (ErrorPolicy::Fail, "errors.policy".into()),
        "a stage that is not configured follows errors.policy"
    );
    // A pipeline component's on_error covers whatever stage its failure names.
    let pipeline = "stages:\n  pipeline:\n    component: Cargo.toml\n    on_error: skip\nerrors:\n  policy: fail\n";
    let c = parse(&format!("{MINIMAL}{pipeline}")).expect("parses");
    for stage in StageKind::ALL {
        assert_eq!(
            c.error_policy(stage),
            (ErrorPolicy::Skip, "stages.pipeline.on_error".into())
        );
    }
}

#[test]
fn a_stage_dead_letter_policy_needs_a_dead_letter_destination() {
    let stages = "stages:\n  pipeline:\n    component: Cargo.toml\n    on_error: dead_letter\n";
    let err = parse(&format!("{MINIMAL}{stages}"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "test.yaml: errors.dead_letter: is required when stages.pipeline.on_error is dead_letter"
    );
    let ok = format!("{MINIMAL}{stages}errors:\n  dead_letter:\n    topic: dlq\n");
    let c = parse(&ok).expect("a stage's dead_letter uses errors.dead_letter");
    assert_eq!(c.error_policy(StageKind::Route).0, ErrorPolicy::DeadLetter);
    let unused = format!("{MINIMAL}errors:\n  dead_letter:\n    topic: dlq\n");
    let err = parse(&unused).unwrap_err().to_string();
    assert!(
        err.contains("errors.dead_letter: is only used when"),
        "{err}"
    );
}

#[test]
fn granted_directories_must_exist() {
    let text = format!(
            "{MINIMAL}stages:\n  pipeline:\n    component: Cargo.toml\n    grants:\n      read_only_dirs: [src, nowhere]\n      env:\n        A: 1\n"
        );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("stages.pipeline.grants.read_only_dirs: ./nowhere is not a directory"),
        "{err}"
    );
    assert!(!err.contains("./src"), "{err}");
    let text = format!(
            "{MINIMAL}stages:\n  pipeline:\n    component: Cargo.toml\n    grants:\n      network: true\n"
        );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("unknown field `network`"), "{err}");
}

#[test]
fn settings_accept_scalars_only() {
    let text = format!(
            "{MINIMAL}stages:\n  transform:\n    component: Cargo.toml\n    settings:\n      a: 1\n      b: true\n      c: text\n"
        );
    let c = parse(&text).expect("parses");
    let t = c.stages.transform.expect("transform stage");
    assert_eq!(t.settings["a"], SettingValue("1".into()));
    assert_eq!(t.settings["b"], SettingValue("true".into()));
    let text = format!(
            "{MINIMAL}stages:\n  transform:\n    component: Cargo.toml\n    settings:\n      a: [1, 2]\n"
        );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("stages.transform.settings: a setting must be a string")
            && err.contains("at line 13"),
        "{err}"
    );
}
