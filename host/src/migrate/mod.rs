//! Migration: the config of a Pulsar IO Kinesis source, a Flink StateFun remote module, a
//! Samza job or a Flink Kinesis connector, read as it is and turned into a native Shardline
//! config, with a note for every key that was ignored or changed meaning.
//!
//! Each format has its own module ([`pulsar_io`], [`statefun`], [`samza`], [`flink`]) that
//! writes a [`Draft`]: the native YAML tree, where each value came from (a trailing
//! comment), and the [`Note`]s. This module then adds what the source format does not say
//! (the destination, from `--to` or an overlay), merges the overlay (a small native YAML
//! file whose keys win), renders commented YAML and parses that text with
//! [`Config::from_yaml`] — so `shardline convert` prints exactly what `shardline run
//! --from` runs.
//!
//! Unknown or misspelled keys are errors naming the key, its line and the nearest valid key;
//! keys that are valid in the source system but mean nothing to Shardline are notes, never
//! dropped silently. Secrets are redacted in rendered output unless asked for.

pub mod cli;
pub mod flink;
pub mod pulsar_io;
pub mod samza;
pub mod statefun;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::config::{read_source, suggest, Config, ConfigError};

/// A configuration format users come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Pulsar IO Kinesis source config (YAML or JSON, with or without `configs:`).
    PulsarIo,
    /// Flink StateFun remote module YAML (Kinesis ingress and egress).
    Statefun,
    /// Samza job properties (KinesisSystemFactory systems).
    Samza,
    /// Flink Kinesis connector consumer/producer `Properties`.
    Flink,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::PulsarIo,
        Format::Statefun,
        Format::Samza,
        Format::Flink,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::PulsarIo => "pulsar-io",
            Format::Statefun => "statefun",
            Format::Samza => "samza",
            Format::Flink => "flink",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The sink a converted config sends its records to, when the source format does not say
/// (`--to`). (A guest's [`crate::wasm::bindings::Destination`] is another thing: where one
/// event goes, chosen at run time.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertedSink {
    /// A Pulsar topic (`persistent://public/default/x`).
    Pulsar(String),
    /// A Kinesis stream (`kinesis:name`), through the KPL-grade producer.
    Kinesis(String),
}

impl ConvertedSink {
    /// `kinesis:NAME` is a stream; anything else a Pulsar topic.
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("kinesis:") {
            Some(s) => ConvertedSink::Kinesis(s.to_string()),
            None => ConvertedSink::Pulsar(text.to_string()),
        }
    }
}

/// What the user adds to a foreign config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--to`: the destination topic or stream.
    pub to: Option<ConvertedSink>,
    /// `--pulsar-url`: the Pulsar service URL of a Pulsar destination.
    pub pulsar_url: Option<String>,
    /// `--stream`: the stream, for formats that name it in code (Flink).
    pub stream: Option<String>,
    /// `--overlay`: a native YAML fragment whose keys win.
    pub overlay: Option<PathBuf>,
}

/// The Pulsar service URL when neither `--pulsar-url` nor the overlay gives one.
pub const DEFAULT_PULSAR_URL: &str = "pulsar://127.0.0.1:6650";

/// How a key of the source config fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteKind {
    /// Means something different in Shardline, or was mapped approximately.
    Changed,
    /// Shardline needed a value the source does not have; this one was chosen.
    Added,
    /// Valid in the source system but without a meaning in Shardline.
    Ignored,
}

impl NoteKind {
    fn label(self) -> &'static str {
        match self {
            NoteKind::Changed => "changed",
            NoteKind::Added => "added",
            NoteKind::Ignored => "ignored",
        }
    }
}

/// One mapping note: a key of the source config and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    /// The key in the source config (`awsRegion`, `systems.k.aws.clientConfig.X`).
    pub key: String,
    /// The native key it relates to, if any (`source.retrieval`).
    pub native: Option<String>,
    pub text: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.label(), self.key)?;
        if let Some(n) = &self.native {
            write!(f, " → {n}")?;
        }
        write!(f, ": {}", self.text)
    }
}

