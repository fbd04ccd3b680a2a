//! The `detect` transform: events pass through unchanged; for every rule an
//! event matches, a finding (OCSF Detection Finding, ECS alert) goes
//! downstream beside it, with the rule's ATT&CK mapping and the event as
//! evidence. Findings then flow through redaction, rate limits and sinks
//! like any event.
//!
//! - Rules: the built-in pack ([`builtin`], on by default, single rules
//!   turned off by id) and the files of `rule_files` (globs): `.toml` files
//!   hold Lumen rules ([`rule`]), `.yml`/`.yaml` files Sigma rules
//!   ([`sigma`]).
//! - Rules are compiled once into predicates over the typed event and
//!   indexed by event kind: an event is tested against the rules of its kind
//!   only ([`field`], [`matcher`]).
//! - Dedup: one finding per rule and key (by default the container, or the
//!   host, for kernel events; the user for audit events) per
//!   `suppress_secs`; matches in between are counted and reported with the
//!   next finding, or when the window ends, with the last of them as
//!   evidence.

pub mod attack;
pub mod builtin;
pub mod field;
pub mod matcher;
pub mod rule;
pub mod sigma;

use crate::topology::burst;
use crate::topology::fanout::{Closed, Fanout};
use field::Scratch;
use lumen_schemas::event::Finding;
use lumen_schemas::time::Timestamp;
use lumen_schemas::{Event, EventKind};
use lumen_sinks::ack::Ack;
use lumen_sinks::{ComponentMetrics, Envelope};
use rule::Rule;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// `[transforms.<id>] type = "detect"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    pub inputs: Vec<String>,
    /// Lumen's built-in rules (DETECTIONS.md lists them).
    #[serde(default = "yes")]
    pub builtin_rules: bool,
    /// Ids of rules (built-in or from files) not to run.
    #[serde(default)]
    pub disable_rules: Vec<String>,
    /// Rule files, as paths or globs: `.toml` Lumen rules, `.yml`/`.yaml`
    /// Sigma rules.
    #[serde(default)]
    pub rule_files: RuleFiles,
    /// One finding per rule and key in this many seconds; matches in
    /// between are counted into it.
    #[serde(default = "default_suppress_secs")]
    pub suppress_secs: u64,
    /// Rule-and-key pairs remembered for suppression at most.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

/// `rule_files`: the paths or globs, and what the files held when the
/// config was read. A reload (SIGHUP) compares both, so a rule file whose
/// content changed rebuilds its transform though the config did not.
#[derive(Clone, Debug, Default)]
pub struct RuleFiles {
    pub patterns: Vec<String>,
    content: u64,
}

impl PartialEq for RuleFiles {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns && self.content == other.content
    }
}

impl<'de> Deserialize<'de> for RuleFiles {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let patterns = Vec::<String>::deserialize(d)?;
        Ok(RuleFiles {
            content: fingerprint(&patterns),
            patterns,
        })
    }
}

/// A hash of the rule files' names and contents (unreadable ones count as
/// such: `validate` reports them).
fn fingerprint(patterns: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for path in rule_paths(patterns).unwrap_or_default() {
        path.hash(&mut h);
        std::fs::read(&path).ok().hash(&mut h);
    }
    h.finish()
}

fn yes() -> bool {
    true
}
fn default_suppress_secs() -> u64 {
    60
}
fn default_max_keys() -> usize {
    10_000
}

impl DetectConfig {
    /// Loads and compiles every rule; the error names the file, the line
    /// and the reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_keys == 0 {
            return Err("max_keys must be at least 1".into());
        }
        Detector::new(self).map(drop)
    }
}

