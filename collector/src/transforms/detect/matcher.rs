//! Compiled conditions: a tree of all / any / not over field tests, each
//! test built once (literal sets hashed, many substrings in one
//! Aho-Corasick automaton, globs and regexes compiled) and ordered so the
//! cheap tests of an `all` run first and an audit body is parsed last.

use super::field::{Field, Scratch, Value};
use aho_corasick::AhoCorasick;
use lumen_schemas::Event;
use std::collections::HashSet;
use std::net::IpAddr;

/// The ways one part of a condition can hold: a field equal to one of
/// some strings, for any of the fields.
pub type Alternatives = Vec<(Field, Vec<String>)>;

/// A condition over one event.
#[derive(Clone, Debug)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Test(Test),
}

/// One field and what its value must be.
#[derive(Clone, Debug)]
pub struct Test {
    pub field: Field,
    pub op: Op,
    /// For a test of an audit body: strings the event's text must hold for
    /// it to match (the literal, or the key of a flag), looked for before
    /// the body is parsed. The API server writes bodies with Go's JSON
    /// encoder, which escapes no letter, digit or `-`; a wrapped event in a
    /// JSON string (AKS) holds them too.
    prefilter: Vec<memchr::memmem::Finder<'static>>,
}

impl Test {
    pub fn new(field: Field, op: Op) -> Test {
        let prefilter = match (&field, &op) {
            (_, Op::Exists(false)) => vec![],
            (Field::RequestObject(_) | Field::ResponseObject(_), Op::Equals { texts, .. })
                if texts.iter().all(|t| t != "true" && t != "false") =>
            {
                texts.iter().cloned().collect()
            }
            (Field::RequestObject(path) | Field::ResponseObject(path), _) => {
                path.last().map(|k| vec![k.clone()]).unwrap_or_default()
            }
            _ => vec![],
        };
        Test {
            field,
            op,
            prefilter: prefilter
                .iter()
                .map(|p: &String| memchr::memmem::Finder::new(p.as_bytes()).into_owned())
                .collect(),
        }
    }

    /// False when the event's text cannot hold a match.
    /// (field, strings) when the test is an exact-string equality on a
    /// field that reads no audit body.
    fn literals(&self) -> Option<(Field, Vec<String>)> {
        match &self.op {
            Op::Equals {
                texts,
                ints,
                nocase: false,
            } if ints.is_empty() && !texts.is_empty() && !self.field.costly() => {
                Some((self.field.clone(), texts.iter().cloned().collect()))
            }
            _ => None,
        }
    }

    fn may_match(&self, event: &Event) -> bool {
        if self.prefilter.is_empty() {
            return true;
        }
        let lumen_schemas::EventKind::ApiActivity(a) = &event.kind else {
            return true;
        };
        let text = a.text.as_bytes();
        let original = &text[..(a.original_len as usize).min(text.len())];
        self.prefilter.iter().any(|f| f.find(original).is_some())
    }
}

/// How a value is matched. String operations compare bytes, or ASCII
/// letters without case when `nocase` (Sigma's default).
#[derive(Clone, Debug)]
pub enum Op {
    /// The field has a value (`true`) or none (`false`).
    Exists(bool),
    /// Equal to one of the values (integers compare as numbers).
    Equals {
        texts: Literals,
        ints: HashSet<i64>,
        nocase: bool,
    },
    Prefix(Vec<String>, bool),
    Suffix(Vec<String>, bool),
    Contains(AhoCorasick),
    /// Every one of the substrings (Sigma's `contains|all`).
    ContainsAll(Vec<String>, bool),
    Regex(regex::Regex),
    Cidr(Vec<ipnet::IpNet>),
    Compare(Cmp, i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A set of strings: a few are compared one by one (cheaper than hashing),
/// more are hashed.
#[derive(Clone, Debug)]
pub enum Literals {
    Few(Vec<String>),
    Many(HashSet<String, foldhash::fast::RandomState>),
}

impl Literals {
    fn new(values: Vec<String>) -> Literals {
        if values.len() <= 8 {
            Literals::Few(values)
        } else {
            Literals::Many(values.into_iter().collect())
        }
    }

    fn contains(&self, s: &str) -> bool {
        match self {
            Literals::Few(v) => v.iter().any(|x| x == s),
            Literals::Many(set) => set.contains(s),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Literals::Few(v) => v.is_empty(),
            Literals::Many(set) => set.is_empty(),
        }
    }

    /// The strings.
    pub fn iter(&self) -> Box<dyn Iterator<Item = &String> + '_> {
        match self {
            Literals::Few(v) => Box::new(v.iter()),
            Literals::Many(set) => Box::new(set.iter()),
        }
    }
}

impl Op {
    /// Equality with `values` (numbers also as numbers).
    pub fn equals(values: &[String], nocase: bool) -> Op {
        let texts = Literals::new(
            values
                .iter()
                .map(|v| {
                    if nocase {
                        v.to_ascii_lowercase()
                    } else {
                        v.clone()
                    }
                })
                .collect(),
        );
        let ints = values.iter().filter_map(|v| v.parse().ok()).collect();
        Op::Equals {
            texts,
            ints,
            nocase,
        }
    }

