//! `[api]` through the binary: `/health`, `/ready` and `/metrics` (parsed
//! as the OpenMetrics text format, its counters following the events).

use crate::support::{
    append_audit, free_port, http_client, scrape_text, try_scrape_text, wait_for_events, Lumen,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A scrape: each sample (name and sorted labels) to its value; panics on
/// any line the OpenMetrics text format does not allow.
fn parse_openmetrics(text: &str) -> BTreeMap<String, f64> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF:\n{text}");
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(name_ok(name), "bad family name in {line:?}");
            match kind {
                "TYPE" => {
                    let t = parts.next().unwrap_or("");
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "info",
                            "histogram",
                            "summary",
                            "unknown",
                            "stateset",
                            "gaugehistogram"
                        ]
                        .contains(&t),
                        "bad type in {line:?}"
                    );
                    families.insert(name.to_owned(), t.to_owned());
                }
                "HELP" | "UNIT" => {}
                _ => panic!("bad comment line {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (
                n,
                l.strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}")),
            ),
            None => (series, ""),
        };
        assert!(name_ok(name), "bad sample name in {line:?}");
        let family = families
            .iter()
            .find(|(f, t)| {
                name == f.as_str()
                    || (t.as_str() == "counter" && name == format!("{f}_total"))
                    || (t.as_str() == "histogram"
                        && ["_sum", "_count", "_bucket"]
                            .iter()
                            .any(|x| name == format!("{f}{x}")))
            })
            .unwrap_or_else(|| panic!("sample {name} of no declared family"));
        let _ = family;
        let mut pairs: Vec<(String, String)> = Vec::new();
        if !labels.is_empty() {
            for pair in labels.split("\",") {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad label in {line:?}"));
                assert!(name_ok(k), "bad label name in {line:?}");
                pairs.push((k.to_owned(), v.trim_end_matches('"').to_owned()));
            }
        }
        pairs.sort();
        let key = format!(
            "{name}{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(
            samples.insert(key, value).is_none(),
            "duplicate sample {line:?}"
        );
    }
    samples
}

/// A series as [`parse_openmetrics`] keys it (labels sorted by name).
fn series(name: &str, labels: &str) -> String {
    format!("{name}{{{labels}}}")
}

fn assert_samples(m: &BTreeMap<String, f64>, want: &[(String, f64)]) {
    for (series, value) in want {
        assert_eq!(m.get(series), Some(value), "{series} in {m:#?}");
    }
}

