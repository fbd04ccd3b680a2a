//! The running pipeline: one tokio task per component, bounded channels
//! between them, fan-out where several components read one output.
//!
//! Start order is sinks, transforms, sources, so a sink that cannot start
//! (a file it cannot open) fails before any event is read. Shutdown goes the
//! other way: sources stop and drop their outputs, each downstream drains its
//! channel and stops when every upstream has gone, sinks flush and
//! acknowledge. The whole drain is bounded by `shutdown_timeout_secs`.

pub mod fanout;
pub mod shutdown;

use crate::config::{Config, SinkConfig, SourceConfig, TransformConfig};
use crate::sources::ebpf::EbpfSource;
use crate::sources::k8s_audit_file::K8sAuditFileSource;
use crate::sources::k8s_audit_webhook::K8sAuditWebhookSource;
use anyhow::Context as _;
use fanout::Fanout;
use lumen_sinks::console::ConsoleSink;
use lumen_sinks::elasticsearch::ElasticsearchSink;
use lumen_sinks::file::FileSink;
use lumen_sinks::kafka::KafkaSink;
use lumen_sinks::otlp::OtlpSink;
use lumen_sinks::splunk_hec::SplunkHecSink;
use lumen_sinks::{ComponentMetrics, Envelope};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Events a channel between two components holds before the sender waits.
pub const CHANNEL_CAPACITY: usize = 1024;

/// A started topology.
#[derive(Debug)]
pub struct Running {
    tasks: JoinSet<String>,
    trigger: shutdown::ShutdownTrigger,
    /// Per component id, its counters.
    pub metrics: BTreeMap<String, Arc<ComponentMetrics>>,
    /// Per sink id, its buffer's counters.
    pub buffers: BTreeMap<String, Arc<lumen_sinks::buffer::BufferMetrics>>,
    /// Per redact transform id, its counters per rule.
    pub redactions: BTreeMap<String, Arc<crate::transforms::redact::RedactMetrics>>,
    /// Per network sink id, its delivery counters and request latencies.
    pub deliveries: BTreeMap<String, Arc<lumen_sinks::deliver::DeliveryMetrics>>,
    shutdown_timeout: Duration,
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every in-flight event was drained.
    Drained,
    /// The drain took longer than the timeout; the named components were cut off.
    TimedOut(Vec<String>),
}

