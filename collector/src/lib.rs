//! Lumen's collector: configuration, topology, sources and transforms.
//! The binary (`src/main.rs`) is the command line around it.

pub mod api;
pub mod attribution;
pub mod config;
pub mod host;
pub mod sources;
pub mod topology;
pub mod transforms;

/// The default configuration, used when `--config` is not given.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/lumen.toml");
/// How the embedded default is named in messages.
pub const DEFAULT_CONFIG_ORIGIN: &str = "<embedded config/lumen.toml>";
