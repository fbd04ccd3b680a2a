//! The `k8s_audit_webhook` source: the HTTPS endpoint the Kubernetes API
//! server's audit webhook backend (`--audit-webhook-config-file`) posts
//! `audit.k8s.io/v1` `EventList`s to.
//!
//! - TLS always (rustls); authentication required: a bearer token
//!   (`auth.token`, checked in constant time), client certificates
//!   (`tls.client_ca_file`, checked in the handshake), or both — unless
//!   `auth.disabled = true` says otherwise in so many words.
//! - `200` only once every event of the request is in every sink's buffer
//!   (a disk buffer has written it; a memory buffer's sink has delivered it
//!   or dead-lettered it). The API server drops a batch it got a 200 for, so
//!   nothing earlier is safe.
//! - Backpressure: when the pipeline does not take the events within
//!   `ack_timeout_secs`, `429` with `Retry-After`; when they were taken but
//!   not acknowledged in time (a sink is down behind a memory buffer), `503`
//!   with `Retry-After`. The API server sends the batch again; events
//!   already taken may then arrive twice (at least once, never lost).
//! - Bodies: an `EventList` (the API server), or records of the source's
//!   `format` — a CloudWatch Logs subscription payload (gzip-compressed as
//!   delivered, or not), GKE Cloud Audit Logs entries, events — as one JSON
//!   document or one per line. A gzip body is inflated up to
//!   `max_body_bytes`.
//! - `400` with the reason for a body that is none of those; an item
//!   that is not an audit event is logged, counted and skipped, the others
//!   are taken. `413` for a body over `max_body_bytes`, `408` for one that
//!   takes over 30 s to arrive. `401` without valid
//!   credentials, `404` for another path, `405` for another method.

use crate::topology::fanout::Fanout;
use crate::topology::shutdown::ShutdownSignal;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lumen_schemas::event::Host;
use lumen_schemas::time::Timestamp;
use lumen_schemas::{k8s_audit, Event};
use lumen_sinks::ack::{self, Ack, Status};
use lumen_sinks::secret::Secret;
use lumen_sinks::{ComponentMetrics, Envelope};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// `[sources.<id>] type = "k8s_audit_webhook"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct K8sAuditWebhookConfig {
    /// Where to listen (`0.0.0.0:8443`).
    pub address: SocketAddr,
    /// The URL path the API server posts to (the webhook kubeconfig's
    /// `server` URL path).
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub auth: WebhookAuth,
    pub tls: WebhookTls,
    /// Largest request body accepted (`413` beyond).
    /// Largest request body, compressed or inflated.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// What the records are: `auto`, or one of `native`, `aks`, `gke`,
    /// `cloudwatch` to accept only that.
    #[serde(default)]
    pub format: k8s_audit::Format,
    /// How long a request may wait for its events to be buffered before the
    /// answer is `429` / `503`.
    #[serde(default = "default_ack_timeout_secs")]
    pub ack_timeout_secs: f64,
}

/// `auth.*`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookAuth {
    /// Bearer token the API server sends (the webhook kubeconfig's
    /// `users[].user.token`).
    pub token: Option<Secret>,
    /// Accept unauthenticated requests. Never on a reachable address.
    #[serde(default)]
    pub disabled: bool,
}

/// `tls.*`: the server's certificate and key; clients' CA.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookTls {
    pub crt_file: PathBuf,
    pub key_file: PathBuf,
    /// Require client certificates signed by these CAs.
    pub client_ca_file: Option<PathBuf>,
}

fn default_path() -> String {
    "/".into()
}
fn default_max_body_bytes() -> usize {
    16 << 20
}
fn default_ack_timeout_secs() -> f64 {
    10.0
}

