//! `shardline try` down to the byte: every `tests/golden/try/*.args` file is a command line
//! (one argument per line) whose stdout, stderr and exit code must equal the `.out` file
//! beside it. In the arguments, `{guests}` is the folder of the built test guests
//! (`guest-examples/build.sh`: `target/guests/` or `$SHARDLINE_GUESTS_OUT`), `{here}` the
//! golden folder, and `{config}` the case's `.yaml` with `{guests}` filled in. Run with
//! `SHARDLINE_BLESS=1` to rewrite the `.out` files after a deliberate change.
//!
//! The cases cover both output forms (text and `--json`), the three input formats, settings
//! from the command line and from a config's stage, rejections, a trap isolated by the
//! host's record-by-record retry, binary payloads, and the exit codes 0, 1, 2 and 3.

use std::path::{Path, PathBuf};
use std::process::Command;

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

#[test]
fn try_prints_what_each_record_became() {
    let dir = repo().join("tests/golden/try");
    let guests = guests_dir();
    for g in ["passthrough", "stamp", "orders"] {
        let p = guests.join(format!("{g}.wasm"));
        assert!(
            p.is_file(),
            "{} missing: run guest-examples/build.sh",
            p.display()
        );
    }
    let bless = std::env::var_os("SHARDLINE_BLESS").is_some();
    let scratch = std::env::temp_dir().join(format!("shardline-try-golden-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("golden folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "args"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 8,
        "golden cases missing in {}",
        dir.display()
    );
    let fill = |s: &str, config: &Path| {
        s.replace("{guests}", &guests.display().to_string())
            .replace("{here}", &dir.display().to_string())
            .replace("{config}", &config.display().to_string())
    };
    let mut mismatches = Vec::new();
    for case in cases {
        let name = case
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let config = scratch.join(format!("{name}.yaml"));
        let template = case.with_extension("yaml");
        if template.is_file() {
            let text = std::fs::read_to_string(&template).expect("config template");
            std::fs::write(&config, fill(&text, &config)).expect("write config");
        }
        let args: Vec<String> = std::fs::read_to_string(&case)
            .expect("args")
            .lines()
            .map(|l| fill(l, &config))
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_shardline"))
            .arg("try")
            .args(&args)
            .env("SHARDLINE_LOG", "off")
            .output()
            .expect("run shardline try");
        let normalize = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .replace(&guests.display().to_string(), "{guests}")
                .replace(&dir.display().to_string(), "{here}")
                .replace(&scratch.display().to_string(), "{scratch}")
        };
        let got = format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            out.status.code().map_or("signal".into(), |c| c.to_string()),
            normalize(&out.stdout),
            normalize(&out.stderr)
        );
        let golden = case.with_extension("out");
        if bless {
            std::fs::write(&golden, &got).expect("write golden file");
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (run with SHARDLINE_BLESS=1)", golden.display()));
        if got != want {
            mismatches.push(format!("{name}:\n--- want\n{want}\n--- got\n{got}"));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
