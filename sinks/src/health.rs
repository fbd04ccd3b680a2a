//! Start-up checks of the network sinks, and what a failed one does.
//!
//! A receiver that is down, busy or still starting when Lumen starts must
//! not stop Lumen: on a node that would lose the kernel's events of that
//! time for good, and starve the sinks that are fine. So by default a sink
//! whose check fails starts anyway, holds its events in its buffer
//! (backpressure to checkpointed sources; a disk buffer absorbs the
//! outage), reports itself unhealthy (`/ready`, `lumen_component_healthy`)
//! and probes the receiver until it answers, then delivers everything.
//! `healthcheck.require = true` (or `lumen run --require-healthy`) keeps the
//! fail-fast behaviour for those who want it.
//!
//! A failure is one of two kinds, and the log says which:
//! - [`Unhealthy::Unavailable`]: transient, the receiver cannot take
//!   requests now (refused connections, timeouts, 429 and 5xx, HEC codes 8
//!   and 9, gRPC `UNAVAILABLE`/`RESOURCE_EXHAUSTED`); logged as a warning.
//! - [`Unhealthy::Misconfigured`]: the receiver refuses Lumen as configured
//!   (401/403, HEC token codes 1–4, TLS failures, a wrong path); it will not
//!   pass until someone acts, so it is logged as an error with the fix.
//!
//! While it lasts, a failure is logged once, then at most once a minute
//! (and again whenever its kind changes).

use crate::metrics::{ComponentMetrics, Health};
use crate::Envelope;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// `healthcheck` of a network sink: `healthcheck = false`, or a table
/// `healthcheck.enabled` / `healthcheck.require`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthcheckConfig {
    /// Check the receiver at start-up (the first request otherwise tells).
    pub enabled: bool,
    /// A failed check stops Lumen (exit 2) instead of holding events.
    pub require: bool,
}

impl Default for HealthcheckConfig {
    fn default() -> Self {
        HealthcheckConfig {
            enabled: true,
            require: false,
        }
    }
}

impl<'de> Deserialize<'de> for HealthcheckConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Form;
        impl<'de> Visitor<'de> for Form {
            type Value = HealthcheckConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false, or a table with `enabled` and `require`")
            }
            fn visit_bool<E: de::Error>(self, enabled: bool) -> Result<Self::Value, E> {
                Ok(HealthcheckConfig {
                    enabled,
                    require: false,
                })
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut c = HealthcheckConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "enabled" => c.enabled = map.next_value()?,
                        "require" => c.require = map.next_value()?,
                        other => {
                            return Err(de::Error::unknown_field(other, &["enabled", "require"]))
                        }
                    }
                }
                if c.require && !c.enabled {
                    return Err(de::Error::custom(
                        "`require = true` needs the check: `enabled` cannot be false",
                    ));
                }
                Ok(c)
            }
        }
        d.deserialize_any(Form)
    }
}

/// Why a receiver failed a sink's start-up check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    /// It cannot take requests now; it should pass by itself.
    #[error("receiver unavailable: {reason}")]
    Unavailable { reason: String },
    /// It refuses Lumen as configured; `fix` says what to look at.
    #[error("misconfigured: {reason} (fix: {fix})")]
    Misconfigured { reason: String, fix: &'static str },
}

/// What to check when credentials are refused.
pub const FIX_CREDENTIALS: &str = "check the sink's credentials and their permissions";
/// What to check when TLS fails.
pub const FIX_TLS: &str = "check tls.ca_file (the CA that signed the receiver's certificate), tls.crt_file/tls.key_file if it wants a client certificate, and that the endpoint's host name is in the certificate";
/// What to check when the receiver does not know the request.
pub const FIX_ENDPOINT: &str =
    "check the endpoint URL (scheme, host, port, path) and that it is this kind of receiver";

