//! A receiver that is down, busy or unavailable when Lumen starts does not
//! stop Lumen: a file sink beside the network sink gets every event at
//! once, `/ready` answers 503 naming the sink, and the network sink
//! delivers every event once its receiver comes up (and `/ready` flips).
//! With `--require-healthy` (or `healthcheck.require = true`) Lumen exits 2
//! naming the sink. For each network sink: elasticsearch (503, and a
//! refused connection), splunk_hec (503 code 9), otlp (gRPC UNAVAILABLE)
//! and kafka (its broker down).

use crate::network_sinks::peers::elasticsearch_peer::EsPeer;
use crate::network_sinks::peers::otlp_peer::OtlpPeer;
use crate::network_sinks::peers::splunk_peer::HecPeer;
use crate::network_sinks::{runtime, write_audit_log};
use crate::support::{free_port, http_client, read_ndjson, scrape_text, Lumen};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

const N: usize = 40;

/// A receiver, unavailable until `come_up`.
struct Receiver {
    /// The `[sinks.net]` table's keys after `type` and `inputs`.
    sink: String,
    kind: &'static str,
    come_up: Box<dyn Fn()>,
    /// How many times each auditID arrived.
    arrivals: Box<dyn Fn() -> BTreeMap<String, usize>>,
    /// Peers and their runtime, alive as long as the receiver.
    _keep: Box<dyn std::any::Any>,
}

const FAST: &str = "batch.timeout_secs = 0.05\nrequest.retry_initial_backoff_secs = 0.05\nrequest.retry_max_duration_secs = 0.5\n";

fn elasticsearch_busy() -> Receiver {
    let rt = runtime();
    let es = rt.block_on(EsPeer::start(None));
    es.with(|s| s.unavailable = true);
    let (up, arrivals) = (es.clone(), es.clone());
    Receiver {
        sink: format!("endpoints = [\"{}\"]\n{FAST}", es.url()),
        kind: "elasticsearch",
        come_up: Box::new(move || up.with(|s| s.unavailable = false)),
        arrivals: Box::new(move || arrivals.arrivals()),
        _keep: Box::new(rt),
    }
}

/// Nothing listens on its port until it comes up.
fn elasticsearch_down() -> Receiver {
    let rt = runtime();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let peer = std::rc::Rc::new(std::cell::RefCell::new(None::<EsPeer>));
    let handle = rt.handle().clone();
    let (up, arrivals) = (peer.clone(), peer.clone());
    Receiver {
        sink: format!("endpoints = [\"http://{addr}\"]\n{FAST}"),
        kind: "elasticsearch",
        come_up: Box::new(move || {
            *up.borrow_mut() = Some(handle.block_on(EsPeer::start_at(addr)));
        }),
        arrivals: Box::new(move || {
            arrivals
                .borrow()
                .as_ref()
                .map(EsPeer::arrivals)
                .unwrap_or_default()
        }),
        _keep: Box::new((rt, peer)),
    }
}

fn splunk_busy() -> Receiver {
    let rt = runtime();
    let hec = rt.block_on(HecPeer::start("health-token", true));
    hec.with(|s| s.busy = true);
    let (up, arrivals) = (hec.clone(), hec.clone());
    Receiver {
        sink: format!(
            "endpoint = \"{}\"\ndefault_token = \"health-token\"\nacknowledgements.query_interval = 0.05\n{FAST}",
            hec.url()
        ),
        kind: "splunk_hec",
        come_up: Box::new(move || up.with(|s| s.busy = false)),
        arrivals: Box::new(move || arrivals.arrivals()),
        _keep: Box::new(rt),
    }
}

fn otlp_unavailable() -> Receiver {
    let rt = runtime();
    let otlp = rt.block_on(OtlpPeer::start(true));
    otlp.with(|s| s.unavailable = true);
    let (up, arrivals) = (otlp.clone(), otlp.clone());
    Receiver {
        sink: format!("endpoint = \"{}\"\n{FAST}", otlp.url()),
        kind: "otlp",
        come_up: Box::new(move || up.with(|s| s.unavailable = false)),
        arrivals: Box::new(move || arrivals.arrivals()),
        _keep: Box::new(rt),
    }
}

