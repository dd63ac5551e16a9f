//! Pre-flight checks: whether what a config names exists, by reading only — nothing is
//! created or written. The source streams (`DescribeStreamSummary`), every Kinesis sink's
//! stream, and the namespace of every Pulsar topic the config names (default topics and the
//! dead-letter topic, through the broker's namespace listing).
//!
//! `run` checks the source streams before it creates the lease table, so a typo in a
//! stream name leaves nothing behind; `validate --check-services` checks everything.

use std::collections::BTreeSet;

use crate::config::{pulsar_topic, AwsConfig, Config};

/// A named thing the config refers to that is missing or unreachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The config key that names it (`source.stream`, `sinks.out.pulsar.topic`, …).
    pub key: String,
    pub message: String,
    /// The service answered that it does not exist (not merely unreachable).
    pub not_found: bool,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Each source stream exists and can be described.
pub async fn source_streams(
    kinesis: &aws_sdk_kinesis::Client,
    config: &Config,
) -> Result<(), Vec<Missing>> {
    let key = if config.source.stream.is_some() {
        "source.stream"
    } else {
        "source.streams"
    };
    let mut missing = Vec::new();
    for spec in config.streams() {
        if let Err((message, not_found)) = stream_exists(kinesis, &spec.name).await {
            missing.push(Missing {
                key: key.to_string(),
                message,
                not_found,
            });
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// `Err((why, not_found))`.
async fn stream_exists(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<(), (String, bool)> {
    match kinesis
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception()) =>
        {
            Err((format!("Kinesis stream {stream:?} does not exist"), true))
        }
        Err(e) => Err((
            format!(
                "cannot describe Kinesis stream {stream:?}: {}",
                crate::aws::describe(&e)
            ),
            false,
        )),
    }
}

/// Everything the config names: source streams, Kinesis sink streams, Pulsar namespaces.
pub async fn services(config: &Config, sdk: &aws_config::SdkConfig) -> Vec<Missing> {
    let kinesis = crate::aws::kinesis(sdk, &config.aws);
    let mut missing = source_streams(&kinesis, config)
        .await
        .err()
        .unwrap_or_default();

    for (name, sink) in &config.sinks {
        if let Some(k) = &sink.kinesis {
            let mut aws: AwsConfig = config.aws.clone();
            if let Some(e) = &k.endpoint {
                aws.endpoints.kinesis = Some(e.clone());
            }
            if let Some(r) = &k.region {
                aws.region = Some(r.clone());
            }
            let client = match crate::aws::sdk_config(&aws).await {
                Ok(sdk) => crate::aws::kinesis(&sdk, &aws),
                Err(e) => {
                    missing.push(Missing {
                        key: format!("sinks.{name}.kinesis"),
                        message: format!("cannot set up the AWS client: {e}"),
                        not_found: false,
                    });
                    continue;
                }
            };
            if let Err((message, not_found)) = stream_exists(&client, &k.stream).await {
                missing.push(Missing {
                    key: format!("sinks.{name}.kinesis.stream"),
                    message,
                    not_found,
                });
            }
        }
    }

    // Pulsar: the namespace of every topic the config names, per service URL.
    let mut topics: Vec<(String, &str, &str)> = config
        .sinks
        .iter()
        .filter_map(|(name, s)| {
            s.pulsar.as_ref().map(|p| {
                (
                    format!("sinks.{name}.pulsar.topic"),
                    p.service_url.as_str(),
                    p.topic.as_str(),
                )
            })
        })
        .collect();
    if let Some(dl) = &config.errors.dead_letter {
        let sink = dl.sink.as_deref().unwrap_or(config.default_sink_name());
        if let Some(p) = config.sinks.get(sink).and_then(|s| s.pulsar.as_ref()) {
            topics.push((
                "errors.dead_letter.topic".into(),
                p.service_url.as_str(),
                dl.topic.as_str(),
            ));
        }
    }
    let urls: BTreeSet<&str> = topics.iter().map(|(_, url, _)| *url).collect();
    for url in urls {
        let client = match pulsar::Pulsar::builder(url, pulsar::TokioExecutor)
            .build()
            .await
        {
            Ok(c) => c,
            Err(e) => {
                for (key, _, _) in topics.iter().filter(|(_, u, _)| *u == url) {
                    missing.push(Missing {
                        key: key.clone(),
                        message: format!("cannot connect to Pulsar at {url}: {e}"),
                        not_found: false,
                    });
                }
                continue;
            }
        };
        for (key, _, topic) in topics.iter().filter(|(_, u, _)| *u == url) {
            // The syntax was checked with the config; only valid names get here.
            let Some(namespace) = pulsar_topic::namespace(topic) else {
                continue;
            };
            let listed = client
                .get_topics_of_namespace(
                    namespace.clone(),
                    pulsar::message::proto::command_get_topics_of_namespace::Mode::All,
                )
                .await;
            if let Err(e) = listed {
                missing.push(Missing {
                    key: key.clone(),
                    message: format!(
                        "topic {topic:?}: namespace {namespace} cannot be used on {url}: {e} \
                         (create it with `pulsar-admin namespaces create {namespace}`)"
                    ),
                    not_found: true,
                });
            }
        }
    }
    missing
}
