//! The `elasticsearch` sink: events through the bulk API, as NDJSON.
//!
//! Split like Vector's sinks: [`config`] (keys), [`encoder`] (action line
//! and document per event), [`request_builder`] (the bulk request for some
//! events of a batch), [`service`] (sends it, classifies the answer per
//! document), [`templates`] (ECS mappings installed at start-up), and this
//! module, the sink: start-up checks, then the shared delivery loop
//! ([`crate::deliver`]) over batches.

pub mod config;
pub mod encoder;
pub mod request_builder;
pub mod service;
pub mod templates;

pub use config::ElasticsearchConfig;

use crate::deliver::{Delivery, DeliveryMetrics};
use crate::health::{self, HealthcheckConfig, Unhealthy};
use crate::http::{self, Endpoints};
use crate::{ComponentMetrics, Envelope};
use encoder::BulkEncoder;
use lumen_schemas::Schema;
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use service::{describe_failure, BulkService};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why the sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ElasticsearchError {
    #[error("elasticsearch: {0}")]
    Config(String),
    #[error("elasticsearch: {0}")]
    Client(#[from] http::ClientError),
}

/// A configured sink, checked and ready to run.
#[derive(Debug)]
pub struct ElasticsearchSink {
    config: ElasticsearchConfig,
    delivery: Delivery<BulkService>,
}

impl ElasticsearchSink {
    /// Validates the config and builds the client; no network yet.
    pub fn new(
        name: &str,
        config: ElasticsearchConfig,
        data_dir: &Path,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Self, ElasticsearchError> {
        config.validate().map_err(ElasticsearchError::Config)?;
        let endpoints = Endpoints::new(&config.endpoints).map_err(ElasticsearchError::Config)?;
        let client = http::client(&config.tls, &config.request)?;
        let service = BulkService {
            client,
            endpoints,
            auth: config.auth.clone(),
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
        Ok(ElasticsearchSink { config, delivery })
    }

    /// The sink's delivery counters (retries, dead letters, duplicates).
    pub fn delivery_metrics(&self) -> Arc<DeliveryMetrics> {
        self.delivery.delivery.clone()
    }

    /// What to do when the start-up check fails.
    pub fn healthcheck_config(&self) -> HealthcheckConfig {
        self.config.healthcheck
    }

    /// Start-up: the healthcheck, then the templates, each as configured.
    /// Also the probe of a sink waiting for its receiver (see [`crate::health`]).
    pub async fn start(&self) -> Result<(), Unhealthy> {
        if self.config.healthcheck.enabled {
            self.healthcheck().await?;
        }
        if self.config.install_templates {
            self.install_templates().await?;
        }
        Ok(())
    }

    /// `GET /_cluster/health` on every endpoint: reachable, credentials
    /// accepted, and not red.
    async fn healthcheck(&self) -> Result<(), Unhealthy> {
        for base in self.delivery.service.endpoints.all() {
            let body = call(
                self.delivery
                    .service
                    .request(Method::GET, format!("{base}/_cluster/health")),
            )
            .await
            .map_err(|u| u.context(base))?;
            #[derive(serde::Deserialize)]
            struct Health {
                status: String,
            }
            let health: Health = serde_json::from_slice(&body).map_err(|e| {
                Unhealthy::misconfigured(
                    format!("{base}: unreadable cluster health: {e}"),
                    health::FIX_ENDPOINT,
                )
            })?;
            if health.status == "red" {
                return Err(Unhealthy::unavailable(format!(
                    "{base}: cluster health is red"
                )));
            }
            tracing::info!(component = %self.delivery.name, endpoint = %base, health = %health.status, "elasticsearch healthcheck passed");
        }
        Ok(())
    }

    /// The ECS component template and the index template using it (ECS
    /// documents only: OCSF documents are mapped by the cluster).
    async fn install_templates(&self) -> Result<(), Unhealthy> {
        if self.config.schema != Schema::Ecs {
            tracing::info!(component = %self.delivery.name, "schema = ocsf: no templates installed; the cluster maps OCSF documents dynamically");
            return Ok(());
        }
        let (index_name, index_body) = templates::index_template(&self.config);
        let puts = [
            (
                format!("_component_template/{}", templates::COMPONENT_TEMPLATE),
                templates::component_template(),
            ),
            (format!("_index_template/{index_name}"), index_body),
        ];
        // Templates are cluster-wide: the first endpoint that takes them
        // is enough; one that cannot be reached hands over to the next.
        let mut last = None;
        'endpoints: for base in self.delivery.service.endpoints.all() {
            for (path, body) in &puts {
                let result = call(
                    self.delivery
                        .service
                        .request(Method::PUT, format!("{base}/{path}"))
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone()),
                )
                .await;
                if let Err(u) = result {
                    last = Some(u.context(&format!(
                        "installing {path} on {base} (install_templates = false skips it)"
                    )));
                    continue 'endpoints;
                }
                tracing::info!(component = %self.delivery.name, endpoint = %base, template = %path, "elasticsearch template installed");
            }
            return Ok(());
        }
        Err(last.unwrap_or_else(|| Unhealthy::misconfigured("no endpoints", health::FIX_ENDPOINT)))
    }

    /// Delivers every event received until the channel closes.
    pub async fn run(self, rx: mpsc::Receiver<Envelope>) {
        let encoder = BulkEncoder::new(&self.config);
        self.delivery.run(self.config.batch, encoder, rx).await;
    }
}

/// Sends a start-up request; its body when the answer is a success, why
/// not otherwise.
async fn call(req: reqwest::RequestBuilder) -> Result<bytes::Bytes, Unhealthy> {
    health::answer(req.send().await, describe_failure).await
}
