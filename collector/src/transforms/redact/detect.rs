//! Detectors of personal data and secrets in free text: one pass over the
//! bytes ([`suspects`]) says which detectors may match (no allocation, and
//! most strings are cleared there); only those then run their pattern, each
//! with its own check where a pattern alone would be wrong too often (Luhn
//! for card numbers, mod-97 for IBANs, a real address parse for IPv6, digit
//! counts for phone numbers).

use regex::Regex;
use serde::Deserialize;

/// A kind of personal data or secret.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    Email,
    Ipv4,
    Ipv6,
    PaymentCard,
    Iban,
    Phone,
    Jwt,
    Authorization,
    AwsAccessKey,
    PrivateKey,
    PasswordArg,
    UrlCredentials,
    SecretAssignment,
}

impl Detector {
    /// This detector's bit in a [`suspects`] mask.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    pub const ALL: [Detector; 13] = [
        Detector::PrivateKey,
        Detector::Jwt,
        Detector::Authorization,
        Detector::UrlCredentials,
        Detector::PasswordArg,
        Detector::SecretAssignment,
        Detector::AwsAccessKey,
        Detector::Email,
        Detector::Iban,
        Detector::PaymentCard,
        Detector::Phone,
        Detector::Ipv6,
        Detector::Ipv4,
    ];

    /// The rule name recorded on the event (`detector:email`).
    pub fn rule(self) -> &'static str {
        match self {
            Detector::Email => "detector:email",
            Detector::Ipv4 => "detector:ipv4",
            Detector::Ipv6 => "detector:ipv6",
            Detector::PaymentCard => "detector:payment_card",
            Detector::Iban => "detector:iban",
            Detector::Phone => "detector:phone",
            Detector::Jwt => "detector:jwt",
            Detector::Authorization => "detector:authorization",
            Detector::AwsAccessKey => "detector:aws_access_key",
            Detector::PrivateKey => "detector:private_key",
            Detector::PasswordArg => "detector:password_arg",
            Detector::UrlCredentials => "detector:url_credentials",
            Detector::SecretAssignment => "detector:secret_assignment",
        }
    }

    /// The pattern; for the detectors that keep a prefix (a flag, a scheme,
    /// a variable name), group 1 is kept and the rest replaced.
    pub fn pattern(self) -> &'static str {
        match self {
            Detector::Email => r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            Detector::Ipv4 => {
                r"(?-u:\b)(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}(?-u:\b)"
            }
            // Full (eight groups) or compressed (`::`): times of day
            // (`10:00:00`) never get as far as the address parse.
            Detector::Ipv6 => {
                r"(?i)(?:(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{0,4}::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{0,4})(?:%[0-9a-z]+)?"
            }
            Detector::PaymentCard => r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)",
            Detector::Iban => {
                r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)"
            }
            Detector::Phone => {
                r"(?:\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){1,4}|\([0-9]{2,4}\)[ .-]?[0-9]{3,4}[ .-]?[0-9]{3,4})"
            }
            Detector::Jwt => r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}",
            Detector::Authorization => r"(?i)((?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}",
            Detector::AwsAccessKey => {
                r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?-u:\b)"
            }
            Detector::PrivateKey => {
                r"-----BEGIN[A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END[A-Z ]*PRIVATE KEY-----|$)"
            }
            Detector::PasswordArg => {
                r"(?i)((?:^|[\s\x00])-{1,2}(?:password|passwd|pass|pwd|secret|token|api[-_]?key|access[-_]?key)(?:=|[\s\x00]+))[^\s\x00]+"
            }
            Detector::UrlCredentials => r"(?i)([a-z][a-z0-9+.-]*://)[^/\s\x00:@]+:[^/\s\x00@]+@",
            Detector::SecretAssignment => {
                r"(?i)((?-u:\b)[a-z0-9_]*(?:password|passwd|pwd|token|secret|api_?key|access_?key)[a-z0-9_]*\s*[=:]\s*)[^\s\x00&;,]+"
            }
        }
    }

    /// Whether a match (`hay[start..end]`, text `text`) is the real thing
    /// (the pattern alone over-matches).
    fn accept(self, text: &str, hay: &str, start: usize, end: usize) -> bool {
        match self {
            Detector::Ipv4 => {
                // Not part of a longer dotted number (a version, an OID).
                let before = &hay.as_bytes()[..start];
                let after = &hay.as_bytes()[end..];
                let dotted_before = before.len() >= 2
                    && before[before.len() - 1] == b'.'
                    && before[before.len() - 2].is_ascii_digit();
                let dotted_after =
                    after.len() >= 2 && after[0] == b'.' && after[1].is_ascii_digit();
                !dotted_before && !dotted_after
            }
            Detector::PaymentCard => {
                let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
                (13..=19).contains(&digits.len()) && luhn(&digits)
            }
            Detector::Iban => iban_valid(text),
            Detector::Ipv6 => {
                let addr = text.split('%').next().unwrap_or(text);
                addr.matches(':').count() >= 2
                    && addr.bytes().filter(u8::is_ascii_hexdigit).count() >= 3
                    && addr.parse::<std::net::Ipv6Addr>().is_ok()
            }
            Detector::Phone => {
                let n = text.chars().filter(char::is_ascii_digit).count();
                (8..=15).contains(&n)
            }
            _ => true,
        }
    }
}

