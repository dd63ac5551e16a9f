//! `aws:` — how to reach AWS (or a local stack): region, endpoints, proxy, credentials.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units;

/// How to reach AWS (or a local stack).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region; when absent the default chain decides (AWS_REGION, profile).
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub credentials: Credentials,
    #[serde(default)]
    pub endpoints: Endpoints,
    /// An HTTP proxy for every AWS call (Kinesis, DynamoDB, CloudWatch, STS).
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
}

/// `aws.proxy`: requests to AWS go through this HTTP proxy (HTTPS is tunnelled with
/// CONNECT). Without it, no proxy is used, whatever HTTP(S)_PROXY say.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `http://host:port`.
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Hosts reached directly, comma-separated (`localhost,*.internal`), as NO_PROXY.
    #[serde(default)]
    pub no_proxy: Option<String>,
}

impl fmt::Debug for ProxyConfig {
    /// The password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// Where credentials come from. In YAML: `type: default | static | profile | assume_role`
/// and the keys that type uses.
#[derive(Clone, Default, Deserialize)]
#[serde(try_from = "CredentialsYaml")]
pub enum Credentials {
    /// The AWS default chain: environment, profile, web identity, container, instance.
    #[default]
    Default,
    /// Fixed keys (prefer the default chain outside tests).
    Static {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    /// A named profile of ~/.aws/config and ~/.aws/credentials, or of `file` (a
    /// credentials-format file, as the Java SDK's `ProfileCredentialsProvider(path, name)`).
    Profile { name: String, file: Option<PathBuf> },
    /// Assume a role with credentials from the default chain (web identity included:
    /// AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN are part of that chain).
    AssumeRole {
        role_arn: String,
        session_name: Option<String>,
        external_id: Option<String>,
        /// Session length (STS `DurationSeconds`, 15m to 12h); STS's default (1h) when absent.
        duration: Option<Duration>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum CredentialsType {
    Default,
    Static,
    Profile,
    AssumeRole,
}

/// The YAML shape of `aws.credentials`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsYaml {
    #[serde(rename = "type")]
    kind: CredentialsType,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    secret_access_key: Option<String>,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    role_arn: Option<String>,
    #[serde(default)]
    session_name: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default, deserialize_with = "units::opt_duration")]
    duration: Option<Duration>,
}

impl TryFrom<CredentialsYaml> for Credentials {
    type Error = String;

    fn try_from(c: CredentialsYaml) -> Result<Self, String> {
        let (kind, used): (&str, &[&str]) = match c.kind {
            CredentialsType::Default => ("default", &[]),
            CredentialsType::Static => (
                "static",
                &["access_key_id", "secret_access_key", "session_token"],
            ),
            CredentialsType::Profile => ("profile", &["profile", "file"]),
            CredentialsType::AssumeRole => (
                "assume_role",
                &["role_arn", "session_name", "external_id", "duration"],
            ),
        };
        let given = [
            ("access_key_id", c.access_key_id.is_some()),
            ("secret_access_key", c.secret_access_key.is_some()),
            ("session_token", c.session_token.is_some()),
            ("profile", c.profile.is_some()),
            ("file", c.file.is_some()),
            ("role_arn", c.role_arn.is_some()),
            ("session_name", c.session_name.is_some()),
            ("external_id", c.external_id.is_some()),
            ("duration", c.duration.is_some()),
        ];
        if let Some((k, _)) = given.iter().find(|(k, set)| *set && !used.contains(k)) {
            return Err(format!("credentials of type {kind} do not use {k}"));
        }
        let need = |v: Option<String>, k: &str| {
            v.ok_or_else(|| format!("credentials of type {kind} need {k}"))
        };
        Ok(match c.kind {
            CredentialsType::Default => Credentials::Default,
            CredentialsType::Static => Credentials::Static {
                access_key_id: need(c.access_key_id, "access_key_id")?,
                secret_access_key: need(c.secret_access_key, "secret_access_key")?,
                session_token: c.session_token,
            },
            CredentialsType::Profile => Credentials::Profile {
                name: need(c.profile, "profile")?,
                file: c.file,
            },
            CredentialsType::AssumeRole => {
                if let Some(d) = c.duration {
                    if d < Duration::from_secs(900) || d > Duration::from_secs(12 * 3600) {
                        return Err(format!(
                            "credentials of type assume_role need a duration between 15m and 12h (STS limits), got {}",
                            humantime::format_duration(d)
                        ));
                    }
                }
                Credentials::AssumeRole {
                    role_arn: need(c.role_arn, "role_arn")?,
                    session_name: c.session_name,
                    external_id: c.external_id,
                    duration: c.duration,
                }
            }
        })
    }
}

impl fmt::Debug for Credentials {
    /// Secrets never reach a log, not even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("Default"),
            Self::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .field("session_token", &"<redacted>")
                .finish(),
            Self::Profile { name, file } => f
                .debug_struct("Profile")
                .field("name", name)
                .field("file", file)
                .finish(),
            Self::AssumeRole {
                role_arn,
                session_name,
                external_id,
                duration,
            } => f
                .debug_struct("AssumeRole")
                .field("role_arn", role_arn)
                .field("session_name", session_name)
                .field("external_id", &external_id.as_ref().map(|_| "<redacted>"))
                .field("duration", duration)
                .finish(),
        }
    }
}

/// Endpoint overrides, for local stacks or VPC endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    #[serde(default)]
    pub kinesis: Option<String>,
    #[serde(default)]
    pub dynamodb: Option<String>,
    #[serde(default)]
    pub cloudwatch: Option<String>,
    /// STS, for `assume_role` (the default chain's web identity reads AWS_ENDPOINT_URL_STS).
    #[serde(default)]
    pub sts: Option<String>,
}