/// Why a foreign config could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    /// A key the format does not have (a typo, most of the time).
    #[error("{file}: unknown key `{key}`{}{}", line.map(|l| format!(" at line {l}")).unwrap_or_default(), suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownKey {
        file: String,
        key: String,
        line: Option<usize>,
        suggestion: Option<String>,
    },
    /// A key with a value that cannot be used.
    #[error("{file}: {key}: {message}{}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Invalid {
        file: String,
        key: String,
        line: Option<usize>,
        message: String,
    },
    /// The converted config is not valid (something the overlay or flags must add).
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// A converted config: the native config, its commented YAML and the notes.
#[derive(Debug)]
pub struct Converted {
    pub config: Config,
    pub notes: Vec<Note>,
    draft: Draft,
    header: String,
}

impl Converted {
    /// The native YAML with a comment on every key that was ignored or changed meaning;
    /// secrets are `<redacted>` unless `secrets` is true.
    pub fn yaml(&self, secrets: bool) -> String {
        let mut out = self.header.clone();
        out.push_str(&self.draft.render(secrets));
        let ignored: Vec<&Note> = self
            .notes
            .iter()
            .filter(|n| n.native.is_none() || n.kind == NoteKind::Ignored)
            .collect();
        if !ignored.is_empty() {
            out.push_str("\n# Not carried over:\n");
            for n in ignored {
                let line = format!("{} {}: {}", n.kind.label(), n.key, n.text);
                out.push_str(&format!("#   {}\n", comment(&line)));
            }
        }
        out
    }
}

/// Reads `path` as `format` and converts it.
pub fn load(path: &Path, format: Format, opts: &Options) -> Result<Converted, MigrateError> {
    let file = path.display().to_string();
    let (text, base_dir) = read_source(path).map_err(|source| MigrateError::Read {
        file: file.clone(),
        source,
    })?;
    convert(&text, &file, base_dir, format, opts)
}

/// Converts config text; `file` names it in errors and notes.
pub fn convert(
    text: &str,
    file: &str,
    base_dir: PathBuf,
    format: Format,
    opts: &Options,
) -> Result<Converted, MigrateError> {
    let src = Source {
        file: file.to_string(),
        text: text.to_string(),
    };
    let mut draft = match format {
        Format::PulsarIo => pulsar_io::convert(&src, opts)?,
        Format::Statefun => statefun::convert(&src, opts)?,
        Format::Samza => samza::convert(&src, opts)?,
        Format::Flink => flink::convert(&src, opts)?,
    };
    draft.add_destination(opts);
    if let Some(path) = &opts.overlay {
        let otext = std::fs::read_to_string(path).map_err(|source| MigrateError::Read {
            file: path.display().to_string(),
            source,
        })?;
        let overlay = yaml_value(&otext, &path.display().to_string())?;
        draft.merge_overlay(overlay, &path.display().to_string());
    }
    draft.unpark_producer();
    if draft.get("sinks").is_none() {
        return Err(MigrateError::Invalid {
            file: file.to_string(),
            key: "(destination)".into(),
            line: None,
            message: "no destination: pass --to TOPIC (Pulsar) or --to kinesis:STREAM, or give sinks in an overlay".into(),
        });
    }
    if draft.get("source.stream").is_none() && draft.get("source.streams").is_none() {
        return Err(MigrateError::Invalid {
            file: file.to_string(),
            key: "(source)".into(),
            line: None,
            message: format!("no stream to read: {}", match format {
                Format::Flink => "pass --stream NAME (Flink names it in code) or set source.stream in an overlay",
                _ => "set application and source.stream in an overlay",
            }),
        });
    }
    let rendered = draft.render(true);
    let header = format!(
        "# Shardline config converted from {format} config {}.\n\
         # Each key says where it came from; a key that was ignored or changed meaning\n\
         # has a comment (`changed`, `added`, `ignored`).\n",
        comment(file)
    );
    let config = Config::from_yaml(&rendered, &format!("{file} (as converted)"), base_dir)?;
    Ok(Converted {
        config,
        notes: draft.notes.clone(),
        draft,
        header,
    })
}

/// YAML text as a tree, its flow nesting bounded first (see [`crate::config::nesting`]).
pub(crate) fn yaml_value(text: &str, file: &str) -> Result<Value, MigrateError> {
    let parse = |message| MigrateError::Parse {
        file: file.to_string(),
        message,
    };
    crate::config::nesting::check(text).map_err(parse)?;
    serde_yaml::from_str(text).map_err(|e| parse(e.to_string()))
}

/// The source text and its name, for errors with lines.
#[derive(Debug)]
pub struct Source {
    pub file: String,
    pub text: String,
}

