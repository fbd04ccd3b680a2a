//! The network sinks through the binary: audit events fan out to an
//! Elasticsearch peer and a Splunk HEC peer (the protocol peers of the
//! sinks' own tests), and the source learns every event was delivered;
//! a sink whose receiver fails its healthcheck stops Lumen with the reason.

#[path = "../../sinks/tests/support/mod.rs"]
mod peers;

use crate::support::{audit_line, Lumen};
use peers::elasticsearch_peer::EsPeer;
use peers::splunk_peer::HecPeer;
use std::io::Write;
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn audit_events_reach_elasticsearch_and_splunk_and_are_acknowledged() {
    let rt = runtime();
    let es = rt.block_on(EsPeer::start(None));
    let hec = rt.block_on(HecPeer::start("e2e-token", true));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let mut f = std::fs::File::create(dir.path().join("logs/audit.log")).unwrap();
    for i in 0..50 {
        writeln!(f, "{}", audit_line(&format!("net-{i}"), "get")).unwrap();
    }
    drop(f);
    let config = format!(
        r#"
data_dir = "{{dir}}/data"
[sources.audit]
type = "k8s_audit_file"
path = "{{dir}}/logs/*.log"
poll_interval_ms = 50

[sinks.es]
type = "elasticsearch"
inputs = ["audit"]
endpoints = ["{es}"]
batch.timeout_secs = 0.1

[sinks.splunk]
type = "splunk_hec"
inputs = ["audit"]
endpoint = "{hec}"
default_token = "e2e-token"
batch.timeout_secs = 0.1
acknowledgements.query_interval = 0.05
"#,
        es = es.url(),
        hec = hec.url()
    );
    let mut lumen = Lumen::start_in(dir, &config);
    let start = Instant::now();
    while (es.arrivals().len() < 50 || hec.arrivals().len() < 50)
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    for (name, arrivals) in [("elasticsearch", es.arrivals()), ("splunk", hec.arrivals())] {
        for i in 0..50 {
            assert_eq!(
                arrivals.get(&format!("net-{i}")),
                Some(&1),
                "{name}: net-{i}\n{}",
                log.join("\n")
            );
        }
    }
    es.with(|s| {
        assert!(s
            .docs
            .iter()
            .all(|(i, _)| i == "logs-lumen.k8s_audit-default"))
    });
    hec.with(|s| {
        assert!(s
            .envelopes
            .iter()
            .all(|e| e["sourcetype"] == "ocsf:api_activity"))
    });
    // Both sinks acknowledged every event to the source.
    let summary = log
        .iter()
        .find(|l| l.contains("acknowledged="))
        .unwrap_or_else(|| panic!("no source summary:\n{}", log.join("\n")));
    assert!(summary.contains("acknowledged=50"), "{summary}");
    assert!(
        !log.iter().any(|l| l.contains("e2e-token")),
        "the token was logged"
    );
}

#[test]
fn a_failed_healthcheck_stops_lumen_with_the_reason() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let config = format!(
        r#"
data_dir = "{{dir}}/data"
[sources.audit]
type = "k8s_audit_file"
path = "{{dir}}/*.log"

[sinks.es]
type = "elasticsearch"
inputs = ["audit"]
endpoints = ["{url}"]
"#
    );
    let mut lumen = Lumen::start(&config);
    let (status, log) = lumen.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = log.join("\n");
    assert!(
        log.contains("starting sink `es` (elasticsearch)")
            && log.contains("healthcheck failed")
            && log.contains("Connection refused"),
        "{log}"
    );
}
