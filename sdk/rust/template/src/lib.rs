//! {{name}}: a Shardline guest. Every record is a JSON event with a "type"; it is stamped
//! and routed to the topic of its type.
use serde_json::Value;
use shardline_guest::{Context, Guest, Output, Record, Reject};

#[derive(Debug)]
pub struct Events;

impl Guest for Events {
    fn on_record(record: &Record<'_>, ctx: &Context) -> Result<Vec<Output>, Reject> {
        let mut event: Value = record.json()?; // not JSON: rejected
        let Some(kind) = event.get("type").and_then(Value::as_str).map(str::to_owned) else {
            return Err(Reject::new("an event needs a \"type\" string"));
        };
        if kind == "ping" {
            return Ok(vec![]); // filtered out
        }
        let settings = ctx.settings();
        event["seen_by"] = settings.get_or("seen_by", "{{name}}").into();
        let topic = format!("{}{kind}", settings.get_or("topic_prefix", "persistent://public/default/events-"));
        Ok(vec![Output::json(&event)?.key(record.partition_key).to_topic(topic)])
    }
}

shardline_guest::export!(Events);
