//! Lumen's own HTTP API, on the address of the top-level `[api]` table
//! (127.0.0.1:9598 unless set; another address is the operator's choice to
//! expose it): `GET /health` (the process answers: liveness), `GET /ready`
//! (the pipeline is up: 200, or 503 — with a line per unhealthy component —
//! while it starts, while a sink waits for its receiver or fails to deliver,
//! after a component stopped on its own or panicked, and while it shuts
//! down) and `GET /metrics` (every
//! component's counters in the OpenMetrics text format, which Prometheus
//! scrapes). Read-only, no request body is read.

use crate::topology::tap::{TapReader, Taps};
use crate::topology::Running;
use crate::transforms::redact::RedactMetrics;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lumen_sinks::buffer::BufferMetrics;
use lumen_sinks::deliver::{DeliveryMetrics, Latency};
use lumen_sinks::metrics::Health;
use lumen_sinks::ComponentMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `[api]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// Serve `GET /tap/<component>` to other hosts too (it shows events as
    /// they pass, before redaction where the component is upstream of it).
    #[serde(default)]
    pub allow_remote_tap: bool,
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9598))
}

const RELOAD_OUTCOMES: [&str; 4] = ["applied", "unchanged", "rejected", "failed"];

/// One component as the metrics name it.
#[derive(Debug)]
struct Component {
    id: String,
    /// `source`, `transform` or `sink`.
    kind: &'static str,
    /// Its `type` in the config (`k8s_audit_file`, `redact`, …).
    type_name: &'static str,
    metrics: Arc<ComponentMetrics>,
}

/// What the API reports: the running topology's counters (set once it has
/// started) and readiness.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// The running topology's counters, replaced at each reload.
    topology: std::sync::RwLock<Arc<Topology>>,
    /// Reload requests by outcome: `applied`, `unchanged`, `rejected`
    /// (invalid config, or one that needs a restart), `failed` (a component
    /// did not start with its new config).
    reloads: [std::sync::atomic::AtomicU64; 4],
    /// Cleared by [`Running::run_until`] when a component ends on its own
    /// and when the drain begins.
    pub ready: AtomicBool,
}

#[derive(Debug, Default)]
struct Topology {
    components: Vec<Component>,
    /// Per sink id, its buffer's counters.
    buffers: BTreeMap<String, Arc<BufferMetrics>>,
    /// Per redact transform id, its counters per rule.
    redactions: BTreeMap<String, Arc<RedactMetrics>>,
    /// Per detect transform id, its matches and findings per rule.
    detections: BTreeMap<String, Arc<crate::transforms::detect::DetectMetrics>>,
    /// Per network sink id, its delivery counters and request latencies.
    deliveries: BTreeMap<String, Arc<DeliveryMetrics>>,
    /// Per ebpf source id, its containers' resource counters.
    resources: BTreeMap<String, Arc<crate::sources::ebpf::resources::ResourceMetrics>>,
    /// Per kafka source id, its consumer lag per partition.
    consumer_lags: BTreeMap<String, Arc<crate::sources::kafka::ConsumerLag>>,
    /// Per ebpf source id, what its node lets it see.
    capabilities: BTreeMap<String, Arc<Vec<crate::sources::ebpf::capabilities::Capability>>>,
    taps: Arc<Taps>,
}

impl Telemetry {
    /// Started, no component stopped on its own, and every component
    /// healthy (no sink waiting for its receiver or failing to deliver).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self
                .snapshot()
                .components
                .iter()
                .all(|c| c.metrics.is_healthy())
    }

    /// Why not ready, a line per unhealthy component (`sink `es`:
    /// unavailable: …`), empty when every component is healthy.
    pub fn problems(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for c in &self.snapshot().components {
            let (health, why) = c.metrics.health();
            let why = match (health, why) {
                (Health::Healthy, _) if c.metrics.is_failing() => {
                    "failing: its last delivery attempt delivered nothing; retrying".to_owned()
                }
                (Health::Healthy, _) => continue,
                (_, Some(why)) => why,
                (h, None) => h.as_str().to_owned(),
            };
            let _ = writeln!(out, "{} `{}`: {why}", c.kind, c.id);
        }
        out
    }

    fn snapshot(&self) -> Arc<Topology> {
        self.topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A reload request ended with `outcome`; the counters now follow the
    /// topology as it runs.
    pub fn reloaded(&self, running: &Running, outcome: &str) {
        if let Some(i) = RELOAD_OUTCOMES.iter().position(|o| *o == outcome) {
            self.reloads[i].fetch_add(1, Ordering::Relaxed);
        }
        self.publish(running);
    }

    /// The topology of `config` has started as `running`: its counters are
    /// served from now on, and the pipeline is ready.
    pub fn started(&self, running: &Running) {
        self.publish(running);
        self.ready.store(true, Ordering::Relaxed);
    }

    fn publish(&self, running: &Running) {
        let config = running.config();
        let kinds = config
            .sources
            .iter()
            .map(|(id, c)| (id, "source", c.type_name()))
            .chain(
                config
                    .transforms
                    .iter()
                    .map(|(id, c)| (id, "transform", c.type_name())),
            )
            .chain(
                config
                    .sinks
                    .iter()
                    .map(|(id, c)| (id, "sink", c.type_name())),
            );
        let components = kinds
            .filter_map(|(id, kind, type_name)| {
                Some(Component {
                    id: id.clone(),
                    kind,
                    type_name,
                    metrics: running.metrics.get(id)?.clone(),
                })
            })
            .collect();
        let topology = Arc::new(Topology {
            components,
            buffers: running.buffers.clone(),
            redactions: running.redactions.clone(),
            detections: running.detections.clone(),
            deliveries: running.deliveries.clone(),
            resources: running.resources.clone(),
            consumer_lags: running.consumer_lags.clone(),
            capabilities: running.capabilities.clone(),
            taps: running.taps.clone(),
        });
        *self.topology.write().unwrap_or_else(|e| e.into_inner()) = topology;
    }
}

