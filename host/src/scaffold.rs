//! `shardline new guest --lang LANG DIR`: writes a ready guest project.
//!
//! The project holds a ~20-line example on the language's SDK, the SDK itself (vendored
//! under `sdk/<lang>/`, so the project builds outside this repository), the WIT contract
//! (`wit/`), a `build.sh`, a `config.yaml` and a README. Every file is embedded in the binary
//! at build time from `sdk/<lang>/template/`, the SDK sources and `wit/`; `{{name}}` (the
//! project name, from the folder's name) and `{{crate}}` (the same with `_` for `-`) are
//! filled in.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

pub use crate::guest_build::Lang;

/// Arguments of `shardline new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    #[command(subcommand)]
    what: NewWhat,
}

#[derive(Debug, Subcommand)]
enum NewWhat {
    /// A guest component project: example, SDK, WIT, build script, config, README.
    Guest {
        /// The language of the guest.
        #[arg(long, value_enum)]
        lang: Lang,
        /// The folder to create (must not exist, or be empty); its name names the project.
        dir: PathBuf,
    },
}

/// Why a project could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{0}: exists and is not an empty folder")]
    NotEmpty(PathBuf),
    #[error("{0}: cannot name a project after this folder (use letters, digits, '-' or '_', starting with a letter)")]
    BadName(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// One file of a project: its path in the project and its contents.
type File = (&'static str, &'static str);

macro_rules! repo_file {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../", $path))
    };
}

const WIT: &[File] = &[
    ("wit/types.wit", repo_file!("wit/types.wit")),
    ("wit/worlds.wit", repo_file!("wit/worlds.wit")),
];

const RUST: &[File] = &[
    ("Cargo.toml", repo_file!("sdk/rust/template/Cargo.toml")),
    ("src/lib.rs", repo_file!("sdk/rust/template/src/lib.rs")),
    ("build.sh", repo_file!("sdk/rust/template/build.sh")),
    ("config.yaml", repo_file!("sdk/rust/template/config.yaml")),
    ("sample.txt", repo_file!("sdk/sample.txt")),
    ("README.md", repo_file!("sdk/rust/template/README.md")),
    (
        "sdk/rust/Cargo.toml",
        repo_file!("sdk/rust/template/sdk-Cargo.toml"),
    ),
    ("sdk/rust/src/lib.rs", repo_file!("sdk/rust/src/lib.rs")),
    ("sdk/rust/README.md", repo_file!("sdk/rust/README.md")),
];

const PYTHON: &[File] = &[
    ("app.py", repo_file!("sdk/python/template/app.py")),
    ("build.sh", repo_file!("sdk/python/template/build.sh")),
    ("config.yaml", repo_file!("sdk/python/template/config.yaml")),
    ("sample.txt", repo_file!("sdk/sample.txt")),
    ("README.md", repo_file!("sdk/python/template/README.md")),
    (
        "sdk/python/shardline.py",
        repo_file!("sdk/python/shardline.py"),
    ),
    ("sdk/python/README.md", repo_file!("sdk/python/README.md")),
];

const JS: &[File] = &[
    ("app.js", repo_file!("sdk/js/template/app.js")),
    ("build.sh", repo_file!("sdk/js/template/build.sh")),
    ("config.yaml", repo_file!("sdk/js/template/config.yaml")),
    ("sample.txt", repo_file!("sdk/sample.txt")),
    ("README.md", repo_file!("sdk/js/template/README.md")),
    ("sdk/js/shardline.js", repo_file!("sdk/js/shardline.js")),
    ("sdk/js/README.md", repo_file!("sdk/js/README.md")),
];

const GO: &[File] = &[
    ("main.go", repo_file!("sdk/go/template/main.go")),
    ("go.mod", repo_file!("sdk/go/template/go.mod")),
    ("go.sum", repo_file!("sdk/go/go.sum")),
    ("build.sh", repo_file!("sdk/go/template/build.sh")),
    ("config.yaml", repo_file!("sdk/go/template/config.yaml")),
    ("sample.txt", repo_file!("sdk/sample.txt")),
    ("README.md", repo_file!("sdk/go/template/README.md")),
    ("sdk/go/go.mod", repo_file!("sdk/go/go.mod")),
    ("sdk/go/go.sum", repo_file!("sdk/go/go.sum")),
    ("sdk/go/shardline.go", repo_file!("sdk/go/shardline.go")),
    ("sdk/go/component.go", repo_file!("sdk/go/component.go")),
    ("sdk/go/README.md", repo_file!("sdk/go/README.md")),
    (
        "sdk/go/internal/wit/export_shardline_connector_processor/process.go",
        repo_file!("sdk/go/internal/wit/export_shardline_connector_processor/process.go"),
    ),
    (
        "sdk/go/internal/wit/shardline_connector_host/wit_bindings.go",
        repo_file!("sdk/go/internal/wit/shardline_connector_host/wit_bindings.go"),
    ),
    (
        "sdk/go/internal/wit/shardline_connector_host/empty.s",
        repo_file!("sdk/go/internal/wit/shardline_connector_host/empty.s"),
    ),
    (
        "sdk/go/internal/wit/shardline_connector_processor/wit_bindings.go",
        repo_file!("sdk/go/internal/wit/shardline_connector_processor/wit_bindings.go"),
    ),
    (
        "sdk/go/internal/wit/shardline_connector_processor/empty.s",
        repo_file!("sdk/go/internal/wit/shardline_connector_processor/empty.s"),
    ),
    (
        "sdk/go/internal/wit/shardline_connector_types/wit_bindings.go",
        repo_file!("sdk/go/internal/wit/shardline_connector_types/wit_bindings.go"),
    ),
    (
        "sdk/go/internal/wit/shardline_connector_types/empty.s",
        repo_file!("sdk/go/internal/wit/shardline_connector_types/empty.s"),
    ),
    (
        "sdk/go/internal/wit/wit_exports/wit_exports.go",
        repo_file!("sdk/go/internal/wit/wit_exports/wit_exports.go"),
    ),
];

