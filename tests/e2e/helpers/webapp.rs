//! An application that runs a shell, as one does when a request smuggles a
//! command into it: runs `/bin/sh -c "$1"` (default `true`) and exits with
//! its status. Its name (`webapp`) is no shell's.
//!
//! Built by the e2e tests with `rustc` (std only, static): test input, not
//! part of Lumen.

fn main() {
    let script = std::env::args().nth(1).unwrap_or_else(|| "true".to_owned());
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .status();
    std::process::exit(status.ok().and_then(|s| s.code()).unwrap_or(1));
}
