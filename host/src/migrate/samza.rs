//! Samza job properties: the inputs of systems whose factory is the
//! `KinesisSystemFactory` become the source.
//!
//! Samza ran one KCL per input stream, each with its own lease table (`aws.kcl.TableName`,
//! by default `<job.name>-<job.id>-<stream>`). One stream maps exactly: the application is
//! that table, so Shardline resumes from the job's checkpoints. Several streams share one
//! Shardline application and lease table (keyed `stream:shard`), which is noted. Samza job
//! settings (task, serializers, stores, other systems) have no Shardline meaning.

use std::collections::BTreeMap;

use super::{app_name, millis, parse_properties, Draft, MigrateError, NoteKind, Options, Source};

pub const FACTORY: &str = "org.apache.samza.system.kinesis.KinesisSystemFactory";

/// Per-stream keys under `systems.<system>.streams.<stream>.`.
const STREAM_KEYS: &[&str] = &["aws.region", "aws.accessKey", "aws.secretKey"];

/// KCL settings (`KinesisClientLibConfiguration.withX`) Samza passes through.
const KCL_KEYS: &[&str] = &[
    "TableName",
    "InitialPositionInStream",
    "Timestamp",
    "FailoverTimeMillis",
    "MaxRecords",
    "IdleTimeBetweenReadsInMillis",
    "ShardSyncIntervalMillis",
    "MaxLeasesForWorker",
    "MaxLeasesToStealAtOneTime",
    "CallProcessRecordsEvenForEmptyRecordList",
    "ParentShardPollIntervalMillis",
    "CleanupLeasesUponShardCompletion",
    "IgnoreUnexpectedChildShards",
    "TaskBackoffTimeMillis",
    "MetricsBufferTimeMillis",
    "MetricsMaxQueueSize",
    "MetricsLevel",
    "MetricsEnabledDimensions",
    "ValidateSequenceNumberBeforeCheckpointing",
    "RegionName",
    "InitialLeaseTableReadCapacity",
    "InitialLeaseTableWriteCapacity",
    "SkipShardSyncAtStartupIfLeasesExist",
    "ShutdownGraceMillis",
    "WorkerIdentifier",
    "KinesisEndpoint",
    "DynamoDBEndpoint",
    "UserAgent",
    "BillingMode",
    "LogWarningForTaskAfterMillis",
    "ListShardsBackoffTimeInMillis",
    "MaxListShardsRetryAttempts",
];

/// AWS `ClientConfiguration` settings Shardline maps (the proxy).
const PROXY_KEYS: &[&str] = &[
    "ProxyHost",
    "ProxyPort",
    "ProxyUsername",
    "ProxyPassword",
    "NonProxyHosts",
];

/// Samza keys this converter reads, for typos outside the Kinesis systems.
const JOB_KEYS: &[&str] = &["task.inputs", "job.name", "job.id"];

pub fn convert(src: &Source, _opts: &Options) -> Result<Draft, MigrateError> {
    let props = parse_properties(&src.text);
    let mut d = Draft::default();
    let value = |k: &str| {
        props
            .iter()
            .rev()
            .find(|(_, pk, _)| pk == k)
            .map(|(_, _, v)| v.clone())
    };
    let systems = kinesis_systems(src, &props)?;
    let inputs: Vec<(String, String)> = value("task.inputs")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            s.split_once('.')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let (streams, client) = system_settings(src, &mut d, &props, &systems)?;
    let read = streams_read(src, &mut d, &inputs, &systems, &streams)?;
    let job = value("job.name");
    let job_id = value("job.id").unwrap_or_else(|| "1".into());
    application(&mut d, &read, &streams, job.as_deref(), &job_id);
    aws(src, &mut d, &read, &streams)?;
    kcl_settings(src, &mut d, &read, &streams)?;
    client_config(src, &mut d, "aws.clientConfig.", &client)?;
    Ok(d)
}

type Props = [(usize, String, String)];
/// The settings of each stream read through a Kinesis system, by stream name.
type Streams = BTreeMap<String, StreamSettings>;

/// The Kinesis systems: those with the Kinesis factory.
fn kinesis_systems(src: &Source, props: &Props) -> Result<Vec<String>, MigrateError> {
    let systems: Vec<String> = props
        .iter()
        .filter_map(|(_, k, v)| {
            let sys = k.strip_prefix("systems.")?.strip_suffix(".samza.factory")?;
            (v == FACTORY).then(|| sys.to_string())
        })
        .collect();
    if systems.is_empty() {
        return Err(src.invalid(
            "systems.<name>.samza.factory",
            format!("no system uses {FACTORY}: nothing to read from Kinesis"),
        ));
    }
    Ok(systems)
}

