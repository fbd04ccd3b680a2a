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
//! Audit events are rewritten at the JSON level ([`json`], one pass over the
//! original) and their fields moved to where their strings went, so
//! `event.original` and every field agree. Kernel events get their strings
//! rebuilt into a fresh text buffer, so no redacted value stays behind in
//! memory or in a disk buffer. Events are changed in place when the
//! transform holds the only reference (the common case), copied otherwise;
//! an event that needs no change passes through untouched, without
//! allocation.
//! Every changed event records the field and rule names it was changed by
//! (never values): ECS `labels.lumen_redacted_fields`/`…_rules`, OCSF
//! `metadata.labels`.

pub mod detect;
pub mod json;

use crate::topology::fanout::Fanout;
use detect::{Detector, Detectors};
use hmac::{Hmac, Mac};
use json::{PatSeg, Pattern, Seg, Visit};
use lumen_schemas::event::{ApiActivity, Process, Redaction, Str};
use lumen_schemas::{k8s_audit, Event, EventKind};
use lumen_sinks::secret::Secret;
use lumen_sinks::{ComponentMetrics, Envelope};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// `[transforms.<id>] type = "redact"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    pub inputs: Vec<String>,
    /// The HMAC key of `hash` (a secret: `${ENV}` or `{ file = … }`).
    /// Without one (or empty), a random key is made once and kept in
    /// `<data_dir>/redact/<id>.key`.
    pub hmac_key: Option<Secret>,
    /// Rules on fields and paths; default: the GDPR profile
    /// (`user.name`, `user.id` hashed; `source.ip`, `destination.ip`
    /// truncated).
    #[serde(default = "default_rules")]
    pub rules: Vec<RuleConfig>,
    /// Detectors run over free text; default: all.
    #[serde(default = "all_detectors")]
    pub detectors: Vec<Detector>,
    /// What a detector's find becomes: `mask` (`[email]`) or `hash`
    /// (`[email:<pseudonym>]`).
    #[serde(default)]
    pub detector_action: DetectorAction,
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Recorded on the events it changes; default `<action>:<field or path>`.
    pub name: Option<String>,
    /// An ECS field name (see [`FIELDS`]).
    pub field: Option<String>,
    /// A JSON path into the raw audit event.
    pub path: Option<String>,
    pub action: Action,
    /// `mask`: characters kept.
    #[serde(default)]
    pub keep: usize,
    /// `replace`: the constant.
    pub value: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Drop,
    Mask,
    Hash,
    TruncateIp,
    Replace,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DetectorAction {
    #[default]
    Mask,
    Hash,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Remove ConfigMap `data`/`binaryData` too.
    #[serde(default)]
    pub drop_configmap_data: bool,
}

fn all_detectors() -> Vec<Detector> {
    Detector::ALL.to_vec()
}

fn default_rules() -> Vec<RuleConfig> {
    let rule = |field: &str, action| RuleConfig {
        name: None,
        field: Some(field.to_owned()),
        path: None,
        action,
        keep: 0,
        value: None,
    };
    vec![
        rule("user.name", Action::Hash),
        rule("user.id", Action::Hash),
        rule("source.ip", Action::TruncateIp),
        rule("destination.ip", Action::TruncateIp),
    ]
}

/// The ECS fields rules can name.
pub const FIELDS: &[&str] = &[
    "user.name",
    "user.id",
    "source.ip",
    "destination.ip",
    "user_agent.original",
    "url.original",
    "process.command_line",
    "process.parent.command_line",
    "process.executable",
    "file.path",
];

/// Where an ECS field is in the raw audit event.
fn audit_paths(field: &str) -> Vec<Pattern> {
    let p = |s: &str| Pattern::parse(s).ok();
    match field {
        "user.name" => vec![p("user.username"), p("impersonatedUser.username")],
        "user.id" => vec![p("user.uid"), p("impersonatedUser.uid")],
        "source.ip" => vec![p("sourceIPs[*]")],
        "user_agent.original" => vec![p("userAgent")],
        "url.original" => vec![p("requestURI")],
        _ => vec![],
    }
    .into_iter()
    .flatten()
    .collect()
}

