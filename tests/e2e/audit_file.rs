//! The k8s_audit_file source through the binary: malformed lines, appends,
//! rename rotation and copytruncate.

use crate::support::{audit_line, wait_for_events, Lumen};
use std::io::Write;
use std::time::Duration;

const CONFIG: &str = r#"
data_dir = "{dir}/data"
[sources.audit]
type = "k8s_audit_file"
path = "{dir}/logs/*.log"
poll_interval_ms = 50

[sinks.out]
type = "file"
inputs = ["audit"]
schema = "ecs"
path = "{dir}/out.ndjson"
"#;

fn append(path: &std::path::Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn ids(events: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = events
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn malformed_lines_are_reported_with_file_and_line_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let log = dir.path().join("logs/audit.log");
    append(
        &log,
        &[
            audit_line("a1", "get"),
            "{not json".to_owned(),
            r#"{"kind":"Event","auditID":"x","stage":"ResponseComplete","verb":7,"user":{}}"#
                .to_owned(),
            r#"{"kind":"Event","stage":"ResponseComplete","verb":"get","user":{}}"#.to_owned(),
            audit_line("a2", "list"),
        ],
    );
    let mut lumen = Lumen::start_in(dir, CONFIG);
    let out = lumen.path("out.ndjson");
    let events = wait_for_events(&out, Duration::from_secs(20), |e| e.len() >= 2);
    assert_eq!(ids(&events), ["a1", "a2"]);
    lumen.wait_for_log("line=4", Duration::from_secs(5));
    let log_lines = lumen.log();
    let malformed: Vec<&String> = log_lines
        .iter()
        .filter(|l| l.contains("malformed line skipped"))
        .collect();
    assert_eq!(malformed.len(), 3, "{log_lines:#?}");
    assert!(
        malformed[0].contains("audit.log")
            && malformed[0].contains("line=2")
            && malformed[0].contains("invalid JSON")
    );
    assert!(malformed[1].contains("line=3"));
    assert!(malformed[2].contains("line=4") && malformed[2].contains("missing `auditID`"));
    let (status, log) = lumen.stop();
    assert!(status.success());
    assert!(
        log.iter()
            .any(|l| l.contains("component=audit") && l.contains("errors=3")),
        "{log:#?}"
    );
}

#[test]
fn follows_appends_rename_rotation_and_copytruncate_without_loss_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let log = dir.path().join("logs/audit.log");
    append(
        &log,
        &(0..50)
            .map(|i| audit_line(&format!("r0-{i:03}"), "get"))
            .collect::<Vec<_>>(),
    );
    let mut lumen = Lumen::start_in(dir, CONFIG);
    let out = lumen.path("out.ndjson");
    wait_for_events(&out, Duration::from_secs(20), |e| e.len() >= 50);

    // Appends.
    append(
        &log,
        &(0..10)
            .map(|i| audit_line(&format!("r1-{i:03}"), "get"))
            .collect::<Vec<_>>(),
    );
    wait_for_events(&out, Duration::from_secs(20), |e| e.len() >= 60);

    // Rename rotation to a name outside the glob: late writes to the old
    // file are still read, the new file is read from its start.
    let rotated = lumen.path("logs/audit.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, &[audit_line("r2-late", "get")]);
    append(
        &log,
        &(0..10)
            .map(|i| audit_line(&format!("r2-{i:03}"), "get"))
            .collect::<Vec<_>>(),
    );
    wait_for_events(&out, Duration::from_secs(20), |e| e.len() >= 71);

    // Copytruncate: the file is emptied in place and written again.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    append(
        &log,
        &(0..5)
            .map(|i| audit_line(&format!("r3-{i:03}"), "get"))
            .collect::<Vec<_>>(),
    );
    let events = wait_for_events(&out, Duration::from_secs(20), |e| e.len() >= 76);

    let got = ids(&events);
    let mut want: Vec<String> = (0..50).map(|i| format!("r0-{i:03}")).collect();
    want.extend((0..10).map(|i| format!("r1-{i:03}")));
    want.extend((0..10).map(|i| format!("r2-{i:03}")));
    want.push("r2-late".to_owned());
    want.extend((0..5).map(|i| format!("r3-{i:03}")));
    want.sort();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ids(&crate::support::read_ndjson(&out)),
        want,
        "every event exactly once"
    );
    let (status, _) = lumen.stop();
    assert!(status.success());
    assert_eq!(got, want);
}

/// A config reading `base/logs/<glob>` into `base/out.ndjson`, state in
/// `base/data`: several runs share them.
fn restart_config(base: &std::path::Path, glob: &str) -> String {
    format!(
        r#"
data_dir = "{b}/data"
[sources.audit]
type = "k8s_audit_file"
path = "{b}/logs/{glob}"
poll_interval_ms = 50

[sinks.out]
type = "file"
inputs = ["audit"]
schema = "ecs"
path = "{b}/out.ndjson"
"#,
        b = base.display()
    )
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| audit_line(&format!("{prefix}-{i:03}"), "get"))
        .collect()
}

/// Runs lumen until `out` holds `want` events, then stops it; its log.
fn run_until(base: &std::path::Path, config: &str, want: usize) -> Vec<String> {
    let mut lumen = Lumen::start_in(tempfile::tempdir_in(base).unwrap(), config);
    wait_for_events(&base.join("out.ndjson"), Duration::from_secs(30), |e| {
        e.len() >= want
    });
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    log
}

