//! The aggregator tier through the binary, against librdkafka's mock
//! cluster (the real Kafka protocol; 3 brokers, 6 partitions): a node
//! Lumen ships audit events to Kafka in the native encoding; an aggregator
//! Lumen's kafka source reads them back into a file sink. A poison message
//! is dead-lettered and its partition moves on; a restarted aggregator
//! resumes from the offsets it committed. Two aggregators share the
//! partitions; one killed with SIGKILL under load loses nothing, and what
//! the other reads twice is at most what was not yet committed. A SIEM
//! that is down holds the offsets back, its partitions are paused without
//! leaving the group, and everything arrives once it is up; the consumer
//! lag per partition is on `/metrics`. A topic pattern reads the matching
//! topics' raw audit events.

use crate::support::{append_audit, read_ndjson, wait_for_events, Lumen};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::time::Duration;

const TOPIC: &str = "lumen-events";

fn node_config(servers: &str) -> String {
    node_config_keyed(servers, "")
}

/// A node whose records carry `key_line` (a `key_field = …` line, or ""
/// for the default key: one partition per node).
fn node_config_keyed(servers: &str, key_line: &str) -> String {
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
{key_line}
encoding = "native"
schema = "ecs"
batch.timeout_secs = 0.05
"#
    )
}

/// An aggregator's kafka source (group `aggregators`) with `sinks`.
fn aggregator_with(servers: &str, sinks: &str) -> String {
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

{sinks}
"#
    )
}

