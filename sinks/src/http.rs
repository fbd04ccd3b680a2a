//! HTTP pieces the network sinks share: the client (timeouts, rustls),
//! several endpoints with round robin and failover, gzip bodies, and the
//! classification of transport failures.

use crate::deliver::Outcome;
use crate::request::RequestConfig;
use crate::tls::{TlsConfig, TlsError};
use bytes::Bytes;
use serde::Deserialize;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `compression` of a sink's request bodies.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

impl Compression {
    /// The body to send and its `Content-Encoding`.
    pub fn apply(self, body: Bytes) -> (Bytes, Option<&'static str>) {
        match self {
            Compression::None => (body, None),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::fast(),
                );
                // Writing to a Vec cannot fail.
                let _ = enc.write_all(&body);
                match enc.finish() {
                    Ok(gz) => (Bytes::from(gz), Some("gzip")),
                    Err(_) => (body, None),
                }
            }
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("http client: {0}")]
    Build(String),
}

/// A client with the sink's TLS settings and timeouts.
pub fn client(tls: &TlsConfig, request: &RequestConfig) -> Result<reqwest::Client, ClientError> {
    let tls = tls.client_config()?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(request.timeout())
        .connect_timeout(request.timeout().min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ClientError::Build(e.to_string()))
}

/// The outcome of a request that got no HTTP response.
pub fn transport_outcome(e: &reqwest::Error) -> Outcome {
    // A refused or failed connection sent nothing; after that the receiver
    // may have read the whole request before the failure.
    let ambiguous = !e.is_connect();
    Outcome::Retry {
        reason: error_chain(e),
        after: None,
        ambiguous,
    }
}

/// A response's status, `Retry-After` and body. A body that cannot be
/// read is an ambiguous failure: the receiver may have acted on the request.
pub async fn read_response(
    resp: reqwest::Response,
    what: &str,
) -> Result<(reqwest::StatusCode, Option<Duration>, bytes::Bytes), Outcome> {
    let status = resp.status();
    let after = crate::request::retry_after(resp.headers());
    match resp.bytes().await {
        Ok(body) => Ok((status, after, body)),
        Err(e) => Err(Outcome::Retry {
            reason: format!("reading the answer of {what}: {}", error_chain(&e)),
            after: None,
            ambiguous: true,
        }),
    }
}

/// An error with its causes ("error sending request: connection reset").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// How long an endpoint that failed is skipped.
const FAILOVER_PAUSE: Duration = Duration::from_secs(5);

/// Several base URLs used in turn; one that failed at the transport level
/// or with a 5xx is skipped for a while (failover), unless all are down.
#[derive(Debug)]
pub struct Endpoints {
    urls: Vec<String>,
    next: AtomicUsize,
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Endpoints {
    /// `urls` without trailing slashes; at least one.
    pub fn new(urls: &[String]) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("endpoints: at least one URL is needed".into());
        }
        let mut clean = Vec::with_capacity(urls.len());
        for u in urls {
            let parsed = reqwest::Url::parse(u)
                .map_err(|e| format!("endpoints: `{u}` is not a URL: {e}"))?;
            if parsed.scheme() != "http" && parsed.scheme() != "https" {
                return Err(format!("endpoints: `{u}` is not http(s)"));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(format!(
                    "endpoints: credentials in a URL would be logged; use auth.* (endpoint {})",
                    parsed.host_str().unwrap_or("?")
                ));
            }
            clean.push(u.trim_end_matches('/').to_owned());
        }
        Ok(Endpoints {
            down_until: Mutex::new(vec![None; clean.len()]),
            urls: clean,
            next: AtomicUsize::new(0),
        })
    }

    /// The index and base URL of the endpoint to use next.
    pub fn pick(&self) -> (usize, &str) {
        let n = self.urls.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        for k in 0..n {
            let i = (start + k) % n;
            if down[i].is_none_or(|until| until <= now) {
                return (i, &self.urls[i]);
            }
        }
        let i = start % n;
        (i, &self.urls[i])
    }

    /// Endpoint `i` failed: skip it for a while.
    pub fn failed(&self, i: usize) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = down.get_mut(i) {
            *slot = Some(Instant::now() + FAILOVER_PAUSE);
        }
    }

    pub fn all(&self) -> &[String] {
        &self.urls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_a_failed_endpoint() {
        let e = Endpoints::new(&["http://a:9200/".into(), "http://b:9200".into()]).unwrap();
        let picks: Vec<usize> = (0..4).map(|_| e.pick().0).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        assert_eq!(e.pick().1, "http://a:9200");
        e.failed(1);
        let picks: Vec<usize> = (0..4).map(|_| e.pick().0).collect();
        assert_eq!(picks, [0, 0, 0, 0]);
        e.failed(0);
        // All down: still somewhere to send.
        assert!(e.pick().0 < 2);
    }

    #[test]
    fn bad_urls_and_credentials_in_urls_are_refused() {
        assert!(Endpoints::new(&[]).is_err());
        assert!(Endpoints::new(&["not a url".into()])
            .unwrap_err()
            .contains("not a URL"));
        let e = Endpoints::new(&["https://elastic:secret@es:9200".into()]).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn gzip_roundtrips() {
        let body = b"{\"a\":1}\n".repeat(100);
        let (gz, enc) = Compression::Gzip.apply(Bytes::from(body.clone()));
        assert_eq!(enc, Some("gzip"));
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, body);
    }
}
