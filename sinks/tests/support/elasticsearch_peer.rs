//! An Elasticsearch protocol peer: the REST calls Lumen makes, answered as
//! Elasticsearch documents them (bulk per-item statuses and error bodies,
//! data-stream rules, security errors, templates), with faults to inject.
//!
//! Followed behaviours (Elasticsearch 8/9 docs): `POST /_bulk` takes NDJSON
//! action/document line pairs and answers 200 with `errors` and one item
//! per action; a data stream (`logs-*-*`) accepts only `create` and needs
//! `@timestamp`; a malformed action line fails the whole request with 400;
//! missing or wrong credentials get 401 `security_exception`; an index
//! template naming a component template that does not exist gets 400.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// A failure the peer plays on the next bulk request(s).
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status (and `Retry-After`), indexing nothing.
    Status(u16, Option<u64>),
    /// Index the documents, then drop the connection without answering.
    ResetAfterIndexing,
    /// Index the documents, then answer only after this long.
    SlowAfterIndexing(Duration),
}

#[derive(Debug, Default)]
pub struct State {
    /// Indexed documents: (index, document).
    pub docs: Vec<(String, Value)>,
    pub component_templates: BTreeMap<String, Value>,
    pub index_templates: BTreeMap<String, Value>,
    pub bulk_requests: u64,
    pub gzip_requests: u64,
    /// Played in order, one per bulk request.
    pub faults: VecDeque<Fault>,
    /// Documents whose text contains the key get a 429 item status that
    /// many more times.
    pub item_429: BTreeMap<String, u32>,
    /// Documents whose text contains this get a 400 mapping error.
    pub reject_containing: Option<String>,
    /// The `Authorization` header required, if any.
    pub authorization: Option<String>,
    /// Every request is answered 503 `master_not_discovered_exception`, as
    /// a cluster that is starting or has lost its master answers.
    pub unavailable: bool,
}

#[derive(Clone, Debug)]
pub struct EsPeer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

use super::{json_response, Resp};

fn error(status: u16, kind: &str, reason: &str) -> Resp {
    json_response(
        status,
        json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status}),
    )
}

impl EsPeer {
    /// Listens on 127.0.0.1 (TLS when `tls` = (certificate PEM, key PEM)).
    pub async fn start(tls: Option<(&str, &str)>) -> EsPeer {
        Self::start_with(tls, None).await
    }

    /// Plain HTTP on `addr` (a port chosen earlier: a receiver that was
    /// down and comes up).
    pub async fn start_at(addr: SocketAddr) -> EsPeer {
        let listener = TcpListener::bind(addr).await.unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let peer = EsPeer {
            addr,
            state: state.clone(),
        };
        super::serve(listener, None, move |req| handle(state.clone(), req));
        peer
    }

    /// As [`EsPeer::start`] with TLS, also requiring a client certificate
    /// signed by `client_ca` (PEM).
    pub async fn start_with(tls: Option<(&str, &str)>, client_ca: Option<&str>) -> EsPeer {
        use rustls_pki_types::pem::PemObject;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let acceptor = tls.map(|(cert, key)| {
            let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap();
            let builder = match client_ca {
                Some(ca) => {
                    let mut roots = rustls::RootCertStore::empty();
                    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
                        roots.add(c.unwrap()).unwrap();
                    }
                    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider,
                    )
                    .build()
                    .unwrap();
                    builder.with_client_cert_verifier(verifier)
                }
                None => builder.with_no_client_auth(),
            };
            let config = builder.with_single_cert(certs, key).unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let peer = EsPeer {
            addr,
            state: state.clone(),
        };
        super::serve(listener, acceptor, move |req| handle(state.clone(), req));
        peer
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// How many times each auditID arrived.
    pub fn arrivals(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        self.with(|s| {
            for (_, doc) in &s.docs {
                let id = doc["kubernetes"]["audit"]["auditID"]
                    .as_str()
                    .or(doc["metadata"]["uid"].as_str())
                    .unwrap_or("?")
                    .to_owned();
                *out.entry(id).or_default() += 1;
            }
        });
        out
    }
}

/// The handler's error closes the connection without a response.
#[derive(Debug)]
struct Reset;
impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the peer's fault script")
    }
}
impl std::error::Error for Reset {}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Resp, Reset> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if state.lock().unwrap().unavailable {
        return Ok(error(
            503,
            "master_not_discovered_exception",
            "no master node discovered yet",
        ));
    }
    let required = state.lock().unwrap().authorization.clone();
    if let Some(required) = required {
        let given = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if given != Some(required.as_str()) {
            let mut r = error(
                401,
                "security_exception",
                &format!(
                    "unable to authenticate user for REST request [{}]",
                    parts.uri.path()
                ),
            );
            r.headers_mut().insert(
                "www-authenticate",
                "Basic realm=\"security\" charset=\"UTF-8\""
                    .parse()
                    .unwrap(),
            );
            return Ok(r);
        }
    }
    let path = parts.uri.path().to_owned();
    let method = parts.method.as_str().to_owned();
    match (method.as_str(), path.as_str()) {
        ("GET", "/_cluster/health") => Ok(json_response(
            200,
            json!({"cluster_name": "lumen-peer", "status": "green", "number_of_nodes": 1}),
        )),
        ("PUT", p) if p.starts_with("/_component_template/") => {
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return Ok(error(400, "x_content_parse_exception", "failed to parse"));
            };
            if v["template"].is_null() {
                return Ok(error(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: template is missing;",
                ));
            }
            let name = p.trim_start_matches("/_component_template/").to_owned();
            state.lock().unwrap().component_templates.insert(name, v);
            Ok(json_response(200, json!({"acknowledged": true})))
        }
        ("PUT", p) if p.starts_with("/_index_template/") => {
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return Ok(error(400, "x_content_parse_exception", "failed to parse"));
            };
            let name = p.trim_start_matches("/_index_template/").to_owned();
            let mut s = state.lock().unwrap();
            for c in v["composed_of"].as_array().cloned().unwrap_or_default() {
                let c = c.as_str().unwrap_or("");
                if !s.component_templates.contains_key(c) {
                    return Ok(error(400, "invalid_index_template_exception", &format!("index_template [{name}] invalid, cause [index template [{name}] specifies component templates [{c}] that do not exist]")));
                }
            }
            s.index_templates.insert(name, v);
            Ok(json_response(200, json!({"acknowledged": true})))
        }
        ("POST", "/_bulk") => bulk(state, &parts.headers, &body).await,
        _ => Ok(error(
            400,
            "illegal_argument_exception",
            &format!("request [{path}] contains unrecognized parameters or path"),
        )),
    }
}

