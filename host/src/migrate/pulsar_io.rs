//! Pulsar IO Kinesis source: the connector's config (`KinesisSourceConfig`), as YAML or
//! JSON, bare or inside a `pulsar-admin sources create --source-config-file` document
//! (`configs:` plus tenant, namespace, name, topicName, …).
//!
//! Defaults are the connector's: `initialPositionInStream` LATEST, `checkpointInterval`
//! 60000 ms, `receiveQueueSize` 1000, `useEnhancedFanOut` true (→ `retrieval: fan_out`),
//! `applicationName` `pulsar-kinesis` (the value in the connector's code; its docs say
//! "Pulsar IO connector"). Messages keep the connector's shape: key = partition key and the
//! `kinesis.*` properties, which Shardline's Pulsar sink already sets.

use serde_yaml::{Mapping, Value};

use super::{
    app_name, millis, text, ConvertedSink, Draft, MigrateError, NoteKind, Options, Source,
};

/// Every key of the connector's config.
pub const KEYS: &[&str] = &[
    "awsKinesisStreamName",
    "awsRegion",
    "awsEndpoint",
    "dynamoEndpoint",
    "cloudwatchEndpoint",
    "awsCredentialPluginName",
    "awsCredentialPluginParam",
    "applicationName",
    "initialPositionInStream",
    "startAtTime",
    "checkpointInterval",
    "backoffTime",
    "numRetries",
    "receiveQueueSize",
    "useEnhancedFanOut",
    "messageKeyMode",
    "kinesisRecordProperties",
];

/// Keys of a `pulsar-admin` source config file around `configs:`.
const WRAPPER_KEYS: &[&str] = &[
    "configs",
    "tenant",
    "namespace",
    "name",
    "className",
    "topicName",
    "producerConfig",
    "serdeClassName",
    "schemaType",
    "secrets",
    "parallelism",
    "processingGuarantees",
    "resources",
    "archive",
    "runtimeFlags",
    "customRuntimeOptions",
    "batchSourceConfig",
    "batchBuilder",
    "logTopic",
    "sourceType",
];

/// The connector's default application (= lease table) name.
pub const DEFAULT_APPLICATION: &str = "pulsar-kinesis";

const DEFAULT_CHAIN_PLUGINS: &[&str] = &[
    "org.apache.pulsar.io.aws.AwsDefaultProviderChainPlugin",
    "org.apache.pulsar.io.kinesis.AwsDefaultProviderChainPlugin",
];
const ASSUME_ROLE_PLUGINS: &[&str] = &[
    "org.apache.pulsar.io.aws.STSAssumeRoleProviderPlugin",
    "org.apache.pulsar.io.kinesis.STSAssumeRoleProviderPlugin",
];

/// Properties a Pulsar IO Kinesis message carries; the first four always.
const ALWAYS_PROPERTIES: &[&str] = &[
    "kinesis.partition.key",
    "kinesis.sequence.number",
    "kinesis.arrival.timestamp",
    "kinesis.encryption.type",
];

pub fn convert(src: &Source, opts: &Options) -> Result<Draft, MigrateError> {
    let doc = super::yaml_value(&src.text, &src.file)?;
    let Value::Mapping(top) = doc else {
        return Err(src.invalid("(top level)", "expected a map of connector settings"));
    };
    let mut d = Draft::default();
    let (configs, topic_from_file) = if top.contains_key("configs") {
        unwrap_function(src, &mut d, &top)?
    } else {
        (top, None)
    };
    for (k, _) in &configs {
        let k = key(k);
        if !KEYS.contains(&k.as_str()) {
            return Err(src.unknown(&k, &k, KEYS));
        }
    }
    application(&mut d, &configs);
    start(src, &mut d, &configs)?;
    retrieval(src, &mut d, &configs)?;
    checkpoints_and_queue(src, &mut d, &configs)?;
    aws(src, &mut d, &configs)?;
    message_shape(src, &mut d, &configs)?;
    d.note(
        NoteKind::Changed,
        "(payload)",
        None,
        "the connector decoded data as UTF-8 and published an empty value for records that did not decode; Shardline publishes the bytes as they are",
    );
    destination(&mut d, opts, topic_from_file);
    Ok(d)
}