impl Source {
    /// The 1-based line where `needle` (a key) first appears.
    pub fn line_of(&self, needle: &str) -> Option<usize> {
        self.text
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
    }

    pub fn unknown(&self, key: &str, shown: &str, valid: &[&str]) -> MigrateError {
        let last = key.rsplit('.').next().unwrap_or(key);
        MigrateError::UnknownKey {
            file: self.file.clone(),
            key: shown.to_string(),
            line: self.line_of(key).or_else(|| self.line_of(last)),
            suggestion: suggest::nearest(last, valid.iter().copied()).map(str::to_string),
        }
    }

    pub fn invalid(&self, key: &str, message: impl Into<String>) -> MigrateError {
        let last = key.rsplit('.').next().unwrap_or(key);
        MigrateError::Invalid {
            file: self.file.clone(),
            key: key.to_string(),
            line: self.line_of(last),
            message: message.into(),
        }
    }
}

/// A native config being written: the YAML tree, where each value came from, and notes.
#[derive(Debug, Default)]
pub struct Draft {
    root: Mapping,
    /// Trailing comment per native key path: the source key(s).
    origins: BTreeMap<String, String>,
    /// Comment lines above a native key path.
    comments: BTreeMap<String, Vec<String>>,
    /// Paths of secret values (redacted when rendered).
    secrets: Vec<String>,
    pub notes: Vec<Note>,
}

