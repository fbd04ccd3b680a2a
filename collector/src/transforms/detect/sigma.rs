//! Sigma rules (the SIEM community's shared format, SigmaHQ), compiled into
//! the same predicates as Lumen's rules — for the log sources Lumen makes:
//! `linux` `process_creation`, `file_event` and `network_connection`, and
//! Kubernetes `audit`. Their field names are mapped to Lumen's; the value
//! modifiers `contains`, `startswith`, `endswith`, `all`, `re`, `cidr`,
//! `exists`, `cased`, `gt`/`gte`/`lt`/`lte` and the condition forms
//! (`and`, `or`, `not`, parentheses, `1 of`/`all of` a pattern or `them`)
//! are understood. Matching is without case unless `cased`, as Sigma says.
//!
//! A rule Lumen cannot evaluate as written (another log source, a field
//! Lumen does not have, a modifier it does not know, keyword searches, an
//! aggregation) is refused at load with the reason: it never silently
//! matches nothing.

use super::attack;
use super::field::Field;
use super::matcher::{Cmp, Cond, Op, Test};
use super::rule::{kind_slot, Rule};
use lumen_schemas::event::{RuleInfo, Severity};
use serde_json::Value;
use std::sync::Arc;

/// A log source Lumen produces: the event kinds it stands for and how its
/// fields are named.
struct Source {
    kinds: &'static [&'static str],
    fields: &'static [(&'static str, &'static str)],
}

const PROCESS_CREATION: Source = Source {
    kinds: &["process_exec"],
    fields: &[
        ("Image", "process.executable"),
        ("CommandLine", "process.command_line"),
        ("ParentImage", "process.parent.executable"),
        ("ParentCommandLine", "process.parent.command_line"),
        ("ProcessId", "process.pid"),
        ("ParentProcessId", "process.parent.pid"),
    ],
};

const FILE_EVENT: Source = Source {
    kinds: &["file_write", "file_rename"],
    fields: &[
        ("TargetFilename", "file.path"),
        ("Image", "process.executable"),
        ("ProcessId", "process.pid"),
    ],
};

const NETWORK_CONNECTION: Source = Source {
    kinds: &["network_connect", "network_accept"],
    fields: &[
        ("Image", "process.executable"),
        ("ProcessId", "process.pid"),
        ("DestinationIp", "destination.ip"),
        ("DestinationPort", "destination.port"),
        ("SourceIp", "source.ip"),
        ("SourcePort", "source.port"),
        ("Protocol", "network.transport"),
        // `Initiated: 'true'` is a connect; mapped with its values below.
        ("Initiated", "network.direction"),
    ],
};

const KUBERNETES_AUDIT: Source = Source {
    kinds: &["k8s_audit"],
    fields: &[
        ("verb", "kubernetes.audit.verb"),
        ("objectRef.resource", "kubernetes.audit.objectRef.resource"),
        (
            "objectRef.subresource",
            "kubernetes.audit.objectRef.subresource",
        ),
        (
            "objectRef.namespace",
            "kubernetes.audit.objectRef.namespace",
        ),
        ("objectRef.name", "kubernetes.audit.objectRef.name"),
        ("objectRef.apiGroup", "kubernetes.audit.objectRef.apiGroup"),
        (
            "responseStatus.code",
            "kubernetes.audit.responseStatus.code",
        ),
        ("requestURI", "kubernetes.audit.requestURI"),
        ("userAgent", "kubernetes.audit.userAgent"),
        ("sourceIPs", "kubernetes.audit.sourceIPs"),
        ("stage", "kubernetes.audit.stage"),
        ("user.username", "kubernetes.audit.user.username"),
        ("user.groups", "kubernetes.audit.user.groups"),
        (
            "impersonatedUser.username",
            "kubernetes.audit.impersonatedUser.username",
        ),
        // The Sigma Kubernetes taxonomy's abstractions over the pod spec.
        (
            "hostPath",
            "kubernetes.audit.requestObject.spec.volumes.hostPath.path",
        ),
        (
            "capabilities",
            "kubernetes.audit.requestObject.spec.containers.securityContext.capabilities.add",
        ),
    ],
};