/// A connector setting as text, when set and not blank.
fn setting(configs: &Mapping, k: &str) -> Option<String> {
    configs
        .get(k)
        .and_then(text)
        .filter(|s| !s.trim().is_empty())
}

/// A Pulsar Functions file: its `configs`, and the topic its `tenant`, `namespace` and
/// `topicName` name; the wrapper's other keys are noted.
fn unwrap_function(
    src: &Source,
    d: &mut Draft,
    top: &Mapping,
) -> Result<(Mapping, Option<String>), MigrateError> {
    let mut topic_from_file = None;
    let mut tenant = None;
    let mut namespace = None;
    let mut topic = None;
    for (k, v) in top {
        let k = key(k);
        match k.as_str() {
            "configs" => {}
            "tenant" => tenant = text(v),
            "namespace" => namespace = text(v),
            "topicName" => topic = text(v),
            "secrets" => d.ignore(
                "secrets",
                "Pulsar Functions secrets; write the values into the Shardline config (or use the AWS default chain)",
            ),
            "name" => d.ignore(
                "name",
                "the Pulsar source name; the lease table comes from applicationName",
            ),
            "parallelism" => d.ignore(
                "parallelism",
                "run that many `shardline run` processes: they share the shards through the lease table",
            ),
            other if WRAPPER_KEYS.contains(&other) => d.ignore(
                other,
                "a Pulsar Functions setting without a Shardline meaning",
            ),
            other => return Err(src.unknown(other, other, WRAPPER_KEYS)),
        }
    }
    if let Some(t) = topic {
        let full = if t.contains("://") {
            t
        } else {
            format!(
                "persistent://{}/{}/{t}",
                tenant.as_deref().unwrap_or("public"),
                namespace.as_deref().unwrap_or("default")
            )
        };
        topic_from_file = Some(full);
    }
    match top.get("configs") {
        Some(Value::Mapping(m)) => Ok((m.clone(), topic_from_file)),
        _ => Err(src.invalid("configs", "expected a map of connector settings")),
    }
}

/// `applicationName`: the lease table.
fn application(d: &mut Draft, configs: &Mapping) {
    let get = |k: &str| setting(configs, k);
    match get("applicationName") {
        Some(a) => {
            let name = app_name(&a);
            d.set("application", name.as_str(), "applicationName");
            if name != a {
                d.note(
                    NoteKind::Changed,
                    "applicationName",
                    Some("application"),
                    format!("{a:?} has characters a DynamoDB table name cannot have; the KCL would have failed on it"),
                );
            }
        }
        None => {
            d.set("application", DEFAULT_APPLICATION, "");
            d.note(
                NoteKind::Added,
                "applicationName",
                Some("application"),
                format!("not set; the connector's default {DEFAULT_APPLICATION:?} (older docs say \"Pulsar IO connector\"): this is the lease table, so it must name the table your connector used for Shardline to resume from its checkpoints"),
            );
        }
    }
}

/// The stream and where reading starts.
fn start(src: &Source, d: &mut Draft, configs: &Mapping) -> Result<(), MigrateError> {
    let get = |k: &str| setting(configs, k);
    let stream = get("awsKinesisStreamName")
        .ok_or_else(|| src.invalid("awsKinesisStreamName", "is required (the stream to read)"))?;
    d.set("source.stream", stream.as_str(), "awsKinesisStreamName");

    match get("initialPositionInStream").as_deref() {
        None => d.set(
            "source.initial_position",
            "latest",
            "initialPositionInStream (default LATEST)",
        ),
        Some("LATEST") => d.set(
            "source.initial_position",
            "latest",
            "initialPositionInStream",
        ),
        Some("TRIM_HORIZON") => d.set(
            "source.initial_position",
            "trim_horizon",
            "initialPositionInStream",
        ),
        Some("AT_TIMESTAMP") => d.set(
            "source.initial_position",
            "at_timestamp",
            "initialPositionInStream",
        ),
        Some(other) => {
            return Err(src.invalid(
                "initialPositionInStream",
                format!("{other:?} is not LATEST, TRIM_HORIZON or AT_TIMESTAMP"),
            ))
        }
    }
    if let Some(v) = configs.get("startAtTime").filter(|v| !is_blank(v)) {
        // Jackson reads a Date from epoch milliseconds or an ISO-8601 text.
        let t = match v {
            Value::Number(n) => n.as_u64().map(|ms| {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                humantime::format_rfc3339_millis(t)
                    .to_string()
                    .replace(".000Z", "Z")
            }),
            other => text(other).and_then(|s| super::utc_time(&s)),
        }
        .ok_or_else(|| {
            src.invalid(
                "startAtTime",
                "expected epoch milliseconds or an ISO-8601 time like 2020-08-09T19:28:58.000Z",
            )
        })?;
        if get("initialPositionInStream").as_deref() == Some("AT_TIMESTAMP") {
            d.set("source.at_timestamp", t.as_str(), "startAtTime");
        } else {
            d.ignore(
                "startAtTime",
                "only used with initialPositionInStream AT_TIMESTAMP",
            );
        }
    }

    Ok(())
}

