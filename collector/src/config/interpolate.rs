//! `${VAR}` and `${VAR:-default}` interpolation of the raw config text, before
//! it is parsed. `$$` writes a literal `$`. A variable that is unset and has
//! no default is an error (an empty value would hide a deployment mistake).

/// Where and why interpolation failed.
#[derive(Debug, PartialEq, Eq)]
pub struct InterpolateError {
    /// Byte offset of the `$` in the original text.
    pub offset: usize,
    pub message: String,
}

/// Replaces every `${…}` in `text`, looking variables up with `env`.
pub fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed = 0;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let at = consumed + i;
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            consumed = at + 2;
            rest = tail;
            continue;
        }
        let Some(body_and_more) = after.strip_prefix('{') else {
            out.push('$');
            consumed = at + 1;
            rest = after;
            continue;
        };
        let Some(end) = body_and_more.find('}') else {
            return Err(InterpolateError {
                offset: at,
                message: "unterminated `${`: expected `}`".to_owned(),
            });
        };
        let body = &body_and_more[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid_name = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid_name {
            return Err(InterpolateError {
                offset: at,
                message: format!("invalid variable name {name:?} in `${{{body}}}`"),
            });
        }
        match (env(name), default) {
            (Some(v), _) if !(v.is_empty() && default.is_some()) => out.push_str(&v),
            (_, Some(d)) => out.push_str(d),
            (Some(v), None) => out.push_str(&v),
            (None, None) => {
                return Err(InterpolateError {
                    offset: at,
                    message: format!(
                        "environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"
                    ),
                })
            }
        }
        consumed = at + 2 + end + 1;
        rest = &body_and_more[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME_DIR" => Some("/home/x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_variables_and_defaults() {
        assert_eq!(interpolate("a=${HOME_DIR}/b", &env).unwrap(), "a=/home/x/b");
        assert_eq!(interpolate("${NOPE:-/tmp}", &env).unwrap(), "/tmp");
        assert_eq!(interpolate("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(interpolate("${EMPTY}", &env).unwrap(), "");
        assert_eq!(
            interpolate("cost $$5 and $x", &env).unwrap(),
            "cost $5 and $x"
        );
    }

    #[test]
    fn reports_unset_variables_and_syntax_errors_with_offsets() {
        let e = interpolate("ab ${NOPE}", &env).unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(e.message.contains("`NOPE` is not set"));
        assert!(interpolate("${OPEN", &env)
            .unwrap_err()
            .message
            .contains("unterminated"));
        assert!(interpolate("${1X}", &env)
            .unwrap_err()
            .message
            .contains("invalid variable name"));
    }
}
