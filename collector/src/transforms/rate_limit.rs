//! The `rate_limit` transform: at most `rate` events per second (bursts of
//! `burst`) per key, with governor's keyed GCRA limiter — and never silently.
//!
//! - The key is a template over the event's canonical fields
//!   (`{{ container.id }}`, `{{ kubernetes.namespace }}`, `{{ user.name }}`,
//!   `{{ process.executable }}`, `{{ event.kind }}`, …); without one, the
//!   whole transform is one key.
//! - Key cardinality is bounded: at most `max_keys` keys have their own
//!   bucket; further keys share one overflow bucket until idle keys (unseen
//!   for `idle_key_secs`) are evicted.
//! - Some events are never dropped: the kinds and predicates in `never_drop`
//!   (by default privilege changes, module and BPF loads, mounts, failed
//!   or forbidden API calls on secrets, and a `detect` transform's
//!   findings), and Lumen's own loss reports and rate-limit summaries.
//! - Suppression is reported: every `summary_interval_secs`, for each key
//!   that had drops, a summary event (how many, which kinds, the first and
//!   last suppressed event's time) goes downstream like any other event, so
//!   a flood cannot blind the SIEM without the SIEM seeing the flood.
//!   Dropped events count as `dropped` and are acknowledged `Rejected`.

use crate::topology::burst;
use crate::topology::fanout::{Closed, Fanout};
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use lumen_schemas::event::{Host, LossCause, LossReport};
use lumen_schemas::time::Timestamp;
use lumen_schemas::{Event, EventKind, Schema};
use lumen_sinks::ack::{Ack, Status};
use lumen_sinks::template::Template;
use lumen_sinks::{ComponentMetrics, Envelope};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// `[transforms.<id>] type = "rate_limit"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub inputs: Vec<String>,
    /// A template over canonical fields; none: one limit for every event.
    pub key: Option<String>,
    /// Events per second per key.
    pub rate: u32,
    /// Events a key may send at once after being quiet (default: `rate`).
    pub burst: Option<u32>,
    /// Keys with a bucket of their own; more share the overflow bucket.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// A key unseen this long loses its bucket (and its place).
    #[serde(default = "default_idle_key_secs")]
    pub idle_key_secs: u64,
    /// Kinds and predicates that are never dropped.
    #[serde(default = "default_never_drop")]
    pub never_drop: Vec<NeverDrop>,
    /// How often summaries of what was dropped are emitted.
    #[serde(default = "default_summary_interval_secs")]
    pub summary_interval_secs: f64,
}

fn default_max_keys() -> usize {
    10_000
}
fn default_idle_key_secs() -> u64 {
    300
}
fn default_summary_interval_secs() -> f64 {
    10.0
}
fn default_never_drop() -> Vec<NeverDrop> {
    [
        "privilege_setuid",
        "privilege_setgid",
        "privilege_capset",
        "privilege_ptrace",
        "module_load",
        "bpf_prog_load",
        "mount",
        "k8s_audit_failed_secrets",
        "finding",
    ]
    .iter()
    .filter_map(|n| NeverDrop::parse(n).ok())
    .collect()
}

/// A kind (as the `filter` transform names them) or a predicate over
/// Kubernetes audit events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NeverDrop {
    Kind(&'static str),
    /// An API call that failed (status ≥ 400) or was forbidden.
    K8sAuditFailed,
    /// An API call on `secrets`.
    K8sAuditSecrets,
    /// Both: a failed or forbidden call on `secrets`.
    K8sAuditFailedSecrets,
}

impl NeverDrop {
    fn parse(name: &str) -> Result<NeverDrop, String> {
        match name {
            "k8s_audit_failed" => Ok(NeverDrop::K8sAuditFailed),
            "k8s_audit_secrets" => Ok(NeverDrop::K8sAuditSecrets),
            "k8s_audit_failed_secrets" => Ok(NeverDrop::K8sAuditFailedSecrets),
            _ => super::filter::KINDS
                .iter()
                .find(|k| **k == name)
                .map(|k| NeverDrop::Kind(k))
                .ok_or_else(|| {
                    format!(
                        "unknown never_drop entry `{name}` (kinds: {}; predicates: k8s_audit_failed, k8s_audit_secrets, k8s_audit_failed_secrets)",
                        super::filter::KINDS.join(", ")
                    )
                }),
        }
    }

