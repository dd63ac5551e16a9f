//! A fault-injecting HTTP proxy in front of a Kinesis emulator, for the producer's retry
//! tests and the consumer's chaos tests. Emulators fail on their own only by throttling;
//! this proxy adds the other failures AWS produces — records refused with `InternalFailure`
//! or `ProvisionedThroughputExceededException` inside a successful PutRecords answer, whole
//! requests answered 500, connections closed without an answer — and can hold requests to
//! stall the producer. GetRecords can be throttled, failed, dropped, answered with an
//! expired iterator or slowed ([`ReadFaults`]).
//!
//! Refused records are removed from the request before it is forwarded, and the answer
//! gets an error entry in their place, so a refused record is really not stored: a test
//! can then demand each record exactly once. HTTP/1.1 only, Content-Length bodies (what
//! the AWS SDK sends and the emulators answer). Each client connection has its own
//! kept-alive upstream connection: opening one per request through dev/stack's socat
//! bridge occasionally got a reset after the emulator had stored the records, which would
//! look like a lost answer and make the producer (rightly) put them again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// What the proxy does to PutRecords requests (other calls are forwarded untouched).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Share of records refused with a record-level error.
    pub refuse_records: f64,
    /// Share of requests answered HTTP 500 (nothing forwarded).
    pub fail_requests: f64,
    /// Share of requests whose connection is closed without an answer (nothing forwarded).
    pub drop_connections: f64,
    /// Refuse every record (for TTL tests).
    pub refuse_all: bool,
    /// What happens to GetRecords requests.
    pub reads: ReadFaults,
}

/// Faults for GetRecords, as AWS produces them. Shares are of requests, drawn in this order;
/// a request gets at most one fault.
#[derive(Debug, Clone, Default)]
pub struct ReadFaults {
    /// Answered 400 `ProvisionedThroughputExceededException` (nothing forwarded).
    pub throttle: f64,
    /// Answered 500 `InternalFailure` (nothing forwarded).
    pub fail: f64,
    /// Connection closed without an answer (nothing forwarded).
    pub drop: f64,
    /// Answered 400 `ExpiredIteratorException` (nothing forwarded).
    pub expire: f64,
    /// Forwarded after `delay` (a slow answer).
    pub slow: f64,
    pub delay: std::time::Duration,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyCounts {
    pub put_records_requests: u64,
    /// PutRecords requests sent in CBOR.
    pub put_records_cbor: u64,
    pub records_refused: u64,
    pub requests_failed: u64,
    pub connections_dropped: u64,
    pub records_forwarded: u64,
    pub get_records_requests: u64,
    pub reads_throttled: u64,
    pub reads_failed: u64,
    pub reads_dropped: u64,
    pub reads_expired: u64,
    pub reads_slowed: u64,
}

struct State {
    faults: Faults,
    rng: StdRng,
    counts: ProxyCounts,
}

pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    /// PutRecords requests wait for a permit; `hold` takes them all away.
    gate: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

const OPEN: usize = 1 << 20;

impl FaultProxy {
    pub async fn start(upstream: &str, faults: Faults, seed: u64) -> Self {
        let upstream = upstream_addr(upstream);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            faults,
            rng: StdRng::seed_from_u64(seed),
            counts: ProxyCounts::default(),
        }));
        let gate = Arc::new(Semaphore::new(OPEN));
        let (st, g) = (state.clone(), gate.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, upstream, st.clone(), g.clone()));
            }
        });
        Self {
            endpoint,
            state,
            gate,
            task,
        }
    }

    pub fn counts(&self) -> ProxyCounts {
        self.state.lock().expect("proxy state").counts
    }

    /// PutRecords requests wait (unanswered) until [`release`](Self::release).
    pub async fn hold(&self) {
        let permits = self
            .gate
            .acquire_many(OPEN as u32)
            .await
            .expect("gate open");
        permits.forget();
    }

    pub fn release(&self) {
        self.gate.add_permits(OPEN);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `http://ip:port` as an address.
fn upstream_addr(endpoint: &str) -> SocketAddr {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("upstream is http://ip:port")
}

struct Request {
    head: Vec<(String, String)>,
    line: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_request(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut head = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await.ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        head.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        head,
        line: line.trim_end().to_string(),
        body: Vec::new(),
    };
    assert!(
        req.header("transfer-encoding").is_none(),
        "fault proxy: chunked requests are not supported"
    );
    let len: usize = req
        .header("content-length")
        .map_or(0, |v| v.parse().expect("content-length"));
    req.body = vec![0; len];
    r.read_exact(&mut req.body).await.ok()?;
    Some(req)
}

/// How a request's body is encoded; its answer is encoded the same way. The producer sends
/// PutRecords in CBOR (or JSON when told to); the SDK's other calls are JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Cbor,
}

