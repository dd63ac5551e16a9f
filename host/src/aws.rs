//! AWS clients from the config: region, credentials (default chain, static keys, profile,
//! assume-role), per-service endpoint overrides for local stacks and VPC endpoints, and an
//! HTTP proxy.
//!
//! Web identity (EKS service accounts) is part of the default chain: with
//! `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN` set, `type: default` assumes the role
//! with the token (its STS endpoint follows `AWS_ENDPOINT_URL_STS`).

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::config::{AwsConfig, Credentials};

/// The shared SDK configuration.
pub async fn sdk_config(aws: &AwsConfig) -> anyhow::Result<SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    // `app/shardline` in every request's user agent: CloudTrail shows which calls were
    // Shardline's, and so does the test suite's IAM coverage check (deploy/iam/).
    if let Ok(name) = aws_config::AppName::new("shardline") {
        loader = loader.app_name(name);
    }
    if let Some(p) = &aws.proxy {
        loader = loader.http_client(proxied_http_client(p)?);
    }
    if let Some(r) = &aws.region {
        loader = loader.region(Region::new(r.clone()));
    }
    match &aws.credentials {
        Credentials::Default | Credentials::AssumeRole { .. } => {}
        Credentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                access_key_id.clone(),
                secret_access_key.clone(),
                session_token.clone(),
                None,
                "shardline-config",
            ));
        }
        Credentials::Profile { name, file: None } => loader = loader.profile_name(name),
        Credentials::Profile {
            name,
            file: Some(file),
        } => {
            use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
            let files = EnvConfigFiles::builder()
                .with_file(EnvConfigFileKind::Credentials, file)
                .build();
            let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_files(files)
                .profile_name(name)
                .build();
            loader = loader.credentials_provider(provider);
        }
    }
    let base = loader.load().await;
    if base.region().is_none() {
        anyhow::bail!(
            "no AWS region: set aws.region in the config or AWS_REGION in the environment"
        );
    }
    if let Credentials::AssumeRole {
        role_arn,
        session_name,
        external_id,
        duration,
    } = &aws.credentials
    {
        let mut b = aws_config::sts::AssumeRoleProvider::builder(role_arn.clone())
            .session_name(session_name.clone().unwrap_or_else(|| "shardline".into()));
        if let Some(id) = external_id {
            b = b.external_id(id.clone());
        }
        if let Some(d) = duration {
            b = b.session_length(*d);
        }
        // The STS client is built from this config: an endpoint set here reaches STS only.
        let sts_conf = match &aws.endpoints.sts {
            Some(e) => base.to_builder().endpoint_url(e).build(),
            None => base.clone(),
        };
        let provider = b.configure(&sts_conf).build().await;
        return Ok(base
            .into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build());
    }
    Ok(base)
}

/// An HTTPS client (rustls, as the SDK's default) that sends every request through the
/// configured proxy: plain HTTP as absolute-URI requests, HTTPS through CONNECT.
fn proxied_http_client(
    p: &crate::config::ProxyConfig,
) -> anyhow::Result<aws_smithy_runtime_api::client::http::SharedHttpClient> {
    use aws_smithy_http_client::{proxy::ProxyConfig, tls, Builder, Connector};
    let mut proxy = ProxyConfig::all(p.url.as_str())
        .map_err(|e| anyhow::anyhow!("aws.proxy.url {:?}: {e}", p.url))?;
    match (&p.username, &p.password) {
        (Some(u), Some(pw)) => proxy = proxy.with_basic_auth(u, pw),
        (None, None) => {}
        _ => anyhow::bail!("aws.proxy: username and password go together"),
    }
    if let Some(rules) = &p.no_proxy {
        proxy = proxy.no_proxy(rules);
    }
    Ok(
        Builder::new().build_with_connector_fn(move |settings, components| {
            let mut b = Connector::builder().proxy_config(proxy.clone());
            if let Some(s) = settings {
                b = b.connector_settings(s.clone());
            }
            if let Some(sleep) = components.and_then(|c| c.sleep_impl()) {
                b = b.sleep_impl(sleep);
            }
            b.tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build()
        }),
    )
}

pub fn kinesis(sdk: &SdkConfig, aws: &AwsConfig) -> aws_sdk_kinesis::Client {
    let mut b = aws_sdk_kinesis::config::Builder::from(sdk);
    if let Some(e) = &aws.endpoints.kinesis {
        b = b.endpoint_url(e);
    }
    aws_sdk_kinesis::Client::from_conf(b.build())
}

pub fn dynamodb(sdk: &SdkConfig, aws: &AwsConfig) -> aws_sdk_dynamodb::Client {
    let mut b = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(e) = &aws.endpoints.dynamodb {
        b = b.endpoint_url(e);
    }
    aws_sdk_dynamodb::Client::from_conf(b.build())
}

/// An SDK error as a person reads it: `Code: message` for a service error, the whole cause
/// chain otherwise (connection refused, timeouts, …).
pub fn describe<E, R>(e: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(se) => format!(
            "{}: {}",
            se.code().unwrap_or("error"),
            se.message().unwrap_or_default()
        ),
        None => aws_smithy_types::error::display::DisplayErrorContext(e).to_string(),
    }
}

/// Whether a Kinesis error is one no retry can fix: the stream (or consumer) does not
/// exist, access is refused, or the request itself is invalid.
pub fn is_permanent<E, R>(e: &aws_sdk_kinesis::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|code| {
            matches!(
                code,
                "ResourceNotFoundException"
                    | "AccessDeniedException"
                    | "InvalidArgumentException"
                    | "ValidationException"
                    | "UnrecognizedClientException"
                    | "KMSAccessDeniedException"
                    | "KMSDisabledException"
                    | "KMSNotFoundException"
                    | "KMSInvalidStateException"
            )
        })
}

/// ListShards failed.
#[derive(Debug, thiserror::Error)]
#[error("stream {stream}: ListShards failed: {message}")]
pub struct ListShardsError {
    pub stream: String,
    pub message: String,
    /// Whether retrying cannot help (the stream does not exist, access is refused).
    pub permanent: bool,
}

/// Every shard of the stream, following `NextToken` (the consumer's shard sync and the
/// producer's shard map both start from it).
pub async fn list_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<aws_sdk_kinesis::types::Shard>, ListShardsError> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match &token {
            // With a token, the stream name must not be sent again.
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let out = req.send().await.map_err(|e| ListShardsError {
            stream: stream.to_string(),
            message: describe(&e),
            permanent: is_permanent(&e),
        })?;
        shards.extend(out.shards.unwrap_or_default());
        match out.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    Ok(shards)
}