/// Reads the counters at each scrape (they live in the components).
#[derive(Debug)]
struct Exporter(Arc<Telemetry>);

/// Writes one metric family: `name` (without `_total`), `help`, `kind`
/// (counter or gauge), one sample per label set.
fn family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help, kind): (&str, &str, MetricType),
    samples: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let m = family.encode_family(&labels)?;
        match kind {
            MetricType::Gauge => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)?,
            _ => ConstCounter::new(v).encode(m)?,
        }
    }
    Ok(())
}

impl Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let t = self.0.snapshot();
        let e = &mut encoder;
        family(
            e,
            ("lumen_build_info", "The running Lumen's version.", Gauge),
            [([("version", env!("CARGO_PKG_VERSION"))], 1)],
        )?;
        family(
            e,
            (
                "lumen_ready",
                "1 when /ready answers 200 (every component running, no sink failing), else 0.",
                Gauge,
            ),
            [([("instance", "lumen")], u64::from(self.0.is_ready()))],
        )?;
        family(
            e,
            (
                "lumen_config_reloads",
                "Config reload requests (SIGHUP) by outcome: applied, unchanged, rejected (invalid, or a change that needs a restart; the running config kept), failed (a component did not start with its new config and runs its old one).",
                Counter,
            ),
            RELOAD_OUTCOMES
                .iter()
                .zip(&self.0.reloads)
                .map(|(o, n)| ([("outcome", *o)], load(n))),
        )?;
        type ComponentValue = fn(&ComponentMetrics) -> u64;
        let components: [(&str, &str, MetricType, ComponentValue); 7] = [
            (
                "lumen_component_received_events",
                "Events that entered the component.",
                Counter,
                |m| load(&m.received),
            ),
            (
                "lumen_component_sent_events",
                "Events the component passed on (downstream, or to the receiver for sinks).",
                Counter,
                |m| load(&m.sent),
            ),
            (
                "lumen_component_received_bytes",
                "Bytes of input that entered the component (an audit line without its newline, a webhook body).",
                Counter,
                |m| load(&m.received_bytes),
            ),
            (
                "lumen_component_sent_bytes",
                "Bytes a sink wrote out (its encoded documents).",
                Counter,
                |m| load(&m.sent_bytes),
            ),
            (
                "lumen_component_errors",
                "Inputs or deliveries that failed (malformed input, refused requests, write errors).",
                Counter,
                |m| load(&m.errors),
            ),
            (
                "lumen_component_discarded_events",
                "Events the component discarded (filtered, rate-limited, rejected by a receiver).",
                Counter,
                |m| load(&m.dropped),
            ),
            (
                "lumen_component_healthy",
                "0 while the component is not healthy: a sink whose receiver failed its start-up check (unavailable or misconfigured) or whose last delivery attempt delivered nothing, a component whose task panicked; else 1.",
                Gauge,
                |m| u64::from(m.is_healthy()),
            ),
        ];
        for (name, help, kind, value) in components {
            let samples = t.components.iter().map(|c| {
                let labels = [
                    ("component_id", c.id.as_str()),
                    ("component_kind", c.kind),
                    ("component_type", c.type_name),
                ];
                (labels, value(&c.metrics))
            });
            family(e, (name, help, kind), samples)?;
        }
        type BufferValue = fn(&BufferMetrics) -> u64;
        let buffers: [(&str, &str, MetricType, BufferValue); 6] = [
            (
                "lumen_buffer_events",
                "Events in the sink's buffer now (memory: queued for the sink; disk: written, not yet acknowledged by the sink).",
                Gauge,
                BufferMetrics::queued,
            ),
            (
                "lumen_buffer_byte_size",
                "Bytes the disk buffer's segments take now.",
                Gauge,
                |b| load(&b.bytes_on_disk),
            ),
            (
                "lumen_buffer_discarded_events",
                "Events refused by a full buffer (when_full = \"drop_newest\").",
                Counter,
                |b| load(&b.dropped_full),
            ),
            (
                "lumen_buffer_write_errors",
                "Failed buffer writes or syncs (disk full, I/O errors); each was retried.",
                Counter,
                |b| load(&b.write_errors),
            ),
            (
                "lumen_buffer_corrupted_records",
                "Records a disk buffer could not read back and skipped.",
                Counter,
                |b| load(&b.corrupted_records),
            ),
            (
                "lumen_buffer_torn_bytes",
                "Bytes of torn writes truncated at start-up.",
                Counter,
                |b| load(&b.torn_bytes),
            ),
        ];
        for (name, help, kind, value) in buffers {
            let samples = t
                .buffers
                .iter()
                .map(|(id, b)| ([("component_id", id.as_str())], value(b)));
            family(e, (name, help, kind), samples)?;
        }
        // How long the event at a buffer's head has waited: from when Lumen
        // observed the event its sink last took, while events wait behind it.
        let now = lumen_schemas::time::Timestamp::now().0;
        let mut ages = e.encode_descriptor(
            "lumen_buffer_oldest_event_age",
            "While the sink's buffer holds events: how long ago Lumen observed the event its sink took last (the head of the buffer); 0 when empty.",
            Some(&prometheus_client::registry::Unit::Seconds),
            Gauge,
        )?;
        for (id, b) in &t.buffers {
            let taken = t
                .components
                .iter()
                .find(|c| c.id == *id)
                .map_or(0, |c| c.metrics.taken_observed_ns.load(Ordering::Relaxed));
            let age = if b.queued() > 0 && taken > 0 {
                now.saturating_sub(taken).max(0) as f64 / 1e9
            } else {
                0.0
            };
            ConstGauge::new(age).encode(ages.encode_family(&[("component_id", id.as_str())])?)?;
        }
        type DeliveryValue = fn(&DeliveryMetrics) -> u64;
        let deliveries: [(&str, &str, DeliveryValue); 4] = [
            (
                "lumen_sink_requests",
                "Requests a network sink sent (retries included).",
                |d| load(&d.requests),
            ),
            (
                "lumen_sink_retried_events",
                "Event sends a network sink retried.",
                |d| load(&d.retried),
            ),
            (
                "lumen_sink_dead_lettered_events",
                "Events the receiver refused, written to the sink's dead-letter file.",
                |d| load(&d.dead_lettered),
            ),
            (
                "lumen_sink_possible_duplicate_events",
                "Events delivered after an ambiguous failure (they may have arrived twice).",
                |d| load(&d.possible_duplicates),
            ),
        ];
        for (name, help, value) in deliveries {
            let samples = t
                .deliveries
                .iter()
                .map(|(id, d)| ([("component_id", id.as_str())], value(d)));
            family(e, (name, help, Counter), samples)?;
        }
        family(
            e,
            (
                "lumen_sink_pending_acks",
                "Requests a network sink sent and waits to have confirmed (Splunk HEC indexer acknowledgement); at acknowledgements.max_pending_acks the sink waits.",
                Gauge,
            ),
            t.deliveries
                .iter()
                .map(|(id, d)| ([("component_id", id.as_str())], load(&d.pending_acks))),
        )?;
        let mut latency = e.encode_descriptor(
            "lumen_sink_request_duration_seconds",
            "How long a network sink's requests took, answered or not.",
            None,
            MetricType::Histogram,
        )?;
        for (id, d) in &t.deliveries {
            let labels = [("component_id", id.as_str())];
            Histogram(&d.latency).encode(latency.encode_family(&labels)?)?;
        }
        family(
            e,
            (
                "lumen_redacted_events",
                "Events a redact transform changed.",
                Counter,
            ),
            t.redactions
                .iter()
                .map(|(id, r)| ([("component_id", id.as_str())], load(&r.events_changed))),
        )?;
        let by_rule = t.redactions.iter().flat_map(|(id, r)| {
            r.by_rule()
                .into_iter()
                .map(move |(rule, n)| ([("component_id", id.clone()), ("rule", rule)], n))
        });
        family(
            e,
            (
                "lumen_redactions",
                "Events a redact transform's rule (or detector, or built-in Kubernetes removal) changed.",
                Counter,
            ),
            by_rule,
        )?;
        let detections: Vec<(String, String, u64, u64)> = t
            .detections
            .iter()
            .flat_map(|(id, d)| {
                d.by_rule()
                    .into_iter()
                    .map(move |(rule, m, f)| (id.clone(), rule, m, f))
            })
            .collect();
        family(
            e,
            (
                "lumen_detect_matches",
                "Events a detect transform's rule matched (suppressed ones included).",
                Counter,
            ),
            detections.iter().map(|(id, rule, m, _)| {
                ([("component_id", id.clone()), ("rule", rule.clone())], *m)
            }),
        )?;
        family(
            e,
            (
                "lumen_findings",
                "Findings a detect transform's rule sent (one per rule and key per suppression window).",
                Counter,
            ),
            detections.iter().map(|(id, rule, _, f)| {
                ([("component_id", id.clone()), ("rule", rule.clone())], *f)
            }),
        )?;
        containers(e, &t)?;
        family(
            e,
            (
                "lumen_kafka_consumer_lag",
                "Messages of an assigned partition a kafka source has not read yet (its high watermark less the position read, from librdkafka's statistics every 5 s).",
                MetricType::Gauge,
            ),
            t.consumer_lags.iter().flat_map(|(id, lag)| {
                lag.snapshot().into_iter().map(move |((topic, partition), n)| {
                    (
                        [
                            ("component_id", id.clone()),
                            ("topic", topic),
                            ("partition", partition.to_string()),
                        ],
                        n,
                    )
                })
            }),
        )?;
        family(
            e,
            (
                "lumen_capability",
                "1 when this node lets an ebpf source see what the capability names (btf, ring_buffer, process_tracepoints, syscall_tracepoints, scheduler, oom_events, cgroup_attribution, kubernetes_api), else 0; `lumen doctor` says why.",
                MetricType::Gauge,
            ),
            t.capabilities.iter().flat_map(|(id, found)| {
                found.iter().map(move |c| {
                    (
                        [
                            ("component_id", id.clone()),
                            ("capability", c.name.to_owned()),
                        ],
                        u64::from(c.available),
                    )
                })
            }),
        )?;
        Ok(())
    }
}

