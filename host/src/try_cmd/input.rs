//! Reading `shardline try`'s input: JSON lines, plain lines or length-prefixed records,
//! each with its stream, shard, key and arrival time.

use super::*;

/// What a record is when its input line does not say.
#[derive(Debug)]
pub(super) struct Defaults {
    pub(super) stream: String,
    pub(super) shard: String,
    pub(super) key: Option<String>,
    pub(super) arrival: i64,
}

impl Defaults {
    fn record(&self, n: usize, data: Vec<u8>) -> InputRecord {
        InputRecord {
            stream: self.stream.clone(),
            shard: self.shard.clone(),
            record: SourceRecord {
                partition_key: self.key.clone().unwrap_or_else(|| n.to_string()),
                arrival_millis: self.arrival,
                data,
            },
        }
    }
}

pub(super) fn read_records(
    path: &Path,
    format: InputFormat,
    defaults: &Defaults,
) -> anyhow::Result<Vec<InputRecord>> {
    let name = if path == Path::new("-") {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    let input: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("cannot read input {name}"))?)
    };
    let mut reader = BufReader::new(input);
    let mut records = Vec::new();
    match format {
        InputFormat::Json | InputFormat::Lines => {
            let mut line_no = 0;
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .with_context(|| format!("cannot read input {name}"))?;
                if n == 0 {
                    break;
                }
                line_no += 1;
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                if matches!(format, InputFormat::Lines) {
                    records.push(defaults.record(records.len(), std::mem::take(&mut line)));
                    continue;
                }
                let trimmed = line.trim_ascii();
                if trimmed.is_empty() || trimmed.starts_with(b"#") {
                    continue;
                }
                let r = json_record(trimmed, records.len(), defaults)
                    .with_context(|| format!("{name}: line {line_no}"))?;
                records.push(r);
            }
        }
        InputFormat::LengthPrefixed => loop {
            let n = records.len();
            let mut len = [0u8; 4];
            let got = read_full(&mut reader, &mut len)
                .with_context(|| format!("cannot read input {name}"))?;
            if got == 0 {
                break;
            }
            if got < 4 {
                bail!("{name}: record {n}: the input ends inside its 4-byte length prefix");
            }
            let len = u32::from_be_bytes(len) as usize;
            if len > crate::kinesis_limits::MAX_RECORD_BYTES {
                bail!("{name}: record {n} says it is {len} bytes long, over Kinesis's 1 MiB record limit (is the input really length-prefixed?)");
            }
            let mut data = vec![0u8; len];
            let got = read_full(&mut reader, &mut data)
                .with_context(|| format!("cannot read input {name}"))?;
            if got < len {
                bail!("{name}: record {n}: {len} bytes announced, the input ends after {got}");
            }
            records.push(defaults.record(n, data));
        },
    }
    if records.is_empty() {
        bail!("{name} holds no record");
    }
    Ok(records)
}

/// Reads until `buf` is full or the input ends; the number of bytes read.
pub(super) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

pub(super) const JSON_FIELDS: &str = "data, data_base64, key, stream, shard, arrival";

pub(super) fn json_record(
    line: &[u8],
    n: usize,
    defaults: &Defaults,
) -> anyhow::Result<InputRecord> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| anyhow!("not JSON: {e} (with --format json each line is an object such as {{\"data\": \"...\", \"key\": \"k\"}}; --format lines takes each line as the data)"))?;
    let serde_json::Value::Object(fields) = value else {
        bail!("not a JSON object (with --format json each line is an object such as {{\"data\": \"...\", \"key\": \"k\"}}; --format lines takes each line as the data)");
    };
    let mut rec = defaults.record(n, Vec::new());
    let mut data = None;
    let text = |k: &str, v: &serde_json::Value| -> anyhow::Result<String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("field {k} must be a string, not {v}"))
    };
    for (k, v) in &fields {
        match k.as_str() {
            "data" => {
                if data.is_some() {
                    bail!("give data or data_base64, not both");
                }
                data = Some(text(k, v)?.into_bytes());
            }
            "data_base64" => {
                if data.is_some() {
                    bail!("give data or data_base64, not both");
                }
                data = Some(
                    base64_decode(&text(k, v)?).map_err(|e| anyhow!("field data_base64: {e}"))?,
                );
            }
            "key" => rec.record.partition_key = text(k, v)?,
            "stream" => rec.stream = text(k, v)?,
            "shard" => rec.shard = text(k, v)?,
            "arrival" => {
                rec.record.arrival_millis = match v {
                    serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| {
                        anyhow!("field arrival must be whole milliseconds, not {n}")
                    })?,
                    serde_json::Value::String(s) => {
                        parse_arrival(s).map_err(|e| anyhow!("field arrival: {e}"))?
                    }
                    other => bail!(
                        "field arrival must be milliseconds or an RFC 3339 string, not {other}"
                    ),
                }
            }
            other => {
                let hint = if data.is_none()
                    && !fields.contains_key("data")
                    && !fields.contains_key("data_base64")
                {
                    " (is this line the record's data itself? then use --format lines)"
                } else {
                    ""
                };
                bail!("unknown field {other:?}; the fields are {JSON_FIELDS}{hint}")
            }
        }
    }
    rec.record.data = data.ok_or_else(|| {
        anyhow!("no data: give data (text) or data_base64 (bytes); the fields are {JSON_FIELDS}")
    })?;
    if rec.record.partition_key.is_empty() {
        bail!("field key must not be empty (Kinesis partition keys are 1 to 256 characters)");
    }
    Ok(rec)
}

/// Standard base64 (RFC 4648 §4); padding optional, whitespace not allowed.
pub(super) fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, c) in s.bytes().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("not base64: {:?} at position {i}", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("not base64: its length is not a whole number of bytes".into());
    }
    Ok(out)
}
