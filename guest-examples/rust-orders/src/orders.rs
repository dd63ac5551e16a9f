//! The order rules, free of any Wasm binding: plain functions over bytes and JSON values.
//!
//! `lib.rs` (the component, on the `shardline-guest` SDK) calls [`process`]; the hand-written
//! guest `tests/guests/orders-handwritten` calls the same functions, and the host's native
//! benchmarks include this file (`#[path = ".../orders.rs"] mod orders;`, serde_json only),
//! so all three run exactly this logic. The rules are the ones every language's example
//! follows (guest-examples/README.md): an order is a JSON object with non-empty string
//! `id`, `customer` and `region`, a number `amount` ≥ 0, a 3-letter uppercase `currency` and
//! an optional string `priority`; amount 0 is filtered out; `amount_cents` is
//! `round(amount × 100)` (half away from zero, in floating point) and must stay below 2^53.

use serde_json::{Map, Value};

/// Topic prefix when the settings give no `topic_prefix`.
pub const DEFAULT_TOPIC_PREFIX: &str = "persistent://public/default/orders-";
/// Value of `processed_by` when the settings give none.
pub const DEFAULT_PROCESSED_BY: &str = "shardline-orders";
/// Message property set to the order's region.
pub const REGION_PROPERTY: &str = "order.region";
/// Largest amount in cents: what a double (and JavaScript) holds exactly, 2^53 - 1.
const MAX_CENTS: f64 = 9_007_199_254_740_991.0;

/// The stage that refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Deserialize,
    Transform,
    Route,
}

/// The settings the rules use, with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Routed topics are `<topic_prefix><region>` and `<topic_prefix>priority`.
    pub topic_prefix: String,
    /// Written into every enriched order.
    pub processed_by: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self::from_lookup(|_| None)
    }
}

impl Settings {
    /// From a lookup (the host's settings), with defaults.
    pub fn from_lookup(mut lookup: impl FnMut(&str) -> Option<String>) -> Self {
        Self {
            topic_prefix: lookup("topic_prefix").unwrap_or_else(|| DEFAULT_TOPIC_PREFIX.into()),
            processed_by: lookup("processed_by").unwrap_or_else(|| DEFAULT_PROCESSED_BY.into()),
        }
    }
}

/// What the fused pipeline makes of an order it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The order id: the message key.
    pub key: String,
    /// The enriched order as compact JSON.
    pub payload: Vec<u8>,
    /// Value of the `order.region` property.
    pub region: String,
    /// Topics on the default sink (two for high-priority orders).
    pub topics: Vec<String>,
}

/// A validated order (only [`Order::parse`] makes one).
#[derive(Debug, Clone, PartialEq)]
pub struct Order(Map<String, Value>);

impl Order {
    /// Parses and validates one order; the error is the rejection reason.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(doc) = value else {
            return Err("an order must be a JSON object".into());
        };
        for field in ["id", "customer", "region"] {
            if !matches!(doc.get(field), Some(Value::String(s)) if !s.is_empty()) {
                return Err(format!("{field} must be a non-empty string"));
            }
        }
        if !doc
            .get("amount")
            .and_then(Value::as_f64)
            .is_some_and(|a| a >= 0.0)
        {
            return Err(format!(
                "amount must be a non-negative number, got {}",
                show(doc.get("amount"))
            ));
        }
        if !matches!(doc.get("currency"), Some(Value::String(c)) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(format!(
                "currency must be 3 uppercase letters, got {}",
                show(doc.get("currency"))
            ));
        }
        if !matches!(
            doc.get("priority"),
            None | Some(Value::Null | Value::String(_))
        ) {
            return Err("priority must be a string".into());
        }
        Ok(Self(doc))
    }

    fn text(&self, field: &str) -> &str {
        self.0
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The order id (the message key).
    pub fn id(&self) -> &str {
        self.text("id")
    }

    /// The region (chooses the topic).
    pub fn region(&self) -> &str {
        self.text("region")
    }

    /// Adds `amount_cents` and `processed_by`; `Ok(false)` filters the order out (amount 0).
    pub fn enrich(&mut self, processed_by: &str) -> Result<bool, String> {
        let amount = self
            .0
            .get("amount")
            .and_then(Value::as_f64)
            .unwrap_or_default();
        if amount == 0.0 {
            return Ok(false);
        }
        let cents = (amount * 100.0).round();
        if cents > MAX_CENTS {
            // The amount as written (`1e300`), not expanded to its 301 digits.
            return Err(format!(
                "amount {} is too large for cents",
                self.0["amount"]
            ));
        }
        // Exact: an integer below 2^53.
        self.0
            .insert("amount_cents".into(), Value::from(cents as i64));
        self.0
            .insert("processed_by".into(), Value::from(processed_by));
        Ok(true)
    }

    /// `<prefix><region>`, and `<prefix>priority` for high-priority orders.
    pub fn topics(&self, prefix: &str) -> Vec<String> {
        let mut topics = vec![format!("{prefix}{}", self.region())];
        if self.0.get("priority").and_then(Value::as_str) == Some("high") {
            topics.push(format!("{prefix}priority"));
        }
        topics
    }

    /// The order as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // A map with string keys always serializes.
        serde_json::to_vec(&self.0).unwrap_or_default()
    }
}

