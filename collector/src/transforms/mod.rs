//! Transforms: components between sources and sinks.

pub mod filter;