/// Enhanced fan-out (the connector's default) or polling.
fn retrieval(src: &Source, d: &mut Draft, configs: &Mapping) -> Result<(), MigrateError> {
    let efo = match configs.get("useEnhancedFanOut") {
        None => true,
        Some(v) => {
            bool_of(v).ok_or_else(|| src.invalid("useEnhancedFanOut", "expected true or false"))?
        }
    };
    d.set(
        "source.retrieval",
        if efo { "fan_out" } else { "polling" },
        if configs.contains_key("useEnhancedFanOut") {
            "useEnhancedFanOut"
        } else {
            "useEnhancedFanOut (default true)"
        },
    );
    if efo {
        d.note(
            NoteKind::Changed,
            "useEnhancedFanOut",
            Some("source.retrieval"),
            "the KCL registers its consumer under the application name; Shardline uses the same name (source.fan_out.consumer_name), so the registered consumer is reused",
        );
    }

    Ok(())
}

/// The checkpoint interval, the retry settings that meant nothing, the receive queue.
fn checkpoints_and_queue(
    src: &Source,
    d: &mut Draft,
    configs: &Mapping,
) -> Result<(), MigrateError> {
    if let Some(ms) = number(src, configs, "checkpointInterval")? {
        d.set(
            "checkpoint.interval",
            millis(ms).as_str(),
            "checkpointInterval",
        );
    } else {
        d.set(
            "checkpoint.interval",
            "60s",
            "checkpointInterval (default 60000)",
        );
    }
    d.note(
        NoteKind::Changed,
        "checkpointInterval",
        Some("checkpoint.interval"),
        "the connector added these milliseconds to a nanosecond clock (so it checkpointed after almost every batch) and checkpointed records once queued, before Pulsar had them; Shardline checkpoints at this interval and only what Pulsar acknowledged",
    );
    if configs.contains_key("backoffTime") {
        number(src, configs, "backoffTime")?;
        d.ignore(
            "backoffTime",
            "the connector only waited this long between checkpoint retries; Shardline retries a failed checkpoint at the next interval (throttled reads back off per source.polling.backoff)",
        );
    }
    if configs.contains_key("numRetries") {
        number(src, configs, "numRetries")?;
        d.ignore(
            "numRetries",
            "checkpoint attempts; Shardline never gives up on a checkpoint but retries it at the next interval and at shutdown",
        );
    }
    let queue = number(src, configs, "receiveQueueSize")?.unwrap_or(1000);
    d.set(
        "source.receive_queue_size",
        queue,
        if configs.contains_key("receiveQueueSize") {
            "receiveQueueSize"
        } else {
            "receiveQueueSize (default 1000)"
        },
    );
    d.note(
        NoteKind::Changed,
        "receiveQueueSize",
        Some("source.receive_queue_size"),
        "the connector had one queue for all shards of the worker; Shardline's bound is per shard",
    );

    Ok(())
}

/// Region, endpoints and credentials.
fn aws(src: &Source, d: &mut Draft, configs: &Mapping) -> Result<(), MigrateError> {
    let get = |k: &str| setting(configs, k);
    if let Some(r) = get("awsRegion") {
        d.set("aws.region", r.as_str(), "awsRegion");
    }
    for (k, native) in [
        ("awsEndpoint", "aws.endpoints.kinesis"),
        ("dynamoEndpoint", "aws.endpoints.dynamodb"),
        ("cloudwatchEndpoint", "aws.endpoints.cloudwatch"),
    ] {
        if let Some(e) = get(k) {
            let e = if e.contains("://") {
                e
            } else {
                format!("https://{e}")
            };
            d.set(native, e.as_str(), k);
        }
    }
    credentials(
        src,
        d,
        get("awsCredentialPluginName"),
        configs.get("awsCredentialPluginParam"),
    )?;

    Ok(())
}

