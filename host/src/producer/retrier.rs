//! The retrier decides what happens to a Kinesis record PutRecords did not store: retry it
//! after an exponential backoff with jitter, or give up — when the error cannot heal by
//! waiting, or when the record's time to live (KPL `RecordTtl`, default 30 s) would run out
//! before the next attempt. Records are never dropped silently: giving up fails each user
//! record with the error that ended it.

use std::time::Duration;

use rand::Rng;

/// Why a put attempt failed, for the decision and for the person reading the final error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// A record-level error code in a PutRecords answer (`ProvisionedThroughputExceededException`,
    /// `InternalFailure`, `KMSThrottlingException`, …), with its message.
    Record { code: String, message: String },
    /// The whole request failed: a service error code (`LimitExceededException`,
    /// `ResourceNotFoundException`, …) or a transport problem (code `None`).
    Request {
        code: Option<String>,
        message: String,
    },
}

impl AttemptError {
    pub fn code(&self) -> Option<&str> {
        match self {
            AttemptError::Record { code, .. } => Some(code),
            AttemptError::Request { code, .. } => code.as_deref(),
        }
    }

    /// Throttling by Kinesis: the shard (or account) limit was hit.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self.code(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "LimitExceededException"
                    | "ThrottlingException"
                    | "KMSThrottlingException"
            )
        )
    }

    /// Errors that waiting cannot heal: the request itself is wrong, the stream is not
    /// there, or the caller may not write to it. Everything else (throttling, internal
    /// failures, timeouts, connection errors, KMS unavailability) is retried until the TTL.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.code(),
            Some(
                "ResourceNotFoundException"
                    | "InvalidArgumentException"
                    | "ValidationException"
                    | "AccessDeniedException"
                    | "UnrecognizedClientException"
                    | "KMSAccessDeniedException"
                    | "KMSDisabledException"
                    | "KMSNotFoundException"
                    | "KMSInvalidStateException"
                    | "KMSOptInRequired"
            )
        )
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Record { code, message } if message.is_empty() => write!(f, "{code}"),
            AttemptError::Record { code, message } => write!(f, "{code}: {message}"),
            AttemptError::Request {
                code: Some(code),
                message,
            } => write!(f, "PutRecords failed: {code}: {message}"),
            AttemptError::Request {
                code: None,
                message,
            } => write!(f, "PutRecords failed: {message}"),
        }
    }
}

/// Exponential backoff with "equal jitter": attempt `n` (from 1) waits between half and all
/// of `min(max, base * 2^(n-1))`. The random half keeps many producers throttled at the same
/// moment from retrying in lockstep; the fixed half keeps each one backing off.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let full = self.base.saturating_mul(1u32 << exp).min(self.max);
        let half = full / 2;
        half + full.saturating_sub(half).mul_f64(rng.random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=30 {
            let full = Duration::from_millis(100 * (1u64 << (attempt - 1).min(20)))
                .min(Duration::from_secs(2));
            let mut seen = Vec::new();
            for _ in 0..200 {
                let d = b.delay(attempt, &mut rng);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
                seen.push(d);
            }
            seen.sort();
            seen.dedup();
            assert!(seen.len() > 100, "jitter spreads the delays");
        }
    }

    #[test]
    fn classification() {
        let rec = |c: &str| AttemptError::Record {
            code: c.into(),
            message: String::new(),
        };
        assert!(rec("ProvisionedThroughputExceededException").is_throttling());
        assert!(!rec("ProvisionedThroughputExceededException").is_permanent());
        assert!(!rec("InternalFailure").is_permanent());
        assert!(rec("KMSAccessDeniedException").is_permanent());
        let req = |c: Option<&str>| AttemptError::Request {
            code: c.map(Into::into),
            message: "m".into(),
        };
        assert!(req(Some("ResourceNotFoundException")).is_permanent());
        assert!(req(Some("LimitExceededException")).is_throttling());
        assert!(!req(None).is_permanent());
        assert_eq!(
            req(None).to_string(),
            "PutRecords failed: m",
            "transport errors read as such"
        );
    }
}
