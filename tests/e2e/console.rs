//! The console sink through the binary: JSON lines in the chosen schema on
//! standard output, logs on standard error.

use crate::support::{audit_line, LUMEN};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn console_json_writes_one_schema_document_per_line_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    std::fs::write(
        &log,
        format!(
            "{}\n{}\n",
            audit_line("c1", "create"),
            audit_line("c2", "delete")
        ),
    )
    .unwrap();
    let config = dir.path().join("lumen.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{d}/data\"\n[sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{d}/audit.log\"\n\n\
             [sinks.screen]\ntype = \"console\"\ninputs = [\"audit\"]\nencoding = \"json\"\nschema = \"ocsf\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(LUMEN)
        .args(["run", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut docs = Vec::new();
    while docs.len() < 2 && start.elapsed() < Duration::from_secs(20) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            docs.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = crate::support::wait_timeout(&mut child, Duration::from_secs(20));
    assert!(status.success());
    assert_eq!(docs.len(), 2, "two OCSF documents on stdout");
    assert_eq!(docs[0]["class_uid"], 6003);
    assert_eq!(docs[0]["activity_name"], "Create");
    assert_eq!(docs[1]["activity_name"], "Delete");
    assert_eq!(docs[1]["metadata"]["uid"], "c2");
}
