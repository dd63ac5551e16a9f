//! `shardline tail`: print the messages of Pulsar topics — key, properties, event time and
//! payload — to watch a pipeline work or to check what reached a topic.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::TryStreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, Pulsar, SubType, TokioExecutor};

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Pulsar service URL.
    #[arg(
        long,
        env = "SHARDLINE_PULSAR_URL",
        default_value = "pulsar://127.0.0.1:6650"
    )]
    url: String,
    /// Topics to read (repeat the flag for several).
    #[arg(long = "topic", required = true)]
    topics: Vec<String>,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<usize>,
    /// Stop when no message came for this long (e.g. 10s).
    #[arg(long, value_parser = crate::config::units::parse_duration)]
    idle: Option<Duration>,
    /// Print only the first N messages in full, then a running count per topic.
    #[arg(long)]
    show: Option<usize>,
    /// Start with the oldest message kept, or only messages published from now on.
    #[arg(long, value_enum, default_value = "earliest")]
    from: From,
    /// Print at most this many payload bytes per message.
    #[arg(long, default_value_t = 200)]
    max_payload: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum From {
    Earliest,
    Latest,
}

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let initial = match args.from {
        From::Earliest => InitialPosition::Earliest,
        From::Latest => InitialPosition::Latest,
    };
    let pulsar: Pulsar<TokioExecutor> = Pulsar::builder(args.url.clone(), TokioExecutor)
        .build()
        .await
        .with_context(|| format!("cannot connect to Pulsar at {}", args.url))?;
    let mut consumer: Consumer<Vec<u8>, TokioExecutor> = pulsar
        .consumer()
        .with_topics(&args.topics)
        .with_subscription(format!("shardline-tail-{}", uuid::Uuid::new_v4()))
        .with_subscription_type(SubType::Exclusive)
        .with_options(pulsar::ConsumerOptions::default().with_initial_position(initial))
        .build()
        .await
        .context("cannot subscribe")?;
    crate::report!("subscribed to {} topic(s)", args.topics.len());
    let tty = std::io::stderr().is_terminal();
    let mut per_topic: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = 0usize;
    let mut last_report = Instant::now();
    loop {
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
        let next = match args.idle {
            Some(idle) => match tokio::time::timeout(idle, consumer.try_next()).await {
                Ok(r) => r,
                Err(_) => break,
            },
            None => consumer.try_next().await,
        };
        let Some(msg) = next.context("reading from Pulsar")? else {
            break;
        };
        consumer.ack(&msg).await.context("acknowledging")?;
        seen += 1;
        *per_topic.entry(short(&msg.topic)).or_default() += 1;
        if args.show.is_none_or(|n| seen <= n) {
            print_message(&msg, args.max_payload);
        } else if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            report(&per_topic, seen, tty, false);
        }
    }
    // Close before the client goes away, so the consumer engine stops quietly.
    let _ = consumer.close().await;
    report(&per_topic, seen, tty, true);
    Ok(())
}

fn short(topic: &str) -> String {
    topic.rsplit('/').next().unwrap_or(topic).to_string()
}

fn report(per_topic: &BTreeMap<String, usize>, seen: usize, tty: bool, last: bool) {
    let parts: Vec<String> = per_topic.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    let line = format!("{seen} messages ({})", parts.join(", "));
    if tty {
        crate::report_inline!("\r{line}   ");
        if last {
            crate::report!();
        }
        let _ = std::io::stderr().flush();
    } else {
        crate::report!("{line}");
    }
}

fn print_message(msg: &pulsar::consumer::Message<Vec<u8>>, max_payload: usize) {
    let meta = &msg.payload.metadata;
    let mut props: Vec<String> = meta
        .properties
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    props.sort();
    let data = &msg.payload.data;
    let shown = String::from_utf8_lossy(&data[..data.len().min(max_payload)]);
    println!(
        "{} key={} event_time={} props=[{}] payload={}{}",
        short(&msg.topic),
        meta.partition_key.as_deref().unwrap_or("-"),
        meta.event_time
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into()),
        props.join(", "),
        shown,
        if data.len() > max_payload { "…" } else { "" }
    );
}
