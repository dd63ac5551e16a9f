//! The Prometheus text exposition format (version 0.0.4) of every series: counters as
//! `counter`, gauges as `gauge`, distributions as `histogram` (milliseconds, bytes or
//! counts as their names say). Rendered on each scrape from the live handles.

use std::fmt::Write;

use super::{Kind, Registry, Series, Value};

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every series of `registry`, grouped by family.
pub fn render(registry: &Registry) -> String {
    let mut series = registry.series();
    // One HELP/TYPE block per family, its series together (stable order: by name, then
    // in creation order).
    series.sort_by_key(|s| s.def.prometheus);
    let mut out = String::with_capacity(series.len() * 96);
    let mut family = "";
    for s in &series {
        if s.def.prometheus != family {
            family = s.def.prometheus;
            let kind = match s.def.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Distribution => "histogram",
            };
            let _ = writeln!(out, "# HELP {family} {}", s.def.help);
            let _ = writeln!(out, "# TYPE {family} {kind}");
        }
        write_series(&mut out, s);
    }
    out
}

fn write_series(out: &mut String, s: &Series) {
    let name = s.def.prometheus;
    match &s.value {
        Value::Distribution(d) => {
            for (le, n) in d.cumulative_buckets() {
                let le = le.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(out, "{name}_bucket{} {n}", labels(s, Some(&le)));
            }
            let _ = writeln!(out, "{name}_sum{} {}", labels(s, None), d.sum());
            let _ = writeln!(out, "{name}_count{} {}", labels(s, None), d.count());
        }
        _ => {
            let _ = writeln!(out, "{name}{} {}", labels(s, None), s.scalar());
        }
    }
}

fn labels(s: &Series, le: Option<&str>) -> String {
    let mut parts: Vec<String> = s
        .dims
        .iter()
        .map(|(d, v)| format!("{}=\"{}\"", d.label, escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::super::{defs, Level, Registry};
    use super::*;

    #[test]
    fn families_render_with_help_type_and_labels() {
        let r = Registry::new(Level::Detailed);
        r.counter(
            &defs::RECORDS_PROCESSED,
            vec![
                (&defs::STREAM, "s\"1".into()),
                (&defs::SHARD, "shardId-0".into()),
            ],
        )
        .add(42);
        r.gauge(&defs::SINK_IN_FLIGHT, vec![(&defs::SINK, "main".into())])
            .set(3);
        let d = r.distribution(&defs::SINK_ACK_LATENCY, vec![]);
        d.observe(7);
        d.observe(700);
        let text = render(&r);
        assert!(
            text.contains("# TYPE shardline_records_processed_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "shardline_records_processed_total{stream=\"s\\\"1\",shard=\"shardId-0\"} 42\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("shardline_sink_in_flight{sink=\"main\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE shardline_sink_ack_latency_milliseconds histogram\n"));
        assert!(
            text.contains("shardline_sink_ack_latency_milliseconds_bucket{le=\"10\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("shardline_sink_ack_latency_milliseconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("shardline_sink_ack_latency_milliseconds_sum 707\n"));
        assert!(text.contains("shardline_sink_ack_latency_milliseconds_count 2\n"));
    }
}
