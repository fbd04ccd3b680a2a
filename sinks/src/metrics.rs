//! Per-component counters. Components bump them; the topology reports them
//! (and, later, serves them in Prometheus format).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one component, named like Prometheus series
/// (`lumen_component_received_events_total{component="…"}`).
#[derive(Debug, Default)]
pub struct ComponentMetrics {
    /// Events that entered the component.
    pub received: AtomicU64,
    /// Events the component passed on (downstream, or to the receiver for sinks).
    pub sent: AtomicU64,
    /// Inputs that failed (malformed lines, write errors, …).
    pub errors: AtomicU64,
    /// Events the component discarded.
    pub dropped: AtomicU64,
}

impl ComponentMetrics {
    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_errors(&self, n: u64) {
        self.errors.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// (received, sent, errors, dropped) right now.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}
