//! A one-pass rewriter for a JSON document already known to be valid (an
//! audit event the parser accepted): it walks the text, keeps the path to
//! every value, and lets a [`Visit`] drop object members or replace string
//! values. The walk only records [`Edit`]s; the output is the input with
//! them applied, copied in a few large pieces ([`apply`]), whitespace and
//! all. No `serde_json::Value`, no allocation beyond the edits and the
//! output. Where each string ends comes from a bitmap of the document's
//! unescaped quotes made first (`quote_bits`, SIMD on x86-64; its words
//! kept from document to document).
//!
//! Strings are handed over raw, as they appear between their quotes (escape
//! sequences not decoded; [`unescape_into`] decodes one); replacements are
//! written as given and must be valid JSON string content.

use std::ops::Range;

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

/// Deeper values are kept whole (with their text offered as one string
/// value at the depth limit), so hostile nesting cannot exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// A change to the input: `old` (a range of the input) becomes `new` (a
/// range of the replacement buffer; empty for a removal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    pub old: Range<usize>,
    pub new: Range<usize>,
    /// A string's content replaced (not a member removed).
    pub string: bool,
}

/// Rewrites `input` into `out` (cleared first); `true` if anything changed.
/// On malformed input the output is the input and the result `false`.
pub fn rewrite(input: &str, visit: &mut impl Visit, out: &mut String) -> bool {
    let (mut buf, mut edits) = (String::new(), Vec::new());
    let changed = edits_of(input, visit, &mut buf, &mut edits);
    if changed {
        apply(input, &edits, &buf, 0, out);
    } else {
        out.clear();
        out.push_str(input);
    }
    changed
}

/// Walks `input`, recording in `edits` (cleared first; in input order) what
/// `visit` changes, their new text in `buf` (cleared first). `true` if
/// anything changed; malformed input changes nothing.
pub fn edits_of(
    input: &str,
    visit: &mut impl Visit,
    buf: &mut String,
    edits: &mut Vec<Edit>,
) -> bool {
    buf.clear();
    edits.clear();
    let mut quotes = QUOTE_WORDS.take();
    quote_bits(input.as_bytes(), &mut quotes);
    let mut w = Walker {
        s: input,
        b: input.as_bytes(),
        quotes: &quotes,
        at: 0,
        path: Vec::with_capacity(16),
        edits,
    };
    if w.value(visit, buf, 0).is_none() {
        w.edits.clear();
    }
    let changed = !w.edits.is_empty();
    QUOTE_WORDS.set(quotes);
    changed
}

/// `input` with `edits` (in input order, not overlapping) applied, their
/// text taken from `buf`, into `out` (cleared first), with room for `after`
/// more bytes. An `out` too small is replaced, not grown: growing copies
/// its old bytes, which are about to be overwritten.
pub fn apply(input: &str, edits: &[Edit], buf: &str, after: usize, out: &mut String) {
    let grown: usize = edits.iter().map(|e| e.new.len()).sum();
    let need = input.len() + grown + after;
    if out.capacity() < need {
        *out = String::with_capacity(need);
    }
    out.clear();
    let mut last = 0;
    for e in edits {
        out.push_str(&input[last..e.old.start]);
        out.push_str(&buf[e.new.clone()]);
        last = e.old.end;
    }
    out.push_str(&input[last..]);
}

/// The unescaped quotes of a document, one bit per byte (bit `i % 64` of
/// word `i / 64`): where every string ends is then a bit scan away, with
/// none of the per-string searches whose exits, at every string's own
/// length, the branch predictor cannot learn. Built 64 bytes at a time.
fn quote_bits(b: &[u8], words: &mut Vec<u64>) {
    words.clear();
    words.reserve(b.len() / 64 + 1);
    // Whether the next block starts with an escaped byte.
    let mut carry = false;
    let mut chunks = b.chunks_exact(64);
    for chunk in chunks.by_ref() {
        if let Ok(block) = <&[u8; 64]>::try_from(chunk) {
            words.push(unescaped_quotes(block, &mut carry));
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut block = [0u8; 64];
        block[..rest.len()].copy_from_slice(rest);
        words.push(unescaped_quotes(&block, &mut carry));
    }
}

/// The quotes of `block` that no backslash escapes; `carry` says whether
/// its first byte is escaped, and is set to whether the next block's is.
#[inline(always)]
fn unescaped_quotes(block: &[u8; 64], carry: &mut bool) -> u64 {
    let (quotes, backslashes) = quotes_and_backslashes(block);
    let mut escaped = u64::from(*carry);
    *carry = false;
    if backslashes == 0 {
        return quotes & !escaped;
    }
    // Backslashes in order: one not escaped itself escapes the next byte.
    let mut open = backslashes & !escaped;
    while open != 0 {
        let i = open.trailing_zeros();
        open &= open - 1;
        if i == 63 {
            *carry = true;
        } else {
            let next = 1u64 << (i + 1);
            escaped |= next;
            open &= !next;
        }
    }
    quotes & !escaped
}

/// One bit per byte of `block`: its quotes, its backslashes. SSE2 (part of
/// every x86-64): 16 bytes per compare.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn quotes_and_backslashes(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let (mut quotes, mut backslashes) = (0u64, 0u64);
    // SAFETY: SSE2 is part of the x86-64 baseline, enabled for every
    // build of this target; each load reads the 16 bytes of `lane` (the
    // size of an `__m128i`, at any alignment with `loadu`).
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        for (k, lane) in block.chunks_exact(16).enumerate() {
            let v = _mm_loadu_si128(lane.as_ptr().cast::<__m128i>());
            let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u16;
            let b = _mm_movemask_epi8(_mm_cmpeq_epi8(v, backslash)) as u16;
            quotes |= u64::from(q) << (16 * k);
            backslashes |= u64::from(b) << (16 * k);
        }
    }
    (quotes, backslashes)
}

