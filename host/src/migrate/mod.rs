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
mod draft;
pub mod flink;
pub mod pulsar_io;
pub mod samza;
pub mod statefun;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::config::{read_source, suggest, Config, ConfigError};

use self::draft::comment;
pub use self::draft::Draft;
pub use self::values::*;

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
