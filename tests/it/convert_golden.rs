//! Migration down to the text: every foreign config in `tests/golden/convert/<format>/`
//! converts to exactly the `.out` file beside it — the native YAML with its comments and
//! notes, or the error (misspelled keys name the nearest valid one). `<file>.args` holds the
//! flags (`to=`, `stream=`, `pulsar_url=`, `overlay=` relative to the folder), one a line.
//! Run with `SHARDLINE_BLESS=1` to rewrite the `.out` files after a deliberate change.

use std::path::{Path, PathBuf};
use std::process::Command;

use shardline::migrate::{self, ConvertedSink, Format, Options};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .join("tests/golden/convert")
}

fn inputs(format: Format) -> Vec<PathBuf> {
    let d = dir().join(format.name());
    let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", d.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "yaml" || x == "json" || x == "properties")
        })
        .collect();
    v.sort();
    v
}

fn options(input: &Path) -> Options {
    let args = PathBuf::from(format!("{}.args", input.display()));
    let text = std::fs::read_to_string(&args).unwrap_or_else(|e| panic!("{}: {e}", args.display()));
    let mut o = Options::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (k, v) = line.split_once('=').expect("key=value");
        match k {
            "to" => o.to = Some(ConvertedSink::parse(v)),
            "stream" => o.stream = Some(v.to_string()),
            "pulsar_url" => o.pulsar_url = Some(v.to_string()),
            "overlay" => o.overlay = Some(input.parent().expect("folder").join(v)),
            other => panic!("{}: unknown flag {other}", args.display()),
        }
    }
    o
}

fn convert(format: Format, input: &Path) -> String {
    let dir = dir().display().to_string();
    let out = match migrate::load(input, format, &options(input)) {
        Ok(c) => c.yaml(false),
        Err(e) => format!("error: {e}\n"),
    };
    out.replace(&dir, "<golden>")
}

#[test]
fn foreign_configs_convert_to_the_golden_text() {
    let bless = std::env::var_os("SHARDLINE_BLESS").is_some();
    let mut mismatches = Vec::new();
    for format in Format::ALL {
        let files = inputs(format);
        assert!(
            files.len() >= 3,
            "golden files missing for {format} in {}",
            dir().display()
        );
        for input in files {
            let got = convert(format, &input);
            let out = PathBuf::from(format!("{}.out", input.display()));
            if bless {
                std::fs::write(&out, &got).expect("write golden file");
                continue;
            }
            let want = std::fs::read_to_string(&out)
                .unwrap_or_else(|e| panic!("{}: {e} (run with SHARDLINE_BLESS=1)", out.display()));
            if got != want {
                mismatches.push(format!(
                    "{}:\n--- want\n{want}\n--- got\n{got}",
                    input.display()
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn every_seed_converts_and_every_misspelling_is_an_error_with_a_suggestion() {
    for format in Format::ALL {
        for input in inputs(format) {
            let name = input
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let result = migrate::load(&input, format, &options(&input));
            if name.starts_with("seed-") {
                let c = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let yaml = c.yaml(false);
                // Secrets never appear in the printed config or the notes.
                for secret in [
                    "Your secret key",
                    "my_secret_access_key",
                    "YOUR-SECRET-KEY",
                    "aws_secret_key_here",
                    "samza-secret",
                ] {
                    assert!(!yaml.contains(secret), "{name} shows a secret:\n{yaml}");
                    assert!(!format!("{:?}", c.notes).contains(secret), "{name}");
                    assert!(!format!("{:?}", c.config).contains(secret), "{name}");
                }
            } else if name.starts_with("err-misspelled") {
                let e = result.expect_err(&name).to_string();
                assert!(e.contains("did you mean"), "{name}: {e}");
            }
        }
    }
}

#[test]
fn the_cli_prints_the_same_conversion_and_exits_2_on_a_typo() {
    let input = dir().join("pulsar-io/seed-minimal.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args([
            "convert",
            "--from",
            "pulsar-io",
            "--to",
            "persistent://public/default/kinesis-in",
        ])
        .arg(&input)
        .output()
        .expect("run shardline convert");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        printed.replace(&dir().display().to_string(), "<golden>"),
        convert(Format::PulsarIo, &input)
    );

    let typo = dir().join("flink/err-misspelled.properties");
    let out = Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args([
            "validate",
            "--from",
            "flink",
            "--stream",
            "s",
            "--to",
            "persistent://public/default/x",
            "--config",
        ])
        .arg(&typo)
        .output()
        .expect("run shardline validate");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown key `flink.shard.getrecords.maxrecordcnt` at line 3; did you mean `flink.shard.getrecords.maxrecordcount`?"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_shardline"))
        .args(["convert", "--from", "pulsario"])
        .arg(&input)
        .output()
        .expect("run shardline convert");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean pulsar-io?"));
}
