//! The elasticsearch sink against a protocol peer that answers as
//! Elasticsearch documents, with injected faults. Every test checks the
//! guarantees: every accepted event arrives, nothing twice unless after an
//! ambiguous failure (and then counted), dead letters hold exactly the
//! rejected events, and every event is acknowledged with its real outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use lumen_sinks::ack::Status;
use lumen_sinks::deliver::DeliveryMetrics;
use lumen_sinks::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use lumen_sinks::health::{self, Unhealthy};
use lumen_sinks::ComponentMetrics;
use std::sync::Arc;
use std::time::Duration;
use support::elasticsearch_peer::{EsPeer, Fault};
use support::{deliver, Run};

fn config(toml_text: &str) -> ElasticsearchConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"))
}

/// Fast retries for tests.
const FAST: &str = "[request]\nretry_initial_backoff_secs = 0.01\nretry_max_duration_secs = 0.2\ntimeout_secs = 2\n[batch]\nmax_events = 50\ntimeout_secs = 0.05\n";

/// Starts the sink with `cfg`, sends `n` events `prefix-<i>`, waits for
/// every acknowledgement.
async fn run(cfg: ElasticsearchConfig, prefix: &str, n: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let sink = ElasticsearchSink::new("es", cfg, dir.path(), Arc::new(ComponentMetrics::default()))
        .unwrap();
    sink.start().await.unwrap();
    let delivery = sink.delivery_metrics();
    let statuses = deliver(|rx| sink.run(rx), prefix, n).await;
    Run {
        statuses,
        delivery,
        dir,
    }
}

fn arrived_once(peer: &EsPeer, prefix: &str, ids: impl Iterator<Item = usize>) {
    let arrivals = peer.arrivals();
    for i in ids {
        let id = format!("{prefix}-{i}");
        assert_eq!(arrivals.get(&id), Some(&1), "{id} arrivals");
    }
}

