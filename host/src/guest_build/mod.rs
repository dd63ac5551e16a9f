//! `shardline build-guest DIR`: one command that builds a guest project in any supported
//! language into a component.
//!
//! The language is told by the folder: `Cargo.toml` → Rust, `app.py` → Python
//! (componentize-py), `package.json` or a `.js`/`.mjs` file → JavaScript (componentize-js),
//! `go.mod` → Go (mainline Go, `GOOS=wasip1 -buildmode=c-shared`), `.c` files → C (clang for
//! `wasm32-wasi` with wasi-libc). Rust (`wasm32-wasip2`), Python and JavaScript tools make a
//! component themselves. For Go, C, and a Rust build that yields a core module, the two
//! `wasm-tools` steps happen here, in-process: the WIT world is embedded in the module
//! (`component embed`) and the module is wrapped into a component with the WASI preview1
//! reactor adapter of the wasmtime version Shardline runs (`component new --adapt`), so no
//! `wasm-tools` needs to be installed.
//!
//! The WIT is the project's own `wit/` folder when it has one, else the package built into
//! this binary (`shardline:connector`, the one it runs).

mod languages;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context};
use clap::ValueEnum;

use languages::*;

/// The WIT package this binary runs, written out for tools that want a folder.
const BUILTIN_WIT: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
];

/// Where `dev/setup` installs the guest toolchains: `$XDG_CACHE_HOME/shardline` or
/// `~/.cache/shardline`.
fn tools_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("shardline"))
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The guest project's folder.
    dir: PathBuf,
    /// Where to write the component (default: DIR/target/<folder name>.wasm).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// The language, when the folder's files do not say.
    #[arg(long, value_enum)]
    lang: Option<Lang>,
    /// The world of `shardline:connector` the component implements.
    #[arg(long, default_value = "pipeline")]
    world: String,
    /// A WIT folder to build against (default: DIR/wit if present, else the built-in one).
    #[arg(long)]
    wit: Option<PathBuf>,
}

/// A guest language: `build-guest` builds it, `new guest` writes a project in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    Go,
    C,
}

impl Lang {
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::Go => "go",
            Lang::C => "c",
        }
    }
}