/// The settings of the Kinesis systems, by stream, and their client configuration; the
/// job's other keys are noted (a likely typo of a job key is an error).
fn system_settings(
    src: &Source,
    d: &mut Draft,
    props: &Props,
    systems: &[String],
) -> Result<(Streams, Vec<(String, String)>), MigrateError> {
    let mut streams = Streams::new();
    let mut client: Vec<(String, String)> = Vec::new();
    for (line, key, val) in props {
        let plain = key.strip_prefix("sensitive.").unwrap_or(key);
        let system = systems
            .iter()
            .find(|s| plain.starts_with(&format!("systems.{s}.")));
        let Some(system) = system else {
            match key.as_str() {
                "task.inputs" | "job.name" | "job.id" => {}
                k if k.starts_with("systems.") => {
                    d.ignore(k, "a setting of a system that is not Kinesis")
                }
                k => {
                    if let Some(near) = crate::config::suggest::nearest(k, JOB_KEYS.iter().copied())
                    {
                        return Err(MigrateError::UnknownKey {
                            file: src.file.clone(),
                            key: k.to_string(),
                            line: Some(*line),
                            suggestion: Some(near.to_string()),
                        });
                    }
                    d.ignore(k, "a Samza job setting without a Shardline meaning")
                }
            }
            continue;
        };
        let rest = &plain[format!("systems.{system}.").len()..];
        let unknown = |valid: &[&str], shown: &str| MigrateError::UnknownKey {
            file: src.file.clone(),
            key: key.clone(),
            line: Some(*line),
            suggestion: crate::config::suggest::nearest(shown, valid.iter().copied())
                .map(str::to_string),
        };
        if rest == "samza.factory" {
            continue;
        }
        if let Some(c) = rest.strip_prefix("aws.clientConfig.") {
            client.push((c.to_string(), val.clone()));
            continue;
        }
        if let Some(sr) = rest.strip_prefix("streams.") {
            // <stream>.aws.… — stream names may contain dots, the settings start at ".aws.".
            let Some(at) = sr.find(".aws.") else {
                return Err(unknown(
                    &[
                        "aws.region",
                        "aws.accessKey",
                        "aws.secretKey",
                        "aws.kcl.TableName",
                    ],
                    sr,
                ));
            };
            let (stream, setting) = (&sr[..at], &sr[at + 1..]);
            let s = streams.entry(stream.to_string()).or_default();
            if let Some(kcl) = setting.strip_prefix("aws.kcl.") {
                if !KCL_KEYS.contains(&kcl) {
                    return Err(unknown(KCL_KEYS, kcl));
                }
                s.kcl.push((kcl.to_string(), val.clone(), key.clone()));
            } else if STREAM_KEYS.contains(&setting) {
                if setting == "aws.secretKey" && !key.starts_with("sensitive.") {
                    d.note(
                        NoteKind::Changed,
                        key,
                        None,
                        "Samza reads the secret key only as sensitive.systems…aws.secretKey; taken anyway",
                    );
                }
                s.settings
                    .insert(setting.to_string(), (val.clone(), key.clone()));
            } else {
                return Err(unknown(STREAM_KEYS, setting));
            }
            continue;
        }
        if rest.starts_with("samza.") || rest.starts_with("consumer.") {
            d.ignore(key, "a Samza system setting without a Shardline meaning");
            continue;
        }
        return Err(unknown(
            &["samza.factory", "aws.clientConfig.ProxyHost", "streams"],
            rest,
        ));
    }

    Ok((streams, client))
}

/// The streams read: task.inputs of Kinesis systems (or every configured stream).
fn streams_read(
    src: &Source,
    d: &mut Draft,
    inputs: &[(String, String)],
    systems: &[String],
    streams: &Streams,
) -> Result<Vec<String>, MigrateError> {
    let mut read: Vec<String> = inputs
        .iter()
        .filter(|(sys, _)| systems.contains(sys))
        .map(|(_, s)| s.clone())
        .collect();
    if read.is_empty() {
        read = streams.keys().cloned().collect();
    }
    if read.is_empty() {
        return Err(src.invalid("task.inputs", "names no stream of a Kinesis system"));
    }
    for s in streams.keys() {
        if !read.contains(s) {
            d.ignore(&format!("streams.{s}"), "configured but not in task.inputs");
        }
    }
    Ok(read)
}

