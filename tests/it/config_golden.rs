//! Config errors down to the message: every file in `tests/golden/config/*.yaml` must fail
//! with exactly the text in the `.out` file beside it, and every example in `config/` must
//! load. Run with `SHARDLINE_BLESS=1` to rewrite the `.out` files after a deliberate change.

use std::path::{Path, PathBuf};

use shardline::config::Config;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn invalid_configs_fail_with_the_golden_message() {
    let dir = repo().join("tests/golden/config");
    let bless = std::env::var_os("SHARDLINE_BLESS").is_some();
    let mut mismatches = Vec::new();
    let files = yaml_files(&dir);
    assert!(
        files.len() >= 10,
        "golden files missing in {}",
        dir.display()
    );
    for path in files {
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let got = match Config::load(&path) {
            Ok(_) => "(loaded without error)".to_string(),
            Err(e) => e
                .to_string()
                .replace(&path.display().to_string(), &name)
                .replace(&dir.display().to_string(), "<golden>"),
        };
        let out = path.with_extension("out");
        if bless {
            std::fs::write(&out, format!("{got}\n")).expect("write golden file");
            continue;
        }
        let want = std::fs::read_to_string(&out)
            .unwrap_or_else(|e| panic!("{}: {e} (run with SHARDLINE_BLESS=1)", out.display()));
        if got.trim_end() != want.trim_end() {
            mismatches.push(format!(
                "{name}:\n  want: {}\n  got:  {got}",
                want.trim_end()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn example_configs_load() {
    let files = yaml_files(&repo().join("config"));
    assert!(!files.is_empty());
    for path in files {
        if let Err(e) = Config::load(&path) {
            panic!(
                "example config {} does not load: {e}\n(guest components are built by guest-examples/build.sh)",
                path.display()
            );
        }
    }
}