/// Deserialize, transform and route in one go; `Ok(None)` means filtered out.
pub fn process(data: &[u8], settings: &Settings) -> Result<Option<Processed>, (Stage, String)> {
    let mut order = Order::parse(data).map_err(|r| (Stage::Deserialize, r))?;
    if !order
        .enrich(&settings.processed_by)
        .map_err(|r| (Stage::Transform, r))?
    {
        return Ok(None);
    }
    Ok(Some(Processed {
        key: order.id().to_owned(),
        payload: order.to_json(),
        region: order.region().to_owned(),
        topics: order.topics(&settings.topic_prefix),
    }))
}

/// The deserialize stage alone: `(key, payload)`.
pub fn deserialize(data: &[u8]) -> Result<(String, Vec<u8>), String> {
    let order = Order::parse(data)?;
    Ok((order.id().to_owned(), order.to_json()))
}

/// The transform stage alone: `(payload, region)`, `None` when filtered out.
pub fn transform(payload: &[u8], processed_by: &str) -> Result<Option<(Vec<u8>, String)>, String> {
    let mut order = Order::parse(payload)?;
    Ok(order
        .enrich(processed_by)?
        .then(|| (order.to_json(), order.region().to_owned())))
}

/// The route stage alone: the topics of one event.
pub fn route(payload: &[u8], topic_prefix: &str) -> Result<Vec<String>, String> {
    Ok(Order::parse(payload)?.topics(topic_prefix))
}

/// A value for a reason: scalars as JSON, containers by kind, never a whole payload.
fn show(value: Option<&Value>) -> String {
    match value {
        None => "nothing".into(),
        Some(Value::Array(_)) => "an array".into(),
        Some(Value::Object(_)) => "an object".into(),
        Some(Value::String(s)) if s.chars().count() > 40 => {
            format!("{:?}…", s.chars().take(40).collect::<String>())
        }
        Some(scalar) => scalar.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"id": "o-1", "customer": "c-7", "amount": 12.5, "currency": "EUR", "region": "eu", "priority": "high"}"#;

    #[test]
    fn process_enriches_and_routes() {
        let p = process(ORDER.as_bytes(), &Settings::default())
            .unwrap()
            .unwrap();
        assert_eq!(p.key, "o-1");
        assert_eq!(p.region, "eu");
        assert_eq!(
            p.topics,
            [
                format!("{DEFAULT_TOPIC_PREFIX}eu"),
                format!("{DEFAULT_TOPIC_PREFIX}priority")
            ]
        );
        assert_eq!(
            std::str::from_utf8(&p.payload).unwrap(),
            r#"{"amount":12.5,"amount_cents":1250,"currency":"EUR","customer":"c-7","id":"o-1","priority":"high","processed_by":"shardline-orders","region":"eu"}"#
        );
    }

    #[test]
    fn rules_reject_at_the_right_stage() {
        let s = Settings::default();
        let stage = |json: &str| process(json.as_bytes(), &s).map(|_| ()).unwrap_err().0;
        assert_eq!(stage("nope"), Stage::Deserialize);
        assert_eq!(stage("[1]"), Stage::Deserialize);
        assert_eq!(
            stage(r#"{"id":"o","customer":"c","amount":true,"currency":"EUR","region":"eu"}"#),
            Stage::Deserialize
        );
        assert_eq!(
            stage(r#"{"id":"o","customer":"c","amount":1,"currency":"ÉUR","region":"eu"}"#),
            Stage::Deserialize
        );
        assert_eq!(
            stage(r#"{"id":"o","customer":"c","amount":1e300,"currency":"EUR","region":"eu"}"#),
            Stage::Transform
        );
    }

    #[test]
    fn cents_round_half_away_from_zero_in_floating_point() {
        let cents = |amount: &str| {
            let json = format!(
                r#"{{"id":"o","customer":"c","amount":{amount},"currency":"EUR","region":"eu"}}"#
            );
            let p = process(json.as_bytes(), &Settings::default())
                .unwrap()
                .unwrap();
            serde_json::from_slice::<Value>(&p.payload).unwrap()["amount_cents"]
                .as_i64()
                .unwrap()
        };
        assert_eq!(cents("7"), 700);
        assert_eq!(cents("0.125"), 13);
        assert_eq!(cents("1.005"), 100); // 1.005 * 100 == 100.49999999999999
        assert_eq!(cents("2.675"), 268); // 2.675 * 100 == 267.5
        assert_eq!(
            process(
                br#"{"id":"o","customer":"c","amount":-0.0,"currency":"EUR","region":"eu"}"#,
                &Settings::default()
            ),
            Ok(None)
        );
    }

    #[test]
    fn stages_alone_equal_the_fused_call() {
        let s = Settings {
            topic_prefix: "p-".into(),
            processed_by: "x".into(),
        };
        let (key, payload) = deserialize(ORDER.as_bytes()).unwrap();
        let (payload, region) = transform(&payload, &s.processed_by).unwrap().unwrap();
        let topics = route(&payload, &s.topic_prefix).unwrap();
        assert_eq!(
            process(ORDER.as_bytes(), &s).unwrap().unwrap(),
            Processed {
                key,
                payload,
                region,
                topics
            }
        );
    }
}