async fn bulk(
    state: Arc<Mutex<State>>,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Result<Resp, Reset> {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body: Vec<u8> = if gzip {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .is_err()
        {
            return Ok(error(
                400,
                "parse_exception",
                "request body is not valid gzip",
            ));
        }
        out
    } else {
        body.to_vec()
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-ndjson")
        && !content_type.starts_with("application/json")
    {
        return Ok(error(
            406,
            "media_type_header_exception",
            "Content-Type header is not supported",
        ));
    }
    let fault = {
        let mut s = state.lock().unwrap();
        s.bulk_requests += 1;
        if gzip {
            s.gzip_requests += 1;
        }
        s.faults.pop_front()
    };
    if let Some(Fault::Status(code, retry_after)) = &fault {
        let mut r = match code {
            429 => error(
                429,
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation",
            ),
            503 => error(
                503,
                "cluster_block_exception",
                "blocked by: [SERVICE_UNAVAILABLE/2/no master];",
            ),
            c => error(*c, "exception", "injected failure"),
        };
        if let Some(secs) = retry_after {
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
        }
        return Ok(r);
    }
    let text = String::from_utf8_lossy(&body);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if !lines.len().is_multiple_of(2) {
        return Ok(error(
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    let mut items = Vec::new();
    let mut errors = false;
    {
        let mut s = state.lock().unwrap();
        for pair in lines.chunks(2) {
            let Ok(action) = serde_json::from_str::<Value>(pair[0]) else {
                return Ok(error(
                    400,
                    "x_content_parse_exception",
                    "Malformed action/metadata line",
                ));
            };
            let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
                return Ok(error(
                    400,
                    "illegal_argument_exception",
                    "Malformed action/metadata line [1], expected START_OBJECT",
                ));
            };
            if !["create", "index"].contains(&op.as_str()) {
                return Ok(error(400, "illegal_argument_exception", &format!("Malformed action/metadata line, expected one of [create, index] but found [{op}]")));
            }
            let Some(index) = meta["_index"].as_str() else {
                return Ok(error(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index is missing;",
                ));
            };
            let item = |status: u16, err: Option<(&str, String)>| {
                let mut v = json!({"_index": index, "status": status});
                if let Some((kind, reason)) = err {
                    v["error"] = json!({"type": kind, "reason": reason});
                } else {
                    v["_id"] = json!(format!("peer-{}", s_len()));
                    v["result"] = json!("created");
                    v["_version"] = json!(1);
                }
                json!({ op.as_str(): v })
            };
            let doc: Value = match serde_json::from_str(pair[1]) {
                Ok(d) => d,
                Err(e) => {
                    errors = true;
                    items.push(item(
                        400,
                        Some((
                            "document_parsing_exception",
                            format!("failed to parse: {e}"),
                        )),
                    ));
                    continue;
                }
            };
            let is_data_stream = index.starts_with("logs-") && index.matches('-').count() >= 2;
            if is_data_stream && op != "create" {
                errors = true;
                items.push(item(
                    400,
                    Some((
                        "illegal_argument_exception",
                        "only write ops with an op_type of create are allowed in data streams"
                            .to_owned(),
                    )),
                ));
                continue;
            }
            if is_data_stream && doc["@timestamp"].is_null() {
                errors = true;
                items.push(item(
                    400,
                    Some((
                        "document_parsing_exception",
                        "data stream timestamp field [@timestamp] is missing".to_owned(),
                    )),
                ));
                continue;
            }
            if let Some(needle) = &s.reject_containing {
                if pair[1].contains(needle.as_str()) {
                    errors = true;
                    items.push(item(400, Some(("document_parsing_exception", "[1:2] failed to parse field [kubernetes.audit.auditID] of type [long] in document".to_owned()))));
                    continue;
                }
            }
            let throttled = s
                .item_429
                .iter_mut()
                .find(|(k, n)| **n > 0 && pair[1].contains(k.as_str()));
            if let Some((_, n)) = throttled {
                *n -= 1;
                errors = true;
                items.push(item(
                    429,
                    Some((
                        "es_rejected_execution_exception",
                        "rejected execution of primary operation".to_owned(),
                    )),
                ));
                continue;
            }
            s.docs.push((index.to_owned(), doc));
            items.push(item(201, None));
        }
    }
    match fault {
        Some(Fault::ResetAfterIndexing) => return Err(Reset),
        Some(Fault::SlowAfterIndexing(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    Ok(json_response(
        200,
        json!({"took": 1, "errors": errors, "items": items}),
    ))
}

fn s_len() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
