//! An OTLP logs and metrics receiver with the official protobuf types
//! (`opentelemetry-proto`): the gRPC `LogsService/Export` and
//! `MetricsService/Export` (tonic) and `POST /v1/logs`, `/v1/metrics`
//! (HTTP/protobuf), answered as the OTLP specification
//! says — success with an optional `partial_success`, gRPC error statuses
//! with `google.rpc.RetryInfo` details, HTTP 429/503 with `Retry-After` —
//! with faults to inject.

use super::{serve, Resp};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use lumen_sinks::otlp::service::{ProtoAny, ProtoDuration, RetryInfo, RpcStatus};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use prost::Message;
use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub enum Fault {
    /// gRPC: answer with this code (and a RetryInfo delay).
    Grpc(tonic::Code, Option<Duration>),
    /// HTTP: answer with this status (and `Retry-After` seconds).
    Http(u16, Option<u64>),
}

#[derive(Debug, Default)]
pub struct State {
    /// Every accepted export request (the sink's start-up check sends an
    /// empty one).
    pub requests: Vec<ExportLogsServiceRequest>,
    /// Every accepted metrics export request.
    pub metrics: Vec<ExportMetricsServiceRequest>,
    pub faults: VecDeque<Fault>,
    /// Answer accepted requests with this partial success.
    pub partial: Option<(i64, String)>,
    /// A header (lowercase name) every request must carry.
    pub required: Option<(String, String)>,
    pub gzip_requests: u64,
    /// Every export is answered gRPC UNAVAILABLE / HTTP 503 ("warming
    /// up"), as a collector that is starting answers.
    pub unavailable: bool,
}

#[derive(Clone, Debug)]
pub struct OtlpPeer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

fn status_details(delay: Duration) -> Bytes {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    RpcStatus {
        code: 8,
        message: "retry later".into(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: info.encode_to_vec(),
        }],
    }
    .encode_to_vec()
    .into()
}

#[derive(Clone)]
struct Grpc(Arc<Mutex<State>>);

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut s = self.0.lock().unwrap();
        if s.unavailable {
            return Err(tonic::Status::unavailable("warming up"));
        }
        if let Some((name, value)) = &s.required {
            let given = request
                .metadata()
                .get(name.as_str())
                .and_then(|v| v.to_str().ok());
            if given != Some(value.as_str()) {
                return Err(tonic::Status::unauthenticated(
                    "missing or wrong credentials",
                ));
            }
        }
        if let Some(Fault::Grpc(code, delay)) = s.faults.front().cloned() {
            s.faults.pop_front();
            return Err(match delay {
                Some(d) => tonic::Status::with_details(code, "injected", status_details(d)),
                None => tonic::Status::new(code, "injected"),
            });
        }
        let request = request.into_inner();
        let records = !request.resource_logs.is_empty();
        s.requests.push(request);
        Ok(tonic::Response::new(response(&s, records)))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut s = self.0.lock().unwrap();
        if let Some(Fault::Grpc(code, delay)) = s.faults.front().cloned() {
            s.faults.pop_front();
            return Err(match delay {
                Some(d) => tonic::Status::with_details(code, "injected", status_details(d)),
                None => tonic::Status::new(code, "injected"),
            });
        }
        s.metrics.push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Success; with the configured partial success when records came (an
/// empty request has nothing to drop).
fn response(s: &State, records: bool) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: s.partial.as_ref().filter(|_| records).map(|(n, m)| {
            ExportLogsPartialSuccess {
                rejected_log_records: *n,
                error_message: m.clone(),
            }
        }),
    }
}

async fn http(
    state: Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Resp, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = |status: u16, bytes: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(bytes)));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("content-type", "application/x-protobuf".parse().unwrap());
        r
    };
    let metrics = parts.uri.path() == "/v1/metrics";
    if (parts.uri.path() != "/v1/logs" && !metrics) || parts.method != "POST" {
        return Ok(reply(404, Vec::new()));
    }
    let mut s = state.lock().unwrap();
    if s.unavailable {
        let st = RpcStatus {
            code: 14,
            message: "warming up".into(),
            details: vec![],
        };
        return Ok(reply(503, st.encode_to_vec()));
    }
    if let Some((name, value)) = &s.required {
        let given = parts
            .headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok());
        if given != Some(value.as_str()) {
            let st = RpcStatus {
                code: 16,
                message: "missing or wrong credentials".into(),
                details: vec![],
            };
            return Ok(reply(401, st.encode_to_vec()));
        }
    }
    let gzip = parts
        .headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body: Vec<u8> = if gzip {
        s.gzip_requests += 1;
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return Ok(reply(400, Vec::new()));
        }
        out
    } else {
        body.to_vec()
    };
    if let Some(Fault::Http(code, after)) = s.faults.front().cloned() {
        s.faults.pop_front();
        let st = RpcStatus {
            code: 14,
            message: "injected".into(),
            details: vec![],
        };
        let mut r = reply(code, st.encode_to_vec());
        if let Some(a) = after {
            r.headers_mut()
                .insert("retry-after", a.to_string().parse().unwrap());
        }
        return Ok(r);
    }
    if metrics {
        let Ok(request) = ExportMetricsServiceRequest::decode(body.as_slice()) else {
            return Ok(reply(400, Vec::new()));
        };
        s.metrics.push(request);
        return Ok(reply(
            200,
            ExportMetricsServiceResponse::default().encode_to_vec(),
        ));
    }
    let Ok(request) = ExportLogsServiceRequest::decode(body.as_slice()) else {
        let st = RpcStatus {
            code: 3,
            message: "cannot decode ExportLogsServiceRequest".into(),
            details: vec![],
        };
        return Ok(reply(400, st.encode_to_vec()));
    };
    let records = !request.resource_logs.is_empty();
    s.requests.push(request);
    Ok(reply(200, response(&s, records).encode_to_vec()))
}

impl OtlpPeer {
    /// Serves gRPC (`grpc = true`) or HTTP/protobuf on 127.0.0.1.
    pub async fn start(grpc: bool) -> OtlpPeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let peer = OtlpPeer {
            addr,
            state: state.clone(),
        };
        if grpc {
            let svc = LogsServiceServer::new(Grpc(state.clone()))
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
            let metrics = MetricsServiceServer::new(Grpc(state))
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
            tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(svc)
                    .add_service(metrics)
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                    .await;
            });
        } else {
            serve(listener, None, move |req| http(state.clone(), req));
        }
        peer
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// How many log records arrived per OCSF `metadata.uid` of the body.
    pub fn arrivals(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        self.with(|s| {
            for req in &s.requests {
                for rl in &req.resource_logs {
                    for sl in &rl.scope_logs {
                        for r in &sl.log_records {
                            let uid = r.body.as_ref().and_then(|b| field(b, &["metadata", "uid"]));
                            *out.entry(uid.unwrap_or_else(|| "?".into())).or_default() += 1;
                        }
                    }
                }
            }
        });
        out
    }
}

/// A string at `path` in a map `AnyValue`.
pub fn field(v: &AnyValue, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for key in path {
        let Some(Value::KvlistValue(kv)) = &cur.value else {
            return None;
        };
        cur = kv.values.iter().find(|k| k.key == *key)?.value.as_ref()?;
    }
    match &cur.value {
        Some(Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}