impl K8sAuditWebhookConfig {
    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let has_token = self.auth.token.as_ref().is_some_and(|t| !t.is_empty());
        if self.auth.token.as_ref().is_some_and(Secret::is_empty) {
            return Err("auth.token is empty".into());
        }
        if !has_token && self.tls.client_ca_file.is_none() && !self.auth.disabled {
            return Err("authentication is required: set auth.token (bearer token) or tls.client_ca_file (client certificates), or auth.disabled = true to accept anyone".into());
        }
        if !self.path.starts_with('/') {
            return Err(format!("path must start with `/` (got {:?})", self.path));
        }
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        if !(self.ack_timeout_secs > 0.0 && self.ack_timeout_secs.is_finite()) {
            return Err("ack_timeout_secs must be a positive number of seconds".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("k8s_audit_webhook: cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("k8s_audit_webhook: {0}")]
    Tls(#[from] lumen_sinks::tls::TlsError),
}

/// What every request handler shares.
#[derive(Debug)]
struct Handler {
    config: K8sAuditWebhookConfig,
    host: Arc<Host>,
    metrics: Arc<ComponentMetrics>,
    out: Mutex<Fanout>,
    /// `Bearer <token>`, when a token is required.
    expected_authorization: Option<Secret>,
}

/// The bound, not yet serving, source.
#[derive(Debug)]
pub struct K8sAuditWebhookSource {
    config: K8sAuditWebhookConfig,
    host: Arc<Host>,
    metrics: Arc<ComponentMetrics>,
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
}

impl K8sAuditWebhookSource {
    /// Loads the certificates and binds the address (errors here stop Lumen
    /// at start-up, with the reason).
    pub fn new(
        config: K8sAuditWebhookConfig,
        host: Arc<Host>,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Self, WebhookError> {
        let tls = lumen_sinks::tls::server_config(
            &config.tls.crt_file,
            &config.tls.key_file,
            config.tls.client_ca_file.as_deref(),
            &[b"http/1.1"],
        )?;
        let bind_err = |source| WebhookError::Bind {
            address: config.address,
            source,
        };
        let listener = std::net::TcpListener::bind(config.address).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        Ok(K8sAuditWebhookSource {
            config,
            host,
            metrics,
            listener,
            tls: Arc::new(tls),
        })
    }

    /// The address it listens on (the port, when `:0` was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub async fn run(self, out: Fanout, mut shutdown: ShutdownSignal) {
        let listener = match tokio::net::TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "k8s_audit_webhook: cannot serve the listening socket");
                return;
            }
        };
        tracing::info!(address = %self.config.address, path = %self.config.path, client_certificates = self.config.tls.client_ca_file.is_some(), bearer_token = self.config.auth.token.is_some(), "k8s_audit_webhook: listening (HTTPS)");
        if self.config.auth.disabled {
            tracing::warn!("k8s_audit_webhook: authentication disabled; anyone who reaches the address can inject audit events");
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls);
        let handler = Arc::new(Handler {
            expected_authorization: self
                .config
                .auth
                .token
                .as_ref()
                .map(|t| Secret::new(format!("Bearer {}", t.expose()))),
            config: self.config,
            host: self.host,
            metrics: self.metrics,
            out: Mutex::new(out),
        });
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve(stream, peer, acceptor.clone(), handler.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "k8s_audit_webhook: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // Requests still waiting are cut; the API server sends them again to
        // the next Lumen. Dropping the handler closes the output.
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        tracing::info!("k8s_audit_webhook: stopped listening");
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    handler: Arc<Handler>,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            handler.metrics.add_errors(1);
            tracing::warn!(%peer, error = %e, "k8s_audit_webhook: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "k8s_audit_webhook: TLS handshake timed out");
            return;
        }
    };
    let service = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(req, peer).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "k8s_audit_webhook: connection ended");
    }
}

/// The body of an API-server webhook request.
#[derive(Deserialize)]
struct EventList<'a> {
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

fn reply(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut body = Vec::with_capacity(message.len() + 32);
    body.extend_from_slice(b"{\"message\":");
    lumen_schemas::json::write_escaped(&mut body, message);
    body.push(b'}');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn retry_after(mut r: Response<Full<Bytes>>, secs: u32) -> Response<Full<Bytes>> {
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from(secs),
    );
    r
}