/// Per container, the resource counters of the last sample (an ebpf
/// source's; at most `MAX_SERIES` containers each).
fn containers(e: &mut DescriptorEncoder<'_>, t: &Topology) -> Result<(), std::fmt::Error> {
    use crate::sources::ebpf::resources::ContainerSeries;
    use MetricType::{Counter, Gauge};
    let mut all: Vec<(String, ContainerSeries)> = Vec::new();
    let mut dropped = Vec::new();
    for (id, m) in &t.resources {
        let (series, d) = m.snapshot();
        all.extend(series.into_iter().map(|s| (id.clone(), s)));
        dropped.push(([("component_id", id.clone())], d));
    }
    type Pick = fn(&ContainerSeries) -> Option<u64>;
    let families: [(&str, &str, MetricType, Pick); 12] = [
        (
            "lumen_container_cpu_usage_nanoseconds",
            "CPU time a container used.",
            Counter,
            |c| c.counters.cpu_usage_ns,
        ),
        (
            "lumen_container_cpu_throttled_periods",
            "CFS periods in which a container's CPU quota stopped it.",
            Counter,
            |c| c.counters.cpu_throttled_periods,
        ),
        (
            "lumen_container_memory_usage_bytes",
            "Memory charged to a container.",
            Gauge,
            |c| c.counters.memory_usage,
        ),
        (
            "lumen_container_memory_limit_bytes",
            "A container's memory limit.",
            Gauge,
            |c| c.counters.memory_limit,
        ),
        (
            "lumen_container_oom_kills",
            "Processes the OOM killer ended at a container's memory limit.",
            Counter,
            |c| c.counters.memory_oom_kills,
        ),
        (
            "lumen_container_pids",
            "Tasks in a container.",
            Gauge,
            |c| c.counters.pids_current,
        ),
        (
            "lumen_container_pids_limit_hits",
            "Forks refused at a container's PID limit.",
            Counter,
            |c| c.counters.pids_max_events,
        ),
        (
            "lumen_container_io_write_bytes",
            "Bytes a container wrote to block devices.",
            Counter,
            |c| c.counters.io_write_bytes,
        ),
        (
            "lumen_container_runqueue_waits",
            "Times a container's tasks got a CPU after waiting runnable (scheduler tracing).",
            Counter,
            |c| c.sched.map(|s| s.waits),
        ),
        (
            "lumen_container_runqueue_wait_nanoseconds",
            "Time a container's tasks waited runnable for a CPU (scheduler tracing).",
            Counter,
            |c| c.sched.map(|s| s.wait_ns),
        ),
        (
            "lumen_container_runqueue_delays",
            "Run-queue waits of a container's tasks at least starvation_latency_ms long (scheduler tracing).",
            Counter,
            |c| c.sched.map(|s| s.delays),
        ),
        (
            "lumen_container_preemptions",
            "Times another cgroup's task took the CPU from a container's tasks (scheduler tracing).",
            Counter,
            |c| c.sched.map(|s| s.preempted),
        ),
    ];
    for (name, help, kind, pick) in families {
        family(
            e,
            (name, help, kind),
            all.iter().filter_map(|(id, s)| {
                let labels = [
                    ("component_id", id.clone()),
                    ("container_id", s.container_id.clone()),
                    ("pod_uid", s.pod_uid.clone()),
                    ("pod", s.pod.clone()),
                    ("namespace", s.namespace.clone()),
                ];
                Some((labels, pick(s)?))
            }),
        )?;
    }
    family(
        e,
        (
            "lumen_container_series_dropped",
            "Containers an ebpf source sampled but left out of these series (over its limit).",
            Gauge,
        ),
        dropped,
    )
}

