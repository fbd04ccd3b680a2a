//! Lumen's canonical event model and the encoders that turn it into ECS or
//! OCSF JSON.
//!
//! Sources produce [`Event`]s: typed structs, not JSON maps, so transforms and
//! encoders read fields without lookups. The encoders ([`ecs`], [`ocsf`]) write
//! those structs straight into a byte buffer with [`json::JsonWriter`]; nothing
//! on the hot path goes through `serde_json::Value`.
//!
//! [`k8s_audit`] parses Kubernetes API-server audit events (`audit.k8s.io/v1`)
//! into the model.

pub mod codec;
pub mod ecs;
pub mod event;
pub mod json;
pub mod k8s_audit;
pub mod ocsf;
pub mod time;

pub use event::{Event, EventKind};

/// Which schema an encoder writes. Each sink chooses one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Schema {
    /// Elastic Common Schema 9.x.
    Ecs,
    /// Open Cybersecurity Schema Framework 1.8.0.
    Ocsf,
}

impl Schema {
    /// Appends `event` in this schema as one JSON object (no newline).
    pub fn encode(self, event: &Event, out: &mut Vec<u8>) {
        match self {
            Schema::Ecs => ecs::encode(event, out),
            Schema::Ocsf => ocsf::encode(event, out),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Schema::Ecs => "ecs",
            Schema::Ocsf => "ocsf",
        }
    }
}

/// Lumen's product name, in every event's metadata.
pub const PRODUCT_NAME: &str = "Lumen";
/// Lumen's version, in every event's metadata.
pub const PRODUCT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The ECS version the ECS encoder follows.
pub const ECS_VERSION: &str = "9.4.0";
/// The OCSF version the OCSF encoder follows.
pub const OCSF_VERSION: &str = "1.8.0";