#[cfg(not(target_arch = "x86_64"))]
fn quotes_and_backslashes(block: &[u8; 64]) -> (u64, u64) {
    quotes_and_backslashes_bytewise(block)
}

/// [`quotes_and_backslashes`] a byte at a time: for other targets, and the
/// reference the SIMD one is tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn quotes_and_backslashes_bytewise(block: &[u8; 64]) -> (u64, u64) {
    let (mut quotes, mut backslashes) = (0u64, 0u64);
    for (i, &c) in block.iter().enumerate() {
        quotes |= u64::from(c == b'"') << i;
        backslashes |= u64::from(c == b'\\') << i;
    }
    (quotes, backslashes)
}

/// The first set bit of `words` at or after `from`.
#[inline]
fn next_quote(words: &[u64], from: usize) -> Option<usize> {
    let mut w = from / 64;
    let mut bits = words.get(w)? & (u64::MAX << (from % 64));
    while bits == 0 {
        w += 1;
        bits = *words.get(w)?;
    }
    Some(w * 64 + bits.trailing_zeros() as usize)
}

thread_local! {
    /// The quote bitmap's words, kept from document to document (taken
    /// while a walk runs: a walk inside a walk gets its own).
    static QUOTE_WORDS: std::cell::Cell<Vec<u64>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Appends the content of a JSON string (`raw`, as between its quotes) to
/// `out`, its escape sequences decoded; `false` (with `out` partly
/// written) when an escape is malformed or a `\u` names half a surrogate
/// pair.
pub fn unescape_into(raw: &str, out: &mut String) -> bool {
    let mut rest = raw;
    while let Some(i) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..i]);
        let Some(&c) = rest.as_bytes().get(i + 1) else {
            return false;
        };
        let mut used = 2;
        let decoded = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hex = |at: usize| {
                    rest.get(at..at + 4)
                        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                };
                let Some(unit) = hex(i + 2) else {
                    return false;
                };
                used = 6;
                let code = if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate: its low half must follow.
                    let low = rest
                        .get(i + 6..i + 8)
                        .filter(|u| *u == "\\u")
                        .and_then(|_| hex(i + 8))
                        .filter(|l| (0xDC00..0xE000).contains(l));
                    let Some(low) = low else {
                        return false;
                    };
                    used = 12;
                    0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    unit
                };
                match char::from_u32(code) {
                    Some(ch) => ch,
                    None => return false,
                }
            }
            _ => return false,
        };
        out.push(decoded);
        rest = &rest[i + used..];
    }
    out.push_str(rest);
    true
}

struct Walker<'a, 'e> {
    s: &'a str,
    b: &'a [u8],
    /// [`quote_bits`] of `b`.
    quotes: &'e [u64],
    at: usize,
    path: Vec<Seg<'a>>,
    edits: &'e mut Vec<Edit>,
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
        let end = next_quote(self.quotes, start)?;
        self.at = end + 1;
        self.s.get(start..end)
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

    /// Offers `raw` (at `start` in the input) to the visitor as a string
    /// value; records an edit if it changes.
    fn offer(&mut self, v: &mut impl Visit, buf: &mut String, start: usize, raw: &str) {
        let mark = buf.len();
        if v.string(&self.path, raw, buf) && buf[mark..] != *raw {
            self.edits.push(Edit {
                old: start..start + raw.len(),
                new: mark..buf.len(),
                string: true,
            });
        } else {
            buf.truncate(mark);
        }
    }