impl RedactConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (i, r) in self.rules.iter().enumerate() {
            let which = format!("rules[{i}]");
            match (&r.field, &r.path) {
                (Some(f), None) => {
                    if !FIELDS.contains(&f.as_str()) {
                        return Err(format!(
                            "{which}: unknown field `{f}` (known: {}; or use `path` into the audit event)",
                            FIELDS.join(", ")
                        ));
                    }
                    if f.ends_with(".ip") && !matches!(r.action, Action::TruncateIp | Action::Drop)
                    {
                        return Err(format!(
                            "{which}: `{f}` takes `truncate_ip` or `drop` (kernel events carry addresses, not text)"
                        ));
                    }
                }
                (None, Some(p)) => {
                    Pattern::parse(p).map_err(|e| format!("{which}: {e}"))?;
                }
                _ => return Err(format!("{which}: give exactly one of `field` and `path`")),
            }
            if r.action == Action::Replace && r.value.is_none() {
                return Err(format!("{which}: `replace` needs a `value`"));
            }
        }
        Detectors::new(&self.detectors)?;
        Ok(())
    }
}

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
    /// For moving fields: how far the edits before each one shift the text.
    shifts: Vec<usize>,
    strs: Vec<Str>,
    fixes: Vec<(String, String)>,
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