impl Encoding {
    fn of(req: &Request) -> Self {
        match req.header("content-type") {
            Some(t) if t.contains("cbor") => Self::Cbor,
            _ => Self::Json,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/x-amz-json-1.1",
            Self::Cbor => "application/x-amz-cbor-1.1",
        }
    }

    /// An answer, or an error's body.
    fn encode(self, v: &Value) -> Vec<u8> {
        match self {
            Self::Json => serde_json::to_vec(v).expect("JSON"),
            Self::Cbor => {
                let mut out = Vec::new();
                ciborium::into_writer(v, &mut out).expect("CBOR");
                out
            }
        }
    }

    /// An answer (no blobs in PutRecords answers, so JSON values hold them either way).
    fn decode(self, body: &[u8]) -> Value {
        match self {
            Self::Json => serde_json::from_slice(body).expect("PutRecords answer"),
            Self::Cbor => ciborium::from_reader(body).expect("PutRecords answer"),
        }
    }

    /// How many records a PutRecords body holds.
    fn records(self, body: &[u8]) -> usize {
        match self {
            Self::Json => serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["Records"].as_array().map(Vec::len))
                .unwrap_or(0),
            Self::Cbor => cbor_records(body).map_or(0, |(_, r)| r.len()),
        }
    }

    /// The PutRecords body with only the records `keep` says.
    fn keep(self, body: &[u8], keep: &[bool]) -> Vec<u8> {
        fn kept<T>(records: &mut Vec<T>, keep: &[bool]) {
            let mut k = keep.iter();
            records.retain(|_| *k.next().expect("a choice per record"));
        }
        match self {
            Self::Json => {
                let mut v: Value = serde_json::from_slice(body).expect("PutRecords JSON");
                let mut records = v["Records"].as_array().cloned().unwrap_or_default();
                kept(&mut records, keep);
                v["Records"] = Value::Array(records);
                serde_json::to_vec(&v).expect("JSON")
            }
            Self::Cbor => {
                let (mut v, mut records) = cbor_records(body).expect("PutRecords CBOR");
                kept(&mut records, keep);
                if let ciborium::Value::Map(m) = &mut v {
                    for (k, r) in m.iter_mut() {
                        if k.as_text() == Some("Records") {
                            *r = ciborium::Value::Array(std::mem::take(&mut records));
                        }
                    }
                }
                let mut out = Vec::new();
                ciborium::into_writer(&v, &mut out).expect("CBOR");
                out
            }
        }
    }
}

/// A CBOR PutRecords body, and its records.
fn cbor_records(body: &[u8]) -> Option<(ciborium::Value, Vec<ciborium::Value>)> {
    let v: ciborium::Value = ciborium::from_reader(body).ok()?;
    let records = v
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some("Records"))
        .and_then(|(_, r)| r.as_array().cloned())?;
    Some((v, records))
}