/// An aggregator writing what it reads to `{dir}/out.ndjson`.
fn aggregator_config(servers: &str) -> String {
    aggregator_with(
        servers,
        r#"[sinks.out]
type = "file"
inputs = ["kafka"]
schema = "ecs"
path = "{dir}/out.ndjson"
# One file: the tests count what arrived in it.
max_bytes = 0"#,
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

/// A topic pattern (POSIX, as librdkafka reads it) subscribes to every
/// matching topic and no other; raw `audit.k8s.io` events (a cloud log
/// export's) become audit events.
#[test]
fn a_topic_pattern_reads_every_matching_topic_of_raw_audit_events() {
    let cluster = MockCluster::new(3).unwrap();
    let servers = cluster.bootstrap_servers();
    for topic in ["audit-eu", "audit-us", "auditors"] {
        cluster.create_topic(topic, 2, 1).unwrap();
    }
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    for (topic, id) in [
        ("audit-eu", "p-eu"),
        ("audit-us", "p-us"),
        ("auditors", "p-no"),
    ] {
        let line = crate::support::audit_line(id, "get");
        producer
            .send(BaseRecord::<str, str>::to(topic).payload(&line))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let config = aggregator_config(&servers).replace(
        &format!("topics = [\"{TOPIC}\"]"),
        "topics = [\"^audit-(eu|us)$\"]\ndecoding = \"k8s_audit\"",
    );
    assert!(config.contains("^audit-(eu|us)$"));
    let mut aggregator = Lumen::start(&config);
    let out = aggregator.path("out.ndjson");
    wait_for_events(&out, Duration::from_secs(60), |evs| evs.len() >= 2);
    std::thread::sleep(Duration::from_secs(2));
    let seen = arrivals(&out);
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["p-eu", "p-us"]
    );
    let doc = &read_ndjson(&out)[0];
    assert_eq!(doc["event"]["dataset"], "lumen.k8s_audit", "{doc:#}");
    let (status, _) = aggregator.stop();
    assert!(status.success());
}

/// The sum over the topic's partitions of the group's committed offsets.
fn committed_total(servers: &str, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "aggregators")
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(TOPIC, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

#[test]
fn two_aggregators_share_the_partitions_and_one_killed_under_load_loses_nothing() {
    const N: usize = 100_000;
    let cluster = MockCluster::new(3).unwrap();
    let servers = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 6, 1).unwrap();
    // No key: the node's records spread over the six partitions.
    let mut node = Lumen::start(&node_config_keyed(&servers, "key_field = \"\""));
    let mut a = Lumen::start(&aggregator_config(&servers));
    let mut b = Lumen::start(&aggregator_config(&servers));
    a.wait_for_log("kafka source: subscribed", Duration::from_secs(30));
    b.wait_for_log("kafka source: subscribed", Duration::from_secs(30));
    append_audit(&node.path("audit.log"), (0..N).map(|i| format!("k-{i}")));
    let (out_a, out_b) = (a.path("out.ndjson"), b.path("out.ndjson"));
    // Both work: each gets partitions of its own.
    wait_for_events(&out_a, Duration::from_secs(120), |evs| evs.len() >= 2000);
    wait_for_events(&out_b, Duration::from_secs(120), |evs| evs.len() >= 2000);
    a.signal(libc::SIGKILL);
    let _ = a.wait_exit(Duration::from_secs(10));
    // What the group committed (a's last commits stand until b takes its
    // partitions, once a's session times out), then what was written:
    // every committed event was written before it was committed.
    let committed = committed_total(&servers, 6);
    let output: usize = arrivals(&out_a).len() + arrivals(&out_b).len();
    assert!(
        committed as usize <= output,
        "committed {committed} of {output} written: a commit never runs ahead of the sinks"
    );
    let start = std::time::Instant::now();
    let (seen_a, seen_b) = loop {
        let (seen_a, seen_b) = (arrivals(&out_a), arrivals(&out_b));
        let union: std::collections::BTreeSet<&String> =
            seen_a.keys().chain(seen_b.keys()).collect();
        if union.len() >= N {
            break (seen_a, seen_b);
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{} of {N} after the kill",
            union.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Every event arrived; each aggregator wrote each at most once; an
    // event written by both was written by a after its last commit.
    assert!((0..N).all(|i| {
        let id = format!("k-{i}");
        seen_a.contains_key(&id) || seen_b.contains_key(&id)
    }));
    assert!(seen_a.values().chain(seen_b.values()).all(|n| *n == 1));
    let duplicates = seen_a.keys().filter(|id| seen_b.contains_key(*id)).count();
    let not_committed = output - committed as usize;
    assert!(
        duplicates <= not_committed,
        "{duplicates} read twice, {not_committed} written and not committed at the kill"
    );
    let (status, _) = b.stop();
    assert!(status.success());
    let (status, _) = node.stop();
    assert!(status.success());
}

/// The SIEM down for longer than `max.poll.interval.ms`, with more events
/// than the pipeline holds: the source pauses its partitions and stays in
/// the group (no rebalance, so nothing is read twice), the lag on
/// `/metrics` shows what waits in Kafka, and once the SIEM is up
/// everything arrives once and is committed.
#[test]
fn a_siem_that_is_down_holds_the_offsets_and_gets_everything_when_it_is_up() {
    use crate::network_sinks::peers::elasticsearch_peer::EsPeer;
    const N: usize = 3000;
    let cluster = MockCluster::new(3).unwrap();
    let servers = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 6, 1).unwrap();
    let rt = crate::network_sinks::runtime();
    let es = rt.block_on(EsPeer::start(None));
    es.with(|s| s.unavailable = true);
    let mut node = Lumen::start(&node_config_keyed(&servers, "key_field = \"\""));
    append_audit(&node.path("audit.log"), (0..N).map(|i| format!("s-{i}")));
    let config = aggregator_with(
        &servers,
        &format!(
            r#"[sinks.es]
type = "elasticsearch"
inputs = ["kafka"]
endpoints = ["{}"]
healthcheck = false
install_templates = false
batch.max_events = 200
batch.timeout_secs = 0.05
buffer.max_events = 100
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.5"#,
            es.url()
        ),
    )
    // A member that does not poll for this long leaves the group (the
    // least librdkafka takes: the session timeout).
    .replace(
        "librdkafka_options.\"heartbeat.interval.ms\" = \"500\"",
        "librdkafka_options.\"heartbeat.interval.ms\" = \"500\"\nlibrdkafka_options.\"max.poll.interval.ms\" = \"6000\"",
    );
    assert!(config.contains("max.poll.interval.ms"));
    let port = crate::support::free_port();
    let mut aggregator = Lumen::start(&format!(
        "{config}

[api]
address = \"127.0.0.1:{port}\"
"
    ));
    aggregator.wait_for_log("kafka source: subscribed", Duration::from_secs(30));
    let down = std::time::Instant::now();
    // The pipeline fills, the partitions pause; nothing is committed.
    aggregator.wait_for_log("partitions paused", Duration::from_secs(30));
    assert!(
        aggregator
            .log()
            .iter()
            .any(|l| l.contains("sink request failed; retrying")),
        "{:#?}",
        aggregator.log()
    );
    // What waits in Kafka shows as lag (librdkafka's statistics, every
    // 5 s).
    let lag_total = |metrics: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("lumen_kafka_consumer_lag{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let start = std::time::Instant::now();
    loop {
        let metrics = crate::support::scrape_text(port);
        if lag_total(&metrics) > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{metrics}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Down for longer than max.poll.interval.ms.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    assert_eq!(
        committed_total(&servers, 6),
        0,
        "nothing committed while the SIEM is down"
    );
    assert!(es.arrivals().is_empty());
    es.with(|s| s.unavailable = false);
    let start = std::time::Instant::now();
    while es.arrivals().len() < N {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {N} arrived",
            es.arrivals().len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(es.arrivals().values().all(|n| *n == 1));
    let start = std::time::Instant::now();
    while committed_total(&servers, 6) < N as i64 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "offsets not committed after delivery"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(committed_total(&servers, 6), N as i64);
    // Its consumer lag per partition on /metrics (librdkafka's statistics,
    // every 5 s): six partitions, all read.
    let start = std::time::Instant::now();
    let lags = loop {
        let metrics = crate::support::scrape_text(port);
        let lags: Vec<u64> = metrics
            .lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "lumen_kafka_consumer_lag{{component_id=\"kafka\",topic=\"{TOPIC}\",partition=\""
                ))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if lags.len() == 6 && lags.iter().all(|n| *n == 0) {
            break lags;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{metrics}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(lags, [0; 6]);
    // It stayed in the group all along.
    let log = aggregator.log();
    assert!(
        !log.iter()
            .any(|l| ["revoked partitions", "MAXPOLL", "leaving group"]
                .iter()
                .any(|s| l.contains(s))),
        "{log:#?}"
    );
    assert!(log.iter().any(|l| l.contains("partitions resumed")));
    let (status, _) = aggregator.stop();
    assert!(status.success());
    let (status, _) = node.stop();
    assert!(status.success());
}
