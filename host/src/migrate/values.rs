//! Reading the values of foreign configs: text and numbers as YAML or Java properties
//! write them, booleans as Java reads them, times, the KPL's properties, application names.

use serde_yaml::Value;

use super::{Draft, MigrateError, Source};

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
