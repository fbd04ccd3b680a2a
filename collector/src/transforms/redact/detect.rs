//! Detectors of personal data and secrets in free text: one `RegexSet`
//! pass says whether anything may match (no allocation when nothing does);
//! only then do the matching detectors run, each with its own check where a
//! pattern alone would be wrong too often (Luhn for card numbers, mod-97 for
//! IBANs, a real address parse for IPv6, digit counts for phone numbers).

use regex::{Regex, RegexSet};
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
    fn pattern(self) -> &'static str {
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
            Detector::UrlCredentials => r"(?i)([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@",
            Detector::SecretAssignment => {
                r"(?i)((?-u:\b)[a-z0-9_]*(?:password|passwd|pwd|token|secret|api_?key|access_?key)[a-z0-9_]*\s*[=:]\s*)[^\s&;,]+"
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
    set: RegexSet,
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
        let patterns: Vec<&str> = chosen.iter().map(|d| d.pattern()).collect();
        let set = RegexSet::new(&patterns).map_err(|e| e.to_string())?;
        let each = chosen
            .iter()
            .map(|d| Regex::new(d.pattern()).map(|r| (*d, r)))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Detectors { set, each })
    }

    /// Whether any detector may match `text` (the cheap first pass).
    pub fn may_match(&self, text: &str) -> bool {
        !self.each.is_empty() && self.set.is_match(text)
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
        if !self.may_match(text) {
            return false;
        }
        let hits = self.set.matches(text);
        // Replace detector by detector over the text as it becomes.
        let mut current = std::borrow::Cow::Borrowed(text);
        let mut any = false;
        let mut next = String::new();
        for (i, (d, re)) in self.each.iter().enumerate() {
            if !hits.matched(i) {
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
    fn checksums_decide() {
        assert!(luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_valid("GB82 WEST 1234 5698 7654 33"));
    }
}
