//! Every credential style signs with the access key it should: a loopback HTTP server plays
//! DynamoDB (and STS, and an HTTP proxy) and records each request's `Authorization` header;
//! `shardline run` runs as a child with an environment of its own (no AWS_* from ours), so
//! the default chain sees exactly what the case gives it. DynamoDB answers AccessDenied, so
//! the worker stops at its first call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the loopback server received.
#[derive(Debug, Clone)]
struct Seen {
    /// `POST / HTTP/1.1`, or `POST http://host/ HTTP/1.1` through a proxy.
    request_line: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Seen {
    /// The access key id of the SigV4 signature (`Credential=AKID/...`).
    fn access_key(&self) -> Option<String> {
        let auth = self.headers.get("authorization")?;
        let rest = auth.split("Credential=").nth(1)?;
        Some(rest.split('/').next()?.to_string())
    }
}

struct Loopback {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const STS_CREDENTIALS: &str = "<Credentials><AccessKeyId>{AKID}</AccessKeyId><SecretAccessKey>role-secret</SecretAccessKey><SessionToken>role-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>";

impl Loopback {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let (ctype, status, body) = answer(&req);
                    log.lock().expect("lock").push(req);
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// DynamoDB: AccessDenied (not retried). STS: credentials with a recognizable key id.
fn answer(req: &Seen) -> (&'static str, &'static str, String) {
    if req.headers.contains_key("x-amz-target") {
        return (
            "application/x-amz-json-1.0",
            "400 Bad Request",
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#AccessDeniedException","message":"captured by the test"}"#.into(),
        );
    }
    let (action, akid) = if req.body.contains("Action=AssumeRoleWithWebIdentity") {
        ("AssumeRoleWithWebIdentity", "ASIAWEBIDENTITY")
    } else {
        ("AssumeRole", "ASIAASSUMEDROLE")
    };
    let creds = STS_CREDENTIALS.replace("{AKID}", akid);
    (
        "text/xml",
        "200 OK",
        format!(
            "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>{creds}<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser></{action}Result><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    Some(Seen {
        request_line,
        headers,
        body,
    })
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "shardline-creds-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `shardline run` with only `env` (plus PATH) in its environment; returns its stderr once
/// it exited (it must, the lease table call is refused).
async fn run(args: &[&str], config: &Path, env: &[(&str, String)], home: &Path) -> String {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shardline"));
    cmd.arg("run")
        .args(args)
        .arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("SHARDLINE_LOG", "info")
        // no instance metadata lookups in the default chain
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start shardline");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("shardline stops at the refused DynamoDB call")
        .expect("wait");
    assert!(
        !out.status.success(),
        "run cannot succeed against AccessDenied"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn native(dynamodb: &str, aws_extra: &str) -> String {
    format!(
        "application: creds-test\nsource:\n  stream: s\naws:\n  region: us-east-1\n  endpoints:\n    kinesis: {dynamodb}\n    dynamodb: {dynamodb}\n{aws_extra}sinks:\n  main:\n    pulsar:\n      service_url: pulsar://127.0.0.1:6650\n      topic: persistent://public/default/creds\n"
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// The access key ids DynamoDB saw, and everything STS saw.
fn split(seen: &[Seen]) -> (Vec<String>, Vec<Seen>) {
    let ddb = seen
        .iter()
        .filter(|s| s.headers.contains_key("x-amz-target"))
        .map(|s| s.access_key().unwrap_or_else(|| "<unsigned>".into()))
        .collect();
    let sts = seen
        .iter()
        .filter(|s| !s.headers.contains_key("x-amz-target"))
        .cloned()
        .collect();
    (ddb, sts)
}

#[tokio::test]
async fn static_keys_sign_with_their_key_id_and_never_show_the_secret() {
    let lb = Loopback::start().await;
    let dir = temp_dir();
    let config = write(
        &dir,
        "c.yaml",
        &native(
            &lb.url,
            "  credentials:\n    type: static\n    access_key_id: AKIDSTATIC\n    secret_access_key: static-secret-value\n",
        ),
    );
    let log = run(&[], &config, &[], &dir).await;
    let (ddb, _) = split(&lb.seen());
    assert_eq!(ddb.first().map(String::as_str), Some("AKIDSTATIC"), "{log}");
    assert!(!log.contains("static-secret-value"), "{log}");
}

#[tokio::test]
async fn the_default_chain_reads_the_environment() {
    let lb = Loopback::start().await;
    let dir = temp_dir();
    let config = write(&dir, "c.yaml", &native(&lb.url, ""));
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDFROMENV".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "env-secret".to_string()),
    ];
    let log = run(&[], &config, &env, &dir).await;
    let (ddb, _) = split(&lb.seen());
    assert_eq!(
        ddb.first().map(String::as_str),
        Some("AKIDFROMENV"),
        "{log}"
    );
}

#[tokio::test]
async fn a_named_profile_is_read_from_the_given_file_or_the_home_folder() {
    let lb = Loopback::start().await;
    let dir = temp_dir();
    let file = write(
        &dir,
        "migrated-credentials",
        "[default]\naws_access_key_id = AKIDWRONGPROFILE\naws_secret_access_key = x\n\n[migrant]\naws_access_key_id = AKIDPROFILEFILE\naws_secret_access_key = profile-secret\n",
    );
    let config = write(
        &dir,
        "c.yaml",
        &native(
            &lb.url,
            &format!(
                "  credentials:\n    type: profile\n    profile: migrant\n    file: {}\n",
                file.display()
            ),
        ),
    );
    let log = run(&[], &config, &[], &dir).await;
    let (ddb, _) = split(&lb.seen());
    assert_eq!(
        ddb.first().map(String::as_str),
        Some("AKIDPROFILEFILE"),
        "{log}"
    );

    // Without `file`: ~/.aws/credentials.
    let lb = Loopback::start().await;
    let home = temp_dir();
    std::fs::create_dir_all(home.join(".aws")).expect("~/.aws");
    write(
        &home.join(".aws"),
        "credentials",
        "[named]\naws_access_key_id = AKIDHOMEPROFILE\naws_secret_access_key = s\n",
    );
    let config = write(
        &home,
        "c.yaml",
        &native(
            &lb.url,
            "  credentials:\n    type: profile\n    profile: named\n",
        ),
    );
    let log = run(&[], &config, &[], &home).await;
    let (ddb, _) = split(&lb.seen());
    assert_eq!(
        ddb.first().map(String::as_str),
        Some("AKIDHOMEPROFILE"),
        "{log}"
    );
}

#[tokio::test]
async fn assume_role_calls_sts_with_the_base_keys_then_signs_with_the_role() {
    let lb = Loopback::start().await;
    let dir = temp_dir();
    let config = write(
        &dir,
        "c.yaml",
        &native(
            &lb.url,
            "  credentials:\n    type: assume_role\n    role_arn: arn:aws:iam::123456789012:role/reader\n    session_name: migrated\n    external_id: ext-42\n    duration: 2h\n",
        )
        .replace("    dynamodb:", &format!("    sts: {}\n    dynamodb:", lb.url)),
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDBASEFORROLE".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "base-secret".to_string()),
    ];
    let log = run(&[], &config, &env, &dir).await;
    let (ddb, sts) = split(&lb.seen());
    let call = sts
        .first()
        .unwrap_or_else(|| panic!("no STS call; log:\n{log}"));
    assert_eq!(call.access_key().as_deref(), Some("AKIDBASEFORROLE"));
    for part in [
        "Action=AssumeRole",
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Freader",
        "RoleSessionName=migrated",
        "ExternalId=ext-42",
        "DurationSeconds=7200",
    ] {
        assert!(call.body.contains(part), "{part} missing in {}", call.body);
    }
    assert_eq!(
        ddb.first().map(String::as_str),
        Some("ASIAASSUMEDROLE"),
        "{log}"
    );
}

#[tokio::test]
async fn web_identity_comes_through_the_default_chain() {
    let lb = Loopback::start().await;
    let dir = temp_dir();
    let token = write(&dir, "token", "header.payload.signature");
    let config = write(&dir, "c.yaml", &native(&lb.url, ""));
    let env = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/pod".to_string(),
        ),
        ("AWS_ROLE_SESSION_NAME", "pod-session".to_string()),
        ("AWS_ENDPOINT_URL_STS", lb.url.clone()),
    ];
    let log = run(&[], &config, &env, &dir).await;
    let (ddb, sts) = split(&lb.seen());
    let call = sts
        .first()
        .unwrap_or_else(|| panic!("no STS call; log:\n{log}"));
    assert!(
        call.body.contains("Action=AssumeRoleWithWebIdentity"),
        "{}",
        call.body
    );
    assert!(
        call.body
            .contains("WebIdentityToken=header.payload.signature"),
        "{}",
        call.body
    );
    assert_eq!(
        ddb.first().map(String::as_str),
        Some("ASIAWEBIDENTITY"),
        "{log}"
    );
}

#[tokio::test]
async fn a_proxy_carries_the_signed_requests() {
    let lb = Loopback::start().await;
    let dir = temp_dir();
    // The endpoint does not resolve: only the proxy can deliver the request.
    let config = write(
        &dir,
        "c.yaml",
        &native(
            "http://dynamodb.shardline.invalid:8000",
            &format!(
                "  credentials:\n    type: static\n    access_key_id: AKIDVIAPROXY\n    secret_access_key: s\n  proxy:\n    url: {}\n",
                lb.url
            ),
        ),
    );
    let log = run(&[], &config, &[], &dir).await;
    let seen = lb.seen();
    let first = seen
        .first()
        .unwrap_or_else(|| panic!("nothing reached the proxy; log:\n{log}"));
    assert!(
        first
            .request_line
            .contains("http://dynamodb.shardline.invalid:8000/"),
        "not an absolute-form proxy request: {}",
        first.request_line
    );
    assert_eq!(first.access_key().as_deref(), Some("AKIDVIAPROXY"));
}

#[tokio::test]
async fn migrated_credentials_sign_as_their_source_said() {
    let lb = Loopback::start().await;
    let dir = temp_dir();
    let overlay = write(
        &dir,
        "overlay.yaml",
        &format!("aws:\n  region: us-east-1\n  endpoints:\n    kinesis: {0}\n    dynamodb: {0}\n    sts: {0}\n", lb.url),
    );
    let overlay = overlay.display().to_string();
    // (format, file name, text, environment)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case<'_>; 4] = [
        (
            "pulsar-io",
            "pio.json",
            r#"{"awsKinesisStreamName":"s","awsRegion":"us-east-1","awsCredentialPluginParam":"{\"accessKey\":\"AKIDPULSARIO\",\"secretKey\":\"pio-secret\"}"}"#,
            &[],
        ),
        (
            "pulsar-io",
            "pio-role.yaml",
            "awsKinesisStreamName: s\nawsRegion: us-east-1\nawsCredentialPluginName: org.apache.pulsar.io.aws.STSAssumeRoleProviderPlugin\nawsCredentialPluginParam: '{\"roleArn\":\"arn:aws:iam::1:role/r\",\"roleSessionName\":\"pio\"}'\n",
            &[("AWS_ACCESS_KEY_ID", "AKIDBASE"), ("AWS_SECRET_ACCESS_KEY", "b")],
        ),
        (
            "samza",
            "job.properties",
            "systems.k.samza.factory=org.apache.samza.system.kinesis.KinesisSystemFactory\ntask.inputs=k.s\nsystems.k.streams.s.aws.region=us-east-1\nsystems.k.streams.s.aws.accessKey=AKIDSAMZA\nsensitive.systems.k.streams.s.aws.secretKey=samza-secret\n",
            &[],
        ),
        (
            "flink",
            "consumer.properties",
            "aws.region=us-east-1\naws.credentials.provider=BASIC\naws.credentials.provider.basic.accesskeyid=AKIDFLINK\naws.credentials.provider.basic.secretkey=flink-secret\n",
            &[],
        ),
    ];
    let want = ["AKIDPULSARIO", "ASIAASSUMEDROLE", "AKIDSAMZA", "AKIDFLINK"];
    for ((format, name, text, env), want) in cases.into_iter().zip(want) {
        let before = lb.seen().len();
        let file = write(&dir, name, text);
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let log = run(
            &[
                "--from",
                format,
                "--to",
                "persistent://public/default/x",
                "--stream",
                "s",
                "--overlay",
                &overlay,
            ],
            &file,
            &env,
            &dir,
        )
        .await;
        let (ddb, _) = split(&lb.seen()[before..]);
        assert_eq!(
            ddb.first().map(String::as_str),
            Some(want),
            "{format} {name}:\n{log}"
        );
        for secret in ["pio-secret", "samza-secret", "flink-secret"] {
            assert!(!log.contains(secret), "{format} logged a secret:\n{log}");
        }
        assert!(
            log.contains(&format!("converted a {format} config")),
            "{log}"
        );
    }
}
