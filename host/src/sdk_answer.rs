//! AWS calls whose answer Shardline reads with a deserializer of its own instead of the
//! SDK's (GetRecords bodies read in one pass, PutRecords answers in CBOR), everything else
//! about the call — endpoint, signing, retries, errors it hands back — left to the SDK.
//! For unit tests, an HTTP client that gives every call the same answer.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, Error, Output,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin;
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use aws_smithy_types::config_bag::{ConfigBag, FrozenLayer};

/// The SDK's own response deserializer of an operation, for a deserializer here to hand
/// what it does not read itself; made once, in a `static LazyLock`.
#[derive(Debug)]
pub(crate) struct SdkDeserializer(FrozenLayer);

impl SdkDeserializer {
    /// The deserializer of `operation` (e.g. `GetRecords::new()`).
    pub(crate) fn of(operation: impl RuntimePlugin) -> Self {
        Self(operation.config().expect("an SDK operation has settings"))
    }
}

impl DeserializeResponse for SdkDeserializer {
    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<Error>> {
        self.0
            .load::<SharedResponseDeserializer>()
            .expect("an SDK operation names its response deserializer")
            .deserialize_nonstreaming_with_config(response, cfg)
    }
}

/// An interceptor that puts `D` in place of the SDK's deserializer for the call it is given
/// to (`customize().interceptor(ReadsAnswer(…))`).
#[derive(Debug)]
pub(crate) struct ReadsAnswer<D>(pub(crate) D);

impl<D> Intercept for ReadsAnswer<D>
where
    D: DeserializeResponse + Clone + 'static,
{
    fn name(&self) -> &'static str {
        "shardline::sdk_answer::ReadsAnswer"
    }

    fn modify_before_deserialization(
        &self,
        _: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The layer the interceptors write to is read before the operation's own.
        cfg.interceptor_state()
            .store_put(SharedResponseDeserializer::new(self.0.clone()));
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod canned {
    //! A Kinesis client whose every call gets one answer, without a network.

    use std::sync::{Arc, Mutex};

    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::body::SdkBody;

    /// The answer: status, content type and body. Keeps each request's content type.
    #[derive(Debug, Clone)]
    pub(crate) struct Answers {
        pub(crate) status: u16,
        pub(crate) content_type: &'static str,
        pub(crate) body: Vec<u8>,
        pub(crate) sent: Arc<Mutex<Vec<String>>>,
    }

    impl Answers {
        pub(crate) fn new(
            status: u16,
            content_type: &'static str,
            body: impl Into<Vec<u8>>,
        ) -> Self {
            Self {
                status,
                content_type,
                body: body.into(),
                sent: Arc::default(),
            }
        }

        /// A client (no retries) that gets this answer.
        pub(crate) fn client(&self) -> aws_sdk_kinesis::Client {
            let conf = aws_sdk_kinesis::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
                .endpoint_url("http://127.0.0.1:9")
                .http_client(self.clone())
                .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
                .build();
            aws_sdk_kinesis::Client::from_conf(conf)
        }
    }

    impl HttpConnector for Answers {
        fn call(&self, req: HttpRequest) -> HttpConnectorFuture {
            let sent = req.headers().get("content-type").unwrap_or_default();
            if let Ok(mut all) = self.sent.lock() {
                all.push(sent.to_string());
            }
            let mut response = HttpResponse::new(
                self.status.try_into().expect("a status"),
                SdkBody::from(self.body.clone()),
            );
            response
                .headers_mut()
                .insert("Content-Type", self.content_type);
            HttpConnectorFuture::ready(Ok(response))
        }
    }

    impl HttpClient for Answers {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }
}
