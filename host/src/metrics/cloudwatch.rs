//! The CloudWatch exporter: every `flush_interval` it turns each series into one
//! `PutMetricData` datum — a statistic set (sample count, sum, minimum, maximum) of the
//! period, as the KCL and KPL publish theirs — and sends them in batches of up to
//! [`MAX_DATUMS_PER_REQUEST`].
//!
//! It runs on its own task and only reads the handles, so the pipeline never waits for
//! it. A request that fails (CloudWatch unreachable, throttled, refused) is logged and
//! counted (`Metrics.PublishFailures`) and its data is not lost: counters and
//! distributions keep accumulating from the last value CloudWatch accepted, so the next
//! successful request carries the whole difference. At shutdown one last flush is made.
//!
//! The SDK is pinned at 1.99 (Query protocol): from 1.100 it speaks rpc-v2-cbor, which
//! CloudWatch accepts but moto (the local stack) does not.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use tokio_util::sync::CancellationToken;

use super::{defs, Registry, Series, Unit, Value};

/// CloudWatch accepts at most 1,000 data points per PutMetricData request.
pub const MAX_DATUMS_PER_REQUEST: usize = 1000;

/// The longest one PutMetricData may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What one series contributes to a flush, before CloudWatch accepted it.
#[derive(Debug, Clone, Copy)]
struct Pending {
    series: usize,
    /// Cumulative value (counters) or cumulative count and sum (distributions) that the
    /// datum brings CloudWatch up to.
    total: (u64, u64),
    min_max: Option<(u64, u64)>,
    /// Whether `total` is cumulative (not for gauges).
    cumulative: bool,
}

/// Publishes a registry's series to CloudWatch.
#[derive(Debug)]
pub struct Exporter {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    registry: &'static Registry,
    /// Per series: the cumulative values CloudWatch has (counters: value; distributions:
    /// count and sum), and the extremes of periods not accepted yet.
    accepted: HashMap<usize, (u64, u64)>,
    unsent_min_max: HashMap<usize, (u64, u64)>,
}