#[tokio::test]
async fn every_event_lands_in_its_data_stream_with_templates_installed() {
    let peer = EsPeer::start(None).await;
    let r = run(
        config(&format!(
            "inputs = [\"x\"]\nendpoints = [\"{}\"]\n{FAST}",
            peer.url()
        )),
        "ok",
        200,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 200);
    arrived_once(&peer, "ok", 0..200);
    peer.with(|s| {
        assert!(s
            .docs
            .iter()
            .all(|(i, _)| i == "logs-lumen.k8s_audit-default"));
        // 200 events in batches of at most 50.
        assert!(s.bulk_requests >= 4, "{}", s.bulk_requests);
        assert!(s.component_templates.contains_key("lumen-ecs@mappings"));
        let t = &s.index_templates["lumen-ecs"];
        assert!(t["index_patterns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "logs-lumen.k8s_audit-*"));
        assert_eq!(t["data_stream"], serde_json::json!({}));
    });
    assert!(r.dead_letters("es").is_empty());
    assert_eq!(DeliveryMetrics::get(&r.delivery.possible_duplicates), 0);
}

#[tokio::test]
async fn partial_bulk_failures_retry_only_the_failed_items_and_dead_letter_the_rejected() {
    let peer = EsPeer::start(None).await;
    peer.with(|s| {
        s.item_429.insert("\"part-3\"".into(), 2);
        s.item_429.insert("\"part-17\"".into(), 3);
        s.reject_containing = Some("\"part-5\"".into());
    });
    let r = run(
        config(&format!(
            "inputs = [\"x\"]\nendpoints = [\"{}\"]\n{FAST}",
            peer.url()
        )),
        "part",
        40,
    )
    .await;
    // Rejected: exactly part-5, in the dead-letter file with the reason.
    assert_eq!(r.statuses[&5], Status::Rejected);
    assert_eq!(r.count(Status::Rejected), 1);
    assert_eq!(r.count(Status::Delivered), 39);
    let dl = r.dead_letters("es");
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event"]["kubernetes"]["audit"]["auditID"], "part-5");
    assert!(dl[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("400 document_parsing_exception"));
    assert_eq!(dl[0]["sink"], "es");
    // The throttled items arrived once; the others were not sent again.
    arrived_once(&peer, "part", (0..40).filter(|i| *i != 5));
    assert_eq!(peer.arrivals().get("part-5"), None);
    assert_eq!(DeliveryMetrics::get(&r.delivery.retried), 5);
    assert_eq!(DeliveryMetrics::get(&r.delivery.possible_duplicates), 0);
}

#[tokio::test]
async fn a_429_storm_and_503s_are_retried_honoring_retry_after_without_loss() {
    let peer = EsPeer::start(None).await;
    peer.with(|s| {
        for _ in 0..6 {
            s.faults.push_back(Fault::Status(429, Some(0)));
        }
        s.faults.push_back(Fault::Status(503, None));
        s.faults.push_back(Fault::Status(502, None));
    });
    let r = run(
        config(&format!(
            "inputs = [\"x\"]\nendpoints = [\"{}\"]\n{FAST}",
            peer.url()
        )),
        "storm",
        120,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 120);
    arrived_once(&peer, "storm", 0..120);
    assert!(DeliveryMetrics::get(&r.delivery.retried) > 0);
    assert_eq!(DeliveryMetrics::get(&r.delivery.possible_duplicates), 0);
}

#[tokio::test]
async fn resets_and_timeouts_after_indexing_resend_and_count_the_possible_duplicates() {
    let peer = EsPeer::start(None).await;
    peer.with(|s| {
        s.faults.push_back(Fault::ResetAfterIndexing);
        s.faults
            .push_back(Fault::SlowAfterIndexing(Duration::from_secs(5)));
    });
    let r = run(
        config(&format!(
            "inputs = [\"x\"]\nendpoints = [\"{}\"]\n{}",
            peer.url(),
            FAST.replace("timeout_secs = 2", "timeout_secs = 1")
        )),
        "amb",
        100,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 100);
    let arrivals = peer.arrivals();
    for i in 0..100 {
        assert!(
            arrivals.get(&format!("amb-{i}")).is_some_and(|n| *n >= 1),
            "amb-{i} lost"
        );
    }
    let extra: usize = arrivals.values().map(|n| n - 1).sum();
    assert!(
        extra > 0,
        "the faults indexed documents that were then resent"
    );
    // Every duplicate at the receiver was counted as a possible duplicate.
    assert_eq!(
        DeliveryMetrics::get(&r.delivery.possible_duplicates) as usize,
        extra
    );
}

#[tokio::test]
async fn gzip_bodies_and_bulk_mode_with_dated_indices() {
    let peer = EsPeer::start(None).await;
    let r = run(
        config(&format!(
            "inputs = [\"x\"]\nendpoints = [\"{}\"]\nmode = \"bulk\"\ncompression = \"gzip\"\n[bulk]\nindex = \"security-%Y.%m.%d\"\n{FAST}",
            peer.url()
        )),
        "gz",
        30,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 30);
    peer.with(|s| {
        assert!(s.gzip_requests >= 1 && s.gzip_requests == s.bulk_requests);
        // The sample event's time is 2018-10-26.
        assert!(
            s.docs.iter().all(|(i, _)| i == "security-2018.10.26"),
            "{:?}",
            s.docs[0].0
        );
        let t = &s.index_templates["lumen-ecs-bulk"];
        assert_eq!(t["index_patterns"], serde_json::json!(["security-*"]));
        assert!(t.get("data_stream").is_none());
    });
}

#[tokio::test]
async fn failover_to_the_next_endpoint_when_one_refuses_connections() {
    let peer = EsPeer::start(None).await;
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let r = run(
        config(&format!(
            "inputs = [\"x\"]\nendpoints = [\"{dead_url}\", \"{}\"]\nhealthcheck = false\n{FAST}",
            peer.url()
        )),
        "fo",
        100,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 100);
    arrived_once(&peer, "fo", 0..100);
    assert_eq!(DeliveryMetrics::get(&r.delivery.possible_duplicates), 0);
}

#[tokio::test]
async fn basic_api_key_and_bearer_credentials_are_sent() {
    for (auth, header) in [
        (
            "[auth]\nstrategy = \"basic\"\nuser = \"elastic\"\npassword = \"changeme\"\n",
            "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==",
        ),
        (
            "[auth]\nstrategy = \"api_key\"\napi_key = \"VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==\"\n",
            "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
        ),
        ("[auth]\nstrategy = \"bearer\"\ntoken = \"t0ken\"\n", "Bearer t0ken"),
    ] {
        let peer = EsPeer::start(None).await;
        peer.with(|s| s.authorization = Some(header.to_owned()));
        let r = run(
            config(&format!("inputs = [\"x\"]\nendpoints = [\"{}\"]\n{auth}{FAST}", peer.url())),
            "auth",
            5,
        )
        .await;
        assert_eq!(r.count(Status::Delivered), 5, "{auth}");
    }
}

#[tokio::test]
async fn wrong_credentials_fail_the_healthcheck_clearly_without_the_secret() {
    let peer = EsPeer::start(None).await;
    peer.with(|s| s.authorization = Some("Basic right".to_owned()));
    let dir = tempfile::tempdir().unwrap();
    let sink = ElasticsearchSink::new(
        "es",
        config(&format!(
            "inputs = [\"x\"]\nendpoints = [\"{}\"]\n[auth]\nstrategy = \"basic\"\nuser = \"elastic\"\npassword = \"s3cr3t-value\"\n",
            peer.url()
        )),
        dir.path(),
        Arc::new(ComponentMetrics::default()),
    )
    .unwrap();
    let e = sink.start().await.unwrap_err();
    assert!(
        matches!(&e, Unhealthy::Misconfigured { fix, .. } if *fix == health::FIX_CREDENTIALS),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("misconfigured") && e.contains("401 security_exception"),
        "{e}"
    );
    assert!(!e.contains("s3cr3t-value"), "{e}");
    assert!(!format!("{sink:?}").contains("s3cr3t-value"));
}

#[tokio::test]
async fn tls_with_a_custom_ca_works_and_an_unknown_ca_is_refused() {
    let ca = support::test_ca();
    let peer = EsPeer::start(Some((&ca.server_cert_pem, &ca.server_key_pem))).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let r = run(
        config(&format!(
            "inputs = [\"x\"]\nendpoints = [\"{}\"]\n[tls]\nca_file = \"{}\"\n{FAST}",
            peer.https_url(),
            ca_file.display()
        )),
        "tls",
        10,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 10);
    // Without the CA (system roots only) the certificate is not trusted.
    let sink = ElasticsearchSink::new(
        "es",
        config(&format!(
            "inputs = [\"x\"]\nendpoints = [\"{}\"]\n",
            peer.https_url()
        )),
        dir.path(),
        Arc::new(ComponentMetrics::default()),
    )
    .unwrap();
    let e = sink.start().await.unwrap_err();
    assert!(
        matches!(&e, Unhealthy::Misconfigured { fix, reason } if *fix == health::FIX_TLS && reason.to_lowercase().contains("certificate")),
        "{e:?}"
    );
}

#[tokio::test]
async fn client_certificates_are_presented_when_the_server_requires_them() {
    let ca = support::test_ca();
    let peer = EsPeer::start_with(
        Some((&ca.server_cert_pem, &ca.server_key_pem)),
        Some(&ca.ca_pem),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (ca_file, crt, key) = (
        write("ca.pem", &ca.ca_pem),
        write("client.pem", &ca.client_cert_pem),
        write("client.key", &ca.client_key_pem),
    );
    let base = format!("inputs = [\"x\"]\nendpoints = [\"{}\"]\n", peer.https_url());
    // Without a client certificate the handshake is refused.
    let sink = ElasticsearchSink::new(
        "es",
        config(&format!("{base}[tls]\nca_file = \"{ca_file}\"\n")),
        dir.path(),
        Arc::new(ComponentMetrics::default()),
    )
    .unwrap();
    let e = sink.start().await.unwrap_err();
    assert!(
        matches!(&e, Unhealthy::Misconfigured { fix, .. } if *fix == health::FIX_TLS),
        "{e:?}"
    );
    // With it, events flow.
    let r = run(
        config(&format!(
            "{base}[tls]\nca_file = \"{ca_file}\"\ncrt_file = \"{crt}\"\nkey_file = \"{key}\"\n{FAST}"
        )),
        "mtls",
        10,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 10);
    arrived_once(&peer, "mtls", 0..10);
}

#[tokio::test]
async fn ocsf_documents_go_to_a_data_stream_per_class_without_ecs_templates() {
    let peer = EsPeer::start(None).await;
    let r = run(
        config(&format!(
            "inputs = [\"x\"]\nendpoints = [\"{}\"]\nschema = \"ocsf\"\n{FAST}",
            peer.url()
        )),
        "ocsf",
        20,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 20);
    arrived_once(&peer, "ocsf", 0..20);
    peer.with(|s| {
        assert!(s
            .docs
            .iter()
            .all(|(i, d)| i == "logs-lumen.ocsf_api_activity-default" && d["class_uid"] == 6003));
        // Data streams need @timestamp; it is the OCSF `time`.
        let d = &s.docs[0].1;
        assert_eq!(d["@timestamp"], "2018-10-26T13:38:34.902914Z");
        assert_eq!(d["time"], 1540561114902u64);
        assert!(s.component_templates.is_empty() && s.index_templates.is_empty());
    });
}