impl Unhealthy {
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Unhealthy::Unavailable {
            reason: reason.into(),
        }
    }

    pub fn misconfigured(reason: impl Into<String>, fix: &'static str) -> Self {
        Unhealthy::Misconfigured {
            reason: reason.into(),
            fix,
        }
    }

    /// A request that got no answer: TLS failures need a fix, everything
    /// else (refused, reset, timed out, no route) is the receiver's state.
    pub fn from_transport(e: &(dyn std::error::Error + 'static)) -> Self {
        let reason = crate::http::error_chain(e);
        if is_tls_failure(e) {
            Unhealthy::misconfigured(reason, FIX_TLS)
        } else {
            Unhealthy::unavailable(reason)
        }
    }

    /// An HTTP answer that is not a success, described by `reason`.
    pub fn from_status(status: u16, reason: String) -> Self {
        match status {
            401 | 403 | 407 => Unhealthy::misconfigured(reason, FIX_CREDENTIALS),
            408 | 429 | 500..=599 => Unhealthy::unavailable(reason),
            _ => Unhealthy::misconfigured(reason, FIX_ENDPOINT),
        }
    }

    /// The same with `what` (the endpoint, the step) in front of the reason.
    pub fn context(self, what: &str) -> Self {
        match self {
            Unhealthy::Unavailable { reason } => Unhealthy::Unavailable {
                reason: format!("{what}: {reason}"),
            },
            Unhealthy::Misconfigured { reason, fix } => Unhealthy::Misconfigured {
                reason: format!("{what}: {reason}"),
                fix,
            },
        }
    }

    fn health(&self) -> Health {
        match self {
            Unhealthy::Unavailable { .. } => Health::Unavailable,
            Unhealthy::Misconfigured { .. } => Health::Misconfigured,
        }
    }
}

/// The body of the answer to a start-up request when it is a success; why
/// not otherwise (`describe` words a failed answer from its status and body).
pub async fn answer(
    sent: Result<reqwest::Response, reqwest::Error>,
    describe: impl FnOnce(reqwest::StatusCode, &[u8]) -> String,
) -> Result<bytes::Bytes, Unhealthy> {
    let resp = sent.map_err(|e| Unhealthy::from_transport(&e))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| Unhealthy::from_transport(&e))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(Unhealthy::from_status(
            status.as_u16(),
            describe(status, &body),
        ))
    }
}

/// Whether a TLS error (rustls) is among `e`'s causes.
pub(crate) fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // An io::Error's `source()` skips the error it wraps.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if is_tls_failure(inner) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// The first probe after a failed check waits this long; each next one
/// twice as long, up to [`PROBE_MAX`].
pub const PROBE_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two probes of an unhealthy receiver.
pub const PROBE_MAX: Duration = Duration::from_secs(10);
/// A failure that lasts is logged again after this long.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Whether a failed probe is logged: when the kind of failure changed, or
/// once [`LOG_EVERY`] has passed since the last time it was.
fn log_again(last: Health, now: Health, since_logged: Duration) -> bool {
    now != last || since_logged >= LOG_EVERY
}

/// Logs a failed check of sink `name` as its kind deserves and marks the
/// sink unhealthy.
pub fn report(name: &str, metrics: &ComponentMetrics, why: &Unhealthy) {
    metrics.set_health(why.health(), Some(why.to_string()));
    match why {
        Unhealthy::Unavailable { reason } => tracing::warn!(
            component = %name,
            reason = %reason,
            "sink's receiver is unavailable: the sink holds its events in its buffer and delivers them once the receiver answers"
        ),
        Unhealthy::Misconfigured { reason, fix } => tracing::error!(
            component = %name,
            reason = %reason,
            fix = %fix,
            "sink is misconfigured for its receiver: events are held in its buffer until this is fixed"
        ),
    }
}

