//! The exporters a command runs, as the config's `metrics` section says: the CloudWatch
//! publisher and the HTTP endpoint (Prometheus, health, readiness). Stopping them flushes
//! CloudWatch one last time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The longest the last CloudWatch flush may hold up the end of a command.
const FINAL_FLUSH_LIMIT: Duration = Duration::from_secs(15);

/// Running exporters.
#[derive(Debug)]
pub struct Exporters {
    stop: CancellationToken,
    cloudwatch: Option<JoinHandle<()>>,
    /// Where the HTTP endpoint listens.
    pub listening: Option<SocketAddr>,
}

impl Exporters {
    /// Sets the metrics level and starts what the config asks for.
    pub async fn start(
        config: &Config,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, crate::health::ListenError> {
        let m = &config.metrics;
        let registry = super::global();
        registry.set_level(m.level);
        let stop = CancellationToken::new();
        let listening = match m.listen_addr() {
            Some(addr) => {
                let page = || {
                    (
                        super::prometheus::CONTENT_TYPE,
                        super::prometheus::render(super::global()),
                    )
                };
                let bound = crate::health::serve(addr, page, stop.clone()).await?;
                tracing::info!(
                    component = "metrics",
                    "metrics endpoint listening on http://{bound} (/metrics, /health, /ready)"
                );
                Some(bound)
            }
            None => None,
        };
        let cloudwatch = (m.cloudwatch && m.level != super::Level::None).then(|| {
            let client = super::cloudwatch::client(sdk, &config.aws);
            let exporter =
                super::cloudwatch::Exporter::new(client, config.metrics_namespace(), registry);
            tracing::info!(component = "metrics", namespace = %config.metrics_namespace(),
                interval = ?m.flush_interval, level = ?m.level, "publishing metrics to CloudWatch");
            tokio::spawn(exporter.run(m.flush_interval, stop.clone()))
        });
        Ok(Self {
            stop,
            cloudwatch,
            listening,
        })
    }

    /// Flushes CloudWatch a last time (bounded) and closes the endpoint.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Some(task) = self.cloudwatch {
            if tokio::time::timeout(FINAL_FLUSH_LIMIT, task).await.is_err() {
                tracing::warn!(
                    component = "metrics",
                    "the last CloudWatch flush did not finish in {FINAL_FLUSH_LIMIT:?}"
                );
            }
        }
    }
}