fn assert_each_once(base: &std::path::Path, want: &[String]) {
    let got = ids(&crate::support::read_ndjson(&base.join("out.ndjson")));
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(got, want, "every event exactly once across the runs");
}

#[test]
fn a_restart_resumes_at_the_checkpoint_without_loss_or_repeats() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("logs")).unwrap();
    let log = base.path().join("logs/audit.log");
    let config = restart_config(base.path(), "*.log");
    append(&log, &lines("c0", 100));
    run_until(base.path(), &config, 100);
    let checkpoints = base.path().join("data/checkpoints/audit.json");
    let saved = std::fs::read_to_string(&checkpoints).unwrap();
    assert!(saved.contains("\"offset\""), "{saved}");
    // Written while Lumen is down.
    append(&log, &lines("c1", 50));
    let log2 = run_until(base.path(), &config, 150);
    assert!(
        log2.iter()
            .any(|l| l.contains("resuming at the checkpoint") && l.contains("line=101")),
        "{}",
        log2.join("\n")
    );
    let mut want: Vec<String> = (0..100).map(|i| format!("c0-{i:03}")).collect();
    want.extend((0..50).map(|i| format!("c1-{i:03}")));
    assert_each_once(base.path(), &want);
}

#[test]
fn rotation_while_lumen_is_down_skips_nothing_and_repeats_nothing() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("logs")).unwrap();
    let log = base.path().join("logs/audit.log");
    let config = restart_config(base.path(), "audit*.log");
    append(&log, &lines("d0", 30));
    run_until(base.path(), &config, 30);
    // While down: late writes, rotation to a name the glob matches, a new
    // file.
    append(&log, &lines("d1", 10));
    std::fs::rename(&log, base.path().join("logs/audit-1.log")).unwrap();
    append(&log, &lines("d2", 20));
    run_until(base.path(), &config, 60);
    let mut want: Vec<String> = (0..30).map(|i| format!("d0-{i:03}")).collect();
    want.extend((0..10).map(|i| format!("d1-{i:03}")));
    want.extend((0..20).map(|i| format!("d2-{i:03}")));
    assert_each_once(base.path(), &want);
}

/// A fixture of the schema conformance tests (`schemas/tests/reference`).
pub fn reference(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/tests/reference/k8s-audit")
        .join(path)
}

#[test]
fn gke_entries_cloudwatch_payloads_and_export_lines_are_read_and_a_pinned_format_refuses_the_rest()
{
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let read = |p: &str| std::fs::read_to_string(reference(p)).unwrap();
    let gke = read("elastic-gcp/test-k8s-nonmatching-resourcename.log");
    let payload = read("cloudwatch/eks-subscription-payload.json");
    let export = read("cloudwatch/eks-export.log");
    append(
        &dir.path().join("logs/audit.log"),
        &[
            audit_line("native-1", "get"),
            gke.trim_end().to_owned(),
            payload.trim_end().to_owned(),
            export.lines().next().unwrap().to_owned(),
        ],
    );
    let config = format!(
        "{CONFIG}
[sources.gke_only]
type = \"k8s_audit_file\"
path = \"{{dir}}/logs/*.log\"
poll_interval_ms = 50
format = \"gke\"

[sinks.gke_out]
type = \"file\"
inputs = [\"gke_only\"]
schema = \"ecs\"
path = \"{{dir}}/gke.ndjson\"
"
    );
    let mut lumen = Lumen::start_in(dir, &config);
    // Auto: 1 native + 1 GKE + 4 from the payload + 1 export line.
    let events = wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 7
    });
    assert_eq!(events.len(), 7);
    let providers: Vec<&str> = events
        .iter()
        .map(|e| e["cloud"]["provider"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(providers, ["-", "gcp", "aws", "aws", "aws", "aws", "aws"]);
    assert_eq!(
        events[1]["orchestrator"]["cluster"]["name"],
        "example-cluster"
    );
    assert_eq!(events[1]["event"]["action"], "io.k8s.get");
    assert_eq!(events[2]["orchestrator"]["cluster"]["name"], "demo");
    assert_eq!(events[2]["cloud"]["account"]["id"], "123456789012");
    // The payload's events keep their own originals; the export line's too.
    let demo = read("audit2rbac/demo.log");
    assert_eq!(events[2]["event"]["original"], demo.lines().next().unwrap());
    assert_eq!(events[6]["event"]["original"], demo.lines().next().unwrap());

    // Pinned to `gke`: only the GKE entry; each other line named.
    let gke_events = wait_for_events(&lumen.path("gke.ndjson"), Duration::from_secs(10), |e| {
        !e.is_empty()
    });
    assert_eq!(gke_events.len(), 1);
    assert_eq!(gke_events[0]["cloud"]["project"]["id"], "example-project");
    lumen.wait_for_log("this source reads", Duration::from_secs(5));
    let (status, log) = lumen.stop();
    assert!(status.success());
    let refused: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("malformed line skipped") && l.contains("this source reads"))
        .collect();
    assert_eq!(refused.len(), 3, "{log:#?}");
    assert!(refused
        .iter()
        .any(|l| l.contains("line=1") && l.contains("a native audit event")));
    assert!(refused
        .iter()
        .any(|l| l.contains("line=3") && l.contains("a CloudWatch Logs record")));
    assert!(
        log.iter()
            .any(|l| l.contains("component=gke_only") && l.contains("errors=3")),
        "{log:#?}"
    );
}