/// After a failed start-up check (already [`report`]ed): probes the
/// receiver with `probe` until it passes, then marks the sink healthy and
/// returns true. Returns false, without a probe passing, when `input`
/// closed (shutdown) and `keep_on_close` says the buffer keeps what the
/// sink has not taken (a disk buffer: it is sent at the next start).
pub async fn until_healthy<F, Fut>(
    name: &str,
    metrics: &ComponentMetrics,
    first: Unhealthy,
    mut probe: F,
    input: &mpsc::Receiver<Envelope>,
    keep_on_close: bool,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Unhealthy>>,
{
    let mut last = first;
    let mut logged = Instant::now();
    let mut wait = PROBE_FIRST;
    loop {
        let until = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < until {
            if keep_on_close && input.is_closed() {
                tracing::info!(component = %name, "stopping before the receiver answered: the events stay in the disk buffer for the next start");
                return false;
            }
            tokio::time::sleep_until(
                until.min(tokio::time::Instant::now() + Duration::from_millis(200)),
            )
            .await;
        }
        match probe().await {
            Ok(()) => {
                metrics.set_health(Health::Healthy, None);
                tracing::info!(component = %name, "sink's receiver answers: delivering what the buffer holds");
                return true;
            }
            Err(why) => {
                if log_again(last.health(), why.health(), logged.elapsed()) {
                    report(name, metrics, &why);
                    logged = Instant::now();
                } else {
                    metrics.set_health(why.health(), Some(why.to_string()));
                }
                last = why;
            }
        }
        wait = (wait * 2).min(PROBE_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Sink {
        #[serde(default)]
        healthcheck: HealthcheckConfig,
    }

    fn parse(text: &str) -> Result<HealthcheckConfig, String> {
        toml::from_str::<Sink>(text)
            .map(|s| s.healthcheck)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn healthcheck_is_a_flag_or_a_table() {
        assert_eq!(parse("").unwrap(), HealthcheckConfig::default());
        assert_eq!(
            parse("healthcheck = false").unwrap(),
            HealthcheckConfig {
                enabled: false,
                require: false
            }
        );
        assert_eq!(
            parse("healthcheck.require = true").unwrap(),
            HealthcheckConfig {
                enabled: true,
                require: true
            }
        );
        assert_eq!(
            parse("[healthcheck]\nenabled = false").unwrap(),
            HealthcheckConfig {
                enabled: false,
                require: false
            }
        );
        let e = parse("healthcheck.requir = true").unwrap_err();
        assert!(e.contains("requir") && e.contains("require"), "{e}");
        let e = parse("healthcheck = { enabled = false, require = true }").unwrap_err();
        assert!(e.contains("needs the check"), "{e}");
        let e = parse("healthcheck = 3").unwrap_err();
        assert!(e.contains("true, false, or a table"), "{e}");
    }

    #[test]
    fn statuses_are_classified_transient_or_needing_a_fix() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    Unhealthy::from_status(s, "x".into()),
                    Unhealthy::Unavailable { .. }
                ),
                "{s}"
            );
        }
        for (s, fix) in [
            (401, FIX_CREDENTIALS),
            (403, FIX_CREDENTIALS),
            (404, FIX_ENDPOINT),
            (400, FIX_ENDPOINT),
        ] {
            assert_eq!(
                Unhealthy::from_status(s, "x".into()),
                Unhealthy::misconfigured("x", fix),
                "{s}"
            );
        }
    }

    #[test]
    fn a_tls_error_under_io_errors_needs_a_fix_and_a_refused_connection_does_not() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let u = Unhealthy::from_transport(&Outer(tls));
        assert!(
            matches!(&u, Unhealthy::Misconfigured { fix, reason } if *fix == FIX_TLS && reason.contains("UnknownIssuer")),
            "{u:?}"
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            Unhealthy::from_transport(&Outer(refused)),
            Unhealthy::Unavailable { .. }
        ));
    }

    #[test]
    fn a_lasting_failure_is_logged_once_a_minute_and_at_each_change_of_kind() {
        let (u, m) = (Health::Unavailable, Health::Misconfigured);
        assert!(!log_again(u, u, Duration::from_secs(59)));
        assert!(log_again(u, u, Duration::from_secs(60)));
        assert!(log_again(u, m, Duration::from_secs(1)));
        assert!(log_again(m, u, Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn probes_until_the_receiver_answers_then_marks_the_sink_healthy() {
        let m = ComponentMetrics::default();
        let first = Unhealthy::unavailable("refused");
        report("s", &m, &first);
        assert_eq!(m.health().0, Health::Unavailable);
        let (_tx, rx) = mpsc::channel::<Envelope>(1);
        let mut probes = 0;
        let started = tokio::time::Instant::now();
        let ok = until_healthy(
            "s",
            &m,
            first,
            || {
                probes += 1;
                let n = probes;
                async move {
                    match n {
                        1 => Err(Unhealthy::unavailable("busy")),
                        2 => Err(Unhealthy::misconfigured("401", FIX_CREDENTIALS)),
                        _ => Ok(()),
                    }
                }
            },
            &rx,
            true,
        )
        .await;
        assert!(ok);
        assert_eq!(probes, 3);
        // 1 s, 2 s, 4 s between the probes.
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        assert_eq!(m.health(), (Health::Healthy, None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_input_behind_a_disk_buffer_ends_the_wait() {
        let m = ComponentMetrics::default();
        let (tx, rx) = mpsc::channel::<Envelope>(1);
        drop(tx);
        let ok = until_healthy(
            "s",
            &m,
            Unhealthy::unavailable("refused"),
            || async { Err(Unhealthy::unavailable("still refused")) },
            &rx,
            true,
        )
        .await;
        assert!(!ok);
    }
}