async fn serve(
    conn: TcpStream,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    gate: Arc<Semaphore>,
) {
    let (rd, mut wr) = conn.into_split();
    let mut rd = BufReader::new(rd);
    let mut up = Upstream::new(upstream);
    while let Some(mut req) = read_request(&mut rd).await {
        let encoding = Encoding::of(&req);
        let is_put = req
            .header("x-amz-target")
            .is_some_and(|t| t.ends_with(".PutRecords"));
        let is_get = req
            .header("x-amz-target")
            .is_some_and(|t| t.ends_with(".GetRecords"));
        if is_get {
            match read_fault(&state) {
                Some(ReadFault::Drop) => return, // closes the connection, unanswered
                Some(ReadFault::Answer(status, code)) => {
                    let body = json!({"__type": code, "message": "injected by the fault proxy"});
                    if respond(&mut wr, status, encoding, &encoding.encode(&body))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Some(ReadFault::Slow(d)) => tokio::time::sleep(d).await,
                None => {}
            }
        }
        if !is_put {
            let (status, body) = up.forward(&req).await;
            if respond(&mut wr, status, encoding, &body).await.is_err() {
                return;
            }
            continue;
        }
        {
            let counts = &mut state.lock().expect("proxy state").counts;
            counts.put_records_requests += 1;
            counts.put_records_cbor += u64::from(encoding == Encoding::Cbor);
        }
        let _permit = gate.acquire().await.expect("gate");
        // decide this request's fate
        let (drop_conn, fail_req, refuse): (bool, bool, Vec<bool>) = {
            let mut s = state.lock().expect("proxy state");
            let f = s.faults.clone();
            let drop_conn = s.rng.random_bool(f.drop_connections.clamp(0.0, 1.0));
            let fail_req = !drop_conn && s.rng.random_bool(f.fail_requests.clamp(0.0, 1.0));
            let n = encoding.records(&req.body);
            let refuse = (0..n)
                .map(|_| f.refuse_all || s.rng.random_bool(f.refuse_records.clamp(0.0, 1.0)))
                .collect();
            (drop_conn, fail_req, refuse)
        };
        if drop_conn {
            state
                .lock()
                .expect("proxy state")
                .counts
                .connections_dropped += 1;
            return; // closes the connection, request unanswered
        }
        if fail_req {
            state.lock().expect("proxy state").counts.requests_failed += 1;
            let body =
                json!({"__type": "InternalFailure", "message": "injected by the fault proxy"});
            if respond(&mut wr, 500, encoding, &encoding.encode(&body))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let keep: Vec<bool> = refuse.iter().map(|r| !r).collect();
        let kept = keep.iter().filter(|k| **k).count();
        let mut answers: Vec<Value> = Vec::new();
        let mut failed = 0;
        let mut upstream_answers = Vec::new().into_iter();
        let mut encryption = Value::Null;
        if kept > 0 {
            req.body = encoding.keep(&req.body, &keep);
            let (status, body) = up.forward(&req).await;
            if status != 200 {
                // pass upstream errors (e.g. throttling of the whole request) through
                if respond(&mut wr, status, encoding, &body).await.is_err() {
                    return;
                }
                continue;
            }
            let out = encoding.decode(&body);
            encryption = out["EncryptionType"].clone();
            let got = out["Records"].as_array().cloned().unwrap_or_default();
            assert_eq!(got.len(), kept, "upstream answered every forwarded record");
            state.lock().expect("proxy state").counts.records_forwarded += kept as u64;
            upstream_answers = got.into_iter();
        }
        {
            let mut s = state.lock().expect("proxy state");
            for r in &refuse {
                if *r {
                    failed += 1;
                    s.counts.records_refused += 1;
                    let code = if s.rng.random_bool(0.5) {
                        "InternalFailure"
                    } else {
                        "ProvisionedThroughputExceededException"
                    };
                    answers.push(
                        json!({"ErrorCode": code, "ErrorMessage": "injected by the fault proxy"}),
                    );
                } else {
                    let a = upstream_answers.next().expect("an answer per kept record");
                    if a.get("ErrorCode").is_some() {
                        failed += 1;
                    }
                    answers.push(a);
                }
            }
        }
        let mut out = json!({"FailedRecordCount": failed, "Records": answers});
        if !encryption.is_null() {
            out["EncryptionType"] = encryption;
        }
        if respond(&mut wr, 200, encoding, &encoding.encode(&out))
            .await
            .is_err()
        {
            return;
        }
    }
}

enum ReadFault {
    Drop,
    Answer(u16, &'static str),
    Slow(std::time::Duration),
}

/// Draws the fate of one GetRecords request and counts it.
fn read_fault(state: &Mutex<State>) -> Option<ReadFault> {
    let mut s = state.lock().expect("proxy state");
    s.counts.get_records_requests += 1;
    let f = s.faults.reads.clone();
    let mut draw = |p: f64| s.rng.random_bool(p.clamp(0.0, 1.0));
    let fault = if draw(f.throttle) {
        ReadFault::Answer(400, "ProvisionedThroughputExceededException")
    } else if draw(f.fail) {
        ReadFault::Answer(500, "InternalFailure")
    } else if draw(f.drop) {
        ReadFault::Drop
    } else if draw(f.expire) {
        ReadFault::Answer(400, "ExpiredIteratorException")
    } else if draw(f.slow) {
        ReadFault::Slow(f.delay)
    } else {
        return None;
    };
    let c = &mut s.counts;
    match fault {
        ReadFault::Answer(_, "ProvisionedThroughputExceededException") => c.reads_throttled += 1,
        ReadFault::Answer(_, "InternalFailure") => c.reads_failed += 1,
        ReadFault::Answer(..) => c.reads_expired += 1,
        ReadFault::Drop => c.reads_dropped += 1,
        ReadFault::Slow(_) => c.reads_slowed += 1,
    }
    Some(fault)
}

/// One kept-alive connection to the emulator, opened when first needed.
struct Upstream {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Upstream {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    /// Sends the request upstream; returns status and body.
    async fn forward(&mut self, req: &Request) -> (u16, Vec<u8>) {
        let mut head = format!("{}\r\n", req.line);
        for (k, v) in &req.head {
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
                continue;
            }
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", req.body.len()));
        // A kept-alive connection the emulator closed while idle fails on first use; a
        // read-only call is then sent again on a new one. A put is not: the emulator may
        // have stored it before the connection broke, and sending it again would store
        // it twice behind the producer's back (the failure reaches the producer instead).
        let resendable = !req
            .header("x-amz-target")
            .is_some_and(|t| t.contains(".PutRecord"));
        let mut status_line = String::new();
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            if self.conn.is_none() {
                let c = TcpStream::connect(self.addr)
                    .await
                    .expect("connect upstream");
                self.conn = Some(BufReader::new(c));
            }
            let conn = self.conn.as_mut().expect("connected");
            status_line.clear();
            let sent = async {
                conn.get_mut().write_all(head.as_bytes()).await?;
                conn.get_mut().write_all(&req.body).await?;
                match conn.read_line(&mut status_line).await? {
                    0 => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                    _ => Ok(()),
                }
            }
            .await;
            match sent {
                Ok(()) => break,
                Err(_) if reused && resendable && attempt == 0 => self.conn = None,
                Err(e) => panic!("upstream: {e}"),
            }
        }
        let conn = self.conn.as_mut().expect("connected");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("upstream status line {status_line:?}"));
        let (mut len, mut chunked, mut close) = (None, false, false);
        loop {
            let mut h = String::new();
            conn.read_line(&mut h).await.expect("read upstream");
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                len = v.trim().parse::<usize>().ok();
            }
            chunked |= h.starts_with("transfer-encoding:") && h.contains("chunked");
            close |= h.starts_with("connection:") && h.contains("close");
        }
        let body = if chunked {
            let mut raw = Vec::new();
            loop {
                let mut size = String::new();
                conn.read_line(&mut size).await.expect("read upstream");
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .expect("chunk size");
                let mut chunk = vec![0; n + 2];
                conn.read_exact(&mut chunk).await.expect("read upstream");
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&chunk[..n]);
            }
            raw
        } else {
            let mut body = vec![0; len.unwrap_or(0)];
            conn.read_exact(&mut body).await.expect("read upstream");
            body
        };
        if close {
            self.conn = None;
        }
        (status, body)
    }
}

