//! Flink StateFun remote module YAML: the Kinesis ingress becomes the source, the Kinesis
//! egress a Kinesis sink.
//!
//! StateFun kept shard positions in Flink checkpoints, not in a KCL lease table: Shardline
//! starts each shard at `startupPosition` once and checkpoints in the lease table named
//! after the ingress id from then on. Functions, routers and `targets` have no Shardline
//! meaning (records go through Wasm components instead) and are noted.

use serde_yaml::{Mapping, Value};

use super::{app_name, kpl_property, text, Draft, MigrateError, NoteKind, Options, Source};

const INGRESS_TYPES: &[&str] = &[
    "statefun.kinesis.io/routable-protobuf-ingress",
    "statefun.kinesis.io/routable-ingress",
];
const EGRESS_TYPES: &[&str] = &["statefun.kinesis.io/generic-egress"];

const INGRESS_KEYS: &[&str] = &[
    "awsRegion",
    "awsCredentials",
    "startupPosition",
    "streams",
    "clientConfigProperties",
];
const EGRESS_KEYS: &[&str] = &[
    "awsRegion",
    "awsCredentials",
    "maxOutstandingRecords",
    "clientConfigProperties",
];

pub fn convert(src: &Source, _opts: &Options) -> Result<Draft, MigrateError> {
    let doc = super::yaml_value(&src.text, &src.file)?;
    let top = map(src, &doc, "(top level)")?;
    check(src, top, "", &["version", "module"])?;
    let module = map(src, field(src, top, "", "module")?, "module")?;
    check(src, module, "module", &["meta", "spec"])?;
    if let Some(meta) = module.get("meta") {
        let meta = map(src, meta, "module.meta")?;
        check(src, meta, "module.meta", &["type"])?;
    }
    let spec = map(src, field(src, module, "module", "spec")?, "module.spec")?;
    check(
        src,
        spec,
        "module.spec",
        &["ingresses", "egresses", "functions", "routers", "endpoints"],
    )?;
    let mut d = Draft::default();
    for k in ["functions", "routers", "endpoints"] {
        if spec.contains_key(k) {
            d.ignore(
                &format!("module.spec.{k}"),
                "StateFun functions and routing; in Shardline records go through Wasm components (stages) instead",
            );
        }
    }

    let mut ingress_seen = false;
    for (i, item) in seq(spec.get("ingresses")).iter().enumerate() {
        let path = format!("module.spec.ingresses.{i}.ingress");
        let (kind, id, spec) = io_item(src, item, "ingress", &path)?;
        if !INGRESS_TYPES.contains(&kind.as_str()) {
            d.ignore(
                &format!("ingress {id}"),
                format!("type {kind} is not a Kinesis ingress"),
            );
            continue;
        }
        if ingress_seen {
            return Err(src.invalid(
                &path,
                "a second Kinesis ingress: one Shardline application reads one set of streams with one set of AWS settings; convert a module per ingress",
            ));
        }
        ingress_seen = true;
        ingress(src, &mut d, &id, spec, &path)?;
    }
    for (i, item) in seq(spec.get("egresses")).iter().enumerate() {
        let path = format!("module.spec.egresses.{i}.egress");
        let (kind, id, spec) = io_item(src, item, "egress", &path)?;
        if !EGRESS_TYPES.contains(&kind.as_str()) {
            d.ignore(
                &format!("egress {id}"),
                format!("type {kind} is not a Kinesis egress"),
            );
            continue;
        }
        egress(src, &mut d, &id, spec, &path, ingress_seen)?;
    }
    if !ingress_seen {
        d.note(
            NoteKind::Added,
            "module.spec.ingresses",
            None,
            "no Kinesis ingress: give application and source (stream to read) in an overlay",
        );
    }
    Ok(d)
}