impl Exporter {
    pub fn new(
        client: aws_sdk_cloudwatch::Client,
        namespace: &str,
        registry: &'static Registry,
    ) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            registry,
            accepted: HashMap::new(),
            unsent_min_max: HashMap::new(),
        }
    }

    /// Flushes every `interval` until `shutdown`, then once more.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = timer.tick() => { self.flush().await; }
                _ = shutdown.cancelled() => break,
            }
        }
        self.flush().await;
    }

    /// Sends what changed since CloudWatch last accepted data; returns the number of data
    /// points accepted.
    pub async fn flush(&mut self) -> usize {
        let series = self.registry.series();
        let now = DateTime::from(SystemTime::now());
        let mut batch: Vec<(MetricDatum, Pending)> = Vec::new();
        let mut accepted = 0;
        for (i, s) in series.iter().enumerate() {
            if let Some(d) = self.datum(i, s, now) {
                batch.push(d);
            }
            if batch.len() == MAX_DATUMS_PER_REQUEST {
                accepted += self.send(std::mem::take(&mut batch)).await;
            }
        }
        if !batch.is_empty() {
            accepted += self.send(batch).await;
        }
        accepted
    }

    fn datum(&mut self, i: usize, s: &Series, now: DateTime) -> Option<(MetricDatum, Pending)> {
        let (last_a, last_b) = self.accepted.get(&i).copied().unwrap_or((0, 0));
        let (stats, pending) = match &s.value {
            Value::Counter(_) | Value::Observed(_) => {
                let total = s.scalar().max(0) as u64;
                let delta = total.saturating_sub(last_a) as f64;
                (
                    (1.0, delta, delta, delta),
                    Pending {
                        series: i,
                        total: (total, 0),
                        min_max: None,
                        cumulative: true,
                    },
                )
            }
            Value::Gauge(g) => {
                let v = g.get() as f64;
                (
                    (1.0, v, v, v),
                    Pending {
                        series: i,
                        total: (0, 0),
                        min_max: None,
                        cumulative: false,
                    },
                )
            }
            Value::Distribution(d) => {
                let (count, sum) = (d.count(), d.sum());
                let period = d.take_min_max();
                let min_max = match (period, self.unsent_min_max.remove(&i)) {
                    (Some((a, b)), Some((c, e))) => Some((a.min(c), b.max(e))),
                    (p, u) => p.or(u),
                };
                let n = count.saturating_sub(last_a);
                let pending = Pending {
                    series: i,
                    total: (count, sum),
                    min_max,
                    cumulative: true,
                };
                let Some((min, max)) = min_max.filter(|_| n > 0) else {
                    // No observation this period: nothing to say (as the KCL).
                    if let Some(mm) = min_max {
                        self.unsent_min_max.insert(i, mm);
                    }
                    return None;
                };
                (
                    (
                        n as f64,
                        sum.saturating_sub(last_b) as f64,
                        min as f64,
                        max as f64,
                    ),
                    pending,
                )
            }
        };
        let (n, sum, min, max) = stats;
        let datum = MetricDatum::builder()
            .metric_name(s.def.name)
            .set_dimensions(Some(
                s.dims
                    .iter()
                    .map(|(d, v)| Dimension::builder().name(d.cloudwatch).value(v).build())
                    .collect(),
            ))
            .statistic_values(
                StatisticSet::builder()
                    .sample_count(n)
                    .sum(sum)
                    .minimum(min)
                    .maximum(max)
                    .build(),
            )
            .unit(unit(s.def.unit))
            .timestamp(now)
            .build();
        Some((datum, pending))
    }

    async fn send(&mut self, batch: Vec<(MetricDatum, Pending)>) -> usize {
        let n = batch.len();
        let (data, pending): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let request = self
            .client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(data))
            .send();
        let failure = match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(describe(&e)),
            Err(_) => Some(format!("no answer within {REQUEST_TIMEOUT:?}")),
        };
        match failure {
            None => {
                for p in pending.into_iter().filter(|p| p.cumulative) {
                    self.accepted.insert(p.series, p.total);
                }
                self.registry
                    .counter(&defs::PUBLISHED, Vec::new())
                    .add(n as u64);
                n
            }
            Some(why) => {
                for p in pending {
                    if let Some(mm) = p.min_max {
                        self.unsent_min_max
                            .entry(p.series)
                            .and_modify(|e| *e = (e.0.min(mm.0), e.1.max(mm.1)))
                            .or_insert(mm);
                    }
                }
                self.registry
                    .counter(&defs::PUBLISH_FAILURES, Vec::new())
                    .inc();
                tracing::warn!(component = "metrics", namespace = %self.namespace, data_points = n, error = %why,
                    "cannot publish metrics to CloudWatch; they are sent with the next flush");
                0
            }
        }
    }
}

fn unit(u: Unit) -> StandardUnit {
    match u {
        Unit::Count => StandardUnit::Count,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::Bytes => StandardUnit::Bytes,
    }
}

fn describe<E, R>(e: &aws_sdk_cloudwatch::error::SdkError<E, R>) -> String
where
    E: aws_sdk_cloudwatch::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    // The same SDK error and metadata types as Kinesis's, re-exported.
    crate::aws::describe(e)
}

/// The CloudWatch client: the shared AWS settings, `aws.endpoints.cloudwatch` if given.
pub fn client(
    sdk: &aws_config::SdkConfig,
    aws: &crate::config::AwsConfig,
) -> aws_sdk_cloudwatch::Client {
    let mut b = aws_sdk_cloudwatch::config::Builder::from(sdk);
    if let Some(e) = &aws.endpoints.cloudwatch {
        b = b.endpoint_url(e);
    }
    aws_sdk_cloudwatch::Client::from_conf(b.build())
}