    fn removal(&mut self, old: Range<usize>) {
        let at = self.edits.len();
        self.edits.push(Edit {
            new: 0..0,
            old,
            string: false,
        });
        // A removal ends after edits made inside the member it removes
        // (none: a removed member is not walked), so order holds.
        debug_assert!(at == 0 || self.edits[at - 1].old.end <= self.edits[at].old.start);
    }

    fn value(&mut self, v: &mut impl Visit, buf: &mut String, depth: usize) -> Option<()> {
        self.ws();
        match *self.b.get(self.at)? {
            b'"' => {
                let raw = self.string_raw()?;
                let start = self.offset_of(raw);
                self.offer(v, buf, start, raw);
                Some(())
            }
            b'{' | b'[' if depth >= MAX_DEPTH => {
                let start = self.at;
                self.skip_value()?;
                let raw = &self.s[start..self.at];
                self.offer(v, buf, start, raw);
                Some(())
            }
            b'{' => {
                self.at += 1;
                // Commas around removed members: a removal after a kept
                // member takes the comma before it; one before any kept
                // member takes the comma after it.
                let mut kept_any = false;
                let mut comma_before: Option<usize> = None;
                let mut drop_next_comma = false;
                loop {
                    self.ws();
                    match *self.b.get(self.at)? {
                        b'}' => {
                            self.at += 1;
                            return Some(());
                        }
                        b',' => {
                            if drop_next_comma {
                                self.removal(self.at..self.at + 1);
                                drop_next_comma = false;
                            } else {
                                comma_before = Some(self.at);
                            }
                            self.at += 1;
                            continue;
                        }
                        _ => {}
                    }
                    let key_at = self.at;
                    let key = self.string_raw()?;
                    self.ws();
                    if self.b.get(self.at) != Some(&b':') {
                        return None;
                    }
                    self.at += 1;
                    self.path.push(Seg::Key(key));
                    if v.drop_member(&self.path) {
                        self.skip_value()?;
                        match comma_before.take() {
                            Some(comma) if kept_any => self.removal(comma..self.at),
                            _ => {
                                self.removal(key_at..self.at);
                                drop_next_comma = true;
                            }
                        }
                    } else {
                        kept_any = true;
                        comma_before = None;
                        self.value(v, buf, depth + 1)?;
                    }
                    self.path.pop();
                }
            }
            b'[' => {
                self.at += 1;
                loop {
                    self.ws();
                    match *self.b.get(self.at)? {
                        b']' => {
                            self.at += 1;
                            return Some(());
                        }
                        b',' => {
                            self.at += 1;
                            continue;
                        }
                        _ => {}
                    }
                    self.path.push(Seg::Index);
                    self.value(v, buf, depth + 1)?;
                    self.path.pop();
                }
            }
            _ => {
                while self.at < self.b.len()
                    && !matches!(self.b[self.at], b',' | b'}' | b']')
                    && !self.b[self.at].is_ascii_whitespace()
                {
                    self.at += 1;
                }
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
                // Length and first byte first: most keys differ there,
                // without a call to memcmp.
                (PatSeg::Key(k), Seg::Key(x)) => {
                    k.len() == x.len() && k.as_bytes().first() == x.as_bytes().first() && k == x
                }
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
    fn edits_say_what_changed_where_and_apply_in_pieces() {
        let input = r#"{"a":"one", "b":["two","three"],"c":{"d":"four","e":1}}"#;
        let mut r = Rules {
            drop: vec![Pattern::parse("c.e").unwrap()],
            upper: vec![Pattern::parse("b[*]").unwrap()],
        };
        let (mut buf, mut edits) = (String::new(), Vec::new());
        assert!(edits_of(input, &mut r, &mut buf, &mut edits));
        let olds: Vec<&str> = edits.iter().map(|e| &input[e.old.clone()]).collect();
        assert_eq!(olds, ["two", "three", r#","e":1"#]);
        assert!(edits[0].string && !edits[2].string);
        let mut out = String::from("left over");
        apply(input, &edits, &buf, 0, &mut out);
        assert_eq!(out, r#"{"a":"one", "b":["TWO","THREE"],"c":{"d":"four"}}"#);
        // Nothing to change: no edits.
        let mut none = Rules {
            drop: vec![],
            upper: vec![],
        };
        assert!(!edits_of(input, &mut none, &mut buf, &mut edits));
        assert!(edits.is_empty());
    }

    #[test]
    fn the_simd_masks_are_the_bytewise_ones() {
        // Every byte value at every place, among quotes and backslashes.
        for at in 0..64 {
            for byte in 0..=255u8 {
                let mut block = [b'a'; 64];
                block[at] = byte;
                block[(at + 17) % 64] = b'"';
                block[(at + 40) % 64] = b'\\';
                assert_eq!(
                    quotes_and_backslashes(&block),
                    quotes_and_backslashes_bytewise(&block),
                    "byte {byte} at {at}"
                );
            }
        }
    }

    #[test]
    fn strings_end_at_their_closing_quote_wherever_it_is() {
        // The plain way: byte by byte from the string's first byte.
        fn reference(b: &[u8], from: usize) -> Option<usize> {
            let mut i = from;
            while i < b.len() {
                match b[i] {
                    b'"' => return Some(i),
                    b'\\' => i += 2,
                    _ => i += 1,
                }
            }
            None
        }
        let mut words = Vec::new();
        // Strings of every length up to three blocks, with a quote, an
        // escaped quote, an escaped backslash or a run of backslashes at
        // every place (across the blocks' edges too), after a prefix that
        // moves them against the 64-byte blocks.
        for len in 0..200 {
            for at in (0..=len).step_by(if len > 70 { 3 } else { 1 }) {
                for insert in [
                    &b"\"x"[..],
                    b"\\\\",
                    b"\\\\\\\"",
                    b"\\\\\\\\",
                    b"\"",
                    b"\\n",
                ] {
                    for prefix in [0, 1, 62, 63] {
                        let mut doc = vec![b' '; prefix];
                        doc.push(b'"');
                        let from = doc.len();
                        let mut content = vec![b'a'; len];
                        content.splice(at..at, insert.iter().copied());
                        doc.extend_from_slice(&content);
                        doc.extend_from_slice(b"\" : \"tail\"");
                        quote_bits(&doc, &mut words);
                        let want = reference(&doc, from);
                        assert_eq!(
                            next_quote(&words, from),
                            want,
                            "len {len} at {at} insert {insert:?} prefix {prefix}"
                        );
                        // And the string after it, from its own start.
                        if let Some(end) = want {
                            let next = reference(&doc, end + 1).map(|q| q + 1);
                            if let Some(n) = next {
                                assert_eq!(next_quote(&words, n), reference(&doc, n));
                            }
                        }
                    }
                }
            }
        }
        // A backslash as the last byte of a block escapes the next block's first.
        let mut doc = vec![b'"'];
        doc.extend(std::iter::repeat_n(b'a', 62));
        doc.extend_from_slice(b"\\\"x\"");
        quote_bits(&doc, &mut words);
        assert_eq!(next_quote(&words, 1), Some(66));
        assert_eq!(next_quote(&words, 67), None);
    }

    #[test]
    fn unescaping_agrees_with_serde_json() {
        for raw in [
            "",
            "plain",
            r#"RBAC: allowed by ClusterRoleBinding \"admin\" to User \"alice\""#,
            r#"\\ \/ \b \f \n \r \t"#,
            r#"\u0041\u00e9\u20ac x \ud83d\ude00 y"#,
            r#"tail\n"#,
            r"caf\u00e9 é €",
        ] {
            let want: String = serde_json::from_str(&format!("\"{raw}\"")).unwrap();
            let mut got = String::from("kept:");
            assert!(unescape_into(raw, &mut got), "{raw}");
            assert_eq!(got, format!("kept:{want}"), "{raw}");
        }
        for bad in [
            r"\",
            r"\x",
            r"\u12",
            r"\u12g4",
            r"\u+041",
            r"\ud83d",
            r"\ud83d\u0041",
            r"\ude00",
        ] {
            assert!(
                serde_json::from_str::<String>(&format!("\"{bad}\"")).is_err(),
                "{bad} is malformed"
            );
            assert!(!unescape_into(bad, &mut String::new()), "{bad}");
        }
    }

    #[test]
    fn commas_stay_right_whichever_members_go() {
        let input = r#"{"a":1, "b":2 ,"c":3}"#;
        for (drop, want) in [
            (&["a"][..], r#"{ "b":2 ,"c":3}"#),
            (&["b"], r#"{"a":1,"c":3}"#),
            (&["c"], r#"{"a":1, "b":2 }"#),
            (&["a", "b"], r#"{"c":3}"#),
            (&["a", "c"], r#"{ "b":2 }"#),
            (&["b", "c"], r#"{"a":1}"#),
            (&["a", "b", "c"], r#"{}"#),
        ] {
            let (out, changed) = run(input, drop, &[]);
            assert!(changed);
            let _: serde_json::Value =
                serde_json::from_str(&out).unwrap_or_else(|e| panic!("{drop:?}: {out}: {e}"));
            assert_eq!(out.replace(' ', ""), want.replace(' ', ""), "{drop:?}");
        }
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
