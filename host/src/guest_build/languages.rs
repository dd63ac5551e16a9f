//! How `build-guest` builds each language: the tool it runs (cargo, componentize-py,
//! componentize-js, go, clang), where it finds it, and what it adds for a project on the SDK.

use super::*;

/// Runs a build tool; on failure the error carries what it printed.
pub(super) fn run_tool(cmd: &mut Command, what: &str) -> anyhow::Result<std::process::Output> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!("{what} not found ({:?}): {e}", cmd.get_program())
        } else {
            anyhow!("cannot run {what} ({:?}): {e}", cmd.get_program())
        }
    })?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        if text.trim().is_empty() {
            text = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        bail!("{what} failed ({}):\n{}", out.status, text.trim_end());
    }
    Ok(out)
}

/// The first of these files that exists, else the program name for `PATH`.
pub(super) fn tool(candidates: &[Option<PathBuf>], on_path: &str) -> PathBuf {
    candidates
        .iter()
        .flatten()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(on_path))
}

pub(super) fn build_rust(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let out = run_tool(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(dir)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .args([
                "--message-format",
                "json-render-diagnostics",
                "--manifest-path",
            ])
            .arg(dir.join("Cargo.toml")),
        "cargo (Rust; the target is added with `rustup target add wasm32-wasip2`)",
    )?;
    let mut wasm = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(files) = msg["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    wasm = Some(PathBuf::from(f));
                }
            }
        }
    }
    let wasm = wasm.ok_or_else(|| {
        anyhow!("cargo built no .wasm: the crate needs `[lib] crate-type = [\"cdylib\"]`")
    })?;
    std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))
}

/// Copies a project into `to`, leaving out build output and VCS folders.
pub(super) fn copy_project(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let skip = matches!(
            name.to_str(),
            Some("target" | "node_modules" | ".git" | "__pycache__" | "wit_world")
        );
        if skip {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_project(&path, &to.join(&name))?;
        } else if path.extension().is_none_or(|e| e != "wasm") {
            std::fs::copy(&path, to.join(&name))
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(())
}

/// Copies the SDK's `file` beside the app, unless the project has its own.
pub(super) fn beside_app(sdk: &Path, app: &Path, file: &str) -> anyhow::Result<()> {
    if !app.join(file).is_file() {
        std::fs::copy(sdk.join(file), app.join(file))
            .with_context(|| format!("cannot copy {}", sdk.join(file).display()))?;
    }
    Ok(())
}

/// A tool installed in a folder: `$ENV`, else `dev/setup`'s `<tools home>/DIR`; `BIN` inside
/// it when that file exists, else `ON_PATH` from `PATH`.
fn installed(env: &str, dir: &str, bin: &str, on_path: &str) -> PathBuf {
    let root = std::env::var_os(env)
        .map(PathBuf::from)
        .or_else(|| tools_home().map(|h| h.join(dir)));
    tool(&[root.map(|r| r.join(bin))], on_path)
}

pub(super) fn build_python(
    dir: &Path,
    sdk: Option<&Path>,
    wit: &Path,
    world: &str,
    scratch: &Path,
) -> anyhow::Result<Vec<u8>> {
    let tool = installed(
        "SHARDLINE_COMPONENTIZE_PY",
        "componentize-py",
        "bin/componentize-py",
        "componentize-py",
    );
    // componentize-py writes the bindings beside the app: build in a copy.
    let app = scratch.join("app");
    copy_project(dir, &app)?;
    // On the SDK, the entry module imports the app (which registers its handler) and the
    // SDK's `Processor`, the export.
    let entry = match sdk {
        Some(sdk) => {
            beside_app(sdk, &app, "shardline.py")?;
            std::fs::write(
                app.join("shardline_component.py"),
                "import app  # noqa: F401  (registers the handler)\nfrom shardline import Processor  # noqa: F401  (the export)\n",
            )?;
            "shardline_component"
        }
        None => "app",
    };
    let out = scratch.join("out.wasm");
    run_tool(
        Command::new(&tool)
            .current_dir(&app)
            .arg("-d")
            .arg(wit)
            .args(["-w", world, "componentize", entry, "-o"])
            .arg(&out),
        "componentize-py (Python guests; dev/setup installs it in ~/.cache/shardline/componentize-py, or `pip install componentize-py==0.25.1`)",
    )?;
    std::fs::read(&out).with_context(|| format!("cannot read {}", out.display()))
}

/// The entry module of a JavaScript project: `package.json`'s `module` or `main`, else
/// `app.js`, `index.js`, `main.js`, else the only `.js`/`.mjs` file.
pub(super) fn js_entry(dir: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(text) = std::fs::read_to_string(dir.join("package.json")) {
        let pkg: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", dir.join("package.json").display()))?;
        for key in ["module", "main"] {
            if let Some(m) = pkg[key].as_str() {
                return Ok(dir.join(m));
            }
        }
    }
    for f in ["app.js", "index.js", "main.js", "app.mjs", "index.mjs"] {
        if dir.join(f).is_file() {
            return Ok(dir.join(f));
        }
    }
    let js: Vec<PathBuf> = list(dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "js" || e == "mjs"))
        .collect();
    match js.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "cannot tell the entry module of {}: name it in package.json (\"main\") or call it app.js",
            dir.display()
        ),
    }
}