/// Tells the language of a project folder from its files.
pub fn detect(dir: &Path) -> anyhow::Result<Lang> {
    let has = |f: &str| dir.join(f).is_file();
    let files = list(dir)?;
    let ext = |e: &str| files.iter().any(|p| p.extension().is_some_and(|x| x == e));
    let found: Vec<Lang> = [
        (Lang::Rust, has("Cargo.toml")),
        (Lang::Python, has("app.py")),
        (Lang::Js, has("package.json") || ext("js") || ext("mjs")),
        (Lang::Go, has("go.mod")),
        (Lang::C, ext("c")),
    ]
    .into_iter()
    .filter_map(|(l, yes)| yes.then_some(l))
    .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!(
            "cannot tell the language of {}: expected Cargo.toml (Rust), app.py (Python), package.json or a .js file (JavaScript), go.mod (Go) or .c files (C); or say --lang",
            dir.display()
        ),
        many => bail!(
            "{} looks like several languages ({}): say which with --lang",
            dir.display(),
            many.iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Files of a folder (not recursive), sorted.
fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read guest project {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    Ok(v)
}

/// A scratch folder removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shardline-build-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create scratch folder {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `shardline build-guest`.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("cannot read guest project {}", args.dir.display()))?;
    if !dir.is_dir() {
        bail!("guest project {} is not a folder", args.dir.display());
    }
    let lang = match args.lang {
        Some(l) => l,
        None => detect(&dir)?,
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "guest".into());
    let out = match &args.out {
        Some(o) => std::path::absolute(o).with_context(|| format!("bad --out {}", o.display()))?,
        None => dir.join("target").join(format!("{name}.wasm")),
    };
    let scratch = Scratch::new()?;
    let wit = match &args.wit {
        Some(w) => w.clone(),
        None if dir.join("wit").is_dir() => dir.join("wit"),
        None => {
            let w = scratch.0.join("wit");
            std::fs::create_dir_all(&w)?;
            for (file, text) in BUILTIN_WIT {
                std::fs::write(w.join(file), text)?;
            }
            w
        }
    };
    let started = std::time::Instant::now();
    let component = build(lang, &dir, &wit, &args.world, &scratch.0)
        .with_context(|| format!("cannot build {} guest {}", lang.name(), dir.display()))?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let tmp = out.with_extension("wasm.tmp");
    std::fs::write(&tmp, &component).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}: {} component, world {}, {} bytes, built in {:.1}s",
        out.display(),
        lang.name(),
        args.world,
        component.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds the project and returns the component's bytes.
pub fn build(
    lang: Lang,
    dir: &Path,
    wit: &Path,
    world: &str,
    scratch: &Path,
) -> anyhow::Result<Vec<u8>> {
    let sdk = sdk_of(lang, dir)?;
    let sdk = sdk.as_deref();
    let bytes = match lang {
        Lang::Rust => build_rust(dir)?,
        Lang::Python => build_python(dir, sdk, wit, world, scratch)?,
        Lang::Js => build_js(dir, sdk, wit, world, scratch)?,
        Lang::Go => build_go(dir, scratch)?,
        Lang::C => build_c(dir, sdk, wit, world, scratch)?,
    };
    if is_component(&bytes) {
        Ok(bytes)
    } else {
        componentize(&bytes, wit, world)
    }
}

/// The Shardline SDK folder a Python, JavaScript or C project is written against, when its
/// sources use it (`import shardline`, `"./shardline.js"`, `#include "shardline.h"`):
/// `sdk/<lang>/` in the project, as `shardline new guest` writes it, or in a folder above it
/// (this repository's examples). Rust and Go projects name their SDK in `Cargo.toml` and
/// `go.mod`, so their own tools find it.
fn sdk_of(lang: Lang, dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let (ext, marker, uses): (&str, &str, fn(&str) -> bool) = match lang {
        Lang::Python => ("py", "shardline.py", |text| {
            text.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with("import shardline") || l.starts_with("from shardline ")
            })
        }),
        Lang::Js => ("js", "shardline.js", |text| {
            text.contains("\"./shardline.js\"") || text.contains("'./shardline.js'")
        }),
        Lang::C => ("c", "shardline.h", |text| {
            text.contains("#include \"shardline.h\"")
        }),
        Lang::Rust | Lang::Go => return Ok(None),
    };
    let mut user = None;
    for file in list(dir)? {
        if file.extension().is_some_and(|e| e == ext)
            && file.file_name().is_some_and(|n| n != marker)
            && std::fs::read_to_string(&file).is_ok_and(|t| uses(&t))
        {
            user = Some(file);
            break;
        }
    }
    let Some(user) = user else {
        return Ok(None);
    };
    if dir.join(marker).is_file() {
        // The SDK's file beside the sources: the project carries its own copy.
        return Ok(Some(dir.to_path_buf()));
    }
    match dir
        .ancestors()
        .map(|d| d.join("sdk").join(lang.name()))
        .find(|s| s.join(marker).is_file())
    {
        Some(sdk) => Ok(Some(sdk)),
        None => bail!(
            "{} uses the Shardline SDK, but there is no sdk/{}/{marker} in {} or a folder above it (`shardline new guest --lang {}` writes a project with the SDK inside)",
            user.display(),
            lang.name(),
            dir.display(),
            lang.name()
        ),
    }
}

/// Whether a Wasm binary is a component (layer 1) rather than a core module.
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

/// `wasm-tools component embed` + `component new --adapt wasi_snapshot_preview1=…`, done
/// with the `wit-component` library and the reactor adapter of wasmtime's own version.
pub fn componentize(core: &[u8], wit: &Path, world: &str) -> anyhow::Result<Vec<u8>> {
    if core.len() < 8 || core[..4] != *b"\0asm" {
        bail!("the build produced something that is not WebAssembly");
    }
    let mut module = core.to_vec();
    if !has_custom_section(core, "component-type") {
        let mut resolve = wit_parser::Resolve::default();
        let (package, _) = resolve
            .push_dir(wit)
            .with_context(|| format!("cannot read the WIT in {}", wit.display()))?;
        let world_id = resolve
            .select_world(&[package], Some(world))
            .with_context(|| format!("no world {world:?} in the WIT of {}", wit.display()))?;
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world_id,
            wit_component::StringEncoding::UTF8,
        )
        .context("cannot embed the WIT world in the module")?;
    }
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .context("the module does not fit the WIT world")?
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("cannot load the WASI preview1 adapter")?
        .encode()
        .map_err(|e| anyhow!("cannot make a component of the module: {e:#}"))
}

