//! The kafka sink against librdkafka's mock cluster, which speaks the real
//! Kafka protocol on loopback: records land on the templated topics with
//! their keys and headers, exactly once; injected broker errors are retried
//! without loss; an unauthorized topic sends its events to the dead-letter
//! file with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use lumen_sinks::ack::Status;
use lumen_sinks::deliver::DeliveryMetrics;
use lumen_sinks::kafka::{KafkaConfig, KafkaSink};
use lumen_sinks::ComponentMetrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{deliver, Run};

fn config(servers: &str, extra: &str) -> KafkaConfig {
    let text = format!(
        "inputs = [\"x\"]\nbootstrap_servers = \"{servers}\"\ntopic = \"lumen.{{{{ ocsf.class_name }}}}\"\n{extra}\n[request]\nretry_initial_backoff_secs = 0.01\nretry_max_duration_secs = 0.2\ntimeout_secs = 10\n[batch]\nmax_events = 50\ntimeout_secs = 0.05\n"
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn run(cfg: KafkaConfig, prefix: &str, n: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let sink = KafkaSink::new(
        "kafka",
        cfg,
        dir.path(),
        Arc::new(ComponentMetrics::default()),
    )
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

/// Every record of `topic`: (metadata.uid of the value, key, headers).
fn consume(
    servers: &str,
    topic: &str,
    n: usize,
) -> Vec<(String, String, BTreeMap<String, String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "lumen-test")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n && start.elapsed() < Duration::from_secs(30) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for header in h.iter() {
                headers.insert(
                    header.key.to_owned(),
                    String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                );
            }
        }
        out.push((
            value["metadata"]["uid"].as_str().unwrap().to_owned(),
            String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            headers,
        ));
    }
    // Nothing beyond the n expected (a duplicate would show here).
    let extra_deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < extra_deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            out.push((
                value["metadata"]["uid"].as_str().unwrap().to_owned(),
                String::new(),
                BTreeMap::new(),
            ));
        }
    }
    out
}

/// [`consume`] off the async runtime.
async fn consumed(
    servers: &str,
    topic: &str,
    n: usize,
) -> Vec<(String, String, BTreeMap<String, String>)> {
    let (servers, topic) = (servers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || consume(&servers, &topic, n))
        .await
        .unwrap()
}

