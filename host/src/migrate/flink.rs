//! Flink Kinesis connector `Properties` (`FlinkKinesisConsumer` / `FlinkKinesisProducer`):
//! `aws.*` (region, credentials provider, endpoint), `flink.*` consumer settings and KPL
//! producer settings.
//!
//! Flink names the stream in code, so it comes from `--stream` (or the overlay). Flink kept
//! shard positions in its own checkpoints, not in a KCL lease table: Shardline starts at
//! `flink.stream.initpos` once, then resumes from its lease table.

use super::{
    kpl_property, millis, parse_properties, Draft, MigrateError, NoteKind, Options, Source,
    KPL_PROPERTIES,
};

/// `aws.*` and `flink.*` keys the connector knows.
const KEYS: &[&str] = &[
    "aws.region",
    "aws.endpoint",
    "aws.credentials.provider",
    "aws.credentials.provider.basic.accesskeyid",
    "aws.credentials.provider.basic.secretkey",
    "aws.credentials.provider.basic.sessiontoken",
    "aws.credentials.provider.profile.name",
    "aws.credentials.provider.profile.path",
    "aws.credentials.provider.role.arn",
    "aws.credentials.provider.role.sessionName",
    "aws.credentials.provider.role.externalId",
    "aws.credentials.provider.role.provider",
    "aws.credentials.provider.webIdentityToken.file",
    "aws.clientconfig",
    "flink.stream.initpos",
    "flink.stream.initpos.timestamp",
    "flink.stream.initpos.timestamp.format",
    "flink.stream.recordpublisher",
    "flink.stream.efo.consumername",
    "flink.stream.efo.registration",
    "flink.stream.efo.consumerarn",
    "flink.stream.describe.maxretries",
    "flink.stream.describe.backoff.base",
    "flink.stream.describe.backoff.max",
    "flink.stream.describe.backoff.expconst",
    "flink.shard.getrecords.maxrecordcount",
    "flink.shard.getrecords.maxretries",
    "flink.shard.getrecords.backoff.base",
    "flink.shard.getrecords.backoff.max",
    "flink.shard.getrecords.backoff.expconst",
    "flink.shard.getrecords.intervalmillis",
    "flink.shard.getiterator.maxretries",
    "flink.shard.getiterator.backoff.base",
    "flink.shard.getiterator.backoff.max",
    "flink.shard.getiterator.backoff.expconst",
    "flink.shard.discovery.intervalmillis",
    "flink.shard.adaptivereads",
    "flink.shard.idle.interval",
    "flink.shard.subscribetoshard.maxretries",
    "flink.shard.subscribetoshard.backoff.base",
    "flink.shard.subscribetoshard.backoff.max",
    "flink.shard.subscribetoshard.backoff.expconst",
    "flink.shard.consumer.error.recoverable",
    "flink.watermark.sync.interval",
    "flink.watermark.lookahead.millis",
    "flink.watermark.sync.queue.capacity",
    "flink.shard.use.adaptive.reads",
];

pub fn convert(src: &Source, opts: &Options) -> Result<Draft, MigrateError> {
    let props = parse_properties(&src.text);
    let mut d = Draft::default();
    let get = |k: &str| {
        props
            .iter()
            .rev()
            .find(|(_, pk, _)| pk == k)
            .map(|(_, _, v)| v.clone())
    };
    check_keys(src, &mut d, &props)?;
    stream(&mut d, opts);
    if let Some(r) = get("aws.region") {
        d.set("aws.region", r.as_str(), "aws.region");
    }
    if let Some(e) = get("aws.endpoint") {
        d.set("aws.endpoints.kinesis", e.as_str(), "aws.endpoint");
    }
    credentials(src, &mut d, &get)?;
    start_position(src, &mut d, &get)?;
    retrieval(src, &mut d, &get)?;
    note_unmapped(&mut d, &props);
    Ok(d)
}