fn ingress(
    src: &Source,
    d: &mut Draft,
    id: &str,
    spec: &Mapping,
    path: &str,
) -> Result<(), MigrateError> {
    check(src, spec, &format!("{path}.spec"), INGRESS_KEYS)?;
    let app = app_name(id);
    d.set("application", app.as_str(), "ingress id");
    d.note(
        NoteKind::Added,
        &format!("ingress {id}"),
        Some("application"),
        "StateFun kept shard positions in Flink checkpoints; Shardline keeps them in a lease table of this name and starts at startupPosition where it has none",
    );
    let streams = seq(spec.get("streams"));
    if streams.is_empty() {
        return Err(src.invalid("streams", "the ingress needs at least one stream"));
    }
    let mut list = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let spath = format!("{path}.spec.streams.{i}");
        let m = map(src, s, &spath)?;
        check(src, m, &spath, &["stream", "typeUrl", "targets"])?;
        let name = text(field(src, m, &spath, "stream")?)
            .ok_or_else(|| src.invalid("stream", "expected a stream name"))?;
        if let Some(t) = m.get("typeUrl").and_then(text) {
            d.note(
                NoteKind::Changed,
                &format!("streams.{i}.typeUrl"),
                None,
                format!("StateFun wrapped each record of {name} as a {t} message; Shardline hands the record's bytes to the deserialize stage, which may do the same"),
            );
        }
        if m.contains_key("targets") {
            d.ignore(
                &format!("streams.{i}.targets"),
                "StateFun function addresses; a route component chooses destinations in Shardline",
            );
        }
        list.push(name);
    }
    if list.len() == 1 {
        d.set("source.stream", list[0].as_str(), "streams.0.stream");
    } else {
        let items: Vec<Value> = list
            .iter()
            .map(|n| {
                let mut m = Mapping::new();
                m.insert("name".into(), n.as_str().into());
                Value::Mapping(m)
            })
            .collect();
        d.set("source.streams", Value::Sequence(items), "streams");
    }

    match spec.get("startupPosition") {
        None => d.set(
            "source.initial_position",
            "latest",
            "startupPosition (default latest)",
        ),
        Some(p) => {
            let ppath = format!("{path}.spec.startupPosition");
            let m = map(src, p, &ppath)?;
            check(src, m, &ppath, &["type", "date"])?;
            match m.get("type").and_then(text).as_deref() {
                Some("latest") => d.set("source.initial_position", "latest", "startupPosition"),
                Some("earliest") => {
                    d.set("source.initial_position", "trim_horizon", "startupPosition")
                }
                Some("date") => {
                    let date = m
                        .get("date")
                        .and_then(text)
                        .ok_or_else(|| src.invalid("startupPosition", "type date needs date"))?;
                    let t = super::utc_time(&date).ok_or_else(|| {
                        src.invalid(
                            "date",
                            format!("{date:?} is not like 2020-02-01 04:15:00.00 Z"),
                        )
                    })?;
                    d.set("source.initial_position", "at_timestamp", "startupPosition");
                    d.set("source.at_timestamp", t.as_str(), "startupPosition.date");
                }
                other => {
                    return Err(unknown_value(
                        src,
                        "startupPosition.type",
                        other,
                        &["latest", "earliest", "date"],
                    ))
                }
            }
        }
    }
    region(src, d, spec.get("awsRegion"), &format!("{path}.spec"), None)?;
    credentials(src, d, spec.get("awsCredentials"), &format!("{path}.spec"))?;
    client_properties(src, d, spec.get("clientConfigProperties"), false)?;
    Ok(())
}