/// Whether a core module has a custom section whose name starts with `prefix`.
fn has_custom_section(module: &[u8], prefix: &str) -> bool {
    fn leb(b: &[u8], pos: &mut usize) -> Option<usize> {
        let mut v: usize = 0;
        for shift in (0..35).step_by(7) {
            let byte = *b.get(*pos)?;
            *pos += 1;
            v |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut pos = 8;
    while pos < module.len() {
        let id = module[pos];
        pos += 1;
        let Some(size) = leb(module, &mut pos) else {
            return false;
        };
        let end = pos.saturating_add(size);
        if id == 0 {
            let mut p = pos;
            if let Some(len) = leb(module, &mut p) {
                if module
                    .get(p..p.saturating_add(len))
                    .is_some_and(|n| n.starts_with(prefix.as_bytes()))
                {
                    return true;
                }
            }
        }
        pos = end;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_languages_apart() {
        let s = Scratch::new().expect("scratch");
        let d = &s.0;
        assert!(detect(d).is_err());
        std::fs::write(d.join("app.c"), "int x;").expect("write");
        assert_eq!(detect(d).expect("c"), Lang::C);
        std::fs::write(d.join("app.py"), "").expect("write");
        let err = detect(d).expect_err("two").to_string();
        assert!(err.contains("python, c"), "{err}");
    }

    #[test]
    fn finds_the_sdk_a_project_uses() {
        let s = Scratch::new().expect("scratch");
        let project = s.0.join("guests/hello");
        std::fs::create_dir_all(&project).expect("mkdir");
        std::fs::write(project.join("app.py"), "import json\n").expect("write");
        // Not on the SDK: built as it is.
        assert_eq!(sdk_of(Lang::Python, &project).expect("no sdk"), None);
        std::fs::write(project.join("app.py"), "from shardline import Output\n").expect("write");
        let err = sdk_of(Lang::Python, &project).expect_err("missing sdk");
        assert!(err.to_string().contains("sdk/python/shardline.py"), "{err}");
        // In a folder above, as this repository's examples have it.
        std::fs::create_dir_all(s.0.join("sdk/python")).expect("mkdir");
        std::fs::write(s.0.join("sdk/python/shardline.py"), "").expect("write");
        assert_eq!(
            sdk_of(Lang::Python, &project).expect("sdk above"),
            Some(s.0.join("sdk/python"))
        );
        // In the project, as `shardline new guest` writes it: the nearest wins.
        std::fs::create_dir_all(project.join("sdk/python")).expect("mkdir");
        std::fs::write(project.join("sdk/python/shardline.py"), "").expect("write");
        assert_eq!(
            sdk_of(Lang::Python, &project).expect("own sdk"),
            Some(project.join("sdk/python"))
        );
        std::fs::write(project.join("main.c"), "#include \"shardline.h\"\n").expect("write");
        assert!(sdk_of(Lang::C, &project).is_err(), "no sdk/c anywhere");
        assert_eq!(sdk_of(Lang::Go, &project).expect("go"), None);
    }

    #[test]
    fn wraps_a_core_module_into_a_component() {
        // A reactor exporting the `processor` of world `pipeline` would need the canonical
        // ABI; an empty module for a world with no exports checks the in-process steps.
        let s = Scratch::new().expect("scratch");
        let wit = s.0.join("wit");
        std::fs::create_dir_all(&wit).expect("mkdir");
        std::fs::write(wit.join("w.wit"), "package t:t;\nworld empty {}\n").expect("write");
        let core = b"\0asm\x01\0\0\0";
        assert!(!is_component(core));
        let c = componentize(core, &wit, "empty").expect("componentize");
        assert!(is_component(&c));
        assert!(componentize(b"not wasm", &wit, "empty").is_err());
        let err = componentize(core, &wit, "nope").expect_err("no such world");
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn finds_custom_sections() {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        assert!(!has_custom_section(&m, "component-type"));
        // custom section: id 0, size, name length, name
        let name = b"component-type:x";
        m.push(0);
        m.push((name.len() + 1) as u8);
        m.push(name.len() as u8);
        m.extend_from_slice(name);
        assert!(has_custom_section(&m, "component-type"));
    }
}