#[test]
fn health_ready_and_metrics_that_follow_the_events() {
    let port = free_port();
    let mut lumen = Lumen::start(&format!(
        "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n\
         [sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{{dir}}/audit.log\"\n\
         [transforms.gdpr]\ntype = \"redact\"\ninputs = [\"audit\"]\nhmac_key = \"k\"\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"gdpr\"]\npath = \"{{dir}}/out.ndjson\"\nschema = \"ecs\"\n"
    ));
    let log = lumen.path("audit.log");
    let append = |ids: std::ops::Range<usize>| append_audit(&log, ids.map(|i| format!("api-{i}")));
    append(0..5);
    let http = http_client();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let get = |p: &str| -> Option<(u16, String)> {
        let r = http.get(url(p)).send().ok()?;
        Some((r.status().as_u16(), r.text().unwrap_or_default()))
    };
    // Ready once the pipeline runs.
    let start = Instant::now();
    while get("/ready").map(|r| r.0) != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never ready: {:?}",
            lumen.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get("/health").unwrap().0, 200);
    wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 5
    });
    let scrape = |want: f64| -> BTreeMap<String, f64> {
        let start = Instant::now();
        loop {
            let r = http.get(url("/metrics")).send().unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
            let m = parse_openmetrics(&r.text().unwrap());
            let sent = m.get("lumen_component_sent_events_total{component_id=out,component_kind=sink,component_type=file}");
            if sent == Some(&want) || start.elapsed() > Duration::from_secs(20) {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let m = scrape(5.0);
    let source = "component_id=audit,component_kind=source,component_type=k8s_audit_file";
    let sink = "component_id=out,component_kind=sink,component_type=file";
    // Bytes: the lines read (without their newlines), the documents written.
    let read: usize = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::len)
        .sum();
    let written = std::fs::metadata(lumen.path("out.ndjson")).unwrap().len();
    assert_samples(
        &m,
        &[
            (series("lumen_component_sent_events_total", source), 5.0),
            (series("lumen_component_received_events_total", sink), 5.0),
            (series("lumen_component_sent_events_total", sink), 5.0),
            (series("lumen_component_errors_total", sink), 0.0),
            (
                series("lumen_component_received_bytes_total", source),
                read as f64,
            ),
            (
                series("lumen_component_sent_bytes_total", sink),
                written as f64,
            ),
            (series("lumen_buffer_events", "component_id=out"), 0.0),
            (
                series(
                    "lumen_build_info",
                    &format!("version={}", env!("CARGO_PKG_VERSION")),
                ),
                1.0,
            ),
            (series("lumen_ready", "instance=lumen"), 1.0),
            // Every event had its user name hashed.
            (
                series("lumen_redacted_events_total", "component_id=gdpr"),
                5.0,
            ),
            (
                series(
                    "lumen_redactions_total",
                    "component_id=gdpr,rule=hash:user.name",
                ),
                5.0,
            ),
        ],
    );
    // The counters move with the events.
    append(5..8);
    let m = scrape(8.0);
    assert_samples(
        &m,
        &[
            (series("lumen_component_sent_events_total", source), 8.0),
            (series("lumen_component_sent_events_total", sink), 8.0),
        ],
    );
    // Only GET, only the three paths.
    assert_eq!(
        http.post(url("/metrics")).send().unwrap().status().as_u16(),
        405
    );
    assert_eq!(get("/nope").unwrap().0, 404);
    let (status, _) = lumen.stop();
    assert!(status.success());
}

#[test]
fn an_api_address_in_use_stops_lumen_with_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut lumen = Lumen::start(&format!(
        "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n\
         [sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{{dir}}/audit.log\"\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"audit\"]\npath = \"{{dir}}/out.ndjson\"\n"
    ));
    let (status, log) = lumen.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    let text = log.join("\n");
    assert!(
        text.contains(&format!("[api]: cannot listen on 127.0.0.1:{port}")),
        "{text}"
    );
}

