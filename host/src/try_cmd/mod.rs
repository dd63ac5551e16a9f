//! `shardline try`: runs a component on records from a file, with no AWS and no Pulsar, and
//! prints what each record became.
//!
//! The records go through the same code as in `shardline run`: a [`StagePlan`] loaded from a
//! config (the one given with `--config`, or one made for the component), instantiated once,
//! and [`StageSet::run_until`](crate::wasm::StageSet::run_until) per batch — so a call that
//! traps is retried record by record exactly as it is in production. Unlike `run`, nothing
//! stops at the first failure: every record is reported.
//!
//! Input (`--format`):
//! - `json` (default): one JSON object per line, `{"data": "text"}` or
//!   `{"data_base64": "..."}`, with optional `key`, `stream`, `shard` and `arrival`
//!   (milliseconds since the epoch, or RFC 3339). Blank lines and lines starting with `#`
//!   are skipped.
//! - `lines`: each line is one record's data.
//! - `length-prefixed`: a 4-byte big-endian length, then that many bytes, per record.
//!
//! Exit code: 0 every record went through (or was filtered out on purpose), 1 some record
//! was rejected by a stage, 2 bad input, config or component (nothing ran), 3 some call
//! failed (trap, timeout, memory limit, broken contract).

mod input;
mod report;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::ValueEnum;

use crate::config::{Config, SettingValue, StageConfig, StagesConfig};
use crate::wasm::bindings::{BatchContext, Destination, Output, SourceRecord};
use crate::wasm::{Export, FailureKind, RecordFailure, StagePlan, WasmEngine};

use input::*;
use report::*;

/// Exit code: some record was rejected by a stage.
pub const EXIT_REJECTED: u8 = 1;
/// Exit code: a call failed (trap, timeout, memory, contract).
pub const EXIT_FAILED: u8 = 3;

/// Shard named in the batch context when neither the input nor `--shard` says.
const DEFAULT_SHARD: &str = "shardId-000000000000";
/// Stream named in the batch context when neither the input, `--stream` nor the config says.
const DEFAULT_STREAM: &str = "try";

#[derive(Debug, clap::Args)]
pub struct TryArgs {
    /// The component (`.wasm`). Without `--config` it runs as `pipeline` when it exports
    /// `processor`, otherwise as every stage it exports. With `--config` it picks the
    /// config's stage(s) that name this file; without it, every configured stage runs.
    component: Option<PathBuf>,
    /// Records to run (`-`: stdin).
    #[arg(long, short)]
    input: PathBuf,
    /// How `--input` is written.
    #[arg(long, value_enum, default_value = "json")]
    format: InputFormat,
    /// A config whose `stages` (components, settings, grants) and `wasm` limits are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A setting handed to the component(s), over the config's (repeatable).
    #[arg(long = "setting", short = 's', value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Stream named in the batch context (default: the config's first stream, else `try`).
    #[arg(long)]
    stream: Option<String>,
    /// Shard named in the batch context.
    #[arg(long, default_value = DEFAULT_SHARD)]
    shard: String,
    /// Partition key of records that do not give one (default: the record's number, from 0).
    #[arg(long)]
    key: Option<String>,
    /// Arrival time of records that do not give one: milliseconds since the epoch or
    /// RFC 3339 (default: now).
    #[arg(long, value_parser = parse_arrival)]
    arrival: Option<i64>,
    /// Most records per call; consecutive records of the same stream and shard share a batch.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// One JSON object per record on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum InputFormat {
    /// One JSON object per line: `data` or `data_base64`, optional `key`, `stream`,
    /// `shard`, `arrival`.
    Json,
    /// Each line is one record's data.
    Lines,
    /// A 4-byte big-endian length, then the record's bytes.
    LengthPrefixed,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn parse_arrival(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{s:?} is neither milliseconds since the epoch nor RFC 3339: {e}"))
        .and_then(|t| millis_of(t).ok_or_else(|| format!("{s:?} is before 1970")))
}

fn millis_of(t: std::time::SystemTime) -> Option<i64> {
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as i64)
}

/// Why `try` did not run: the user's input, config or component (exit 2), or the machine.
#[derive(Debug)]
pub enum TryError {
    Invalid(anyhow::Error),
    Runtime(anyhow::Error),
}

/// One record of the input and where it says it comes from.
#[derive(Debug, Clone)]
struct InputRecord {
    stream: String,
    shard: String,
    record: SourceRecord,
}