impl Draft {
    /// Sets `path` (`a.b.c`) to `value`, noting that it came from `origin`.
    pub fn set(&mut self, path: &str, value: impl Into<Value>, origin: &str) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut map = &mut self.root;
        for p in parts {
            let key = Value::String(p.to_string());
            if !matches!(map.get(&key), Some(Value::Mapping(_))) {
                map.insert(key.clone(), Value::Mapping(Mapping::new()));
            }
            map = match map.get_mut(&key) {
                Some(Value::Mapping(m)) => m,
                _ => unreachable!("inserted a mapping above"),
            };
        }
        map.insert(Value::String(last.to_string()), value.into());
        if !origin.is_empty() {
            self.origins.insert(path.to_string(), origin.to_string());
        }
    }

    /// Sets a secret: rendered as `<redacted>` unless secrets are asked for.
    pub fn set_secret(&mut self, path: &str, value: impl Into<Value>, origin: &str) {
        self.set(path, value, origin);
        self.secrets.push(path.to_string());
    }

    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut v: Option<&Value> = None;
        let mut map = Some(&self.root);
        for p in path.split('.') {
            v = map.and_then(|m| m.get(p));
            map = v.and_then(Value::as_mapping);
        }
        v
    }

    fn remove(&mut self, path: &str) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut map = &mut self.root;
        for p in parts {
            match map.get_mut(p) {
                Some(Value::Mapping(m)) => map = m,
                _ => return,
            }
        }
        map.shift_remove(last);
    }

    /// Moves every value under `from` to `to` (`a.b` → `c.d`), with its origin.
    pub fn move_tree(&mut self, from: &str, to: &str) {
        let Some(Value::Mapping(parked)) = self.get(from).cloned() else {
            return;
        };
        self.remove(from);
        for (k, v) in parked {
            let k = k.as_str().unwrap_or_default().to_string();
            let origin = self
                .origins
                .remove(&format!("{from}.{k}"))
                .unwrap_or_default();
            self.set(&format!("{to}.{k}"), v, &origin);
        }
    }

    /// A note; `changed` and `added` notes with a native key also become a comment above it.
    pub fn note(
        &mut self,
        kind: NoteKind,
        key: &str,
        native: Option<&str>,
        text: impl Into<String>,
    ) {
        let text = text.into();
        if let (Some(n), NoteKind::Changed | NoteKind::Added) = (native, kind) {
            self.comments
                .entry(n.to_string())
                .or_default()
                .push(format!("{} {key}: {text}", kind.label()));
        }
        self.notes.push(Note {
            kind,
            key: key.to_string(),
            native: native.map(str::to_string),
            text,
        });
    }

    pub fn ignore(&mut self, key: &str, text: impl Into<String>) {
        self.note(NoteKind::Ignored, key, None, text);
    }

    /// Adds the `--to` destination as sink `main`, unless the draft or overlay has sinks.
    fn add_destination(&mut self, opts: &Options) {
        match &opts.to {
            Some(ConvertedSink::Pulsar(topic)) => {
                let url = opts.pulsar_url.as_deref().unwrap_or(DEFAULT_PULSAR_URL);
                self.set("sinks.main.pulsar.service_url", url, "--pulsar-url");
                self.set("sinks.main.pulsar.topic", topic.as_str(), "--to");
                if opts.pulsar_url.is_none() {
                    self.note(
                        NoteKind::Added,
                        "--pulsar-url",
                        Some("sinks.main.pulsar.service_url"),
                        format!("not given; {DEFAULT_PULSAR_URL} assumed"),
                    );
                }
            }
            Some(ConvertedSink::Kinesis(stream)) => {
                self.set("sinks.main.kinesis.stream", stream.as_str(), "--to");
            }
            None => {}
        }
    }

    /// Producer tunables a format parked go to the Kinesis sink (from the format, `--to` or
    /// the overlay); without one they are noted as ignored.
    fn unpark_producer(&mut self) {
        // Message shape settings a format parked for Pulsar sinks.
        if let Some(Value::Mapping(parked)) = self.get("_pulsar").cloned() {
            self.remove("_pulsar");
            let sinks: Vec<String> = match self.get("sinks").and_then(Value::as_mapping) {
                Some(sinks) => sinks
                    .iter()
                    .filter(|(_, s)| s.get("pulsar").is_some())
                    .filter_map(|(n, _)| n.as_str().map(str::to_string))
                    .collect(),
                None => Vec::new(),
            };
            for (k, v) in parked {
                let k = k.as_str().unwrap_or_default().to_string();
                let origin = self.origins.remove(&format!("_pulsar.{k}"));
                if sinks.is_empty() {
                    self.ignore(
                        origin.as_deref().unwrap_or(&k),
                        "a Pulsar message setting; there is no Pulsar sink",
                    );
                }
                for name in &sinks {
                    self.set(
                        &format!("sinks.{name}.pulsar.{k}"),
                        v.clone(),
                        origin.as_deref().unwrap_or(""),
                    );
                }
            }
        }
        if let Some(Value::Mapping(parked)) = self.get("_kinesis_producer").cloned() {
            self.remove("_kinesis_producer");
            let sink = match self.get("sinks").and_then(Value::as_mapping) {
                Some(sinks) => sinks
                    .iter()
                    .find_map(|(name, s)| s.get("kinesis").and(name.as_str().map(str::to_string))),
                None => None,
            };
            for (k, v) in parked {
                let k = k.as_str().unwrap_or_default().to_string();
                let origin = self.origins.remove(&format!("_kinesis_producer.{k}"));
                match &sink {
                    Some(name) => {
                        self.set(
                            &format!("sinks.{name}.kinesis.{k}"),
                            v,
                            origin.as_deref().unwrap_or(""),
                        );
                    }
                    None => self.ignore(
                        origin.as_deref().unwrap_or(&k),
                        "a producer setting; it applies when the destination is a Kinesis stream (--to kinesis:NAME)",
                    ),
                }
            }
        }
    }

    /// Merges a native YAML fragment: its maps merge key by key, everything else (lists,
    /// scalars, `aws.credentials`, `source.stream`/`source.streams`) replaces.
    fn merge_overlay(&mut self, overlay: Value, file: &str) {
        let Value::Mapping(o) = overlay else { return };
        if let Some(Value::Mapping(src)) = o.get("source") {
            if src.contains_key("stream") || src.contains_key("streams") {
                self.remove("source.stream");
                self.remove("source.streams");
            }
        }
        let origin = format!("overlay {file}");
        self.merge_at("", o, &origin);
    }

    fn merge_at(&mut self, prefix: &str, m: Mapping, origin: &str) {
        for (k, v) in m {
            let Some(k) = k.as_str() else { continue };
            let path = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            let replace_whole = path == "aws.credentials";
            match v {
                Value::Mapping(inner) if !replace_whole && !inner.is_empty() => {
                    self.merge_at(&path, inner, origin)
                }
                other => {
                    // What was under the replaced key goes with it.
                    let under = format!("{path}.");
                    self.secrets
                        .retain(|s| *s != path && !s.starts_with(&under));
                    self.origins.retain(|k, _| !k.starts_with(&under));
                    self.comments.retain(|k, _| !k.starts_with(&under));
                    self.set(&path, other, origin);
                }
            }
        }
    }

    /// YAML text with origins as trailing comments and notes above their keys.
    pub fn render(&self, secrets: bool) -> String {
        let mut out = String::new();
        self.render_map(&self.root, "", 0, secrets, &mut out);
        out
    }

    fn render_map(
        &self,
        m: &Mapping,
        prefix: &str,
        indent: usize,
        secrets: bool,
        out: &mut String,
    ) {
        let pad = " ".repeat(indent);
        let mut entries: Vec<(&Value, &Value)> = m.iter().collect();
        if prefix.is_empty() {
            // The order of config/full.yaml.
            const ORDER: &[&str] = &[
                "application",
                "source",
                "aws",
                "leases",
                "checkpoint",
                "stages",
                "wasm",
                "sinks",
                "default_sink",
                "errors",
            ];
            entries.sort_by_key(|(k, _)| {
                ORDER
                    .iter()
                    .position(|o| Some(*o) == k.as_str())
                    .unwrap_or(ORDER.len())
            });
        }
        for (k, v) in entries {
            let key = scalar(k);
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            for c in self.comments.get(&path).into_iter().flatten() {
                out.push_str(&format!("{pad}# {}\n", comment(c)));
            }
            let trailing = self
                .origins
                .get(&path)
                .map(|o| format!("  # {}", comment(o)))
                .unwrap_or_default();
            match v {
                Value::Mapping(inner) if !inner.is_empty() => {
                    out.push_str(&format!("{pad}{key}:{trailing}\n"));
                    self.render_map(inner, &path, indent + 2, secrets, out);
                }
                Value::Sequence(items) if !items.is_empty() => {
                    out.push_str(&format!("{pad}{key}:{trailing}\n"));
                    for (i, item) in items.iter().enumerate() {
                        let ipath = format!("{path}.{i}");
                        match item {
                            Value::Mapping(im) if !im.is_empty() => {
                                let mut sub = String::new();
                                self.render_map(im, &ipath, indent + 4, secrets, &mut sub);
                                let mut first = true;
                                for line in sub.lines() {
                                    if first && !line.trim_start().starts_with('#') {
                                        out.push_str(&format!(
                                            "{pad}  - {}\n",
                                            &line[indent + 4..]
                                        ));
                                        first = false;
                                    } else {
                                        out.push_str(line);
                                        out.push('\n');
                                    }
                                }
                            }
                            other => out.push_str(&format!("{pad}  - {}\n", scalar(other))),
                        }
                    }
                }
                other => {
                    let shown = if !secrets && self.secrets.contains(&path) {
                        "<redacted>".to_string()
                    } else {
                        scalar(other)
                    };
                    out.push_str(&format!("{pad}{key}: {shown}{trailing}\n"));
                }
            }
        }
    }
}

