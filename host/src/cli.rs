//! The `shardline` command line: `run` (Kinesis → Wasm stages → Pulsar or Kinesis sinks),
//! `validate`, `check-guest`, `status`, `produce` (the KPL-grade producer on its own),
//! `tail`, `convert`, `try`, `build-guest`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consumer::lease_table::LeaseTable;
use crate::consumer::{coordinator, Shared, WorkerQueue};
use crate::sinks::Sinks;
use crate::wasm::inspect::World;
use crate::wasm::reload::Plans;
use crate::wasm::{StagePlan, WasmEngine};

/// Exit code for a config or component the user must fix; nothing was started.
const EXIT_INVALID: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "shardline",
    version,
    about = "Kinesis → WebAssembly → Pulsar or Kinesis, KCL-grade"
)]
struct Cli {
    /// Log format: human on a terminal, JSON for machines.
    #[arg(
        long,
        global = true,
        env = "SHARDLINE_LOG_FORMAT",
        default_value = "auto"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the configured stream until SIGINT/SIGTERM (a second signal exits at once).
    Run {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        from: crate::migrate::cli::FromArgs,
    },
    /// Parse the config, load every component and check its exports; start nothing.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
        /// Also check, reading only, that the streams and the Pulsar namespaces the config
        /// names exist.
        #[arg(long)]
        check_services: bool,
        #[command(flatten)]
        from: crate::migrate::cli::FromArgs,
    },
    /// Check a component: print its exports and imports, then one line per problem (what it
    /// lacks for the world, imports the host does not provide); exit 2 on problems.
    CheckGuest {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The world it must implement: pipeline, deserialize-stage, transform-stage,
        /// route-stage or full (default: any stage interface will do).
        #[arg(long, value_parser = parse_world)]
        world: Option<World>,
    },
    /// Print the lease table: shard, owner, checkpoint, parents.
    Status {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Put records into the configured stream (sample data or lines of stdin).
    Produce(crate::produce::ProduceArgs),
    /// Print messages of a Pulsar topic (for demos and debugging).
    Tail(crate::tail::TailArgs),
    /// Enhanced fan-out consumers: list them, deregister the application's.
    Fanout(crate::fanout::FanoutArgs),
    /// Print the Shardline config equivalent to a Pulsar IO, StateFun, Samza or Flink config,
    /// with a comment on every key that was ignored or changed meaning.
    Convert(crate::migrate::cli::ConvertArgs),
    /// Run a component on records from a file (JSON lines or length-prefixed), no AWS or
    /// Pulsar, and print what each record became; exit 0 ok, 1 rejected, 2 bad input or
    /// component, 3 trap.
    Try(crate::try_cmd::TryArgs),
    /// Build a guest project (Rust, Python, JavaScript, Go or C) into a component.
    BuildGuest(crate::guest_build::BuildArgs),
    /// Write a new project: `shardline new guest --lang rust|python|js|go|c DIR`.
    New(crate::scaffold::NewArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::report!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run { config, from } => run(&config, &from).await,
            Command::Validate {
                config,
                check_services,
                from,
            } => validate(&config, check_services, &from).await,
            Command::Status { config } => status(&config).await,
            Command::CheckGuest { file, world } => check_guest(&file, world).await,
            Command::Produce(args) => crate::produce::run(args).await.map_err(Failure::Runtime),
            Command::Tail(args) => crate::tail::run(args).await.map_err(Failure::Runtime),
            Command::Fanout(args) => crate::fanout::run(args).await.map_err(|(invalid, e)| {
                if invalid {
                    Failure::Invalid(e)
                } else {
                    Failure::Runtime(e)
                }
            }),
            Command::Convert(args) => {
                crate::migrate::cli::convert(&args).map_err(|e| Failure::Invalid(e.into()))
            }
            Command::Try(args) => match crate::try_cmd::run(args).await {
                Ok(0) => Ok(()),
                Ok(code) => Err(Failure::Exit(code)),
                Err(crate::try_cmd::TryError::Invalid(e)) => Err(Failure::Invalid(e)),
                Err(crate::try_cmd::TryError::Runtime(e)) => Err(Failure::Runtime(e)),
            },
            Command::BuildGuest(args) => crate::guest_build::run(&args).map_err(Failure::Invalid),
            Command::New(args) => {
                crate::scaffold::run(&args).map_err(|e| Failure::Invalid(e.into()))
            }
        }
    });
    // Do not wait for stray blocking tasks (a guest stuck past its deadline is interrupted,
    // but shutdown should not depend on it).
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(e)) => {
            crate::report!("error: {e:#}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(Failure::Runtime(e)) => {
            tracing::error!("{e:#}");
            crate::report!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(Failure::Exit(code)) => ExitCode::from(code),
    }
}

