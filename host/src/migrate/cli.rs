//! Command-line parts of migration: `shardline convert` and the `--from` flags that let
//! `run` and `validate` take a foreign config directly.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{ConvertedSink, Format, MigrateError, Options};
use crate::config::{Config, ConfigError};

/// `--from` and what a foreign config cannot say itself.
#[derive(Debug, Clone, Default, Args)]
pub struct FromArgs {
    /// The config is not Shardline's but pulsar-io, statefun, samza or flink: it is
    /// converted (the mapping notes are logged).
    #[arg(long, value_parser = parse_format)]
    pub from: Option<Format>,
    /// Destination of the records: a Pulsar topic, or `kinesis:STREAM`.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Pulsar service URL for a Pulsar destination (default pulsar://127.0.0.1:6650).
    #[arg(long, requires = "from")]
    pub pulsar_url: Option<String>,
    /// The stream to read, for formats that name it in code (flink).
    #[arg(long, requires = "from")]
    pub stream: Option<String>,
    /// A native YAML fragment merged over the converted config (its keys win).
    #[arg(long, requires = "from")]
    pub overlay: Option<PathBuf>,
}

impl FromArgs {
    fn options(&self) -> Options {
        Options {
            to: self.to.as_deref().map(ConvertedSink::parse),
            pulsar_url: self.pulsar_url.clone(),
            stream: self.stream.clone(),
            overlay: self.overlay.clone(),
        }
    }

    /// The native config: as written, or converted from `--from` with every mapping note
    /// logged (secrets never are).
    pub fn load(&self, path: &Path) -> Result<Config, LoadError> {
        let Some(format) = self.from else {
            return Ok(Config::load(path)?);
        };
        let converted = super::load(path, format, &self.options())?;
        tracing::info!(
            file = %path.display(),
            from = %format,
            notes = converted.notes.len(),
            "converted a {format} config"
        );
        for note in &converted.notes {
            tracing::warn!(from = %format, "{note}");
        }
        Ok(converted.config)
    }
}

/// A native or foreign config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Native(#[from] ConfigError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
}

/// `shardline convert --from FORMAT FILE`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// The foreign config file.
    pub file: PathBuf,
    #[command(flatten)]
    pub from: FromArgs,
    /// Print secrets (secret keys, session tokens, proxy passwords) instead of `<redacted>`.
    #[arg(long)]
    pub show_secrets: bool,
}

/// Prints the converted config; errors are the user's to fix.
pub fn convert(args: &ConvertArgs) -> Result<(), MigrateError> {
    let Some(format) = args.from.from else {
        return Err(MigrateError::Parse {
            file: args.file.display().to_string(),
            message: format!(
                "convert needs --from ({})",
                Format::ALL.map(Format::name).join(", ")
            ),
        });
    };
    let converted = super::load(&args.file, format, &args.from.options())?;
    print!("{}", converted.yaml(args.show_secrets));
    Ok(())
}

fn parse_format(name: &str) -> Result<Format, String> {
    Format::parse(name).ok_or_else(|| {
        let names = Format::ALL.map(Format::name);
        let hint = crate::config::suggest::nearest(name, names)
            .map(|n| format!(" (did you mean {n}?)"))
            .unwrap_or_default();
        format!("unknown format {name:?}{hint}; one of {}", names.join(", "))
    })
}
