//! Transforms: components between sources and sinks.

pub mod filter;
pub mod rate_limit;
pub mod redact;
