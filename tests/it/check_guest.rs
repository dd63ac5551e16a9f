//! `shardline check-guest FILE [--world W]`: prints a component's exports and imports, and
//! one `error:` line per problem — what it lacks for the world, imports the host does not
//! provide, a file that is no component — with exit code 2.

use std::path::Path;
use std::process::Output;

use crate::support::*;

fn check(file: &Path, world: Option<&str>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shardline"));
    cmd.arg("check-guest")
        .arg(file)
        .env("SHARDLINE_LOG", "warn");
    if let Some(w) = world {
        cmd.args(["--world", w]);
    }
    cmd.output().expect("run shardline")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `error:` lines of stderr.
fn problems(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("error: "))
        .map(str::to_string)
        .collect()
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("check-guest"));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

#[test]
fn a_component_fit_for_the_world_passes_and_its_exports_are_printed() {
    let p = guest("passthrough");
    for world in [None, Some("pipeline")] {
        let o = check(&p, world);
        assert_eq!(o.status.code(), Some(0), "{world:?}: {:?}", problems(&o));
        let out = stdout(&o);
        assert!(
            out.contains("exports: shardline:connector/processor@0.1.0"),
            "{out}"
        );
        assert!(out.contains("shardline:connector/host@0.1.0"), "{out}");
        // WASI it imports is linked but reaches nothing: said once per capability.
        assert!(
            out.lines()
                .filter(|l| l.contains("note:") && l.contains("wasi:sockets/"))
                .count()
                == 1
                && out.contains("no network"),
            "{out}"
        );
        assert!(problems(&o).is_empty());
    }
    let o = check(&guest("orders-handwritten"), Some("full"));
    assert_eq!(o.status.code(), Some(0), "{:?}", problems(&o));
    assert!(stdout(&o).contains("ok for world full"));
}

#[test]
fn each_missing_export_is_one_line_and_exit_2() {
    let p = guest("passthrough");
    let o = check(&p, Some("transform-stage"));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        problems(&o),
        [format!(
            "error: {}: does not export shardline:connector/transformer@0.1.0, which world transform-stage needs",
            p.display()
        )]
    );
    assert!(
        stdout(&o).contains("exports: shardline:connector/processor@0.1.0"),
        "the exports are printed even when something is missing"
    );
    let o = check(&p, Some("full"));
    assert_eq!(o.status.code(), Some(2));
    let lines = problems(&o);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for iface in ["deserializer", "transformer", "router"] {
        assert!(
            lines.iter().any(|l| l.contains(&format!(
                "does not export shardline:connector/{iface}@0.1.0, which world full needs"
            ))),
            "{lines:?}"
        );
    }
}

/// A component (hand-encoded) that imports an interface the host does not provide and
/// exports nothing: both are reported, one line each.
#[test]
fn an_import_the_host_does_not_provide_is_named() {
    let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec(); // component preamble
    bytes.extend([0x07, 0x03, 0x01, 0x42, 0x00]); // type section: one empty instance type
    let name = b"test:missing/iface";
    bytes.extend([0x0a, 5 + name.len() as u8, 0x01, 0x00, name.len() as u8]); // import section
    bytes.extend(name);
    bytes.extend([0x05, 0x00]); // … of an instance of type 0
    let p = temp_file("importer.wasm", &bytes);
    let o = check(&p, None);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let lines = problems(&o);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("imports test:missing/iface, which the host does not provide"),
        "{lines:?}"
    );
    assert!(lines[1].contains("exports no stage interface"), "{lines:?}");
    assert!(stdout(&o).contains("imports: test:missing/iface"));
}

#[test]
fn a_file_that_is_not_a_component_is_one_line() {
    let p = temp_file("junk.wasm", b"not wasm\nat all\n");
    let o = check(&p, Some("pipeline"));
    assert_eq!(o.status.code(), Some(2));
    let lines = problems(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("is not a valid Wasm component"),
        "{lines:?}"
    );
}

#[test]
fn an_unknown_world_is_refused_with_the_list() {
    let o = check(&guest("passthrough"), Some("pipelines"));
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("unknown world \"pipelines\"") && e.contains("transform-stage"),
        "{e}"
    );
}

/// A component (hand-encoded) that exports an instance under the processor's name, but an
/// empty one: the name is there, the functions are not.
#[test]
fn an_export_with_the_right_name_but_not_the_contract_is_named() {
    let name = b"shardline:connector/processor@0.1.0";
    let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec(); // component preamble
    bytes.extend([0x05, 0x03, 0x01, 0x01, 0x00]); // instance section: one empty instance
    let mut export = vec![0x01, 0x00, name.len() as u8];
    export.extend(name);
    export.extend([0x05, 0x00, 0x00]); // … that instance, no type ascription
    bytes.extend([0x0b, export.len() as u8]); // export section
    bytes.extend(export);
    let p = temp_file("hollow.wasm", &bytes);
    let o = check(&p, Some("pipeline"));
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert_eq!(
        problems(&o),
        [format!(
            "error: {}: exports shardline:connector/processor@0.1.0, but not with the functions and types of shardline:connector@0.1.0",
            p.display()
        )]
    );
}