pub(super) fn build_js(
    dir: &Path,
    sdk: Option<&Path>,
    wit: &Path,
    world: &str,
    scratch: &Path,
) -> anyhow::Result<Vec<u8>> {
    let tool = installed(
        "SHARDLINE_COMPONENTIZE_JS",
        "componentize-js",
        "node_modules/.bin/componentize-js",
        "componentize-js",
    );
    let mut entry = js_entry(dir)?;
    let mut cwd = dir.to_path_buf();
    if let Some(sdk) = sdk {
        // On the SDK: the app beside the SDK's module, and an entry module that imports the
        // app (which registers its handler) and re-exports the SDK's `processor`.
        let app = scratch.join("app");
        copy_project(dir, &app)?;
        beside_app(sdk, &app, "shardline.js")?;
        let name = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::write(
            app.join("shardline-component.js"),
            format!("import \"./{name}\";\nexport {{ processor }} from \"./shardline.js\";\n"),
        )?;
        entry = app.join("shardline-component.js");
        cwd = app;
    }
    let out = scratch.join("out.wasm");
    // No HTTP: a guest has no network, and the features only cost size and start time.
    run_tool(
        Command::new(&tool)
            .current_dir(&cwd)
            .arg(&entry)
            .arg("--wit")
            .arg(wit)
            .args(["--world-name", world, "-d", "http", "fetch-event", "-o"])
            .arg(&out),
        "componentize-js (JavaScript guests; dev/setup installs it in ~/.cache/shardline/componentize-js, or `npm install @bytecodealliance/componentize-js@0.23`)",
    )?;
    std::fs::read(&out).with_context(|| format!("cannot read {}", out.display()))
}

pub(super) fn build_go(dir: &Path, scratch: &Path) -> anyhow::Result<Vec<u8>> {
    let go = tool(&[Some(PathBuf::from("/usr/local/go/bin/go"))], "go");
    let core = scratch.join("core.wasm");
    // Mainline Go (no TinyGo): a wasip1 reactor; -checklinkname=0 lets the bindings'
    // runtime package link to the runtime internals it needs.
    run_tool(
        Command::new(&go)
            .current_dir(dir)
            .env("GOOS", "wasip1")
            .env("GOARCH", "wasm")
            .args([
                "build",
                "-buildmode=c-shared",
                "-trimpath",
                "-ldflags=-checklinkname=0",
                "-o",
            ])
            .arg(&core)
            .arg("."),
        "go (Go guests: mainline Go 1.24 or later)",
    )?;
    std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))
}

pub(super) fn build_c(
    dir: &Path,
    sdk: Option<&Path>,
    wit: &Path,
    world: &str,
    scratch: &Path,
) -> anyhow::Result<Vec<u8>> {
    let cc = std::env::var_os("SHARDLINE_WASM_CC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if which("clang-19") {
                PathBuf::from("clang-19")
            } else {
                PathBuf::from("clang")
            }
        });
    let files = list(dir)?;
    let mut sources: Vec<PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .cloned()
        .collect();
    let mut objects: Vec<PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .cloned()
        .collect();
    // The bindings: the SDK's (committed in `gen/`), the project's own (a `<world>.h`
    // beside the sources), or made now by `wit-bindgen c`.
    let header = format!("{}.h", world.replace('-', "_"));
    let mut includes = vec![dir.to_path_buf()];
    let mut bindings = scratch.join("bindings");
    if let Some(sdk) = sdk {
        if world != "pipeline" {
            bail!("the C SDK implements world `pipeline`, not `{world}`");
        }
        bindings = sdk.join("gen");
        includes.push(sdk.to_path_buf());
        if !dir.join("shardline.c").is_file() {
            sources.push(sdk.join("shardline.c"));
        }
        sources.push(bindings.join("pipeline.c"));
    } else if !dir.join(&header).is_file() {
        let home = tools_home();
        let wit_bindgen = tool(
            &[
                std::env::var_os("SHARDLINE_GUEST_TOOLS")
                    .map(|t| PathBuf::from(t).join("bin/wit-bindgen")),
                home.map(|h| h.join("tools/bin/wit-bindgen")),
            ],
            "wit-bindgen",
        );
        run_tool(
            Command::new(&wit_bindgen)
                .arg("c")
                .arg(wit)
                .args(["--world", world, "--out-dir"])
                .arg(&bindings),
            "wit-bindgen (C bindings: dev/setup installs it in ~/.cache/shardline/tools/bin, or `cargo install wit-bindgen-cli@0.61.1`; or keep the generated bindings in the project)",
        )?;
        for p in list(&bindings)? {
            match p.extension().and_then(|e| e.to_str()) {
                Some("c") => sources.push(p),
                Some("o") => objects.push(p),
                _ => {}
            }
        }
    }
    let core = scratch.join("core.wasm");
    let mut cmd = Command::new(&cc);
    cmd.current_dir(dir).args([
        "--target=wasm32-wasi",
        "-mexec-model=reactor",
        "-O2",
        "-Wall",
    ]);
    for include in includes.iter().chain([&bindings]) {
        cmd.arg("-I").arg(include);
    }
    if let Ok(flags) = std::env::var("CFLAGS") {
        cmd.args(flags.split_whitespace());
    }
    cmd.arg("-o")
        .arg(&core)
        .args(&sources)
        .args(&objects)
        .arg("-lm");
    run_tool(
        &mut cmd,
        "clang (C guests: clang with the wasm32 target and wasi-libc; on Debian `apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32`)",
    )?;
    std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))
}

pub(super) fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}