    fn matches(&self, event: &Event) -> bool {
        let audit = |f: fn(&lumen_schemas::event::ApiActivity) -> bool| match &event.kind {
            EventKind::ApiActivity(a) => f(a),
            _ => false,
        };
        match self {
            NeverDrop::Kind(k) => event.kind.name() == *k,
            NeverDrop::K8sAuditFailed => audit(failed),
            NeverDrop::K8sAuditSecrets => audit(on_secrets),
            NeverDrop::K8sAuditFailedSecrets => audit(|a| failed(a) && on_secrets(a)),
        }
    }
}

impl<'de> Deserialize<'de> for NeverDrop {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        NeverDrop::parse(&name).map_err(serde::de::Error::custom)
    }
}

fn failed(a: &lumen_schemas::event::ApiActivity) -> bool {
    a.failed() == Some(true) || a.s(a.authz_decision) == "forbid"
}

fn on_secrets(a: &lumen_schemas::event::ApiActivity) -> bool {
    a.object_ref
        .as_ref()
        .is_some_and(|o| a.s(o.resource) == "secrets")
}

impl RateLimitConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.rate == 0 {
            return Err("rate must be at least 1 event per second".into());
        }
        if self.burst == Some(0) {
            return Err("burst must be at least 1".into());
        }
        if self.max_keys == 0 {
            return Err("max_keys must be at least 1".into());
        }
        if !(self.summary_interval_secs > 0.0 && self.summary_interval_secs.is_finite()) {
            return Err("summary_interval_secs must be a positive number".into());
        }
        if let Some(k) = &self.key {
            Template::parse(k).map_err(|e| format!("key: {e}"))?;
        }
        Ok(())
    }
}

/// The key of events beyond `max_keys`.
const OVERFLOW_KEY: &str = "(overflow)";

/// What was dropped for one key in the current interval.
#[derive(Debug)]
struct Drops {
    by_kind: Vec<(&'static str, u64)>,
    first: Timestamp,
    last: Timestamp,
    host: Arc<Host>,
}

/// The limiting logic, apart from the task that runs it (tests drive it
/// with a fake clock).
pub struct Limiter<C: Clock + Clone> {
    id: String,
    template: Option<Template>,
    limiter: RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// Keys with a bucket of their own, and when each was last seen.
    keys: HashMap<String, C::Instant>,
    max_keys: usize,
    idle: Duration,
    never_drop: Vec<NeverDrop>,
    drops: HashMap<String, Drops>,
    /// The current event's key, rendered (reused: no allocation per event).
    key: String,
    overflow: String,
}

impl<C: Clock + Clone> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("id", &self.id)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl<C: Clock + Clone> Limiter<C> {
    /// `config` must have passed `validate`.
    pub fn new(id: &str, config: &RateLimitConfig, clock: C) -> Limiter<C> {
        let rate = NonZeroU32::new(config.rate).unwrap_or(NonZeroU32::MIN);
        let burst = config.burst.and_then(NonZeroU32::new).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Limiter {
            id: id.to_owned(),
            template: config.key.as_deref().and_then(|k| Template::parse(k).ok()),
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            clock,
            keys: HashMap::new(),
            max_keys: config.max_keys,
            idle: Duration::from_secs(config.idle_key_secs),
            never_drop: config.never_drop.clone(),
            drops: HashMap::new(),
            key: String::new(),
            overflow: OVERFLOW_KEY.to_owned(),
        }
    }

