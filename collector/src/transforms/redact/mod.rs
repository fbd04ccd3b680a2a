//! The `redact` transform: personal data and secrets out of events before
//! they leave the host (GDPR), by rules on named fields and by detectors
//! over free text.
//!
//! - **Rules** name an ECS field (`user.name`, `source.ip`,
//!   `process.command_line`, …) or a JSON path into the raw Kubernetes audit
//!   event (`requestObject.spec.containers[*].env[*].value`) and an action:
//!   `drop`, `mask` (keep the first `keep` characters), `hash`
//!   (HMAC-SHA256 with a secret key: a pseudonym that still correlates),
//!   `truncate_ip` (IPv4 /24, IPv6 /48) or `replace` (a constant).
//! - **Detectors** ([`detect`]) find e-mail addresses, IP addresses, card
//!   numbers, IBANs, phone numbers, JWTs, Authorization values, AWS keys,
//!   private keys, passwords in arguments, credentials in URLs and
//!   `PASSWORD=`-style assignments in command lines, paths and audit bodies.
//! - **Kubernetes**, always: Secret `data`/`stringData` (and the
//!   last-applied annotation that repeats them) never leave, nor
//!   service-account tokens (TokenRequest responses, TokenReview requests);
//!   ConfigMap data optionally.
//!
//! Audit events (`audit.rs`) are rewritten at the JSON level ([`json`], one
//! pass over the original) and their fields moved to where their strings
//! went, so `event.original` and every field agree. Kernel events
//! (`kernel.rs`) get their strings rebuilt into a fresh text buffer, so no
//! redacted value stays behind in memory or in a disk buffer. The settings
//! and their checks are in `config.rs`; this module compiles a profile and
//! holds what both kinds share (actions, pseudonyms, counters, the task). Events are changed in place when the
//! transform holds the only reference (the common case), copied otherwise;
//! an event that needs no change passes through untouched, without
//! allocation.
//! Every changed event records the field and rule names it was changed by
//! (never values): ECS `labels.lumen_redacted_fields`/`…_rules`, OCSF
//! `metadata.labels`.

mod argv;
mod audit;
mod config;
pub mod detect;
pub mod json;
mod kernel;
mod uri;

use config::audit_paths;
pub use config::{Action, DetectorAction, KubernetesConfig, RedactConfig, RuleConfig, FIELDS};

use crate::topology::fanout::Fanout;
use detect::{Detector, Detectors};
use hmac::{Hmac, Mac};
use json::{PatSeg, Pattern, Seg, Visit};
use lumen_schemas::event::{ApiActivity, Marker, Process, Redaction, Str};
use lumen_schemas::{k8s_audit, Event, EventKind};
use lumen_sinks::{ComponentMetrics, Envelope};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A rule, compiled.
#[derive(Debug)]
struct Rule {
    name: Cow<'static, str>,
    /// What is recorded as the field.
    field: Cow<'static, str>,
    /// ECS field, for kernel events.
    ecs: Option<String>,
    /// Where it applies in audit events.
    audit: Vec<Pattern>,
    action: Action,
    keep: usize,
    /// JSON-escaped constant for `replace`.
    value: String,
}

