//! The order logic, free of any Wasm binding: plain functions over bytes and strings.
//!
//! `lib.rs` maps the WIT types onto these functions. Nothing here depends on wit-bindgen, so
//! the host's native benchmark can include this file with `#[path = ".../orders.rs"] mod
//! orders;` (it needs `serde_json` only) and run exactly the logic the component runs.
//!
//! An order is a JSON object:
//!
//! ```json
//! {"id": "o-1", "customer": "c-7", "amount": 12.5, "currency": "EUR", "region": "eu", "priority": "high"}
//! ```
//!
//! | field      | rule                                               |
//! |------------|----------------------------------------------------|
//! | `id`       | required, non-empty string (becomes the message key)|
//! | `customer` | required, non-empty string                         |
//! | `amount`   | required, number ≥ 0                               |
//! | `currency` | required, 3 uppercase ASCII letters (ISO 4217)     |
//! | `region`   | required, non-empty string (chooses the topic)     |
//! | `priority` | optional string (or `null`); `"high"` also goes to the priority topic |
//!
//! Other fields are kept as they are. Payloads are written back in one canonical form:
//! compact, object keys sorted.

use serde_json::{Map, Number, Value};

/// Topic prefix when the stage's settings give no `topic_prefix`.
pub const DEFAULT_TOPIC_PREFIX: &str = "persistent://public/default/orders-";
/// Value of `processed_by` when the stage's settings give none.
pub const DEFAULT_PROCESSED_BY: &str = "shardline-orders";
/// Message property that `transform` sets to the order's region.
pub const REGION_PROPERTY: &str = "order.region";
/// `priority` value that also sends an order to `<topic_prefix>priority`.
pub const HIGH_PRIORITY: &str = "high";
/// Suffix of the priority topic.
pub const PRIORITY_TOPIC_SUFFIX: &str = "priority";

/// The stage that refused a record (mirrors the WIT `stage` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Deserialize,
    Transform,
    Route,
}

/// The stage settings the logic uses, with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `topic_prefix`: routed topics are `<topic_prefix><region>` and `<topic_prefix>priority`.
    pub topic_prefix: String,
    /// `processed_by`: written into every enriched order.
    pub processed_by: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            topic_prefix: DEFAULT_TOPIC_PREFIX.to_owned(),
            processed_by: DEFAULT_PROCESSED_BY.to_owned(),
        }
    }
}

impl Settings {
    /// Builds the settings from a lookup (the host's `setting` import), applying defaults.
    pub fn from_lookup(mut lookup: impl FnMut(&str) -> Option<String>) -> Self {
        Self {
            topic_prefix: lookup("topic_prefix").unwrap_or_else(|| DEFAULT_TOPIC_PREFIX.to_owned()),
            processed_by: lookup("processed_by").unwrap_or_else(|| DEFAULT_PROCESSED_BY.to_owned()),
        }
    }
}

/// A validated order: the parsed JSON object, parsed once and carried through every stage.
///
/// Only [`Order::parse`] builds one, so the required fields are always present and well typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    doc: Map<String, Value>,
    /// A copy of the validated `amount` (a small `Copy`-like value), read by `enrich`.
    amount: Number,
}

