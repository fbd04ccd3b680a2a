//! The `splunk_hec` sink: events to Splunk's HTTP Event Collector, as JSON
//! envelopes (`/services/collector/event`) or raw lines
//! (`/services/collector/raw`), acknowledged upstream only once Splunk
//! reports them indexed (indexer acknowledgement), on by default.
//!
//! Split like Vector's sinks: [`config`], [`encoder`] (envelope per event),
//! [`request_builder`] (the request for some events of a batch),
//! [`service`] (sends it; HEC status codes, ack polling), and this module,
//! the sink: start-up checks, then the shared delivery loop.

pub mod config;
pub mod encoder;
pub mod request_builder;
pub mod service;

pub use config::SplunkHecConfig;

use crate::deliver::{Delivery, DeliveryMetrics};
use crate::http::{self, error_chain};
use crate::{ComponentMetrics, Envelope};
use config::EndpointTarget;
use encoder::HecEncoder;
use reqwest::Method;
use service::{HecReply, HecService};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SplunkHecError {
    #[error("splunk_hec: {0}")]
    Config(String),
    #[error("splunk_hec: {0}")]
    Client(#[from] http::ClientError),
    #[error("splunk_hec healthcheck failed for {endpoint}: {reason} (set healthcheck = false to start anyway)")]
    Healthcheck { endpoint: String, reason: String },
}

/// A configured sink, checked and ready to run.
#[derive(Debug)]
pub struct SplunkHecSink {
    config: SplunkHecConfig,
    delivery: Delivery<HecService>,
}

impl SplunkHecSink {
    /// Validates the config and builds the client; no network yet.
    pub fn new(
        name: &str,
        config: SplunkHecConfig,
        data_dir: &Path,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Self, SplunkHecError> {
        config.validate().map_err(SplunkHecError::Config)?;
        // One URL: parsed and checked like the elasticsearch endpoints.
        let endpoints = http::Endpoints::new(std::slice::from_ref(&config.endpoint))
            .map_err(|e| SplunkHecError::Config(e.replacen("endpoints", "endpoint", 1)))?;
        let endpoint = endpoints.all()[0].clone();
        let client = http::client(&config.tls, &config.request)?;
        let mut raw_query = vec![("source".to_owned(), config.source.clone())];
        if let Some(st) = &config.sourcetype {
            raw_query.push(("sourcetype".to_owned(), st.clone()));
        }
        if let Some(index) = &config.index {
            raw_query.push(("index".to_owned(), index.clone()));
        }
        let service = HecService {
            client,
            endpoint,
            token: config.default_token.clone(),
            channel: service::new_channel(),
            target: config.endpoint_target,
            raw_query,
            acks: config.acknowledgements.clone(),
            compression: config.compression,
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
        Ok(SplunkHecSink { config, delivery })
    }

    /// The sink's delivery counters (retries, dead letters, duplicates).
    pub fn delivery_metrics(&self) -> Arc<DeliveryMetrics> {
        self.delivery.delivery.clone()
    }

    /// Start-up: HEC's health (`GET /services/collector/health`), then the
    /// token: an empty event request is answered "No data" (code 5) when
    /// the token is good, 401/403 when it is not.
    pub async fn start(&self) -> Result<(), SplunkHecError> {
        if !self.config.healthcheck {
            return Ok(());
        }
        let fail = |reason: String| SplunkHecError::Healthcheck {
            endpoint: self.delivery.service.endpoint.clone(),
            reason,
        };
        let resp = self
            .delivery
            .service
            .client
            .get(format!(
                "{}/services/collector/health",
                self.delivery.service.endpoint
            ))
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| fail(error_chain(&e)))?;
        if !status.is_success() {
            return Err(fail(format!(
                "HEC is unhealthy: {}",
                HecReply::parse(&body).describe(status)
            )));
        }
        let resp = self
            .delivery
            .service
            .request(Method::POST, "/services/collector/event", &[])
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| fail(error_chain(&e)))?;
        let reply = HecReply::parse(&body);
        match (status.as_u16(), reply.code) {
            (400, Some(5)) | (200, _) => {}
            (401 | 403, _) => {
                return Err(fail(format!(
                    "invalid or disabled token: {}",
                    reply.describe(status)
                )))
            }
            _ => return Err(fail(reply.describe(status))),
        }
        tracing::info!(component = %self.delivery.name, endpoint = %self.delivery.service.endpoint, channel = %self.delivery.service.channel, raw = self.config.endpoint_target == EndpointTarget::Raw, "splunk_hec healthcheck passed");
        Ok(())
    }

    /// Delivers every event received until the channel closes.
    pub async fn run(self, rx: mpsc::Receiver<Envelope>) {
        let encoder = HecEncoder::new(&self.config);
        self.delivery.run(self.config.batch, encoder, rx).await;
    }
}
