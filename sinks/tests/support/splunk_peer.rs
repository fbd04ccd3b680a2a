//! A Splunk HTTP Event Collector protocol peer: the endpoints Lumen uses,
//! answered with HEC's documented status codes and bodies, indexer
//! acknowledgement per channel, and faults to inject.
//!
//! Followed behaviours (Splunk HEC docs): `Authorization: Splunk <token>`
//! (missing: 401 code 2; no `Splunk ` prefix: 401 code 3; unknown: 403 code
//! 4; disabled: 403 code 1); `/services/collector/event` takes JSON
//! envelopes back to back, each needing `event` (code 12, blank: 13);
//! malformed JSON is 400 code 6 with `invalid-event-number`, the events
//! before it being taken; an empty body is 400 code 5; with indexer
//! acknowledgement the channel is required (400 code 10) and each accepted
//! request gets an `ackId`, later reported by `/services/collector/ack`;
//! `/services/collector/raw` takes lines; `/services/collector/health`
//! answers code 17 when healthy.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this HTTP status and HEC code (and `Retry-After`).
    Status(u16, u32, Option<u64>),
    /// Take the request, then drop the connection without answering.
    ResetAfterAccepting,
    /// Take the request but never report its ack as indexed (lost).
    NeverIndexed,
}

#[derive(Debug, Default)]
pub struct State {
    /// Indexed events (the `event` member, or a raw line as a string).
    pub indexed: Vec<Value>,
    /// Indexed envelopes (event endpoint) for metadata checks.
    pub envelopes: Vec<Value>,
    /// Query strings of raw requests.
    pub raw_queries: Vec<String>,
    pub token: String,
    pub token_disabled: bool,
    pub ack_enabled: bool,
    pub unhealthy: bool,
    /// Every request is answered 503 code 9 "Server is busy".
    pub busy: bool,
    /// Requests taken but not yet indexed, by ack id.
    pub pending: BTreeMap<u64, Pending>,
    /// The most requests ever pending at once.
    pub max_pending: usize,
    pub next_ack: u64,
    pub ack_queries: u64,
    /// How many ackIds each ack query asked about.
    pub ack_query_sizes: Vec<usize>,
    /// Answers to the next ack queries (HTTP status, HEC code).
    pub ack_faults: VecDeque<(u16, u32)>,
    /// When set, a request is indexed this long after it was taken (as a
    /// real indexer does); otherwise after `ack_delay` queries.
    pub index_after: Option<std::time::Duration>,
    pub requests: u64,
    pub faults: VecDeque<Fault>,
    /// Inject code 6 at this event index of the next request.
    pub invalid_at: Option<usize>,
    /// Queries an ack stays false before becoming true.
    pub ack_delay: u32,
    pub channels: Vec<String>,
}

/// A request taken and not yet reported indexed.
#[derive(Debug)]
pub struct Pending {
    pub events: Vec<Value>,
    pub envelopes: Vec<Value>,
    pub ready: Ready,
}

/// When a pending request's ack turns true.
#[derive(Debug)]
pub enum Ready {
    /// After this many more queries that ask about it.
    AfterQueries(u32),
    /// From this moment on.
    At(std::time::Instant),
    /// Never (lost by the indexer).
    Never,
}

#[derive(Clone, Debug)]
pub struct HecPeer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

use super::{json_response as reply, Resp};

fn hec(status: u16, code: u32, text: &str) -> Resp {
    reply(status, json!({"text": text, "code": code}))
}

#[derive(Debug)]
struct Reset;
impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset by the fault script")
    }
}
impl std::error::Error for Reset {}

impl HecPeer {
    pub async fn start(token: &str, ack_enabled: bool) -> HecPeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            ack_enabled,
            ..State::default()
        }));
        let peer = HecPeer {
            addr,
            state: state.clone(),
        };
        super::serve(listener, None, move |req| handle(state.clone(), req));
        peer
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// How many times each event id (OCSF `metadata.uid`, ECS auditID)
    /// was indexed.
    pub fn arrivals(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        self.with(|s| {
            for e in &s.indexed {
                let e = match e {
                    Value::String(line) => serde_json::from_str(line).unwrap_or(Value::Null),
                    other => other.clone(),
                };
                let id = e["metadata"]["uid"]
                    .as_str()
                    .or(e["kubernetes"]["audit"]["auditID"].as_str())
                    .unwrap_or("?")
                    .to_owned();
                *out.entry(id).or_default() += 1;
            }
        });
        out
    }
}

fn check_token(s: &State, headers: &hyper::HeaderMap) -> Option<Resp> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Some(hec(401, 2, "Token is required"));
    };
    let Some(token) = auth.strip_prefix("Splunk ") else {
        return Some(hec(401, 3, "Invalid authorization"));
    };
    if token != s.token {
        return Some(hec(403, 4, "Invalid token"));
    }
    if s.token_disabled {
        return Some(hec(403, 1, "Token disabled"));
    }
    None
}