/// Runs the command; `Ok` carries the exit code (0, [`EXIT_REJECTED`], [`EXIT_FAILED`]).
pub async fn run(args: TryArgs) -> Result<u8, TryError> {
    tokio::task::spawn_blocking(move || run_blocking(&args))
        .await
        .map_err(|e| TryError::Runtime(e.into()))?
}

fn run_blocking(args: &TryArgs) -> Result<u8, TryError> {
    let invalid = TryError::Invalid;
    let (config, engine) = stage_config(args)?;
    let stream = args
        .stream
        .clone()
        .or_else(|| args.config.as_ref().map(|_| config.first_stream()))
        .unwrap_or_else(|| DEFAULT_STREAM.to_string());
    let defaults = Defaults {
        stream,
        shard: args.shard.clone(),
        key: args.key.clone(),
        arrival: args
            .arrival
            .unwrap_or_else(|| millis_of(std::time::SystemTime::now()).unwrap_or(0)),
    };
    let records = read_records(&args.input, args.format, &defaults).map_err(invalid)?;
    let plan = StagePlan::load(&engine, &config).map_err(|e| invalid(e.into()))?;
    let mut set = plan.instantiate().map_err(|e| invalid(e.into()))?;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut tally = Tally::default();
    let mut start = 0;
    let mut batches = 0;
    while start < records.len() {
        let first = &records[start];
        let mut end = start + 1;
        while end < records.len()
            && end - start < args.batch as usize
            && records[end].stream == first.stream
            && records[end].shard == first.shard
        {
            end += 1;
        }
        let batch = &records[start..end];
        let ctx = BatchContext {
            stream_name: first.stream.clone(),
            shard_id: first.shard.clone(),
            millis_behind_latest: Some(0),
        };
        let sources: Vec<SourceRecord> = batch.iter().map(|r| r.record.clone()).collect();
        let outcome = set.run_until(&ctx, &sources, &|_| false);
        if !args.json {
            let _ = writeln!(
                out,
                "batch {}: stream {}, shard {}, {} record{}",
                batches + 1,
                ctx.stream_name,
                ctx.shard_id,
                batch.len(),
                plural(batch.len())
            );
        }
        let mut outputs = outcome.outputs.into_iter().peekable();
        let mut failures = outcome.failures.into_iter().peekable();
        for (i, r) in batch.iter().enumerate() {
            let i = i as u32;
            let mut mine = Vec::new();
            while let Some(o) = outputs.next_if(|o| o.index <= i) {
                if o.index == i {
                    mine.push(o);
                }
            }
            let mut failed = Vec::new();
            while let Some(f) = failures.next_if(|f| f.index <= i) {
                if f.index == i {
                    failed.push(f);
                }
            }
            let number = start + i as usize;
            tally.count(&mine, &failed);
            let text = if args.json {
                json_line(number, r, &mine, &failed)
            } else {
                human(number, r, &mine, &failed)
            };
            let _ = out.write_all(text.as_bytes());
        }
        batches += 1;
        start = end;
    }
    let summary = tally.summary(records.len(), batches);
    if args.json {
        let _ = out.flush();
        crate::report!("{summary}");
    } else {
        let _ = writeln!(out, "{summary}");
        let _ = out.flush();
    }
    Ok(tally.exit_code())
}

