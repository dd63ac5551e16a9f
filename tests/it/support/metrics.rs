//! The worker's HTTP endpoint (`metrics.listen`): finding it in the log, GETting a path,
//! reading a Prometheus family's total.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Host;

/// One HTTP GET on the worker's endpoint: status code and body.
pub async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The sum of every sample of a Prometheus family (all label sets).
pub fn prometheus_total(text: &str, family: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The endpoint address the worker logged.
pub async fn endpoint_of(host: &mut Host) -> String {
    host.wait_log(
        "metrics endpoint listening on http://",
        Duration::from_secs(180),
    )
    .await;
    let log = host.log();
    let at = log
        .find("metrics endpoint listening on http://")
        .expect("logged");
    log[at + "metrics endpoint listening on http://".len()..]
        .split_whitespace()
        .next()
        .expect("address")
        .to_string()
}
