//! The Kinesis sink: events go back into Kinesis through Shardline's KPL-grade
//! [producer](crate::producer), one producer per stream. A destination's topic names the
//! stream (by default the sink's `stream`); its partition key is the destination's, else
//! the event key, else the source record's partition key; its explicit hash key, if any,
//! picks the shard. The payload is put byte-exact. Event properties and event time have no
//! place in a Kinesis record and are not written.
//!
//! A receipt resolves once Kinesis stored the record, or with the producer's error once it
//! gave up (record TTL expired, or an error waiting cannot heal); the pipeline then does
//! not checkpoint past the source record and reads it again.

use std::collections::HashMap;
use std::sync::Arc;

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::Mutex;

use super::{
    dead_letter, Acks, DeadLetter, Delivery, RecordContext, SinkError, SinkErrorKind, Target,
};
use crate::config::{AwsConfig, KinesisSinkConfig};
use crate::producer::{Producer, ProducerConfig, ProducerError, UserRecord};
use crate::wasm::bindings::{Destination, Event};
use crate::wasm::RecordFailure;

/// The producer settings of a Kinesis sink's section.
fn producer_config(c: &KinesisSinkConfig) -> ProducerConfig {
    ProducerConfig {
        aggregation: c.aggregation,
        aggregation_max_size: c.aggregation_max_size as usize,
        max_request_records: c.max_request_records,
        max_request_bytes: c.max_request_bytes as usize,
        max_buffered_time: c.max_buffered_time,
        rate_limit: c.rate_limit,
        record_ttl: c.record_ttl,
        max_connections: c.max_connections,
        request_timeout: c.request_timeout,
        max_outstanding_records: c.max_outstanding_records,
        max_outstanding_bytes: c.max_outstanding_bytes as usize,
        strict_ordering: c.strict_ordering,
        cbor: c.cbor,
        ..ProducerConfig::default()
    }
}

/// Whether a producer error can heal by sending again.
fn failure_kind(e: &ProducerError) -> SinkErrorKind {
    if e.is_permanent() {
        SinkErrorKind::Permanent
    } else {
        SinkErrorKind::Transient
    }
}

pub struct KinesisSink {
    name: String,
    config: KinesisSinkConfig,
    client: aws_sdk_kinesis::Client,
    producers: Mutex<HashMap<String, Arc<Producer>>>,
    metrics: Arc<crate::sinks::metrics::SinkMetrics>,
}

impl std::fmt::Debug for KinesisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisSink")
            .field("name", &self.name)
            .field("stream", &self.config.stream)
            .finish_non_exhaustive()
    }
}

impl KinesisSink {
    /// Starts the producer of the default stream, so a missing stream or a wrong endpoint
    /// is reported at start, naming the sink.
    pub async fn connect(
        name: &str,
        config: &KinesisSinkConfig,
        aws: &AwsConfig,
    ) -> anyhow::Result<Self> {
        let mut aws = aws.clone();
        if let Some(e) = &config.endpoint {
            aws.endpoints.kinesis = Some(e.clone());
        }
        if let Some(r) = &config.region {
            aws.region = Some(r.clone());
        }
        let sdk = crate::aws::sdk_config(&aws).await?;
        let client = crate::aws::kinesis(&sdk, &aws);
        let sink = Self {
            name: name.to_string(),
            config: config.clone(),
            client,
            producers: Mutex::new(HashMap::new()),
            metrics: Arc::new(crate::sinks::metrics::SinkMetrics::new(name)),
        };
        sink.producer(&config.stream)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(sink)
    }

    fn err(&self, stream: &str, message: String, kind: SinkErrorKind) -> SinkError {
        SinkError {
            sink: self.name.clone(),
            topic: stream.to_string(),
            message,
            kind,
        }
    }

    async fn producer(&self, stream: &str) -> Result<Arc<Producer>, SinkError> {
        let mut producers = self.producers.lock().await;
        if let Some(p) = producers.get(stream) {
            return Ok(p.clone());
        }
        let p = Producer::start(&self.client, stream, producer_config(&self.config))
            .await
            .map_err(|e| self.err(stream, e.to_string(), failure_kind(&e)))?;
        let p = Arc::new(p);
        producers.insert(stream.to_string(), p.clone());
        Ok(p)
    }

