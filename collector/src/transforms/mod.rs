//! Transforms: components between sources and sinks.

pub mod detect;
pub mod filter;
pub mod rate_limit;
pub mod redact;
