//! Consumer registration (the KCL's fan-out consumer registration): the application's
//! enhanced fan-out consumer on a stream is described when it exists, registered when it
//! does not, and waited for until it is ACTIVE. Workers of one application share it; a
//! worker that finds another one registering it waits for the same consumer. A consumer
//! that disappears while in use (deregistered by hand, or by the last worker of an
//! application shutting down as another starts) is registered again.

use std::time::Duration;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ConsumerStatus;
use aws_sdk_kinesis::Client;
use rand::Rng;
use tokio::time::Instant;

/// How long a consumer may take to become ACTIVE before the worker gives up (AWS takes
/// seconds; a stuck CREATING consumer is an operator's problem to see).
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Why the consumer cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("fan-out consumer {consumer} of stream {stream}: {operation} failed: {message}")]
pub struct RegistrationError {
    pub stream: String,
    pub consumer: String,
    pub operation: &'static str,
    pub message: String,
}

/// The application's consumer on one stream, with its ARN once known.
#[derive(Debug)]
pub struct ConsumerRegistration {
    client: Client,
    stream: String,
    name: String,
    arn: tokio::sync::Mutex<Option<String>>,
}

enum Attempt {
    Retry(String),
    Fatal(&'static str, String),
}

impl ConsumerRegistration {
    pub fn new(client: Client, stream: &str, name: &str) -> Self {
        Self {
            client,
            stream: stream.to_string(),
            name: name.to_string(),
            arn: tokio::sync::Mutex::new(None),
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The consumer's ARN, registering it and waiting until it is ACTIVE if needed.
    pub async fn arn(&self) -> Result<String, RegistrationError> {
        let mut arn = self.arn.lock().await;
        if let Some(a) = arn.as_ref() {
            return Ok(a.clone());
        }
        let a = self.ensure().await?;
        *arn = Some(a.clone());
        Ok(a)
    }

    /// After the service said `stale` does not exist: forgets it and registers again
    /// (once, however many shards noticed).
    pub async fn refresh(&self, stale: &str) -> Result<String, RegistrationError> {
        {
            let mut arn = self.arn.lock().await;
            if arn.as_deref() == Some(stale) {
                *arn = None;
            }
        }
        self.arn().await
    }

    async fn ensure(&self) -> Result<String, RegistrationError> {
        let stream_arn = self.stream_arn().await?;
        let deadline = Instant::now() + ACTIVE_TIMEOUT;
        let mut wait = Duration::from_millis(200);
        let mut registered = false;
        loop {
            match self.step(&stream_arn, &mut registered).await {
                Ok(Some(arn)) => {
                    tracing::info!(stream = %self.stream, consumer = %self.name, %arn, "fan-out consumer active");
                    return Ok(arn);
                }
                Ok(None) => {}
                Err(Attempt::Fatal(operation, message)) => {
                    return Err(self.error(operation, message))
                }
                Err(Attempt::Retry(why)) => {
                    tracing::warn!(stream = %self.stream, consumer = %self.name, error = %why, "fan-out consumer not ready; retrying")
                }
            }
            if Instant::now() + wait > deadline {
                return Err(self.error(
                    "DescribeStreamConsumer",
                    format!("not ACTIVE after {}s", ACTIVE_TIMEOUT.as_secs()),
                ));
            }
            let jitter = rand::rng().random_range(0.75..1.25);
            tokio::time::sleep(wait.mul_f64(jitter)).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    /// One look at the consumer: `Some(arn)` when ACTIVE; registers it when missing.
    async fn step(
        &self,
        stream_arn: &str,
        registered: &mut bool,
    ) -> Result<Option<String>, Attempt> {
        let described = self
            .client
            .describe_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(&self.name)
            .send()
            .await;
        match described {
            Ok(out) => {
                let Some(d) = out.consumer_description else {
                    return Err(Attempt::Retry(
                        "no consumer description in the answer".into(),
                    ));
                };
                match d.consumer_status {
                    ConsumerStatus::Active => Ok(Some(d.consumer_arn)),
                    // CREATING: wait. DELETING: wait until it is gone, then register anew.
                    _ => Ok(None),
                }
            }
            Err(e) => match e.as_service_error().and_then(|s| s.code()) {
                Some("ResourceNotFoundException") => {
                    if *registered {
                        // Registered but not visible yet (eventual consistency).
                        return Ok(None);
                    }
                    self.register(stream_arn).await?;
                    *registered = true;
                    Ok(None)
                }
                Some("AccessDeniedException") => Err(Attempt::Fatal(
                    "DescribeStreamConsumer",
                    crate::aws::describe(&e),
                )),
                _ => Err(Attempt::Retry(crate::aws::describe(&e))),
            },
        }
    }

    async fn register(&self, stream_arn: &str) -> Result<(), Attempt> {
        tracing::info!(stream = %self.stream, consumer = %self.name, "registering the fan-out consumer");
        let r = self
            .client
            .register_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(&self.name)
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error().and_then(|s| s.code()) {
                // Another worker registers it right now: wait for the same consumer.
                Some("ResourceInUseException") => Ok(()),
                Some("LimitExceededException") => Err(Attempt::Retry(crate::aws::describe(&e))),
                Some(
                    "AccessDeniedException"
                    | "InvalidArgumentException"
                    | "ResourceNotFoundException",
                ) => Err(Attempt::Fatal(
                    "RegisterStreamConsumer",
                    crate::aws::describe(&e),
                )),
                _ => Err(Attempt::Retry(crate::aws::describe(&e))),
            },
        }
    }

    async fn stream_arn(&self) -> Result<String, RegistrationError> {
        stream_arn(&self.client, &self.stream)
            .await
            .map_err(|m| self.error("DescribeStreamSummary", m))
    }

    fn error(&self, operation: &'static str, message: String) -> RegistrationError {
        RegistrationError {
            stream: self.stream.clone(),
            consumer: self.name.clone(),
            operation,
            message,
        }
    }
}

async fn stream_arn(client: &Client, stream: &str) -> Result<String, String> {
    let out = client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| crate::aws::describe(&e))?;
    out.stream_description_summary
        .map(|d| d.stream_arn)
        .ok_or_else(|| "no stream description in the answer".to_string())
}

/// A consumer registered on a stream, as `shardline fanout list` shows it.
#[derive(Debug, Clone)]
pub struct RegisteredConsumer {
    pub name: String,
    pub arn: String,
    pub status: String,
    pub created: Option<String>,
}

/// Every consumer registered on `stream` (all applications).
pub async fn list(
    client: &Client,
    stream: &str,
) -> Result<Vec<RegisteredConsumer>, RegistrationError> {
    let err = |operation, message| RegistrationError {
        stream: stream.to_string(),
        consumer: "*".into(),
        operation,
        message,
    };
    let arn = stream_arn(client, stream)
        .await
        .map_err(|m| err("DescribeStreamSummary", m))?;
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = client.list_stream_consumers().stream_arn(&arn);
        if let Some(t) = &token {
            req = req.next_token(t);
        }
        let page = req
            .send()
            .await
            .map_err(|e| err("ListStreamConsumers", crate::aws::describe(&e)))?;
        for c in page.consumers.unwrap_or_default() {
            out.push(RegisteredConsumer {
                name: c.consumer_name,
                arn: c.consumer_arn,
                status: c.consumer_status.as_str().to_string(),
                created: c
                    .consumer_creation_timestamp
                    .fmt(aws_smithy_types::date_time::Format::DateTime)
                    .ok(),
            });
        }
        token = page.next_token;
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Deregisters the consumer `name` of `stream`. `Ok(false)` when there was none.
pub async fn deregister(
    client: &Client,
    stream: &str,
    name: &str,
) -> Result<bool, RegistrationError> {
    let err = |operation, message| RegistrationError {
        stream: stream.to_string(),
        consumer: name.to_string(),
        operation,
        message,
    };
    let arn = stream_arn(client, stream)
        .await
        .map_err(|m| err("DescribeStreamSummary", m))?;
    match client
        .deregister_stream_consumer()
        .stream_arn(arn)
        .consumer_name(name)
        .send()
        .await
    {
        Ok(_) => {
            tracing::info!(%stream, consumer = %name, "fan-out consumer deregistered");
            Ok(true)
        }
        Err(e)
            if e.as_service_error().and_then(|s| s.code()) == Some("ResourceNotFoundException") =>
        {
            Ok(false)
        }
        Err(e) => Err(err("DeregisterStreamConsumer", crate::aws::describe(&e))),
    }
}