/// A replacement an earlier detector wrote (`[email]`, `[jwt:<hex>]`).
fn is_marker(s: &str) -> bool {
    s.len() > 2
        && s.starts_with('[')
        && s.ends_with(']')
        && s[1..s.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b':')
}

/// A variable or flag name that says its value is a secret.
pub fn secretish_name(name: &str) -> bool {
    static WORDS: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
        std::sync::LazyLock::new(|| {
            aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build([
                    "password",
                    "passwd",
                    "pwd",
                    "secret",
                    "token",
                    "apikey",
                    "api_key",
                    "access_key",
                    "accesskey",
                    "credential",
                    "private_key",
                ])
                .ok()
        });
    WORDS.as_ref().is_some_and(|w| w.is_match(name))
}

/// Which detectors may match `text`: for each, a condition every match of
/// its pattern meets (a literal, a keyword in its context, a run of digits
/// of some shape), looked for with SIMD searches (memchr, aho-corasick) and
/// short checks where they land. A superset, never a miss: the property
/// test below holds every pattern to it.
pub fn suspects(text: &str) -> u16 {
    static FINDERS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 3]> =
        std::sync::LazyLock::new(|| {
            [b"://".as_slice(), b"eyJ", b"-----"].map(memchr::memmem::Finder::new)
        });
    let [scheme, jwt, pem] = &*FINDERS;
    let b = text.as_bytes();
    let mut m = 0u16;
    let bit = Detector::bit;
    if memchr::memchr(b'@', b).is_some() {
        m |= bit(Detector::Email);
        if scheme.find(b).is_some() {
            m |= bit(Detector::UrlCredentials);
        }
    }
    if jwt.find(b).is_some() {
        m |= bit(Detector::Jwt);
    }
    if pem.find(b).is_some() {
        m |= bit(Detector::PrivateKey);
    }
    if memchr::memchr2_iter(b'+', b'(', b).any(|i| b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
        m |= bit(Detector::Phone);
    }
    // IPv6: `::`, or seven colons with only hex digits between them.
    let mut chain = 0;
    let mut last: Option<usize> = None;
    for i in memchr::memchr_iter(b':', b) {
        match last {
            Some(l) if l + 1 == i => {
                m |= bit(Detector::Ipv6);
                break;
            }
            Some(l) if b[l + 1..i].iter().all(u8::is_ascii_hexdigit) => chain += 1,
            _ => chain = 1,
        }
        if chain >= 7 {
            m |= bit(Detector::Ipv6);
            break;
        }
        last = Some(i);
    }
    // AWS keys: a four-letter prefix starting with `A`, then sixteen
    // capitals and digits.
    if memchr::memchr_iter(b'A', b).any(|i| {
        b.get(i..i + 20).is_some_and(|k| {
            k.iter()
                .all(|x| x.is_ascii_uppercase() || x.is_ascii_digit())
        })
    }) {
        m |= bit(Detector::AwsAccessKey);
    }
    m |= keywords(b);
    m | digits(b)
}

