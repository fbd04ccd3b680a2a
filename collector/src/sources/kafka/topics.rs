//! Topic patterns as librdkafka reads them. A subscribed topic that starts
//! with `^` is a regular expression, compiled by librdkafka with the C
//! library's `regcomp` (POSIX extended syntax; librdkafka built on Linux
//! has `HAVE_REGEX`) — not Rust's dialect. A pattern is checked here with
//! that same compiler and flags, so one librdkafka would refuse fails at
//! start-up by name; and Perl escapes such as `\d`, which POSIX reads as
//! a plain letter (a pattern that quietly matches no topic), are refused
//! with what to write instead.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;

/// Checks the pattern `p` (it starts with `^`).
pub fn validate_pattern(p: &str) -> Result<(), String> {
    perl_escape(p)?;
    compile(p)
}

/// Refuses a backslash before a letter POSIX gives no meaning (glibc reads
/// it as the letter itself). glibc's own `\w \W \s \S \b \B` pass.
fn perl_escape(p: &str) -> Result<(), String> {
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            continue;
        }
        match chars.next() {
            Some('w' | 'W' | 's' | 'S' | 'b' | 'B') => {}
            Some(e) if e.is_ascii_alphanumeric() => {
                let instead = match e {
                    'd' => "[0-9]",
                    'D' => "[^0-9]",
                    _ => "a bracket expression such as [[:alpha:]]",
                };
                return Err(format!(
                    "topics: {p:?}: \\{e} is no POSIX regular expression (librdkafka matches topic patterns with the C library's extended regular expressions, where it is a plain {e:?}); write {instead}"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Compiles `p` as librdkafka does: `regcomp(REG_EXTENDED | REG_NOSUB)`.
fn compile(p: &str) -> Result<(), String> {
    let pattern = CString::new(p).map_err(|_| format!("topics: {p:?} holds a NUL character"))?;
    let mut re = MaybeUninit::<libc::regex_t>::zeroed();
    // SAFETY: a zeroed regex_t for regcomp to fill, and a NUL-terminated
    // pattern that outlives the call.
    let code = unsafe {
        libc::regcomp(
            re.as_mut_ptr(),
            pattern.as_ptr(),
            libc::REG_EXTENDED | libc::REG_NOSUB,
        )
    };
    if code == 0 {
        // SAFETY: regcomp succeeded: the regex_t holds what regfree frees.
        unsafe { libc::regfree(re.as_mut_ptr()) };
        return Ok(());
    }
    let mut message = [0u8; 256];
    // SAFETY: regerror writes at most `len` bytes, NUL-terminated, about
    // the code regcomp returned for this regex_t.
    unsafe {
        libc::regerror(
            code,
            re.as_ptr(),
            message.as_mut_ptr().cast(),
            message.len(),
        )
    };
    let reason = CStr::from_bytes_until_nul(&message)
        .map(|m| m.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("regcomp error {code}"));
    Err(format!(
        "topics: {p:?} is no POSIX extended regular expression (how librdkafka reads topic patterns): {reason}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_checked_as_librdkafka_compiles_them() {
        for ok in [
            "^lumen-.*",
            "^(audit|events)-[0-9]+$",
            "^lumen\\.[[:alnum:]_]+",
            "^team-\\w+",
        ] {
            assert_eq!(validate_pattern(ok), Ok(()), "{ok}");
        }
        for (bad, named) in [
            ("^lumen-[", "no POSIX extended regular expression"),
            ("^(audit", "no POSIX extended regular expression"),
            ("^(?i)lumen", "no POSIX extended regular expression"),
            ("^lumen-\\d+", "write [0-9]"),
            ("^lumen\\p{L}", "bracket expression"),
        ] {
            let e = validate_pattern(bad).unwrap_err();
            assert!(e.contains(named) && e.contains("topics"), "{bad}: {e}");
        }
    }
}