    /// Hands the records to the stream's producer in order (waiting while it is full); the
    /// receipt resolves once every one is stored, or with the first failure.
    async fn send_batch(
        &self,
        stream: &str,
        explicit_hash_key: Option<&str>,
        deliveries: Vec<Delivery<'_>>,
    ) -> Result<Acks, SinkError> {
        let n = deliveries.len();
        let producer = self
            .producer(stream)
            .await
            .inspect_err(|_| self.metrics.refused(0))?;
        let mut handles = Vec::with_capacity(n);
        for d in deliveries {
            let user = UserRecord {
                partition_key: d
                    .event
                    .key
                    .unwrap_or_else(|| d.record.partition_key.to_string()),
                explicit_hash_key: explicit_hash_key.map(str::to_string),
                data: d.event.payload,
            };
            match producer.put(user).await {
                Ok(h) => handles.push(h),
                Err(e) => {
                    self.metrics.refused(handles.len());
                    return Err(self.err(stream, e.to_string(), failure_kind(&e)));
                }
            }
        }
        let (sink, topic) = (self.name.clone(), stream.to_string());
        let (metrics, started) = (self.metrics.clone(), self.metrics.sent(n));
        Ok(async move {
            let mut r = Ok(());
            for h in handles {
                if let Err(e) = h.await {
                    // A record given up before its TTL ran out met an error waiting
                    // cannot heal (the stream is gone, access refused, record refused).
                    let kind = if e.expired {
                        SinkErrorKind::Transient
                    } else {
                        SinkErrorKind::Permanent
                    };
                    r = Err(SinkError {
                        sink,
                        topic,
                        message: e.to_string(),
                        kind,
                    });
                    break;
                }
            }
            metrics.acknowledged(n, started, r.is_ok());
            r
        }
        .boxed())
    }

    /// Flushes and stops every producer.
    async fn close_producers(&self) {
        let producers: Vec<_> = self.producers.lock().await.drain().collect();
        for (_, p) in producers {
            p.close().await;
        }
    }
}

impl super::Sink for KinesisSink {
    /// A stream name (not checked here: a stream that does not exist fails its first
    /// send, permanently), and an explicit hash key that is a 128-bit decimal.
    fn target(&self, name: &str, d: &Destination) -> Result<Target, String> {
        let topic = match &d.topic {
            Some(t) if !t.is_empty() => t.clone(),
            _ => self.config.stream.clone(),
        };
        let explicit_hash_key = match &d.explicit_hash_key {
            Some(e) => {
                crate::agg::parse_explicit_hash_key(e)
                    .map_err(|err| format!("route chose explicit hash key {e:?}: {err}"))?;
                Some(e.clone())
            }
            None => None,
        };
        Ok(Target {
            sink: name.to_string(),
            topic,
            explicit_hash_key,
        })
    }

    fn admit(&self, topic: &str, event: &Event, record_key: &str) -> Result<(), String> {
        let key = event.key.as_deref().unwrap_or(record_key);
        crate::kinesis_limits::check_record(key, event.payload.len())
            .map_err(|why| format!("stream {topic}: {why}"))
    }

    /// A Kinesis record has no properties: a JSON envelope with the original bytes, or
    /// without them when they would not fit.
    fn dead_letter(
        &self,
        failure: &RecordFailure,
        record: &RecordContext<'_>,
        data: &[u8],
    ) -> DeadLetter {
        let max = dead_letter::max_envelope_len(record.partition_key);
        let payload = dead_letter::envelope(failure, record, data, max);
        if payload.len() < data.len() {
            tracing::warn!(sequence = %record.sequence_number, bytes = data.len(),
                "dead letter too large for a Kinesis record with its envelope: sent without its data");
        }
        DeadLetter {
            event: Event {
                key: None,
                payload,
                properties: Vec::new(),
                event_time_millis: None,
            },
            extra: Vec::new(),
        }
    }

    fn ack_timeout(&self) -> Duration {
        self.config.ack_timeout()
    }

    fn send_all<'a>(
        &'a self,
        target: &'a Target,
        deliveries: Vec<Delivery<'a>>,
    ) -> BoxFuture<'a, Result<Acks, SinkError>> {
        let ehk = target.explicit_hash_key.as_deref();
        self.send_batch(&target.topic, ehk, deliveries).boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.close_producers().boxed()
    }
}