enum Failure {
    /// The user's config or component: exit 2, nothing started.
    Invalid(anyhow::Error),
    /// Something failed while running: exit 1.
    Runtime(anyhow::Error),
    /// The command said all it had to say and exits with this code (`try`).
    Exit(u8),
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SHARDLINE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            EnvFilter::new("info,aws_config=warn,pulsar=warn,pulsar::retry_op=error")
        });
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => {
            !std::io::stderr().is_terminal() && std::env::var_os("SHARDLINE_LOG_JSON").is_some()
        }
    };
    // A log line that cannot be written is dropped: tracing-subscriber would otherwise
    // report it on stderr with an unwrap, which panics when stderr itself is what failed
    // (a full disk under the log file) and stops the pipeline over a log line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Everything that must be right before anything starts.
struct Prepared {
    config: Arc<Config>,
    engine: WasmEngine,
    plan: Arc<StagePlan>,
}

async fn prepare(path: &Path, from: &crate::migrate::cli::FromArgs) -> Result<Prepared, Failure> {
    let config = from.load(path).map_err(|e| Failure::Invalid(e.into()))?;
    crate::metrics::global().set_level(config.metrics.level);
    let engine = WasmEngine::for_config(&config).map_err(|e| Failure::Runtime(e.into()))?;
    let (cfg, eng) = (config.clone(), engine.clone());
    // Compiling a component is CPU work: keep it off the async threads.
    let plan = tokio::task::spawn_blocking(move || {
        let engine = eng;
        let plan = StagePlan::load(&engine, &cfg)?;
        plan.instantiate()?;
        Ok::<_, crate::wasm::WasmError>(plan)
    })
    .await
    .map_err(|e| Failure::Runtime(e.into()))?
    .map_err(|e| Failure::Invalid(e.into()))?;
    Ok(Prepared {
        config: Arc::new(config),
        engine,
        plan: Arc::new(plan),
    })
}

async fn validate(
    path: &Path,
    check_services: bool,
    from: &crate::migrate::cli::FromArgs,
) -> Result<(), Failure> {
    let p = prepare(path, from).await?;
    if check_services {
        let sdk = crate::aws::sdk_config(&p.config.aws)
            .await
            .map_err(Failure::Runtime)?;
        let missing = crate::preflight::services(&p.config, &sdk).await;
        if !missing.is_empty() {
            let lines: Vec<String> = missing
                .iter()
                .map(|m| format!("{}: {m}", path.display()))
                .collect();
            return Err(Failure::Invalid(anyhow::anyhow!(
                "{}",
                lines.join("\nerror: ")
            )));
        }
    }
    println!("{}: valid", path.display());
    for line in p.plan.describe() {
        println!("  {line}");
    }
    if p.config.stage_configs().is_empty() {
        println!("  no stages: records are published as they are");
    }
    if check_services {
        println!("  streams and Pulsar namespaces exist");
    }
    Ok(())
}

fn parse_world(name: &str) -> Result<World, String> {
    World::parse(name).ok_or_else(|| {
        format!(
            "unknown world {name:?}; the worlds of shardline:connector are {}",
            World::ALL.map(World::name).join(", ")
        )
    })
}

