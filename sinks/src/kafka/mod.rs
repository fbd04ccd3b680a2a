//! The `kafka` sink: events as records of an idempotent librdkafka producer
//! (`acks=all`, zstd), routed by topic and key templates, acknowledged
//! upstream only on a successful delivery report.
//!
//! Split like the other sinks: [`config`] (keys and the librdkafka
//! settings they make), [`encoder`] (routing header + value per event),
//! [`service`] (produce, classify delivery reports), and this module, the
//! sink: start-up metadata check, then the shared delivery loop. librdkafka
//! batches per partition itself; the sink's batches bound how many records
//! wait for their reports at once.

pub mod config;
pub mod encoder;
pub mod service;

pub use config::KafkaConfig;

use crate::deliver::{Delivery, DeliveryMetrics};
use crate::health::{self, HealthcheckConfig, Unhealthy};
use crate::{ComponentMetrics, Envelope};
use config::KafkaEncoding;
use encoder::RecordEncoder;
use lumen_schemas::{Schema, ECS_VERSION, OCSF_VERSION};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, Producer};
use service::KafkaService;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why the sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Config(String),
    #[error("kafka: creating the producer failed: {0}")]
    Producer(String),
}

/// A configured sink, checked and ready to run.
#[derive(Debug)]
pub struct KafkaSink {
    config: KafkaConfig,
    delivery: Delivery<KafkaService>,
}

impl KafkaSink {
    /// Validates the config and creates the producer (which connects in
    /// the background).
    pub fn new(
        name: &str,
        config: KafkaConfig,
        data_dir: &Path,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Self, KafkaError> {
        config.validate().map_err(KafkaError::Config)?;
        let mut client = ClientConfig::new();
        for (k, v) in config.producer_settings() {
            client.set(k, v);
        }
        let producer: FutureProducer = client.create().map_err(|e| {
            // librdkafka names the setting at fault; secrets are not echoed.
            KafkaError::Producer(e.to_string())
        })?;
        let header_names = (!config.headers_key.is_empty()).then(|| {
            let k = &config.headers_key;
            [
                format!("{k}.schema"),
                format!("{k}.schema_version"),
                format!("{k}.kind"),
            ]
        });
        let service = KafkaService {
            producer,
            header_names,
            schema: match config.encoding {
                KafkaEncoding::Json => config.schema.as_str(),
                KafkaEncoding::Native => "native",
            },
            schema_version: match (config.encoding, config.schema) {
                (KafkaEncoding::Native, _) => lumen_schemas::codec::FORMAT_VERSION.to_string(),
                (KafkaEncoding::Json, Schema::Ocsf) => OCSF_VERSION.to_owned(),
                (KafkaEncoding::Json, Schema::Ecs) => ECS_VERSION.to_owned(),
            },
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
        Ok(KafkaSink { config, delivery })
    }

    /// The sink's delivery counters (retries, dead letters, duplicates).
    pub fn delivery_metrics(&self) -> Arc<DeliveryMetrics> {
        self.delivery.delivery.clone()
    }

    /// What to do when the start-up check fails.
    pub fn healthcheck_config(&self) -> HealthcheckConfig {
        self.config.healthcheck
    }

    /// Start-up: the cluster's metadata, within the request timeout (at
    /// most 30 s). Also the probe of a sink waiting for its brokers (see
    /// [`crate::health`]).
    pub async fn start(&self) -> Result<(), Unhealthy> {
        if !self.config.healthcheck.enabled {
            return Ok(());
        }
        let service = self.delivery.service.clone();
        let timeout = self.config.request.timeout().min(Duration::from_secs(30));
        let metadata = tokio::task::spawn_blocking(move || {
            service
                .producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|m| m.brokers().len())
        })
        .await;
        let servers = &self.config.bootstrap_servers;
        match metadata {
            Ok(Ok(brokers)) => {
                tracing::info!(component = %self.delivery.name, brokers, "kafka healthcheck passed");
                Ok(())
            }
            Ok(Err(e)) => Err(metadata_failure(&e).context(servers)),
            Err(e) => Err(Unhealthy::unavailable(format!(
                "the metadata request did not finish: {e}"
            ))
            .context(servers)),
        }
    }

    /// Delivers every event received until the channel closes, then
    /// flushes the producer.
    pub async fn run(self, rx: mpsc::Receiver<Envelope>) {
        let encoder = match RecordEncoder::new(&self.config) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(component = %self.delivery.name, error = %e, "kafka sink cannot start");
                return;
            }
        };
        let service = self.delivery.service.clone();
        self.delivery.run(self.config.batch, encoder, rx).await;
        let _ =
            tokio::task::spawn_blocking(move || service.producer.flush(Duration::from_secs(10)))
                .await;
    }
}

/// What a failed metadata request says of the cluster: authentication and
/// TLS failures need a fix; the rest (brokers down, unreachable, timed out)
/// passes by itself.
fn metadata_failure(e: &rdkafka::error::KafkaError) -> Unhealthy {
    use rdkafka::error::RDKafkaErrorCode as C;
    let reason = e.to_string();
    match e.rdkafka_error_code() {
        Some(
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed,
        ) => Unhealthy::misconfigured(reason, health::FIX_CREDENTIALS),
        Some(C::SSL) => Unhealthy::misconfigured(reason, health::FIX_TLS),
        _ => Unhealthy::unavailable(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn sasl_and_tls_become_librdkafka_settings_that_librdkafka_accepts() {
        let c: KafkaConfig = toml::from_str(
            r#"
inputs = ["x"]
bootstrap_servers = "broker:9093"
topic = "lumen.{{ event.category }}"
sasl.enabled = true
sasl.mechanism = "SCRAM-SHA-512"
sasl.username = "lumen"
sasl.password = "p4ss-w0rd"
tls.enabled = true
tls.verify_hostname = false
librdkafka_options."linger.ms" = "7"
"#,
        )
        .unwrap();
        c.validate().unwrap();
        let s: BTreeMap<String, String> = c.producer_settings().into_iter().collect();
        assert_eq!(s["security.protocol"], "sasl_ssl");
        assert_eq!(s["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(s["ssl.endpoint.identification.algorithm"], "none");
        assert_eq!(s["enable.ssl.certificate.verification"], "true");
        assert_eq!(s["enable.idempotence"], "true");
        assert_eq!(s["acks"], "all");
        assert_eq!(s["compression.type"], "zstd");
        assert_eq!(s["linger.ms"], "7");
        // librdkafka, built with OpenSSL, takes SASL/SCRAM over TLS.
        let dir = tempfile::tempdir().unwrap();
        let sink = KafkaSink::new("k", c.clone(), dir.path(), Arc::default()).unwrap();
        assert!(!format!("{c:?}").contains("p4ss-w0rd"));
        assert!(!format!("{sink:?}").contains("p4ss-w0rd"));
    }

    #[test]
    fn bad_settings_are_refused_by_key() {
        let base = "inputs = [\"x\"]\nbootstrap_servers = \"b:9092\"\n";
        for (extra, want) in [
            ("topic = \"x-{{ user.nam }}\"", "topic: template"),
            (
                "topic = \"t\"\nsasl.enabled = true\nsasl.mechanism = \"GSSAPI\"",
                "sasl.mechanism",
            ),
            (
                "topic = \"t\"\ntls.crt_file = \"/c\"",
                "tls.crt_file and tls.key_file",
            ),
        ] {
            let c: KafkaConfig = toml::from_str(&format!("{base}{extra}")).unwrap();
            let e = c.validate().unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