/// Counters per rule name (`lumen_redact_redactions_total{rule}`): one
/// atomic per name the profile can record, found by where the name lives
/// (no lock, no string comparison on the way).
#[derive(Debug, Default)]
pub struct RedactMetrics {
    by_rule: Vec<(&'static str, AtomicU64)>,
    pub events_changed: AtomicU64,
}

impl RedactMetrics {
    fn new(names: impl IntoIterator<Item = &'static str>) -> RedactMetrics {
        let mut by_rule: Vec<(&'static str, AtomicU64)> = Vec::new();
        for n in names {
            if !by_rule.iter().any(|(m, _)| *m == n) {
                by_rule.push((n, AtomicU64::new(0)));
            }
        }
        RedactMetrics {
            by_rule,
            events_changed: AtomicU64::new(0),
        }
    }

    /// Counts what one event's redaction by this transform did.
    fn count(&self, r: &Redaction) {
        self.events_changed.fetch_add(1, Ordering::Relaxed);
        for rule in &r.rules {
            let rule: &str = rule;
            let slot = self
                .by_rule
                .iter()
                .find(|(n, _)| std::ptr::eq(*n, rule))
                .or_else(|| self.by_rule.iter().find(|(n, _)| *n == rule));
            if let Some((_, c)) = slot {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Every rule that changed something, and how many events it changed.
    pub fn by_rule(&self) -> BTreeMap<String, u64> {
        self.by_rule
            .iter()
            .map(|(n, c)| ((*n).to_owned(), c.load(Ordering::Relaxed)))
            .filter(|(_, c)| *c > 0)
            .collect()
    }
}

/// Buffers reused from event to event.
#[derive(Default)]
struct Scratch {
    /// What the walk changed, and the new text of what it changed.
    edits: Vec<json::Edit>,
    buf: String,
    tmp: String,
    fired: Vec<Detector>,
    /// The pseudonyms of an event's known values, one after the other.
    pseudonyms: String,
    /// The free-text strings of an audit event (where they are in the
    /// original, their field), checked together after the walk, joined by
    /// NULs.
    /// (The string, the key of the top-level member it is in.)
    candidates: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    batch: String,
    /// A `requestURI` whose query is decoded (see [`uri`]): its text
    /// unescaped, its path and other parameters decoded, its `command`
    /// values.
    uri: String,
    uri_decoded: String,
    uri_argv: String,
    /// For moving fields: how far the edits before each one shift the text.
    shifts: Vec<usize>,
    /// For an escaped string a rule changed: its old and new unescaped
    /// text in `fix_text`.
    fixes: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    fix_text: String,
    /// What the event in hand had redacted.
    marker: Redaction,
    /// The next rewritten original goes here: the text an event had before
    /// its rewrite, kept for the next one (no allocation per event).
    spare: String,
}

impl Scratch {
    /// Keeps `text` as the next event's buffer, unless it is outsized (one
    /// huge event must not pass its capacity on to every later one).
    fn recycle(&mut self, mut text: String) {
        const KEEP: usize = 64 * 1024;
        if text.capacity() <= KEEP {
            text.clear();
            self.spare = text;
        }
    }
}

/// A value a rule changes (a user name, a uid), and its replacement in
/// [`Scratch::pseudonyms`].
type Known<'a> = (&'a str, std::ops::Range<usize>);

/// The rules' audit paths grouped by the top-level member of the event they
/// start with, each group in rule order (the first rule that matches
/// wins): a string is compared with the paths of its member only, and most
/// members have none. (A path that starts with `[*]` never matches: an
/// audit event is an object.)
#[derive(Debug, Default)]
struct RulesByMember(Vec<(Box<str>, RulePaths)>);

/// (rule, path) indexes into [`Redactor::rules`] and their `audit` paths.
type RulePaths = Vec<(usize, usize)>;

impl RulesByMember {
    fn new(rules: &[Rule]) -> RulesByMember {
        let mut groups: Vec<(Box<str>, RulePaths)> = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            for (p, pattern) in rule.audit.iter().enumerate() {
                let Some(PatSeg::Key(first)) = pattern.0.first() else {
                    continue;
                };
                match groups.iter_mut().find(|(k, _)| **k == **first) {
                    Some((_, g)) => g.push((r, p)),
                    None => groups.push((first.as_str().into(), vec![(r, p)])),
                }
            }
        }
        RulesByMember(groups)
    }

    /// (rule, path) indexes of the paths that start with `member`.
    fn of(&self, member: &str) -> &[(usize, usize)] {
        self.0
            .iter()
            // Length and first byte first: a top-level scalar is a member
            // of its own, so this runs for most of them.
            .find(|(k, _)| {
                k.len() == member.len()
                    && k.as_bytes().first() == member.as_bytes().first()
                    && **k == *member
            })
            .map_or(&[], |(_, g)| g)
    }
}

/// A compiled profile.
pub struct Redactor {
    rules: Vec<Rule>,
    detectors: Detectors,
    detector_action: DetectorAction,
    /// The keyed HMAC state, cloned per pseudonym (the key is hashed once).
    mac: Hmac<sha2::Sha256>,
    drop_configmap_data: bool,
    /// The rules' audit paths by the top-level member they start with.
    by_member: RulesByMember,
    /// Shared with the `[api]`'s `/metrics`.
    pub metrics: Arc<RedactMetrics>,
    k8s: K8sPaths,
    scratch: std::cell::RefCell<Scratch>,
    /// Pseudonyms of recent values (the same users and service accounts
    /// come back all the time), cleared when full.
    pseudonyms: std::cell::RefCell<std::collections::HashMap<Box<str>, Box<str>>>,
    /// The markers handed out, one per set of names (most events of a
    /// kind get the same), cleared when full.
    markers: std::cell::RefCell<Vec<Marker>>,
}

/// How many distinct markers [`Redactor::marker`] keeps.
const MARKERS: usize = 64;

/// How many pseudonyms [`Redactor::pseudonym`] remembers, and of values up
/// to what length.
const PSEUDONYM_CACHE: usize = 4096;
const PSEUDONYM_CACHE_VALUE: usize = 256;

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// The built-in Kubernetes paths.
#[derive(Debug)]
struct K8sPaths {
    secret_data: Vec<Pattern>,
    configmap_data: Vec<Pattern>,
    sa_token: Pattern,
    token_review: Pattern,
}

impl K8sPaths {
    fn new() -> K8sPaths {
        let bodies = |keys: &[&str]| -> Vec<Pattern> {
            let mut v = Vec::new();
            for body in ["requestObject", "responseObject"] {
                for k in keys {
                    v.push(Pattern::keys(&[body, k]));
                }
            }
            for k in keys {
                v.push(Pattern(vec![
                    PatSeg::Key("responseObject".into()),
                    PatSeg::Key("items".into()),
                    PatSeg::AnyIndex,
                    PatSeg::Key((*k).into()),
                ]));
            }
            v
        };
        K8sPaths {
            secret_data: bodies(&["data", "stringData"]),
            configmap_data: bodies(&["data", "binaryData"]),
            sa_token: Pattern::keys(&["responseObject", "status", "token"]),
            token_review: Pattern::keys(&["requestObject", "spec", "token"]),
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

impl Redactor {
    pub fn new(config: &RedactConfig, key: Vec<u8>) -> Result<Redactor, String> {
        config.validate()?;
        let rules: Vec<Rule> = config
            .rules
            .iter()
            .map(|r| {
                let what = r
                    .field
                    .clone()
                    .or_else(|| r.path.clone())
                    .unwrap_or_default();
                let action = match r.action {
                    Action::Drop => "drop",
                    Action::Mask => "mask",
                    Action::Hash => "hash",
                    Action::TruncateIp => "truncate_ip",
                    Action::Replace => "replace",
                };
                let mut value = Vec::new();
                lumen_schemas::json::write_escaped(&mut value, r.value.as_deref().unwrap_or(""));
                let value = String::from_utf8_lossy(&value);
                Rule {
                    // Leaked once per profile: recording them on events
                    // then costs no allocation.
                    name: Cow::Borrowed(leak(
                        r.name.clone().unwrap_or_else(|| format!("{action}:{what}")),
                    )),
                    field: Cow::Borrowed(leak(what.clone())),
                    ecs: r.field.clone(),
                    audit: match (&r.field, &r.path) {
                        (Some(f), _) => audit_paths(f),
                        (None, Some(p)) => Pattern::parse(p).into_iter().collect(),
                        _ => vec![],
                    },
                    action: r.action,
                    keep: r.keep,
                    value: value.trim_matches('"').to_owned(),
                }
            })
            .collect();
        let by_member = RulesByMember::new(&rules);
        let metrics = RedactMetrics::new(
            rules
                .iter()
                .filter_map(|r| match r.name {
                    Cow::Borrowed(n) => Some(n),
                    Cow::Owned(_) => None,
                })
                .chain(Detector::ALL.iter().map(|d| d.rule()))
                .chain([
                    "k8s:secret_data",
                    "k8s:configmap_data",
                    "k8s:serviceaccount_token",
                    "known_value",
                ]),
        );
        Ok(Redactor {
            by_member,
            rules,
            detectors: Detectors::new(&config.detectors)?,
            detector_action: config.detector_action,
            mac: Hmac::<sha2::Sha256>::new_from_slice(&key)
                .map_err(|e| format!("hmac_key: {e}"))?,
            drop_configmap_data: config.kubernetes.drop_configmap_data,
            metrics: Arc::new(metrics),
            k8s: K8sPaths::new(),
            scratch: Default::default(),
            pseudonyms: Default::default(),
            markers: Default::default(),
        })
    }

    /// Redacts `event`, in place when this is its only reference (copied
    /// first otherwise); `true` if anything changed.
    pub fn redact(&self, event: &mut Arc<Event>) -> bool {
        match &event.kind {
            EventKind::ApiActivity(_) => self.audit(event),
            EventKind::Loss(_) => false,
            EventKind::Finding(_) => self.finding(event),
            _ => self.kernel(event),
        }
    }

    /// A finding carries its evidence: redacted as the event itself would
    /// be, and the finding marked alike, so nothing redaction removes from
    /// an event reaches a sink through a finding about it.
    fn finding(&self, event: &mut Arc<Event>) -> bool {
        let EventKind::Finding(f) = &event.kind else {
            return false;
        };
        let mut evidence = Arc::new((*f.evidence).clone());
        if !self.redact(&mut evidence) {
            return false;
        }
        let e = Arc::make_mut(event);
        e.redaction = evidence.redaction.clone();
        if let EventKind::Finding(f) = &mut e.kind {
            *f.evidence = Arc::unwrap_or_clone(evidence);
        }
        true
    }

    /// The redacted copy of `event`, or `None` when nothing needs to change.
    pub fn redacted(&self, event: &Event) -> Option<Event> {
        let mut e = Arc::new(event.clone());
        self.redact(&mut e).then(|| Arc::unwrap_or_clone(e))
    }

    /// The marker for `names`: the one handed out before for the same
    /// names (no allocation, and encoders write it once).
    fn marker(&self, names: &Redaction) -> Marker {
        let mut known = self.markers.borrow_mut();
        if let Some(m) = known.iter().find(|m| ***m == *names) {
            return m.clone();
        }
        if known.len() >= MARKERS {
            known.clear();
        }
        let m = Marker::shared(names.clone());
        known.push(m.clone());
        m
    }

    /// HMAC-SHA256 of `value`, the first 16 bytes in hex.
    fn pseudonym(&self, value: &str, out: &mut String) {
        let mut cache = self.pseudonyms.borrow_mut();
        if let Some(p) = cache.get(value) {
            out.push_str(p);
            return;
        }
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let at = out.len();
        for b in &digest[..16] {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
        if value.len() <= PSEUDONYM_CACHE_VALUE {
            if cache.len() >= PSEUDONYM_CACHE {
                cache.clear();
            }
            cache.insert(value.into(), out[at..].into());
        }
    }

    /// Applies a string action (not `drop`, which removes) to `value`.
    fn apply(&self, rule: &Rule, value: &str, out: &mut String) {
        match rule.action {
            Action::Drop => {}
            Action::Replace => out.push_str(&rule.value),
            Action::Hash => self.pseudonym(value, out),
            Action::Mask => {
                let end = value
                    .char_indices()
                    .nth(rule.keep)
                    .map_or(value.len(), |(i, _)| i);
                let mut prefix = &value[..end];
                // Never cut a JSON escape in half.
                while prefix.ends_with('\\') {
                    prefix = &prefix[..prefix.len() - 1];
                }
                out.push_str(prefix);
                out.push_str("****");
            }
            Action::TruncateIp => match value.parse::<IpAddr>() {
                Ok(ip) => out.push_str(&truncate_ip(ip).to_string()),
                Err(_) => out.push_str("[ip]"),
            },
        }
    }

    /// Runs the detectors over `text`; writes the result to `out` if any fired.
    fn detect(&self, text: &str, out: &mut String, fired: &mut Vec<Detector>) -> bool {
        let action = self.detector_action;
        self.detectors.scrub(
            text,
            out,
            &mut |d, secret, o| {
                o.push('[');
                o.push_str(&d.rule()["detector:".len()..]);
                if action == DetectorAction::Hash {
                    o.push(':');
                    self.pseudonym(secret, o);
                }
                o.push(']');
            },
            &mut |d| {
                if !fired.contains(&d) {
                    fired.push(d);
                }
            },
        )
    }
}

/// IPv4 to its /24, IPv6 to its /48.
pub fn truncate_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], o[2], 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

/// A profile's names live as long as the process (a handful per profile).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The HMAC key: from the config, or made once for this data_dir.
pub fn load_key(config: &RedactConfig, data_dir: &Path, id: &str) -> Result<Vec<u8>, String> {
    if let Some(k) = config.hmac_key.as_ref().filter(|k| !k.is_empty()) {
        return Ok(k.expose().as_bytes().to_vec());
    }
    let dir = data_dir.join("redact");
    let path = dir.join(format!("{id}.key"));
    if let Ok(hex) = std::fs::read_to_string(&path) {
        let hex = hex.trim();
        if hex.len() >= 32 {
            return Ok(hex.as_bytes().to_vec());
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut bytes = [0u8; 32];
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for a redaction key: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    use std::io::Write as _;
    f.write_all(hex.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::warn!(transform = %id, key_file = %path.display(), "redact: no hmac_key configured; generated one for this data_dir (pseudonyms are stable here, not across hosts: set hmac_key to share them)");
    Ok(hex.into_bytes())
}

/// Touches every cache line of an audit event's text (independent loads:
/// the core fetches them side by side).
fn prefetch(event: &Event) {
    if let EventKind::ApiActivity(a) = &event.kind {
        let b = a.original().as_bytes();
        let mut sum = 0u8;
        for i in (0..b.len()).step_by(64) {
            sum = sum.wrapping_add(b[i]);
        }
        std::hint::black_box(sum);
    }
}

pub async fn run(
    id: String,
    redactor: Redactor,
    mut rx: mpsc::Receiver<Envelope>,
    mut out: Fanout,
    metrics: Arc<ComponentMetrics>,
) {
    let mut burst = Vec::new();
    'run: while crate::topology::burst::next(&mut rx, &mut burst).await > 0 {
        metrics.add_received(burst.len() as u64);
        // The texts were written on another core: fetch them all, side by
        // side, before the walk needs them one after the other.
        for env in &burst {
            prefetch(&env.event);
        }
        for mut env in burst.drain(..) {
            redactor.redact(&mut env.event);
            if out.send(env).await.is_err() {
                break 'run;
            }
            metrics.add_sent(1);
        }
    }
    let by_rule = redactor.metrics.by_rule();
    tracing::info!(component = %id, events_changed = redactor.metrics.events_changed.load(Ordering::Relaxed), by_rule = ?by_rule, "redact totals");
}

#[cfg(test)]
mod tests;