/// A compiled profile.
pub struct Redactor {
    rules: Vec<Rule>,
    detectors: Detectors,
    detector_action: DetectorAction,
    /// The keyed HMAC state, cloned per pseudonym (the key is hashed once).
    mac: Hmac<sha2::Sha256>,
    drop_configmap_data: bool,
    /// The deepest audit path a rule names: deeper values skip the rules.
    max_rule_depth: usize,
    /// Shared with the `[api]`'s `/metrics`.
    pub metrics: Arc<RedactMetrics>,
    k8s: K8sPaths,
    scratch: std::cell::RefCell<Scratch>,
    /// Pseudonyms of recent values (the same users and service accounts
    /// come back all the time), cleared when full.
    pseudonyms: std::cell::RefCell<std::collections::HashMap<Box<str>, Box<str>>>,
}

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
        let max_rule_depth = rules
            .iter()
            .flat_map(|r: &Rule| r.audit.iter().map(|p| p.0.len()))
            .max()
            .unwrap_or(0);
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
            max_rule_depth,
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
        })
    }

    /// Redacts `event`, in place when this is its only reference (copied
    /// first otherwise); `true` if anything changed.
    pub fn redact(&self, event: &mut Arc<Event>) -> bool {
        match &event.kind {
            EventKind::ApiActivity(_) => self.audit(event),
            EventKind::Loss(_) => false,
            _ => self.kernel(event),
        }
    }

    /// The redacted copy of `event`, or `None` when nothing needs to change.
    pub fn redacted(&self, event: &Event) -> Option<Event> {
        let mut e = Arc::new(event.clone());
        self.redact(&mut e).then(|| Arc::unwrap_or_clone(e))
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

    fn audit(&self, event: &mut Arc<Event>) -> bool {
        let mut scratch = self.scratch.take();
        let rewritten = match &event.kind {
            EventKind::ApiActivity(a) => self.rewrite_audit(a, &mut scratch),
            _ => None,
        };
        let changed = match rewritten {
            Some((text, marker, must_parse)) => {
                let e = Arc::make_mut(event);
                if let EventKind::ApiActivity(a) = &mut e.kind {
                    let spare = if must_parse {
                        reparse(a, &text);
                        text
                    } else {
                        match remap(a, text, &mut scratch) {
                            Ok(old) => old,
                            Err(text) => {
                                reparse(a, &text);
                                text
                            }
                        }
                    };
                    scratch.recycle(spare);
                }
                self.metrics.count(&marker);
                e.redaction.merge(marker);
                true
            }
            None => false,
        };
        self.scratch.replace(scratch);
        changed
    }

    /// The redacted original of `a`, what was redacted and whether the
    /// fields must be parsed again (they are not all strings of the
    /// original), or `None` when nothing needs to change;
    /// `scratch.edits` (their new text in `scratch.buf`) say what changed.
    fn rewrite_audit(
        &self,
        a: &ApiActivity,
        scratch: &mut Scratch,
    ) -> Option<(String, Redaction, bool)> {
        let (resource, subresource) = a
            .object_ref
            .as_ref()
            .map_or(("", ""), |o| (a.s(o.resource), a.s(o.subresource)));
        let original = a.original();
        // Values the rules pseudonymize, to replace wherever else they appear
        // (an authorization reason naming the user, a URI with their name).
        let Scratch {
            edits,
            buf,
            tmp,
            fired,
            pseudonyms,
            candidates,
            batch,
            ..
        } = scratch;
        pseudonyms.clear();
        candidates.clear();
        let mut known: [Known<'_>; 4] = Default::default();
        let mut n = 0;
        for rule in &self.rules {
            if !matches!(rule.action, Action::Hash | Action::Replace | Action::Mask) {
                continue;
            }
            for field in ["user.name", "user.id"] {
                if rule.ecs.as_deref() != Some(field) {
                    continue;
                }
                for u in [Some(&a.user), a.impersonated_user.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    let v = a.s(if field == "user.name" {
                        u.username
                    } else {
                        u.uid
                    });
                    if n < known.len() && v.len() >= 3 && !known[..n].iter().any(|(k, _)| *k == v) {
                        let at = pseudonyms.len();
                        self.apply(rule, v, pseudonyms);
                        known[n] = (v, at..pseudonyms.len());
                        n += 1;
                    }
                }
            }
        }
        let mut visitor = AuditVisitor {
            r: self,
            resource,
            subresource,
            base: original.as_ptr() as usize,
            known: &known[..n],
            known_in_text: &known[..n],
            screen: true,
            pseudonyms,
            candidates,
            marker: Redaction::default(),
            tmp,
            fired,
            wrapped: a.wrapper.is_some(),
            nested: false,
            must_parse: false,
            secret_name_at: None,
            may_drop: matches!(resource, "secrets" | "tokenreviews")
                || (resource == "serviceaccounts" && subresource == "token")
                || (resource == "configmaps" && self.drop_configmap_data)
                || self.rules.iter().any(|r| r.action == Action::Drop),
        };
        json::edits_of(original, &mut visitor, buf, edits);
        // The free text, all at once: one screen over every string
        // (NUL-separated: a NUL is a boundary to every pattern, so a string
        // that has a match keeps it in the batch) and a search for the known
        // values say whether any needs a closer look — most audit events
        // have none.
        let candidates = std::mem::take(visitor.candidates);
        batch.clear();
        for (range, _) in &candidates {
            batch.push_str(&original[range.clone()]);
            batch.push('\0');
        }
        visitor.screen = !batch.is_empty() && self.detectors.may_match(batch);
        let known_in_batch = !batch.is_empty()
            && visitor
                .known
                .iter()
                .any(|(k, _)| detect::contains(batch, k));
        if !known_in_batch {
            visitor.known_in_text = &[];
        }
        if visitor.screen || known_in_batch {
            let walked = edits.len();
            for (range, member) in &candidates {
                let mark = buf.len();
                let field = audit_member(&original[member.clone()]);
                if visitor.scrub(&original[range.clone()], field, buf) {
                    edits.push(json::Edit {
                        old: range.clone(),
                        new: mark..buf.len(),
                        string: true,
                    });
                }
            }
            if edits.len() > walked {
                edits.sort_unstable_by_key(|e| e.old.start);
            }
        }
        *visitor.candidates = candidates;
        if edits.is_empty() {
            return None;
        }
        let mut out = std::mem::take(&mut scratch.spare);
        json::apply(original, edits, buf, &mut out);
        Some((out, visitor.marker, visitor.must_parse))
    }

    fn kernel(&self, event: &mut Arc<Event>) -> bool {
        let Some(p) = event.kind.process() else {
            return false;
        };
        let mysql = is_mysql(p);
        let wants = |slot: Slot, value: &str| -> bool {
            self.rules
                .iter()
                .any(|r| slot.is(r.ecs.as_deref()) && !value.is_empty())
                || (slot.free_text()
                    && (self.detectors.may_match(value)
                        || (slot == Slot::Argv && mysql && has_p_arg(value))))
        };
        let mut needed = false;
        visit_slots_ref(&event.kind, &mut |slot, s| needed |= wants(slot, s));
        let ip_rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| matches!(r.ecs.as_deref(), Some("source.ip" | "destination.ip")))
            .collect();
        if let EventKind::Network(n) = &event.kind {
            needed |= !ip_rules.is_empty()
                && (truncate_ip(n.local.ip()) != n.local.ip()
                    || n.remote.is_some_and(|r| truncate_ip(r.ip()) != r.ip()));
        }
        if !needed {
            return false;
        }
        let e = Arc::make_mut(event);
        let mut marker = Redaction::default();
        let mut fired = Vec::new();
        rebuild_slots(&mut e.kind, &mut |slot, value, out| {
            for rule in &self.rules {
                if slot.is(rule.ecs.as_deref()) && !value.is_empty() {
                    marker.record(rule.field.clone(), rule.name.clone());
                    if slot == Slot::Argv || slot == Slot::ParentArgv {
                        // Per argument, argv[0] kept.
                        for (i, arg) in lumen_schemas::event::split_argv(value).enumerate() {
                            if i > 0 {
                                out.push('\0');
                                self.apply(rule, arg, out);
                            } else {
                                out.push_str(arg);
                            }
                        }
                    } else {
                        self.apply(rule, value, out);
                    }
                    return true;
                }
            }
            if !slot.free_text() {
                return false;
            }
            let mut text = Cow::Borrowed(value);
            if slot == Slot::Argv && mysql && has_p_arg(value) {
                text = Cow::Owned(mask_p_args(value));
                marker.record(slot.field(), Detector::PasswordArg.rule());
            }
            let mut scrubbed = String::new();
            let before = fired.len();
            if self.detect(&text, &mut scrubbed, &mut fired) {
                for d in &fired[before..] {
                    marker.record(slot.field(), d.rule());
                }
                text = Cow::Owned(scrubbed);
            }
            match text {
                Cow::Owned(t) => {
                    out.push_str(&t);
                    true
                }
                Cow::Borrowed(_) => false,
            }
        });
        if let EventKind::Network(n) = &mut e.kind {
            for rule in &ip_rules {
                let (src_is_local, remote) = (
                    n.op != lumen_schemas::event::NetworkOp::Accept,
                    n.remote.as_mut(),
                );
                let local = &mut n.local;
                let target = match (rule.ecs.as_deref(), src_is_local) {
                    (Some("source.ip"), true) | (Some("destination.ip"), false) => Some(local),
                    _ => remote,
                };
                if let Some(addr) = target {
                    let ip = match rule.action {
                        Action::Drop => match addr.ip() {
                            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                        },
                        _ => truncate_ip(addr.ip()),
                    };
                    if ip != addr.ip() {
                        addr.set_ip(ip);
                        marker.record(rule.field.clone(), rule.name.clone());
                    }
                }
            }
        }
        if marker.is_empty() {
            return false;
        }
        self.metrics.count(&marker);
        e.redaction.merge(marker);
        true
    }
}