/// Text for a `#` comment: one line, without the characters YAML refuses in a file
/// (control characters, U+FFFE, U+FFFF), which are shown escaped (`\n`, `\0`). Keys
/// and values of the source config end up in comments; oddly spelled ones must neither end
/// the comment early nor make the printed config unreadable (found by fuzz/config_parse).
fn comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// One YAML scalar (or `{}` / `[]`), quoted where YAML needs it.
fn scalar(v: &Value) -> String {
    match v {
        Value::Mapping(m) if m.is_empty() => "{}".into(),
        Value::Sequence(s) if s.is_empty() => "[]".into(),
        _ => serde_yaml::to_string(v)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
    }
}

/// A YAML scalar as text (strings, numbers, booleans); `None` for anything else.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Milliseconds as a native duration (`60s`, `1500ms`).
pub fn millis(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A Java-ish boolean (`true`/`false`, any case).
pub fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The KPL properties (amazon-kinesis-producer default_config.properties), for egress and
/// producer configs: the ones Shardline's producer shares are mapped, the rest noted.
pub const KPL_PROPERTIES: &[&str] = &[
    "AggregationEnabled",
    "AggregationMaxCount",
    "AggregationMaxSize",
    "CloudwatchEndpoint",
    "CloudwatchPort",
    "CollectionMaxCount",
    "CollectionMaxSize",
    "ConnectTimeout",
    "CredentialsRefreshDelay",
    "EnableCoreDumps",
    "FailIfThrottled",
    "KinesisEndpoint",
    "KinesisPort",
    "LogLevel",
    "MaxConnections",
    "MetricsGranularity",
    "MetricsLevel",
    "MetricsNamespace",
    "MetricsUploadDelay",
    "MinConnections",
    "NativeExecutable",
    "RateLimit",
    "RecordMaxBufferedTime",
    "RecordTtl",
    "Region",
    "RequestTimeout",
    "StsEndpoint",
    "StsPort",
    "TempDirectory",
    "ThreadingModel",
    "ThreadPoolSize",
    "UserRecordTimeoutInMillis",
    "VerifyCertificate",
];

/// Maps one KPL property onto the Kinesis sink (parked under `_kinesis_producer` until the
/// sink exists). `key` is how the user wrote it, for notes.
pub fn kpl_property(
    d: &mut Draft,
    src: &Source,
    key: &str,
    name: &str,
    value: &str,
) -> Result<(), MigrateError> {
    let num = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| src.invalid(key, format!("expected a whole number, got {v:?}")))
    };
    let park = |d: &mut Draft, native: &str, v: Value| {
        d.set(&format!("_kinesis_producer.{native}"), v, key);
    };
    match name {
        "AggregationEnabled" => {
            let b = boolean(value).ok_or_else(|| {
                src.invalid(key, format!("expected true or false, got {value:?}"))
            })?;
            park(d, "aggregation", Value::Bool(b));
        }
        "AggregationMaxSize" => park(d, "aggregation_max_size", num(value)?.into()),
        "CollectionMaxCount" => park(d, "max_request_records", num(value)?.into()),
        "CollectionMaxSize" => park(d, "max_request_bytes", num(value)?.into()),
        "RecordMaxBufferedTime" => park(d, "max_buffered_time", millis(num(value)?).into()),
        "RecordTtl" => park(d, "record_ttl", millis(num(value)?).into()),
        "RequestTimeout" => park(d, "request_timeout", millis(num(value)?).into()),
        "MaxConnections" => park(d, "max_connections", num(value)?.into()),
        "RateLimit" => park(d, "rate_limit", num(value)?.into()),
        "Region" => park(d, "region", value.into()),
        "KinesisEndpoint" => park(
            d,
            "endpoint",
            if value.starts_with("http") {
                value.to_string()
            } else {
                format!("https://{value}")
            }
            .into(),
        ),
        "AggregationMaxCount" => d.ignore(
            key,
            "Shardline bounds aggregates by size only (aggregation_max_size)",
        ),
        "FailIfThrottled" => d.ignore(
            key,
            "Shardline retries throttled records until record_ttl, then dead-letters them",
        ),
        "MetricsLevel" | "MetricsGranularity" | "MetricsNamespace" | "MetricsUploadDelay"
        | "CloudwatchEndpoint" | "CloudwatchPort" => d.ignore(
            key,
            "KPL metrics; Shardline's metrics are configured separately",
        ),
        "ThreadingModel"
        | "ThreadPoolSize"
        | "NativeExecutable"
        | "TempDirectory"
        | "EnableCoreDumps"
        | "LogLevel"
        | "MinConnections"
        | "ConnectTimeout"
        | "CredentialsRefreshDelay"
        | "VerifyCertificate"
        | "KinesisPort"
        | "StsEndpoint"
        | "StsPort"
        | "UserRecordTimeoutInMillis" => d.ignore(
            key,
            "a setting of the KPL's native process; Shardline's producer runs in-process",
        ),
        _ => return Err(src.unknown(key, key, KPL_PROPERTIES)),
    }
    Ok(())
}