/// How long a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The body, or `None` when it is larger than `max`. A body a little too
/// large is read on and discarded (up to `2 × max` in all), so the client
/// gets its 413 rather than a connection reset by unread data.
async fn read_body(mut body: Incoming, max: usize) -> Result<Option<Vec<u8>>, hyper::Error> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            total += data.len();
            if total <= max {
                buf.extend_from_slice(&data);
            } else if total > 2 * max {
                return Ok(None);
            }
        }
    }
    Ok((total <= max).then_some(buf))
}

/// Compares without an early exit, so the time taken does not tell how much
/// of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Handler {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if req.uri().path() != self.config.path {
            return reply(StatusCode::NOT_FOUND, "no such path");
        }
        if req.method() != Method::POST {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST an audit.k8s.io/v1 EventList",
            );
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("POST"),
            );
            return r;
        }
        if let Some(expected) = &self.expected_authorization {
            let given = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .map_or(&[][..], |v| v.as_bytes());
            if !constant_time_eq(given, expected.expose().as_bytes()) {
                self.metrics.add_errors(1);
                tracing::warn!(%peer, "k8s_audit_webhook: request without a valid bearer token refused");
                let mut r = reply(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Bearer realm=\"lumen\""),
                );
                return r;
            }
        }
        let max = self.config.max_body_bytes;
        let too_large = || {
            reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "body larger than max_body_bytes ({max}); lower --audit-webhook-batch-max-size"
                ),
            )
        };
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > 2 * max) {
            self.metrics.add_errors(1);
            return too_large();
        }
        let body = match tokio::time::timeout(BODY_TIMEOUT, read_body(req.into_body(), max)).await {
            Ok(Ok(Some(b))) => {
                self.metrics.add_received_bytes(b.len());
                b
            }
            Ok(Ok(None)) => {
                self.metrics.add_errors(1);
                return too_large();
            }
            Ok(Err(e)) => {
                self.metrics.add_errors(1);
                return reply(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the body: {e}"),
                );
            }
            Err(_) => {
                self.metrics.add_errors(1);
                return reply(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body took too long to arrive",
                );
            }
        };
        let events = match self.parse(&body, peer) {
            Ok(e) => e,
            Err(why) => {
                self.metrics.add_errors(1);
                tracing::warn!(%peer, reason = %why, "k8s_audit_webhook: malformed request refused");
                return reply(StatusCode::BAD_REQUEST, &why);
            }
        };
        self.take(events).await
    }

    /// The request's events; an error is a body that is neither an
    /// `EventList` nor records of the source's `format`.
    ///
    /// The body may be gzip-compressed (a CloudWatch Logs subscription
    /// payload as delivered): it is inflated up to `max_body_bytes`. An
    /// `EventList` (the API server's webhook backend) gives its items; any
    /// other body is records — one JSON document (a CloudWatch payload, a
    /// GKE entry, an event), or one per line.
    fn parse(&self, body: &[u8], peer: SocketAddr) -> Result<Vec<Event>, String> {
        let body = k8s_audit::cloudwatch::gunzip(body, self.config.max_body_bytes)
            .map_err(|e| format!("body: {e}"))?;
        let text =
            std::str::from_utf8(&body).map_err(|e| format!("body is not UTF-8 text: {e}"))?;
        let mut parsed = Vec::new();
        match serde_json::from_str::<EventList<'_>>(text) {
            Ok(list)
                if list.kind == Some("EventList")
                    || (list.kind.is_none() && list.items.is_some()) =>
            {
                for item in list.items.unwrap_or_default() {
                    k8s_audit::parse_record(item.get(), self.config.format, &mut parsed);
                }
            }
            Ok(EventList {
                kind: Some(other), ..
            }) if other != "Event" => {
                return Err(format!(
                    "body is a {other:?}, not an audit.k8s.io EventList"
                ));
            }
            Ok(_) => k8s_audit::parse_record(text, self.config.format, &mut parsed),
            // Not one document: records, one per line.
            Err(_) if text.trim_start().starts_with('{') && text.trim_end().contains('\n') => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    k8s_audit::parse_record(line, self.config.format, &mut parsed);
                }
            }
            Err(e) => return Err(format!("body is not an audit.k8s.io EventList: {e}")),
        }
        self.metrics.add_received(parsed.len() as u64);
        let observed = Timestamp::now();
        let mut events = Vec::with_capacity(parsed.len());
        for (i, p) in parsed.into_iter().enumerate() {
            match p {
                Ok(a) => events.push(Event::api_activity(a, self.host.clone(), observed)),
                Err(e) => {
                    self.metrics.add_errors(1);
                    tracing::warn!(%peer, item = i, error = %e, "k8s_audit_webhook: item is not an audit event; skipped");
                }
            }
        }
        Ok(events)
    }

    /// Hands the events on and answers once every sink's buffer has them.
    async fn take(&self, events: Vec<Event>) -> Response<Full<Bytes>> {
        let n = events.len();
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs_f64(self.config.ack_timeout_secs);
        let (acks, mut acked) = ack::channel();
        {
            let Ok(mut out) = tokio::time::timeout_at(deadline, self.out.lock()).await else {
                return self.backpressured(0, n);
            };
            for (i, event) in events.into_iter().enumerate() {
                let env = Envelope::new(event, Ack::new(acks.node(i as u64)));
                match tokio::time::timeout_at(deadline, out.send(env)).await {
                    Ok(Ok(())) => self.metrics.add_sent(1),
                    Ok(Err(_closed)) => {
                        return retry_after(
                            reply(StatusCode::SERVICE_UNAVAILABLE, "Lumen is shutting down"),
                            5,
                        )
                    }
                    Err(_) => return self.backpressured(i, n),
                }
            }
        }
        drop(acks);
        let mut done = 0;
        let mut worst = Status::Delivered;
        while done < n {
            match tokio::time::timeout_at(deadline, acked.recv()).await {
                Ok(Some(a)) => {
                    done += 1;
                    worst = worst.max(a.status);
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(events = n, buffered = done, "k8s_audit_webhook: events not buffered in time (a sink down behind a memory buffer?); answering 503");
                    return retry_after(
                        reply(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the events were not buffered in time; send them again",
                        ),
                        5,
                    );
                }
            }
        }
        if worst == Status::Dropped || done < n {
            return retry_after(
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "some events were lost on the way; send them again",
                ),
                5,
            );
        }
        reply(StatusCode::OK, "ok")
    }

    fn backpressured(&self, taken: usize, n: usize) -> Response<Full<Bytes>> {
        tracing::warn!(
            events = n,
            taken,
            "k8s_audit_webhook: pipeline full; answering 429"
        );
        retry_after(
            reply(
                StatusCode::TOO_MANY_REQUESTS,
                "Lumen's buffers are full; send the batch again later",
            ),
            1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> K8sAuditWebhookConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn authentication_is_required_unless_disabled_in_so_many_words() {
        let base = "address = \"127.0.0.1:0\"\n[tls]\ncrt_file = \"c\"\nkey_file = \"k\"\n";
        let e = config(base).validate().unwrap_err();
        assert!(e.contains("authentication is required"), "{e}");
        assert!(config(&format!("{base}client_ca_file = \"ca\"\n"))
            .validate()
            .is_ok());
        assert!(config(&format!("{base}[auth]\ntoken = \"t\"\n"))
            .validate()
            .is_ok());
        assert!(config(&format!("{base}[auth]\ndisabled = true\n"))
            .validate()
            .is_ok());
        let e = config(&format!("{base}[auth]\ntoken = \"\"\n"))
            .validate()
            .unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn token_comparison_needs_every_byte() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
        assert!(!constant_time_eq(b"", b"Bearer abc"));
    }
}