fn query_param(uri: &hyper::Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Resp, Reset> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Vec<u8> = if parts
        .headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip")
    {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return Ok(hec(400, 6, "Invalid data format"));
        }
        out
    } else {
        body.to_vec()
    };
    let path = parts.uri.path().to_owned();
    if state.lock().unwrap().busy {
        return Ok(hec(503, 9, "Server is busy"));
    }
    if parts.method == "GET" && path == "/services/collector/health" {
        let unhealthy = state.lock().unwrap().unhealthy;
        return Ok(if unhealthy {
            hec(503, 18, "HEC is unhealthy, queues are full")
        } else {
            hec(200, 17, "HEC is healthy")
        });
    }
    let mut s = state.lock().unwrap();
    if let Some(denied) = check_token(&s, &parts.headers) {
        return Ok(denied);
    }
    let channel = parts
        .headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(&parts.uri, "channel"));
    match (parts.method.as_str(), path.as_str()) {
        ("POST", "/services/collector/ack") => {
            s.ack_queries += 1;
            if !s.ack_enabled {
                return Ok(hec(400, 14, "ACK is disabled"));
            }
            if channel.is_none() {
                return Ok(hec(400, 10, "Data channel is missing"));
            }
            if let Some((status, code)) = s.ack_faults.pop_front() {
                return Ok(hec(status, code, "fault injected on the ack endpoint"));
            }
            let Ok(q) = serde_json::from_slice::<Value>(&body) else {
                return Ok(hec(400, 6, "Invalid data format"));
            };
            let ids = q["acks"].as_array().cloned().unwrap_or_default();
            s.ack_query_sizes.push(ids.len());
            let now = std::time::Instant::now();
            let mut acks = serde_json::Map::new();
            for id in ids {
                let id = id.as_u64().unwrap_or(u64::MAX);
                let done = match s.pending.get_mut(&id).map(|p| &mut p.ready) {
                    Some(Ready::AfterQueries(0)) => true,
                    Some(Ready::AfterQueries(n)) => {
                        *n -= 1;
                        false
                    }
                    Some(Ready::At(at)) => now >= *at,
                    Some(Ready::Never) | None => false,
                };
                if done {
                    let p = s.pending.remove(&id).unwrap();
                    s.indexed.extend(p.events);
                    s.envelopes.extend(p.envelopes);
                }
                acks.insert(id.to_string(), Value::Bool(done));
            }
            Ok(reply(200, json!({ "acks": acks })))
        }
        ("POST", "/services/collector/event" | "/services/collector/raw") => {
            s.requests += 1;
            let raw = path.ends_with("/raw");
            if (s.ack_enabled || raw) && channel.is_none() {
                return Ok(hec(400, 10, "Data channel is missing"));
            }
            if let Some(c) = &channel {
                if !s.channels.contains(c) {
                    s.channels.push(c.clone());
                }
            }
            if body.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(hec(400, 5, "No data"));
            }
            let fault = s.faults.pop_front();
            if let Some(Fault::Status(status, code, after)) = &fault {
                let text = match code {
                    8 => "Internal server error",
                    9 => "Server is busy",
                    _ => "Injected failure",
                };
                let mut r = hec(*status, *code, text);
                if let Some(a) = after {
                    r.headers_mut()
                        .insert("retry-after", a.to_string().parse().unwrap());
                }
                return Ok(r);
            }
            let mut events = Vec::new();
            let mut envelopes = Vec::new();
            let mut invalid = None;
            if raw {
                s.raw_queries
                    .push(parts.uri.query().unwrap_or("").to_owned());
                for line in String::from_utf8_lossy(&body).lines() {
                    if !line.trim().is_empty() {
                        events.push(Value::String(line.to_owned()));
                    }
                }
            } else {
                let inject = s.invalid_at.take();
                let stream = serde_json::Deserializer::from_slice(&body).into_iter::<Value>();
                for (i, item) in stream.enumerate() {
                    let envelope = match item {
                        Ok(v) if inject != Some(i) => v,
                        _ => {
                            invalid = Some(i);
                            break;
                        }
                    };
                    match envelope.get("event") {
                        None | Some(Value::Null) => {
                            return Ok(reply(
                                400,
                                json!({"text": "Event field is required", "code": 12, "invalid-event-number": i}),
                            ))
                        }
                        Some(Value::String(e)) if e.is_empty() => {
                            return Ok(reply(
                                400,
                                json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": i}),
                            ))
                        }
                        Some(e) => {
                            events.push(e.clone());
                            envelopes.push(envelope.clone());
                        }
                    }
                }
            }
            // Events before a malformed one are taken, as HEC does; so are
            // those of a request whose answer is then lost.
            if invalid.is_some() || matches!(fault, Some(Fault::ResetAfterAccepting)) {
                s.indexed.extend(events);
                s.envelopes.extend(envelopes);
                return match invalid {
                    Some(i) => Ok(reply(
                        400,
                        json!({"text": "Invalid data format", "code": 6, "invalid-event-number": i}),
                    )),
                    None => Err(Reset),
                };
            }
            if !s.ack_enabled {
                s.indexed.extend(events);
                s.envelopes.extend(envelopes);
                return Ok(hec(200, 0, "Success"));
            }
            let id = s.next_ack;
            s.next_ack += 1;
            let ready = match (fault, s.index_after) {
                (Some(Fault::NeverIndexed), _) => Ready::Never,
                (_, Some(after)) => Ready::At(std::time::Instant::now() + after),
                (_, None) => Ready::AfterQueries(s.ack_delay),
            };
            s.pending.insert(
                id,
                Pending {
                    events,
                    envelopes,
                    ready,
                },
            );
            s.max_pending = s.max_pending.max(s.pending.len());
            Ok(reply(
                200,
                json!({"text": "Success", "code": 0, "ackId": id}),
            ))
        }
        _ => Ok(hec(
            404,
            404,
            "The requested URL was not found on this server.",
        )),
    }
}