/// Makes `raw` (the original with `scratch.edits` applied) the original of
/// `a` and moves every field to where its string went — the same result as
/// parsing `raw` again, without the parse; `Ok` with the text `a` had
/// before. `Err` (with `raw` back, `a` unchanged) when a field cannot be
/// moved: part of a changed string.
fn remap(a: &mut ApiActivity, mut raw: String, scratch: &mut Scratch) -> Result<String, String> {
    let old_len = a.original_len as usize;
    let Ok(raw_len) = u32::try_from(raw.len()) else {
        return Err(raw);
    };
    let Scratch {
        edits,
        buf,
        shifts,
        strs,
        fixes,
        ..
    } = scratch;
    // Where the text before each edit moved: the original's length plus
    // this minus what the edits removed (kept apart to stay unsigned).
    shifts.clear();
    let (mut added, mut removed) = (0usize, 0usize);
    for e in edits.iter() {
        shifts.push(added.wrapping_sub(removed));
        added += e.new.len();
        removed += e.old.len();
    }
    shifts.push(added.wrapping_sub(removed));
    // The original is the rewritten text; only what the fields still
    // reference follows it (an unescaped copy of a redacted value must not
    // stay behind in the buffer). First where every field goes…
    let old_text = std::mem::take(&mut a.text);
    strs.clear();
    let mut ok = true;
    let mut fixed = false;
    a.visit_strs_mut(&mut |s| {
        if !ok {
            return;
        }
        if s.is_empty() {
            strs.push(*s);
            return;
        }
        let (start, end) = s.bounds();
        if end <= old_len {
            let i = edits.partition_point(|e| e.old.end <= start);
            let moved = |x: usize| x.wrapping_add(shifts[i]);
            strs.push(match edits.get(i) {
                Some(e) if e.old.start < end => {
                    if e.string && e.old == (start..end) {
                        Str::range(moved(start), moved(start) + e.new.len())
                    } else if !e.string && e.old.start <= start && end <= e.old.end {
                        // In a member a rule removed.
                        Str::EMPTY
                    } else {
                        // Part of a changed string: only the parser knows.
                        ok = false;
                        return;
                    }
                }
                _ => Str::range(moved(start), moved(end)),
            });
        } else {
            // Strings with escapes were parsed into unescaped copies after
            // the original: a changed one needs its copy redone (worked out
            // at the first such field).
            if !fixed {
                fixed = true;
                fixes.clear();
                for e in edits.iter().filter(|e| e.string) {
                    let before = old_text.get(e.old.clone());
                    if before.is_some_and(|b| b.contains('\\')) {
                        let fix = before
                            .and_then(unescape)
                            .zip(buf.get(e.new.clone()).and_then(unescape));
                        match fix {
                            Some(f) => fixes.push(f),
                            None => {
                                ok = false;
                                return;
                            }
                        }
                    }
                }
            }
            let value = s.get(&old_text);
            let value = fixes
                .iter()
                .find(|(o, _)| o == value)
                .map_or(value, |(_, new)| new.as_str());
            let at = raw.len();
            raw.push_str(value);
            strs.push(Str::range(at, raw.len()));
        }
    });
    if !ok {
        a.text = old_text;
        raw.truncate(raw_len as usize);
        return Err(raw);
    }
    // …then every field moved.
    let mut next = strs.iter();
    a.visit_strs_mut(&mut |s| {
        if let Some(n) = next.next() {
            *s = *n;
        }
    });
    a.text = raw;
    a.original_len = raw_len;
    a.original_literal = std::sync::OnceLock::new();
    Ok(old_text)
}

