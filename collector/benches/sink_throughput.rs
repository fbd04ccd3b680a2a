//! End-to-end throughput of the network sinks: an audit log of N events
//! read by `lumen run` (k8s_audit_file source), encoded and shipped to a
//! local receiver: one that answers like Elasticsearch's bulk API or Splunk
//! HEC (every document accepted, answered per item / with an ackId),
//! librdkafka's mock cluster (3 brokers), or an OTLP gRPC receiver on the
//! official protobuf types. The aggregator row reads back, with a kafka
//! source, the native events the node row (`audit file → native → kafka`)
//! wrote, into a file sink: run both (`-- native`).
//! Reports events/s (first event to last accepted), Lumen's CPU per event
//! (utime + stime: events/s per core), and its peak RSS (VmHWM).
//! The HEC receiver hands out an ackId per request and reports it indexed
//! once `index delay` has passed since it took the request, as an indexer
//! does; its rows also report when the last event was confirmed indexed.
//! Run: `cargo bench -p lumen --bench sink_throughput [-- word]`;
//! `LUMEN_BENCH_EVENTS=n` sets the number of events (default 200,000).

mod common;

use bytes::Bytes;
use common::{line_counter, memchr_count, spawn_lumen, usage};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static EVENTS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("LUMEN_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000)
});

/// HEC's indexer, as the receiver plays it: request `ackId` was taken at
/// `taken[ackId]` with so many events; indexed `delay` later.
struct Indexer {
    delay: Duration,
    taken: std::sync::Mutex<Vec<(Instant, u64, bool)>>,
    /// Events reported indexed to an ack query.
    confirmed: AtomicU64,
}

impl Indexer {
    fn take(&self, events: u64) -> usize {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.push((Instant::now(), events, false));
        taken.len() - 1
    }

    /// `{"acks":{"id":bool,...}}` for the ids of an ack query's body.
    fn query(&self, body: &[u8]) -> String {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let ids = body
            .split(|b| !b.is_ascii_digit())
            .filter(|d| !d.is_empty())
            .filter_map(|d| std::str::from_utf8(d).ok()?.parse::<usize>().ok());
        let mut out = String::from("{\"acks\":{");
        for (i, id) in ids.enumerate() {
            let done = match taken.get_mut(id) {
                Some((at, events, reported)) if now >= *at + self.delay => {
                    if !*reported {
                        *reported = true;
                        self.confirmed.fetch_add(*events, Ordering::Relaxed);
                    }
                    true
                }
                _ => false,
            };
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("\"{id}\":{done}"));
        }
        out.push_str("}}");
        out
    }
}

