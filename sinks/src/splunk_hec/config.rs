//! `[sinks.<id>] type = "splunk_hec"`: Vector's key names where Vector has
//! the option.

use crate::batch::BatchConfig;
use crate::health::HealthcheckConfig;
use crate::http::Compression;
use crate::request::RequestConfig;
use crate::secret::Secret;
use crate::tls::TlsConfig;
use lumen_schemas::Schema;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// Components whose events this sink takes.
    pub inputs: Vec<String>,
    /// The buffer in front of the sink (`memory` by default).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    /// Base URL of HEC, e.g. `https://splunk:8088`.
    pub endpoint: String,
    /// The HEC token (`Authorization: Splunk <token>`).
    pub default_token: Secret,
    /// `event` (default): JSON envelopes to `/services/collector/event`;
    /// `raw`: the documents, one per line, to `/services/collector/raw`.
    #[serde(default)]
    pub endpoint_target: EndpointTarget,
    /// Schema of the events.
    #[serde(default = "default_schema")]
    pub schema: Schema,
    /// Splunk index; the token's default index when absent.
    pub index: Option<String>,
    /// Source type; default: per OCSF class (`ocsf:process_activity`, …)
    /// or per ECS dataset (`lumen:process`, …).
    pub sourcetype: Option<String>,
    /// Source; default `lumen`.
    #[serde(default = "default_source")]
    pub source: String,
    /// Where the envelope's `host` comes from: `host.name` (the event's
    /// host, the default) or `""` for none (Splunk then uses the sender).
    #[serde(default = "default_host_key")]
    pub host_key: String,
    #[serde(default)]
    pub acknowledgements: AckConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub compression: Compression,
    /// Check HEC's health and the token at start-up.
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
    /// Where rejected events go; default `<data_dir>/dead-letter/<id>.ndjson`.
    pub dead_letter_path: Option<PathBuf>,
}

fn default_schema() -> Schema {
    Schema::Ocsf
}
fn default_source() -> String {
    "lumen".to_owned()
}
fn default_host_key() -> String {
    "host.name".to_owned()
}
fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndpointTarget {
    #[default]
    Event,
    Raw,
}

/// `acknowledgements.*`: Splunk's indexer acknowledgement.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AckConfig {
    /// Acknowledge events upstream only once Splunk reports them indexed
    /// (`/services/collector/ack`). The token must have indexer
    /// acknowledgement on; when its answers carry no `ackId`, a 200 is
    /// taken as delivered.
    #[serde(default = "yes")]
    pub indexer_acknowledgements_enabled: bool,
    /// Seconds between the ack task's queries (each asks about every
    /// pending ackId of the channel).
    #[serde(default = "default_query_interval")]
    pub query_interval: f64,
    /// Queries before a request counts as not indexed and is resent.
    #[serde(default = "default_retry_limit")]
    pub retry_limit: u32,
    /// Requests waiting for their ack, at most; past it, the sink waits.
    /// Each holds its batch in memory until HEC reports it indexed.
    #[serde(default = "default_max_pending_acks")]
    pub max_pending_acks: usize,
}

impl Default for AckConfig {
    fn default() -> Self {
        AckConfig {
            indexer_acknowledgements_enabled: true,
            query_interval: default_query_interval(),
            retry_limit: default_retry_limit(),
            max_pending_acks: default_max_pending_acks(),
        }
    }
}

fn default_query_interval() -> f64 {
    1.0
}
fn default_retry_limit() -> u32 {
    30
}
fn default_max_pending_acks() -> usize {
    100
}

impl SplunkHecConfig {
    /// Rejects settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        crate::http::Endpoints::new(std::slice::from_ref(&self.endpoint))
            .map_err(|e| e.replacen("endpoints", "endpoint", 1))?;
        self.batch.validate()?;
        self.request.validate()?;
        if self.default_token.is_empty() {
            return Err("default_token is empty".into());
        }
        if !(self.acknowledgements.query_interval.is_finite()
            && self.acknowledgements.query_interval > 0.0)
        {
            return Err(
                "acknowledgements.query_interval must be a positive number of seconds".into(),
            );
        }
        if self.acknowledgements.retry_limit == 0 {
            return Err("acknowledgements.retry_limit must be at least 1".into());
        }
        if self.acknowledgements.max_pending_acks == 0 {
            return Err("acknowledgements.max_pending_acks must be at least 1".into());
        }
        if !self.host_key.is_empty() && self.host_key != "host.name" {
            return Err(format!(
                "host_key = `{}`: only \"host.name\" (the event's host) or \"\" (none) are supported",
                self.host_key
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(acks: &str) -> SplunkHecConfig {
        toml::from_str(&format!(
            "inputs = [\"x\"]\nendpoint = \"https://splunk:8088\"\ndefault_token = \"t\"\n{acks}"
        ))
        .unwrap()
    }

    #[test]
    fn acknowledgements_default_to_a_bounded_set_of_pending_requests() {
        let c = parse("");
        assert!(c.acknowledgements.indexer_acknowledgements_enabled);
        assert_eq!(c.acknowledgements.max_pending_acks, 100);
        assert_eq!(c.acknowledgements.query_interval, 1.0);
        assert_eq!(
            parse("acknowledgements.max_pending_acks = 7")
                .acknowledgements
                .max_pending_acks,
            7
        );
        for (bad, says) in [
            (
                "acknowledgements.max_pending_acks = 0",
                "max_pending_acks must be at least 1",
            ),
            (
                "acknowledgements.retry_limit = 0",
                "retry_limit must be at least 1",
            ),
            (
                "acknowledgements.query_interval = 0",
                "query_interval must be a positive",
            ),
        ] {
            let err = parse(bad).validate().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