async fn check_guest(file: &Path, world: Option<World>) -> Result<(), Failure> {
    let limits = crate::config::WasmConfig::default();
    let engine = WasmEngine::new(
        WasmEngine::default_cache_dir(),
        limits.memory_limit,
        limits.call_timeout,
    )
    .map_err(|e| Failure::Runtime(e.into()))?;
    let path = file.to_path_buf();
    let report =
        tokio::task::spawn_blocking(move || crate::wasm::inspect::check(&engine, &path, world))
            .await
            .map_err(|e| Failure::Runtime(e.into()))?;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    println!("{}", file.display());
    println!("  exports: {}", list(&report.exports));
    println!("  imports: {}", list(&report.imports));
    for note in &report.notes {
        println!("  note: {note}");
    }
    if report.problems.is_empty() {
        match world {
            Some(w) => println!("  ok for world {}", w.name()),
            None => println!("  ok"),
        }
        return Ok(());
    }
    // One `error: FILE: problem` line each (`main` prints the first `error: `).
    let lines: Vec<String> = report
        .problems
        .iter()
        .map(|p| format!("{}: {p}", file.display()))
        .collect();
    Err(Failure::Invalid(anyhow::anyhow!(
        "{}",
        lines.join("\nerror: ")
    )))
}

/// Loads the config and components, then checks and connects everything the worker
/// needs: metrics exporters, the source streams, the lease table and the sinks.
async fn start(path: &Path, from: &crate::migrate::cli::FromArgs) -> Result<Started, Failure> {
    let p = prepare(path, from).await?;
    let config = p.config;
    let rt = |e: anyhow::Error| Failure::Runtime(e);

    let sdk = crate::aws::sdk_config(&config.aws).await.map_err(rt)?;
    let exporters = crate::metrics::exporters::Exporters::start(&config, &sdk)
        .await
        .map_err(|e| rt(e.into()))?;
    let kinesis = crate::aws::kinesis(&sdk, &config.aws);
    // Before the lease table is created: a stream that does not exist leaves nothing behind.
    crate::preflight::source_streams(&kinesis, &config)
        .await
        .map_err(|missing| {
            let lines: Vec<String> = missing.iter().map(ToString::to_string).collect();
            let e = anyhow::anyhow!("{}", lines.join("\nerror: "));
            if missing.iter().any(|m| m.not_found) {
                Failure::Invalid(e)
            } else {
                Failure::Runtime(e)
            }
        })?;
    let dynamodb = crate::aws::dynamodb(&sdk, &config.aws);
    let leases = LeaseTable::new(dynamodb, config.lease_table());
    leases
        .ensure()
        .await
        .context("cannot prepare the lease table")
        .map_err(rt)?;
    let sinks = Sinks::connect(&config).await.map_err(rt)?;
    for warning in config.deduplication_warnings() {
        tracing::warn!("{warning}");
    }
    Ok(Started {
        config,
        plan: p.plan,
        engine: p.engine,
        exporters,
        kinesis,
        leases,
        sinks,
    })
}

/// What `run` connects to before it takes any lease.
struct Started {
    config: Arc<Config>,
    plan: Arc<StagePlan>,
    engine: WasmEngine,
    exporters: crate::metrics::exporters::Exporters,
    kinesis: aws_sdk_kinesis::Client,
    leases: LeaseTable,
    sinks: Sinks,
}