/// The destination: the file's topicName unless --to says otherwise.
fn destination(d: &mut Draft, opts: &Options, topic_from_file: Option<String>) {
    if opts.to.is_none() {
        if let Some(t) = topic_from_file {
            let url = opts
                .pulsar_url
                .as_deref()
                .unwrap_or(super::DEFAULT_PULSAR_URL);
            d.set("sinks.main.pulsar.service_url", url, "--pulsar-url");
            d.set("sinks.main.pulsar.topic", t.as_str(), "topicName");
            if opts.pulsar_url.is_none() {
                d.note(
                    NoteKind::Added,
                    "--pulsar-url",
                    Some("sinks.main.pulsar.service_url"),
                    format!("not given; {} assumed", super::DEFAULT_PULSAR_URL),
                );
            }
        }
    }
    if let Some(ConvertedSink::Kinesis(_)) = &opts.to {
        d.note(
            NoteKind::Changed,
            "--to",
            Some("sinks.main"),
            "a Kinesis destination: records are written with their partition keys; the kinesis.* properties of Pulsar messages do not exist there",
        );
    }
}

/// awsCredentialPluginName / awsCredentialPluginParam.
fn credentials(
    src: &Source,
    d: &mut Draft,
    plugin: Option<String>,
    param: Option<&Value>,
) -> Result<(), MigrateError> {
    // The parameter is JSON in a string (sometimes written as a map).
    let param: Option<Mapping> =
        match param.filter(|v| !is_blank(v)) {
            None => None,
            Some(Value::Mapping(m)) => Some(m.clone()),
            Some(v) => {
                let s = text(v).unwrap_or_default();
                match serde_json::from_str::<serde_json::Value>(&s) {
                    Ok(serde_json::Value::Object(o)) => Some(
                        o.into_iter()
                            .map(|(k, v)| {
                                let v = match v {
                                    serde_json::Value::String(s) => s,
                                    other => other.to_string(),
                                };
                                (Value::String(k), Value::String(v))
                            })
                            .collect(),
                    ),
                    _ => return Err(src.invalid(
                        "awsCredentialPluginParam",
                        "expected a JSON object, e.g. {\"accessKey\":\"…\",\"secretKey\":\"…\"}",
                    )),
                }
            }
        };
    let p = |k: &str| param.as_ref().and_then(|m| m.get(k)).and_then(text);
    let check_keys = |valid: &[&str]| -> Result<(), MigrateError> {
        for (k, _) in param.iter().flatten() {
            let k = key(k);
            if !valid.contains(&k.as_str()) {
                return Err(src.unknown(&k, &format!("awsCredentialPluginParam.{k}"), valid));
            }
        }
        Ok(())
    };
    match plugin.as_deref() {
        None => {
            check_keys(&["accessKey", "secretKey", "sessionToken"])?;
            match (p("accessKey"), p("secretKey")) {
                (Some(a), Some(s)) => {
                    d.set("aws.credentials.type", "static", "awsCredentialPluginParam");
                    d.set("aws.credentials.access_key_id", a.as_str(), "accessKey");
                    d.set_secret("aws.credentials.secret_access_key", s.as_str(), "secretKey");
                    if let Some(t) = p("sessionToken") {
                        d.set_secret("aws.credentials.session_token", t.as_str(), "sessionToken");
                    }
                }
                (None, None) => {
                    d.set("aws.credentials.type", "default", "");
                    d.note(
                        NoteKind::Changed,
                        "awsCredentialPluginParam",
                        Some("aws.credentials"),
                        "not set: the connector refuses to start without it; Shardline uses the AWS default chain",
                    );
                }
                _ => {
                    return Err(src.invalid(
                        "awsCredentialPluginParam",
                        "needs both accessKey and secretKey",
                    ))
                }
            }
        }
        Some(name) if DEFAULT_CHAIN_PLUGINS.contains(&name) => {
            d.set("aws.credentials.type", "default", "awsCredentialPluginName");
            if param.as_ref().is_some_and(|m| !m.is_empty()) {
                d.ignore(
                    "awsCredentialPluginParam",
                    "the default chain plugin takes no parameters",
                );
            }
        }
        Some(name) if ASSUME_ROLE_PLUGINS.contains(&name) => {
            check_keys(&["roleArn", "roleSessionName"])?;
            let arn = p("roleArn").ok_or_else(|| {
                src.invalid(
                    "awsCredentialPluginParam",
                    "STSAssumeRoleProviderPlugin needs roleArn",
                )
            })?;
            d.set(
                "aws.credentials.type",
                "assume_role",
                "awsCredentialPluginName",
            );
            d.set("aws.credentials.role_arn", arn.as_str(), "roleArn");
            if let Some(s) = p("roleSessionName") {
                d.set(
                    "aws.credentials.session_name",
                    s.as_str(),
                    "roleSessionName",
                );
            }
        }
        Some(other) => {
            d.set("aws.credentials.type", "default", "");
            d.note(
                NoteKind::Changed,
                "awsCredentialPluginName",
                Some("aws.credentials"),
                format!("{other} is a custom Java plugin Shardline cannot run; the AWS default chain is used instead (set aws.credentials in an overlay)"),
            );
        }
    }
    Ok(())
}