impl Order {
    /// Parses and validates one order. The error is the rejection reason.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(data).map_err(|e| json_error(&e))?;
        let Value::Object(doc) = value else {
            return Err(format!(
                "invalid order: expected a JSON object, got {}",
                describe(&value)
            ));
        };
        let amount = validate(&doc)?;
        Ok(Self { doc, amount })
    }

    /// The order id (the message key).
    pub fn id(&self) -> &str {
        self.str_field("id")
    }

    pub fn customer(&self) -> &str {
        self.str_field("customer")
    }

    pub fn currency(&self) -> &str {
        self.str_field("currency")
    }

    pub fn region(&self) -> &str {
        self.str_field("region")
    }

    /// `None` when the field is absent or `null`.
    pub fn priority(&self) -> Option<&str> {
        self.doc.get("priority").and_then(Value::as_str)
    }

    /// The amount as written (an integer or a float, never negative).
    pub fn amount(&self) -> &Number {
        &self.amount
    }

    /// Whether the amount is zero (`0`, `0.0`, `-0.0`): such orders are filtered out.
    pub fn is_zero_amount(&self) -> bool {
        self.amount().as_f64() == Some(0.0)
    }

    /// The whole JSON object, for reading other fields.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.doc
    }

    /// Writes the order as canonical JSON: compact, keys sorted (at every level).
    ///
    /// `size_hint` is the expected length (e.g. the input's), to allocate once.
    pub fn to_json(&mut self, size_hint: usize) -> Result<Vec<u8>, String> {
        // No-ops with serde_json's default BTreeMap; they keep the output canonical if some
        // other crate in the build turns on `preserve_order`.
        self.doc.sort_keys();
        self.doc.values_mut().for_each(Value::sort_all_objects);
        let mut out = Vec::with_capacity(size_hint + 64);
        serde_json::to_writer(&mut out, &self.doc)
            .map_err(|e| format!("cannot serialize order {:?}: {e}", self.id()))?;
        Ok(out)
    }

    /// The transform stage on a parsed order: `Ok(false)` means "filter out" (amount 0);
    /// otherwise adds `amount_cents` and `processed_by`.
    pub fn enrich(&mut self, processed_by: &str) -> Result<bool, String> {
        if self.is_zero_amount() {
            return Ok(false);
        }
        let cents = amount_cents(self.amount())
            .ok_or_else(|| format!("amount {} is too large to express in cents", self.amount()))?;
        self.doc
            .insert("amount_cents".to_owned(), Value::from(cents));
        self.doc.insert(
            "processed_by".to_owned(),
            Value::String(processed_by.to_owned()),
        );
        Ok(true)
    }

    /// The route stage on a parsed order: `<prefix><region>`, plus `<prefix>priority` when
    /// `priority` is `"high"`.
    pub fn topics(&self, topic_prefix: &str) -> Vec<String> {
        let topic = |suffix: &str| {
            let mut t = String::with_capacity(topic_prefix.len() + suffix.len());
            t.push_str(topic_prefix);
            t.push_str(suffix);
            t
        };
        let mut topics = Vec::with_capacity(2);
        topics.push(topic(self.region()));
        if self.priority() == Some(HIGH_PRIORITY) {
            topics.push(topic(PRIORITY_TOPIC_SUFFIX));
        }
        topics
    }

    fn str_field(&self, key: &str) -> &str {
        // Always a string: `parse` checked the field.
        self.doc
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// What the deserialize stage makes of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deserialized {
    /// The order id: the message key.
    pub key: String,
    /// The order as canonical JSON.
    pub payload: Vec<u8>,
}

/// What the transform stage makes of an event it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transformed {
    /// The enriched order as canonical JSON.
    pub payload: Vec<u8>,
    /// Value of the `order.region` property.
    pub region: String,
}

/// What the fused pipeline makes of a record it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The order id: the message key.
    pub key: String,
    /// The enriched order as canonical JSON.
    pub payload: Vec<u8>,
    /// Value of the `order.region` property.
    pub region: String,
    /// Topics on the default sink (one, or two for high priority orders).
    pub topics: Vec<String>,
}

/// Deserialize stage: validate, key by order id, re-serialize canonically.
pub fn deserialize(data: &[u8]) -> Result<Deserialized, String> {
    let mut order = Order::parse(data)?;
    let payload = order.to_json(data.len())?;
    Ok(Deserialized {
        key: order.id().to_owned(),
        payload,
    })
}

/// Transform stage: `Ok(None)` filters the event out (amount 0).
pub fn transform(payload: &[u8], processed_by: &str) -> Result<Option<Transformed>, String> {
    let mut order = Order::parse(payload)?;
    if !order.enrich(processed_by)? {
        return Ok(None);
    }
    Ok(Some(Transformed {
        payload: order.to_json(payload.len())?,
        region: order.region().to_owned(),
    }))
}

/// Route stage: the topics (on the default sink) of one event.
pub fn route(payload: &[u8], topic_prefix: &str) -> Result<Vec<String>, String> {
    Ok(Order::parse(payload)?.topics(topic_prefix))
}

/// The three stages fused: one parse, one serialization. `Ok(None)` means filtered out; the
/// error names the stage that refused the record.
///
/// Gives the same result as `deserialize`, then `transform`, then `route` one after another.
pub fn process(data: &[u8], settings: &Settings) -> Result<Option<Processed>, (Stage, String)> {
    let mut order = Order::parse(data).map_err(|reason| (Stage::Deserialize, reason))?;
    match order.enrich(&settings.processed_by) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(reason) => return Err((Stage::Transform, reason)),
    }
    let topics = order.topics(&settings.topic_prefix);
    let payload = order
        .to_json(data.len())
        .map_err(|reason| (Stage::Transform, reason))?;
    Ok(Some(Processed {
        key: order.id().to_owned(),
        payload,
        region: order.region().to_owned(),
        topics,
    }))
}