fn kafka_broker_down() -> Receiver {
    let cluster = MockCluster::new(1).unwrap();
    let servers = cluster.bootstrap_servers();
    cluster.create_topic("lumen-audit", 1, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let cluster = std::rc::Rc::new(cluster);
    let up = cluster.clone();
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("group.id", "lumen-health")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["lumen-audit"]).unwrap();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(BTreeMap::<String, usize>::new()));
    let counted = seen.clone();
    Receiver {
        sink: format!(
            "bootstrap_servers = \"{servers}\"\ntopic = \"lumen-audit\"\nrequest.timeout_secs = 3\n{FAST}"
        ),
        kind: "kafka",
        come_up: Box::new(move || up.broker_up(1).unwrap()),
        arrivals: Box::new(move || {
            while let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let doc: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
                *counted.borrow_mut().entry(audit_id(&doc)).or_default() += 1;
            }
            counted.borrow().clone()
        }),
        _keep: Box::new((cluster, seen)),
    }
}

/// The auditID of an ECS or OCSF document.
fn audit_id(doc: &serde_json::Value) -> String {
    doc["kubernetes"]["audit"]["auditID"]
        .as_str()
        .or(doc["metadata"]["uid"].as_str())
        .unwrap_or("?")
        .to_owned()
}

/// `[api]` on `api_port` and the audit source over `{dir}/logs/*.log`.
fn audit_source(api_port: u16) -> String {
    format!(
        r#"
data_dir = "{{dir}}/data"
[api]
address = "127.0.0.1:{api_port}"

[sources.audit]
type = "k8s_audit_file"
path = "{{dir}}/logs/*.log"
poll_interval_ms = 50
"#
    )
}

/// The file sink beside the network sink.
const LOCAL: &str = r#"
[sinks.local]
type = "file"
inputs = ["audit"]
path = "{dir}/local.ndjson"
"#;

/// The transform made to panic (`LUMEN_TEST_PANIC_IN=boom`) and its sink.
const BOOM: &str = r#"
[transforms.boom]
type = "filter"
inputs = ["audit"]

[sinks.after_boom]
type = "file"
inputs = ["boom"]
path = "{dir}/after.ndjson"
"#;

fn config(r: &Receiver, api_port: u16) -> String {
    format!(
        "{}{LOCAL}\n[sinks.net]\ntype = \"{}\"\ninputs = [\"audit\"]\n{}",
        audit_source(api_port),
        r.kind,
        r.sink
    )
}

