//! The `splunk_hec` sink: events to Splunk's HTTP Event Collector, as JSON
//! envelopes (`/services/collector/event`) or raw lines
//! (`/services/collector/raw`), acknowledged upstream only once Splunk
//! reports them indexed (indexer acknowledgement), on by default.
//!
//! Split like Vector's sinks: [`config`], [`encoder`] (envelope per event),
//! [`request_builder`] (the request for some events of a batch),
//! [`service`] (sends it; HEC status codes), [`acks`] (the task that polls
//! HEC for the ackIds of every request waiting to be indexed), and this
//! module, the sink: start-up checks, then the shared delivery loop beside
//! the ack task.

pub mod acks;
pub mod config;
pub mod encoder;
pub mod request_builder;
pub mod service;

pub use config::SplunkHecConfig;

use crate::deliver::{Delivery, DeliveryMetrics};
use crate::health::{HealthcheckConfig, Unhealthy};
use crate::http;
use crate::{ComponentMetrics, Envelope};
use config::EndpointTarget;
use encoder::HecEncoder;
use request_builder::HecClient;
use reqwest::Method;
use service::{HecReply, HecService};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why the sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SplunkHecError {
    #[error("splunk_hec: {0}")]
    Config(String),
    #[error("splunk_hec: {0}")]
    Client(#[from] http::ClientError),
}

/// A configured sink, checked and ready to run.
#[derive(Debug)]
pub struct SplunkHecSink {
    config: SplunkHecConfig,
    delivery: Delivery<HecService>,
    /// With indexer acknowledgement on: the ack task, run beside delivery.
    acks: Option<acks::AckPoller>,
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
        let hec = HecClient {
            client,
            endpoint,
            token: config.default_token.clone(),
            channel: service::new_channel(),
        };
        let (ack_client, ack_poller) = if config.acknowledgements.indexer_acknowledgements_enabled {
            let (c, p) = acks::new(hec.clone(), config.acknowledgements.clone());
            (Some(c), Some(p))
        } else {
            (None, None)
        };
        let service = HecService {
            hec,
            target: config.endpoint_target,
            raw_query,
            acks: ack_client,
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
        Ok(SplunkHecSink {
            config,
            delivery,
            acks: ack_poller,
        })
    }

    /// The sink's delivery counters (retries, dead letters, duplicates).
    pub fn delivery_metrics(&self) -> Arc<DeliveryMetrics> {
        self.delivery.delivery.clone()
    }

    /// What to do when the start-up check fails.
    pub fn healthcheck_config(&self) -> HealthcheckConfig {
        self.config.healthcheck
    }

    /// Start-up: HEC's health (`GET /services/collector/health`), then the
    /// token: an empty event request is answered "No data" (code 5) when
    /// the token is good, 401/403 when it is not. Also the probe of a sink
    /// waiting for its receiver (see [`crate::health`]).
    pub async fn start(&self) -> Result<(), Unhealthy> {
        if !self.config.healthcheck.enabled {
            return Ok(());
        }
        let hec = &self.delivery.service.hec;
        let endpoint = &hec.endpoint;
        let health = hec
            .client
            .get(format!("{endpoint}/services/collector/health"))
            .send()
            .await;
        let (status, reply) = read_reply(health).await.map_err(|u| u.context(endpoint))?;
        if !status.is_success() {
            return Err(classify(status, &reply).context(&format!("{endpoint}: HEC is unhealthy")));
        }
        let token = hec
            .request(Method::POST, "/services/collector/event", &[])
            .send()
            .await;
        let (status, reply) = read_reply(token).await.map_err(|u| u.context(endpoint))?;
        match (status.as_u16(), reply.code) {
            (400, Some(5)) | (200, _) => {}
            _ => return Err(classify(status, &reply).context(endpoint)),
        }
        tracing::info!(component = %self.delivery.name, endpoint = %hec.endpoint, channel = %hec.channel, raw = self.config.endpoint_target == EndpointTarget::Raw, "splunk_hec healthcheck passed");
        Ok(())
    }

    /// Delivers every event received until the channel closes.
    pub async fn run(self, rx: mpsc::Receiver<Envelope>) {
        let encoder = HecEncoder::new(&self.config);
        let delivery = self.delivery.run(self.config.batch, encoder, rx);
        match self.acks {
            // The ack task ends once delivery has ended (its client with it)
            // and no ack is pending.
            Some(acks) => {
                tokio::join!(delivery, acks.run());
            }
            None => delivery.await,
        }
    }
}

/// The status and HEC reply of a start-up request; a request that got no
/// answer is classified by its transport error.
async fn read_reply(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<(reqwest::StatusCode, HecReply), Unhealthy> {
    let resp = sent.map_err(|e| Unhealthy::from_transport(&e))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| Unhealthy::from_transport(&e))?;
    Ok((status, HecReply::parse(&body)))
}

/// What an answer to a start-up request says of the receiver: the token
/// codes (1-4) need a fix; internal error (8) and busy (9) pass by
/// themselves; otherwise the status says (the health endpoint's "unhealthy"
/// answers are 503s: transient).
fn classify(status: reqwest::StatusCode, reply: &HecReply) -> Unhealthy {
    let reason = reply.describe(status);
    match reply.code {
        Some(1..=4) => Unhealthy::misconfigured(
            format!("invalid or disabled token: {reason}"),
            "check default_token against the HEC token in Splunk (Settings > Data inputs > HTTP Event Collector) and that it is enabled",
        ),
        Some(8 | 9) => Unhealthy::unavailable(reason),
        _ => Unhealthy::from_status(status.as_u16(), reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u32, text: &str) -> HecReply {
        HecReply::parse(format!(r#"{{"text":"{text}","code":{code}}}"#).as_bytes())
    }

    #[test]
    fn start_up_answers_are_transient_or_need_a_fix_as_hec_codes_say() {
        use reqwest::StatusCode as S;
        for (status, code) in [(503, 9), (500, 8), (503, 18), (503, 19), (503, 20)] {
            let u = classify(S::from_u16(status).unwrap(), &reply(code, "x"));
            assert!(
                matches!(u, Unhealthy::Unavailable { .. }),
                "{status} {code}: {u:?}"
            );
        }
        for (status, code) in [(403, 1), (401, 2), (401, 3), (403, 4)] {
            let u = classify(S::from_u16(status).unwrap(), &reply(code, "x"));
            assert!(
                matches!(&u, Unhealthy::Misconfigured { reason, .. } if reason.contains("token")),
                "{status} {code}: {u:?}"
            );
        }
        // No HEC body: the status decides.
        let u = classify(S::BAD_GATEWAY, &HecReply::parse(b"<html>"));
        assert!(matches!(u, Unhealthy::Unavailable { .. }));
        let u = classify(S::NOT_FOUND, &HecReply::parse(b""));
        assert!(matches!(u, Unhealthy::Misconfigured { .. }));
    }
}
