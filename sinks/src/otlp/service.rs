//! Sends export requests over gRPC (tonic) or HTTP/protobuf (reqwest) and
//! classifies the answers as the OTLP specification says: gRPC codes
//! CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and
//! DATA_LOSS are retried, RESOURCE_EXHAUSTED only with a `RetryInfo`
//! (whose delay is honored); HTTP 429, 502, 503 and 504 are retried
//! (honoring `Retry-After`); UNAUTHENTICATED/PERMISSION_DENIED and 401/403
//! are fatal; the rest is rejected. A `partial_success` names how many
//! records the receiver dropped, not which: it is logged and counted, and
//! the request is not retried, as the specification asks.

use super::config::{BodyEncoding, Protocol, Signal};
use super::metrics::metrics_request;
use super::request_builder::export_request;
use crate::batch::Batch;
use crate::deliver::{Outcome, Service};
use crate::health::{self, Unhealthy};
use crate::http::{read_response, transport_outcome, Compression};
use crate::secret::Secret;
use lumen_schemas::Schema;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// `google.rpc.Status`, the error detail OTLP receivers send.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The delay a `RetryInfo` in a `google.rpc.Status` asks for.
pub fn retry_delay(status_details: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(status_details).ok()?;
    let info = status
        .details
        .iter()
        .find(|d| d.type_url.ends_with("google.rpc.RetryInfo"))?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    Some(Duration::new(
        u64::try_from(delay.seconds).ok()?,
        u32::try_from(delay.nanos).unwrap_or(0),
    ))
}

/// The outcome of a gRPC error status.
pub fn classify_grpc(status: &tonic::Status) -> Outcome {
    use tonic::Code;
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    let after = retry_delay(status.details());
    match status.code() {
        Code::Cancelled | Code::DeadlineExceeded | Code::Unavailable | Code::DataLoss => {
            Outcome::Retry {
                reason,
                after,
                // The request may have been taken before the failure.
                ambiguous: true,
            }
        }
        Code::Aborted | Code::OutOfRange => Outcome::Retry {
            reason,
            after,
            ambiguous: false,
        },
        Code::ResourceExhausted if after.is_some() => Outcome::Retry {
            reason,
            after,
            ambiguous: false,
        },
        Code::Unauthenticated | Code::PermissionDenied => Outcome::Fatal { reason },
        _ => Outcome::Reject { reason },
    }
}

/// A tonic codec that sends an already encoded export request as is and
/// decodes the response with prost. Logs' and metrics' responses have the
/// same wire form (`partial_success` = 1 holding the rejected count = 1 and
/// `error_message` = 2), so one decoder reads both.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = ExportLogsServiceResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ExportLogsServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ExportLogsServiceResponse>, tonic::Status> {
        ExportLogsServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable response: {e}")))
    }
}

#[derive(Debug)]
pub struct OtlpService {
    pub protocol: Protocol,
    pub signal: Signal,
    /// The gRPC client (requests are sent pre-encoded, see [`RawCodec`]).
    pub grpc: Option<tonic::client::Grpc<Channel>>,
    pub http: reqwest::Client,
    /// HTTP: the full `/v1/logs` URL; gRPC: the endpoint.
    pub url: String,
    pub headers: Vec<(String, Secret)>,
    pub compression: Compression,
    pub schema: Schema,
    pub body: BodyEncoding,
    /// Log records receivers dropped in partial successes.
    pub partially_rejected: Arc<AtomicU64>,
}

impl OtlpService {
    fn partial(&self, partial: Option<ExportLogsPartialSuccess>) {
        let Some(p) = partial else { return };
        if p.rejected_log_records > 0 || !p.error_message.is_empty() {
            self.partially_rejected
                .fetch_add(p.rejected_log_records.max(0) as u64, Ordering::Relaxed);
            let what = match self.signal {
                Signal::Logs => "log records",
                Signal::Metrics => "data points",
            };
            tracing::warn!(
                endpoint = %self.url,
                rejected = p.rejected_log_records,
                what,
                error = %p.error_message,
                "otlp receiver accepted the request but dropped some of it (partial success); not retried, as OTLP specifies"
            );
        }
    }

    /// Sends one encoded export request; the outcome for all its records.
    pub async fn export(&self, request: Vec<u8>) -> Outcome {
        match self.protocol {
            Protocol::Grpc => match self.call_grpc(request).await {
                Ok(resp) => {
                    self.partial(resp.partial_success);
                    Outcome::Delivered
                }
                Err(GrpcFailure::Setup(reason)) => Outcome::Fatal { reason },
                Err(GrpcFailure::NotReady(e)) => Outcome::Retry {
                    reason: format!("gRPC channel not ready: {e}"),
                    after: None,
                    ambiguous: false,
                },
                Err(GrpcFailure::Status(status)) => classify_grpc(&status),
            },
            Protocol::Http => self.export_http(request).await,
        }
    }

    /// The start-up check: an empty export request, which a receiver
    /// answers with success when it accepts the sink's requests.
    pub async fn probe(&self) -> Result<(), Unhealthy> {
        match self.protocol {
            Protocol::Grpc => match self.call_grpc(Vec::new()).await {
                Ok(_) => Ok(()),
                Err(GrpcFailure::Setup(reason)) => {
                    Err(Unhealthy::misconfigured(reason, health::FIX_CREDENTIALS))
                }
                Err(GrpcFailure::NotReady(e)) => Err(Unhealthy::from_transport(&e)),
                Err(GrpcFailure::Status(status)) => Err(grpc_health(&status)),
            },
            Protocol::Http => health::answer(self.call_http(Vec::new()).await, |status, body| {
                format!("HTTP {status}: {}", http_detail(body))
            })
            .await
            .map(drop),
        }
    }

