//! Per-component counters. Components bump them; the topology reports them
//! at stop and the `[api]` serves them (`/metrics`, `/ready`).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

/// Whether a component can do its work now (`/ready`,
/// `lumen_component_healthy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    Healthy,
    /// A sink's receiver failed its check and is transiently unavailable.
    Unavailable,
    /// A sink's receiver refuses it as configured.
    Misconfigured,
    /// The component's task ended abnormally (a panic).
    Failed,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Unavailable,
            2 => Health::Misconfigured,
            3 => Health::Failed,
            _ => Health::Healthy,
        }
    }

    /// The word `/ready` and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unavailable => "unavailable",
            Health::Misconfigured => "misconfigured",
            Health::Failed => "failed",
        }
    }
}

/// Counters of one component, named like Prometheus series
/// (`lumen_component_received_events_total{component_id="…"}`).
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
    /// Bytes of input that entered (an audit line without its newline, a
    /// webhook request body).
    pub received_bytes: AtomicU64,
    /// Bytes the component wrote out (a sink's encoded documents).
    pub sent_bytes: AtomicU64,
    /// A sink whose receiver is failing right now: its last attempt
    /// delivered nothing and is being retried (`/ready` answers 503).
    pub failing: AtomicBool,
    /// When Lumen observed the event a sink last took from its buffer
    /// (nanoseconds since the epoch; 0 before the first): while events wait
    /// behind it, how long the buffer's head has waited.
    pub taken_observed_ns: AtomicI64,
    /// [`Health`] as its `u8`, and why it is not healthy.
    health: AtomicU8,
    problem: Mutex<Option<String>>,
}

impl ComponentMetrics {
    /// A sink took events from its buffer, the last one observed at `observed`.
    pub fn took(&self, observed: lumen_schemas::time::Timestamp) {
        self.taken_observed_ns.store(observed.0, Ordering::Relaxed);
    }
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

    pub fn add_received_bytes(&self, n: usize) {
        self.received_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn add_sent_bytes(&self, n: usize) {
        self.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Sets the component's health and why it is not healthy.
    pub fn set_health(&self, health: Health, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
        self.health.store(health as u8, Ordering::Relaxed);
    }

    /// The component's health and why it is not healthy.
    pub fn health(&self) -> (Health, Option<String>) {
        let h = Health::from_u8(self.health.load(Ordering::Relaxed));
        let problem = self
            .problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (h, problem)
    }

    /// Healthy and not failing right now.
    pub fn is_healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed) == Health::Healthy as u8 && !self.is_failing()
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