/// `/ready`'s status and body.
fn ready(port: u16) -> (u16, String) {
    match http_client()
        .get(format!("http://127.0.0.1:{port}/ready"))
        .send()
    {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

fn receiver_down_at_start(r: Receiver, log_needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_audit_log(dir.path(), "health", N);
    let port = free_port();
    let mut lumen = Lumen::start_in(dir, &config(&r, port));
    lumen.wait_for_log(log_needle, Duration::from_secs(30));
    // The file sink beside it gets every event at once.
    let local = lumen.path("local.ndjson");
    let start = Instant::now();
    while read_ndjson(&local).len() < N {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the file sink got {} of {N} events while `net` waited:\n{}",
            read_ndjson(&local).len(),
            lumen.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Not ready, and why; nothing delivered yet.
    let (status, body) = ready(port);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("sink `net`: receiver unavailable"),
        "/ready: {body}"
    );
    let healthy = format!(
        "lumen_component_healthy{{component_id=\"net\",component_kind=\"sink\",component_type=\"{}\"}} 0",
        r.kind
    );
    let metrics = scrape_text(port);
    assert!(metrics.contains(&healthy), "{metrics}");
    assert!((r.arrivals)().is_empty());
    (r.come_up)();
    let start = Instant::now();
    while (r.arrivals)().len() < N {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "{} of {N} events arrived after the receiver came up:\n{}",
            (r.arrivals)().len(),
            lumen.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = Instant::now();
    while ready(port).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/ready stayed {:?}",
            ready(port)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let arrivals = (r.arrivals)();
    for i in 0..N {
        assert_eq!(
            arrivals.get(&format!("health-{i:04}")),
            Some(&1),
            "health-{i:04}: {arrivals:?}"
        );
    }
    // Both sinks acknowledged every event to the source.
    let summary = log
        .iter()
        .find(|l| l.contains("acknowledged="))
        .unwrap_or_else(|| panic!("no source summary:\n{}", log.join("\n")));
    assert!(summary.contains(&format!("acknowledged={N}")), "{summary}");
    assert!(
        log.iter().any(|l| l.contains("sink's receiver answers")),
        "{}",
        log.join("\n")
    );
}

const UNAVAILABLE: &str = "sink's receiver is unavailable";

#[test]
fn elasticsearch_busy_at_start() {
    receiver_down_at_start(elasticsearch_busy(), UNAVAILABLE);
}

#[test]
fn elasticsearch_not_listening_at_start() {
    receiver_down_at_start(elasticsearch_down(), UNAVAILABLE);
}

#[test]
fn splunk_hec_busy_at_start() {
    receiver_down_at_start(splunk_busy(), UNAVAILABLE);
}

#[test]
fn otlp_unavailable_at_start() {
    receiver_down_at_start(otlp_unavailable(), UNAVAILABLE);
}

#[test]
fn kafka_broker_down_at_start() {
    receiver_down_at_start(kafka_broker_down(), UNAVAILABLE);
}

/// `--require-healthy` and `healthcheck.require = true` keep the fail-fast
/// start: exit 2, naming the sink and the reason.
#[test]
fn a_required_healthcheck_that_fails_exits_2_naming_the_sink() {
    for (r, by_flag) in [
        (elasticsearch_busy(), true),
        (splunk_busy(), false),
        (otlp_unavailable(), true),
        (kafka_broker_down(), false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_audit_log(dir.path(), "req", 3);
        let mut config = config(&r, free_port());
        let args: &[&str] = if by_flag {
            &["--require-healthy"]
        } else {
            config.push_str("healthcheck.require = true\n");
            &[]
        };
        let mut lumen = Lumen::start_with_args(dir, &config, Stdio::null(), args, &[]);
        let (status, log) = lumen.wait_exit(Duration::from_secs(30));
        let log = log.join("\n");
        assert_eq!(status.code(), Some(2), "{}: {log}", r.kind);
        assert!(
            log.contains(&format!(
                "sink `net` ({}) failed its required healthcheck: receiver unavailable",
                r.kind
            )),
            "{log}"
        );
        // Nothing was read: the file sink got nothing.
        assert!(read_ndjson(&lumen.path("local.ndjson")).is_empty());
    }
}

/// A receiver that refuses the sink's credentials is "misconfigured": an
/// error with the fix, `/ready` says so; Lumen still runs and the other
/// sink gets everything.
#[test]
fn refused_credentials_are_misconfigured_with_the_fix_and_lumen_runs_on() {
    let rt = runtime();
    let otlp = rt.block_on(OtlpPeer::start(true));
    otlp.with(|s| s.required = Some(("authorization".into(), "Bearer right".into())));
    let r = Receiver {
        sink: format!(
            "endpoint = \"{}\"\nheaders.authorization = \"Bearer wr0ng\"\n{FAST}",
            otlp.url()
        ),
        kind: "otlp",
        come_up: Box::new(|| {}),
        arrivals: Box::new(BTreeMap::new),
        _keep: Box::new(()),
    };
    let dir = tempfile::tempdir().unwrap();
    write_audit_log(dir.path(), "cred", 5);
    let port = free_port();
    let mut lumen = Lumen::start_in(dir, &config(&r, port));
    lumen.wait_for_log("sink is misconfigured", Duration::from_secs(30));
    let local = lumen.path("local.ndjson");
    let start = Instant::now();
    while read_ndjson(&local).len() < 5 {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = ready(port);
    assert_eq!(status, 503);
    assert!(
        body.contains("sink `net`: misconfigured")
            && body.contains("fix: check the sink's credentials"),
        "{body}"
    );
    let line = lumen
        .log()
        .into_iter()
        .find(|l| l.contains("sink is misconfigured"))
        .unwrap();
    assert!(line.contains("ERROR") && line.contains("fix="), "{line}");
    assert!(!lumen.log().iter().any(|l| l.contains("wr0ng")));
    // The receiver accepts the credentials later: the events go.
    otlp.with(|s| s.required = None);
    let start = Instant::now();
    while otlp.arrivals().len() < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            lumen.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
}

/// A component whose task panics is reported: the panic and the component
/// are logged, `/ready` says it failed, the rest drains (the other file
/// sink has every event) and Lumen exits 3 for its supervisor to restart it.
/// The panic is injected into the transform `boom` (debug builds only).
#[test]
fn a_component_that_panics_is_reported_and_lumen_stops_after_draining() {
    let dir = tempfile::tempdir().unwrap();
    write_audit_log(dir.path(), "boom", N);
    let port = free_port();
    let config = format!("{}{LOCAL}{BOOM}", audit_source(port));
    let mut lumen = Lumen::start_with_args(
        dir,
        &config,
        Stdio::null(),
        &[],
        &[("LUMEN_TEST_PANIC_IN", "boom")],
    );
    let (status, log) = lumen.wait_exit(Duration::from_secs(60));
    let text = log.join("\n");
    assert_eq!(status.code(), Some(3), "{text}");
    let failed = log
        .iter()
        .find(|l| l.contains("component failed (panicked)"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        failed.contains("component=boom")
            && failed.contains("injected by LUMEN_TEST_PANIC_IN")
            && failed.contains("ERROR"),
        "{failed}"
    );
    assert!(text.contains("failed=[\"boom\"]"), "{text}");
    // What the rest could deliver was drained: every event the source read
    // before the stop reached the other sink, each once.
    let local = read_ndjson(&lumen.path("local.ndjson"));
    let mut ids: Vec<String> = local.iter().map(audit_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), local.len(), "an event twice");
    assert!(!local.is_empty(), "{text}");
    // The events the dead transform held were not acknowledged: the
    // checkpoint did not pass them, so a restart reads them again.
    assert!(read_ndjson(&lumen.path("after.ndjson")).is_empty());
}

/// While a component has failed and the rest drains, `/ready` answers 503
/// naming it (seen through a sink whose receiver holds the drain up).
#[test]
fn ready_names_the_failed_component_while_the_rest_drains() {
    let rt = runtime();
    let es = rt.block_on(EsPeer::start(None));
    // Bulk requests fail for a while: the drain waits on them.
    es.with(|s| {
        s.faults.extend(std::iter::repeat_n(
            crate::network_sinks::peers::elasticsearch_peer::Fault::Status(503, None),
            30,
        ))
    });
    let dir = tempfile::tempdir().unwrap();
    write_audit_log(dir.path(), "drain", 5);
    let port = free_port();
    let config = format!(
        "{}{BOOM}\n[sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"audit\"]\nendpoints = [\"{}\"]\n\
         batch.timeout_secs = 0.05\nrequest.retry_initial_backoff_secs = 0.1\nrequest.retry_max_duration_secs = 0.1\n",
        audit_source(port),
        es.url()
    );
    let mut lumen = Lumen::start_with_args(
        dir,
        &config,
        Stdio::null(),
        &[],
        &[("LUMEN_TEST_PANIC_IN", "boom")],
    );
    lumen.wait_for_log("component failed (panicked)", Duration::from_secs(30));
    let (status, body) = ready(port);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("transform `boom`: panicked: injected by LUMEN_TEST_PANIC_IN"),
        "{body}"
    );
    let (status, log) = lumen.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(3), "{}", log.join("\n"));
    // The drain delivered what the source had read to Elasticsearch
    // (through its 503s), each event once.
    let arrivals = es.arrivals();
    assert!(!arrivals.is_empty(), "{}", log.join("\n"));
    assert!(arrivals.values().all(|n| *n == 1), "{arrivals:?}");
}

/// What a waiting sink does to its siblings. Behind a memory buffer of 10
/// events, once that buffer is full the source is held back and the file
/// sink beside it stops receiving too (nothing is lost: all arrive once the
/// receiver is back); behind a disk buffer the file sink gets everything
/// while the receiver is down.
#[test]
fn a_waiting_sink_holds_its_siblings_back_only_as_far_as_its_buffer_is_full() {
    const MANY: usize = 300;
    for disk in [false, true] {
        let r = elasticsearch_busy();
        let dir = tempfile::tempdir().unwrap();
        write_audit_log(dir.path(), "sib", MANY);
        let port = free_port();
        let buffer = if disk {
            "[sinks.net.buffer]\ntype = \"disk\"\n"
        } else {
            "[sinks.net.buffer]\ntype = \"memory\"\nmax_events = 10\n"
        };
        let mut lumen = Lumen::start_in(dir, &format!("{}{buffer}", config(&r, port)));
        lumen.wait_for_log(UNAVAILABLE, Duration::from_secs(30));
        let local = lumen.path("local.ndjson");
        let settled = |want: usize| {
            let start = Instant::now();
            let mut last = (usize::MAX, Instant::now());
            loop {
                let n = read_ndjson(&local).len();
                if n != last.0 {
                    last = (n, Instant::now());
                }
                // Unchanged for a second, or everything there.
                if n == want || last.1.elapsed() > Duration::from_secs(1) {
                    return n;
                }
                assert!(start.elapsed() < Duration::from_secs(30));
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let held = settled(MANY);
        if disk {
            assert_eq!(held, MANY, "the disk buffer did not keep the sinks apart");
        } else {
            assert!(
                held < MANY / 2,
                "the file sink got {held} of {MANY} while `net` waited behind a memory buffer of 10"
            );
        }
        (r.come_up)();
        let start = Instant::now();
        while (r.arrivals)().len() < MANY || read_ndjson(&local).len() < MANY {
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "disk={disk}: {} and {} of {MANY}\n{}",
                (r.arrivals)().len(),
                read_ndjson(&local).len(),
                lumen.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, log) = lumen.stop();
        assert!(status.success(), "{}", log.join("\n"));
        assert!((r.arrivals)().values().all(|n| *n == 1));
        assert_eq!(read_ndjson(&local).len(), MANY);
    }
}
