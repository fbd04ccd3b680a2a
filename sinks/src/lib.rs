//! Lumen's sinks and the runtime pieces every component shares.
//!
//! - [`ack`]: end-to-end acknowledgements. A source attaches an [`ack::AckNode`]
//!   to each event; every sink that receives a copy completes its [`ack::Ack`];
//!   when the last copy is done the source learns the combined outcome and may
//!   move its checkpoint.
//! - [`envelope`]: what flows through the topology: the event plus its ack.
//! - [`metrics`]: per-component counters (received, sent, errors, dropped).
//! - [`buffer`]: the memory or disk buffer in front of each sink.
//! - [`file`], [`console`]: the local sinks.
//! - The network sinks' shared machinery: [`batch`] (batches and encoders),
//!   [`request`] (concurrency, timeouts, retries), [`deliver`] (the delivery
//!   loop: send, classify, retry, acknowledge), [`dead_letter`], [`http`]
//!   (client, endpoints, compression), [`tls`], [`secret`], [`health`] (start-up
//!   checks: what a failed one means and how the sink waits it out).
//! - [`elasticsearch`]: the Elasticsearch bulk API sink.
//! - [`splunk_hec`]: the Splunk HTTP Event Collector sink.

pub mod ack;
pub mod batch;
pub mod buffer;
pub mod console;
pub mod dead_letter;
pub mod deliver;
pub mod elasticsearch;
pub mod envelope;
pub mod file;
pub mod health;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod otlp;
pub mod request;
pub mod secret;
pub mod splunk_hec;
pub mod template;
pub mod tls;

pub use envelope::Envelope;
pub use metrics::ComponentMetrics;
