//! Command lines as argument vectors: what the detectors cannot see in
//! one argument alone. The mysql family takes its password glued to the
//! flag (`-pSECRET`), and a secret flag may take its value as the next
//! argument (`--password`, `hunter2`). Kernel argv (NUL-separated), the
//! `command` parameters of `kubectl exec` URIs and `command`/`args` arrays
//! in audit bodies all go through here.

/// Whether `argv0` (a path or a name) is of the mysql family, whose `-p`
/// takes the password glued to it.
pub(super) fn is_mysql(argv0: &str) -> bool {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    matches!(
        base,
        "mysql"
            | "mysqldump"
            | "mysqladmin"
            | "mysqlimport"
            | "mysqlshow"
            | "mariadb"
            | "mariadb-dump"
    )
}

/// `-pSECRET` (not `-p` alone, which prompts, nor a `--long` flag).
pub(super) fn is_p_arg(arg: &str) -> bool {
    arg.len() > 2 && arg.starts_with("-p") && !arg.starts_with("--")
}

/// What a masked `-pSECRET` becomes.
pub(super) const P_ARG_MASKED: &str = "-p[password_arg]";

/// Whether an argument after the first of NUL-separated `argv` is a
/// `-pSECRET`.
pub(super) fn has_p_arg(argv: &str) -> bool {
    lumen_schemas::event::split_argv(argv).skip(1).any(is_p_arg)
}

/// NUL-separated `argv` with every `-pSECRET` after the first argument
/// masked.
pub(super) fn mask_p_args(argv: &str) -> String {
    let mut out = String::with_capacity(argv.len());
    for (i, a) in lumen_schemas::event::split_argv(argv).enumerate() {
        if i > 0 {
            out.push('\0');
        }
        if i > 0 && is_p_arg(a) {
            out.push_str(P_ARG_MASKED);
        } else {
            out.push_str(a);
        }
    }
    out
}

/// Whether `arg` is a secret flag on its own (`--password`, `-token`,
/// `--api-key`): its value is the next argument. The flags are those of the
/// `password_arg` detector, which finds `--password=x` and `--password x`
/// within one text.
pub(super) fn takes_secret_next(arg: &str) -> bool {
    let name = arg
        .strip_prefix("--")
        .or_else(|| arg.strip_prefix('-'))
        .unwrap_or("");
    [
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "token",
        "apikey",
        "api-key",
        "api_key",
        "accesskey",
        "access-key",
        "access_key",
    ]
    .iter()
    .any(|f| name.eq_ignore_ascii_case(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_passwords_and_secret_flags_are_told_from_look_alikes() {
        assert!(is_mysql("/usr/bin/mysql") && is_mysql("mariadb-dump"));
        assert!(!is_mysql("mysqld") && !is_mysql("/opt/mysql-shell/bin/mysqlsh"));
        assert!(is_p_arg("-pS3cr3t") && !is_p_arg("-p") && !is_p_arg("--port"));
        assert!(has_p_arg("mysql\0-uroot\0-pS3cr3t"));
        assert!(!has_p_arg("-pS3cr3t"), "argv[0] is the program");
        assert_eq!(
            mask_p_args("mysql\0-uroot\0-pS3cr3t\0-P3306"),
            "mysql\0-uroot\0-p[password_arg]\0-P3306"
        );
        for flag in [
            "--password",
            "-password",
            "--API-KEY",
            "--access_key",
            "--token",
        ] {
            assert!(takes_secret_next(flag), "{flag}");
        }
        for arg in [
            "password",
            "--password=x",
            "--passwords",
            "---password",
            "-p",
            "--user",
        ] {
            assert!(!takes_secret_next(arg), "{arg}");
        }
    }
}