/// `amount × 100` as an integer, rounded half away from zero on the amount's decimal digits
/// (the shortest decimal that reads back as the same float, i.e. what the producer wrote):
/// `1.005` → 101, `12.345` → 1235, `0.125` → 13, `7` → 700. `None` when it does not fit in
/// an `i64` or the amount is negative.
pub fn amount_cents(amount: &Number) -> Option<i64> {
    if let Some(units) = amount.as_u64() {
        return i64::try_from(units.checked_mul(100)?).ok();
    }
    if amount.is_i64() {
        return None; // negative integer
    }
    let value = amount.as_f64()?;
    // Below this bound the integer part times 100 plus 99 fits in an i64.
    if !(0.0..9.0e16).contains(&value) {
        return None;
    }
    // Rust prints floats as the shortest round-trip decimal, never in exponent form.
    let text = value.to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let whole: i64 = whole.parse().ok()?;
    let mut digits = fraction.bytes().map(|b| i64::from(b - b'0'));
    let tenths = digits.next().unwrap_or(0);
    let hundredths = digits.next().unwrap_or(0);
    let round_up = digits.next().is_some_and(|d| d >= 5);
    Some(whole * 100 + tenths * 10 + hundredths + i64::from(round_up))
}

/// The reason for a JSON syntax error: `invalid JSON at line 1 column 5: expected value`.
fn json_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(position.as_str()).unwrap_or(&message);
    if e.line() == 0 {
        format!("invalid JSON: {message}")
    } else {
        format!("invalid JSON{position}: {message}")
    }
}

/// Checks the fields; returns the amount.
fn validate(doc: &Map<String, Value>) -> Result<Number, String> {
    non_empty_string(doc, "id")?;
    non_empty_string(doc, "customer")?;
    let amount = match required(doc, "amount")? {
        Value::Number(n) if n.as_f64().is_some_and(|a| a >= 0.0) => n.clone(),
        other => {
            return Err(format!(
                "invalid order: amount must be a non-negative number, got {}",
                describe(other)
            ))
        }
    };
    match required(doc, "currency")? {
        Value::String(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {}
        other => {
            return Err(format!(
                "invalid order: currency must be 3 uppercase letters (ISO 4217), got {}",
                describe(other)
            ))
        }
    }
    non_empty_string(doc, "region")?;
    match doc.get("priority") {
        None | Some(Value::Null | Value::String(_)) => Ok(amount),
        Some(other) => Err(format!(
            "invalid order: priority must be a string, got {}",
            describe(other)
        )),
    }
}

fn required<'a>(doc: &'a Map<String, Value>, field: &str) -> Result<&'a Value, String> {
    doc.get(field)
        .ok_or_else(|| format!("invalid order: missing field {field:?}"))
}

fn non_empty_string(doc: &Map<String, Value>, field: &str) -> Result<(), String> {
    match required(doc, field)? {
        Value::String(s) if !s.is_empty() => Ok(()),
        other => Err(format!(
            "invalid order: {field} must be a non-empty string, got {}",
            describe(other)
        )),
    }
}