async fn run(path: &Path, from: &crate::migrate::cli::FromArgs) -> Result<(), Failure> {
    // Before anything slow: a SIGHUP sent while starting must not end the worker, and a
    // SIGTERM or SIGINT must stop it cleanly rather than kill it.
    let hangup = crate::wasm::reload::listen_for_hangup();
    let shutdown = CancellationToken::new();
    listen_for_stop(shutdown.clone());
    let Started {
        config,
        plan,
        engine,
        exporters,
        kinesis,
        leases,
        sinks,
    } = tokio::select! {
        started = start(path, from) => started?,
        () = shutdown.cancelled() => {
            tracing::info!("stopped while starting: no lease was taken");
            return Ok(());
        }
    };
    let rt = |e: anyhow::Error| Failure::Runtime(e);
    crate::health::readiness().sinks_connected();
    // Start-up's code is not needed again: give its pages back before the worker settles.
    tokio::task::spawn_blocking(|| crate::code_pages::release_after("start-up"));
    let worker = config
        .leases
        .worker_id
        .clone()
        .unwrap_or_else(default_worker_id);

    crate::progress::spawn_for_run(shutdown.clone());
    let _draining = crate::health::readiness().drain_at(shutdown.clone());
    // Hot reload: on a component file change or SIGHUP.
    let plans = Arc::new(Plans::new(plan));
    let interval = config.wasm.watch_interval;
    tokio::spawn(crate::wasm::reload::watch(
        plans.clone(),
        engine,
        config.clone(),
        (!interval.is_zero()).then_some(interval),
        hangup,
        shutdown.clone(),
    ));
    let receive_queue = WorkerQueue::new(config.source.max_in_flight_bytes).with_gauge(
        crate::consumer::metrics::LeaseMetrics::of(&worker)
            .receive_queue_bytes
            .clone(),
    );
    let shared = Arc::new(Shared {
        config: config.clone(),
        kinesis,
        leases,
        worker,
        sinks: Arc::new(sinks),
        plans,
        receive_queue: Arc::new(receive_queue),
    });
    let result = coordinator::run(shared, shutdown).await;
    exporters.stop().await;
    result.map_err(rt)?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn status(path: &Path) -> Result<(), Failure> {
    let config = Config::load(path).map_err(|e| Failure::Invalid(e.into()))?;
    let sdk = crate::aws::sdk_config(&config.aws)
        .await
        .map_err(Failure::Runtime)?;
    let dynamodb = crate::aws::dynamodb(&sdk, &config.aws);
    let kinesis = crate::aws::kinesis(&sdk, &config.aws);
    let times = crate::consumer::lease_table::checkpoint_times(&dynamodb, config.lease_table())
        .await
        .unwrap_or_default();
    let leases = LeaseTable::new(dynamodb, config.lease_table());
    let mut all = leases
        .list()
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    all.sort_by(|a, b| a.key.cmp(&b.key));
    println!(
        "application {} — streams {} — lease table {} — {} leases",
        config.application,
        config
            .streams()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        config.lease_table(),
        all.len()
    );
    let mut per_owner: std::collections::BTreeMap<String, usize> = Default::default();
    println!(
        "{:<28} {:<44} {:>8}  {:<20} {:>9} {:>9}  parents",
        "shard", "owner", "counter", "checkpoint", "lag", "cp age"
    );
    let now_millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for l in &all {
        let owner = l.owner.clone().unwrap_or_else(|| "-".into());
        if l.owner.is_some() && l.checkpoint != crate::consumer::checkpoint::Checkpoint::ShardEnd {
            *per_owner.entry(owner.clone()).or_default() += 1;
        }
        let cp = l.checkpoint.to_string();
        let cp = if cp.len() > 20 {
            format!("…{}", &cp[cp.len() - 19..])
        } else {
            cp
        };
        // Lag: how far behind the tip the record after the checkpoint is; cp age: how long
        // ago the checkpoint was written.
        let (stream, shard) = match l.key.split_once(':') {
            Some((s, shard)) => (s.to_string(), shard),
            None => (config.first_stream(), l.key.as_str()),
        };
        let lag = match crate::consumer::lag::millis_behind(&kinesis, &stream, shard, &l.checkpoint)
            .await
        {
            Ok(Some(ms)) => crate::consumer::lag::short(ms),
            Ok(None) => "-".into(),
            Err(e) => {
                tracing::warn!(%stream, %shard, error = %e, "cannot measure the lag");
                "?".into()
            }
        };
        let age = times.get(&l.key).map_or_else(
            || "-".into(),
            |t| crate::consumer::lag::short(now_millis - t),
        );
        println!(
            "{:<28} {:<44} {:>8}  {:<20} {lag:>9} {age:>9}  {}",
            l.key,
            owner,
            l.counter,
            cp,
            if l.parents.is_empty() {
                "-".to_string()
            } else {
                l.parents.join(",")
            }
        );
    }
    for (owner, n) in per_owner {
        println!("worker {owner}: {n} active leases");
    }
    Ok(())
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &random[..8])
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once. Both handlers are
/// installed before this returns, so from then on neither signal kills the process.
fn listen_for_stop(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(interrupt)) => (term, interrupt),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM and SIGINT");
            return;
        }
    };
    tokio::spawn(async move {
        let mut first = true;
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = term.recv() => {}
            }
            if first {
                tracing::info!("signal received: draining, checkpointing and releasing leases (send again to exit at once)");
                shutdown.cancel();
                first = false;
            } else {
                tracing::warn!("second signal: exiting without checkpointing");
                std::process::exit(130);
            }
        }
    });
}
