//! Inspecting a component before it is used (`shardline check-guest`): what it exports,
//! what it imports, and — one line each — what it lacks for a world of `shardline:connector`
//! or imports that the host will not provide.
//!
//! The host provides the `shardline:connector` imports and WASI 0.2 (`wasi:io`,
//! `wasi:clocks`, `wasi:random`, `wasi:cli`, `wasi:filesystem`, `wasi:sockets`). Those WASI
//! interfaces are linked so that guests built with a standard library load, but they reach
//! only what the config grants the component (see [`super::grants`] and
//! [`notes`](CheckReport::notes)). Anything else (say
//! `wasi:http`) cannot be linked: the component would never instantiate.

use std::path::Path;

use super::component::ComponentInfo;
use super::engine::WasmEngine;
use super::export::Export;

/// A world of `wit/worlds.wit`: what a component must export to be used as one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `pipeline`: exports `processor` (all three stages in one call).
    Pipeline,
    /// `deserialize-stage`: exports `deserializer`.
    DeserializeStage,
    /// `transform-stage`: exports `transformer`.
    TransformStage,
    /// `route-stage`: exports `router`.
    RouteStage,
    /// `full`: exports every stage interface.
    Full,
}

impl World {
    pub const ALL: [World; 5] = [
        World::Pipeline,
        World::DeserializeStage,
        World::TransformStage,
        World::RouteStage,
        World::Full,
    ];

    /// The world's name in `wit/worlds.wit`.
    pub fn name(self) -> &'static str {
        match self {
            World::Pipeline => "pipeline",
            World::DeserializeStage => "deserialize-stage",
            World::TransformStage => "transform-stage",
            World::RouteStage => "route-stage",
            World::Full => "full",
        }
    }

    /// A world by its WIT name (or the stage name: `deserialize`, `transform`, `route`).
    pub fn parse(name: &str) -> Option<World> {
        match name {
            "deserialize" => Some(World::DeserializeStage),
            "transform" => Some(World::TransformStage),
            "route" => Some(World::RouteStage),
            _ => World::ALL.into_iter().find(|w| w.name() == name),
        }
    }

    /// What a component of this world exports.
    pub fn exports(self) -> &'static [Export] {
        match self {
            World::Pipeline => &[Export::Processor],
            World::DeserializeStage => &[Export::Deserializer],
            World::TransformStage => &[Export::Transformer],
            World::RouteStage => &[Export::Router],
            World::Full => &Export::ALL,
        }
    }
}

/// What `check-guest` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Every export of the component, by name.
    pub exports: Vec<String>,
    /// Every import of the component, by name.
    pub imports: Vec<String>,
    /// What makes the component unusable (for the world asked for), one line each.
    pub problems: Vec<String>,
    /// Imports that load but reach nothing unless the config grants it, one line each.
    pub notes: Vec<String>,
}

/// Interfaces the host links (package prefixes, any version of WASI 0.2).
const PROVIDED: [&str; 7] = [
    "shardline:connector/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Compiles and links `path` and reports on it; `world: None` asks only that it exports
/// some stage interface.
pub fn check(engine: &WasmEngine, path: &Path, world: Option<World>) -> CheckReport {
    let mut report = CheckReport::default();
    let component = match engine.compile(path) {
        Ok(c) => c,
        Err(e) => {
            report.problems.push(one_line(&e.to_string()));
            return report;
        }
    };
    let ty = component.component_type();
    report.exports = ty
        .exports(&engine.engine)
        .map(|(n, _)| n.to_string())
        .collect();
    report.imports = ty
        .imports(&engine.engine)
        .map(|(n, _)| n.to_string())
        .collect();

    let mut unprovided = false;
    // capability note -> the imports it concerns
    let mut notes: Vec<(&str, Vec<&str>)> = Vec::new();
    for import in &report.imports {
        if !PROVIDED.iter().any(|p| import.starts_with(p)) {
            unprovided = true;
            report.problems.push(format!(
                "imports {import}, which the host does not provide (it provides shardline:connector and WASI 0.2 io, clocks, random, cli, filesystem, sockets)"
            ));
        } else if let Some(note) = capability_note(import) {
            match notes.iter_mut().find(|(n, _)| *n == note) {
                Some((_, imports)) => imports.push(import),
                None => notes.push((note, vec![import])),
            }
        }
    }
    report.notes = notes
        .into_iter()
        .map(|(note, imports)| format!("imports {}: {note}", imports.join(", ")))
        .collect();

    // What the world needs, by export name.
    let exported = |e: &Export| report.exports.iter().any(|x| x == e.interface());
    let missing: Vec<String> = match world {
        Some(w) => w
            .exports()
            .iter()
            .filter(|e| !exported(e))
            .map(|e| format!("does not export {e}, which world {} needs", w.name()))
            .collect(),
        None if !Export::ALL.iter().any(exported) => vec![format!(
            "exports no stage interface: a component exports at least one of {}",
            Export::ALL.map(|e| e.interface()).join(", ")
        )],
        None => Vec::new(),
    };
    report.problems.extend(missing);

    // Linking checks the imports' and exports' types against the host's.
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match ComponentInfo::link(engine, &name, path, component) {
        // An import the host lacks already explains a link failure.
        Err(e) if !unprovided => report.problems.push(e.to_string()),
        Err(_) => {}
        Ok(info) => {
            let needed = world.map(World::exports).unwrap_or(&Export::ALL);
            for e in needed.iter().filter(|e| exported(e) && !info.has(**e)) {
                report.problems.push(format!(
                    "exports {e}, but not with the functions and types of shardline:connector@0.1.0"
                ));
            }
        }
    }
    for p in &mut report.problems {
        *p = one_line(p);
    }
    report
}

/// A message on one line (wasmtime's parse errors span several).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a linked WASI capability interface reaches in the sandbox.
fn capability_note(import: &str) -> Option<&'static str> {
    let interface = import.split('@').next().unwrap_or(import);
    match interface {
        "wasi:filesystem/preopens" | "wasi:filesystem/types" => {
            Some("no directory is visible unless granted (stages.<stage>.grants.read_only_dirs)")
        }
        "wasi:cli/environment" => {
            Some("no environment variable is visible unless granted (stages.<stage>.grants.env)")
        }
        "wasi:clocks/wall-clock" | "wasi:clocks/monotonic-clock" => {
            Some("clocks read 0 unless granted (stages.<stage>.grants.clocks)")
        }
        i if i.starts_with("wasi:random/") => {
            Some("random is a fixed sequence unless granted (stages.<stage>.grants.random)")
        }
        i if i.starts_with("wasi:sockets/") => Some("no network: every socket is refused"),
        _ => None,
    }
}
