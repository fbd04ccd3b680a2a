//! The `otlp` sink: events as OTLP logs, over gRPC (tonic, the official
//! protobuf types from `opentelemetry-proto`) or HTTP/protobuf.
//!
//! Split like the other sinks: [`config`], [`wire`] (protobuf written
//! directly: the event's JSON as a structured `AnyValue`),
//! [`request_builder`] (the OTel logs data model),
//! [`service`] (send, classify as the OTLP specification says), and this
//! module: the client, a start-up check, the shared delivery loop.

#[cfg(test)]
pub mod body;
pub mod config;
pub mod metrics;
pub mod request_builder;
pub mod service;
pub mod wire;

pub use config::OtlpConfig;

use crate::batch::Encoder;
use crate::deliver::{Delivery, DeliveryMetrics};
use crate::health::{HealthcheckConfig, Unhealthy};
use crate::http::{self, Compression};
use crate::{ComponentMetrics, Envelope};
use config::Protocol;
use lumen_schemas::{Event, Schema};
use service::OtlpService;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why the sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("otlp: {0}")]
    Config(String),
    #[error("otlp: {0}")]
    Client(#[from] http::ClientError),
}

/// The body source: the event's document in the schema (also what a dead
/// letter keeps); the service turns it into the log record.
#[derive(Debug)]
struct DocEncoder(Schema);

impl Encoder for DocEncoder {
    fn encode(&self, event: &Event, buf: &mut Vec<u8>) -> Range<usize> {
        let start = buf.len();
        self.0.encode(event, buf);
        start..buf.len()
    }

    /// Log records are built from the events (resource, attributes).
    const KEEPS_EVENTS: bool = true;
}

/// A configured sink, checked and ready to run.
#[derive(Debug)]
pub struct OtlpSink {
    config: OtlpConfig,
    delivery: Delivery<OtlpService>,
}

impl OtlpSink {
    /// Validates the config and builds the client (gRPC connects lazily).
    pub fn new(
        name: &str,
        config: OtlpConfig,
        data_dir: &Path,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Self, OtlpError> {
        config.validate().map_err(OtlpError::Config)?;
        let http = http::client(&config.tls, &config.request)?;
        let grpc = match config.protocol {
            Protocol::Http => None,
            Protocol::Grpc => Some(grpc_client(&config)?),
        };
        let url = match config.protocol {
            Protocol::Http => config.http_url(),
            Protocol::Grpc => config.endpoint.clone(),
        };
        let service = OtlpService {
            protocol: config.protocol,
            signal: config.signal,
            grpc,
            http,
            url,
            headers: config
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            compression: config.compression,
            schema: config.schema,
            body: config.body,
            partially_rejected: Arc::new(AtomicU64::new(0)),
        };
        let delivery = Delivery::new(
            name,
            service,
            config.request.clone(),
            config.dead_letter_path.clone(),
            data_dir,
            metrics,
        )
        .behind(&config.buffer);
        Ok(OtlpSink { config, delivery })
    }

    /// The sink's delivery counters (retries, dead letters, duplicates).
    pub fn delivery_metrics(&self) -> Arc<DeliveryMetrics> {
        self.delivery.delivery.clone()
    }

    /// Log records receivers dropped in partial successes.
    pub fn partially_rejected(&self) -> Arc<AtomicU64> {
        self.delivery.service.partially_rejected.clone()
    }

    /// What to do when the start-up check fails.
    pub fn healthcheck_config(&self) -> HealthcheckConfig {
        self.config.healthcheck
    }

    /// Start-up: an empty export request, which a receiver answers with
    /// success when it accepts the sink's requests. Also the probe of a
    /// sink waiting for its receiver (see [`crate::health`]).
    pub async fn start(&self) -> Result<(), Unhealthy> {
        if !self.config.healthcheck.enabled {
            return Ok(());
        }
        self.delivery
            .service
            .probe()
            .await
            .map_err(|u| u.context(&self.config.endpoint))?;
        tracing::info!(component = %self.delivery.name, endpoint = %self.config.endpoint, protocol = ?self.config.protocol, "otlp healthcheck passed");
        Ok(())
    }

    /// Delivers every event received until the channel closes.
    pub async fn run(self, rx: mpsc::Receiver<Envelope>) {
        let encoder = DocEncoder(self.config.schema);
        self.delivery.run(self.config.batch, encoder, rx).await;
    }
}

/// A lazily connecting gRPC client with the sink's TLS (rustls, ALPN h2),
/// timeouts and compression.
fn grpc_client(
    config: &OtlpConfig,
) -> Result<tonic::client::Grpc<tonic::transport::Channel>, OtlpError> {
    let endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
        .map_err(|e| OtlpError::Config(format!("endpoint `{}`: {e}", config.endpoint)))?
        .timeout(config.request.timeout())
        .connect_timeout(config.request.timeout().min(Duration::from_secs(10)));
    let channel = if config.endpoint.starts_with("https://") {
        let tls = config
            .tls
            .client_config()
            .map_err(http::ClientError::from)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http2()
            .build();
        endpoint.connect_with_connector_lazy(connector)
    } else {
        endpoint.connect_lazy()
    };
    let client = tonic::client::Grpc::new(channel);
    Ok(match config.compression {
        Compression::Gzip => client
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        Compression::None => client,
    })
}
