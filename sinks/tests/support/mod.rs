//! Test support for the network sinks: events with acknowledgements to
//! watch, a test CA, and protocol peers that answer like the real servers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod elasticsearch_peer;
pub mod otlp_peer;
pub mod splunk_peer;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lumen_schemas::event::Host;
use lumen_schemas::time::Timestamp;
use lumen_schemas::{k8s_audit, Event, EventKind};
use lumen_sinks::ack::{self, AckReceiver, Acked, Status};
use lumen_sinks::deliver::DeliveryMetrics;
use lumen_sinks::Envelope;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A real Kubernetes audit event (from Lumen's sample log) whose auditID is
/// `id`, so each test event can be told apart at the receiver.
pub fn audit_event(id: &str) -> Event {
    let sample = include_str!("../../../config/samples/k8s-audit.log");
    let line = sample.lines().next().unwrap();
    let line = line.replace("ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6", id);
    let a = k8s_audit::parse_line(&line).unwrap();
    Event {
        time: a.stage_time.unwrap_or(Timestamp(1_700_000_000_000_000_000)),
        observed: Timestamp::now(),
        host: Arc::new(Host {
            name: "node-1".into(),
            architecture: "x86_64".into(),
            kernel: "6.18.0".into(),
        }),
        kind: EventKind::ApiActivity(Box::new(a)),
        redaction: Default::default(),
    }
}

/// `n` events `prefix-0` … with acknowledgements (cookie = index).
pub fn tracked_events(prefix: &str, n: usize) -> (Vec<Envelope>, AckReceiver) {
    let (tx, rx) = ack::channel();
    let envs = (0..n)
        .map(|i| {
            let node = tx.node(i as u64);
            Envelope::new(
                audit_event(&format!("{prefix}-{i}")),
                lumen_sinks::ack::Ack::new(node),
            )
        })
        .collect();
    (envs, rx)
}

/// Waits for `n` acknowledgements and returns them by cookie.
pub async fn acks(rx: &mut AckReceiver, n: usize) -> BTreeMap<u64, Status> {
    let mut out = BTreeMap::new();
    while out.len() < n {
        let Acked { cookie, status } = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("acknowledgements within 60 s")
            .expect("ack channel open");
        out.insert(cookie, status);
    }
    out
}

/// A CA and a server certificate for localhost/127.0.0.1 signed by it.
pub struct TestCa {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// A client certificate signed by the same CA.
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

pub fn test_ca() -> TestCa {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Lumen test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(vec!["lumen".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
    TestCa {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// What a delivery test run left behind.
pub struct Run {
    pub statuses: BTreeMap<u64, Status>,
    pub delivery: Arc<DeliveryMetrics>,
    pub dir: tempfile::TempDir,
}

impl Run {
    pub fn count(&self, status: Status) -> usize {
        self.statuses.values().filter(|s| **s == status).count()
    }

    /// The dead-letter lines of sink `name` (default path under the dir).
    pub fn dead_letters(&self, name: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join(format!("dead-letter/{name}.ndjson")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Feeds `n` tracked events `prefix-<i>` to a sink's run loop (`run`, given
/// the input channel), waits for every acknowledgement and for the loop.
pub async fn deliver<F, Fut>(run: F, prefix: &str, n: usize) -> BTreeMap<u64, Status>
where
    F: FnOnce(tokio::sync::mpsc::Receiver<Envelope>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let task = tokio::spawn(run(rx));
    let (envs, mut ack_rx) = tracked_events(prefix, n);
    for env in envs {
        tx.send(env).await.unwrap();
    }
    drop(tx);
    let statuses = acks(&mut ack_rx, n).await;
    task.await.unwrap();
    statuses
}

pub type Resp = Response<Full<Bytes>>;

/// A JSON response.
pub fn json_response(status: u16, body: serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// Serves HTTP/1.1 (over TLS with `acceptor`) on `listener`: each request
/// goes to `handler`; a handler error drops the connection unanswered.
pub fn serve<H, F, E>(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Resp, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handler);
                let builder = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
}
