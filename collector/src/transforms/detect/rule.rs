//! Rules: what a finding says (id, title, severity, ATT&CK), which event
//! kinds a rule looks at, its condition, its exceptions and the fields
//! that key its findings; and Lumen's own rule format (TOML), compiled
//! into [`Cond`]itions over ECS field names.
//!
//! ```toml
//! [[rule]]
//! id = "acme.curl_in_prod"
//! title = "curl run in a production pod"
//! severity = "medium"                      # informational, low, medium, high, critical
//! kinds = ["process_exec"]                 # the `filter` transform's kind names
//! attack = ["T1105"]                       # or { technique = "T…", tactic = "TA…" }
//! key = ["container.id"]                   # one finding per key per suppress_secs
//! when = { all = [
//!   { field = "process.name", in = ["curl", "wget"] },
//!   { field = "kubernetes.namespace", prefix = "prod-" },
//! ] }
//! exceptions = [{ field = "container.image.name", glob = "registry.acme/debug-*" }]
//! ```

use super::attack;
use super::field::{Field, Scratch};
use super::matcher::{Cmp, Cond, Op, Test};
use crate::transforms::filter::KINDS;
use lumen_schemas::event::{RuleInfo, Severity};
use lumen_schemas::Event;
use serde::Deserialize;
use std::sync::Arc;

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub info: Arc<RuleInfo>,
    /// Indexes into [`KINDS`] of the event kinds it looks at.
    pub kinds: Vec<usize>,
    pub when: Cond,
    /// The part of the condition that reads an audit body, tested last.
    pub costly: Option<Cond>,
    /// A match that also matches one of these is no finding.
    pub exceptions: Vec<Cond>,
    /// The fields whose values key its findings (one per key per window).
    pub key: Vec<Field>,
    /// Only when it matched this often for one key within the window
    /// (count, window in ns): rules about repeated behaviour.
    pub threshold: Option<(usize, i64)>,
}

impl Rule {
    /// Whether `event` (of one of the rule's kinds) is a finding: the
    /// cheap part of the condition, then the exceptions, then what reads
    /// an audit body.
    pub fn matches(&self, event: &Event, scratch: &mut Scratch) -> bool {
        self.matches_given(&self.when, event, scratch)
    }

    /// As [`Rule::matches`], `when` standing for the cheap part of the
    /// condition (what an index has not checked already).
    pub fn matches_given(&self, when: &Cond, event: &Event, scratch: &mut Scratch) -> bool {
        when.eval(event, scratch)
            && !self.exceptions.iter().any(|e| e.eval(event, scratch))
            && self.costly.as_ref().is_none_or(|c| c.eval(event, scratch))
    }
}

/// Splits an `all` into its parts that read no audit body and the ones
/// that do (so exceptions can be tested in between).
fn split_costly(when: Cond) -> (Cond, Option<Cond>) {
    match when {
        Cond::All(cs) => {
            let (costly, cheap): (Vec<Cond>, Vec<Cond>) = cs.into_iter().partition(Cond::is_costly);
            let costly = (!costly.is_empty()).then_some(Cond::All(costly));
            (Cond::All(cheap), costly)
        }
        other => (other, None),
    }
}

/// The index of an event kind name in [`KINDS`].
pub fn kind_slot(name: &str) -> Option<usize> {
    KINDS.iter().position(|k| *k == name)
}

/// A rule file: `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

/// One `[[rule]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub severity: Severity,
    pub kinds: Vec<String>,
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub attack: Vec<AttackSpec>,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub key: Vec<String>,
    pub when: CondSpec,
    #[serde(default)]
    pub exceptions: Vec<CondSpec>,
    /// A finding only when the rule matched `count` times for one key
    /// within `within_secs`.
    pub threshold: Option<Threshold>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub count: usize,
    pub within_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AttackSpec {
    Technique(String),
    Full {
        technique: String,
        tactic: Option<String>,
    },
}

/// A scalar in a condition: compared as text (numbers as numbers too).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Int(i64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// One value or a list of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(Scalar),
    Many(Vec<Scalar>),
}