/// The rule files `patterns` name, in order, each once.
fn rule_paths(patterns: &[String]) -> Result<Vec<std::path::PathBuf>, String> {
    let mut out: Vec<std::path::PathBuf> = Vec::new();
    for p in patterns {
        let has_glob = p.contains(['*', '?', '[']);
        if !has_glob {
            if !Path::new(p).is_file() {
                return Err(format!("rule_files: `{p}` is not a readable file"));
            }
            out.push(p.into());
            continue;
        }
        let paths = glob::glob(p).map_err(|e| format!("rule_files: `{p}`: {e}"))?;
        for path in paths {
            let path = path.map_err(|e| format!("rule_files: `{p}`: {e}"))?;
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// Loads the rules of one file by its extension.
fn load_file(path: &Path) -> Result<Vec<Rule>, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read it: {e}"))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => rule::parse_file(&name, &text, "lumen"),
        Some("yml" | "yaml") => sigma::parse_file(&name, &text),
        _ => Err(format!(
            "{name}: a rule file ends in .toml (Lumen rules) or .yml/.yaml (Sigma rules)"
        )),
    }
}

/// What the suppression window remembers of a rule and key.
#[derive(Debug)]
struct Seen {
    /// When the last finding for it went out.
    emitted: Timestamp,
    /// Matches since then, the first and last one's time, the last event.
    pending: u64,
    first: Timestamp,
    last: Timestamp,
    evidence: Option<Arc<Event>>,
}

/// The parts of a rule's condition an index checks.
type Slots = [matcher::Alternatives];

/// The rules of one event kind. A rule with exact-string tests is found
/// through them: for each field some rule tests, the event's value is
/// looked up once, setting the bits of the parts it satisfies; a rule
/// whose bits are all set is a candidate. Fields are looked up most shared
/// first, and a field is skipped when every rule that tests it has already
/// failed a part — for most events, only the first few are read. Rules
/// without such tests are always candidates.
#[derive(Debug, Default)]
struct KindRules {
    always: Vec<usize>,
    members: Vec<Member>,
    fields: Vec<IndexField>,
}

/// An indexed rule of a kind.
#[derive(Debug)]
struct Member {
    rule: usize,
    all_bits: u32,
    /// Per field, in lookup order: when the rule tests it, the bits of
    /// the rule's parts that no field from it on can satisfy (those must
    /// be set already for the lookup to matter to this rule).
    settled_before: Vec<Option<u32>>,
}

#[derive(Debug)]
struct IndexField {
    field: field::Field,
    /// (member, bit) by the string the field equals.
    by_value: ByValue,
    /// Whether a rule tests it whose earlier parts are all settled by no
    /// field before it: it must be read whatever was found so far.
    always_read: bool,
}

/// (member, bit) by a string: one string is compared, more are hashed.
#[derive(Debug)]
enum ByValue {
    One(String, Vec<(usize, u32)>),
    Many(HashMap<String, Vec<(usize, u32)>, foldhash::fast::RandomState>),
}

impl ByValue {
    fn get(&self, text: &str) -> &[(usize, u32)] {
        match self {
            ByValue::One(s, hits) if s == text => hits,
            ByValue::One(..) => &[],
            ByValue::Many(map) => map.get(text).map_or(&[], Vec::as_slice),
        }
    }

    fn add(self, text: &str, hit: (usize, u32)) -> ByValue {
        let mut map = match self {
            ByValue::One(s, mut hits) if s == text => {
                if !hits.contains(&hit) {
                    hits.push(hit);
                }
                return ByValue::One(s, hits);
            }
            ByValue::One(s, hits) if s.is_empty() && hits.is_empty() => {
                return ByValue::One(text.to_owned(), vec![hit]);
            }
            ByValue::One(s, hits) => HashMap::from_iter([(s, hits)]),
            ByValue::Many(map) => map,
        };
        let hits = map.entry(text.to_owned()).or_default();
        if !hits.contains(&hit) {
            hits.push(hit);
        }
        ByValue::Many(map)
    }
}

impl KindRules {
    /// Builds the index of rules `(rule, its indexed parts)`.
    fn new(rules: Vec<(usize, Option<&Slots>)>) -> KindRules {
        let mut kind = KindRules::default();
        let mut indexed = Vec::new();
        for (rule, slots) in rules {
            match slots {
                Some(slots) => indexed.push((rule, slots)),
                None => kind.always.push(rule),
            }
        }
        // Fields, the most shared first.
        let mut fields: Vec<(field::Field, usize)> = Vec::new();
        for (_, slots) in &indexed {
            let mut seen: Vec<&field::Field> = Vec::new();
            for (f, _) in slots.iter().flatten() {
                if seen.contains(&f) {
                    continue;
                }
                seen.push(f);
                match fields.iter_mut().find(|(g, _)| g == f) {
                    Some((_, n)) => *n += 1,
                    None => fields.push((f.clone(), 1)),
                }
            }
        }
        fields.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let position = |f: &field::Field| fields.iter().position(|(g, _)| g == f);
        kind.fields = fields
            .iter()
            .map(|(f, _)| IndexField {
                field: f.clone(),
                by_value: ByValue::One(String::new(), Vec::new()),
                always_read: false,
            })
            .collect();
        for (m, (rule, slots)) in indexed.into_iter().enumerate() {
            // The last field that can satisfy each part.
            let last: Vec<usize> = slots
                .iter()
                .map(|alts| {
                    alts.iter()
                        .filter_map(|(f, _)| position(f))
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let mut settled_before = vec![None; kind.fields.len()];
            for (bit, alts) in slots.iter().enumerate() {
                for (f, values) in alts {
                    let Some(k) = position(f) else { continue };
                    let settled = last
                        .iter()
                        .enumerate()
                        .filter(|(_, &l)| l < k)
                        .fold(0u32, |acc, (b, _)| acc | 1 << b);
                    settled_before[k] = Some(settled);
                    kind.fields[k].always_read |= settled == 0;
                    for v in values {
                        let f = &mut kind.fields[k];
                        let by_value =
                            std::mem::replace(&mut f.by_value, ByValue::Many(HashMap::default()));
                        f.by_value = by_value.add(v, (m, 1 << bit));
                    }
                }
            }
            kind.members.push(Member {
                rule,
                all_bits: (1u32 << (slots.len() - 1) << 1).wrapping_sub(1),
                settled_before,
            });
        }
        kind
    }

    /// The rules `event` may match, in rule order, into `out`; `bits` (one
    /// per member, all zero) is left so.
    fn candidates(
        &self,
        event: &Event,
        scratch: &mut Scratch,
        bits: &mut [u32],
        found: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) {
        found.clear();
        for (k, f) in self.fields.iter().enumerate() {
            let wanted = f.always_read
                || found.iter().any(|&m| {
                    self.members[m].settled_before[k]
                        .is_some_and(|settled| bits[m] & settled == settled)
                });
            if !wanted {
                continue;
            }
            f.field.each_text(event, scratch, |text| {
                for &(m, bit) in f.by_value.get(text) {
                    if bits[m] == 0 {
                        found.push(m);
                    }
                    bits[m] |= bit;
                }
            });
        }
        out.clear();
        for &m in found.iter() {
            if bits[m] == self.members[m].all_bits {
                out.push(self.members[m].rule);
            }
            bits[m] = 0;
        }
        let indexed = out.len();
        out.extend_from_slice(&self.always);
        if indexed > 0 && out.len() > 1 {
            out.sort_unstable();
        }
    }
}

/// Counters of a detect transform, per rule: matches, and findings sent
/// (fewer when matches were suppressed into counts). Findings are rare:
/// a lock per finding costs nothing that matters.
#[derive(Debug, Default)]
pub struct DetectMetrics {
    by_rule: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

impl DetectMetrics {
    fn count(&self, rule: &str, matches: u64, findings: u64) {
        let mut m = self.by_rule.lock().unwrap_or_else(|e| e.into_inner());
        let entry = m.entry(rule.to_owned()).or_default();
        entry.0 += matches;
        entry.1 += findings;
    }

    /// (rule id, matches, findings) of every rule that matched.
    pub fn by_rule(&self) -> Vec<(String, u64, u64)> {
        self.by_rule
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(r, (m, f))| (r.clone(), *m, *f))
            .collect()
    }
}

/// The compiled rules and the suppression state of one transform.
pub struct Detector {
    /// Its counters, read by `/metrics`.
    pub metrics: Arc<DetectMetrics>,
    rules: Vec<Rule>,
    /// Per rule whose condition has parts the index checks (exact-string
    /// equalities, or an `any` of them): what is left of the condition,
    /// evaluated once they all hold.
    rest: Vec<Option<matcher::Cond>>,
    /// Rules by event kind (index into `filter::KINDS`).
    by_kind: Vec<KindRules>,
    /// The candidates of the event being inspected.
    candidates: Vec<usize>,
    /// Per indexed rule of a kind, the bits of its parts the event set
    /// (all zero between events), and the rules with some set.
    bits: Vec<u32>,
    found: Vec<usize>,
    scratch: Scratch,
    seen: HashMap<(usize, String), Seen>,
    /// Recent match times of threshold rules, by rule and key.
    recent: HashMap<(usize, String), std::collections::VecDeque<Timestamp>>,
    suppress_ns: i64,
    max_keys: usize,
    key: String,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("rules", &self.rules.len())
            .field("keys", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl Detector {
    pub fn new(config: &DetectConfig) -> Result<Self, String> {
        let mut rules = Vec::new();
        if config.builtin_rules {
            rules.extend(builtin::rules()?);
        }
        for path in rule_paths(&config.rule_files.patterns)? {
            rules.extend(load_file(&path)?);
        }
        let mut ids = std::collections::HashSet::new();
        for r in &rules {
            if !ids.insert(r.info.id.as_str()) {
                return Err(format!("rule `{}` is defined twice", r.info.id));
            }
        }
        for id in &config.disable_rules {
            if !ids.contains(id.as_str()) {
                return Err(format!("disable_rules: no rule has the id `{id}`"));
            }
        }
        rules.retain(|r| !config.disable_rules.contains(&r.info.id));
        Ok(Self::with_rules(
            rules,
            config.suppress_secs,
            config.max_keys,
        ))
    }

    pub fn with_rules(rules: Vec<Rule>, suppress_secs: u64, max_keys: usize) -> Self {
        let splits: Vec<_> = rules.iter().map(|r| r.when.split_indexable()).collect();
        let by_kind = (0..crate::transforms::filter::KINDS.len())
            .map(|k| {
                KindRules::new(
                    rules
                        .iter()
                        .zip(&splits)
                        .enumerate()
                        .filter(|(_, (r, _))| r.kinds.contains(&k))
                        .map(|(i, (_, split))| (i, split.as_ref().map(|(s, _)| s.as_slice())))
                        .collect(),
                )
            })
            .collect();
        let rest = splits
            .into_iter()
            .map(|split| split.map(|(_, rest)| rest))
            .collect();
        Detector {
            metrics: Arc::default(),
            bits: vec![0; rules.len()],
            found: Vec::new(),
            rules,
            rest,
            by_kind,
            candidates: Vec::new(),
            scratch: Scratch::default(),
            seen: HashMap::new(),
            recent: HashMap::new(),
            suppress_ns: i64::try_from(suppress_secs)
                .unwrap_or(i64::MAX / 1_000_000_000)
                .saturating_mul(1_000_000_000),
            max_keys: max_keys.max(1),
            key: String::new(),
        }
    }

    /// How many rules run.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Tests `event` against the rules of its kind; findings to send go to
    /// `out`.
    pub fn inspect(&mut self, event: &Arc<Event>, out: &mut Vec<Event>) {
        if matches!(event.kind, EventKind::Finding(_) | EventKind::Loss(_)) {
            return;
        }
        let Some(slot) = rule::kind_slot(event.kind.name()) else {
            return;
        };
        self.scratch.clear();
        let mut candidates = std::mem::take(&mut self.candidates);
        self.by_kind[slot].candidates(
            event,
            &mut self.scratch,
            &mut self.bits,
            &mut self.found,
            &mut candidates,
        );
        for &r in &candidates {
            let rule = &self.rules[r];
            let when = self.rest[r].as_ref().unwrap_or(&rule.when);
            if rule.matches_given(when, event, &mut self.scratch) {
                self.key_of(r, event);
                if self.reached(r, event.time) {
                    self.found(r, event, out);
                }
            }
        }
        self.candidates = candidates;
    }

    /// The values of rule `r`'s key fields in `event`, into `self.key`.
    fn key_of(&mut self, r: usize, event: &Event) {
        self.key.clear();
        for f in &self.rules[r].key {
            if let Some(v) = f
                .get(event, &mut self.scratch)
                .as_ref()
                .and_then(|v| v.text())
            {
                self.key.push_str(&v);
            }
            self.key.push('\0');
        }
    }

    /// Whether rule `r` reached its threshold for the current key with a
    /// match at `t` (always, for rules without one).
    fn reached(&mut self, r: usize, t: Timestamp) -> bool {
        let Some((count, window)) = self.rules[r].threshold else {
            return true;
        };
        if !self.recent.contains_key(&(r, self.key.clone())) && self.recent.len() >= self.max_keys {
            // Forget the keys whose matches are all older than their window.
            let rules = &self.rules;
            self.recent.retain(|(r, _), times| {
                let w = rules[*r].threshold.map_or(0, |(_, w)| w);
                times
                    .back()
                    .is_some_and(|last| t.0.saturating_sub(last.0) < w)
            });
            if self.recent.len() >= self.max_keys {
                return false;
            }
        }
        let times = self.recent.entry((r, self.key.clone())).or_default();
        times.push_back(t);
        while times
            .front()
            .is_some_and(|f| t.0.saturating_sub(f.0) >= window)
        {
            times.pop_front();
        }
        if times.len() >= count {
            times.clear();
            return true;
        }
        false
    }

    /// A match of rule `r` (its key in `self.key`): a finding now, or
    /// counted into the next one.
    fn found(&mut self, r: usize, event: &Arc<Event>, out: &mut Vec<Event>) {
        self.metrics.count(&self.rules[r].info.id, 1, 0);
        let t = event.time;
        if let Some(s) = self.seen.get_mut(&(r, self.key.clone())) {
            if t.0.saturating_sub(s.emitted.0) < self.suppress_ns {
                if s.pending == 0 {
                    s.first = t;
                }
                s.pending += 1;
                s.last = t;
                s.evidence = Some(event.clone());
                return;
            }
            let (count, first) = (s.pending + 1, if s.pending > 0 { s.first } else { t });
            s.emitted = t;
            s.pending = 0;
            s.evidence = None;
            out.push(self.finding(r, count, first, t, event));
            return;
        }
        if self.seen.len() >= self.max_keys {
            self.evict(t, out);
        }
        self.seen.insert(
            (r, self.key.clone()),
            Seen {
                emitted: t,
                pending: 0,
                first: t,
                last: t,
                evidence: None,
            },
        );
        out.push(self.finding(r, 1, t, t, event));
    }

    /// Makes room: windows that ended go (their counts reported), else the
    /// oldest one.
    fn evict(&mut self, now: Timestamp, out: &mut Vec<Event>) {
        self.flush(now, out);
        if self.seen.len() < self.max_keys {
            return;
        }
        if let Some(oldest) = self
            .seen
            .iter()
            .min_by_key(|(_, s)| s.emitted.0)
            .map(|(k, _)| k.clone())
        {
            if let Some(s) = self.seen.remove(&oldest) {
                self.report(oldest.0, s, out);
            }
        }
    }

    fn report(&self, r: usize, s: Seen, out: &mut Vec<Event>) {
        if let (true, Some(evidence)) = (s.pending > 0, s.evidence) {
            out.push(self.finding(r, s.pending, s.first, s.last, &evidence));
        }
    }

    /// Reports the counts of windows that ended by `now` and forgets them.
    pub fn flush(&mut self, now: Timestamp, out: &mut Vec<Event>) {
        let ended: Vec<(usize, String)> = self
            .seen
            .iter()
            .filter(|(_, s)| now.0.saturating_sub(s.emitted.0) >= self.suppress_ns)
            .map(|(k, _)| k.clone())
            .collect();
        for k in ended {
            if let Some(s) = self.seen.remove(&k) {
                self.report(k.0, s, out);
            }
        }
    }

    /// Reports every pending count (at shutdown).
    pub fn drain(&mut self, out: &mut Vec<Event>) {
        for (k, s) in std::mem::take(&mut self.seen) {
            self.report(k.0, s, out);
        }
    }

    fn finding(
        &self,
        r: usize,
        count: u64,
        first: Timestamp,
        last: Timestamp,
        evidence: &Event,
    ) -> Event {
        self.metrics.count(&self.rules[r].info.id, 0, 1);
        Event {
            time: last,
            observed: Timestamp::now(),
            host: evidence.host.clone(),
            kind: EventKind::Finding(Box::new(Finding {
                rule: self.rules[r].info.clone(),
                count,
                first_seen: first,
                last_seen: last,
                evidence: Box::new(evidence.clone()),
            })),
            redaction: evidence.redaction.clone(),
        }
    }
}

/// Passes every event on and sends the findings after the event they are
/// about.
pub async fn run(
    id: String,
    detector: Detector,
    rx: mpsc::Receiver<Envelope>,
    out: Fanout,
    metrics: Arc<ComponentMetrics>,
) {
    tracing::info!(component = %id, rules = detector.len(), "detect: rules compiled");
    let detect = Detect {
        detector,
        findings: Vec::new(),
    };
    burst::run_ticking(detect, Duration::from_secs(1), rx, out, &metrics).await;
}

/// The transform's state: findings to send wait in `findings`.
struct Detect {
    detector: Detector,
    findings: Vec<Event>,
}

impl burst::Ticking for Detect {
    /// The event, then the findings it raised.
    async fn event(
        &mut self,
        env: Envelope,
        out: &mut Fanout,
        metrics: &ComponentMetrics,
    ) -> Result<(), Closed> {
        self.detector.inspect(&env.event, &mut self.findings);
        out.send(env).await?;
        metrics.add_sent(1);
        self.send_findings(out, metrics).await
    }

    /// The counts of suppression windows that ended.
    async fn tick(&mut self, out: &mut Fanout, metrics: &ComponentMetrics) -> Result<(), Closed> {
        self.detector.flush(Timestamp::now(), &mut self.findings);
        self.send_findings(out, metrics).await
    }

    /// Every pending count.
    async fn end(&mut self, out: &mut Fanout, metrics: &ComponentMetrics) -> Result<(), Closed> {
        self.detector.drain(&mut self.findings);
        self.send_findings(out, metrics).await
    }
}

impl Detect {
    async fn send_findings(
        &mut self,
        out: &mut Fanout,
        metrics: &ComponentMetrics,
    ) -> Result<(), Closed> {
        for f in self.findings.drain(..) {
            if let EventKind::Finding(finding) = &f.kind {
                tracing::debug!(rule = %finding.rule.id, count = finding.count, "detect: finding");
            }
            out.send(Envelope::new(f, Ack::none())).await?;
            metrics.add_sent(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