/// A [`Latency`] as an OpenMetrics histogram.
struct Histogram<'a>(&'a Latency);

impl EncodeMetric for Histogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.0.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The API, bound: [`Api::run`] serves it.
#[derive(Debug)]
pub struct Api {
    listener: tokio::net::TcpListener,
    allow_remote_tap: bool,
    registry: Arc<Registry>,
    telemetry: Arc<Telemetry>,
}

impl Api {
    /// Binds `config.address`; an address in use or not allowed is an
    /// error naming it.
    pub async fn bind(config: &ApiConfig, telemetry: Arc<Telemetry>) -> std::io::Result<Api> {
        let listener = tokio::net::TcpListener::bind(config.address).await?;
        if !config.address.ip().is_loopback() {
            tracing::warn!(address = %config.address, "api: served beyond this host (metrics name components and counts events; put it behind a network policy)");
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exporter(telemetry.clone())));
        Ok(Api {
            listener,
            allow_remote_tap: config.allow_remote_tap,
            registry: Arc::new(registry),
            telemetry,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the task is dropped.
    pub async fn run(self) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "api: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (registry, telemetry) = (self.registry.clone(), self.telemetry.clone());
            let local_only = !self.allow_remote_tap;
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = match req.uri().path().strip_prefix("/tap/") {
                        Some(id) => tap(&req, id, peer, local_only, &telemetry),
                        None => handle(&req, &registry, &telemetry).map(Either::Left),
                    };
                    async move { Ok::<_, Infallible>(answer) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "api: connection ended");
                }
            });
        }
    }
}

