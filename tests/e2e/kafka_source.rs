//! The aggregator tier through the binary, against librdkafka's mock
//! cluster (the real Kafka protocol; 3 brokers, 6 partitions): a node
//! Lumen ships audit events to Kafka in the native encoding; an aggregator
//! Lumen's kafka source reads them back into a file sink. A poison message
//! is dead-lettered and its partition moves on; a restarted aggregator
//! resumes from the offsets it committed.

use crate::support::{append_audit, read_ndjson, wait_for_events, Lumen};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::time::Duration;

const TOPIC: &str = "lumen-events";

fn node_config(servers: &str) -> String {
    format!(
        r#"
data_dir = "{{dir}}/data"

[sources.audit]
type = "k8s_audit_file"
path = "{{dir}}/audit.log"
read_from = "beginning"
poll_interval_ms = 50

[sinks.kafka]
type = "kafka"
inputs = ["audit"]
bootstrap_servers = "{servers}"
topic = "{TOPIC}"
encoding = "native"
schema = "ecs"
batch.timeout_secs = 0.05
"#
    )
}

fn aggregator_config(servers: &str) -> String {
    format!(
        r#"
data_dir = "{{dir}}/data"

[sources.kafka]
type = "kafka"
bootstrap_servers = "{servers}"
group_id = "aggregators"
topics = ["{TOPIC}"]
commit_interval_ms = 200
# The mock cluster hands a departed member's partitions over only after
# its session times out (librdkafka's default: 45 s).
librdkafka_options."session.timeout.ms" = "6000"
librdkafka_options."heartbeat.interval.ms" = "500"

[sinks.out]
type = "file"
inputs = ["kafka"]
schema = "ecs"
path = "{{dir}}/out.ndjson"
"#
    )
}

/// How many times each auditID arrived in `path`.
fn arrivals(path: &std::path::Path) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for doc in read_ndjson(path) {
        if let Some(id) = doc["kubernetes"]["audit"]["auditID"].as_str() {
            *seen.entry(id.to_owned()).or_default() += 1;
        }
    }
    seen
}

#[test]
fn native_events_cross_kafka_once_a_poison_message_passes_and_a_restart_resumes() {
    let cluster = MockCluster::new(3).unwrap();
    let servers = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 6, 1).unwrap();

    let mut node = Lumen::start(&node_config(&servers));
    let log = node.path("audit.log");
    append_audit(&log, (0..1000).map(|i| format!("a-{i}")));
    let mut aggregator = Lumen::start(&aggregator_config(&servers));
    aggregator.wait_for_log("kafka source: subscribed", Duration::from_secs(30));
    let out = aggregator.path("out.ndjson");
    wait_for_events(&out, Duration::from_secs(60), |evs| evs.len() >= 1000);
    let seen = arrivals(&out);
    assert_eq!(seen.len(), 1000, "every event");
    assert!(seen.values().all(|n| *n == 1), "each once");
    let doc = &read_ndjson(&out)[0];
    assert_eq!(doc["event"]["dataset"], "lumen.k8s_audit", "{doc:#}");
    assert_eq!(doc["user"]["name"], "alice");

    // A message that is no event, in partition 0: dead-lettered, and the
    // partition moves on.
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    producer
        .send(
            BaseRecord::<str, [u8]>::to(TOPIC)
                .partition(0)
                .payload(b"{\"not\": \"an event\"".as_slice()),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    append_audit(&log, (1000..1100).map(|i| format!("a-{i}")));
    wait_for_events(&out, Duration::from_secs(60), |evs| evs.len() >= 1100);
    let dead = aggregator.path("data/dead-letter/kafka.ndjson");
    let poison = read_ndjson(&dead);
    assert_eq!(poison.len(), 1, "{poison:?}");
    assert_eq!(poison[0]["topic"], TOPIC);
    assert_eq!(poison[0]["partition"], "0");
    assert!(poison[0]["error"]
        .as_str()
        .unwrap()
        .contains("not an audit.k8s.io event"));
    assert_eq!(poison[0]["message"], "{\"not\": \"an event\"");

    // A graceful stop commits what was acknowledged: a new aggregator of
    // the group reads only what came after.
    let (status, _) = aggregator.stop();
    assert!(status.success());
    append_audit(&log, (1100..1150).map(|i| format!("a-{i}")));
    let mut second = Lumen::start(&aggregator_config(&servers));
    second.wait_for_log("kafka source: subscribed", Duration::from_secs(30));
    let out2 = second.path("out.ndjson");
    wait_for_events(&out2, Duration::from_secs(60), |evs| evs.len() >= 50);
    std::thread::sleep(Duration::from_secs(2));
    let resumed = arrivals(&out2);
    let want: BTreeMap<String, usize> = (1100..1150).map(|i| (format!("a-{i}"), 1)).collect();
    assert_eq!(resumed, want, "only the events after the commit, once");
    let (status, _) = second.stop();
    assert!(status.success());
    let (status, _) = node.stop();
    assert!(status.success());
}
