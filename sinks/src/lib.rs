//! Lumen's sinks and the runtime pieces every component shares.
//!
//! - [`ack`]: end-to-end acknowledgements. A source attaches an [`ack::AckNode`]
//!   to each event; every sink that receives a copy completes its [`ack::Ack`];
//!   when the last copy is done the source learns the combined outcome and may
//!   move its checkpoint.
//! - [`envelope`]: what flows through the topology: the event plus its ack.
//! - [`metrics`]: per-component counters (received, sent, errors, dropped).
//! - [`file`], [`console`]: the local sinks.

pub mod ack;
pub mod console;
pub mod envelope;
pub mod file;
pub mod metrics;

pub use envelope::Envelope;
pub use metrics::ComponentMetrics;
