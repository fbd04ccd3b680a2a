//! The configuration file: a Vector-style topology in TOML.
//!
//! ```toml
//! data_dir = "/var/lib/lumen"
//! [sources.kernel]
//! type = "ebpf"
//! [sinks.out]
//! type = "file"
//! inputs = ["kernel"]
//! path = "/var/log/lumen/events.ndjson"
//! ```
//!
//! Loading is three steps: `${VAR}` / `${VAR:-default}` interpolation
//! ([`interpolate`]), typed parsing (unknown keys and types are errors), and
//! graph validation (every input names a component, no cycles). Every error
//! names the file, line and column and says what is wrong.

pub mod interpolate;
mod validate;

use lumen_sinks::console::ConsoleSinkConfig;
use lumen_sinks::elasticsearch::ElasticsearchConfig;
use lumen_sinks::file::FileSinkConfig;
use lumen_sinks::kafka::KafkaConfig;
use lumen_sinks::otlp::OtlpConfig;
use lumen_sinks::splunk_hec::SplunkHecConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use validate::Graph;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where components keep state (checkpoints; later, disk buffers).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Seconds to drain in-flight events on SIGINT/SIGTERM before giving up.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    pub transforms: BTreeMap<String, TransformConfig>,
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Lumen's own HTTP API (`/health`, `/ready`, `/metrics`); off unless
    /// the table is there.
    #[serde(default)]
    pub api: Option<crate::api::ApiConfig>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/lumen")
}
fn default_shutdown_timeout() -> u64 {
    30
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    Ebpf(crate::sources::ebpf::EbpfSourceConfig),
    K8sAuditFile(crate::sources::k8s_audit_file::K8sAuditFileConfig),
    K8sAuditWebhook(crate::sources::k8s_audit_webhook::K8sAuditWebhookConfig),
    Kafka(crate::sources::kafka::KafkaSourceConfig),
}

impl SourceConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::Ebpf(_) => "ebpf",
            SourceConfig::K8sAuditFile(_) => "k8s_audit_file",
            SourceConfig::K8sAuditWebhook(_) => "k8s_audit_webhook",
            SourceConfig::Kafka(_) => "kafka",
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformConfig {
    Detect(crate::transforms::detect::DetectConfig),
    Filter(crate::transforms::filter::FilterConfig),
    RateLimit(crate::transforms::rate_limit::RateLimitConfig),
    Redact(crate::transforms::redact::RedactConfig),
}

impl TransformConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            TransformConfig::Detect(_) => "detect",
            TransformConfig::Filter(_) => "filter",
            TransformConfig::RateLimit(_) => "rate_limit",
            TransformConfig::Redact(_) => "redact",
        }
    }
    pub fn inputs(&self) -> &[String] {
        match self {
            TransformConfig::Detect(c) => &c.inputs,
            TransformConfig::Filter(c) => &c.inputs,
            TransformConfig::RateLimit(c) => &c.inputs,
            TransformConfig::Redact(c) => &c.inputs,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    File(FileSinkConfig),
    Console(ConsoleSinkConfig),
    Elasticsearch(Box<ElasticsearchConfig>),
    SplunkHec(Box<SplunkHecConfig>),
    Kafka(Box<KafkaConfig>),
    Otlp(Box<OtlpConfig>),
}

impl SinkConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::Console(_) => "console",
            SinkConfig::Elasticsearch(_) => "elasticsearch",
            SinkConfig::SplunkHec(_) => "splunk_hec",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Otlp(_) => "otlp",
        }
    }
    /// It delivers over the network (its own retries and dead letters).
    pub fn is_network(&self) -> bool {
        !matches!(self, SinkConfig::File(_) | SinkConfig::Console(_))
    }

    /// The buffer in front of the sink.
    pub fn buffer(&self) -> &lumen_sinks::buffer::BufferConfig {
        match self {
            SinkConfig::File(c) => &c.buffer,
            SinkConfig::Console(c) => &c.buffer,
            SinkConfig::Elasticsearch(c) => &c.buffer,
            SinkConfig::SplunkHec(c) => &c.buffer,
            SinkConfig::Kafka(c) => &c.buffer,
            SinkConfig::Otlp(c) => &c.buffer,
        }
    }
    pub fn inputs(&self) -> &[String] {
        match self {
            SinkConfig::File(c) => &c.inputs,
            SinkConfig::Console(c) => &c.inputs,
            SinkConfig::Elasticsearch(c) => &c.inputs,
            SinkConfig::SplunkHec(c) => &c.inputs,
            SinkConfig::Kafka(c) => &c.inputs,
            SinkConfig::Otlp(c) => &c.inputs,
        }
    }
}

/// A configuration error with its place in the file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<embedded default>`).
    pub origin: String,
    /// 1-based line and column, when the error has a place.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// 1-based (line, column) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// For "unknown field `k`" errors inside a component table (whose span is
/// the table), the offset of the `k = …` line in that table.
fn unknown_key_offset(text: &str, table_start: usize, message: &str) -> Option<usize> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    let mut offset = table_start;
    for (i, line) in text.get(table_start..)?.split_inclusive('\n').enumerate() {
        let t = line.trim_start();
        if i > 0 && t.starts_with('[') {
            return None;
        }
        if let Some(rest) = t.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return Some(offset + (line.len() - t.len()));
            }
        }
        offset += line.len();
    }
    None
}

impl Config {
    /// Reads, interpolates, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            position: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        Self::from_str_with_env(&text, &origin, &|k| std::env::var(k).ok())
    }

    /// As [`Config::load`] for text already in memory; `env` looks variables up.
    pub fn from_str_with_env(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = interpolate::interpolate(text, env).map_err(|e| ConfigError {
            origin: origin.to_owned(),
            position: Some(line_col(text, e.offset)),
            message: e.message,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            let message = e.message().trim_end().to_owned();
            ConfigError {
                origin: origin.to_owned(),
                position: e.span().map(|s| {
                    line_col(
                        &text,
                        unknown_key_offset(&text, s.start, &message).unwrap_or(s.start),
                    )
                }),
                message,
            }
        })?;
        validate::validate(&config, &text).map_err(|(position, message)| ConfigError {
            origin: origin.to_owned(),
            position,
            message,
        })?;
        Ok(config)
    }

    /// The component graph (validated at load).
    pub fn graph(&self) -> Graph<'_> {
        Graph::new(self)
    }
}

#[cfg(test)]
mod tests;
