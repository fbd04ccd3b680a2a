//! `[sinks.<id>] type = "otlp"`: OTLP logs (or metrics) over gRPC or
//! HTTP/protobuf.

use crate::batch::BatchConfig;
use crate::health::HealthcheckConfig;
use crate::http::Compression;
use crate::request::RequestConfig;
use crate::secret::Secret;
use crate::tls::TlsConfig;
use lumen_schemas::Schema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Components whose events this sink takes.
    pub inputs: Vec<String>,
    /// The buffer in front of the sink (`memory` by default).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    /// gRPC: the collector's URL (`http://collector:4317`); HTTP: its base
    /// URL (`/v1/logs` or `/v1/metrics` is appended when the path is
    /// empty) or the full URL.
    pub endpoint: String,
    /// `logs` (default): every event as a log record; `metrics`: resource
    /// samples as OTLP metrics (other events are rejected).
    #[serde(default)]
    pub signal: Signal,
    #[serde(default)]
    pub protocol: Protocol,
    /// Extra request headers (gRPC metadata), e.g. for authentication.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// `none` (default) or `gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// Schema of the log bodies.
    #[serde(default = "default_schema")]
    pub schema: Schema,
    /// `map` (default): the body is the event as a structured AnyValue
    /// map; `string`: the event's JSON as a string.
    #[serde(default)]
    pub body: BodyEncoding,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// At start-up, send an empty export request (the spec's way to check
    /// a receiver accepts the sink's requests).
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
    /// Where rejected events go; default `<data_dir>/dead-letter/<id>.ndjson`.
    pub dead_letter_path: Option<PathBuf>,
}

fn default_schema() -> Schema {
    Schema::Ocsf
}
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Grpc,
    Http,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    #[default]
    Logs,
    Metrics,
}

impl Signal {
    /// The HTTP path of its export requests.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
        }
    }

    /// The gRPC method of its export requests.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    #[default]
    Map,
    String,
}

impl OtlpConfig {
    /// Rejects settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        self.batch.validate()?;
        self.request.validate()?;
        crate::http::Endpoints::new(std::slice::from_ref(&self.endpoint))
            .map_err(|e| e.replacen("endpoints", "endpoint", 1))?;
        for name in self.headers.keys() {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(format!("headers: `{name}` is not a valid header name"));
            }
        }
        Ok(())
    }

    /// Where HTTP requests go: `<endpoint>/v1/logs` (or `/v1/metrics`)
    /// unless a path is given.
    pub fn http_url(&self) -> String {
        let e = self.endpoint.trim_end_matches('/');
        match reqwest::Url::parse(e) {
            Ok(u) if u.path() == "/" || u.path().is_empty() => {
                format!("{e}{}", self.signal.http_path())
            }
            _ => e.to_owned(),
        }
    }
}
