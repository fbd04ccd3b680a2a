//! `request.*` of a network sink: concurrency, timeout, and retries with
//! exponential backoff and full jitter (Vector's names and defaults), plus
//! the HTTP `Retry-After` header a receiver may send with 429 or 503.

use serde::Deserialize;
use std::time::Duration;

/// `[sinks.<id>.request]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Seconds a request may take, connection included.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Attempts per event before it goes to the dead-letter file; the
    /// default retries for as long as it takes (nothing is lost).
    #[serde(default = "default_attempts")]
    pub retry_attempts: u64,
    /// First backoff, doubled per attempt.
    #[serde(default = "default_initial_backoff")]
    pub retry_initial_backoff_secs: f64,
    /// Longest backoff (and the longest `Retry-After` honored).
    #[serde(default = "default_max_duration")]
    pub retry_max_duration_secs: f64,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            concurrency: default_concurrency(),
            timeout_secs: default_timeout(),
            retry_attempts: default_attempts(),
            retry_initial_backoff_secs: default_initial_backoff(),
            retry_max_duration_secs: default_max_duration(),
        }
    }
}

fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> f64 {
    60.0
}
fn default_attempts() -> u64 {
    u64::MAX
}
fn default_initial_backoff() -> f64 {
    1.0
}
fn default_max_duration() -> f64 {
    30.0
}

impl RequestConfig {
    /// Rejects values that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("request.concurrency must be at least 1".into());
        }
        for (key, v) in [
            ("request.timeout_secs", self.timeout_secs),
            (
                "request.retry_initial_backoff_secs",
                self.retry_initial_backoff_secs,
            ),
            (
                "request.retry_max_duration_secs",
                self.retry_max_duration_secs,
            ),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{key} must be a positive number of seconds"));
            }
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }

    /// The wait before retry number `attempt` (1-based): a uniformly random
    /// time up to `initial * 2^(attempt-1)`, capped (full jitter, so many
    /// senders that failed together do not retry together); a receiver's
    /// `Retry-After` wins when it asks for longer, up to the cap.
    pub fn backoff(&self, attempt: u64, retry_after: Option<Duration>) -> Duration {
        let cap = self.retry_max_duration_secs;
        let exp = attempt.saturating_sub(1).min(62) as i32;
        let ceiling = (self.retry_initial_backoff_secs * 2f64.powi(exp)).min(cap);
        // At least a tenth of the ceiling: never a busy loop.
        let jittered = ceiling * (0.1 + 0.9 * fastrand::f64());
        let wait = match retry_after {
            Some(after) => jittered.max(after.as_secs_f64().min(cap)),
            None => jittered,
        };
        Duration::from_secs_f64(wait)
    }
}

/// `Retry-After` as seconds (the form Elasticsearch and Splunk send); the
/// HTTP-date form is honored as "the cap" since clocks disagree anyway.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    match value.trim().parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => Some(Duration::from_secs(u64::MAX / 4)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_stays_under_the_cap_and_honors_retry_after() {
        let r = RequestConfig {
            retry_initial_backoff_secs: 0.1,
            retry_max_duration_secs: 2.0,
            ..RequestConfig::default()
        };
        for _ in 0..100 {
            let first = r.backoff(1, None).as_secs_f64();
            assert!((0.01..=0.1).contains(&first), "{first}");
            let fourth = r.backoff(4, None).as_secs_f64();
            assert!((0.08..=0.8).contains(&fourth), "{fourth}");
            assert!(r.backoff(40, None).as_secs_f64() <= 2.0);
        }
        assert!(r.backoff(1, Some(Duration::from_secs(1))) >= Duration::from_secs(1));
        assert!(r.backoff(1, Some(Duration::from_secs(600))) <= Duration::from_secs(2));
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }

    #[test]
    fn nonsense_is_refused_by_key() {
        let r = RequestConfig {
            concurrency: 0,
            ..RequestConfig::default()
        };
        assert!(r.validate().unwrap_err().contains("request.concurrency"));
        let r = RequestConfig {
            timeout_secs: -1.0,
            ..RequestConfig::default()
        };
        assert!(r.validate().unwrap_err().contains("request.timeout_secs"));
    }
}