/// What [`remap`] cannot do: parses the rewritten original `raw` into `a`
/// (an AKS record's wrapper included).
fn reparse(a: &mut ApiActivity, raw: &str) {
    *a = match k8s_audit::parse_line(raw) {
        Ok(p) => p,
        Err(e) => {
            // A rule removed something the parser needs: keep nothing
            // rather than the unredacted original.
            tracing::error!(error = %e, "redact: the redacted audit event no longer parses; its original is withheld");
            ApiActivity {
                text: "{}".into(),
                original_len: 2,
                ..Default::default()
            }
        }
    };
}

fn unescape(raw: &str) -> Option<String> {
    let mut quoted = String::with_capacity(raw.len() + 2);
    quoted.push('"');
    quoted.push_str(raw);
    quoted.push('"');
    serde_json::from_str(&quoted).ok()
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

/// The mysql family takes `-pSECRET` glued to the flag.
fn is_mysql(p: &Process) -> bool {
    let name = p.args().next().unwrap_or("");
    let base = name.rsplit('/').next().unwrap_or(name);
    matches!(
        base,
        "mysql"
            | "mysqldump"
            | "mysqladmin"
            | "mysqlimport"
            | "mysqlshow"
            | "mariadb"
            | "mariadb-dump"
    )
}

fn has_p_arg(argv: &str) -> bool {
    lumen_schemas::event::split_argv(argv)
        .any(|a| a.len() > 2 && a.starts_with("-p") && !a.starts_with("--"))
}

fn mask_p_args(argv: &str) -> String {
    let mut out = String::with_capacity(argv.len());
    for (i, a) in lumen_schemas::event::split_argv(argv).enumerate() {
        if i > 0 {
            out.push('\0');
        }
        if i > 0 && a.len() > 2 && a.starts_with("-p") && !a.starts_with("--") {
            out.push_str("-p[password_arg]");
        } else {
            out.push_str(a);
        }
    }
    out
}

/// The string fields of a kernel event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Executable,
    Argv,
    ParentExecutable,
    ParentArgv,
    FilePath,
    FileNewPath,
    MountSource,
    MountTarget,
    /// Names, attribution: kept as they are.
    Other,
}

impl Slot {
    fn is(self, ecs: Option<&str>) -> bool {
        matches!(
            (self, ecs),
            (Slot::Executable, Some("process.executable"))
                | (Slot::Argv, Some("process.command_line"))
                | (Slot::ParentArgv, Some("process.parent.command_line"))
                | (Slot::FilePath | Slot::FileNewPath, Some("file.path"))
        )
    }

    fn free_text(self) -> bool {
        matches!(
            self,
            Slot::Argv
                | Slot::ParentArgv
                | Slot::FilePath
                | Slot::FileNewPath
                | Slot::MountSource
                | Slot::MountTarget
        )
    }

    fn field(self) -> &'static str {
        match self {
            Slot::Executable => "process.executable",
            Slot::Argv => "process.command_line",
            Slot::ParentExecutable => "process.parent.executable",
            Slot::ParentArgv => "process.parent.command_line",
            Slot::FilePath => "file.path",
            Slot::FileNewPath => "file.target_path",
            Slot::MountSource => "lumen.mount.source",
            Slot::MountTarget => "lumen.mount.target",
            Slot::Other => "",
        }
    }
}

