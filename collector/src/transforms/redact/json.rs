//! A one-pass rewriter for a JSON document already known to be valid (an
//! audit event the parser accepted): it walks the text, keeps the path to
//! every value, and lets a [`Visit`] drop object members or replace string
//! values, copying everything else through. No `serde_json::Value`, no
//! allocation beyond the output buffer.
//!
//! Strings are handed over raw, as they appear between their quotes (escape
//! sequences not decoded); replacements are written as given and must be
//! valid JSON string content.

/// One step of the path to a value: an object key (raw) or an array index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index,
}

/// Decides what happens to values.
pub trait Visit {
    /// Whether the member at `path` (its key last) is removed.
    fn drop_member(&mut self, path: &[Seg<'_>]) -> bool;
    /// For a string value at `path`: write its replacement content to `out`
    /// and return `true`, or return `false` to keep it.
    fn string(&mut self, path: &[Seg<'_>], raw: &str, out: &mut String) -> bool;
}

/// Deeper values are copied whole (with their strings offered as one value
/// at the depth limit), so hostile nesting cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Where a string (a value or a key) of the input went in the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// Its content (between the quotes) in the input…
    pub old: std::ops::Range<usize>,
    /// …and in the output.
    pub new: std::ops::Range<usize>,
    /// The visitor replaced it.
    pub changed: bool,
}

/// Rewrites `input` into `out` (cleared first); `true` if anything changed.
/// On malformed input the output is the input and the result `false`.
pub fn rewrite(input: &str, visit: &mut impl Visit, out: &mut String) -> bool {
    rewrite_with_spans(input, visit, out, &mut Vec::new())
}

/// As [`rewrite`], also recording in `spans` (cleared first), in input
/// order, where every string kept in the output is.
pub fn rewrite_with_spans(
    input: &str,
    visit: &mut impl Visit,
    out: &mut String,
    spans: &mut Vec<Span>,
) -> bool {
    out.clear();
    spans.clear();
    let mut w = Walker {
        s: input,
        b: input.as_bytes(),
        at: 0,
        changed: false,
        path: Vec::with_capacity(16),
        spans,
    };
    match w.value(visit, out, 0) {
        Some(()) => {
            out.push_str(&input[w.at..]);
            w.changed
        }
        None => {
            out.clear();
            out.push_str(input);
            w.spans.clear();
            false
        }
    }
}

struct Walker<'a, 'v> {
    s: &'a str,
    b: &'a [u8],
    at: usize,
    changed: bool,
    path: Vec<Seg<'a>>,
    spans: &'v mut Vec<Span>,
}

impl<'a> Walker<'a, '_> {
    fn offset_of(&self, raw: &str) -> usize {
        raw.as_ptr() as usize - self.s.as_ptr() as usize
    }

    fn ws(&mut self) {
        while self.at < self.b.len() && self.b[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    /// The raw content of the string starting at `self.at` (a quote); moves
    /// past its closing quote.
    fn string_raw(&mut self) -> Option<&'a str> {
        if self.b.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut i = start;
        while let Some(k) = memchr::memchr2(b'"', b'\\', self.b.get(i..)?) {
            i += k;
            if self.b[i] == b'\\' {
                i += 2;
                continue;
            }
            self.at = i + 1;
            return self.s.get(start..i);
        }
        None
    }

    /// The end of the value starting at `self.at`, without interpreting it.
    fn skip_value(&mut self) -> Option<()> {
        self.ws();
        match *self.b.get(self.at)? {
            b'"' => self.string_raw().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                while self.at < self.b.len() {
                    match self.b[self.at] {
                        b'"' => {
                            self.string_raw()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
                None
            }
            _ => {
                while self.at < self.b.len() && !matches!(self.b[self.at], b',' | b'}' | b']') {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    fn value(&mut self, v: &mut impl Visit, out: &mut String, depth: usize) -> Option<()> {
        self.ws();
        match *self.b.get(self.at)? {
            b'"' => {
                let raw = self.string_raw()?;
                out.push('"');
                let mark = out.len();
                let mut changed = false;
                if v.string(&self.path, raw, out) {
                    changed = &out[mark..] != raw;
                    self.changed |= changed;
                } else {
                    out.push_str(raw);
                }
                let start = self.offset_of(raw);
                self.spans.push(Span {
                    old: start..start + raw.len(),
                    new: mark..out.len(),
                    changed,
                });
                out.push('"');
                Some(())
            }
            b'{' | b'[' if depth >= MAX_DEPTH => {
                let start = self.at;
                self.skip_value()?;
                let raw = &self.s[start..self.at];
                let mark = out.len();
                if v.string(&self.path, raw, out) {
                    self.changed |= &out[mark..] != raw;
                } else {
                    out.push_str(raw);
                }
                Some(())
            }
            b'{' => {
                self.at += 1;
                out.push('{');
                let mut first = true;
                loop {
                    self.ws();
                    match *self.b.get(self.at)? {
                        b'}' => {
                            self.at += 1;
                            out.push('}');
                            return Some(());
                        }
                        b',' => {
                            self.at += 1;
                            continue;
                        }
                        _ => {}
                    }
                    let key = self.string_raw()?;
                    self.ws();
                    if self.b.get(self.at) != Some(&b':') {
                        return None;
                    }
                    self.at += 1;
                    self.path.push(Seg::Key(key));
                    if v.drop_member(&self.path) {
                        self.changed = true;
                        self.skip_value()?;
                    } else {
                        if !first {
                            out.push(',');
                        }
                        first = false;
                        out.push('"');
                        let start = self.offset_of(key);
                        self.spans.push(Span {
                            old: start..start + key.len(),
                            new: out.len()..out.len() + key.len(),
                            changed: false,
                        });
                        out.push_str(key);
                        out.push_str("\":");
                        self.value(v, out, depth + 1)?;
                    }
                    self.path.pop();
                }
            }
            b'[' => {
                self.at += 1;
                out.push('[');
                let mut first = true;
                loop {
                    self.ws();
                    match *self.b.get(self.at)? {
                        b']' => {
                            self.at += 1;
                            out.push(']');
                            return Some(());
                        }
                        b',' => {
                            self.at += 1;
                            continue;
                        }
                        _ => {}
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    self.path.push(Seg::Index);
                    self.value(v, out, depth + 1)?;
                    self.path.pop();
                }
            }
            _ => {
                let start = self.at;
                while self.at < self.b.len()
                    && !matches!(self.b[self.at], b',' | b'}' | b']')
                    && !self.b[self.at].is_ascii_whitespace()
                {
                    self.at += 1;
                }
                out.push_str(&self.s[start..self.at]);
                Some(())
            }
        }
    }
}

/// A path pattern: keys, and `[*]` for any array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(pub Vec<PatSeg>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatSeg {
    Key(String),
    AnyIndex,
}

impl Pattern {
    /// `requestObject.spec.containers[*].env[*].value`.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut segs = Vec::new();
        for part in text.split('.') {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                segs.push(PatSeg::Key(key.to_owned()));
            } else if rest.is_empty() {
                return Err(format!("path `{text}`: empty segment"));
            }
            while !rest.is_empty() {
                match rest.strip_prefix("[*]") {
                    Some(r) => {
                        segs.push(PatSeg::AnyIndex);
                        rest = r;
                    }
                    None => return Err(format!("path `{text}`: only `[*]` may follow a key")),
                }
            }
        }
        if segs.is_empty() {
            return Err("empty path".into());
        }
        Ok(Pattern(segs))
    }

    pub fn keys(keys: &[&str]) -> Pattern {
        Pattern(keys.iter().map(|k| PatSeg::Key((*k).to_owned())).collect())
    }

    /// Whether `path` is exactly this pattern.
    pub fn matches(&self, path: &[Seg<'_>]) -> bool {
        self.0.len() == path.len()
            && self.0.iter().zip(path).all(|(p, s)| match (p, s) {
                (PatSeg::Key(k), Seg::Key(x)) => k == x,
                (PatSeg::AnyIndex, Seg::Index) => true,
                _ => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rules {
        drop: Vec<Pattern>,
        upper: Vec<Pattern>,
    }

    impl Visit for Rules {
        fn drop_member(&mut self, path: &[Seg<'_>]) -> bool {
            self.drop.iter().any(|p| p.matches(path))
        }
        fn string(&mut self, path: &[Seg<'_>], raw: &str, out: &mut String) -> bool {
            if self.upper.iter().any(|p| p.matches(path)) {
                out.push_str(&raw.to_uppercase());
                return true;
            }
            false
        }
    }

    fn run(input: &str, drop: &[&str], upper: &[&str]) -> (String, bool) {
        let mut r = Rules {
            drop: drop.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
            upper: upper.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
        };
        let mut out = String::new();
        let changed = rewrite(input, &mut r, &mut out);
        (out, changed)
    }

    #[test]
    fn drops_members_and_replaces_strings_by_path_keeping_valid_json() {
        let input = r#"{"a":{"secret":{"k":"v"},"keep":1,"data":"x"},"list":[{"name":"n","value":"s\"q"},{"value":"t"}],"z":true}"#;
        let (out, changed) = run(input, &["a.secret", "a.data"], &["list[*].value"]);
        assert!(changed);
        assert_eq!(
            out,
            r#"{"a":{"keep":1},"list":[{"name":"n","value":"S\"Q"},{"value":"T"}],"z":true}"#
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
        // Dropping the first member must not leave a leading comma.
        let (out, _) = run(r#"{"x":1,"y":2}"#, &["x"], &[]);
        assert_eq!(out, r#"{"y":2}"#);
    }

    #[test]
    fn an_untouched_document_is_reported_unchanged() {
        let input = r#"{ "a" : [1, 2.5e3, null, "s"] , "b": {} }"#;
        let (out, changed) = run(input, &["nope"], &["a[*]"]);
        assert!(changed, "a[*] uppercases \"s\" to \"S\"");
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
        let (_, changed) = run(input, &["nope"], &["b"]);
        assert!(!changed);
    }

    #[test]
    fn deep_nesting_does_not_overflow_and_malformed_input_passes_through() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let (out, _) = run(&deep, &[], &[]);
        assert_eq!(out, deep);
        let (out, changed) = run(r#"{"a":"unterminated"#, &["a"], &[]);
        assert_eq!(out, r#"{"a":"unterminated"#);
        assert!(!changed);
    }

    #[test]
    fn patterns_parse_and_refuse_nonsense() {
        assert_eq!(
            Pattern::parse("a.b[*].c").unwrap().0,
            vec![
                PatSeg::Key("a".into()),
                PatSeg::Key("b".into()),
                PatSeg::AnyIndex,
                PatSeg::Key("c".into())
            ]
        );
        assert!(Pattern::parse("a..b").is_err());
        assert!(Pattern::parse("a[0]").is_err());
    }
}
