//! The `rate_limit` transform through the binary: a flood from one user is
//! cut to its budget, another user is untouched, forbidden calls on secrets
//! always pass, and the suppression arrives as a summary event.

use crate::support::{audit_line, read_ndjson, wait_for_events, Lumen};
use std::io::Write;
use std::time::Duration;

#[test]
fn a_flood_is_limited_per_user_and_summarized_never_hidden() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let mut f = std::fs::File::create(dir.path().join("logs/audit.log")).unwrap();
    for i in 0..40 {
        writeln!(f, "{}", audit_line(&format!("flood-{i:03}"), "get")).unwrap();
    }
    for i in 0..5 {
        let line = audit_line(&format!("bob-{i:03}"), "list").replace("alice", "bob");
        writeln!(f, "{line}").unwrap();
    }
    for i in 0..3 {
        let line = audit_line(&format!("secret-{i:03}"), "get")
            .replace("\"resource\":\"pods\"", "\"resource\":\"secrets\"")
            .replace("\"code\":200", "\"code\":403");
        writeln!(f, "{line}").unwrap();
    }
    drop(f);
    let config = r#"data_dir = "{dir}/data"
[sources.audit]
type = "k8s_audit_file"
path = "{dir}/logs/*.log"
poll_interval_ms = 50

[transforms.limit]
type = "rate_limit"
inputs = ["audit"]
key = "{{ user.name }}"
rate = 1
burst = 5
summary_interval_secs = 0.5

[sinks.out]
type = "file"
inputs = ["limit"]
schema = "ecs"
path = "{dir}/out.ndjson"
"#;
    let mut lumen = Lumen::start_in(dir, config);
    let out = lumen.path("out.ndjson");
    let summary = |e: &serde_json::Value| e["event"]["action"] == "events_rate_limited";
    wait_for_events(&out, Duration::from_secs(20), |evs| evs.iter().any(summary));
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let events = read_ndjson(&out);
    let with_prefix = |p: &str| {
        events
            .iter()
            .filter(|e| {
                e["kubernetes"]["audit"]["auditID"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(p))
            })
            .count()
    };
    let flood = with_prefix("flood-");
    assert!(
        (5..=7).contains(&flood),
        "alice's 40 events cut to the burst (+ refill): {flood}"
    );
    assert_eq!(with_prefix("bob-"), 5, "another key is untouched");
    assert_eq!(
        with_prefix("secret-"),
        3,
        "forbidden calls on secrets are never dropped"
    );
    let summaries: Vec<&serde_json::Value> = events.iter().filter(|e| summary(e)).collect();
    let suppressed: u64 = summaries
        .iter()
        .map(|s| {
            assert_eq!(s["lumen"]["loss"]["key"], "alice");
            assert_eq!(s["lumen"]["loss"]["rate_limit"], "limit");
            s["lumen"]["loss"]["by_kind"]["k8s_audit"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(
        flood as u64 + suppressed,
        40,
        "every event is either delivered or counted"
    );
    let log = log.join("\n");
    assert!(log.contains("rate_limit: events suppressed"), "{log}");
}