/// Every string of a kernel event and its slot, in a fixed order.
fn slots_mut(kind: &mut EventKind) -> Option<(&mut String, Vec<(Slot, &mut Str)>)> {
    let (process, extra): (&mut Process, Vec<(Slot, &mut Str)>) = match kind {
        EventKind::Process(p) => (&mut p.process, vec![]),
        EventKind::Network(n) => (&mut n.process, vec![]),
        EventKind::File(f) => {
            let lumen_schemas::event::FileEvent {
                process,
                path,
                new_path,
                ..
            } = &mut **f;
            (
                process,
                vec![(Slot::FilePath, path), (Slot::FileNewPath, new_path)],
            )
        }
        EventKind::Privilege(p) => {
            let lumen_schemas::event::PrivilegeEvent {
                process,
                object_name,
                mount,
                ..
            } = &mut **p;
            let mut extra = vec![(Slot::Other, object_name)];
            if let Some(m) = mount {
                extra.push((Slot::MountSource, &mut m.source));
                extra.push((Slot::MountTarget, &mut m.target));
                extra.push((Slot::Other, &mut m.fstype));
            }
            (process, extra)
        }
        EventKind::ApiActivity(_) | EventKind::Loss(_) => return None,
    };
    let Process {
        text,
        executable,
        name,
        argv,
        attribution,
        parent,
        ..
    } = process;
    let mut v: Vec<(Slot, &mut Str)> = vec![
        (Slot::Executable, executable),
        (Slot::Other, name),
        (Slot::Argv, argv),
        (Slot::ParentExecutable, &mut parent.executable),
        (Slot::Other, &mut parent.name),
        (Slot::ParentArgv, &mut parent.argv),
        (Slot::Other, &mut attribution.cgroup),
        (Slot::Other, &mut attribution.container_id),
        (Slot::Other, &mut attribution.pod_uid),
        (Slot::Other, &mut attribution.pod_name),
        (Slot::Other, &mut attribution.namespace),
        (Slot::Other, &mut attribution.container_name),
        (Slot::Other, &mut attribution.image),
    ];
    for (k, val) in attribution.labels.iter_mut() {
        v.push((Slot::Other, k));
        v.push((Slot::Other, val));
    }
    v.extend(extra);
    Some((text, v))
}

fn visit_slots_ref(kind: &EventKind, f: &mut dyn FnMut(Slot, &str)) {
    // Read-only walk: clone-free by borrowing through a shared reference.
    let p = match kind.process() {
        Some(p) => p,
        None => return,
    };
    f(Slot::Executable, p.executable());
    f(Slot::Argv, p.s(p.argv));
    f(Slot::ParentArgv, p.s(p.parent.argv));
    match kind {
        EventKind::File(fe) => {
            f(Slot::FilePath, p.s(fe.path));
            f(Slot::FileNewPath, p.s(fe.new_path));
        }
        EventKind::Privilege(pe) => {
            if let Some(m) = &pe.mount {
                f(Slot::MountSource, p.s(m.source));
                f(Slot::MountTarget, p.s(m.target));
            }
        }
        _ => {}
    }
}

/// Rebuilds the event's text: each string is copied, or replaced by what
/// `f` writes when it returns `true`. Old values do not survive.
fn rebuild_slots(kind: &mut EventKind, f: &mut dyn FnMut(Slot, &str, &mut String) -> bool) {
    let Some((text, slots)) = slots_mut(kind) else {
        return;
    };
    let old = std::mem::take(text);
    text.reserve(old.len());
    let mut replacement = String::new();
    for (slot, s) in slots {
        let value = s.get(&old);
        replacement.clear();
        let start = text.len();
        if f(slot, value, &mut replacement) {
            text.push_str(&replacement);
        } else {
            text.push_str(value);
        }
        *s = Str::range(start, text.len());
    }
}

/// Decides for each value of a raw audit event.
struct AuditVisitor<'a> {
    r: &'a Redactor,
    resource: &'a str,
    subresource: &'a str,
    /// Where the original starts in memory: the strings handed over are
    /// slices of it.
    base: usize,
    /// The values rules change, with their replacements in `pseudonyms`.
    known: &'a [Known<'a>],
    /// Those of them free text may contain (none when the screen of the
    /// free text found none).
    known_in_text: &'a [Known<'a>],
    /// Whether free text may hold something a detector finds (`false` when
    /// the screen of all of it found nothing).
    screen: bool,
    pseudonyms: &'a str,
    /// Free text left for the detectors, after the walk.
    candidates: &'a mut Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    marker: Redaction,
    tmp: &'a mut String,
    fired: &'a mut Vec<Detector>,
    /// An AKS record: the event is its `properties.log`, an object (whose
    /// paths are taken from there) or an escaped string (rewritten as a
    /// document of its own, `nested` while that runs; the fields then
    /// `must_parse` again).
    wrapped: bool,
    nested: bool,
    must_parse: bool,
    /// Whether anything can be dropped from this event (a built-in
    /// Kubernetes removal for its resource, or a `drop` rule).
    may_drop: bool,
    /// The depth of the last `"name": "<secret-ish>"` seen: its sibling
    /// `value` (a container's env var) is a secret.
    secret_name_at: Option<usize>,
}