fn source(logsource: &Value) -> Result<&'static Source, String> {
    let get = |k: &str| logsource.get(k).and_then(Value::as_str).unwrap_or("");
    match (get("product"), get("category"), get("service")) {
        ("linux", "process_creation", _) => Ok(&PROCESS_CREATION),
        ("linux", "file_event", _) => Ok(&FILE_EVENT),
        ("linux", "network_connection", _) => Ok(&NETWORK_CONNECTION),
        ("kubernetes", _, "audit") => Ok(&KUBERNETES_AUDIT),
        (p, c, s) => Err(format!(
            "logsource (product {p:?}, category {c:?}, service {s:?}) is not one Lumen produces: linux process_creation, file_event or network_connection, or kubernetes audit"
        )),
    }
}

/// Compiles one Sigma rule (YAML text); `name` says where errors are.
pub fn parse_file(name: &str, text: &str) -> Result<Vec<Rule>, String> {
    let doc: Value =
        serde_saphyr::from_str(text).map_err(|e| format!("{name}: not a Sigma rule: {e}"))?;
    let line_of = |needle: &str| -> usize {
        text.lines()
            .position(|l| l.trim_start().starts_with(needle))
            .map_or(1, |i| i + 1)
    };
    let fail = |needle: &str, e: String| format!("{name}:{}: {e}", line_of(needle));
    let title = doc
        .get("title")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("title", "a Sigma rule needs a title".into()))?;
    let id = doc.get("id").and_then(Value::as_str).map_or_else(
        || format!("sigma.{}", slug(title)),
        |id| format!("sigma.{id}"),
    );
    let src =
        source(doc.get("logsource").unwrap_or(&Value::Null)).map_err(|e| fail("logsource", e))?;
    let detection = doc
        .get("detection")
        .and_then(Value::as_object)
        .ok_or_else(|| fail("detection", "a Sigma rule needs a detection".into()))?;
    let condition = match detection.get("condition") {
        Some(Value::String(c)) => c.clone(),
        Some(Value::Array(cs)) if cs.len() == 1 => cs[0].as_str().unwrap_or("").to_owned(),
        Some(Value::Array(_)) => {
            return Err(fail(
                "condition",
                "several conditions in one rule are not supported: write one rule each".into(),
            ))
        }
        _ => return Err(fail("detection", "the detection has no condition".into())),
    };
    let mut searches = Vec::new();
    for (key, search) in detection {
        if key == "condition" || key == "timeframe" {
            if key == "timeframe" {
                return Err(fail(
                    "timeframe",
                    "timeframe (aggregations) is not supported".into(),
                ));
            }
            continue;
        }
        let cond = compile_search(search, src)
            .map_err(|e| fail(&format!("{key}:"), format!("{key}: {e}")))?;
        searches.push((key.clone(), cond));
    }
    let when = Condition::new(&condition, &searches)
        .parse()
        .map_err(|e| fail("condition", format!("condition `{condition}`: {e}")))?
        .optimize();
    let severity = match doc.get("level").and_then(Value::as_str).unwrap_or("medium") {
        "informational" => Severity::Informational,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        other => {
            return Err(fail(
                "level",
                format!("level `{other}` is not a Sigma level"),
            ))
        }
    };
    let tags: Vec<&str> = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let tactic = tags
        .iter()
        .filter_map(|t| t.strip_prefix("attack."))
        .find_map(attack::tactic_by_tag);
    let attacks = tags
        .iter()
        .filter_map(|t| t.strip_prefix("attack."))
        .filter(|t| t.starts_with(['t', 'T']) && t[1..].starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|t| {
            attack::attack(t, None)
                .or_else(|_| attack::attack(t, tactic))
                .ok()
        })
        .collect();
    let kinds = src
        .kinds
        .iter()
        .filter_map(|k| kind_slot(k))
        .collect::<Vec<_>>();
    let audit = src.kinds == ["k8s_audit"];
    Ok(vec![Rule {
        info: Arc::new(RuleInfo {
            id,
            title: title.to_owned(),
            description: doc
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_owned(),
            severity,
            types: vec!["Sigma".into()],
            attacks,
            ruleset: "sigma".into(),
            references: doc
                .get("references")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }),
        kinds,
        when,
        costly: None,
        exceptions: Vec::new(),
        key: if audit {
            vec![Field::UserName]
        } else {
            vec![Field::ContainerId, Field::HostName]
        },
        threshold: None,
    }])
}

