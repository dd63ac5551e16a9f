//! What `shardline try` prints: a report per record (for people, or one JSON object per
//! line) and the summary that decides the exit code.

use super::*;

/// Counts for the summary line and the exit code.
#[derive(Debug, Default)]
pub(super) struct Tally {
    ok: usize,
    events: usize,
    filtered: usize,
    rejected: usize,
    failed: usize,
}

impl Tally {
    pub(super) fn count(&mut self, outputs: &[Output], failures: &[RecordFailure]) {
        if failures.iter().any(|f| f.kind != FailureKind::Rejected) {
            self.failed += 1;
        } else if !failures.is_empty() {
            self.rejected += 1;
        } else if outputs.is_empty() {
            self.filtered += 1;
        } else {
            self.ok += 1;
            self.events += outputs
                .iter()
                .map(|o| o.destinations.len().max(1))
                .sum::<usize>();
        }
    }

    pub(super) fn summary(&self, records: usize, batches: usize) -> String {
        format!(
            "{records} record{} in {batches} batch{}: {} ok ({} message{}), {} filtered out, {} rejected, {} failed (trap, timeout, memory or contract)",
            plural(records),
            if batches == 1 { "" } else { "es" },
            self.ok,
            self.events,
            plural(self.events),
            self.filtered,
            self.rejected,
            self.failed
        )
    }

    pub(super) fn exit_code(&self) -> u8 {
        if self.failed > 0 {
            EXIT_FAILED
        } else if self.rejected > 0 {
            EXIT_REJECTED
        } else {
            0
        }
    }
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A payload for people: the text when it is printable UTF-8, a JSON string when it is
/// UTF-8 with control characters, else `base64:…`.
pub(super) fn payload_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\t') => s.to_string(),
        Ok(s) => serde_json::Value::from(s).to_string(),
        Err(_) => format!("base64:{}", crate::sinks::dead_letter::base64(bytes)),
    }
}

pub(super) fn destination_text(d: &Destination) -> String {
    let mut s = match &d.sink {
        Some(sink) => format!("sink {sink}"),
        None => "default sink".to_string(),
    };
    match &d.topic {
        Some(topic) => {
            let _ = write!(s, ", topic {topic}");
        }
        None => s.push_str(", its default topic"),
    }
    if let Some(k) = &d.partition_key {
        let _ = write!(s, ", partition key {k:?}");
    }
    if let Some(h) = &d.explicit_hash_key {
        let _ = write!(s, ", explicit hash key {h}");
    }
    s
}

pub(super) fn time_text(millis: i64) -> String {
    match u64::try_from(millis) {
        Ok(ms) => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            format!("{} ({millis})", humantime::format_rfc3339_millis(t))
        }
        Err(_) => millis.to_string(),
    }
}

pub(super) fn human(
    n: usize,
    r: &InputRecord,
    outputs: &[Output],
    failures: &[RecordFailure],
) -> String {
    let rec = &r.record;
    let mut s = format!(
        "record {n}: key {:?}, {} byte{}",
        rec.partition_key,
        rec.data.len(),
        plural(rec.data.len())
    );
    if failures.is_empty() && outputs.is_empty() {
        s.push_str(": filtered out (no event, no rejection)\n");
        return s;
    }
    s.push('\n');
    for f in failures {
        let what = match f.kind {
            FailureKind::Rejected => "rejected",
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory limit",
            FailureKind::Contract => "contract broken",
            FailureKind::Sink => "refused by the sink",
        };
        let _ = writeln!(
            s,
            "  {what} in stage {} (component {}): {}",
            f.stage, f.component, f.reason
        );
    }
    for (k, o) in outputs.iter().enumerate() {
        let e = &o.event;
        let _ = writeln!(s, "  event {}: {}", k + 1, payload_text(&e.payload));
        match &e.key {
            Some(key) => {
                let _ = writeln!(s, "    key         {key:?}");
            }
            None => {
                let _ = writeln!(
                    s,
                    "    key         {:?} (the partition key)",
                    rec.partition_key
                );
            }
        }
        if let Some(t) = e.event_time_millis {
            let _ = writeln!(s, "    event time  {}", time_text(t));
        }
        for (k, v) in &e.properties {
            let _ = writeln!(s, "    property    {k} = {v:?}");
        }
        if o.destinations.is_empty() {
            let _ = writeln!(s, "    to          the default sink and topic");
        }
        for d in &o.destinations {
            let _ = writeln!(s, "    to          {}", destination_text(d));
        }
    }
    s
}

pub(super) fn json_line(
    n: usize,
    r: &InputRecord,
    outputs: &[Output],
    failures: &[RecordFailure],
) -> String {
    use serde_json::{json, Map, Value};
    let rec = &r.record;
    let status = if failures.iter().any(|f| f.kind != FailureKind::Rejected) {
        "failed"
    } else if !failures.is_empty() {
        "rejected"
    } else if outputs.is_empty() {
        "filtered"
    } else {
        "ok"
    };
    let events: Vec<Value> = outputs
        .iter()
        .map(|o| {
            let e = &o.event;
            let mut m = Map::new();
            match std::str::from_utf8(&e.payload) {
                Ok(t) => m.insert("payload".into(), t.into()),
                Err(_) => m.insert(
                    "payload_base64".into(),
                    crate::sinks::dead_letter::base64(&e.payload).into(),
                ),
            };
            m.insert(
                "key".into(),
                e.key
                    .clone()
                    .unwrap_or_else(|| rec.partition_key.clone())
                    .into(),
            );
            m.insert("key_from_guest".into(), e.key.is_some().into());
            m.insert("event_time_millis".into(), json!(e.event_time_millis));
            m.insert(
                "properties".into(),
                Value::Array(e.properties.iter().map(|(k, v)| json!([k, v])).collect()),
            );
            m.insert(
                "destinations".into(),
                Value::Array(
                    o.destinations
                        .iter()
                        .map(|d| {
                            json!({
                                "sink": d.sink,
                                "topic": d.topic,
                                "partition_key": d.partition_key,
                                "explicit_hash_key": d.explicit_hash_key,
                            })
                        })
                        .collect(),
                ),
            );
            Value::Object(m)
        })
        .collect();
    let failures: Vec<Value> = failures
        .iter()
        .map(|f| {
            json!({
                "stage": f.stage,
                "component": f.component,
                "kind": f.kind.as_str(),
                "reason": f.reason,
            })
        })
        .collect();
    let line = json!({
        "record": n,
        "stream": r.stream,
        "shard": r.shard,
        "key": rec.partition_key,
        "status": status,
        "events": events,
        "failures": failures,
    });
    format!("{line}\n")
}