/// Builds and starts every component of `config`.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let host = Arc::new(crate::host::detect());
    let graph = config.graph();
    let (trigger, signal) = shutdown::channel();
    let mut metrics = BTreeMap::new();
    let mut senders: HashMap<&str, mpsc::Sender<Envelope>> = HashMap::new();
    let mut receivers: HashMap<&str, mpsc::Receiver<Envelope>> = HashMap::new();
    for id in config.transforms.keys().chain(config.sinks.keys()) {
        let capacity = config
            .sinks
            .get(id)
            .map_or(CHANNEL_CAPACITY, |s| s.buffer().input_capacity());
        let (tx, rx) = mpsc::channel(capacity);
        senders.insert(id, tx);
        receivers.insert(id, rx);
    }
    for id in graph.inputs.keys() {
        metrics.insert((*id).to_owned(), Arc::new(ComponentMetrics::default()));
    }
    let mut fanouts: HashMap<&str, Fanout> = HashMap::new();
    for id in config.sources.keys().chain(config.transforms.keys()) {
        let mut f = Fanout::default();
        for downstream in graph.outputs_of(id) {
            if let Some(tx) = senders.get(downstream) {
                f.add(downstream.to_owned(), tx.clone());
            }
        }
        fanouts.insert(id, f);
    }
    // Only upstream components hold senders from here on, so channels close
    // when their upstreams stop.
    drop(senders);
    let mut fanout_of = |id: &str| fanouts.remove(id).unwrap_or_default();
    let metrics_of = |id: &str| metrics.get(id).cloned().unwrap_or_default();
    let mut tasks = JoinSet::new();
    let mut buffers = BTreeMap::new();
    let mut redactions = BTreeMap::new();
    let mut deliveries = BTreeMap::new();

    for (id, sink) in &config.sinks {
        let input = receivers
            .remove(id.as_str())
            .context("internal: sink without channel")?;
        let buffer = lumen_sinks::buffer::start(id, sink.buffer(), &config.data_dir, input)
            .with_context(|| format!("starting the buffer of sink `{id}`"))?;
        let rx = buffer.output;
        buffers.insert(id.clone(), buffer.metrics.clone());
        for task in buffer.tasks {
            let name = format!("{id} (buffer)");
            tasks.spawn(async move {
                task.await;
                name
            });
        }
        let m = metrics_of(id);
        let name = id.clone();
        // A network sink: built (config checked), started (healthcheck,
        // templates), then run in its own task.
        macro_rules! network_sink {
            ($sink:ty, $config:expr, $kind:literal) => {{
                let context = || format!("starting sink `{id}` ({})", $kind);
                let s = <$sink>::new(id, (**$config).clone(), &config.data_dir, m)
                    .with_context(context)?;
                s.start().await.with_context(context)?;
                deliveries.insert(id.clone(), s.delivery_metrics());
                tasks.spawn(async move {
                    s.run(rx).await;
                    name
                });
            }};
        }
        match sink {
            SinkConfig::File(c) => {
                let s = FileSink::new(c.clone(), m);
                let file = s
                    .open()
                    .await
                    .with_context(|| format!("starting sink `{id}` (file)"))?;
                tasks.spawn(async move {
                    if let Err(e) = s.run(file, rx).await {
                        tracing::error!(component = %name, error = %e, "sink stopped");
                    }
                    name
                });
            }
            SinkConfig::Console(c) => {
                let s = ConsoleSink::new(c.clone(), m);
                tasks.spawn(async move {
                    s.run(rx).await;
                    name
                });
            }
            SinkConfig::Elasticsearch(c) => network_sink!(ElasticsearchSink, c, "elasticsearch"),
            SinkConfig::SplunkHec(c) => network_sink!(SplunkHecSink, c, "splunk_hec"),
            SinkConfig::Kafka(c) => network_sink!(KafkaSink, c, "kafka"),
            SinkConfig::Otlp(c) => network_sink!(OtlpSink, c, "otlp"),
        }
    }

    for id in &graph.transform_order {
        let Some(transform) = config.transforms.get(*id) else {
            continue;
        };
        let rx = receivers
            .remove(id)
            .context("internal: transform without channel")?;
        let (out, m, name) = (fanout_of(id), metrics_of(id), (*id).to_owned());
        match transform.clone() {
            TransformConfig::Filter(c) => tasks.spawn(async move {
                crate::transforms::filter::run(c, rx, out, m).await;
                name
            }),
            TransformConfig::Redact(c) => {
                let key = crate::transforms::redact::load_key(&c, &config.data_dir, id)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("starting transform `{id}` (redact)"))?;
                let redactor = crate::transforms::redact::Redactor::new(&c, key)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("starting transform `{id}` (redact)"))?;
                redactions.insert((*id).to_owned(), redactor.metrics.clone());
                tasks.spawn(async move {
                    crate::transforms::redact::run(name.clone(), redactor, rx, out, m).await;
                    name
                })
            }
            TransformConfig::RateLimit(c) => tasks.spawn(async move {
                crate::transforms::rate_limit::run(name.clone(), c, rx, out, m).await;
                name
            }),
        };
    }

    for (id, source) in &config.sources {
        let out = fanout_of(id);
        if out.is_empty() {
            tracing::warn!(component = %id, "source has no downstream component; not started");
            continue;
        }
        let (m, name, sig) = (metrics_of(id), id.clone(), signal.clone());
        match source {
            SourceConfig::Ebpf(c) => {
                let src = EbpfSource::start(c.clone(), host.clone(), m)
                    .with_context(|| format!("starting source `{id}` (ebpf)"))?;
                tasks.spawn(async move {
                    src.run(out, sig).await;
                    name
                });
            }
            SourceConfig::K8sAuditWebhook(c) => {
                let src = K8sAuditWebhookSource::new(c.clone(), host.clone(), m)
                    .with_context(|| format!("starting source `{id}` (k8s_audit_webhook)"))?;
                tasks.spawn(async move {
                    src.run(out, sig).await;
                    name
                });
            }
            SourceConfig::K8sAuditFile(c) => {
                let src = K8sAuditFileSource::new(c.clone(), host.clone(), m, &config.data_dir, id)
                    .with_context(|| format!("starting source `{id}` (k8s_audit_file)"))?;
                tasks.spawn(async move {
                    src.run(out, sig).await;
                    name
                });
            }
        }
    }
    Ok(Running {
        tasks,
        trigger,
        metrics,
        buffers,
        redactions,
        deliveries,
        shutdown_timeout: Duration::from_secs(config.shutdown_timeout_secs),
    })
}

impl Running {
    /// Runs until `stop` resolves (a signal) or every component has ended,
    /// then drains. `ready` goes false when a component ends on its own and
    /// when the drain begins.
    pub async fn run_until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
        ready: &std::sync::atomic::AtomicBool,
    ) -> Stopped {
        use std::sync::atomic::Ordering;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                done = self.tasks.join_next() => {
                    ready.store(false, Ordering::Relaxed);
                    match done {
                        None => return Stopped::Drained,
                        Some(Ok(id)) => tracing::warn!(component = %id, "component finished on its own; /ready now answers 503"),
                        Some(Err(e)) => tracing::error!(error = %e, "component task failed; /ready now answers 503"),
                    }
                }
            }
        }
        ready.store(false, Ordering::Relaxed);
        tracing::info!(
            timeout_secs = self.shutdown_timeout.as_secs(),
            "shutting down: stopping sources, draining in-flight events"
        );
        self.trigger.trigger();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(None) => return Stopped::Drained,
                Ok(Some(Ok(id))) => tracing::debug!(component = %id, "component drained"),
                Ok(Some(Err(e))) => {
                    tracing::error!(error = %e, "component task failed while draining")
                }
                Err(_) => {
                    let left = self.tasks.len();
                    self.tasks.abort_all();
                    return Stopped::TimedOut(vec![format!("{left} component(s)")]);
                }
            }
        }
    }

    /// Logs every component's counters.
    pub fn report(metrics: &BTreeMap<String, Arc<ComponentMetrics>>) {
        for (id, m) in metrics {
            let (received, sent, errors, dropped) = m.snapshot();
            tracing::info!(component = %id, received, sent, errors, dropped, "component totals");
        }
    }
}
