//! `[sinks.<id>] type = "kafka"`: Vector's key names where Vector has the
//! option.

use crate::batch::BatchConfig;
use crate::health::HealthcheckConfig;
use crate::request::RequestConfig;
use crate::secret::Secret;
use crate::template::Template;
use lumen_schemas::Schema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Components whose events this sink takes.
    pub inputs: Vec<String>,
    /// The buffer in front of the sink (`memory` by default).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    /// `host:port,host:port` of the brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// Topic template, e.g. `lumen.{{ ocsf.class_name }}`.
    pub topic: String,
    /// Message key template; default host + container id, so one
    /// container's events stay in one partition, in order.
    #[serde(default = "default_key")]
    pub key_field: String,
    /// `zstd` (default), `gzip`, `lz4`, `snappy`, `none`.
    #[serde(default)]
    pub compression: KafkaCompression,
    /// Prefix of the headers every message carries (`<prefix>.schema`,
    /// `<prefix>.schema_version`, `<prefix>.kind`); `""`: no headers.
    #[serde(default = "default_headers_key")]
    pub headers_key: String,
    /// Schema of the message values (and of the fields the topic and key
    /// templates name).
    #[serde(default = "default_schema")]
    pub schema: Schema,
    /// `json` (default): the event as a `schema` document. `native`: the
    /// typed event in Lumen's versioned binary codec, for a Lumen
    /// aggregator's `kafka` source (no JSON made or parsed on either side).
    #[serde(default)]
    pub encoding: KafkaEncoding,
    /// librdkafka producer settings for everything Lumen does not name
    /// (they win over Lumen's own).
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
    /// How long librdkafka tries one message (its own retries) before the
    /// sink's retry takes over (`message.timeout.ms`).
    #[serde(default = "default_message_timeout")]
    pub message_timeout_ms: u64,
    #[serde(default)]
    pub sasl: SaslConfig,
    #[serde(default)]
    pub tls: KafkaTlsConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub request: RequestConfig,
    /// Fetch the cluster's metadata at start-up.
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
    /// Where rejected events go; default `<data_dir>/dead-letter/<id>.ndjson`.
    pub dead_letter_path: Option<PathBuf>,
}

fn default_key() -> String {
    "{{ host.name }}/{{ container.id }}".to_owned()
}
fn default_headers_key() -> String {
    "lumen".to_owned()
}
fn default_schema() -> Schema {
    Schema::Ocsf
}
fn default_message_timeout() -> u64 {
    300_000
}
fn yes() -> bool {
    true
}

/// How message values are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaEncoding {
    #[default]
    Json,
    Native,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    #[default]
    Zstd,
    Gzip,
    Lz4,
    Snappy,
    None,
}

impl KafkaCompression {
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::Zstd => "zstd",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::None => "none",
        }
    }
}

/// `sasl.*`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    #[serde(default)]
    pub enabled: bool,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// `tls.*` (librdkafka's own TLS: OpenSSL).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaTlsConfig {
    #[serde(default)]
    pub enabled: bool,
    pub ca_file: Option<PathBuf>,
    pub crt_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_pass: Option<Secret>,
    #[serde(default = "yes")]
    pub verify_certificate: bool,
    #[serde(default = "yes")]
    pub verify_hostname: bool,
}

impl Default for KafkaTlsConfig {
    fn default() -> Self {
        KafkaTlsConfig {
            enabled: false,
            ca_file: None,
            crt_file: None,
            key_file: None,
            key_pass: None,
            verify_certificate: true,
            verify_hostname: true,
        }
    }
}

/// Settings librdkafka needs to know are secrets (never logged by Lumen).
pub const SECRET_OPTIONS: &[&str] = &["sasl.password", "ssl.key.password"];

impl KafkaConfig {
    /// Rejects settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        self.batch.validate()?;
        self.request.validate()?;
        if self.bootstrap_servers.trim().is_empty() {
            return Err("bootstrap_servers is empty".into());
        }
        Template::parse(&self.topic).map_err(|e| format!("topic: {e}"))?;
        Template::parse(&self.key_field).map_err(|e| format!("key_field: {e}"))?;
        validate_security(&self.sasl, &self.tls)?;
        Ok(())
    }

    /// The librdkafka producer settings: Lumen's (idempotent, acks=all,
    /// compression, security), then `librdkafka_options` over them.
    pub fn producer_settings(&self) -> Vec<(String, String)> {
        let mut s: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.bootstrap_servers.clone()),
            ("enable.idempotence".into(), "true".into()),
            ("acks".into(), "all".into()),
            ("compression.type".into(), self.compression.as_str().into()),
            (
                "message.timeout.ms".into(),
                self.message_timeout_ms.to_string(),
            ),
        ];
        s.extend(security_settings(&self.sasl, &self.tls));
        for (k, v) in &self.librdkafka_options {
            s.retain(|(key, _)| key != k);
            s.push((k.clone(), v.clone()));
        }
        s
    }
}

/// Rejects SASL and TLS settings that cannot work, naming the key (the
/// sink's and the source's).
pub fn validate_security(sasl: &SaslConfig, tls: &KafkaTlsConfig) -> Result<(), String> {
    if sasl.enabled {
        match sasl.mechanism.as_deref() {
            Some("PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") => {}
            other => {
                return Err(format!(
                    "sasl.mechanism {other:?}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ))
            }
        }
        if sasl.username.as_deref().unwrap_or("").is_empty() || sasl.password.is_none() {
            return Err("sasl.enabled needs sasl.username and sasl.password".into());
        }
    }
    if tls.crt_file.is_some() != tls.key_file.is_some() {
        return Err("tls.crt_file and tls.key_file go together".into());
    }
    Ok(())
}

/// librdkafka's `security.protocol`, SASL and TLS settings for these
/// (the sink's and the source's).
pub fn security_settings(sasl: &SaslConfig, tls: &KafkaTlsConfig) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = Vec::new();
    let protocol = match (sasl.enabled, tls.enabled) {
        (false, false) => "plaintext",
        (false, true) => "ssl",
        (true, false) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    s.push(("security.protocol".into(), protocol.into()));
    if sasl.enabled {
        s.push((
            "sasl.mechanism".into(),
            sasl.mechanism.clone().unwrap_or_default(),
        ));
        s.push((
            "sasl.username".into(),
            sasl.username.clone().unwrap_or_default(),
        ));
        s.push((
            "sasl.password".into(),
            sasl.password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
        ));
    }
    if tls.enabled {
        let path = |p: &PathBuf| p.display().to_string();
        if let Some(ca) = &tls.ca_file {
            s.push(("ssl.ca.location".into(), path(ca)));
        }
        if let Some(crt) = &tls.crt_file {
            s.push(("ssl.certificate.location".into(), path(crt)));
        }
        if let Some(key) = &tls.key_file {
            s.push(("ssl.key.location".into(), path(key)));
        }
        if let Some(pass) = &tls.key_pass {
            s.push(("ssl.key.password".into(), pass.expose().to_owned()));
        }
        s.push((
            "enable.ssl.certificate.verification".into(),
            tls.verify_certificate.to_string(),
        ));
        s.push((
            "ssl.endpoint.identification.algorithm".into(),
            if tls.verify_hostname { "https" } else { "none" }.into(),
        ));
    }
    s
}