    /// Substrings, any of them.
    pub fn contains(values: &[String], nocase: bool) -> Result<Op, String> {
        AhoCorasick::builder()
            .ascii_case_insensitive(nocase)
            .build(values)
            .map(Op::Contains)
            .map_err(|e| format!("contains: {e}"))
    }

    /// A shell-style glob (`*` any run, `?` one character; `\*`, `\?` and
    /// `\\` stand for themselves, as in Sigma), whole value.
    pub fn glob(patterns: &[String], nocase: bool) -> Result<Op, String> {
        let mut re = String::from(if nocase { "(?is)^(?:" } else { "(?s)^(?:" });
        for (i, p) in patterns.iter().enumerate() {
            if i > 0 {
                re.push('|');
            }
            let mut chars = p.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if matches!(chars.peek(), Some('*' | '?' | '\\')) => {
                        let lit = chars.next().unwrap_or('\\');
                        re.push_str(&regex::escape(lit.encode_utf8(&mut [0; 4])));
                    }
                    '*' => re.push_str(".*"),
                    '?' => re.push('.'),
                    c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
                }
            }
        }
        re.push_str(")$");
        regex::Regex::new(&re)
            .map(Op::Regex)
            .map_err(|e| format!("glob: {e}"))
    }

    /// Regular expressions (Rust `regex` syntax), any of them, anywhere in
    /// the value unless anchored.
    pub fn regex(patterns: &[String], nocase: bool) -> Result<Op, String> {
        let joined = patterns
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        regex::RegexBuilder::new(&joined)
            .case_insensitive(nocase)
            .size_limit(1 << 20)
            .build()
            .map(Op::Regex)
            .map_err(|e| format!("regex: {e}"))
    }

    pub fn cidr(values: &[String]) -> Result<Op, String> {
        values
            .iter()
            .map(|v| {
                v.parse::<ipnet::IpNet>()
                    .or_else(|_| v.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("cidr: `{v}` is not an address or a network"))
            })
            .collect::<Result<_, _>>()
            .map(Op::Cidr)
    }

    /// How much a test costs, to order an `all`: literal compares first.
    fn cost(&self) -> u32 {
        match self {
            Op::Exists(_) | Op::Compare(..) | Op::Equals { .. } => 0,
            Op::Prefix(..) | Op::Suffix(..) | Op::Cidr(_) => 1,
            Op::Contains(_) | Op::ContainsAll(..) => 2,
            Op::Regex(_) => 3,
        }
    }

    fn matches_text(&self, s: &str) -> bool {
        match self {
            Op::Exists(want) => *want,
            Op::Equals {
                texts,
                ints,
                nocase,
            } => {
                if !ints.is_empty() {
                    if let Ok(i) = s.parse::<i64>() {
                        if ints.contains(&i) {
                            return true;
                        }
                    }
                }
                if *nocase && s.bytes().any(|b| b.is_ascii_uppercase()) {
                    texts.contains(&s.to_ascii_lowercase())
                } else {
                    texts.contains(s)
                }
            }
            Op::Prefix(ps, nocase) => ps.iter().any(|p| {
                s.len() >= p.len() && same(&s.as_bytes()[..p.len()], p.as_bytes(), *nocase)
            }),
            Op::Suffix(ps, nocase) => ps.iter().any(|p| {
                s.len() >= p.len()
                    && same(&s.as_bytes()[s.len() - p.len()..], p.as_bytes(), *nocase)
            }),
            Op::Contains(ac) => ac.is_match(s),
            Op::ContainsAll(subs, nocase) => subs.iter().all(|sub| {
                if *nocase {
                    s.as_bytes()
                        .windows(sub.len().max(1))
                        .any(|w| same(w, sub.as_bytes(), true))
                } else {
                    s.contains(sub.as_str())
                }
            }),
            Op::Regex(re) => re.is_match(s),
            Op::Cidr(nets) => s
                .parse::<IpAddr>()
                .is_ok_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            Op::Compare(cmp, n) => s.parse::<i64>().is_ok_and(|v| compare(v, *cmp, *n)),
        }
    }

    fn matches(&self, v: &Value<'_>) -> bool {
        match v {
            Value::List(items) => items.iter().any(|i| self.matches(i)),
            Value::Str(s) => self.matches_text(s),
            Value::Owned(s) => self.matches_text(s),
            Value::Int(i) => match self {
                Op::Equals { ints, texts, .. } => {
                    ints.contains(i)
                        || (ints.is_empty()
                            && !texts.is_empty()
                            && texts.contains(itoa::Buffer::new().format(*i)))
                }
                Op::Compare(cmp, n) => compare(*i, *cmp, *n),
                Op::Exists(want) => *want,
                _ => self.matches_text(itoa::Buffer::new().format(*i)),
            },
            Value::Bool(b) => self.matches_text(if *b { "true" } else { "false" }),
            Value::Ip(ip) => match self {
                Op::Cidr(nets) => nets.iter().any(|n| n.contains(ip)),
                _ => self.matches_text(&ip.to_string()),
            },
        }
    }
}