    async fn call_grpc(&self, request: Vec<u8>) -> Result<ExportLogsServiceResponse, GrpcFailure> {
        let Some(client) = &self.grpc else {
            return Err(GrpcFailure::Setup("internal: no gRPC client".into()));
        };
        let mut client = client.clone();
        let mut req = tonic::Request::new(bytes::Bytes::from(request));
        for (name, value) in &self.headers {
            let (Ok(key), Ok(val)) = (
                tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()),
                tonic::metadata::MetadataValue::try_from(value.expose()),
            ) else {
                return Err(GrpcFailure::Setup(format!(
                    "header `{name}` cannot be sent as gRPC metadata"
                )));
            };
            req.metadata_mut().insert(key, val);
        }
        client.ready().await.map_err(GrpcFailure::NotReady)?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(self.signal.grpc_path());
        client
            .unary(req, path, RawCodec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(GrpcFailure::Status)
    }

    async fn call_http(&self, request: Vec<u8>) -> Result<reqwest::Response, reqwest::Error> {
        let (body, encoding) = self.compression.apply(bytes::Bytes::from(request));
        let mut req = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(body);
        if let Some(enc) = encoding {
            req = req.header(CONTENT_ENCODING, enc);
        }
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.expose());
        }
        req.send().await
    }

    async fn export_http(&self, request: Vec<u8>) -> Outcome {
        let resp = match self.call_http(request).await {
            Ok(r) => r,
            Err(e) => return transport_outcome(&e),
        };
        let (status, after, body) = match read_response(resp, &self.url).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        if status.is_success() {
            match ExportLogsServiceResponse::decode(body.as_ref()) {
                Ok(r) => self.partial(r.partial_success),
                Err(e) => {
                    tracing::warn!(endpoint = %self.url, error = %e, "otlp: unreadable success response")
                }
            }
            return Outcome::Delivered;
        }
        let reason = format!("HTTP {status}: {}", http_detail(&body));
        match status.as_u16() {
            429 | 502 | 503 | 504 => Outcome::Retry {
                reason,
                after,
                ambiguous: status.as_u16() == 504,
            },
            401 | 403 => Outcome::Fatal { reason },
            _ => Outcome::Reject { reason },
        }
    }
}

/// Why a gRPC export got no answer to classify, or which error it got.
enum GrpcFailure {
    /// The request could not be made (metadata).
    Setup(String),
    /// The channel could not connect (refused, TLS, …).
    NotReady(tonic::transport::Error),
    Status(tonic::Status),
}

/// An HTTP error answer's message: a `google.rpc.Status` or the body's start.
fn http_detail(body: &[u8]) -> String {
    RpcStatus::decode(body)
        .map(|s| s.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

/// What a gRPC error status says of the receiver at start-up: the codes
/// OTLP retries are transient (so is RESOURCE_EXHAUSTED, which a receiver
/// answers while it sheds load); credentials and TLS need a fix; anything
/// else (UNIMPLEMENTED: not an OTLP logs receiver) is the endpoint.
fn grpc_health(status: &tonic::Status) -> Unhealthy {
    use tonic::Code;
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        _ if health::is_tls_failure(status) => {
            Unhealthy::misconfigured(crate::http::error_chain(status), health::FIX_TLS)
        }
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Unavailable
        | Code::DataLoss
        | Code::Aborted
        | Code::OutOfRange
        | Code::ResourceExhausted => Unhealthy::unavailable(reason),
        Code::Unauthenticated | Code::PermissionDenied => {
            Unhealthy::misconfigured(reason, health::FIX_CREDENTIALS)
        }
        _ => Unhealthy::misconfigured(reason, health::FIX_ENDPOINT),
    }
}

impl Service for OtlpService {
    async fn send(&self, batch: &Batch, pending: &[usize]) -> Vec<Outcome> {
        let (request, decided) = match self.signal {
            Signal::Logs => export_request(batch, pending, self.schema, self.body),
            Signal::Metrics => metrics_request(batch, pending),
        };
        if decided.iter().all(Option::is_some) {
            return decided.into_iter().flatten().collect();
        }
        let outcome = self.export(request).await;
        decided
            .into_iter()
            .map(|d| d.unwrap_or_else(|| outcome.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_delays_and_codes_are_classified_as_otlp_says() {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: 2,
                nanos: 500_000_000,
            }),
        };
        let status = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        let details = status.encode_to_vec();
        assert_eq!(retry_delay(&details), Some(Duration::from_millis(2500)));
        let exhausted = tonic::Status::with_details(
            tonic::Code::ResourceExhausted,
            "slow down",
            details.into(),
        );
        assert!(matches!(
            classify_grpc(&exhausted),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_millis(2500)
        ));
        // Without RetryInfo, RESOURCE_EXHAUSTED is not retryable.
        let plain = tonic::Status::resource_exhausted("full");
        assert!(matches!(classify_grpc(&plain), Outcome::Reject { .. }));
        assert!(matches!(
            classify_grpc(&tonic::Status::unavailable("down")),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify_grpc(&tonic::Status::unauthenticated("who")),
            Outcome::Fatal { .. }
        ));
        assert!(matches!(
            classify_grpc(&tonic::Status::invalid_argument("bad")),
            Outcome::Reject { .. }
        ));
    }
}