/// Every key must be the connector's or the KPL's (those are mapped as the KPL's).
fn check_keys(
    src: &Source,
    d: &mut Draft,
    props: &[(usize, String, String)],
) -> Result<(), MigrateError> {
    for (line, k, v) in props {
        if KEYS.contains(&k.as_str()) {
            continue;
        }
        if KPL_PROPERTIES.contains(&k.as_str()) {
            kpl_property(d, src, k, k, v)?;
            continue;
        }
        if k.starts_with("aws.clientconfig.")
            || k.starts_with("aws.credentials.provider.role.provider")
        {
            continue;
        }
        let candidates = KEYS.iter().chain(KPL_PROPERTIES).copied();
        return Err(MigrateError::UnknownKey {
            file: src.file.clone(),
            key: k.clone(),
            line: Some(*line),
            suggestion: crate::config::suggest::nearest(k, candidates).map(str::to_string),
        });
    }

    Ok(())
}

/// The stream, named in code: `--stream`, and an application named after it.
fn stream(d: &mut Draft, opts: &Options) {
    match &opts.stream {
        Some(s) => {
            d.set("source.stream", s.as_str(), "--stream");
            d.set("application", format!("flink-{s}").as_str(), "");
            d.note(
                NoteKind::Added,
                "(application)",
                Some("application"),
                "Flink kept shard positions in its checkpoints; Shardline keeps them in a lease table of this name (set application in an overlay to choose another)",
            );
        }
        None => d.note(
            NoteKind::Added,
            "(stream)",
            None,
            "Flink names the stream in code: pass --stream NAME (or source.stream and application in an overlay)",
        ),
    }
}

/// `flink.stream.initpos` and its timestamp.
fn start_position(
    src: &Source,
    d: &mut Draft,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<(), MigrateError> {
    let initpos = get("flink.stream.initpos");
    match initpos.as_deref() {
        None => d.set(
            "source.initial_position",
            "latest",
            "flink.stream.initpos (default LATEST)",
        ),
        Some("LATEST") => d.set("source.initial_position", "latest", "flink.stream.initpos"),
        Some("TRIM_HORIZON") => d.set(
            "source.initial_position",
            "trim_horizon",
            "flink.stream.initpos",
        ),
        Some("AT_TIMESTAMP") => {
            d.set(
                "source.initial_position",
                "at_timestamp",
                "flink.stream.initpos",
            );
            let t = get("flink.stream.initpos.timestamp").ok_or_else(|| {
                src.invalid(
                    "flink.stream.initpos.timestamp",
                    "is required with AT_TIMESTAMP",
                )
            })?;
            if let Some(f) = get("flink.stream.initpos.timestamp.format") {
                d.note(
                    NoteKind::Changed,
                    "flink.stream.initpos.timestamp.format",
                    Some("source.at_timestamp"),
                    format!("Java date pattern {f:?} is not interpreted; the time is read as epoch seconds or ISO-8601"),
                );
            }
            // Epoch seconds with a fraction, or the default yyyy-MM-dd'T'HH:mm:ss.SSSXXX.
            let rfc = t
                .parse::<f64>()
                .ok()
                .filter(|s| *s >= 0.0)
                .map(|s| {
                    let ms = (s * 1000.0).round() as u64;
                    humantime::format_rfc3339_millis(
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                    )
                    .to_string()
                    .replace(".000Z", "Z")
                })
                .or_else(|| super::utc_time(&t))
                .ok_or_else(|| {
                    src.invalid(
                        "flink.stream.initpos.timestamp",
                        format!(
                            "{t:?} is neither epoch seconds nor like 2016-04-04T19:58:46.480-00:00"
                        ),
                    )
                })?;
            d.set(
                "source.at_timestamp",
                rfc.as_str(),
                "flink.stream.initpos.timestamp",
            );
        }
        Some(other) => {
            return Err(src.invalid(
                "flink.stream.initpos",
                format!("{other:?} is not LATEST, TRIM_HORIZON or AT_TIMESTAMP"),
            ))
        }
    }
    if initpos.as_deref() != Some("AT_TIMESTAMP") && get("flink.stream.initpos.timestamp").is_some()
    {
        d.ignore(
            "flink.stream.initpos.timestamp",
            "only used with flink.stream.initpos AT_TIMESTAMP",
        );
    }

    Ok(())
}

/// Polling or enhanced fan-out, and the polling and shard discovery settings.
fn retrieval(
    src: &Source,
    d: &mut Draft,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<(), MigrateError> {
    match get("flink.stream.recordpublisher").as_deref() {
        None | Some("POLLING") => d.set(
            "source.retrieval",
            "polling",
            "flink.stream.recordpublisher (default POLLING)",
        ),
        Some("EFO") => d.set(
            "source.retrieval",
            "fan_out",
            "flink.stream.recordpublisher",
        ),
        Some(other) => {
            return Err(src.invalid(
                "flink.stream.recordpublisher",
                format!("{other:?} is not POLLING or EFO"),
            ))
        }
    }
    if let Some(n) = get("flink.stream.efo.consumername") {
        d.set(
            "source.fan_out.consumer_name",
            n.as_str(),
            "flink.stream.efo.consumername",
        );
    }
    let ms = |k: &str| -> Result<Option<u64>, MigrateError> {
        get(k)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| src.invalid(k, format!("expected a whole number, got {v:?}")))
            })
            .transpose()
    };
    if let Some(n) = ms("flink.shard.getrecords.maxrecordcount")? {
        d.set(
            "source.polling.max_records",
            n,
            "flink.shard.getrecords.maxrecordcount",
        );
    }
    if let Some(n) = ms("flink.shard.getrecords.intervalmillis")? {
        d.set(
            "source.polling.interval",
            millis(n.max(200)).as_str(),
            "flink.shard.getrecords.intervalmillis",
        );
        if n < 200 {
            d.note(
                NoteKind::Changed,
                "flink.shard.getrecords.intervalmillis",
                Some("source.polling.interval"),
                format!("{n} ms is below Kinesis' 5 reads/s per shard; 200ms"),
            );
        }
    }
    if let Some(n) = ms("flink.shard.getrecords.backoff.base")? {
        d.set(
            "source.polling.backoff",
            millis(n).as_str(),
            "flink.shard.getrecords.backoff.base",
        );
    }
    if let Some(n) = ms("flink.shard.getrecords.backoff.max")? {
        d.set(
            "source.polling.max_backoff",
            millis(n).as_str(),
            "flink.shard.getrecords.backoff.max",
        );
    }
    if let Some(n) = ms("flink.shard.discovery.intervalmillis")? {
        d.set(
            "leases.shard_sync_interval",
            millis(n).as_str(),
            "flink.shard.discovery.intervalmillis",
        );
    }
    Ok(())
}