fn slug(title: &str) -> String {
    title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A search: a map of field tests (all must hold), or a list of maps (one
/// must).
fn compile_search(search: &Value, src: &Source) -> Result<Cond, String> {
    match search {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| compile_item(k, v, src))
            .collect::<Result<Vec<_>, _>>()
            .map(Cond::All),
        Value::Array(items) if items.iter().all(Value::is_object) => items
            .iter()
            .map(|m| compile_search(m, src))
            .collect::<Result<Vec<_>, _>>()
            .map(Cond::Any),
        Value::Array(_) | Value::String(_) => Err(
            "keyword searches (values without a field) need the raw event text, which Lumen's typed events do not keep: name the field".into(),
        ),
        _ => Err("a search is a map of fields or a list of them".into()),
    }
}

/// One `field|modifier|…: value(s)` item.
fn compile_item(key: &str, value: &Value, src: &Source) -> Result<Cond, String> {
    let mut parts = key.split('|');
    let sigma_field = parts.next().unwrap_or("");
    let modifiers: Vec<&str> = parts.collect();
    let ecs = src
        .fields
        .iter()
        .find(|(s, _)| *s == sigma_field)
        .map(|(_, e)| *e)
        .ok_or_else(|| {
            format!(
                "field `{sigma_field}` is not one Lumen has for this log source ({})",
                src.fields
                    .iter()
                    .map(|(s, _)| *s)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let field = Field::parse(ecs)?;
    let values: Vec<&Value> = match value {
        Value::Array(v) => v.iter().collect(),
        v => vec![v],
    };
    let mut all = false;
    let mut cased = false;
    let mut kind = "equals";
    for m in &modifiers {
        match *m {
            "all" => all = true,
            "cased" => cased = true,
            "contains" | "startswith" | "endswith" | "re" | "cidr" | "exists" | "gt" | "gte"
            | "lt" | "lte" => kind = m,
            "i" | "m" | "s" if kind == "re" => {}
            other => {
                return Err(format!(
                    "modifier `{other}` is not supported (Lumen knows contains, startswith, endswith, all, re, cidr, exists, cased, gt, gte, lt, lte)"
                ))
            }
        }
    }
    let nocase = !cased;
    let test = |op: Op| Cond::Test(Test::new(field.clone(), op));
    let text = |v: &Value| -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(format!("`{other}` is not a value Lumen can compare")),
        }
    };
    let mut conds = Vec::new();
    for v in values {
        if v.is_null() {
            conds.push(test(Op::Exists(false)));
            continue;
        }
        let mut s = text(v)?;
        if sigma_field == "Initiated" {
            s = match s.as_str() {
                "true" => "egress".into(),
                "false" => "ingress".into(),
                other => return Err(format!("Initiated is true or false, not `{other}`")),
            };
        }
        let cond = match kind {
            "exists" => test(Op::Exists(s == "true")),
            "re" => test(Op::regex(&[s], nocase)?),
            "cidr" => test(Op::cidr(&[s])?),
            "gt" | "gte" | "lt" | "lte" => {
                let n: i64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
                let cmp = match kind {
                    "gt" => Cmp::Gt,
                    "gte" => Cmp::Gte,
                    "lt" => Cmp::Lt,
                    _ => Cmp::Lte,
                };
                test(Op::Compare(cmp, n))
            }
            _ if s == "*" => test(Op::Exists(true)),
            _ => {
                let wild = has_wildcards(&s);
                let plain = unescape(&s);
                match (kind, wild) {
                    ("contains", false) => test(Op::contains(&[plain], nocase)?),
                    ("startswith", false) => test(Op::Prefix(vec![plain], nocase)),
                    ("endswith", false) => test(Op::Suffix(vec![plain], nocase)),
                    ("equals", false) => test(Op::equals(&[plain], nocase)),
                    ("contains", true) => test(Op::glob(&[format!("*{s}*")], nocase)?),
                    ("startswith", true) => test(Op::glob(&[format!("{s}*")], nocase)?),
                    ("endswith", true) => test(Op::glob(&[format!("*{s}")], nocase)?),
                    _ => test(Op::glob(&[s.clone()], nocase)?),
                }
            }
        };
        conds.push(cond);
    }
    Ok(if all {
        Cond::All(conds)
    } else {
        Cond::Any(conds)
    })
}

/// Whether a Sigma value has an unescaped `*` or `?`.
fn has_wildcards(s: &str) -> bool {
    let mut escaped = false;
    for c in s.chars() {
        match (escaped, c) {
            (false, '\\') => escaped = true,
            (false, '*' | '?') => return true,
            _ => escaped = false,
        }
    }
    false
}

/// A Sigma value without its escapes (`\*`, `\?`, `\\`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if matches!(n, '*' | '?' | '\\') {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// A Sigma condition, parsed by precedence: `or` < `and` < `not` < atoms
/// (a search name, `1 of`/`all of` a pattern or `them`, parentheses).
struct Condition<'a> {
    tokens: Vec<String>,
    at: usize,
    searches: &'a [(String, Cond)],
}

impl<'a> Condition<'a> {
    fn new(text: &str, searches: &'a [(String, Cond)]) -> Self {
        let spaced = text.replace('(', " ( ").replace(')', " ) ");
        Condition {
            tokens: spaced.split_whitespace().map(str::to_owned).collect(),
            at: 0,
            searches,
        }
    }

    fn parse(mut self) -> Result<Cond, String> {
        if self.tokens.iter().any(|t| t == "|") {
            return Err("aggregations (`| count() …`) are not supported".into());
        }
        let c = self.or()?;
        if let Some(t) = self.tokens.get(self.at) {
            return Err(format!("unexpected `{t}`"));
        }
        Ok(c)
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some("or") {
            self.next();
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::Any(parts)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.not()?];
        while self.peek() == Some("and") {
            self.next();
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::All(parts)
        })
    }

    fn not(&mut self) -> Result<Cond, String> {
        if self.peek() == Some("not") {
            self.next();
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond, String> {
        let Some(t) = self.next() else {
            return Err("it ends too early".into());
        };
        match t.as_str() {
            "(" => {
                let c = self.or()?;
                match self.next().as_deref() {
                    Some(")") => Ok(c),
                    _ => Err("a `(` is not closed".into()),
                }
            }
            "1" | "any" | "all" => {
                let quantifier = t;
                if self.next().as_deref() != Some("of") {
                    return Err(format!("`{quantifier}` is not followed by `of`"));
                }
                let pattern = self.next().ok_or("`of` is not followed by a name")?;
                let chosen = self.matching(&pattern)?;
                Ok(if quantifier == "all" {
                    Cond::All(chosen)
                } else {
                    Cond::Any(chosen)
                })
            }
            name => self
                .searches
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.clone())
                .ok_or_else(|| format!("no search is named `{name}`")),
        }
    }

    /// The searches a pattern (`them`, `selection_*`) names.
    fn matching(&self, pattern: &str) -> Result<Vec<Cond>, String> {
        let chosen: Vec<Cond> = self
            .searches
            .iter()
            .filter(|(n, _)| {
                pattern == "them"
                    || match pattern.strip_suffix('*') {
                        Some(prefix) => n.starts_with(prefix),
                        None => n == pattern,
                    }
            })
            .map(|(_, c)| c.clone())
            .collect();
        if chosen.is_empty() {
            return Err(format!("no search matches `{pattern}`"));
        }
        Ok(chosen)
    }
}