/// `\s` as the patterns mean it (Unicode: a non-ASCII byte may be part of
/// a space).
fn space(x: u8) -> bool {
    matches!(x, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r') || x >= 0x80
}

/// The keyword detectors: `DB_PASSWORD = x` (a keyword, the rest of a
/// name, spaces, then `=` or `:`), `--password x` (a keyword shortly after
/// a dash that follows a space) and `Bearer x` (the word, then a space).
fn keywords(b: &[u8]) -> u16 {
    const KEYWORDS: u16 = (1 << Detector::SecretAssignment as u16)
        | (1 << Detector::Authorization as u16)
        | (1 << Detector::PasswordArg as u16);
    const WORDS: [&str; 7] = ["pass", "pwd", "secret", "token", "key", "bearer", "basic"];
    /// Teddy (SIMD) where the CPU has it, an automaton where not.
    enum Search {
        Packed(aho_corasick::packed::Searcher),
        Automaton(aho_corasick::AhoCorasick),
        None,
    }
    static SEARCH: std::sync::LazyLock<Search> = std::sync::LazyLock::new(|| {
        if let Some(s) = aho_corasick::packed::Searcher::new(WORDS.iter()) {
            return Search::Packed(s);
        }
        aho_corasick::AhoCorasick::new(WORDS).map_or(Search::None, Search::Automaton)
    });
    thread_local! {
        static LOWER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut m = 0u16;
    if !b.is_ascii() {
        // Unicode case folding (`ſ` for `s`, `K` for `k`) reaches the
        // case-insensitive keywords.
        m |= KEYWORDS;
    }
    let mut m_all = false;
    let mut check = |pattern: usize, start: usize, end: usize| {
        // Every flag the pattern names has a keyword at most nine bytes
        // after its first dash (`--access-key`).
        if b[start.saturating_sub(9)..start]
            .iter()
            .enumerate()
            .any(|(k, &x)| {
                let d = start.saturating_sub(9) + k;
                x == b'-' && (d == 0 || b[d - 1] == 0 || space(b[d - 1]))
            })
        {
            m |= Detector::PasswordArg.bit();
        }
        let mut j = end;
        if pattern >= 5 {
            if b.get(j).is_some_and(|x| space(*x)) {
                m |= Detector::Authorization.bit();
            }
            return;
        }
        while b
            .get(j)
            .is_some_and(|x| x.is_ascii_alphanumeric() || *x == b'_' || *x >= 0x80)
        {
            j += 1;
        }
        while b.get(j).is_some_and(|x| space(*x)) {
            j += 1;
        }
        if matches!(b.get(j), Some(b'=' | b':')) {
            m |= Detector::SecretAssignment.bit();
        }
    };
    // Case-insensitive: searched in a lower-case copy (one fast pass). A
    // match hidden by an overlapping one changes nothing: both are in the
    // same run of name characters, whose end decides.
    LOWER.with_borrow_mut(|lower| {
        lower.clear();
        lower.extend(b.iter().map(u8::to_ascii_lowercase));
        match &*SEARCH {
            Search::Packed(s) => {
                for hit in s.find_iter(lower.as_slice()) {
                    check(hit.pattern().as_usize(), hit.start(), hit.end());
                }
            }
            Search::Automaton(ac) => {
                for hit in ac.find_iter(lower.as_slice()) {
                    check(hit.pattern().as_usize(), hit.start(), hit.end());
                }
            }
            // No searcher could be built: every keyword detector runs.
            Search::None => {
                m_all = true;
            }
        }
    });
    if m_all {
        m |= KEYWORDS;
    }
    m
}

/// The digit detectors, from each run of digits: IPv4 (a run of digits and
/// dots with three dots after digits), card numbers (13 digits, single
/// spaces or dashes between), IBANs (two capitals, two digits).
fn digits(b: &[u8]) -> u16 {
    let mut m = 0u16;
    let mut i = 0;
    while let Some(at) = next_digit(b, i) {
        i = at;
        if i >= 2
            && b[i - 1].is_ascii_uppercase()
            && b[i - 2].is_ascii_uppercase()
            && b.get(i + 1).is_some_and(u8::is_ascii_digit)
        {
            m |= Detector::Iban.bit();
        }
        let run = b[i..]
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(b.len() - i);
        if run < 13 && !matches!(b.get(i + run), Some(b'.' | b' ' | b'-')) {
            // Neither a dot (IPv4) nor a separator or 13 digits (cards).
            i += run;
            continue;
        }
        let (mut j, mut dots, mut digit_before) = (i, 0, false);
        while let Some(&c) = b.get(j) {
            if c.is_ascii_digit() {
                digit_before = true;
            } else if c == b'.' && digit_before {
                dots += 1;
                digit_before = false;
            } else if c != b'.' {
                break;
            } else {
                digit_before = false;
            }
            j += 1;
        }
        if dots >= 3 {
            m |= Detector::Ipv4.bit();
        }
        let (mut j, mut count, mut sep) = (i, 0, false);
        while let Some(&c) = b.get(j) {
            if c.is_ascii_digit() {
                count += 1;
                sep = false;
                if count >= 13 {
                    m |= Detector::PaymentCard.bit();
                    break;
                }
            } else if (c == b' ' || c == b'-') && !sep {
                sep = true;
            } else {
                break;
            }
            j += 1;
        }
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    m
}

/// Whether `needle` (not empty) occurs in `hay`: each place its first byte
/// occurs (memchr), compared there. For the short texts and values of an
/// event this beats building a searcher (`str::contains`, `memmem::find`)
/// per call, which costs more than the search.
pub fn contains(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let Some((&first, rest)) = n.split_first() else {
        return true;
    };
    // The second byte before the rest: most places a first byte occurs
    // (`s` of `system:…`) go no further, without a call to memcmp.
    memchr::memchr_iter(first, h).any(|i| match rest.first() {
        Some(second) => h.get(i + 1) == Some(second) && h[i..].starts_with(n),
        None => true,
    })
}

/// Where the first ASCII digit at or after `from` is: eight bytes at a
/// time (a byte is a digit when it XOR `'0'` is below 10; the lowest byte
/// the subtraction flags is exact, borrows only reach the bytes above it).
fn next_digit(b: &[u8], mut from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    while let Some(chunk) = b.get(from..from + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let t = u64::from_le_bytes(word) ^ (ONES * u64::from(b'0'));
        let flagged = t.wrapping_sub(ONES * 10) & !t & (ONES * 0x80);
        if flagged != 0 {
            return Some(from + (flagged.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    let rest = b.get(from..)?;
    rest.iter().position(u8::is_ascii_digit).map(|p| from + p)
}

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn iban_valid(text: &str) -> bool {
    let compact: Vec<u8> = text.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &c in tail.iter().chain(head) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A compiled set of detectors.
#[derive(Debug)]
pub struct Detectors {
    /// The chosen detectors' bits.
    mask: u16,
    each: Vec<(Detector, Regex)>,
}

impl Detectors {
    pub fn new(which: &[Detector]) -> Result<Detectors, String> {
        // Keep the precedence of `ALL`: secrets with structure first, so a
        // JWT is not half-taken by another detector.
        let chosen: Vec<Detector> = Detector::ALL
            .iter()
            .copied()
            .filter(|d| which.contains(d))
            .collect();
        let mask = chosen.iter().fold(0, |m, d| m | d.bit());
        let each = chosen
            .iter()
            .map(|d| Regex::new(d.pattern()).map(|r| (*d, r)))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Detectors { mask, each })
    }

    /// Whether any detector may match `text` (the cheap first pass).
    pub fn may_match(&self, text: &str) -> bool {
        self.mask != 0 && suspects(text) & self.mask != 0
    }

    /// Writes `text` with every detected item replaced (by `replace`, given
    /// the detector and the matched text) into `out`; calls `found` for each
    /// detector that fired. Returns whether anything was replaced.
    pub fn scrub(
        &self,
        text: &str,
        out: &mut String,
        replace: &mut dyn FnMut(Detector, &str, &mut String),
        found: &mut dyn FnMut(Detector),
    ) -> bool {
        let hits = if self.mask == 0 {
            0
        } else {
            suspects(text) & self.mask
        };
        if hits == 0 {
            return false;
        }
        // Replace detector by detector over the text as it becomes.
        let mut current = std::borrow::Cow::Borrowed(text);
        let mut any = false;
        let mut next = String::new();
        for (d, re) in &self.each {
            if hits & d.bit() == 0 {
                continue;
            }
            next.clear();
            let mut last = 0;
            let mut fired = false;
            for caps in re.captures_iter(&current) {
                let Some(m) = caps.get(0) else { continue };
                let keep = caps.get(1).map_or(0, |g| g.len());
                let secret = &current[m.start() + keep..m.end()];
                if is_marker(secret) || !d.accept(secret, &current, m.start(), m.end()) {
                    continue;
                }
                next.push_str(&current[last..m.start() + keep]);
                replace(*d, secret, &mut next);
                last = m.end();
                fired = true;
            }
            if fired {
                next.push_str(&current[last..]);
                current = std::borrow::Cow::Owned(std::mem::take(&mut next));
                found(*d);
                any = true;
            }
        }
        if any {
            out.push_str(&current);
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(text: &str) -> (String, Vec<Detector>) {
        let d = Detectors::new(&Detector::ALL).unwrap();
        let mut out = String::new();
        let mut found = Vec::new();
        let changed = d.scrub(
            text,
            &mut out,
            &mut |d, _, o| {
                o.push('[');
                o.push_str(&d.rule()[9..]);
                o.push(']');
            },
            &mut |d| found.push(d),
        );
        (if changed { out } else { text.to_owned() }, found)
    }

    #[test]
    fn each_detector_finds_its_kind_and_keeps_the_context() {
        let cases = [
            ("mail jane.doe@example.org now", "mail [email] now"),
            ("from 192.168.1.20:443", "from [ipv4]:443"),
            ("peer 2001:db8::1 up", "peer [ipv6] up"),
            ("card 4111 1111 1111 1111 ok", "card [payment_card] ok"),
            ("iban DE89 3704 0044 0532 0130 00 end", "iban [iban] end"),
            ("call +49 30 1234 5678", "call [phone]"),
            (
                "t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcDEF123_-x",
                "t=[jwt]",
            ),
            (
                "Authorization: Bearer abcdef0123456789",
                "Authorization: Bearer [authorization]",
            ),
            ("key AKIAIOSFODNN7EXAMPLE", "key [aws_access_key]"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
                "[private_key]",
            ),
            (
                "mysql --password=hunter2 -u root",
                "mysql --password=[password_arg] -u root",
            ),
            ("tool --token s3cr3t", "tool --token [password_arg]"),
            (
                "git clone https://bob:pa55@git.example.com/x",
                "git clone https://[url_credentials]git.example.com/x",
            ),
            (
                "DB_PASSWORD=hunter2 ./run",
                "DB_PASSWORD=[secret_assignment] ./run",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(scrub(input).0, want, "{input}");
        }
    }

    #[test]
    fn a_nul_ends_every_secret_so_arguments_stay_apart() {
        // argv is NUL-separated: the next argument is not part of a value.
        assert_eq!(
            scrub("env\0API_TOKEN=abc123\0--verbose").0,
            "env\0API_TOKEN=[secret_assignment]\0--verbose"
        );
        assert_eq!(
            scrub("psql\0postgres://u:pw@db\0-c\0select 1").0,
            "psql\0postgres://[url_credentials]db\0-c\0select 1"
        );
        assert_eq!(
            scrub("curl\0https://a\0b:c@d").0,
            "curl\0https://a\0b:c@d",
            "credentials are not made of two arguments"
        );
    }

    #[test]
    fn look_alikes_are_left_alone() {
        for text in [
            "released 2026-11-29 at 10:00:00",
            "version 1.2.3.4.5 build 1234567890123",
            "order 4111 1111 1111 1112",
            "pod web-7f9c6d-abcde restarted",
            "GB00 XXXX 1234",
            "/api/v1/namespaces/default/pods",
        ] {
            let (out, found) = scrub(text);
            assert_eq!(out, text, "{text}: {found:?}");
        }
    }

    #[test]
    fn secret_names_are_told_from_others_whatever_their_case() {
        for name in [
            "DB_PASSWORD",
            "apiKey",
            "GITHUB_TOKEN",
            "aws_access_key_id",
            "Credentials",
        ] {
            assert!(secretish_name(name), "{name}");
        }
        for name in ["MODE", "HOME", "name", "LOG_LEVEL", ""] {
            assert!(!secretish_name(name), "{name}");
        }
    }

    #[test]
    fn contains_agrees_with_str_contains() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20_000 {
            let hay: String = (0..rng.usize(0..30))
                .map(|_| rng.choice(['a', 'b', ':', 'é']).unwrap())
                .collect();
            let needle: String = (0..rng.usize(0..5))
                .map(|_| rng.choice(['a', 'b', ':', 'é']).unwrap())
                .collect();
            assert_eq!(
                contains(&hay, &needle),
                hay.contains(&needle),
                "{hay:?} {needle:?}"
            );
        }
    }

    /// The word-at-a-time digit search finds what a byte loop finds, for
    /// every byte value, at every offset and starting point.
    #[test]
    fn next_digit_agrees_with_a_byte_loop() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let b: Vec<u8> = (0..len)
                .map(|_| match rng.u8(..4) {
                    0 => rng.u8(b'0'..=b'9'),
                    1 => rng.u8(b'.'..=b'@'),
                    _ => rng.u8(..),
                })
                .collect();
            for from in 0..=len {
                let want = b[from..]
                    .iter()
                    .position(u8::is_ascii_digit)
                    .map(|p| from + p);
                assert_eq!(next_digit(&b, from), want, "{b:?} from {from}");
            }
        }
    }

    /// Every pattern's match must be among the suspects, whatever the text:
    /// random texts from fragments that start, end and break every kind.
    #[test]
    fn the_byte_pass_never_misses_what_a_pattern_would_match() {
        const FRAGMENTS: &[&str] = &[
            "1",
            "12",
            "123",
            "255",
            "4111",
            "4111 1111 ",
            "1111-2222-",
            "5678901234",
            "10.0.",
            "192.168.1.",
            "1.2.3",
            "0",
            ".",
            "..",
            ":",
            "::",
            " ",
            "  ",
            "-",
            "--",
            "-----",
            "@",
            "+",
            "(",
            ")",
            "/",
            "//",
            "://",
            "=",
            "_",
            "%",
            "%eth0",
            "\0",
            "\n",
            "eyJ",
            "eyJhbGciOi",
            "eyJzdWIi.",
            "ey",
            "J",
            "abc.eyJ0eXAi.sig_",
            "abc",
            "ABCD",
            "GB",
            "82",
            "WEST",
            "AKIA",
            "IOSFODNN7EXAMPLE",
            " AKIAIOSFODNN7EXAMPLE",
            "ASIA0123456789ABCDEF",
            "password",
            "PASSWD",
            "Pass",
            "pwd",
            "secret",
            "TOKEN",
            "key",
            "api_key",
            "Bearer ",
            "basic ",
            " --password=",
            "--token ",
            " -pwd\0",
            "PASSWORD=",
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----END RSA PRIVATE KEY-----",
            "x",
            "é",
            "ſecret",
            "Kelvin\u{212A}ey",
            "db8",
            "fe80",
            "2001",
            "0:1:2:3:",
            "a:b:c:d",
            "a@b.cd",
            "https",
            "u:p@",
            "DE89",
            "3704",
            "T10",
            "Z",
            "\t",
            "\u{0B}",
            "\u{A0}",
            "\u{2028}",
            "\u{3000}",
            "ſ",
            "\u{212A}",
            "api-key",
            "access_key",
            "-a",
            "bearer\u{A0}",
            "pa",
            "ss",
            "word",
            "to",
            "ken",
            "BASIC",
            "\r\n",
        ];
        let sets: Vec<(Detector, Regex)> = Detector::ALL
            .iter()
            .map(|d| (*d, Regex::new(d.pattern()).unwrap()))
            .collect();
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut text = String::new();
        let mut checked = [0usize; 13];
        for _ in 0..200_000 {
            text.clear();
            for _ in 0..rng.usize(1..14) {
                text.push_str(FRAGMENTS[rng.usize(..FRAGMENTS.len())]);
            }
            let got = suspects(&text);
            for (d, re) in &sets {
                if re.is_match(&text) {
                    checked[*d as usize] += 1;
                    assert!(
                        got & d.bit() != 0,
                        "{d:?} matches {text:?} but is not suspected"
                    );
                }
            }
        }
        // Every detector was put to the test many times.
        for d in Detector::ALL {
            assert!(checked[d as usize] > 100, "{d:?}: {}", checked[d as usize]);
        }
        // Plain text is cleared.
        assert_eq!(suspects("kube-controller-manager replicaset/web-7f9c6d"), 0);
    }

    #[test]
    fn checksums_decide() {
        assert!(luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_valid("GB82 WEST 1234 5698 7654 33"));
    }
}