/// `/ready` follows the sinks: 503 while Elasticsearch answers nothing but
/// 503s, 200 again once it delivers; `lumen_component_healthy` says which.
#[test]
fn ready_flips_while_a_sink_is_down_and_back_when_it_recovers() {
    use crate::network_sinks::peers::elasticsearch_peer::{EsPeer, Fault};
    let rt = crate::network_sinks::runtime();
    let es = rt.block_on(EsPeer::start(None));
    let port = free_port();
    let mut lumen = Lumen::start(&format!(
        "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n\
         [sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{{dir}}/audit.log\"\npoll_interval_ms = 50\n\
         [sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"audit\"]\nendpoints = [\"{}\"]\n\
         healthcheck = false\ninstall_templates = false\nbatch.timeout_secs = 0.05\n\
         request.retry_initial_backoff_secs = 0.05\nrequest.retry_max_duration_secs = 0.2\n",
        es.url()
    ));
    let log = lumen.path("audit.log");
    let append = |id: &str| append_audit(&log, [id]);
    let http = http_client();
    let ready = || {
        http.get(format!("http://127.0.0.1:{port}/ready"))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let wait_ready = |want: u16| {
        let start = Instant::now();
        while ready() != want {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "/ready never answered {want}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let healthy = || -> Option<f64> {
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        parse_openmetrics(&text)
            .get("lumen_component_healthy{component_id=es,component_kind=sink,component_type=elasticsearch}")
            .copied()
    };
    let wait_arrived = |id: &str| {
        let start = Instant::now();
        while !es.arrivals().contains_key(id) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{id} never arrived"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Delivered before the outage (not read together with down-1 and sent
    // in its request, as a loaded machine can).
    append("up-1");
    wait_arrived("up-1");
    wait_ready(200);
    // Elasticsearch down: every bulk request answered 503.
    es.with(|s| {
        s.faults.clear();
        s.faults
            .extend(std::iter::repeat_n(Fault::Status(503, None), 1_000_000));
    });
    append("down-1");
    wait_ready(503);
    assert_eq!(healthy(), Some(0.0));
    // Back: the held event goes through and the pipeline is ready again.
    es.with(|s| s.faults.clear());
    wait_ready(200);
    assert_eq!(healthy(), Some(1.0));
    wait_arrived("down-1");
    // The delivery counters and the request-latency histogram saw the outage.
    let m = parse_openmetrics(&scrape_text(port));
    let requests = m["lumen_sink_requests_total{component_id=es}"];
    assert!(requests >= 3.0, "{m:#?}");
    assert!(m["lumen_sink_retried_events_total{component_id=es}"] >= 1.0);
    // Every request is timed once it is answered (one may be in flight).
    let timed = m["lumen_sink_request_duration_seconds_count{component_id=es}"];
    assert!(
        timed <= requests && timed >= requests - 1.0,
        "{timed} of {requests}"
    );
    assert_eq!(
        m["lumen_sink_request_duration_seconds_bucket{component_id=es,le=+Inf}"],
        timed
    );
    assert!(m["lumen_sink_request_duration_seconds_sum{component_id=es}"] > 0.0);
    let (status, _) = lumen.stop();
    assert!(status.success());
}

/// A buffer's fill and the age of its head while the sink's receiver is
/// down: events wait, the age grows; both go back to 0 once it recovers.
#[test]
fn buffer_events_and_head_age_follow_a_stalled_sink() {
    use crate::network_sinks::peers::elasticsearch_peer::{EsPeer, Fault};
    let rt = crate::network_sinks::runtime();
    let es = rt.block_on(EsPeer::start(None));
    es.with(|s| {
        s.faults
            .extend(std::iter::repeat_n(Fault::Status(503, None), 1_000_000));
    });
    let port = free_port();
    let lumen = Lumen::start(&format!(
        "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n\
         [sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{{dir}}/audit.log\"\npoll_interval_ms = 20\n\
         [sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"audit\"]\nendpoints = [\"{}\"]\n\
         healthcheck = false\ninstall_templates = false\nbatch.max_events = 1\nbatch.timeout_secs = 0.05\n\
         request.concurrency = 1\nrequest.retry_initial_backoff_secs = 0.05\nrequest.retry_max_duration_secs = 0.1\n",
        es.url()
    ));
    append_audit(
        &lumen.path("audit.log"),
        (0..5).map(|i| format!("held-{i}")),
    );
    // Empty until the API listens (a loaded machine starts it later than
    // the audit lines are appended).
    let scrape = || {
        try_scrape_text(port)
            .map(|text| parse_openmetrics(&text))
            .unwrap_or_default()
    };
    let events = "lumen_buffer_events{component_id=es}";
    let age = "lumen_buffer_oldest_event_age_seconds{component_id=es}";
    // One event in flight (retried), the next batch taken by the sink and
    // waiting for a free request slot, three waiting in the buffer.
    let start = Instant::now();
    let mut m = scrape();
    while m.get(events) != Some(&3.0) {
        assert!(start.elapsed() < Duration::from_secs(20), "{m:#?}");
        std::thread::sleep(Duration::from_millis(50));
        m = scrape();
    }
    let first = m[age];
    std::thread::sleep(Duration::from_millis(600));
    let later = scrape()[age];
    assert!(first > 0.0 && later >= first + 0.5, "{first} then {later}");
    // Back: everything delivered, the buffer empty, its age 0.
    es.with(|s| s.faults.clear());
    let start = Instant::now();
    while es.arrivals().len() < 5 || scrape().get(events) != Some(&0.0) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            es.arrivals()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(scrape()[age], 0.0);
}