/// The application (Samza's lease table name) and the streams of the source.
fn application(d: &mut Draft, read: &[String], streams: &Streams, job: Option<&str>, job_id: &str) {
    let tables: Vec<String> = read
        .iter()
        .map(|s| {
            streams
                .get(s)
                .and_then(|st| st.kcl.iter().find(|(k, _, _)| k == "TableName"))
                .map(|(_, v, _)| v.clone())
                .unwrap_or_else(|| format!("{}-{job_id}-{s}", job.unwrap_or("samza")))
        })
        .collect();
    let has_table = read.len() == 1
        && streams
            .get(&read[0])
            .is_some_and(|st| st.kcl.iter().any(|(k, _, _)| k == "TableName"));
    d.set(
        "application",
        app_name(&tables[0]).as_str(),
        if has_table {
            "aws.kcl.TableName"
        } else {
            "job.name, job.id, stream"
        },
    );
    if !has_table {
        d.note(
            NoteKind::Added,
            "aws.kcl.TableName",
            Some("application"),
            format!(
                "not set: Samza's default table <job.name>-<job.id>-<stream>{}",
                if job.is_none() {
                    " (job.name missing: \"samza\")"
                } else {
                    ""
                }
            ),
        );
    }
    if read.len() == 1 {
        d.set("source.stream", read[0].as_str(), "task.inputs");
    } else {
        let items: Vec<serde_yaml::Value> = read
            .iter()
            .map(|n| {
                let mut m = serde_yaml::Mapping::new();
                m.insert("name".into(), n.as_str().into());
                serde_yaml::Value::Mapping(m)
            })
            .collect();
        d.set(
            "source.streams",
            serde_yaml::Value::Sequence(items),
            "task.inputs",
        );
        d.note(
            NoteKind::Changed,
            "task.inputs",
            Some("source.streams"),
            format!("Samza ran a KCL per stream with its own lease table ({}); Shardline reads them in one application with one table, leases keyed stream:shard, so the Samza checkpoints are not resumed", tables.join(", ")),
        );
    }
}

/// Per-stream AWS settings: Shardline has one region and one set of credentials.
fn aws(
    src: &Source,
    d: &mut Draft,
    read: &[String],
    streams: &Streams,
) -> Result<(), MigrateError> {
    let first = |setting: &str| -> Option<(String, String)> {
        read.iter()
            .filter_map(|s| {
                streams
                    .get(s)
                    .and_then(|st| st.settings.get(setting))
                    .cloned()
            })
            .next()
    };
    for setting in STREAM_KEYS {
        let values: Vec<&String> = read
            .iter()
            .filter_map(|s| {
                streams
                    .get(s)
                    .and_then(|st| st.settings.get(*setting))
                    .map(|(v, _)| v)
            })
            .collect();
        if values.windows(2).any(|w| w[0] != w[1]) {
            return Err(src.invalid(
                setting,
                "differs between the streams; one Shardline application uses one region and one set of credentials",
            ));
        }
    }
    if let Some((r, k)) = first("aws.region") {
        d.set("aws.region", r.as_str(), &k);
    }
    match (first("aws.accessKey"), first("aws.secretKey")) {
        (Some((a, ak)), Some((s, sk))) => {
            d.set("aws.credentials.type", "static", "");
            d.set("aws.credentials.access_key_id", a.as_str(), &ak);
            d.set_secret("aws.credentials.secret_access_key", s.as_str(), &sk);
        }
        (None, None) => d.set("aws.credentials.type", "default", ""),
        (Some((_, k)), None) | (None, Some((_, k))) => {
            return Err(src.invalid(&k, "aws.accessKey and sensitive…aws.secretKey go together"))
        }
    }

    Ok(())
}

