//! Lumen's log as it reaches where it goes: no colour escapes in a file or
//! a pipe, colour on a terminal unless `NO_COLOR`, one JSON object a line
//! with `--log-format json` (or `LUMEN_LOG_FORMAT=json`), and a component
//! that fails at the first start is said to fail to start, not to reload.

use crate::support::{wait_timeout, LUMEN};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A config that runs until stopped: an audit file with one event to a file.
fn config(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::write(
        dir.join("audit.log"),
        format!("{}\n", crate::support::audit_line("log-1", "get")),
    )
    .unwrap();
    let path = dir.join("lumen.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{d}/data\"\n[sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{d}/audit.log\"\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"audit\"]\npath = \"{d}/out.ndjson\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

/// Runs `cmd` until `out.ndjson` has its event, then SIGTERM; its stderr.
fn run_to_the_event(mut cmd: Command, dir: &std::path::Path) -> String {
    let stderr_path = dir.join("stderr.log");
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    crate::support::wait_for_events(&dir.join("out.ndjson"), Duration::from_secs(30), |e| {
        !e.is_empty()
    });
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    let text = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "{text}");
    text
}

fn lumen(config: &std::path::Path) -> Command {
    let mut cmd = Command::new(LUMEN);
    cmd.args(["run", "--config"])
        .arg(config)
        .env("LUMEN_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("LUMEN_LOG_FORMAT");
    cmd
}

#[test]
fn a_log_written_to_a_file_has_no_colour_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let text = run_to_the_event(lumen(&config(dir.path())), dir.path());
    assert!(text.contains("lumen starting"), "{text}");
    assert!(!text.contains('\x1b'), "ANSI escapes in a file: {text:?}");
}

/// On a terminal (`script` gives lumen a pseudo-terminal) the text log is
/// coloured, and `NO_COLOR` turns that off.
#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    for (no_color, want_escapes) in [(None, true), (Some("1"), false)] {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let typescript = dir.path().join("typescript");
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-e", "-f", "-c"])
            .arg(format!("{LUMEN} run --config {}", config.display()))
            .arg(&typescript)
            .env("LUMEN_LOG", "info")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        crate::support::wait_for_events(
            &dir.path().join("out.ndjson"),
            Duration::from_secs(30),
            |e| !e.is_empty(),
        );
        let pid = lumen_pid(&config).expect("lumen under script");
        // SAFETY: kill(2) on a process this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let _ = wait_timeout(&mut child, Duration::from_secs(30));
        let text = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
        assert!(text.contains("lumen starting"), "{text}");
        assert_eq!(
            text.contains("\x1b["),
            want_escapes,
            "NO_COLOR={no_color:?}: {text:?}"
        );
    }
}

/// The pid of the `lumen run --config <config>` process.
fn lumen_pid(config: &std::path::Path) -> Option<i32> {
    let want = format!("{LUMEN}\0run\0--config\0{}\0", config.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        (cmdline == want.as_bytes()).then_some(pid)
    })
}

#[test]
fn log_format_json_writes_one_object_a_line() {
    for by_env in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = lumen(&config(dir.path()));
        if by_env {
            cmd.env("LUMEN_LOG_FORMAT", "json");
        } else {
            cmd.args(["--log-format", "json"]);
        }
        let text = run_to_the_event(cmd, dir.path());
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert!(lines.len() >= 3, "{text}");
        for l in &lines {
            assert!(
                l["timestamp"].is_string() && l["level"].is_string() && l["target"].is_string(),
                "{l}"
            );
        }
        let start = lines
            .iter()
            .find(|l| l["message"] == "lumen starting")
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(start["level"], "INFO");
        assert_eq!(start["version"], env!("CARGO_PKG_VERSION"));
        assert!(start["config"].as_str().unwrap().ends_with("lumen.toml"));
    }
}

#[test]
fn an_unknown_log_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = lumen(&config(dir.path()))
        .args(["--log-format", "xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("xml") && err.contains("json"), "{err}");
}

/// A sink that cannot open its file at the first start: "does not
/// start", and nothing about a reload.
#[test]
fn a_component_that_fails_at_the_first_start_is_said_not_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lumen.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{d}/data\"\n[sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{d}/audit.log\"\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"audit\"]\npath = \"/proc/lumen-cannot/out.ndjson\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = lumen(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("this component does not start") && err.contains("starting sink `out` (file)"),
        "{err}"
    );
    assert!(!err.contains("reload"), "{err}");
}
