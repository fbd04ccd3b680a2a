//! `[sinks.<id>] type = "elasticsearch"`: Vector's key names where Vector
//! has the option.

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
pub struct ElasticsearchConfig {
    /// Components whose events this sink takes.
    pub inputs: Vec<String>,
    /// The buffer in front of the sink (`memory` by default).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    /// Base URLs of the cluster's nodes, used in turn (failover on errors).
    pub endpoints: Vec<String>,
    /// `data_stream` (default): `create` into `logs-<dataset>-default`;
    /// `bulk`: `bulk.action` into `bulk.index`.
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub bulk: BulkConfig,
    /// Schema of the documents.
    #[serde(default = "default_schema")]
    pub schema: Schema,
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub compression: Compression,
    /// Check the cluster at start-up (`GET /_cluster/health`).
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
    /// Install Lumen's index and component templates at start-up.
    #[serde(default = "yes")]
    pub install_templates: bool,
    /// Where rejected events go; default `<data_dir>/dead-letter/<id>.ndjson`.
    pub dead_letter_path: Option<PathBuf>,
}

fn default_schema() -> Schema {
    Schema::Ecs
}
fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    DataStream,
    Bulk,
}

/// `bulk.*`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BulkConfig {
    /// Index name; `%Y`, `%m`, `%d`, `%H` take the event's time (UTC), so a
    /// retried event lands in the same index. Elasticsearch date math
    /// (`<lumen-{now/d}>`) passes through to the cluster.
    #[serde(default = "default_index")]
    pub index: String,
    /// `index` (default) or `create`.
    #[serde(default)]
    pub action: BulkAction,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            index: default_index(),
            action: BulkAction::default(),
        }
    }
}

fn default_index() -> String {
    "lumen-%Y.%m.%d".to_owned()
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    #[default]
    Index,
    Create,
}

/// `auth.*`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub strategy: AuthStrategy,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// The encoded API key (`base64(id:api_key)`, as Kibana shows it).
    pub api_key: Option<Secret>,
    pub token: Option<Secret>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthStrategy {
    Basic,
    ApiKey,
    Bearer,
}

impl ElasticsearchConfig {
    /// Rejects settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        crate::http::Endpoints::new(&self.endpoints)?;
        self.batch.validate()?;
        self.request.validate()?;
        if self.mode == Mode::Bulk {
            let index = &self.bulk.index;
            if index.is_empty()
                || index
                    .bytes()
                    .any(|b| b == b'"' || b == b'\\' || b.is_ascii_control() || b == b' ')
            {
                return Err(format!(
                    "bulk.index `{index}`: an index name holds no spaces, quotes, backslashes or control characters"
                ));
            }
        }
        if let Some(auth) = &self.auth {
            let missing = |key: &str| {
                Err(format!(
                    "auth.strategy = {:?} needs auth.{key}",
                    auth.strategy
                ))
            };
            match auth.strategy {
                AuthStrategy::Basic if auth.user.as_deref().unwrap_or("").is_empty() => {
                    return missing("user")
                }
                AuthStrategy::Basic if auth.password.is_none() => return missing("password"),
                AuthStrategy::ApiKey if auth.api_key.as_ref().is_none_or(|k| k.is_empty()) => {
                    return missing("api_key")
                }
                AuthStrategy::Bearer if auth.token.as_ref().is_none_or(|k| k.is_empty()) => {
                    return missing("token")
                }
                _ => {}
            }
        }
        Ok(())
    }
}