/// No detector matches fewer characters than this (the shortest: an
/// e-mail address `a@b.cd`).
const MIN_DETECTABLE: usize = 6;

/// Values whose format leaves no room for personal data (ids, versions,
/// timestamps, enumerations): detectors skip them.
fn structural(path: &[Seg<'_>]) -> bool {
    match path.last() {
        Some(Seg::Key(k)) => matches!(
            *k,
            "kind"
                | "apiVersion"
                | "level"
                | "auditID"
                | "stage"
                | "verb"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "requestReceivedTimestamp"
                | "stageTimestamp"
                | "lastTransitionTime"
                | "startedAt"
                | "finishedAt"
                | "apiGroup"
                | "resource"
                | "subresource"
                | "authorization.k8s.io/decision"
        ),
        _ => false,
    }
}

/// A profile's names live as long as the process (a handful per profile).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The top-level members of an audit event, as the redaction marker names
/// them.
const AUDIT_FIELDS: &[(&str, &str)] = &[
    ("requestObject", "kubernetes.audit.requestObject"),
    ("responseObject", "kubernetes.audit.responseObject"),
    ("annotations", "kubernetes.audit.annotations"),
    ("requestURI", "kubernetes.audit.requestURI"),
    ("userAgent", "kubernetes.audit.userAgent"),
    ("objectRef", "kubernetes.audit.objectRef"),
    ("responseStatus", "kubernetes.audit.responseStatus"),
    ("user", "kubernetes.audit.user"),
    ("impersonatedUser", "kubernetes.audit.impersonatedUser"),
    ("sourceIPs", "kubernetes.audit.sourceIPs"),
];

fn audit_field(path: &[Seg<'_>]) -> Cow<'static, str> {
    match path.first() {
        Some(Seg::Key(k)) => audit_member(k),
        _ => Cow::Borrowed("kubernetes.audit"),
    }
}

/// The field name of a top-level member of an audit event.
fn audit_member(key: &str) -> Cow<'static, str> {
    match AUDIT_FIELDS.iter().find(|(name, _)| *name == key) {
        Some((_, field)) => Cow::Borrowed(field),
        None if key.is_empty() => Cow::Borrowed("kubernetes.audit"),
        None => Cow::Owned(format!("kubernetes.audit.{key}")),
    }
}

/// Where an AKS record carries the audit event.
const AKS_LOG: [Seg<'static>; 2] = [Seg::Key("properties"), Seg::Key("log")];

impl AuditVisitor<'_> {
    /// `path` from the audit event's root (inside an AKS record's
    /// `properties.log`); the record's own members keep theirs.
    fn event_path<'p, 's>(&self, path: &'p [Seg<'s>]) -> &'p [Seg<'s>] {
        if !self.wrapped || self.nested {
            return path;
        }
        path.strip_prefix(&AKS_LOG[..]).unwrap_or(path)
    }

    /// An AKS record's `properties.log` as an escaped string: the event is
    /// unescaped, rewritten on its own, and escaped again into `out`.
    fn nested_log(&mut self, raw: &str, out: &mut String) -> bool {
        let Some(inner) = unescape(raw) else {
            return false;
        };
        let mut rewritten = String::with_capacity(inner.len() + 256);
        self.nested = true;
        self.secret_name_at = None;
        let changed = json::rewrite(&inner, self, &mut rewritten);
        self.nested = false;
        self.secret_name_at = None;
        if !changed {
            return false;
        }
        let mut literal = Vec::with_capacity(rewritten.len() + 64);
        lumen_schemas::json::write_escaped(&mut literal, &rewritten);
        match std::str::from_utf8(&literal) {
            Ok(l) => out.push_str(&l[1..l.len() - 1]),
            Err(_) => return false,
        }
        self.must_parse = true;
        true
    }

    /// Free text (of `field`): known values replaced by their pseudonyms,
    /// then the detectors; the result goes to `out` if anything changed.
    fn scrub(&mut self, raw: &str, field: Cow<'static, str>, out: &mut String) -> bool {
        let mut text = Cow::Borrowed(raw);
        for (orig, pseudonym) in self.known_in_text {
            if detect::contains(&text, orig) {
                text = Cow::Owned(text.replace(orig, &self.pseudonyms[pseudonym.clone()]));
                self.marker.record(field.clone(), "known_value");
            }
        }
        self.tmp.clear();
        let before = self.fired.len();
        if self.screen && self.r.detect(&text, self.tmp, self.fired) {
            for d in &self.fired[before..] {
                self.marker.record(field.clone(), d.rule());
            }
            self.fired.truncate(before);
            out.push_str(self.tmp);
            return true;
        }
        match text {
            Cow::Owned(t) => {
                out.push_str(&t);
                true
            }
            Cow::Borrowed(_) => false,
        }
    }
}

