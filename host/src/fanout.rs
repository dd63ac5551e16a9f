//! `shardline fanout`: the application's enhanced fan-out consumers — list what is
//! registered on the configured streams, deregister the application's consumer (a
//! registered consumer is billed per shard-hour whether or not anyone reads through it).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::consumer::retrieval::consumer_registration;

#[derive(Debug, Args)]
pub struct FanoutArgs {
    #[command(subcommand)]
    command: FanoutCommand,
}

#[derive(Debug, Subcommand)]
enum FanoutCommand {
    /// Deregister the application's consumer (`source.fan_out.consumer_name`, default the
    /// application name) from every configured stream. Workers still running register it
    /// again.
    Deregister {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List the consumers registered on every configured stream (any application).
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// Loads the config (a config error is the user's to fix: exit 2) and runs the command.
pub async fn run(args: FanoutArgs) -> Result<(), (bool, anyhow::Error)> {
    let path = match &args.command {
        FanoutCommand::Deregister { config } | FanoutCommand::List { config } => config,
    };
    let config = Config::load(path).map_err(|e| (true, e.into()))?;
    let rt = |e: anyhow::Error| (false, e);
    let sdk = crate::aws::sdk_config(&config.aws).await.map_err(rt)?;
    let kinesis = crate::aws::kinesis(&sdk, &config.aws);
    let name = config.fan_out_consumer();
    match args.command {
        FanoutCommand::Deregister { .. } => {
            for stream in config.streams() {
                let existed = consumer_registration::deregister(&kinesis, &stream.name, name)
                    .await
                    .with_context(|| format!("cannot deregister consumer {name}"))
                    .map_err(rt)?;
                if existed {
                    println!("stream {}: deregistered consumer {name}", stream.name);
                } else {
                    println!("stream {}: no consumer {name} registered", stream.name);
                }
            }
        }
        FanoutCommand::List { .. } => {
            for stream in config.streams() {
                let consumers = consumer_registration::list(&kinesis, &stream.name)
                    .await
                    .map_err(|e| rt(e.into()))?;
                println!("stream {}: {} consumer(s)", stream.name, consumers.len());
                for c in consumers {
                    let mine = if c.name == name {
                        "  (this application)"
                    } else {
                        ""
                    };
                    println!(
                        "  {}  {}  created {}  {}{mine}",
                        c.name,
                        c.status,
                        c.created.as_deref().unwrap_or("?"),
                        c.arn
                    );
                }
            }
        }
    }
    Ok(())
}