/// Java `.properties` text as (line, key, value), in order. `//` lines are taken as
/// comments too (the seeds write them; Java would read them as keys and ignore them).
pub fn parse_properties(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let (start, mut acc) = match pending.take() {
            Some((s, acc)) => (s, acc),
            None => {
                if line.is_empty()
                    || line.starts_with('#')
                    || line.starts_with('!')
                    || line.starts_with("//")
                {
                    continue;
                }
                (i + 1, String::new())
            }
        };
        if let Some(cont) = line.strip_suffix('\\') {
            acc.push_str(cont);
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(line);
        let split = acc
            .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
            .unwrap_or(acc.len());
        let key = acc[..split].trim().to_string();
        let rest = acc[split..].trim_start();
        let value = rest
            .strip_prefix('=')
            .or_else(|| rest.strip_prefix(':'))
            .unwrap_or(rest)
            .trim()
            .to_string();
        out.push((start, key, value));
    }
    out
}

/// An RFC 3339 UTC time from `yyyy-MM-dd HH:mm:ss[.SSS] Z|±hhmm|±hh:mm` or an RFC 3339 /
/// `T`-separated time with an offset.
pub fn utc_time(text: &str) -> Option<String> {
    let t = text.trim();
    let (main, offset_secs) = if let Some(m) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        (m.trim_end(), 0i64)
    } else {
        // a trailing ±hh:mm or ±hhmm
        let pos = t.rfind(['+', '-']).filter(|p| *p > 10)?;
        let (m, off) = t.split_at(pos);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let digits: String = off[1..].chars().filter(char::is_ascii_digit).collect();
        if digits.len() != 4 {
            return None;
        }
        let h: i64 = digits[..2].parse().ok()?;
        let mi: i64 = digits[2..].parse().ok()?;
        (m.trim_end(), sign * (h * 3600 + mi * 60))
    };
    let iso = format!("{}Z", main.replacen(' ', "T", 1));
    let t = humantime::parse_rfc3339_weak(&iso).ok()?;
    let t = if offset_secs >= 0 {
        t.checked_sub(std::time::Duration::from_secs(offset_secs as u64))?
    } else {
        t.checked_add(std::time::Duration::from_secs((-offset_secs) as u64))?
    };
    let s = humantime::format_rfc3339_millis(t).to_string();
    Some(s.replace(".000Z", "Z"))
}