fn egress(
    src: &Source,
    d: &mut Draft,
    id: &str,
    spec: &Mapping,
    path: &str,
    has_ingress: bool,
) -> Result<(), MigrateError> {
    check(src, spec, &format!("{path}.spec"), EGRESS_KEYS)?;
    let name = app_name(id.rsplit('/').next().unwrap_or(id));
    let sink = format!("sinks.{name}.kinesis");
    d.set(&format!("{sink}.stream"), name.as_str(), "egress id");
    d.note(
        NoteKind::Added,
        &format!("egress {id}"),
        Some(&format!("{sink}.stream")),
        "StateFun functions name the stream of each record; in Shardline a route component does, and records that name none go to this stream (change it in an overlay)",
    );
    if let Some(v) = spec.get("maxOutstandingRecords") {
        let n = text(v)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| src.invalid("maxOutstandingRecords", "expected a whole number"))?;
        d.set(
            &format!("{sink}.max_outstanding_records"),
            n,
            "maxOutstandingRecords",
        );
    }
    if has_ingress {
        region(
            src,
            d,
            spec.get("awsRegion"),
            &format!("{path}.spec"),
            Some(&sink),
        )?;
        if spec.contains_key("awsCredentials") {
            d.ignore(
                "egress awsCredentials",
                "Shardline signs every AWS call with aws.credentials (from the ingress)",
            );
        }
    } else {
        region(src, d, spec.get("awsRegion"), &format!("{path}.spec"), None)?;
        credentials(src, d, spec.get("awsCredentials"), &format!("{path}.spec"))?;
        if d.get("aws.endpoints.kinesis").is_some() {
            d.note(
                NoteKind::Changed,
                "awsRegion.endpoint",
                Some("aws.endpoints.kinesis"),
                "the egress endpoint serves the source stream too (the module has no ingress)",
            );
        }
    }
    for (i, p) in seq(spec.get("clientConfigProperties")).iter().enumerate() {
        for (k, v) in map(src, p, &format!("clientConfigProperties.{i}"))? {
            let k = text(k).unwrap_or_default();
            let v = text(v).unwrap_or_default();
            kpl_property(d, src, &format!("clientConfigProperties.{k}"), &k, &v)?;
        }
    }
    // The egress's producer settings belong to this sink.
    d.move_tree("_kinesis_producer", &sink);
    Ok(())
}

/// awsRegion: default | specific | custom-endpoint. With `sink`, the region and endpoint
/// are that sink's.
fn region(
    src: &Source,
    d: &mut Draft,
    v: Option<&Value>,
    path: &str,
    sink: Option<&str>,
) -> Result<(), MigrateError> {
    let Some(v) = v else { return Ok(()) };
    let rpath = format!("{path}.awsRegion");
    let m = map(src, v, &rpath)?;
    check(src, m, &rpath, &["type", "id", "endpoint"])?;
    let (region_key, endpoint_key) = match sink {
        Some(s) => (format!("{s}.region"), format!("{s}.endpoint")),
        None => (
            "aws.region".to_string(),
            "aws.endpoints.kinesis".to_string(),
        ),
    };
    match m.get("type").and_then(text).as_deref() {
        Some("default") => {}
        Some("specific") => {
            let id = m
                .get("id")
                .and_then(text)
                .ok_or_else(|| src.invalid("awsRegion", "type specific needs id"))?;
            d.set(&region_key, id.as_str(), "awsRegion.id");
        }
        Some("custom-endpoint") => {
            let id = m
                .get("id")
                .and_then(text)
                .ok_or_else(|| src.invalid("awsRegion", "type custom-endpoint needs id"))?;
            let e = m
                .get("endpoint")
                .and_then(text)
                .ok_or_else(|| src.invalid("awsRegion", "type custom-endpoint needs endpoint"))?;
            d.set(&region_key, id.as_str(), "awsRegion.id");
            d.set(&endpoint_key, e.as_str(), "awsRegion.endpoint");
            if sink.is_none() {
                d.note(
                    NoteKind::Changed,
                    "awsRegion.endpoint",
                    Some("aws.endpoints.kinesis"),
                    "Kinesis only: the lease table lives in DynamoDB (aws.endpoints.dynamodb), which StateFun did not use",
                );
            }
        }
        other => {
            return Err(unknown_value(
                src,
                "awsRegion.type",
                other,
                &["default", "specific", "custom-endpoint"],
            ))
        }
    }
    Ok(())
}