fn each_once(records: &[(String, String, BTreeMap<String, String>)], prefix: &str, n: usize) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (uid, _, _) in records {
        *seen.entry(uid.as_str()).or_default() += 1;
    }
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        assert_eq!(seen.get(id.as_str()), Some(&1), "{id}");
    }
    assert_eq!(records.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_land_on_templated_topics_with_keys_and_headers_exactly_once() {
    let mock = MockCluster::new(3).unwrap();
    let servers = mock.bootstrap_servers();
    mock.create_topic("lumen.api_activity", 3, 1).unwrap();
    let r = run(config(&servers, ""), "k", 120).await;
    assert_eq!(r.count(Status::Delivered), 120);
    let records = consumed(&servers, "lumen.api_activity", 120).await;
    each_once(&records, "k", 120);
    let (_, key, headers) = &records[0];
    // host.name "/" container id (an audit event has none).
    assert_eq!(key, "node-1/");
    assert_eq!(headers["lumen.schema"], "ocsf");
    assert_eq!(headers["lumen.schema_version"], "1.8.0");
    assert_eq!(headers["lumen.kind"], "k8s_audit");
    drop(mock);
}

/// `encoding = "native"`: the values are framed native events (they decode
/// back to the same event), the headers say so with the codec version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_encoding_writes_framed_events_with_their_codec_version() {
    let mock = MockCluster::new(1).unwrap();
    let servers = mock.bootstrap_servers();
    mock.create_topic("lumen.api_activity", 1, 1).unwrap();
    let r = run(config(&servers, "encoding = \"native\""), "n", 20).await;
    assert_eq!(r.count(Status::Delivered), 20);
    let records = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("group.id", "lumen-native")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["lumen.api_activity"]).unwrap();
        let mut out = Vec::new();
        let start = Instant::now();
        while out.len() < 20 && start.elapsed() < Duration::from_secs(30) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let headers: BTreeMap<String, String> = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_owned(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.payload().unwrap_or_default().to_vec(), headers));
            }
        }
        out
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 20);
    let mut ids = Vec::new();
    for (value, headers) in &records {
        assert_eq!(headers["lumen.schema"], "native");
        assert_eq!(
            headers["lumen.schema_version"],
            lumen_schemas::codec::FORMAT_VERSION.to_string()
        );
        assert_eq!(headers["lumen.kind"], "k8s_audit");
        let event = lumen_schemas::codec::decode_framed(value).expect("a framed native event");
        let mut doc = Vec::new();
        lumen_schemas::Schema::Ocsf.encode(&event, &mut doc);
        let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        ids.push(doc["metadata"]["uid"].as_str().unwrap().to_owned());
    }
    ids.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("n-{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
    drop(mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_errors_and_timeouts_are_retried_without_loss_or_duplicates() {
    let mock = MockCluster::new(1).unwrap();
    let servers = mock.bootstrap_servers();
    mock.create_topic("lumen.api_activity", 1, 1).unwrap();
    // Leader changes and timeouts on the first produce requests.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    let r = run(config(&servers, "compression = \"gzip\""), "retry", 60).await;
    assert_eq!(r.count(Status::Delivered), 60);
    let records = consumed(&servers, "lumen.api_activity", 60).await;
    each_once(&records, "retry", 60);
    drop(mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_times_out_in_librdkafka_is_retried_by_the_sink() {
    let mock = MockCluster::new(1).unwrap();
    let servers = mock.bootstrap_servers();
    mock.create_topic("lumen.api_activity", 1, 1).unwrap();
    // Every produce request times out for longer than message.timeout.ms.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 40],
    );
    let r = run(
        config(
            &servers,
            "message_timeout_ms = 300\nlibrdkafka_options.\"retry.backoff.ms\" = \"20\"",
        ),
        "slow",
        20,
    )
    .await;
    assert_eq!(r.count(Status::Delivered), 20);
    assert!(
        DeliveryMetrics::get(&r.delivery.retried) > 0,
        "the sink retried"
    );
    let records = consumed(&servers, "lumen.api_activity", 20).await;
    each_once(&records, "slow", 20);
    drop(mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorized_topic_dead_letters_its_events_with_the_reason() {
    let mock = MockCluster::new(1).unwrap();
    let servers = mock.bootstrap_servers();
    mock.create_topic("lumen.denied", 1, 1).unwrap();
    mock.topic_error(
        "lumen.denied",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    )
    .unwrap();
    let mut cfg = config(&servers, "healthcheck = false");
    cfg.topic = "lumen.denied".to_owned();
    let r = run(cfg, "denied", 10).await;
    assert_eq!(r.count(Status::Rejected), 10);
    let dl = r.dead_letters("kafka");
    assert_eq!(dl.len(), 10);
    assert!(
        dl[0]["error"].as_str().unwrap().starts_with("fatal:"),
        "{}",
        dl[0]["error"]
    );
    assert!(
        dl[0]["error"].as_str().unwrap().contains("uthoriz"),
        "{}",
        dl[0]["error"]
    );
    assert_eq!(dl[0]["event"]["class_uid"], 6003);
    drop(mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_going_down_mid_stream_loses_and_duplicates_nothing() {
    let mock = MockCluster::new(3).unwrap();
    let servers = mock.bootstrap_servers();
    mock.create_topic("lumen.api_activity", 1, 3).unwrap();
    mock.partition_leader("lumen.api_activity", 0, Some(1))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = KafkaSink::new(
        "kafka",
        config(&servers, ""),
        dir.path(),
        Arc::new(ComponentMetrics::default()),
    )
    .unwrap();
    sink.start().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let task = tokio::spawn(sink.run(rx));
    let (envs, mut ack_rx) = support::tracked_events("outage", 300);
    let feeder = tokio::spawn(async move {
        for env in envs {
            tx.send(env).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    // Mid-stream: the leader goes down, another broker leads, it comes back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    mock.broker_down(1).unwrap();
    mock.partition_leader("lumen.api_activity", 0, Some(2))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    mock.broker_up(1).unwrap();
    feeder.await.unwrap();
    let statuses = support::acks(&mut ack_rx, 300).await;
    task.await.unwrap();
    assert!(statuses.values().all(|s| *s == Status::Delivered));
    let records = consumed(&servers, "lumen.api_activity", 300).await;
    each_once(&records, "outage", 300);
    drop(mock);
}
