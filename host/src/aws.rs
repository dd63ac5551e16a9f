//! AWS clients from the config: region, credentials (default chain, static keys, profile,
//! assume-role) and per-service endpoint overrides for local stacks and VPC endpoints.

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::config::{AwsConfig, Credentials};

/// The shared SDK configuration.
pub async fn sdk_config(aws: &AwsConfig) -> anyhow::Result<SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
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
        Credentials::Profile { name } => loader = loader.profile_name(name),
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
    } = &aws.credentials
    {
        let mut b = aws_config::sts::AssumeRoleProvider::builder(role_arn.clone())
            .session_name(session_name.clone().unwrap_or_else(|| "shardline".into()));
        if let Some(id) = external_id {
            b = b.external_id(id.clone());
        }
        let provider = b.configure(&base).build().await;
        return Ok(base
            .into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build());
    }
    Ok(base)
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