const C: &[File] = &[
    ("main.c", repo_file!("sdk/c/template/main.c")),
    ("build.sh", repo_file!("sdk/c/template/build.sh")),
    ("config.yaml", repo_file!("sdk/c/template/config.yaml")),
    ("sample.txt", repo_file!("sdk/sample.txt")),
    ("README.md", repo_file!("sdk/c/template/README.md")),
    ("sdk/c/shardline.h", repo_file!("sdk/c/shardline.h")),
    ("sdk/c/shardline.c", repo_file!("sdk/c/shardline.c")),
    ("sdk/c/gen/pipeline.h", repo_file!("sdk/c/gen/pipeline.h")),
    ("sdk/c/gen/pipeline.c", repo_file!("sdk/c/gen/pipeline.c")),
    ("sdk/c/README.md", repo_file!("sdk/c/README.md")),
];

/// A project's files in `lang`, besides the WIT.
pub fn files(lang: Lang) -> &'static [File] {
    match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
        Lang::Go => GO,
        Lang::C => C,
    }
}

/// Runs `shardline new`.
pub fn run(args: &NewArgs) -> Result<(), ScaffoldError> {
    match &args.what {
        NewWhat::Guest { lang, dir } => {
            let written = new_guest(*lang, dir)?;
            println!(
                "wrote {} ({} files): cd {} && ./build.sh",
                dir.display(),
                written,
                dir.display()
            );
            Ok(())
        }
    }
}

/// Writes a guest project for `lang` into `dir`; returns how many files it wrote.
pub fn new_guest(lang: Lang, dir: &Path) -> Result<usize, ScaffoldError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    if dir.exists() {
        let empty = dir.is_dir() && fs::read_dir(dir).map_err(io(dir))?.next().is_none();
        if !empty {
            return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
        }
    }
    let name = project_name(dir).ok_or_else(|| ScaffoldError::BadName(dir.to_path_buf()))?;
    let crate_name = name.replace('-', "_");
    let files = files(lang).iter().chain(WIT);
    let mut written = 0;
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let text = text
            .replace("{{name}}", &name)
            .replace("{{crate}}", &crate_name);
        fs::write(&path, text).map_err(io(&path))?;
        if rel.ends_with(".sh") {
            make_executable(&path).map_err(io(&path))?;
        }
        written += 1;
    }
    Ok(written)
}

/// The project name: the folder's name, lowercased, if it is a usable package name in every
/// language (letters, digits, `-`, `_`, starting with a letter).
fn project_name(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?.to_ascii_lowercase();
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    (first_ok && rest_ok && name.len() <= 64).then_some(name)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_mode(perms.mode() | 0o755);
    fs::set_permissions(path, perms)
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_folder() {
        assert_eq!(
            project_name(Path::new("/x/My-Guest_2")).as_deref(),
            Some("my-guest_2")
        );
        assert_eq!(project_name(Path::new("/x/2guest")), None);
        assert_eq!(project_name(Path::new("/x/a b")), None);
    }

    #[test]
    fn every_language_writes_its_files_and_fills_the_name() {
        let root = std::env::temp_dir().join(format!("shardline-scaffold-{}", std::process::id()));
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::Go, Lang::C] {
            let dir = root.join(format!("g-{lang:?}").to_lowercase());
            let n = new_guest(lang, &dir).unwrap();
            assert_eq!(n, files(lang).len() + WIT.len());
            for (rel, _) in files(lang).iter().chain(WIT) {
                let text = fs::read_to_string(dir.join(rel)).unwrap();
                assert!(
                    !text.contains("{{name}}") && !text.contains("{{crate}}"),
                    "{rel}"
                );
            }
            assert!(fs::read_to_string(dir.join("config.yaml"))
                .unwrap()
                .contains(&format!(
                    "component: g-{}.wasm",
                    format!("{lang:?}").to_lowercase()
                )));
            // A second run refuses to overwrite.
            assert!(matches!(
                new_guest(lang, &dir),
                Err(ScaffoldError::NotEmpty(_))
            ));
        }
        fs::remove_dir_all(&root).unwrap();
    }
}