    /// Whether `event` passes; a dropped event is recorded for the summary.
    pub fn admit(&mut self, event: &Event) -> bool {
        if matches!(event.kind, EventKind::Loss(_))
            || self.never_drop.iter().any(|n| n.matches(event))
        {
            return true;
        }
        let mut bytes = std::mem::take(&mut self.key).into_bytes();
        bytes.clear();
        if let Some(t) = &self.template {
            t.render(event, Schema::Ecs, &mut bytes);
        }
        // Templates write only strings and digits: valid UTF-8.
        self.key = String::from_utf8(bytes).unwrap_or_default();
        let now = self.clock.now();
        let own_bucket = if let Some(seen) = self.keys.get_mut(self.key.as_str()) {
            *seen = now;
            true
        } else if self.keys.len() < self.max_keys {
            self.keys.insert(self.key.clone(), now);
            true
        } else {
            false
        };
        let key = if own_bucket {
            &self.key
        } else {
            &self.overflow
        };
        if self.limiter.check_key(key).is_ok() {
            return true;
        }
        let kind = event.kind.name();
        match self.drops.get_mut(key.as_str()) {
            Some(d) => {
                match d.by_kind.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, n)) => *n += 1,
                    None => d.by_kind.push((kind, 1)),
                }
                d.first = d.first.min(event.time);
                d.last = d.last.max(event.time);
            }
            None => {
                self.drops.insert(
                    key.clone(),
                    Drops {
                        by_kind: vec![(kind, 1)],
                        first: event.time,
                        last: event.time,
                        host: event.host.clone(),
                    },
                );
            }
        }
        false
    }

    /// One summary event per key that had drops since the last call; also
    /// evicts idle keys.
    pub fn summaries(&mut self) -> Vec<Event> {
        let now = self.clock.now();
        let idle = self.idle;
        self.keys
            .retain(|_, seen| Duration::from(now.duration_since(*seen)) < idle);
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let observed = Timestamp::now();
        let mut out: Vec<Event> = self
            .drops
            .drain()
            .map(|(key, d)| Event {
                time: d.last,
                observed,
                host: d.host,
                kind: EventKind::Loss(LossReport {
                    since: d.first,
                    until: d.last,
                    by_kind: d
                        .by_kind
                        .into_iter()
                        .map(|(k, n)| (Cow::Borrowed(k), n))
                        .collect(),
                    cause: LossCause::RateLimit {
                        transform: self.id.clone(),
                        key,
                    },
                }),
                redaction: Default::default(),
            })
            .collect();
        out.sort_by_key(|e| e.time);
        out
    }

    /// Keys with a bucket of their own right now.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }
}

pub async fn run(
    id: String,
    config: RateLimitConfig,
    rx: mpsc::Receiver<Envelope>,
    out: Fanout,
    metrics: Arc<ComponentMetrics>,
) {
    let limit = RateLimit {
        limiter: Limiter::new(&id, &config, DefaultClock::default()),
        id,
        suppressed: 0,
    };
    let period = Duration::from_secs_f64(config.summary_interval_secs);
    burst::run_ticking(limit, period, rx, out, &metrics).await;
}

/// The transform's state: events suppressed since the last summaries.
struct RateLimit {
    id: String,
    limiter: Limiter<DefaultClock>,
    suppressed: u64,
}

impl burst::Ticking for RateLimit {
    async fn event(
        &mut self,
        env: Envelope,
        out: &mut Fanout,
        metrics: &ComponentMetrics,
    ) -> Result<(), Closed> {
        if self.limiter.admit(&env.event) {
            out.send(env).await?;
            metrics.add_sent(1);
        } else {
            metrics.add_dropped(1);
            self.suppressed += 1;
            env.ack.complete(Status::Rejected);
        }
        Ok(())
    }

    /// Sends the summaries of the interval that ended.
    async fn tick(&mut self, out: &mut Fanout, metrics: &ComponentMetrics) -> Result<(), Closed> {
        let summaries = self.limiter.summaries();
        if !summaries.is_empty() {
            tracing::warn!(component = %self.id, suppressed = self.suppressed, keys = summaries.len(), "rate_limit: events suppressed in the last interval; summaries sent downstream");
        }
        self.suppressed = 0;
        for e in summaries {
            out.send(Envelope::new(e, Ack::none())).await?;
            metrics.add_sent(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