impl OneOrMany {
    fn texts(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.text()],
            OneOrMany::Many(v) => v.iter().map(Scalar::text).collect(),
        }
    }
}

/// A condition as written: a group (`all`, `any`, `not`) or one field
/// test (`field` and one operation).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CondSpec {
    pub all: Option<Vec<CondSpec>>,
    pub any: Option<Vec<CondSpec>>,
    pub not: Option<Box<CondSpec>>,
    pub field: Option<String>,
    pub equals: Option<OneOrMany>,
    #[serde(rename = "in")]
    pub in_: Option<Vec<Scalar>>,
    pub prefix: Option<OneOrMany>,
    pub suffix: Option<OneOrMany>,
    pub contains: Option<OneOrMany>,
    pub contains_all: Option<Vec<Scalar>>,
    pub glob: Option<OneOrMany>,
    pub regex: Option<OneOrMany>,
    pub cidr: Option<OneOrMany>,
    pub exists: Option<bool>,
    pub gt: Option<i64>,
    pub gte: Option<i64>,
    pub lt: Option<i64>,
    pub lte: Option<i64>,
    /// Compare strings without regard to ASCII case.
    #[serde(default)]
    pub nocase: bool,
}

impl CondSpec {
    /// The compiled condition, or what is wrong with it.
    pub fn compile(&self) -> Result<Cond, String> {
        let groups = [self.all.is_some(), self.any.is_some(), self.not.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if groups > 0 && self.field.is_some() {
            return Err("a condition is either a group (all, any, not) or a field test".into());
        }
        if groups > 1 {
            return Err("a condition has one of all, any, not; nest them to combine".into());
        }
        if let Some(cs) = &self.all {
            return Ok(Cond::All(compile_all(cs)?));
        }
        if let Some(cs) = &self.any {
            if cs.is_empty() {
                return Err("`any` of nothing never matches: list at least one".into());
            }
            return Ok(Cond::Any(compile_all(cs)?));
        }
        if let Some(c) = &self.not {
            return Ok(Cond::Not(Box::new(c.compile()?)));
        }
        let Some(name) = &self.field else {
            return Err("a condition needs `field` (and an operation) or all/any/not".into());
        };
        let field = Field::parse(name)?;
        let nc = self.nocase;
        let mut ops: Vec<Op> = Vec::new();
        if let Some(v) = &self.equals {
            ops.push(Op::equals(&v.texts(), nc));
        }
        if let Some(v) = &self.in_ {
            let texts: Vec<String> = v.iter().map(Scalar::text).collect();
            ops.push(Op::equals(&texts, nc));
        }
        if let Some(v) = &self.prefix {
            ops.push(Op::Prefix(v.texts(), nc));
        }
        if let Some(v) = &self.suffix {
            ops.push(Op::Suffix(v.texts(), nc));
        }
        if let Some(v) = &self.contains {
            ops.push(Op::contains(&v.texts(), nc)?);
        }
        if let Some(v) = &self.contains_all {
            ops.push(Op::ContainsAll(v.iter().map(Scalar::text).collect(), nc));
        }
        if let Some(v) = &self.glob {
            ops.push(Op::glob(&v.texts(), nc)?);
        }
        if let Some(v) = &self.regex {
            ops.push(Op::regex(&v.texts(), nc)?);
        }
        if let Some(v) = &self.cidr {
            ops.push(Op::cidr(&v.texts())?);
        }
        if let Some(e) = self.exists {
            ops.push(Op::Exists(e));
        }
        for (n, cmp) in [
            (self.gt, Cmp::Gt),
            (self.gte, Cmp::Gte),
            (self.lt, Cmp::Lt),
            (self.lte, Cmp::Lte),
        ] {
            if let Some(n) = n {
                ops.push(Op::Compare(cmp, n));
            }
        }
        match ops.len() {
            0 => Err(format!(
                "`{name}` has no operation (equals, in, prefix, suffix, contains, contains_all, glob, regex, cidr, exists, gt, gte, lt, lte)"
            )),
            1 => Ok(Cond::Test(Test::new(field, ops.remove(0)))),
            // Several operations on one field: all must hold.
            _ => Ok(Cond::All(
                ops.into_iter()
                    .map(|op| {
                        Cond::Test(Test::new(field.clone(), op))
                    })
                    .collect(),
            )),
        }
    }
}

fn compile_all(cs: &[CondSpec]) -> Result<Vec<Cond>, String> {
    cs.iter().map(CondSpec::compile).collect()
}

/// The default key of a rule's findings: per container (or host) for
/// kernel events, per user for audit events.
fn default_key(kinds: &[usize]) -> Vec<Field> {
    if kinds.iter().all(|k| KINDS[*k] == "k8s_audit") {
        vec![Field::UserName]
    } else {
        vec![Field::ContainerId, Field::HostName]
    }
}

impl RuleSpec {
    /// The compiled rule from `ruleset` (`builtin`, `lumen`).
    pub fn compile(&self, ruleset: &str) -> Result<Rule, String> {
        let fail = |e: String| format!("rule `{}`: {e}", self.id);
        if self.id.trim().is_empty() {
            return Err("a rule has an empty `id`".into());
        }
        if self.kinds.is_empty() {
            return Err(fail(format!(
                "`kinds` is empty: name the event kinds it looks at ({})",
                KINDS.join(", ")
            )));
        }
        let kinds = self
            .kinds
            .iter()
            .map(|k| {
                kind_slot(k).ok_or_else(|| {
                    fail(format!("`{k}` is not an event kind ({})", KINDS.join(", ")))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let attacks = self
            .attack
            .iter()
            .map(|a| match a {
                AttackSpec::Technique(t) => attack::attack(t, None),
                AttackSpec::Full { technique, tactic } => {
                    attack::attack(technique, tactic.as_deref())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let (when, costly) = split_costly(self.when.compile().map_err(fail)?.optimize());
        let exceptions = self
            .exceptions
            .iter()
            .map(|e| e.compile().map(Cond::optimize))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("exceptions: {e}")))?;
        let key = if self.key.is_empty() {
            default_key(&kinds)
        } else {
            self.key
                .iter()
                .map(|k| Field::parse(k))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(format!("key: {e}")))?
        };
        let threshold = match &self.threshold {
            None => None,
            Some(t) if t.count < 2 || t.within_secs == 0 => {
                return Err(fail(
                    "threshold: count must be at least 2 and within_secs at least 1".into(),
                ))
            }
            Some(t) => Some((
                t.count,
                i64::try_from(t.within_secs)
                    .unwrap_or(i64::MAX / 1_000_000_000)
                    .saturating_mul(1_000_000_000),
            )),
        };
        Ok(Rule {
            threshold,
            info: Arc::new(RuleInfo {
                id: self.id.clone(),
                title: self.title.clone(),
                description: self.description.clone(),
                severity: self.severity,
                types: self.types.clone(),
                attacks,
                ruleset: ruleset.to_owned(),
                references: self.references.clone(),
            }),
            kinds,
            when,
            costly,
            exceptions,
            key,
        })
    }
}

/// Compiles the rules of a TOML rule file; `name` says where errors are.
pub fn parse_file(name: &str, text: &str, ruleset: &str) -> Result<Vec<Rule>, String> {
    let file: RuleFile = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(":{}", line_of(text, s.start)))
            .unwrap_or_default();
        format!("{name}{at}: {}", e.message())
    })?;
    let mut seen = std::collections::HashSet::new();
    file.rule
        .iter()
        .map(|spec| {
            let at = line_of_id(text, &spec.id);
            if !seen.insert(spec.id.as_str()) {
                return Err(format!("{name}:{at}: rule `{}` is defined twice", spec.id));
            }
            spec.compile(ruleset)
                .map_err(|e| format!("{name}:{at}: {e}"))
        })
        .collect()
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.bytes().filter(|b| *b == b'\n').count() + 1)
}

/// The line of the rule whose id is `id` (its `id = "…"` line).
fn line_of_id(text: &str, id: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with("id") && l.contains(&format!("\"{id}\""))
        })
        .map_or(1, |i| i + 1)
}