/// The connector's settings without a Shardline meaning, noted.
fn note_unmapped(d: &mut Draft, props: &[(usize, String, String)]) {
    for (_, k, _) in props {
        let mapped = [
            "aws.region",
            "aws.endpoint",
            "flink.stream.initpos",
            "flink.stream.initpos.timestamp",
            "flink.stream.initpos.timestamp.format",
            "flink.stream.recordpublisher",
            "flink.stream.efo.consumername",
            "flink.shard.getrecords.maxrecordcount",
            "flink.shard.getrecords.intervalmillis",
            "flink.shard.getrecords.backoff.base",
            "flink.shard.getrecords.backoff.max",
            "flink.shard.discovery.intervalmillis",
        ];
        if mapped.contains(&k.as_str())
            || k.starts_with("aws.credentials")
            || KPL_PROPERTIES.contains(&k.as_str())
        {
            continue;
        }
        if k.starts_with("aws.clientconfig") {
            d.ignore(
                k,
                "an AWS Java SDK client setting; Shardline's clients use the Rust SDK's defaults",
            );
        } else if k.starts_with("flink.watermark") {
            d.ignore(
                k,
                "Flink watermarks; a transform component sets event times in Shardline",
            );
        } else {
            d.ignore(k, "a Flink retry/backoff setting; Shardline retries with source.polling.backoff and the SDK's retry policy");
        }
    }
}