/// A short description of a JSON value for a rejection reason: scalars as JSON (long strings
/// cut), containers by kind only, so a reason never carries a whole payload.
fn describe(value: &Value) -> String {
    const MAX_CHARS: usize = 40;
    match value {
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        Value::String(s) if s.chars().count() > MAX_CHARS => {
            let cut: String = s.chars().take(MAX_CHARS).collect();
            format!("{:?}…", cut)
        }
        scalar => scalar.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"id": "o-1", "customer": "c-7", "amount": 12.5, "currency": "EUR", "region": "eu", "priority": "high"}"#;

    fn reason(data: &str) -> String {
        deserialize(data.as_bytes()).unwrap_err()
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn deserialize_keys_by_id_and_canonicalizes() {
        let d = deserialize(ORDER.as_bytes()).unwrap();
        assert_eq!(d.key, "o-1");
        assert_eq!(
            text(&d.payload),
            r#"{"amount":12.5,"currency":"EUR","customer":"c-7","id":"o-1","priority":"high","region":"eu"}"#
        );
    }

    #[test]
    fn deserialize_keeps_unknown_fields_and_sorts_nested_keys() {
        let d = deserialize(
            br#"{"region":"us","id":"o-2","customer":"c","amount":3,"currency":"USD","z":{"b":1,"a":[true,null]}}"#,
        )
        .unwrap();
        assert_eq!(
            text(&d.payload),
            r#"{"amount":3,"currency":"USD","customer":"c","id":"o-2","region":"us","z":{"a":[true,null],"b":1}}"#
        );
    }

    #[test]
    fn deserialize_reasons() {
        assert_eq!(
            reason(r#"{"id": "o-1", "customer": "c-7", "amount": 1, "region": "eu"}"#),
            r#"invalid order: missing field "currency""#
        );
        assert_eq!(
            reason(
                r#"{"id": "o-1", "customer": "c-7", "amount": -3, "currency": "EUR", "region": "eu"}"#
            ),
            "invalid order: amount must be a non-negative number, got -3"
        );
        assert_eq!(
            reason(
                r#"{"id": "o-1", "customer": "c-7", "amount": "12", "currency": "EUR", "region": "eu"}"#
            ),
            r#"invalid order: amount must be a non-negative number, got "12""#
        );
        assert_eq!(
            reason(
                r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": "eur", "region": "eu"}"#
            ),
            r#"invalid order: currency must be 3 uppercase letters (ISO 4217), got "eur""#
        );
        assert_eq!(
            reason(
                r#"{"id": "o-1", "customer": "c-7", "amount": 1, "currency": "EUR", "region": ""}"#
            ),
            r#"invalid order: region must be a non-empty string, got """#
        );
        assert_eq!(
            reason(
                r#"{"id": 7, "customer": "c-7", "amount": 1, "currency": "EUR", "region": "eu"}"#
            ),
            "invalid order: id must be a non-empty string, got 7"
        );
        assert_eq!(
            reason(
                r#"{"id": "o", "customer": null, "amount": 1, "currency": "EUR", "region": "eu"}"#
            ),
            "invalid order: customer must be a non-empty string, got null"
        );
        assert_eq!(
            reason(
                r#"{"id": "o", "customer": "c", "amount": 1, "currency": "EUR", "region": "eu", "priority": {"x": 1}}"#
            ),
            "invalid order: priority must be a string, got an object"
        );
        assert_eq!(
            reason("[1, 2]"),
            "invalid order: expected a JSON object, got an array"
        );
        assert_eq!(
            reason("{\"id\": }"),
            "invalid JSON at line 1 column 8: expected value"
        );
        assert_eq!(
            reason(""),
            "invalid JSON at line 1 column 0: EOF while parsing a value"
        );
        assert_eq!(
            reason(&format!("{ORDER} x")),
            "invalid JSON at line 1 column 105: trailing characters"
        );
        let long = format!(
            r#"{{"id": "o", "customer": "c", "amount": 1, "currency": "{}", "region": "eu"}}"#,
            "A".repeat(100)
        );
        assert_eq!(
            reason(&long),
            format!(
                "invalid order: currency must be 3 uppercase letters (ISO 4217), got {:?}…",
                "A".repeat(40)
            )
        );
    }

    #[test]
    fn priority_null_is_absent() {
        let order = Order::parse(
            br#"{"id": "o", "customer": "c", "amount": 1, "currency": "EUR", "region": "eu", "priority": null}"#,
        )
        .unwrap();
        assert_eq!(order.priority(), None);
        assert_eq!(order.topics("t-"), ["t-eu"]);
    }

    #[test]
    fn cents_round_half_away_from_zero_on_decimal_digits() {
        let cents = |json: &str| amount_cents(&serde_json::from_str::<Number>(json).unwrap());
        assert_eq!(cents("7"), Some(700));
        assert_eq!(cents("12.5"), Some(1250));
        assert_eq!(cents("12.345"), Some(1235));
        assert_eq!(cents("12.344"), Some(1234));
        assert_eq!(cents("1.005"), Some(101)); // 1.005 * 100.0 == 100.49999999999999
        assert_eq!(cents("0.125"), Some(13));
        assert_eq!(cents("0.004"), Some(0));
        assert_eq!(cents("0.005"), Some(1));
        assert_eq!(cents("19.999"), Some(2000));
        assert_eq!(cents("1e-7"), Some(0));
        assert_eq!(cents("1.5e3"), Some(150_000));
        assert_eq!(cents("92233720368547758"), Some(9_223_372_036_854_775_800));
        assert_eq!(cents("92233720368547759"), None);
        assert_eq!(cents("1e300"), None);
        assert_eq!(cents("-1"), None);
        assert_eq!(cents("-1.5"), None);
    }

    #[test]
    fn transform_enriches() {
        let t = transform(ORDER.as_bytes(), "me").unwrap().unwrap();
        assert_eq!(t.region, "eu");
        assert_eq!(
            text(&t.payload),
            r#"{"amount":12.5,"amount_cents":1250,"currency":"EUR","customer":"c-7","id":"o-1","priority":"high","processed_by":"me","region":"eu"}"#
        );
    }

    #[test]
    fn transform_filters_zero_amounts() {
        for amount in ["0", "0.0", "-0.0", "0e5"] {
            let order = format!(
                r#"{{"id": "o", "customer": "c", "amount": {amount}, "currency": "EUR", "region": "eu"}}"#
            );
            assert_eq!(
                transform(order.as_bytes(), "me"),
                Ok(None),
                "amount {amount}"
            );
        }
        // Not zero, even if it rounds to 0 cents.
        let tiny =
            br#"{"id": "o", "customer": "c", "amount": 0.001, "currency": "EUR", "region": "eu"}"#;
        assert!(transform(tiny, "me").unwrap().is_some());
    }

    #[test]
    fn transform_refuses_amounts_beyond_cents() {
        let huge =
            br#"{"id": "o", "customer": "c", "amount": 1e300, "currency": "EUR", "region": "eu"}"#;
        assert_eq!(
            transform(huge, "me"),
            Err("amount 1e+300 is too large to express in cents".to_owned())
        );
    }

    #[test]
    fn route_fans_out_high_priority() {
        assert_eq!(
            route(ORDER.as_bytes(), DEFAULT_TOPIC_PREFIX).unwrap(),
            [
                "persistent://public/default/orders-eu",
                "persistent://public/default/orders-priority"
            ]
        );
        let low = br#"{"id": "o", "customer": "c", "amount": 1, "currency": "EUR", "region": "us", "priority": "low"}"#;
        assert_eq!(route(low, "t/").unwrap(), ["t/us"]);
        assert_eq!(
            route(b"{}", "t/").unwrap_err(),
            r#"invalid order: missing field "id""#
        );
    }

    #[test]
    fn process_equals_the_three_stages() {
        let settings = Settings {
            topic_prefix: "p-".to_owned(),
            processed_by: "x".to_owned(),
        };
        let inputs = [
            ORDER.to_owned(),
            r#"{"id":"o-2","customer":"c","amount":0,"currency":"EUR","region":"eu"}"#.to_owned(),
            r#"{"id":"o-3","customer":"c","amount":1e300,"currency":"EUR","region":"eu"}"#.to_owned(),
            r#"{"id":"o-4","customer":"c","amount":2.675,"currency":"GBP","region":"uk","extra":[1]}"#.to_owned(),
            "nope".to_owned(),
        ];
        for input in &inputs {
            let fused = process(input.as_bytes(), &settings);
            let staged = deserialize(input.as_bytes())
                .map_err(|r| (Stage::Deserialize, r))
                .and_then(|d| {
                    let t = transform(&d.payload, &settings.processed_by)
                        .map_err(|r| (Stage::Transform, r))?;
                    let Some(t) = t else { return Ok(None) };
                    let topics =
                        route(&t.payload, &settings.topic_prefix).map_err(|r| (Stage::Route, r))?;
                    Ok(Some(Processed {
                        key: d.key,
                        payload: t.payload,
                        region: t.region,
                        topics,
                    }))
                });
            assert_eq!(fused, staged, "input {input}");
        }
        assert_eq!(process(inputs[1].as_bytes(), &settings), Ok(None));
        assert_eq!(
            process(inputs[2].as_bytes(), &settings).unwrap_err().0,
            Stage::Transform
        );
        assert_eq!(
            process(inputs[4].as_bytes(), &settings).unwrap_err().0,
            Stage::Deserialize
        );
        let p = process(inputs[3].as_bytes(), &settings).unwrap().unwrap();
        assert_eq!(p.key, "o-4");
        assert_eq!(p.topics, ["p-uk"]);
        assert_eq!(
            text(&p.payload),
            r#"{"amount":2.675,"amount_cents":268,"currency":"GBP","customer":"c","extra":[1],"id":"o-4","processed_by":"x","region":"uk"}"#
        );
    }

    #[test]
    fn settings_defaults() {
        assert_eq!(Settings::from_lookup(|_| None), Settings::default());
        let s = Settings::from_lookup(|k| (k == "topic_prefix").then(|| "t/".to_owned()));
        assert_eq!(s.topic_prefix, "t/");
        assert_eq!(s.processed_by, DEFAULT_PROCESSED_BY);
    }
}
