//! Query strings of request URIs, as the API server got them: each value
//! URL-decoded (`%XX`, `+` for a space, as Go's `url.ParseQuery` does)
//! before the detectors look at it, and encoded again when it changed. A
//! `kubectl exec` sends its command's argv as repeated `command=`
//! parameters, so `-pSECRET` arrives as `command=-pSECRET` or
//! `command=%2DpSECRET`.

use std::borrow::Cow;

/// One `key=value` piece of a query, as written and decoded.
pub(super) struct Param<'a> {
    /// The piece as written (kept byte for byte when nothing changes).
    pub raw: &'a str,
    /// The key as written.
    pub raw_key: &'a str,
    pub key: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

/// The pieces of `query` (without the `?`), in order; empty pieces are
/// skipped.
pub(super) fn params(query: &str) -> impl Iterator<Item = Param<'_>> {
    query.split('&').filter(|p| !p.is_empty()).map(|raw| {
        let raw_key = raw.split_once('=').map_or(raw, |(k, _)| k);
        let (key, value) = form_urlencoded::parse(raw.as_bytes())
            .next()
            .unwrap_or((Cow::Borrowed(""), Cow::Borrowed("")));
        Param {
            raw,
            raw_key,
            key,
            value,
        }
    })
}

/// Appends `query` decoded to `text` — the `key=value` of every parameter
/// but `command`, each after a NUL (a boundary to every detector) — and
/// its `command` values, NUL-separated, to `argv`.
pub(super) fn decode(query: &str, text: &mut String, argv: &mut String) {
    for p in params(query) {
        if p.key == "command" {
            if !argv.is_empty() {
                argv.push('\0');
            }
            argv.push_str(&p.value);
            continue;
        }
        text.push('\0');
        text.push_str(&p.key);
        if p.raw.contains('=') {
            text.push('=');
            text.push_str(&p.value);
        }
    }
}

/// Whether a query may hide something its text alone does not show: an
/// encoded character, or a command's argv split over parameters.
pub(super) fn needs_decoding(query: &str) -> bool {
    memchr::memchr2(b'%', b'+', query.as_bytes()).is_some() || query.contains("command=")
}

/// `key=value` with `value` encoded as a query value.
pub(super) fn push_param(out: &mut String, raw_key: &str, value: &str) {
    out.push_str(raw_key);
    out.push('=');
    out.extend(form_urlencoded::byte_serialize(value.as_bytes()));
}

/// A decoded `key=value` (or a lone key) encoded as a query piece.
pub(super) fn push_pair(out: &mut String, pair: &str) {
    let (key, value) = pair
        .split_once('=')
        .map_or((pair, None), |(k, v)| (k, Some(v)));
    out.extend(form_urlencoded::byte_serialize(key.as_bytes()));
    if let Some(v) = value {
        out.push('=');
        out.extend(form_urlencoded::byte_serialize(v.as_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_decoded_as_the_api_server_decodes_them_and_encoded_back() {
        let q = "command=mysql&command=%2DpS3cr%3Dt&command=-u+root&&stdin=true&flag";
        let got: Vec<(String, String, &str)> = params(q)
            .map(|p| (p.key.into_owned(), p.value.into_owned(), p.raw_key))
            .collect();
        assert_eq!(
            got,
            [
                ("command".into(), "mysql".into(), "command"),
                ("command".into(), "-pS3cr=t".into(), "command"),
                ("command".into(), "-u root".into(), "command"),
                ("stdin".into(), "true".into(), "stdin"),
                ("flag".into(), "".into(), "flag"),
            ]
        );
        let mut out = String::new();
        push_param(&mut out, "command", "-u root&x=%");
        assert_eq!(out, "command=-u+root%26x%3D%25");
        let back: Vec<String> = params(&out).map(|p| p.value.into_owned()).collect();
        assert_eq!(back, ["-u root&x=%"]);
        out.clear();
        push_pair(&mut out, "token=[secret assignment]");
        assert_eq!(out, "token=%5Bsecret+assignment%5D");
        out.clear();
        push_pair(&mut out, "a b");
        assert_eq!(out, "a+b");
        assert!(needs_decoding("command=ls") && needs_decoding("q=a%20b"));
        assert!(!needs_decoding("limit=500&resourceVersion=0"));
    }
}
