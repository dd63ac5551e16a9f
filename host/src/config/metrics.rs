//! `metrics:` — what is recorded and where it goes: CloudWatch (as the KCL publishes) and a
//! loopback HTTP endpoint with Prometheus metrics, liveness and readiness.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::units::duration;

/// How much is recorded (the KCL's `MetricsLevel`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Nothing is recorded or exported.
    None = 0,
    /// What an operator alarms on, per stream (and per worker for leases).
    Summary = 1,
    /// Everything, with per-shard dimensions.
    #[default]
    Detailed = 2,
}

/// The `metrics` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `none`, `summary` (per stream and worker) or `detailed` (adds per-shard dimensions
    /// and finer metrics), as the KCL's metrics level.
    #[serde(default)]
    pub level: Level,
    /// Publish to CloudWatch (endpoint: `aws.endpoints.cloudwatch`).
    #[serde(default)]
    pub cloudwatch: bool,
    /// CloudWatch namespace; the application name when absent (as the KCL).
    #[serde(default)]
    pub namespace: Option<String>,
    /// How often data is sent to CloudWatch (the KCL's `metricsBufferTimeMillis`).
    #[serde(default = "default_flush_interval", deserialize_with = "duration")]
    pub flush_interval: Duration,
    /// Address of the HTTP endpoint (`/metrics`, `/health`, `/ready`): `host:port`, or a
    /// port alone for 127.0.0.1. Port 0 picks a free port (logged). Absent: no endpoint.
    #[serde(default)]
    pub listen: Option<Listen>,
    /// Allow `listen` on an address other than loopback (the endpoint has no
    /// authentication).
    #[serde(default)]
    pub listen_beyond_loopback: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            level: Level::default(),
            cloudwatch: false,
            namespace: None,
            flush_interval: default_flush_interval(),
            listen: None,
            listen_beyond_loopback: false,
        }
    }
}

fn default_flush_interval() -> Duration {
    Duration::from_secs(10)
}

/// A listen address as written: `127.0.0.1:9464`, `[::1]:9464` or `9464`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen(pub Result<SocketAddr, String>);

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::String(s) => s,
            other => format!("{other:?}"),
        };
        let parsed = match text.parse::<u16>() {
            Ok(port) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
            Err(_) => text
                .parse::<SocketAddr>()
                .map_err(|_| format!("must be host:port (an IP address) or a port, got {text:?}")),
        };
        Ok(Self(parsed))
    }
}

impl MetricsConfig {
    /// The endpoint's address, when there is one and it is valid.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.as_ref().and_then(|l| l.0.clone().ok())
    }

    /// What serde cannot check.
    pub(super) fn problems(&self, bad: &mut impl FnMut(&str, String)) {
        if self.flush_interval < Duration::from_secs(1) {
            bad(
                "metrics.flush_interval",
                "must be at least 1s (each flush is a PutMetricData request)".into(),
            );
        }
        if let Some(ns) = &self.namespace {
            if ns.is_empty() || ns.len() > 255 || ns.starts_with(':') || ns.starts_with("AWS/") {
                bad(
                    "metrics.namespace",
                    "must be 1-255 characters, not starting with ':' or 'AWS/'".into(),
                );
            }
        }
        match &self.listen {
            Some(Listen(Err(why))) => bad("metrics.listen", why.clone()),
            Some(Listen(Ok(a))) if !a.ip().is_loopback() && !self.listen_beyond_loopback => bad(
                "metrics.listen",
                format!(
                    "{a} is not a loopback address; the endpoint has no authentication: \
                     set metrics.listen_beyond_loopback: true to expose it"
                ),
            ),
            _ => {}
        }
    }
}