/// messageKeyMode and kinesisRecordProperties: the key and properties of Pulsar messages.
fn message_shape(src: &Source, d: &mut Draft, configs: &Mapping) -> Result<(), MigrateError> {
    if let Some(mode) = configs.get("messageKeyMode").and_then(text) {
        match mode.as_str() {
            "PARTITION_KEY" | "" => {}
            other => d.ignore(
                "messageKeyMode",
                format!("{other}: Shardline keys every message by its partition key, as the connector's default; a transform component can set another key"),
            ),
        }
    }
    let Some(v) = configs.get("kinesisRecordProperties") else {
        return Ok(());
    };
    let names: Vec<String> = match v {
        Value::Sequence(s) => s.iter().filter_map(text).collect(),
        other => text(other)
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    let known: Vec<&str> = ALWAYS_PROPERTIES
        .iter()
        .copied()
        .chain(["kinesis.shard.id", "kinesis.millis.behind.latest"])
        .collect();
    for n in &names {
        match n.as_str() {
            "kinesis.shard.id" => {
                d.set("_pulsar.shard_id_property", true, "kinesisRecordProperties")
            }
            "kinesis.millis.behind.latest" => d.set(
                "_pulsar.millis_behind_latest_property",
                true,
                "kinesisRecordProperties",
            ),
            n if ALWAYS_PROPERTIES.contains(&n) => {}
            other => {
                return Err(MigrateError::UnknownKey {
                    file: src.file.clone(),
                    key: format!("kinesisRecordProperties: {other}"),
                    line: src.line_of(other),
                    suggestion: crate::config::suggest::nearest(other, known.iter().copied())
                        .map(str::to_string),
                })
            }
        }
    }
    let left_out: Vec<&str> = ALWAYS_PROPERTIES
        .iter()
        .copied()
        .filter(|p| !names.iter().any(|n| n == p))
        .collect();
    if !left_out.is_empty() {
        d.note(
            NoteKind::Changed,
            "kinesisRecordProperties",
            None,
            format!(
                "Shardline always sets {}; consumers that do not read them are not affected",
                left_out.join(", ")
            ),
        );
    }
    Ok(())
}

fn key(k: &Value) -> String {
    text(k).unwrap_or_default()
}

fn is_blank(v: &Value) -> bool {
    matches!(v, Value::Null) || text(v).is_some_and(|s| s.trim().is_empty())
}

fn bool_of(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        other => text(other).and_then(|s| super::boolean(&s)),
    }
}

/// A whole number, written as a number or as text (Jackson accepts both).
fn number(src: &Source, m: &Mapping, k: &str) -> Result<Option<u64>, MigrateError> {
    match m.get(k).filter(|v| !is_blank(v)) {
        None => Ok(None),
        Some(v) => text(v)
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| src.invalid(k, "expected a whole number")),
    }
}