/// KCL settings of the (first) stream; those of the others are noted.
fn kcl_settings(
    src: &Source,
    d: &mut Draft,
    read: &[String],
    streams: &Streams,
) -> Result<(), MigrateError> {
    if let Some(st) = streams.get(&read[0]) {
        for (k, v, full) in &st.kcl {
            kcl(src, d, k, v, full)?;
        }
    }
    if d.get("source.initial_position").is_none() {
        d.set("source.initial_position", "latest", "KCL default LATEST");
    }
    for s in read.iter().skip(1) {
        if let Some(st) = streams.get(s) {
            for (k, _, full) in &st.kcl {
                if k != "TableName" {
                    d.ignore(
                        full,
                        format!("KCL settings are taken from the first stream ({})", read[0]),
                    );
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct StreamSettings {
    /// setting → (value, full key)
    settings: BTreeMap<String, (String, String)>,
    /// (KCL name, value, full key)
    kcl: Vec<(String, String, String)>,
}

fn kcl(src: &Source, d: &mut Draft, k: &str, v: &str, full: &str) -> Result<(), MigrateError> {
    let num = || {
        v.trim()
            .parse::<u64>()
            .map_err(|_| src.invalid(full, format!("expected a whole number, got {v:?}")))
    };
    match k {
        "TableName" => {}
        "InitialPositionInStream" => match v {
            "LATEST" => d.set("source.initial_position", "latest", full),
            "TRIM_HORIZON" => d.set("source.initial_position", "trim_horizon", full),
            "AT_TIMESTAMP" => d.set("source.initial_position", "at_timestamp", full),
            other => {
                return Err(src.invalid(
                    full,
                    format!("{other:?} is not LATEST, TRIM_HORIZON or AT_TIMESTAMP"),
                ))
            }
        },
        "Timestamp" => {
            let t = v
                .parse::<u64>()
                .ok()
                .map(|ms| {
                    humantime::format_rfc3339_millis(
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                    )
                    .to_string()
                })
                .or_else(|| super::utc_time(v))
                .ok_or_else(|| {
                    src.invalid(full, "expected epoch milliseconds or an ISO-8601 time")
                })?;
            d.set("source.at_timestamp", t.as_str(), full);
        }
        "FailoverTimeMillis" => d.set("leases.duration", millis(num()?).as_str(), full),
        "MaxRecords" => d.set("source.polling.max_records", num()?, full),
        "IdleTimeBetweenReadsInMillis" => {
            let ms = num()?;
            d.set(
                "source.polling.interval",
                millis(ms.max(200)).as_str(),
                full,
            );
            if ms < 200 {
                d.note(
                    NoteKind::Changed,
                    full,
                    Some("source.polling.interval"),
                    format!("{ms} ms is below Kinesis' 5 reads/s per shard; 200ms"),
                );
            }
        }
        "ShardSyncIntervalMillis" => {
            d.set("leases.shard_sync_interval", millis(num()?).as_str(), full)
        }
        "MaxLeasesForWorker" => d.set("leases.max_per_worker", num()?, full),
        "MaxLeasesToStealAtOneTime" => d.set("leases.max_steal", num()?, full),
        "KinesisEndpoint" => d.set("aws.endpoints.kinesis", v, full),
        "DynamoDBEndpoint" => d.set("aws.endpoints.dynamodb", v, full),
        "RegionName" => d.set("aws.region", v, full),
        "WorkerIdentifier" => d.set("leases.worker_id", v, full),
        _ => d.ignore(full, "a KCL setting Shardline has no equivalent for"),
    }
    Ok(())
}

/// AWS `ClientConfiguration` properties (Samza's `aws.clientConfig.*`, StateFun's
/// `clientConfigProperties`): the proxy becomes `aws.proxy`, the rest is noted. A name
/// close to a proxy setting is taken for a typo.
pub fn client_config(
    src: &Source,
    d: &mut Draft,
    prefix: &str,
    props: &[(String, String)],
) -> Result<(), MigrateError> {
    let get = |k: &str| {
        props
            .iter()
            .rev()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.clone())
    };
    for (k, _) in props {
        if PROXY_KEYS.contains(&k.as_str()) {
            continue;
        }
        if let Some(near) = crate::config::suggest::nearest(k, PROXY_KEYS.iter().copied()) {
            return Err(MigrateError::UnknownKey {
                file: src.file.clone(),
                key: format!("{prefix}{k}"),
                line: src.line_of(k),
                suggestion: Some(near.to_string()),
            });
        }
        d.ignore(
            &format!("{prefix}{k}"),
            "an AWS Java SDK client setting; Shardline's clients use the Rust SDK's defaults",
        );
    }
    if let Some(host) = get("ProxyHost") {
        let port = get("ProxyPort").unwrap_or_else(|| "80".into());
        port.parse::<u16>().map_err(|_| {
            src.invalid(
                &format!("{prefix}ProxyPort"),
                format!("{port:?} is not a port number"),
            )
        })?;
        d.set(
            "aws.proxy.url",
            format!("http://{host}:{port}").as_str(),
            &format!("{prefix}ProxyHost, ProxyPort"),
        );
        if let Some(u) = get("ProxyUsername") {
            d.set(
                "aws.proxy.username",
                u.as_str(),
                &format!("{prefix}ProxyUsername"),
            );
        }
        if let Some(p) = get("ProxyPassword") {
            d.set_secret(
                "aws.proxy.password",
                p.as_str(),
                &format!("{prefix}ProxyPassword"),
            );
        }
        if let Some(n) = get("NonProxyHosts") {
            // Java separates with '|', NO_PROXY with ','.
            d.set(
                "aws.proxy.no_proxy",
                n.replace('|', ",").as_str(),
                &format!("{prefix}NonProxyHosts"),
            );
        }
    } else {
        for k in [
            "ProxyPort",
            "ProxyUsername",
            "ProxyPassword",
            "NonProxyHosts",
        ] {
            if get(k).is_some() {
                d.ignore(&format!("{prefix}{k}"), "no ProxyHost: no proxy is used");
            }
        }
    }
    Ok(())
}