/// A KCL application name or lease table name that Shardline accepts as `application`.
pub fn app_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_like_java() {
        let p = parse_properties("# c\n// c\na=1\nb : 2\nc 3\nd=multi\\\n  line\n\ne=\n");
        let kv: Vec<(&str, &str)> = p.iter().map(|(_, k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            kv,
            [
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "multiline"),
                ("e", "")
            ]
        );
        assert_eq!(p[3].0, 6);
    }

    #[test]
    fn times_become_utc() {
        assert_eq!(
            utc_time("2020-02-01 04:15:00.00 Z").as_deref(),
            Some("2020-02-01T04:15:00Z")
        );
        assert_eq!(
            utc_time("2020-08-09T19:28:58.000+02:00").as_deref(),
            Some("2020-08-09T17:28:58Z")
        );
        assert_eq!(
            utc_time("2020-08-09 19:28:58.5 -0130").as_deref(),
            Some("2020-08-09T20:58:58.500Z")
        );
        assert_eq!(utc_time("yesterday"), None);
    }

    #[test]
    fn odd_characters_in_source_keys_stay_inside_their_comments() {
        // A control character in an ignored key made the printed config unreadable; a line
        // break would have ended the comment and put the rest in the config.
        let text = "systems.k.samza.factory=org.apache.samza.system.kinesis.KinesisSystemFactory\n\
                    task.inputs=k.in\n\
                    systems.k.streams.in.aws.region=eu-west-1\n\
                    job.sys\u{0}tem.x=1\n";
        let opts = Options {
            to: Some(ConvertedSink::Pulsar("out".into())),
            ..Options::default()
        };
        let converted = convert(
            text,
            "job\n.properties",
            PathBuf::from("."),
            Format::Samza,
            &opts,
        )
        .expect("converts");
        let yaml = converted.yaml(true);
        assert!(yaml.contains("job.sys\\0tem.x"), "{yaml}");
        assert!(yaml.contains("config job\\n.properties."), "{yaml}");
        Config::from_yaml(&yaml, "printed", PathBuf::from(".")).expect("reads back");

        let mut d = Draft::default();
        d.set("application", "a", "app\nsinks: {}");
        d.note(NoteKind::Changed, "x", Some("application"), "two\nlines");
        let rendered = d.render(true);
        assert_eq!(
            rendered,
            "# changed x: two\\nlines\napplication: a  # app\\nsinks: {}\n"
        );
    }

    #[test]
    fn drafts_render_comments_and_redact() {
        let mut d = Draft::default();
        d.set("application", "a", "applicationName");
        d.set_secret("aws.credentials.secret_access_key", "s3cr3t", "secretKey");
        d.note(NoteKind::Changed, "x", Some("application"), "differs");
        d.set(
            "source.streams",
            Value::Sequence(vec![serde_yaml::from_str("name: s1").expect("yaml")]),
            "",
        );
        let text = d.render(false);
        assert_eq!(
            text,
            "# changed x: differs\napplication: a  # applicationName\nsource:\n  streams:\n    - name: s1\naws:\n  credentials:\n    secret_access_key: <redacted>  # secretKey\n"
        );
        assert!(d.render(true).contains("s3cr3t"));
    }
}
