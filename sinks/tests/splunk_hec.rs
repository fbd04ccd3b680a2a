//! The splunk_hec sink against a protocol peer that answers with HEC's
//! documented codes and indexer acknowledgement. Every test checks: every
//! accepted event is indexed, once unless an ambiguous failure came first
//! (then counted), dead letters hold exactly the rejected events, events
//! are acknowledged upstream only once Splunk reports them indexed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use lumen_sinks::ack::Status;
use lumen_sinks::deliver::DeliveryMetrics;
use lumen_sinks::health::Unhealthy;
use lumen_sinks::splunk_hec::{SplunkHecConfig, SplunkHecSink};
use lumen_sinks::ComponentMetrics;
use std::sync::Arc;
use support::splunk_peer::{Fault, HecPeer};
use support::{acks, deliver, tracked_events, Run};

const TOKEN: &str = "11111111-2222-3333-4444-555555555555";

fn config(peer: &HecPeer, extra: &str) -> SplunkHecConfig {
    let text = format!(
        "inputs = [\"x\"]\nendpoint = \"{}\"\ndefault_token = \"{TOKEN}\"\n{extra}\n[request]\nretry_initial_backoff_secs = 0.01\nretry_max_duration_secs = 0.2\ntimeout_secs = 2\n[batch]\nmax_events = 25\ntimeout_secs = 0.05\n",
        peer.url()
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const FAST_ACKS: &str = "[acknowledgements]\nquery_interval = 0.02\nretry_limit = 10\n";

async fn run(cfg: SplunkHecConfig, prefix: &str, n: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(cfg, &dir);
    sink.start().await.unwrap();
    let delivery = sink.delivery_metrics();
    let statuses = deliver(|rx| sink.run(rx), prefix, n).await;
    Run {
        statuses,
        delivery,
        dir,
    }
}

fn sink(cfg: SplunkHecConfig, dir: &tempfile::TempDir) -> SplunkHecSink {
    SplunkHecSink::new(
        "hec",
        cfg,
        dir.path(),
        Arc::new(ComponentMetrics::default()),
    )
    .unwrap()
}

fn indexed_once(peer: &HecPeer, prefix: &str, ids: impl Iterator<Item = usize>) {
    let arrivals = peer.arrivals();
    for i in ids {
        let id = format!("{prefix}-{i}");
        assert_eq!(arrivals.get(&id), Some(&1), "{id} indexed");
    }
}

#[tokio::test]
async fn envelopes_are_indexed_and_acknowledged_only_once_splunk_reports_them_indexed() {
    let peer = HecPeer::start(TOKEN, true).await;
    peer.with(|s| s.ack_delay = 2);
    let r = run(
        config(&peer, &format!("index = \"security\"\n{FAST_ACKS}")),
        "ev",
        60,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 60);
    indexed_once(&peer, "ev", 0..60);
    peer.with(|s| {
        // Every request's ack was asked for until it came true (each must
        // be asked about three times), several in one query.
        assert!(s.pending.is_empty());
        let asked: usize = s.ack_query_sizes.iter().sum();
        assert_eq!(asked as u64, 3 * s.next_ack, "ackIds asked about");
        assert_eq!(s.channels.len(), 1);
        let e = &s.envelopes[0];
        assert_eq!(e["sourcetype"], "ocsf:api_activity");
        assert_eq!(e["source"], "lumen");
        assert_eq!(e["index"], "security");
        assert_eq!(e["host"], "node-1");
        assert_eq!(e["fields"]["lumen_schema"], "ocsf");
        assert_eq!(e["event"]["class_uid"], 6003);
        // The sample event's stageTimestamp is 2018-10-26T13:38:34.902914Z.
        assert_eq!(e["time"].as_f64(), Some(1540561114.902));
    });
}

/// Feeds `n` tracked events and checks, as each upstream acknowledgement
/// comes in, that Splunk has already reported its event indexed.
async fn every_ack_after_its_index(sink: SplunkHecSink, peer: &HecPeer, prefix: &str, n: usize) {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let task = tokio::spawn(sink.run(rx));
    let (envs, mut ack_rx) = tracked_events(prefix, n);
    for env in envs {
        tx.send(env).await.unwrap();
    }
    drop(tx);
    for _ in 0..n {
        let acked = tokio::time::timeout(std::time::Duration::from_secs(60), ack_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(acked.status, Status::Delivered);
        let id = format!("{prefix}-{}", acked.cookie);
        assert!(
            peer.arrivals().contains_key(&id),
            "{id} acknowledged before Splunk reported it indexed"
        );
    }
    task.await.unwrap();
}

#[tokio::test]
async fn a_request_frees_its_slot_while_its_ack_is_pending() {
    // One request slot, an indexer that takes 300 ms: were the slot held
    // until the ack, one request would be pending at a time.
    let peer = HecPeer::start(TOKEN, true).await;
    peer.with(|s| {
        s.index_after = Some(std::time::Duration::from_millis(300));
        // The ack endpoint is busy at first: asked again, nothing resent.
        s.ack_faults.push_back((503, 9));
    });
    let mut cfg = config(&peer, "acknowledgements.query_interval = 0.05");
    cfg.request.concurrency = 1;
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(cfg, &dir);
    let delivery = sink.delivery_metrics();
    every_ack_after_its_index(sink, &peer, "slot", 250).await;
    indexed_once(&peer, "slot", 0..250);
    peer.with(|s| {
        assert_eq!(s.requests, 10, "one request per batch of 25, none resent");
        assert!(s.max_pending >= 2, "{} pending at most", s.max_pending);
        assert!(
            s.ack_query_sizes.iter().any(|n| *n >= 2),
            "one query asks about every pending ackId: {:?}",
            s.ack_query_sizes
        );
        assert!(s.pending.is_empty());
    });
    assert_eq!(DeliveryMetrics::get(&delivery.possible_duplicates), 0);
}

#[tokio::test]
async fn max_pending_acks_holds_the_sink_back() {
    let peer = HecPeer::start(TOKEN, true).await;
    peer.with(|s| s.index_after = Some(std::time::Duration::from_millis(100)));
    let mut cfg = config(
        &peer,
        "[acknowledgements]\nquery_interval = 0.02\nmax_pending_acks = 2",
    );
    cfg.request.concurrency = 4;
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(cfg, &dir);
    // The gauge of pending acks, sampled while the sink runs.
    let delivery = sink.delivery_metrics();
    let gauge = delivery.clone();
    let sampler = tokio::spawn(async move {
        let mut most = 0;
        loop {
            most = most.max(DeliveryMetrics::get(&gauge.pending_acks));
            if most >= 2 {
                return most;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    });
    every_ack_after_its_index(sink, &peer, "bound", 250).await;
    indexed_once(&peer, "bound", 0..250);
    peer.with(|s| assert!(s.max_pending <= 2, "{} pending at once", s.max_pending));
    assert_eq!(
        sampler.await.unwrap(),
        2,
        "lumen_sink_pending_acks reached the bound"
    );
    assert_eq!(DeliveryMetrics::get(&delivery.pending_acks), 0);
}

#[tokio::test]
async fn an_ack_endpoint_that_refuses_resends_the_requests_waiting_for_it() {
    // "ACK is disabled" on the ack endpoint (the token's setting changed):
    // the requests may have been indexed, so they are resent and counted.
    let peer = HecPeer::start(TOKEN, true).await;
    peer.with(|s| s.ack_faults.push_back((400, 14)));
    let mut cfg = config(&peer, FAST_ACKS);
    cfg.request.concurrency = 1;
    let r = run(cfg, "refused", 25).await;
    assert_eq!(r.count(Status::Delivered), 25);
    peer.with(|s| assert_eq!(s.next_ack, 2, "the request, then its resend"));
    assert_eq!(DeliveryMetrics::get(&r.delivery.possible_duplicates), 25);
}

#[tokio::test]
async fn a_batch_never_reported_indexed_is_resent_and_counted() {
    let peer = HecPeer::start(TOKEN, true).await;
    peer.with(|s| s.faults.push_back(Fault::NeverIndexed));
    let r = run(config(&peer, FAST_ACKS), "lost", 50).await;
    assert_eq!(r.count(Status::Delivered), 50);
    // The lost batch was indexed once, by the resend.
    indexed_once(&peer, "lost", 0..50);
    assert_eq!(DeliveryMetrics::get(&r.delivery.possible_duplicates), 25);
}

#[tokio::test]
async fn busy_and_internal_errors_are_retried_and_resets_count_their_duplicates() {
    let peer = HecPeer::start(TOKEN, false).await;
    peer.with(|s| {
        s.faults.push_back(Fault::Status(503, 9, Some(0)));
        s.faults.push_back(Fault::Status(503, 9, None));
        s.faults.push_back(Fault::Status(500, 8, None));
        s.faults.push_back(Fault::ResetAfterAccepting);
    });
    let r = run(config(&peer, ""), "busy", 75).await;
    assert_eq!(r.count(Status::Delivered), 75);
    let arrivals = peer.arrivals();
    for i in 0..75 {
        assert!(
            arrivals.get(&format!("busy-{i}")).is_some_and(|n| *n >= 1),
            "busy-{i} lost"
        );
    }
    let extra: usize = arrivals.values().map(|n| n - 1).sum();
    assert_eq!(extra, 25, "the reset batch was taken, then resent");
    // 500 (internal error) may also have taken events; here it did not, so
    // the count covers the reset batch and the 500 batch.
    let counted = DeliveryMetrics::get(&r.delivery.possible_duplicates) as usize;
    assert!(counted >= extra, "{counted} counted, {extra} duplicates");
    assert!(DeliveryMetrics::get(&r.delivery.retried) >= 4 * 25);
}

#[tokio::test]
async fn invalid_data_format_dead_letters_exactly_that_event() {
    let peer = HecPeer::start(TOKEN, false).await;
    peer.with(|s| s.invalid_at = Some(3));
    let r = run(config(&peer, ""), "bad", 25).await;
    assert_eq!(r.statuses[&3], Status::Rejected);
    assert_eq!(r.count(Status::Rejected), 1);
    assert_eq!(r.count(Status::Delivered), 24);
    let dl = r.dead_letters("hec");
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event"]["metadata"]["uid"], "bad-3");
    assert!(dl[0]["error"]
        .as_str()
        .unwrap()
        .contains("HEC code 6 (Invalid data format)"));
    let arrivals = peer.arrivals();
    assert_eq!(arrivals.get("bad-3"), None);
    // Events after it were not taken and went once; those before it were
    // taken with the failed request, resent, and counted.
    indexed_once(&peer, "bad", 4..25);
    let extra: usize = arrivals.values().map(|n| n - 1).sum();
    assert_eq!(extra, 3);
    assert_eq!(DeliveryMetrics::get(&r.delivery.possible_duplicates), 3);
}

#[tokio::test]
async fn a_wrong_or_disabled_token_fails_start_up_clearly_without_the_token() {
    for (peer_token, disabled, expect) in [
        ("another-token", false, "HEC code 4 (Invalid token)"),
        (TOKEN, true, "HEC code 1 (Token disabled)"),
    ] {
        let peer = HecPeer::start(peer_token, false).await;
        peer.with(|s| s.token_disabled = disabled);
        let dir = tempfile::tempdir().unwrap();
        let sink = sink(config(&peer, ""), &dir);
        let e = sink.start().await.unwrap_err();
        assert!(matches!(e, Unhealthy::Misconfigured { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("invalid or disabled token") && e.contains(expect),
            "{e}"
        );
        assert!(!e.contains(TOKEN), "{e}");
        assert!(!format!("{sink:?}").contains(TOKEN));
    }
    let peer = HecPeer::start(TOKEN, false).await;
    peer.with(|s| s.unhealthy = true);
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(config(&peer, ""), &dir);
    let e = sink.start().await.unwrap_err();
    assert!(matches!(e, Unhealthy::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("HEC code 18"), "{e}");
}

#[tokio::test]
async fn a_token_revoked_while_running_holds_events_until_it_works_again() {
    let peer = HecPeer::start(TOKEN, false).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(config(&peer, ""), &dir);
    sink.start().await.unwrap();
    let delivery = sink.delivery_metrics();
    peer.with(|s| s.token_disabled = true);
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let task = tokio::spawn(sink.run(rx));
    let (envs, mut ack_rx) = tracked_events("held", 10);
    for env in envs {
        tx.send(env).await.unwrap();
    }
    drop(tx);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(DeliveryMetrics::get(&delivery.fatal) >= 2);
    assert!(peer.arrivals().is_empty());
    assert!(
        ack_rx.try_recv().is_err(),
        "nothing acknowledged while the token is refused"
    );
    peer.with(|s| s.token_disabled = false);
    let statuses = acks(&mut ack_rx, 10).await;
    assert!(statuses.values().all(|s| *s == Status::Delivered));
    indexed_once(&peer, "held", 0..10);
    task.await.unwrap();
}

#[tokio::test]
async fn the_raw_endpoint_takes_one_document_per_line_on_the_channel() {
    let peer = HecPeer::start(TOKEN, true).await;
    let r = run(
        config(
            &peer,
            &format!("endpoint_target = \"raw\"\nschema = \"ecs\"\nsourcetype = \"lumen:ecs\"\ncompression = \"gzip\"\n{FAST_ACKS}"),
        ),
        "raw",
        30,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 30);
    indexed_once(&peer, "raw", 0..30);
    peer.with(|s| {
        let q = &s.raw_queries[0];
        assert!(
            q.contains("channel=")
                && q.contains("sourcetype=lumen%3Aecs")
                && q.contains("source=lumen"),
            "{q}"
        );
    });
}
