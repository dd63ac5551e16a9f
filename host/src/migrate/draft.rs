//! A native config being written by a converter: the YAML tree, where each value came
//! from (a trailing comment), comments above keys, secrets to redact, and the notes; and
//! its rendering as commented YAML.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use super::{ConvertedSink, Note, NoteKind, Options, DEFAULT_PULSAR_URL};

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

    pub(super) fn remove(&mut self, path: &str) {
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
    pub(super) fn add_destination(&mut self, opts: &Options) {
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
    pub(super) fn unpark_producer(&mut self) {
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
    pub(super) fn merge_overlay(&mut self, overlay: Value, file: &str) {
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

    pub(super) fn merge_at(&mut self, prefix: &str, m: Mapping, origin: &str) {
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

    pub(super) fn render_map(
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
pub(super) fn comment(text: &str) -> String {
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