fn handle(req: &Request<Incoming>, registry: &Registry, t: &Telemetry) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/health" | "/ready" | "/metrics") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: /health, /ready, /metrics, /tap/<component>\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    match path {
        "/health" => text(StatusCode::OK, "ok\n"),
        "/ready" if t.is_ready() => text(StatusCode::OK, "ready\n"),
        "/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}", t.problems()),
        ),
        _ => {
            let mut body = String::new();
            if let Err(e) = prometheus_client::encoding::text::encode(&mut body, registry) {
                tracing::error!(error = %e, "api: cannot encode the metrics");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot encode the metrics\n",
                );
            }
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
    }
}

/// `GET /tap/<component>[?schema=ecs|ocsf][&limit=N]`: the events passing
/// the component from now on, one JSON document per line (chunked), until
/// `limit` or until Lumen stops. Lines starting with `#` are notices (events
/// not shown because the reader fell behind). Loopback peers only, unless
/// `allow_remote_tap`.
fn tap(
    req: &Request<Incoming>,
    id: &str,
    peer: SocketAddr,
    local_only: bool,
    t: &Telemetry,
) -> Response<Either<Full<Bytes>, TapBody>> {
    let left = |r: Response<Full<Bytes>>| r.map(Either::Left);
    if req.method() != Method::GET {
        return left(text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n"));
    }
    if local_only && !peer.ip().to_canonical().is_loopback() {
        return left(text(
            StatusCode::FORBIDDEN,
            "tap is served to this host only ([api] allow_remote_tap = true to change that)\n",
        ));
    }
    let (mut schema, mut limit) = (lumen_schemas::Schema::Ecs, None);
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("schema", "ecs")) => schema = lumen_schemas::Schema::Ecs,
            Some(("schema", "ocsf")) => schema = lumen_schemas::Schema::Ocsf,
            Some(("limit", n)) if n.parse::<u64>().is_ok_and(|n| n > 0) => {
                limit = n.parse().ok();
            }
            _ => {
                return left(text(
                    StatusCode::BAD_REQUEST,
                    format!("bad query parameter `{pair}`: schema=ecs|ocsf, limit=N (N > 0)\n"),
                ))
            }
        }
    }
    let taps = t.snapshot().taps.clone();
    let Some(reader) = taps.subscribe(id) else {
        return left(text(
            StatusCode::NOT_FOUND,
            format!(
                "no running component `{id}` (running: {})\n",
                taps.running().join(", ")
            ),
        ));
    };
    tracing::info!(component = %id, %peer, "api: tap opened");
    let mut r = Response::new(Either::Right(TapBody {
        reader,
        schema,
        limit,
        shown: 0,
        reported: 0,
    }));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

/// The body of a tap: events as they come, a chunk per batch of them.
#[derive(Debug)]
pub struct TapBody {
    reader: TapReader,
    schema: lumen_schemas::Schema,
    limit: Option<u64>,
    shown: u64,
    /// Events not shown, as already reported.
    reported: u64,
}

impl hyper::body::Body for TapBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.limit.is_some_and(|l| this.shown >= l) {
            return Poll::Ready(None);
        }
        let mut out = Vec::new();
        let missed = this.reader.not_shown.load(Ordering::Relaxed);
        if missed > this.reported {
            out.extend_from_slice(
                format!(
                    "# lumen tap: {} events not shown (this reader fell behind the pipeline)\n",
                    missed - this.reported
                )
                .as_bytes(),
            );
            this.reported = missed;
        }
        while this.limit.is_none_or(|l| this.shown < l) && out.len() < 256 * 1024 {
            match this.reader.events.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    this.schema.encode(&event, &mut out);
                    out.push(b'\n');
                    this.shown += 1;
                }
                Poll::Ready(None) if out.is_empty() => return Poll::Ready(None),
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if out.is_empty() {
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(out)))))
    }
}

/// A plain-text answer (a static text or one made for the request).
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
