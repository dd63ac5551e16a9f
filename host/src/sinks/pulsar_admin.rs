//! The one question the Pulsar sink asks the broker's admin REST API: does deduplication
//! apply to a topic? The topic's own policy decides when it has one, else its namespace's,
//! else the broker's `brokerDeduplicationEnabled`. Plain HTTP/1.0 GETs, one connection
//! each: this runs when a producer is created, not per message.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one admin request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the check could not answer.
#[derive(Debug, thiserror::Error)]
#[error("Pulsar admin {url}: {message}")]
pub struct AdminError {
    pub url: String,
    pub message: String,
}

/// A topic's tenant and namespace (`public/default` for `persistent://public/default/t`),
/// and its name within them; short names are in `public/default`.
pub fn namespace_of(topic: &str) -> (String, String) {
    let (persistence, rest) = topic.split_once("://").unwrap_or(("persistent", topic));
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [tenant, namespace, name] => (
            format!("{tenant}/{namespace}"),
            format!("{persistence}/{tenant}/{namespace}/{name}"),
        ),
        _ => (
            "public/default".to_string(),
            format!("{persistence}/public/default/{rest}"),
        ),
    }
}

/// Whether broker deduplication applies to `topic`, asked of the admin API at `admin_url`.
pub async fn deduplication_enabled(admin_url: &str, topic: &str) -> Result<bool, AdminError> {
    let (namespace, path) = namespace_of(topic);
    let topic_policy = get(
        admin_url,
        &format!("/admin/v2/{path}/deduplicationEnabled?applied=true"),
    )
    .await?;
    match topic_policy {
        (200, body) => return parse_bool(admin_url, &body),
        // The topic does not exist yet: it will be created with its namespace's policy.
        (404, _) => {}
        (status, body) => return Err(unexpected(admin_url, status, &body)),
    }
    match get(
        admin_url,
        &format!("/admin/v2/namespaces/{namespace}/deduplication"),
    )
    .await?
    {
        (200, body) if !body.trim().is_empty() => return parse_bool(admin_url, &body),
        // No namespace policy: the broker's setting applies.
        (200 | 204, _) => {}
        (status, body) => return Err(unexpected(admin_url, status, &body)),
    }
    match get(admin_url, "/admin/v2/brokers/configuration/runtime").await? {
        (200, body) => {
            let config: std::collections::HashMap<String, String> = serde_json::from_str(&body)
                .map_err(|e| AdminError {
                    url: admin_url.to_string(),
                    message: format!("the broker's runtime configuration is not a JSON map: {e}"),
                })?;
            Ok(config
                .get("brokerDeduplicationEnabled")
                .is_some_and(|v| v == "true"))
        }
        (status, body) => Err(unexpected(admin_url, status, &body)),
    }
}

fn parse_bool(url: &str, body: &str) -> Result<bool, AdminError> {
    match body.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(AdminError {
            url: url.to_string(),
            message: format!("expected true or false, got {other:?}"),
        }),
    }
}

fn unexpected(url: &str, status: u16, body: &str) -> AdminError {
    AdminError {
        url: url.to_string(),
        message: format!("HTTP {status}: {}", body.trim()),
    }
}

/// GET `path` on `base` (`http://host:port`): the status and the body.
async fn get(base: &str, path: &str) -> Result<(u16, String), AdminError> {
    let err = |message: String| AdminError {
        url: format!("{base}{path}"),
        message,
    };
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| err("only http:// admin URLs are supported".into()))?
        .trim_end_matches('/');
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| err(format!("no answer within {TIMEOUT:?}")))?
        .map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| err("the answer is not HTTP".into()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(format!("no status in {:?}", head.lines().next())))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_their_namespace() {
        assert_eq!(
            namespace_of("persistent://acme/orders/placed"),
            (
                "acme/orders".to_string(),
                "persistent/acme/orders/placed".to_string()
            )
        );
        assert_eq!(
            namespace_of("placed"),
            (
                "public/default".to_string(),
                "persistent/public/default/placed".to_string()
            )
        );
    }
}