async fn respond(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    status: u16,
    encoding: Encoding,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = if status == 200 { "OK" } else { "Error" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
        encoding.content_type(),
        body.len()
    );
    wr.write_all(head.as_bytes()).await?;
    wr.write_all(body).await?;
    wr.flush().await
}

/// An enhanced fan-out test double over kinesis-local, for the one behaviour no emulator
/// here has (docs/emulators.md): AWS ends a subscription at a closed shard with an event that
/// carries `ChildShards` and no `ContinuationSequenceNumber`; kinesis-local never ends
/// one, and ferrokinesis keeps a continuation (and, after UpdateShardCount, names no
/// children). Every call but SubscribeToShard is forwarded to kinesis-local untouched
/// (consumer registration included). SubscribeToShard is answered here, over HTTP/1.1
/// like kinesis-local: records come from GetRecords on kinesis-local (which ends a closed
/// parent with a null iterator and its ChildShards), one event per non-empty answer,
/// encoded as AWS event-stream messages, and the final event at a closed shard has
/// ChildShards and a null continuation, after which the response ends.
pub struct EfoFacade {
    pub endpoint: String,
    /// Subscriptions whose client connection is still open.
    open: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl EfoFacade {
    pub async fn start(upstream: &str) -> Self {
        let addr = upstream_addr(upstream);
        let kinesis = super::kinesis_at(upstream);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind facade");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let o = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_efo(conn, addr, kinesis.clone(), o.clone()));
            }
        });
        Self {
            endpoint,
            open,
            task,
        }
    }

    /// How many subscriptions are open (the client has not closed their connection).
    pub fn open_subscriptions(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for EfoFacade {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_efo(
    conn: TcpStream,
    upstream: SocketAddr,
    kinesis: aws_sdk_kinesis::Client,
    open: Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let (rd, mut wr) = conn.into_split();
    let mut rd = BufReader::new(rd);
    let mut up = Upstream::new(upstream);
    while let Some(req) = read_request(&mut rd).await {
        let subscribe = req
            .header("x-amz-target")
            .is_some_and(|t| t.ends_with(".SubscribeToShard"));
        if subscribe {
            // The response is a stream that ends the connection; it also ends when the
            // client closes the connection (a subscription dropped by the worker).
            open.fetch_add(1, Ordering::SeqCst);
            let mut probe = [0u8; 1];
            tokio::select! {
                _ = subscription(&mut wr, &kinesis, &req.body) => {}
                _ = rd.read(&mut probe) => {}
            }
            open.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let (status, body) = up.forward(&req).await;
        if respond(&mut wr, status, Encoding::of(&req), &body)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn subscription(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    kinesis: &aws_sdk_kinesis::Client,
    body: &[u8],
) -> std::io::Result<()> {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let v: Value = serde_json::from_slice(body).expect("SubscribeToShard JSON");
    // arn:aws:kinesis:REGION:ACCOUNT:stream/NAME/consumer/CONSUMER:TS
    let arn = v["ConsumerARN"].as_str().expect("ConsumerARN");
    let stream = arn.split('/').nth(1).expect("stream in the consumer ARN");
    let shard = v["ShardId"].as_str().expect("ShardId");
    let pos = &v["StartingPosition"];
    let kind = ShardIteratorType::from(pos["Type"].as_str().expect("Type"));
    let mut req = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind);
    if let Some(seq) = pos["SequenceNumber"].as_str() {
        req = req.starting_sequence_number(seq);
    }
    if let Some(t) = pos["Timestamp"].as_f64() {
        req = req.timestamp(aws_sdk_kinesis::primitives::DateTime::from_secs_f64(t));
    }
    let mut iterator = req.send().await.expect("GetShardIterator").shard_iterator;
    wr.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await?;
    let opened = std::time::Instant::now();
    while let Some(it) = iterator.take() {
        if opened.elapsed() > std::time::Duration::from_secs(300) {
            break; // the service's 5-minute limit
        }
        let out = kinesis
            .get_records()
            .shard_iterator(it)
            .limit(500)
            .send()
            .await
            .expect("GetRecords");
        iterator = out.next_shard_iterator.clone();
        let records: Vec<Value> = out
            .records
            .iter()
            .map(|r| {
                json!({
                    "Data": aws_smithy_types::base64::encode(r.data.as_ref()),
                    "PartitionKey": r.partition_key,
                    "SequenceNumber": r.sequence_number,
                    "ApproximateArrivalTimestamp": r.approximate_arrival_timestamp.map(|t| t.as_secs_f64()),
                })
            })
            .collect();
        let ended = iterator.is_none();
        if records.is_empty() && !ended {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        let children: Vec<Value> = out
            .child_shards
            .unwrap_or_default()
            .iter()
            .map(|c| {
                json!({
                    "ShardId": c.shard_id,
                    "ParentShards": c.parent_shards,
                    "HashKeyRange": {
                        "StartingHashKey": c.hash_key_range.as_ref().map(|h| h.starting_hash_key.clone()),
                        "EndingHashKey": c.hash_key_range.as_ref().map(|h| h.ending_hash_key.clone()),
                    },
                })
            })
            .collect();
        let continuation = if ended {
            Value::Null
        } else {
            json!(out.records.last().map(|r| r.sequence_number.clone()))
        };
        let mut event = json!({
            "Records": records,
            "ContinuationSequenceNumber": continuation,
            "MillisBehindLatest": out.millis_behind_latest.unwrap_or(0),
        });
        if ended {
            event["ChildShards"] = Value::Array(children);
        }
        let message = aws_smithy_types::event_stream::Message::new(event.to_string().into_bytes())
            .add_header(header(":message-type", "event"))
            .add_header(header(":event-type", "SubscribeToShardEvent"))
            .add_header(header(":content-type", "application/json"));
        let mut frame = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&message, &mut frame)
            .expect("encode event");
        wr.write_all(format!("{:x}\r\n", frame.len()).as_bytes())
            .await?;
        wr.write_all(&frame).await?;
        wr.write_all(b"\r\n").await?;
        wr.flush().await?;
    }
    wr.write_all(b"0\r\n\r\n").await?;
    wr.flush().await
}

fn header(name: &'static str, value: &'static str) -> aws_smithy_types::event_stream::Header {
    aws_smithy_types::event_stream::Header::new(
        name,
        aws_smithy_types::event_stream::HeaderValue::String(value.into()),
    )
}