impl Visit for AuditVisitor<'_> {
    fn drop_member(&mut self, path: &[Seg<'_>]) -> bool {
        if !self.may_drop {
            return false;
        }
        let path = self.event_path(path);
        let k8s = &self.r.k8s;
        let in_body = matches!(
            path.first(),
            Some(Seg::Key("requestObject" | "responseObject"))
        );
        let secret_data = self.resource == "secrets"
            && ((in_body && path.last() == Some(&Seg::Key(LAST_APPLIED)))
                || k8s.secret_data.iter().any(|p| p.matches(path)));
        let configmap_data = self.r.drop_configmap_data
            && self.resource == "configmaps"
            && k8s.configmap_data.iter().any(|p| p.matches(path));
        let token = (self.resource == "serviceaccounts"
            && self.subresource == "token"
            && k8s.sa_token.matches(path))
            || (self.resource == "tokenreviews" && k8s.token_review.matches(path));
        let hit = if secret_data {
            Some("k8s:secret_data")
        } else if configmap_data {
            Some("k8s:configmap_data")
        } else if token {
            Some("k8s:serviceaccount_token")
        } else {
            None
        };
        if let Some(rule) = hit {
            self.marker.record(audit_field(path), rule);
            return true;
        }
        for rule in &self.r.rules {
            if rule.action == Action::Drop && rule.audit.iter().any(|p| p.matches(path)) {
                self.marker.record(rule.field.clone(), rule.name.clone());
                return true;
            }
        }
        false
    }

    fn string(&mut self, path: &[Seg<'_>], raw: &str, out: &mut String) -> bool {
        if self.wrapped && !self.nested && path == AKS_LOG {
            return self.nested_log(raw, out);
        }
        let path = self.event_path(path);
        let rules = if path.len() <= self.r.max_rule_depth {
            &self.r.rules[..]
        } else {
            &[]
        };
        for rule in rules {
            if rule.audit.iter().any(|p| p.matches(path)) {
                if raw.is_empty() {
                    return false;
                }
                self.marker.record(rule.field.clone(), rule.name.clone());
                match self.known.iter().find(|(k, _)| *k == raw) {
                    Some((_, done)) => out.push_str(&self.pseudonyms[done.clone()]),
                    None => self.r.apply(rule, raw, out),
                }
                return true;
            }
        }
        match path.last() {
            Some(Seg::Key("name")) => {
                self.secret_name_at = detect::secretish_name(raw).then_some(path.len());
            }
            Some(Seg::Key("value")) if self.secret_name_at == Some(path.len()) => {
                self.secret_name_at = None;
                self.marker
                    .record(audit_field(path), Detector::SecretAssignment.rule());
                out.push_str("[secret_assignment]");
                return true;
            }
            _ => {}
        }
        if raw.len() < MIN_DETECTABLE || structural(path) {
            return false;
        }
        // A whole subtree past the depth limit, or the inside of an escaped
        // AKS log: not one string of the original, checked right away.
        let chunk = path.len() >= json::MAX_DEPTH && raw.starts_with(['{', '[']);
        if self.nested || chunk {
            return self.scrub(raw, audit_field(path), out);
        }
        // Its field is named only if something is found.
        let at = |s: &str| s.as_ptr() as usize - self.base;
        let member = match path.first() {
            Some(Seg::Key(k)) => at(k)..at(k) + k.len(),
            _ => 0..0,
        };
        let start = at(raw);
        self.candidates.push((start..start + raw.len(), member));
        false
    }
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