fn credentials(
    src: &Source,
    d: &mut Draft,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(), MigrateError> {
    const P: &str = "aws.credentials.provider";
    let kind = get(P);
    let used: &[&str] = match kind.as_deref() {
        // Flink's default: BASIC when keys are given, AUTO otherwise.
        None if get("aws.credentials.provider.basic.accesskeyid").is_some() => {
            basic(src, d, get)?;
            &["basic.accesskeyid", "basic.secretkey", "basic.sessiontoken"]
        }
        None | Some("AUTO") => {
            d.set("aws.credentials.type", "default", if kind.is_some() { P } else { "" });
            &[]
        }
        Some("BASIC") => {
            basic(src, d, get)?;
            &["basic.accesskeyid", "basic.secretkey", "basic.sessiontoken"]
        }
        Some("ENV_VAR") => {
            d.set("aws.credentials.type", "default", P);
            d.note(
                NoteKind::Changed,
                P,
                Some("aws.credentials"),
                "ENV_VAR: the default chain reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY first, then falls back to profiles and roles",
            );
            &[]
        }
        Some("SYS_PROP") => {
            d.set("aws.credentials.type", "default", P);
            d.note(
                NoteKind::Changed,
                P,
                Some("aws.credentials"),
                "SYS_PROP: there are no Java system properties; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the default chain",
            );
            &[]
        }
        Some("PROFILE") => {
            let name = get("aws.credentials.provider.profile.name").unwrap_or_else(|| "default".into());
            d.set("aws.credentials.type", "profile", P);
            d.set("aws.credentials.profile", name.as_str(), "aws.credentials.provider.profile.name");
            if let Some(p) = get("aws.credentials.provider.profile.path") {
                d.set("aws.credentials.file", p.as_str(), "aws.credentials.provider.profile.path");
            }
            &["profile.name", "profile.path"]
        }
        Some("ASSUME_ROLE") => {
            let arn = get("aws.credentials.provider.role.arn").ok_or_else(|| {
                src.invalid("aws.credentials.provider.role.arn", "is required with ASSUME_ROLE")
            })?;
            d.set("aws.credentials.type", "assume_role", P);
            d.set("aws.credentials.role_arn", arn.as_str(), "aws.credentials.provider.role.arn");
            if let Some(s) = get("aws.credentials.provider.role.sessionName") {
                d.set("aws.credentials.session_name", s.as_str(), "aws.credentials.provider.role.sessionName");
            }
            if let Some(e) = get("aws.credentials.provider.role.externalId") {
                d.set_secret("aws.credentials.external_id", e.as_str(), "aws.credentials.provider.role.externalId");
            }
            if get("aws.credentials.provider.role.provider").is_some() {
                d.note(
                    NoteKind::Changed,
                    "aws.credentials.provider.role.provider",
                    Some("aws.credentials"),
                    "the role is assumed with credentials from the default chain",
                );
            }
            &["role.arn", "role.sessionName", "role.externalId", "role.provider"]
        }
        Some("WEB_IDENTITY_TOKEN") => {
            d.set("aws.credentials.type", "default", P);
            d.note(
                NoteKind::Changed,
                P,
                Some("aws.credentials"),
                "web identity comes through the default chain: AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (role.arn, role.sessionName and webIdentityToken.file here are not read)",
            );
            &[]
        }
        Some(other) => {
            return Err(src.invalid(
                P,
                format!("{other:?} is not BASIC, ENV_VAR, SYS_PROP, PROFILE, AUTO, ASSUME_ROLE or WEB_IDENTITY_TOKEN"),
            ))
        }
    };
    for k in KEYS
        .iter()
        .filter(|k| k.starts_with("aws.credentials.provider."))
    {
        let short = &k[P.len() + 1..];
        if get(k).is_some() && !used.contains(&short) {
            d.ignore(
                k,
                format!(
                    "not used with aws.credentials.provider {}",
                    kind.as_deref().unwrap_or("AUTO")
                ),
            );
        }
    }
    Ok(())
}

fn basic(
    src: &Source,
    d: &mut Draft,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(), MigrateError> {
    let a = get("aws.credentials.provider.basic.accesskeyid");
    let s = get("aws.credentials.provider.basic.secretkey");
    let (Some(a), Some(s)) = (a, s) else {
        return Err(src.invalid(
            "aws.credentials.provider.basic.accesskeyid",
            "BASIC needs aws.credentials.provider.basic.accesskeyid and .secretkey",
        ));
    };
    d.set("aws.credentials.type", "static", "aws.credentials.provider");
    d.set(
        "aws.credentials.access_key_id",
        a.as_str(),
        "aws.credentials.provider.basic.accesskeyid",
    );
    d.set_secret(
        "aws.credentials.secret_access_key",
        s.as_str(),
        "aws.credentials.provider.basic.secretkey",
    );
    if let Some(t) = get("aws.credentials.provider.basic.sessiontoken") {
        d.set_secret(
            "aws.credentials.session_token",
            t.as_str(),
            "aws.credentials.provider.basic.sessiontoken",
        );
    }
    Ok(())
}