fn compare(v: i64, cmp: Cmp, n: i64) -> bool {
    match cmp {
        Cmp::Gt => v > n,
        Cmp::Gte => v >= n,
        Cmp::Lt => v < n,
        Cmp::Lte => v <= n,
    }
}

fn same(a: &[u8], b: &[u8], nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

impl Cond {
    /// Whether `event` satisfies the condition.
    pub fn eval(&self, event: &Event, scratch: &mut Scratch) -> bool {
        match self {
            Cond::All(cs) => cs.iter().all(|c| c.eval(event, scratch)),
            Cond::Any(cs) => cs.iter().any(|c| c.eval(event, scratch)),
            Cond::Not(c) => !c.eval(event, scratch),
            Cond::Test(t) if !t.may_match(event) => matches!(t.op, Op::Exists(false)),
            Cond::Test(t) => match t.field.get(event, scratch) {
                Some(v) => !matches!(t.op, Op::Exists(false)) && t.op.matches(&v),
                None => matches!(t.op, Op::Exists(false)),
            },
        }
    }

    /// How much evaluating costs, roughly: tests of audit bodies dwarf the
    /// rest.
    fn cost(&self) -> u32 {
        match self {
            Cond::Test(t) => {
                t.op.cost()
                    + if t.field.costly() {
                        100
                    } else if matches!(
                        t.field,
                        Field::ProcessCommandLine | Field::ParentCommandLine
                    ) {
                        2
                    } else {
                        0
                    }
            }
            Cond::Not(c) => c.cost(),
            Cond::All(cs) | Cond::Any(cs) => cs.iter().map(Cond::cost).sum(),
        }
    }

    /// Orders every `all` and `any` cheapest first (their results do not
    /// depend on the order), and flattens single-child groups.
    pub fn optimize(self) -> Cond {
        match self {
            Cond::All(cs) | Cond::Any(cs) if cs.len() == 1 => cs
                .into_iter()
                .next()
                .map_or(Cond::All(vec![]), Cond::optimize),
            Cond::All(cs) => {
                let mut cs: Vec<Cond> = cs.into_iter().map(Cond::optimize).collect();
                cs.sort_by_key(Cond::cost);
                Cond::All(cs)
            }
            Cond::Any(cs) => {
                let mut cs: Vec<Cond> = cs.into_iter().map(Cond::optimize).collect();
                cs.sort_by_key(Cond::cost);
                Cond::Any(cs)
            }
            Cond::Not(c) => Cond::Not(Box::new(c.optimize())),
            t => t,
        }
    }

    /// The parts of a top-level `all` an index can check — exact-string
    /// equalities on fields that read no audit body, alone or as an `any`
    /// of such — each as its alternatives (field, strings), and the
    /// condition left when they hold. `None` when no part is indexable.
    pub fn split_indexable(&self) -> Option<(Vec<Alternatives>, Cond)> {
        let parts: &[Cond] = match self {
            Cond::All(cs) => cs,
            other => std::slice::from_ref(other),
        };
        let mut slots = Vec::new();
        let mut rest = Vec::new();
        for c in parts {
            match c.literal_alternatives() {
                Some(alts) if slots.len() < 32 => slots.push(alts),
                _ => rest.push(c.clone()),
            }
        }
        if slots.is_empty() {
            return None;
        }
        let rest = match rest.len() {
            1 => rest.pop().unwrap_or(Cond::All(vec![])),
            _ => Cond::All(rest),
        };
        Some((slots, rest))
    }

    /// A test of exact strings, or an `any` of only such tests.
    fn literal_alternatives(&self) -> Option<Alternatives> {
        match self {
            Cond::Test(t) => t.literals().map(|l| vec![l]),
            Cond::Any(cs) if !cs.is_empty() => cs
                .iter()
                .map(|c| match c {
                    Cond::Test(t) => t.literals(),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    /// Whether it reads an audit body.
    pub fn is_costly(&self) -> bool {
        match self {
            Cond::Test(t) => t.field.costly(),
            Cond::Not(c) => c.is_costly(),
            Cond::All(cs) | Cond::Any(cs) => cs.iter().any(Cond::is_costly),
        }
    }
}
