//! The otlp sink against an OTLP receiver built on the official protobuf
//! types, over gRPC and HTTP/protobuf: the OTel logs data model, retries as
//! the OTLP specification says (retryable gRPC codes, RetryInfo, HTTP 429/
//! 502/503/504 with Retry-After), partial successes logged and counted,
//! non-retryable rejections dead-lettered, credentials checked at start;
//! and resource samples as OTLP metrics (`signal = "metrics"`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use lumen_sinks::ack::Status;
use lumen_sinks::deliver::DeliveryMetrics;
use lumen_sinks::health::{self, Unhealthy};
use lumen_sinks::otlp::{OtlpConfig, OtlpSink};
use lumen_sinks::ComponentMetrics;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use support::otlp_peer::{field, Fault, OtlpPeer};
use support::{deliver, Run};

fn config(peer: &OtlpPeer, extra: &str) -> OtlpConfig {
    let text = format!(
        "inputs = [\"x\"]\nendpoint = \"{}\"\n{extra}\n[request]\nretry_initial_backoff_secs = 0.01\nretry_max_duration_secs = 0.2\ntimeout_secs = 5\n[batch]\nmax_events = 25\ntimeout_secs = 0.05\n",
        peer.url()
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn sink(cfg: OtlpConfig, dir: &tempfile::TempDir) -> OtlpSink {
    OtlpSink::new(
        "otlp",
        cfg,
        dir.path(),
        Arc::new(ComponentMetrics::default()),
    )
    .unwrap()
}

async fn run(cfg: OtlpConfig, prefix: &str, n: usize) -> (Run, u64) {
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(cfg, &dir);
    sink.start().await.unwrap();
    let delivery = sink.delivery_metrics();
    let partial = sink.partially_rejected();
    let statuses = deliver(|rx| sink.run(rx), prefix, n).await;
    (
        Run {
            statuses,
            delivery,
            dir,
        },
        partial.load(Ordering::Relaxed),
    )
}

fn arrived_once(peer: &OtlpPeer, prefix: &str, ids: impl Iterator<Item = usize>) {
    let arrivals = peer.arrivals();
    for i in ids {
        let id = format!("{prefix}-{i}");
        assert_eq!(arrivals.get(&id), Some(&1), "{id}");
    }
}

#[tokio::test]
async fn grpc_logs_follow_the_otel_data_model_with_gzip_and_headers() {
    let peer = OtlpPeer::start(true).await;
    peer.with(|s| s.required = Some(("authorization".into(), "Bearer t".into())));
    let (r, _) = run(
        config(
            &peer,
            "compression = \"gzip\"\n[headers]\nAuthorization = \"Bearer t\"\n",
        ),
        "g",
        60,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 60);
    arrived_once(&peer, "g", 0..60);
    peer.with(|s| {
        let first = s
            .requests
            .iter()
            .find(|r| !r.resource_logs.is_empty())
            .unwrap();
        let rl = &first.resource_logs[0];
        let attrs: std::collections::BTreeMap<String, String> = rl
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| {
                let v = match &kv.value.as_ref().unwrap().value {
                    Some(Value::StringValue(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect();
        assert_eq!(attrs["service.name"], "lumen");
        assert_eq!(attrs["service.version"], lumen_schemas::PRODUCT_VERSION);
        assert_eq!(attrs["host.name"], "node-1");
        let sl = &rl.scope_logs[0];
        assert_eq!(sl.scope.as_ref().unwrap().name, "lumen");
        let rec = &sl.log_records[0];
        // stageTimestamp 2018-10-26T13:38:34.902914Z
        assert_eq!(rec.time_unix_nano, 1_540_561_114_902_914_000);
        assert!(rec.observed_time_unix_nano > rec.time_unix_nano);
        assert_eq!(
            (rec.severity_number, rec.severity_text.as_str()),
            (9, "INFO")
        );
        // The body is the OCSF event as a structured map.
        let body = rec.body.as_ref().unwrap();
        assert!(matches!(body.value, Some(Value::KvlistValue(_))));
        assert_eq!(
            field(body, &["class_name"]).as_deref(),
            Some("API Activity")
        );
        assert!(rec.attributes.iter().any(|kv| kv.key == "lumen.kind"));
    });
}

#[tokio::test]
async fn grpc_retryable_codes_and_retry_info_are_honored_and_others_dead_lettered() {
    let peer = OtlpPeer::start(true).await;
    peer.with(|s| {
        s.faults
            .push_back(Fault::Grpc(tonic::Code::Unavailable, None));
        s.faults.push_back(Fault::Grpc(
            tonic::Code::ResourceExhausted,
            Some(Duration::from_millis(50)),
        ));
        s.faults.push_back(Fault::Grpc(tonic::Code::Aborted, None));
        // Not retryable: this batch is rejected.
        s.faults
            .push_back(Fault::Grpc(tonic::Code::InvalidArgument, None));
    });
    let (r, _) = run(config(&peer, "healthcheck = false"), "rt", 25).await;
    // The first three faults hit the first batch's attempts; the fourth
    // rejects it.
    assert_eq!(r.count(Status::Rejected), 25);
    let dl = r.dead_letters("otlp");
    assert_eq!(dl.len(), 25);
    assert!(
        dl[0]["error"].as_str().unwrap().contains("InvalidArgument"),
        "{}",
        dl[0]["error"]
    );
    assert_eq!(DeliveryMetrics::get(&r.delivery.retried), 3 * 25);
    // A later batch goes through.
    let (r2, _) = run(config(&peer, "healthcheck = false"), "after", 25).await;
    assert_eq!(r2.count(Status::Delivered), 25);
    arrived_once(&peer, "after", 0..25);
}

#[tokio::test]
async fn partial_success_is_counted_and_not_retried() {
    let peer = OtlpPeer::start(true).await;
    peer.with(|s| s.partial = Some((2, "2 records had no body".into())));
    let (r, partial) = run(config(&peer, ""), "p", 25).await;
    assert_eq!(r.count(Status::Delivered), 25);
    assert_eq!(partial, 2);
    assert_eq!(DeliveryMetrics::get(&r.delivery.retried), 0);
    arrived_once(&peer, "p", 0..25);
}

#[tokio::test]
async fn http_protobuf_retries_429_and_503_honoring_retry_after_and_rejects_400() {
    let peer = OtlpPeer::start(false).await;
    peer.with(|s| {
        s.required = Some(("x-api-key".into(), "k3y".into()));
        s.faults.push_back(Fault::Http(429, Some(0)));
        s.faults.push_back(Fault::Http(503, None));
    });
    let (r, _) = run(
        config(
            &peer,
            "protocol = \"http\"\nhealthcheck = false\ncompression = \"gzip\"\nbody = \"string\"\n[headers]\nx-api-key = \"k3y\"\n",
        ),
        "h",
        50,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 50);
    assert_eq!(DeliveryMetrics::get(&r.delivery.retried), 2 * 25);
    peer.with(|s| {
        assert!(s.gzip_requests >= 2);
        // body = "string": the event's JSON as a string.
        let rec = &s.requests[0].resource_logs[0].scope_logs[0].log_records[0];
        let Some(Value::StringValue(json)) = &rec.body.as_ref().unwrap().value else {
            panic!("string body expected")
        };
        assert!(json.starts_with('{') && json.contains("\"class_uid\":6003"));
    });
    peer.with(|s| s.faults.push_back(Fault::Http(400, None)));
    let (r, _) = run(
        config(
            &peer,
            "protocol = \"http\"\nhealthcheck = false\n[headers]\nx-api-key = \"k3y\"\n",
        ),
        "bad",
        5,
    )
    .await;
    assert_eq!(r.count(Status::Rejected), 5);
    assert!(r.dead_letters("otlp")[0]["error"]
        .as_str()
        .unwrap()
        .contains("HTTP 400"));
}

#[tokio::test]
async fn refused_credentials_fail_start_up_over_both_protocols() {
    for grpc in [true, false] {
        let peer = OtlpPeer::start(grpc).await;
        peer.with(|s| s.required = Some(("authorization".into(), "Bearer right".into())));
        let protocol = if grpc { "grpc" } else { "http" };
        let dir = tempfile::tempdir().unwrap();
        let sink = sink(
            config(
                &peer,
                &format!(
                    "protocol = \"{protocol}\"\n[headers]\nauthorization = \"Bearer wr0ng\"\n"
                ),
            ),
            &dir,
        );
        let e = sink.start().await.unwrap_err();
        assert!(
            matches!(&e, Unhealthy::Misconfigured { fix, .. } if *fix == health::FIX_CREDENTIALS),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains("Unauthenticated") || e.contains("401"), "{e}");
        assert!(!e.contains("wr0ng") && !format!("{sink:?}").contains("wr0ng"));
    }
}

/// A container's resource sample over 10 s: 2.5 s of CPU, 64 MiB, 4 KiB
/// written, 3 throttled periods, PSI, 970 run-queue waits (0.12 s).
fn sample_event() -> lumen_schemas::Event {
    use lumen_schemas::event::{push, ResourceSample, ResourceScope, ResourceUse};
    let mut r = ResourceSample {
        scope: Some(ResourceScope::Container),
        interval_ns: 10_000_000_000,
        online_cpus: 2,
        usage: ResourceUse {
            cpu_usage_ns: Some(2_500_000_000),
            cpu_throttled_periods: Some(3),
            memory_usage: Some(64 << 20),
            io_write_bytes: Some(4096),
            pids_current: Some(7),
            pressure_us: [Some(1_000_000), Some(500_000), None, None, None, None],
            ..ResourceUse::default()
        },
        ..ResourceSample::default()
    };
    r.cgroup = push(&mut r.text, "kubepods/pod1/abc");
    r.attribution.container_id = push(&mut r.text, &"ab".repeat(32));
    r.attribution.pod_uid = push(&mut r.text, "0f5a7c1e-1111-2222-3333-444455556666");
    r.sched = Some(lumen_schemas::event::SchedUse {
        waits: 970,
        wait_ns: 120_000_000,
        preempted: 12,
        ..Default::default()
    });
    let mut e = support::audit_event("unused");
    e.kind = lumen_schemas::EventKind::Resource(Box::new(r));
    e.time = lumen_schemas::time::Timestamp(1_700_000_010_000_000_000);
    e
}

/// Resource samples as OTLP metrics over both protocols: semantic-
/// convention names, delta sums with their interval, gauges, attributes of
/// the container and pod; an event that is no sample is rejected, named.
#[tokio::test]
async fn resource_samples_go_as_otlp_metrics_and_other_events_are_rejected() {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
    for grpc in [true, false] {
        let peer = OtlpPeer::start(grpc).await;
        let protocol = if grpc { "grpc" } else { "http" };
        let cfg = config(
            &peer,
            &format!("signal = \"metrics\"\nprotocol = \"{protocol}\""),
        );
        let dir = tempfile::tempdir().unwrap();
        let sink = sink(cfg, &dir);
        sink.start().await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let task = tokio::spawn(sink.run(rx));
        let (ack_tx, mut ack_rx) = lumen_sinks::ack::channel();
        for (i, event) in [sample_event(), support::audit_event("not-a-metric")]
            .into_iter()
            .enumerate()
        {
            let ack = lumen_sinks::ack::Ack::new(ack_tx.node(i as u64));
            tx.send(lumen_sinks::Envelope::new(event, ack))
                .await
                .unwrap();
        }
        drop(tx);
        let statuses = support::acks(&mut ack_rx, 2).await;
        task.await.unwrap();
        assert_eq!(statuses[&0], Status::Delivered, "{protocol}");
        assert_eq!(statuses[&1], Status::Rejected, "{protocol}");
        let requests = peer.with(|s| s.metrics.clone());
        let metrics: Vec<_> = requests
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .collect();
        let get = |name: &str| {
            *metrics
                .iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("{name} in {metrics:#?}"))
        };
        let cpu = get("container.cpu.time");
        assert_eq!(cpu.unit, "s");
        let Some(Data::Sum(sum)) = &cpu.data else {
            panic!("{cpu:?}")
        };
        assert_eq!(sum.aggregation_temporality, 1, "delta");
        let point = &sum.data_points[0];
        assert_eq!(point.value, Some(number_data_point::Value::AsDouble(2.5)));
        assert_eq!(
            point.time_unix_nano - point.start_time_unix_nano,
            10_000_000_000
        );
        let attr = |key: &str| {
            point
                .attributes
                .iter()
                .find(|a| a.key == key)
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
        };
        assert_eq!(attr("container.id"), Some("ab".repeat(32)));
        assert_eq!(
            attr("k8s.pod.uid").as_deref(),
            Some("0f5a7c1e-1111-2222-3333-444455556666")
        );
        assert!(matches!(
            get("container.memory.usage").data,
            Some(Data::Gauge(_))
        ));
        let Some(Data::Sum(io)) = &get("container.disk.io").data else {
            panic!()
        };
        assert_eq!(
            io.data_points[0].value,
            Some(number_data_point::Value::AsDouble(4096.0))
        );
        let Some(Data::Sum(psi)) = &get("lumen.pressure.stall_time").data else {
            panic!()
        };
        assert_eq!(psi.data_points.len(), 2, "cpu some and full");
        let Some(Data::Sum(waited)) = &get("lumen.cpu.runqueue.wait_time").data else {
            panic!()
        };
        assert_eq!(
            waited.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.12))
        );
        assert_eq!(get("lumen.cpu.runqueue.waits").unit, "{wait}");
        let resource = requests[requests.len() - 1].resource_metrics[0]
            .resource
            .as_ref()
            .unwrap();
        assert!(resource.attributes.iter().any(|a| a.key == "host.name"));
    }
}