/// The config to run: the user's (its stages narrowed to the component, when one is given)
/// or one made for the component; and the engine with the config's limits.
fn stage_config(args: &TryArgs) -> Result<(Config, WasmEngine), TryError> {
    let invalid = TryError::Invalid;
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| invalid(e.into()))?,
        // Only the stages are used; the source and sink are there because a config has them.
        None => Config::from_yaml(
            "application: try\nsource:\n  stream: try\nsinks:\n  none:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: try\n",
            "(try)",
            PathBuf::from("."),
        )
        .map_err(|e| TryError::Runtime(e.into()))?,
    };
    let engine = WasmEngine::for_config(&config).map_err(|e| TryError::Runtime(e.into()))?;

    match (&args.component, &args.config) {
        (None, None) => {
            return Err(invalid(anyhow!(
            "name a component (shardline try COMPONENT --input FILE) or a config (--config FILE)"
        )))
        }
        (None, Some(path)) => {
            if config.stage_configs().is_empty() {
                return Err(invalid(anyhow!(
                    "{} configures no stage: name a component to try",
                    path.display()
                )));
            }
        }
        (Some(component), Some(path)) => {
            let want = std::fs::canonicalize(component)
                .with_context(|| format!("cannot read component {}", component.display()))
                .map_err(invalid)?;
            let same = |c: &Option<StageConfig>| {
                c.as_ref().is_some_and(|c| {
                    std::fs::canonicalize(config.resolve(&c.component)).is_ok_and(|p| p == want)
                })
            };
            let s = &config.stages;
            let kept = StagesConfig {
                pipeline: s.pipeline.clone().filter(|_| same(&s.pipeline)),
                deserialize: s.deserialize.clone().filter(|_| same(&s.deserialize)),
                transform: s.transform.clone().filter(|_| same(&s.transform)),
                route: s.route.clone().filter(|_| same(&s.route)),
            };
            config.stages = kept;
            if config.stage_configs().is_empty() {
                return Err(invalid(anyhow!(
                    "no stage of {} names component {} (drop --config to try it alone)",
                    path.display(),
                    component.display()
                )));
            }
        }
        (Some(component), None) => {
            let path = std::path::absolute(component)
                .with_context(|| format!("cannot read component {}", component.display()))
                .map_err(invalid)?;
            config.stages = stages_for(&engine, &path).map_err(invalid)?;
        }
    }
    for stage in [
        &mut config.stages.pipeline,
        &mut config.stages.deserialize,
        &mut config.stages.transform,
        &mut config.stages.route,
    ]
    .into_iter()
    .flatten()
    {
        for (k, v) in &args.settings {
            stage.settings.insert(k.clone(), SettingValue(v.clone()));
        }
    }
    Ok((config, engine))
}

/// Where a component goes when no config says: `pipeline` if it exports `processor`,
/// otherwise every stage whose interface it exports.
fn stages_for(engine: &WasmEngine, path: &Path) -> anyhow::Result<StagesConfig> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "component".into());
    let info = engine.load(path, &name)?;
    let stage = || {
        Some(StageConfig {
            component: path.to_path_buf(),
            settings: BTreeMap::new(),
            on_error: None,
            grants: Default::default(),
        })
    };
    if info.has(Export::Processor) {
        return Ok(StagesConfig {
            pipeline: stage(),
            ..Default::default()
        });
    }
    let stages = StagesConfig {
        pipeline: None,
        deserialize: info.has(Export::Deserializer).then(stage).flatten(),
        transform: info.has(Export::Transformer).then(stage).flatten(),
        route: info.has(Export::Router).then(stage).flatten(),
    };
    if stages.deserialize.is_none() && stages.transform.is_none() && stages.route.is_none() {
        bail!(
            "component {} exports no stage interface of shardline:connector (processor, deserializer, transformer or router); `shardline check-guest {}` shows what it exports",
            path.display(),
            path.display()
        );
    }
    Ok(stages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_with_the_dead_letter_encoder() {
        for input in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0, 255, 7],
        ] {
            let enc = crate::sinks::dead_letter::base64(input);
            assert_eq!(base64_decode(&enc).as_deref(), Ok(input), "{enc}");
        }
        assert!(base64_decode("a").is_err());
        assert!(base64_decode("ab$c").is_err());
    }

    fn defaults() -> Defaults {
        Defaults {
            stream: "s".into(),
            shard: "shardId-1".into(),
            key: None,
            arrival: 5,
        }
    }

    #[test]
    fn json_lines_take_every_field() {
        let r = json_record(
            br#"{"data_base64":"AAE=","key":"k","stream":"t","shard":"x","arrival":"1970-01-01T00:00:01Z"}"#,
            3,
            &defaults(),
        )
        .expect("valid");
        assert_eq!(r.record.data, vec![0, 1]);
        assert_eq!(
            (
                r.record.partition_key.as_str(),
                r.stream.as_str(),
                r.shard.as_str()
            ),
            ("k", "t", "x")
        );
        assert_eq!(r.record.arrival_millis, 1000);
        let d = json_record(br#"{"data":"x"}"#, 3, &defaults()).expect("valid");
        assert_eq!(
            (d.record.partition_key.as_str(), d.record.arrival_millis),
            ("3", 5)
        );
    }

    #[test]
    fn bad_json_lines_say_what_is_wrong() {
        let err = |line: &str| {
            json_record(line.as_bytes(), 0, &defaults())
                .expect_err("invalid")
                .to_string()
        };
        assert!(err(r#"{"id": 1}"#).contains("use --format lines"));
        assert!(err(r#"{"data": 1}"#).contains("field data must be a string"));
        assert!(err(r#"{"key": "k"}"#).contains("no data"));
        assert!(err("[1]").contains("not a JSON object"));
        assert!(err(r#"{"data":"a","data_base64":"YQ=="}"#).contains("not both"));
    }
}