/// awsCredentials: default | basic | profile.
fn credentials(
    src: &Source,
    d: &mut Draft,
    v: Option<&Value>,
    path: &str,
) -> Result<(), MigrateError> {
    let Some(v) = v else { return Ok(()) };
    let cpath = format!("{path}.awsCredentials");
    let m = map(src, v, &cpath)?;
    check(
        src,
        m,
        &cpath,
        &[
            "type",
            "accessKeyId",
            "secretAccessKey",
            "profileName",
            "profilePath",
        ],
    )?;
    match m.get("type").and_then(text).as_deref() {
        Some("default") => d.set("aws.credentials.type", "default", "awsCredentials"),
        Some("basic") => {
            let (Some(a), Some(s)) = (
                m.get("accessKeyId").and_then(text),
                m.get("secretAccessKey").and_then(text),
            ) else {
                return Err(src.invalid(
                    "awsCredentials",
                    "type basic needs accessKeyId and secretAccessKey (a profile is type: profile)",
                ));
            };
            d.set("aws.credentials.type", "static", "awsCredentials");
            d.set("aws.credentials.access_key_id", a.as_str(), "accessKeyId");
            d.set_secret(
                "aws.credentials.secret_access_key",
                s.as_str(),
                "secretAccessKey",
            );
        }
        Some("profile") => {
            let name = m
                .get("profileName")
                .and_then(text)
                .ok_or_else(|| src.invalid("awsCredentials", "type profile needs profileName"))?;
            d.set("aws.credentials.type", "profile", "awsCredentials");
            d.set("aws.credentials.profile", name.as_str(), "profileName");
            if let Some(p) = m.get("profilePath").and_then(text) {
                d.set("aws.credentials.file", p.as_str(), "profilePath");
            }
        }
        other => {
            return Err(unknown_value(
                src,
                "awsCredentials.type",
                other,
                &["default", "basic", "profile"],
            ))
        }
    }
    Ok(())
}

/// The ingress's AWS client properties: the proxy is mapped, the rest noted.
fn client_properties(
    src: &Source,
    d: &mut Draft,
    v: Option<&Value>,
    _egress: bool,
) -> Result<(), MigrateError> {
    let mut props = Vec::new();
    for (i, p) in seq(v).iter().enumerate() {
        for (k, v) in map(src, p, &format!("clientConfigProperties.{i}"))? {
            props.push((text(k).unwrap_or_default(), text(v).unwrap_or_default()));
        }
    }
    super::samza::client_config(src, d, "clientConfigProperties.", &props)
}

fn unknown_value(src: &Source, key: &str, got: Option<&str>, valid: &[&str]) -> MigrateError {
    let got = got.unwrap_or("");
    let hint = crate::config::suggest::nearest(got, valid.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    src.invalid(
        key,
        format!("{got:?} is not one of {}{hint}", valid.join(", ")),
    )
}

fn io_item<'a>(
    src: &Source,
    item: &'a Value,
    what: &str,
    path: &str,
) -> Result<(String, String, &'a Mapping), MigrateError> {
    let outer = map(src, item, path)?;
    check(
        src,
        outer,
        path.rsplit_once('.').map(|(p, _)| p).unwrap_or(path),
        &[what],
    )?;
    let m = map(src, field(src, outer, path, what)?, path)?;
    check(src, m, path, &["meta", "spec"])?;
    let meta = map(src, field(src, m, path, "meta")?, &format!("{path}.meta"))?;
    check(src, meta, &format!("{path}.meta"), &["type", "id"])?;
    let kind = meta.get("type").and_then(text).unwrap_or_default();
    let id = meta.get("id").and_then(text).unwrap_or_default();
    let spec = map(src, field(src, m, path, "spec")?, &format!("{path}.spec"))?;
    Ok((kind, id, spec))
}

fn check(src: &Source, m: &Mapping, path: &str, valid: &[&str]) -> Result<(), MigrateError> {
    for (k, _) in m {
        let k = text(k).unwrap_or_default();
        if !valid.contains(&k.as_str()) {
            let shown = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            return Err(src.unknown(&k, &shown, valid));
        }
    }
    Ok(())
}

fn field<'a>(src: &Source, m: &'a Mapping, path: &str, k: &str) -> Result<&'a Value, MigrateError> {
    m.get(k).ok_or_else(|| {
        src.invalid(
            &if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            },
            "is required",
        )
    })
}

fn map<'a>(src: &Source, v: &'a Value, path: &str) -> Result<&'a Mapping, MigrateError> {
    v.as_mapping()
        .ok_or_else(|| src.invalid(path, "expected a map"))
}

fn seq(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_sequence).cloned().unwrap_or_default()
}