/// A receiver that accepts everything: for `/_bulk`, one `create` item per
/// action line; for HEC, `Success` with an ackId, indexed as `indexer` says.
async fn receiver(
    count: Arc<AtomicU64>,
    indexer: Arc<Indexer>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = match path.as_str() {
        "/_bulk" => {
            let docs = memchr_count(&body) / 2;
            count.fetch_add(docs as u64, Ordering::Relaxed);
            let mut out = String::with_capacity(40 * docs + 40);
            out.push_str("{\"took\":1,\"errors\":false,\"items\":[");
            for i in 0..docs {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"create\":{\"status\":201}}");
            }
            out.push_str("]}");
            out
        }
        "/services/collector/event" => {
            let events = memchr_count(&body) as u64;
            let id = indexer.take(events);
            count.fetch_add(events, Ordering::Relaxed);
            format!("{{\"text\":\"Success\",\"code\":0,\"ackId\":{id}}}")
        }
        "/services/collector/ack" => indexer.query(&body),
        _ => "{\"status\":\"green\"}".to_owned(),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// An OTLP gRPC receiver that counts log records.
#[derive(Clone)]
struct OtlpCounter(Arc<AtomicU64>);

#[tonic::async_trait]
impl LogsService for OtlpCounter {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let n: usize = request
            .get_ref()
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

fn start_otlp(rt: &tokio::runtime::Runtime, count: Arc<AtomicU64>) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    rt.spawn(async move {
        // Adaptive HTTP/2 windows (BDP estimation), as the Go gRPC server
        // of the OpenTelemetry Collector has.
        let _ = tonic::transport::Server::builder()
            .http2_adaptive_window(Some(true))
            .add_service(LogsServiceServer::new(OtlpCounter(count)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    format!("http://{addr}")
}

/// Counts the records on a mock cluster's topic (sum of high watermarks).
fn kafka_counter(servers: String, topic: &'static str, count: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("group.id", "bench")
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        loop {
            let mut total = 0;
            for p in 0..3 {
                if let Ok((_, high)) = consumer.fetch_watermarks(topic, p, Duration::from_secs(1)) {
                    total += high.max(0) as u64;
                }
            }
            count.store(total, Ordering::Relaxed);
            if total as usize >= *EVENTS {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

fn start_receiver(
    rt: &tokio::runtime::Runtime,
    count: Arc<AtomicU64>,
    indexer: Arc<Indexer>,
) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            let indexer = indexer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    receiver(count.clone(), indexer.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn write_log(path: &std::path::Path) -> f64 {
    let sample = include_str!("../../config/samples/k8s-audit.log");
    let lines: Vec<&str> = sample
        .lines()
        .filter(|l| l.contains("\"auditID\""))
        .collect();
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}")));
    let mut bytes = 0usize;
    for i in 0..*EVENTS {
        let line = lines[i % lines.len()];
        // A unique auditID per event: replace the first 8 hex digits.
        let at = line.find("\"auditID\":\"").unwrap_or(0) + 11;
        let unique = format!("{}{:08x}{}", &line[..at], i, &line[at + 8..]);
        bytes += unique.len() + 1;
        writeln!(out, "{unique}").unwrap_or_else(|e| panic!("{e}"));
    }
    out.flush().unwrap_or_else(|e| panic!("{e}"));
    bytes as f64 / *EVENTS as f64
}

/// How many times the aggregator row runs.
const AGGREGATOR_RUNS: usize = 5;

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The aggregator's output goes to memory (tmpfs) where there is one: its
    // write is the same copy into the page cache, but no disk writeback of
    // earlier runs' gigabytes slows the next one down.
    let shm = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("logs")).unwrap_or_else(|e| panic!("{e}"));
    let mean = write_log(&dir.path().join("logs/audit.log"));
    println!("input: {} Kubernetes audit events, mean {mean:.0} bytes per line; receiver in-process on the same 2 cores", *EVENTS);
    println!();
    println!("| path | events/s | Lumen CPU | events/s per core of Lumen CPU | peak RSS |");
    println!("| --- | --- | --- | --- | --- |");
    let sinks = [
        (
            "audit file → ECS → elasticsearch (data streams)",
            "type = \"elasticsearch\"\nendpoints = [\"{url}\"]\nhealthcheck = false\ninstall_templates = false\n",
        ),
        (
            "audit file → ECS → disk buffer (fsync 1 s) → elasticsearch",
            "type = \"elasticsearch\"\nendpoints = [\"{url}\"]\nhealthcheck = false\ninstall_templates = false\nbuffer.type = \"disk\"\nbuffer.max_size = 4294967296\n",
        ),
        (
            "audit file → ECS → disk buffer (fsync always) → elasticsearch",
            "type = \"elasticsearch\"\nendpoints = [\"{url}\"]\nhealthcheck = false\ninstall_templates = false\nbuffer.type = \"disk\"\nbuffer.max_size = 4294967296\nbuffer.fsync = \"always\"\n",
        ),
        (
            "audit file → GDPR redact (default profile) → ECS → elasticsearch",
            "type = \"elasticsearch\"\nendpoints = [\"{url}\"]\nhealthcheck = false\ninstall_templates = false\n",
        ),
        (
            "audit file → rate_limit (per user, not reached) → ECS → elasticsearch",
            "type = \"elasticsearch\"\nendpoints = [\"{url}\"]\nhealthcheck = false\ninstall_templates = false\n",
        ),
        (
            "audit file → OCSF → splunk_hec (indexer acks, indexed at once)",
            "type = \"splunk_hec\"\nendpoint = \"{url}\"\ndefault_token = \"bench\"\nhealthcheck = false\n",
        ),
        (
            "audit file → OCSF → splunk_hec (indexer acks, indexed 2 s after receipt)",
            "type = \"splunk_hec\"\nendpoint = \"{url}\"\ndefault_token = \"bench\"\nhealthcheck = false\n",
        ),
        (
            "audit file → OCSF → kafka (mock cluster, 3 brokers, zstd, acks=all)",
            "type = \"kafka\"\nbootstrap_servers = \"{url}\"\ntopic = \"lumen.{{ ocsf.class_name }}\"\n",
        ),
        (
            "audit file → native → kafka (mock cluster, 3 brokers, zstd, acks=all)",
            "type = \"kafka\"\nbootstrap_servers = \"{url}\"\ntopic = \"lumen-native\"\nencoding = \"native\"\n",
        ),
        (
            "aggregator: kafka (native, from the row above) → kafka source → ECS → file",
            "type = \"file\"\nschema = \"ecs\"\npath = \"{url}\"\nmax_bytes = 0\n",
        ),
        (
            "audit file → OCSF → otlp (gRPC)",
            "type = \"otlp\"\nendpoint = \"{url}\"\n",
        ),
    ];
    let mut notes = Vec::new();
    let mock = MockCluster::new(3).unwrap_or_else(|e| panic!("{e}"));
    mock.create_topic("lumen.api_activity", 3, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    mock.create_topic("lumen-native", 3, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    // The aggregator row is noisy (the mock cluster serves it from the
    // same 2 cores): after a warm-up run (reported, not counted: the first
    // run after the node row is consistently slower), it runs
    // AGGREGATOR_RUNS times, each a new group reading the topic from the
    // start, and the median is noted.
    let runs = sinks
        .iter()
        .filter(|(n, _)| only.is_empty() || only.iter().any(|w| n.contains(w.as_str())))
        .flat_map(|(name, sink)| {
            let n = if name.starts_with("aggregator") {
                AGGREGATOR_RUNS + 1
            } else {
                1
            };
            (0..n).map(move |run| (*name, *sink, run))
        });
    let mut per_core = Vec::new();
    for (name, sink, run) in runs {
        let count = Arc::new(AtomicU64::new(0));
        let indexer = Arc::new(Indexer {
            delay: Duration::from_secs(if name.contains("2 s") { 2 } else { 0 }),
            taken: std::sync::Mutex::new(Vec::new()),
            confirmed: AtomicU64::new(0),
        });
        let url = if name.starts_with("aggregator") {
            let out = shm.path().join("aggregated.ndjson");
            let _ = std::fs::remove_file(&out);
            line_counter(out.clone(), count.clone(), *EVENTS);
            out.display().to_string()
        } else if name.contains("kafka") {
            let topic = if name.contains("native") {
                "lumen-native"
            } else {
                "lumen.api_activity"
            };
            kafka_counter(mock.bootstrap_servers(), topic, count.clone());
            mock.bootstrap_servers()
        } else if name.contains("otlp") {
            start_otlp(&rt, count.clone())
        } else {
            start_receiver(&rt, count.clone(), indexer.clone())
        };
        // A transform between the source and the sink, when the path has one.
        let (transform, input) = if name.contains("redact") {
            ("[transforms.t]\ntype = \"redact\"\ninputs = [\"audit\"]\nhmac_key = \"bench-key\"\n", "t")
        } else if name.contains("rate_limit") {
            ("[transforms.t]\ntype = \"rate_limit\"\ninputs = [\"audit\"]\nkey = \"{{ user.name }}\"\nrate = 100000000\n", "t")
        } else {
            ("", "audit")
        };
        let source = if name.starts_with("aggregator") {
            format!("[sources.audit]\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\ngroup_id = \"bench-{run}\"\ntopics = [\"lumen-native\"]\ndecoding = \"native\"\n", mock.bootstrap_servers())
        } else {
            format!(
                "[sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{}/logs/*.log\"\n",
                dir.path().display()
            )
        };
        let config = format!(
            "data_dir = \"{d}/data\"\n{source}\n{transform}\n[sinks.out]\ninputs = [\"{input}\"]\n{}",
            sink.replace("{url}", &url),
            d = dir.path().display()
        );
        let config_path = dir.path().join("lumen.toml");
        std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(dir.path().join("data"));
        let mut child = spawn_lumen(&config_path);
        let pid = child.id();
        // From the first accepted event to the last.
        while count.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (cpu0, _) = usage(pid);
        let t = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(300);
        while (count.load(Ordering::Relaxed) as usize) < *EVENTS && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let elapsed = t.elapsed().as_secs_f64();
        let (cpu1, rss) = usage(pid);
        if name.contains("splunk_hec") {
            while (indexer.confirmed.load(Ordering::Relaxed) as usize) < *EVENTS
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let confirmed = indexer.confirmed.load(Ordering::Relaxed);
            let secs = t.elapsed().as_secs_f64();
            notes.push(format!(
                "{name}: {confirmed} events confirmed indexed {secs:.2} s after the first arrived ({:.0} events/s to the last confirmation)",
                confirmed as f64 / secs
            ));
        }
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let _ = child.wait();
        let got = count.load(Ordering::Relaxed) as usize;
        assert!(
            got >= *EVENTS,
            "{name}: only {got} of {} events arrived",
            *EVENTS
        );
        let cpu = cpu1 - cpu0;
        let warm_up = name.starts_with("aggregator") && run == 0;
        println!(
            "| {name}{} | {:.0} | {:.2} cores | {:.0} | {:.0} MiB |",
            if warm_up { " (warm-up)" } else { "" },
            *EVENTS as f64 / elapsed,
            cpu / elapsed,
            *EVENTS as f64 / cpu,
            rss
        );
        if name.starts_with("aggregator") && !warm_up {
            per_core.push(*EVENTS as f64 / cpu);
        }
    }
    if !per_core.is_empty() {
        per_core.sort_by(f64::total_cmp);
        notes.push(format!(
            "aggregator: {} runs, events/s per core of Lumen CPU: median {:.0}, from {:.0} to {:.0}",
            per_core.len(),
            per_core[per_core.len() / 2],
            per_core[0],
            per_core[per_core.len() - 1]
        ));
    }
    for note in notes {
        println!("\n{note}");
    }
}
