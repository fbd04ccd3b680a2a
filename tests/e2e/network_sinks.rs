//! The network sinks through the binary: audit events fan out to an
//! Elasticsearch peer and a Splunk HEC peer (the protocol peers of the
//! sinks' own tests), and the source learns every event was delivered;
//! with `--require-healthy`, a sink whose receiver is down stops Lumen with
//! the reason (`health.rs` has the default: Lumen runs on and waits).

#[path = "../../sinks/tests/support/mod.rs"]
pub(crate) mod peers;

use crate::support::{audit_line, Lumen};
use peers::elasticsearch_peer::EsPeer;
use peers::splunk_peer::HecPeer;
use std::io::Write;
use std::time::{Duration, Instant};

/// `dir/logs/audit.log` with `n` events `<prefix>-<i>` (`{i:04}`).
pub(crate) fn write_audit_log(dir: &std::path::Path, prefix: &str, n: usize) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let mut f = std::fs::File::create(dir.join("logs/audit.log")).unwrap();
    for i in 0..n {
        writeln!(f, "{}", audit_line(&format!("{prefix}-{i:04}"), "get")).unwrap();
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
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
    write_audit_log(dir.path(), "net", 50);
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
                arrivals.get(&format!("net-{i:04}")),
                Some(&1),
                "{name}: net-{i:04}\n{}",
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
fn a_required_healthcheck_of_a_receiver_that_is_down_stops_lumen_with_the_reason() {
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
    let mut lumen = Lumen::start_with_args(
        tempfile::tempdir().unwrap(),
        &config,
        std::process::Stdio::null(),
        &["--require-healthy"],
        &[],
    );
    let (status, log) = lumen.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2));
    let log = log.join("\n");
    assert!(
        log.contains(
            "sink `es` (elasticsearch) failed its required healthcheck: receiver unavailable"
        ) && log.contains("Connection refused"),
        "{log}"
    );
}

/// Crash-proof file reading: lumen is killed (SIGKILL) again and again while
/// it ships an audit log to Elasticsearch, which is unavailable part of the
/// time; after the last restart every event has arrived at least once, and
/// the checkpoints keep the repeats far below a full re-read per crash.
#[test]
fn sigkill_restarts_lose_nothing_and_repeat_little() {
    const N: usize = 3000;
    let rt = runtime();
    let es = rt.block_on(EsPeer::start(None));
    // Unavailable at first, then slow (20 ms a request): shipping takes
    // seconds, so the crashes land mid-stream.
    es.with(|s| {
        for _ in 0..5 {
            s.faults
                .push_back(peers::elasticsearch_peer::Fault::Status(503, None));
        }
        for _ in 0..1000 {
            s.faults
                .push_back(peers::elasticsearch_peer::Fault::SlowAfterIndexing(
                    Duration::from_millis(20),
                ));
        }
    });
    let base = tempfile::tempdir().unwrap();
    write_audit_log(base.path(), "crash", N);
    let config = crate::durability::config_with(base.path(), &es, "memory", "");
    let mut crashes = 0;
    let mut arrived_before = 0;
    for round in 0..4 {
        let mut lumen = Lumen::start_in(tempfile::tempdir_in(base.path()).unwrap(), &config);
        // Let it make progress, then kill it mid-stream.
        let target = arrived_before + 200 + round * 100;
        let start = Instant::now();
        while es.with(|s| s.docs.len()) < target.min(N) && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        // A checkpoint save or two after that progress.
        std::thread::sleep(Duration::from_millis(250));
        arrived_before = es.with(|s| s.docs.len());
        if arrived_before >= N {
            let _ = lumen.stop();
            break;
        }
        lumen.signal(libc::SIGKILL);
        let _ = lumen.wait_exit(Duration::from_secs(10));
        crashes += 1;
    }
    // The last run goes to the end.
    let mut lumen = Lumen::start_in(tempfile::tempdir_in(base.path()).unwrap(), &config);
    lumen.wait_for_log("k8s_audit_file: ", Duration::from_secs(30));
    let start = Instant::now();
    while es.arrivals().len() < N && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let arrivals = es.arrivals();
    for i in 0..N {
        assert!(
            arrivals.contains_key(&format!("crash-{i:04}")),
            "crash-{i:04} lost after {crashes} crashes"
        );
    }
    let repeats: usize = arrivals.values().map(|n| n - 1).sum();
    assert!(crashes >= 2, "the test crashed lumen {crashes} times");
    // Without checkpoints every crash would repeat everything delivered
    // before it (at least 200, 500, 900 … events); with them, at most what
    // was acknowledged since the last save (100 ms) and what was in flight.
    assert!(
        repeats < N / 2,
        "{repeats} repeats over {crashes} crashes: checkpoints are not holding"
    );
    eprintln!("{crashes} crashes, {repeats} repeated events of {N}");
}
