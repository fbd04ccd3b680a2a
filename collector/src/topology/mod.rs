//! The running pipeline: one tokio task per component, bounded channels
//! between them, fan-out where several components read one output.
//!
//! Start order is sinks, transforms, sources, so a sink that cannot start
//! (a file it cannot open) fails before any event is read. Shutdown goes the
//! other way: sources stop, then each transform (in order) and each sink
//! drains its channel and stops once its upstreams have; sinks flush and
//! acknowledge. The whole drain is bounded by `shutdown_timeout_secs`.
//!
//! The topology holds the only strong sender of every channel (fan-outs hold
//! weak ones, see [`fanout`]), which is what lets [`Running::reload`] swap
//! components while the rest runs: see its documentation.

pub mod burst;
pub mod fanout;
pub mod shutdown;
pub mod tap;

use crate::config::{Config, SinkConfig, SourceConfig, TransformConfig};
use crate::sources::ebpf::EbpfSource;
use crate::sources::k8s_audit_file::K8sAuditFileSource;
use crate::sources::k8s_audit_webhook::K8sAuditWebhookSource;
use anyhow::Context as _;
use fanout::{Fanout, Wiring};
use lumen_sinks::console::ConsoleSink;
use lumen_sinks::elasticsearch::ElasticsearchSink;
use lumen_sinks::file::FileSink;
use lumen_sinks::kafka::KafkaSink;
use lumen_sinks::metrics::Health;
use lumen_sinks::otlp::OtlpSink;
use lumen_sinks::splunk_hec::SplunkHecSink;
use lumen_sinks::{ComponentMetrics, Envelope};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Events a channel between two components holds before the sender waits.
pub const CHANNEL_CAPACITY: usize = 1024;

/// A started topology.
#[derive(Debug)]
pub struct Running {
    /// The config it runs.
    config: Config,
    host: Arc<lumen_schemas::event::Host>,
    /// Per transform and sink: the strong sender of its input channel (the
    /// channel closes when this goes).
    inputs: HashMap<String, mpsc::Sender<Envelope>>,
    /// Per source and transform: its downstreams.
    wirings: HashMap<String, Arc<Wiring>>,
    /// Per component: its running instance.
    instances: HashMap<String, Instance>,
    /// Old instances of network sinks with a memory buffer, still
    /// delivering what they held when a reload replaced them.
    retiring: Vec<(String, Instance)>,
    /// Old instances of transforms, still passing on what they held when
    /// a reload replaced or removed them (a downstream whose receiver is
    /// down can hold them back for long: a reload does not wait).
    retiring_transforms: Vec<(String, Instance)>,
    /// Component tasks report here when they end.
    done_tx: mpsc::UnboundedSender<Ended>,
    done_rx: mpsc::UnboundedReceiver<Ended>,
    generation: u64,
    options: Options,
    /// Set once the first start is done: later starts are reloads.
    started: bool,
    /// Every component's tap (`lumen tap`).
    pub taps: Arc<tap::Taps>,
    /// Per component id, its counters (kept across reloads).
    pub metrics: BTreeMap<String, Arc<ComponentMetrics>>,
    /// Per sink id, its buffer's counters.
    pub buffers: BTreeMap<String, Arc<lumen_sinks::buffer::BufferMetrics>>,
    /// Per redact transform id, its counters per rule.
    pub redactions: BTreeMap<String, Arc<crate::transforms::redact::RedactMetrics>>,
    /// Per detect transform id, its matches and findings per rule.
    pub detections: BTreeMap<String, Arc<crate::transforms::detect::DetectMetrics>>,
    /// Per network sink id, its delivery counters and request latencies.
    pub deliveries: BTreeMap<String, Arc<lumen_sinks::deliver::DeliveryMetrics>>,
    /// Per ebpf source id, its containers' resource counters.
    pub resources: BTreeMap<String, Arc<crate::sources::ebpf::resources::ResourceMetrics>>,
    /// Per ebpf source id, what its node lets it see.
    pub capabilities: BTreeMap<String, Arc<Vec<crate::sources::ebpf::capabilities::Capability>>>,
    /// Per kafka source id, its consumer lag per partition.
    pub consumer_lags: BTreeMap<String, Arc<crate::sources::kafka::ConsumerLag>>,
}

/// One component's tasks.
#[derive(Debug)]
struct Instance {
    generation: u64,
    tasks: Vec<JoinHandle<()>>,
    /// A source's own stop signal.
    stop: Option<shutdown::ShutdownTrigger>,
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every in-flight event was drained.
    Drained,
    /// The drain took longer than the timeout; the named components were cut off.
    TimedOut(Vec<String>),
    /// The named components failed (their task panicked): Lumen stopped
    /// after draining what the rest could deliver (`drained` false when
    /// that drain timed out).
    Failed {
        components: Vec<String>,
        drained: bool,
    },
}

/// How the topology starts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Every network sink's start-up check must pass (`lumen run
    /// --require-healthy`), as if each had `healthcheck.require = true`.
    pub require_healthy: bool,
}

/// A sink that must pass its start-up check did not: Lumen does not start
/// (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("sink `{sink}` ({kind}) failed its required healthcheck: {why}")]
pub struct RequiredHealthcheckFailed {
    pub sink: String,
    pub kind: &'static str,
    pub why: lumen_sinks::health::Unhealthy,
}

/// A component task's end, reported to [`Running::run_until`].
#[derive(Debug)]
struct Ended {
    id: String,
    generation: u64,
    /// The panic's message, when the task panicked.
    panic: Option<String>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Why a reload was refused or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Nothing was changed: the running topology is as it was.
    #[error(
        "{0} cannot change while Lumen runs (restart to apply it); the running config is kept"
    )]
    NeedsRestart(&'static str),
    /// Some components could not start with their new config; each was
    /// started again with its old one where it had one.
    #[error("reload incomplete: {0}")]
    Failed(String),
}

/// Builds and starts every component of `config`.
pub async fn start(config: &Config, options: Options) -> anyhow::Result<Running> {
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut running = Running {
        config: Config {
            sources: BTreeMap::new(),
            transforms: BTreeMap::new(),
            sinks: BTreeMap::new(),
            ..config.clone()
        },
        host: Arc::new(crate::host::detect()),
        inputs: HashMap::new(),
        wirings: HashMap::new(),
        instances: HashMap::new(),
        retiring: Vec::new(),
        retiring_transforms: Vec::new(),
        done_tx,
        done_rx,
        generation: 0,
        options,
        started: false,
        taps: Arc::default(),
        metrics: BTreeMap::new(),
        buffers: BTreeMap::new(),
        redactions: BTreeMap::new(),
        detections: BTreeMap::new(),
        resources: BTreeMap::new(),
        capabilities: BTreeMap::new(),
        consumer_lags: BTreeMap::new(),
        deliveries: BTreeMap::new(),
    };
    let all: BTreeSet<String> = config
        .graph()
        .inputs
        .keys()
        .map(|k| (*k).to_owned())
        .collect();
    let plan = Changes {
        added: all.into_iter().collect(),
        ..Changes::default()
    };
    let mut failed = Vec::new();
    running.apply(config.clone(), &plan, &mut failed).await;
    if let Some(e) = failed.into_iter().next() {
        // Nothing half-started stays behind.
        let _ = running.shutdown().await;
        return Err(e);
    }
    running.started = true;
    Ok(running)
}

impl Running {
    /// The config the topology runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What changes from the running config to `new`.
    pub fn diff(&self, new: &Config) -> Changes {
        let old = &self.config;
        let mut c = Changes::default();
        let ids = |k: &Config| -> BTreeSet<String> {
            k.sources
                .keys()
                .chain(k.transforms.keys())
                .chain(k.sinks.keys())
                .cloned()
                .collect()
        };
        let (before, after) = (ids(old), ids(new));
        for id in after.iter() {
            if !before.contains(id) {
                c.added.push(id.clone());
            } else if old.sources.get(id) != new.sources.get(id)
                || old.transforms.get(id) != new.transforms.get(id)
                || old.sinks.get(id) != new.sinks.get(id)
            {
                c.changed.push(id.clone());
            }
        }
        c.removed = before.difference(&after).cloned().collect();
        c
    }

    /// Applies `new` (already validated) to the running topology:
    /// components whose config changed are rebuilt, new ones started,
    /// removed ones stopped; the others keep running untouched. No accepted
    /// event is lost:
    ///
    /// 1. channels are made for the new and rebuilt transforms and sinks,
    ///    and every fan-out is rewired to them (events wait there, bounded:
    ///    backpressure, until the new instance reads);
    /// 2. the old instances' channels are let go: each drains what it holds
    ///    downstream (a sink delivers its memory buffer; a disk buffer stays
    ///    on disk for the new instance) and stops;
    /// 3. new sinks start once their old instance has stopped (it held the
    ///    disk buffer, the file), then new transforms; changed sources stop
    ///    (saving their checkpoints) and their new instances start. Old
    ///    transforms and old network sinks with a memory buffer are not
    ///    waited for: a downstream whose receiver is down could hold them
    ///    for as long as it is down. They finish beside the new instances
    ///    (a shutdown drains them too).
    ///
    /// `data_dir` and `[api]` need a restart: a config that changes them is
    /// refused whole. A component whose new config fails to start is started
    /// again with its old config (the error is returned).
    pub async fn reload(&mut self, new: Config) -> Result<Changes, ReloadError> {
        if new.data_dir != self.config.data_dir {
            return Err(ReloadError::NeedsRestart("data_dir"));
        }
        if new.api != self.config.api {
            return Err(ReloadError::NeedsRestart("[api]"));
        }
        let plan = self.diff(&new);
        if plan.is_empty() {
            self.config.shutdown_timeout_secs = new.shutdown_timeout_secs;
            return Ok(plan);
        }
        let mut failed = Vec::new();
        self.apply(new, &plan, &mut failed).await;
        if failed.is_empty() {
            Ok(plan)
        } else {
            Err(ReloadError::Failed(
                failed
                    .iter()
                    .map(|e| format!("{e:#}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ))
        }
    }

    async fn apply(&mut self, new: Config, plan: &Changes, failed: &mut Vec<anyhow::Error>) {
        let old = std::mem::replace(&mut self.config, new.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(new.shutdown_timeout_secs);
        let rebuilt: BTreeSet<&str> = plan
            .changed
            .iter()
            .chain(&plan.added)
            .map(String::as_str)
            .collect();
        let retired: BTreeSet<&str> = plan
            .changed
            .iter()
            .chain(&plan.removed)
            .map(String::as_str)
            .collect();
        // 1. New channels; the old strong senders of what is rebuilt or
        // removed are set aside (dropped in step 2).
        let mut old_inputs = Vec::new();
        let mut receivers: HashMap<String, mpsc::Receiver<Envelope>> = HashMap::new();
        for id in new.transforms.keys().chain(new.sinks.keys()) {
            if !rebuilt.contains(id.as_str()) {
                continue;
            }
            let capacity = new
                .sinks
                .get(id)
                .map_or(CHANNEL_CAPACITY, |s| s.buffer().input_capacity());
            let (tx, rx) = mpsc::channel(capacity);
            if let Some(prev) = self.inputs.insert(id.clone(), tx) {
                old_inputs.push(prev);
            }
            receivers.insert(id.clone(), rx);
        }
        for id in &plan.removed {
            if let Some(prev) = self.inputs.remove(id) {
                old_inputs.push(prev);
            }
        }
        for id in new.graph().inputs.keys() {
            self.metrics
                .entry((*id).to_owned())
                .or_insert_with(|| Arc::new(ComponentMetrics::default()));
        }
        // Every fan-out (old instances too: a retiring transform drains
        // into the new downstreams) gets the new wiring.
        let graph = new.graph();
        let old_graph = old.graph();
        for id in new.sources.keys().chain(new.transforms.keys()) {
            let outputs = self.outputs(graph.outputs_of(id));
            match self.wirings.get(id.as_str()) {
                Some(w) => w.set(outputs),
                None => {
                    let wiring = Wiring::new(self.taps.point(id), outputs);
                    self.wirings.insert(id.clone(), wiring);
                }
            }
        }
        // A sender removed, or now a sink: what its old instance still
        // holds goes where it went before, to what is still there.
        let senders: BTreeSet<&String> = new.sources.keys().chain(new.transforms.keys()).collect();
        let gone: Vec<String> = self
            .wirings
            .keys()
            .filter(|id| !senders.contains(id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(w) = self.wirings.remove(&id) {
                w.set(self.outputs(old_graph.outputs_of(&id)));
            }
        }
        // 2. The old instances are set apart (sources, sinks, transforms)
        // and the retired channels let go: each old transform or sink
        // drains what it holds and ends.
        let mut old_sources = Vec::new();
        let mut old_others = Vec::new();
        for id in &retired {
            if let Some(inst) = self.instances.remove(*id) {
                if old.sources.contains_key(*id) {
                    old_sources.push(((*id).to_owned(), inst));
                } else {
                    old_others.push(((*id).to_owned(), inst));
                }
            }
        }
        drop(old_inputs);
        // 3. Old sinks end (or deliver on beside their replacement); new
        // sinks, then transforms start; old sources stop (checkpoints
        // saved) and new ones start; the old transforms drain beside.
        for retiring in [&mut self.retiring, &mut self.retiring_transforms] {
            retiring.retain(|(_, i)| i.tasks.iter().any(|t| !t.is_finished()));
        }
        let mut old_transforms = Vec::new();
        for (id, mut inst) in old_others {
            match old.sinks.get(&id) {
                // What a network sink holds in memory goes out from the old
                // instance, beside the new one (its retries, its dead
                // letters): waiting for it would stall the reload for as
                // long as its receiver is down.
                Some(c) if c.is_network() && !c.buffer().is_disk() => {
                    self.retiring.push((id, inst));
                }
                // A disk buffer stays on disk for the new instance; a file
                // or the console is written by one instance at a time.
                Some(_) => Self::finish(&id, &mut inst, deadline).await,
                None => old_transforms.push((id, inst)),
            }
        }
        for (id, sink) in &new.sinks {
            if let Some(rx) = receivers.remove(id) {
                if let Err(e) = self.start_sink(id, sink, rx).await {
                    self.fall_back(id, &old, failed, e).await;
                }
            }
        }
        for id in &graph.transform_order {
            if let (Some(t), Some(rx)) = (new.transforms.get(*id), receivers.remove(*id)) {
                if let Err(e) = self.start_transform(id, t, rx) {
                    self.fall_back(id, &old, failed, e).await;
                }
            }
        }
        if !self.started && !failed.is_empty() {
            // A first start that failed reads nothing: no source starts.
            return;
        }
        for (id, inst) in old_sources.iter_mut() {
            if let Some(stop) = inst.stop.take() {
                stop.trigger();
            }
            Self::finish(id, inst, deadline).await;
        }
        for (id, source) in &new.sources {
            if rebuilt.contains(id.as_str()) {
                if let Err(e) = self.start_source(id, source) {
                    self.fall_back(id, &old, failed, e).await;
                }
            }
        }
        // The old transforms pass on what they hold beside the new ones
        // (their channels are closed: they end once drained).
        self.retiring_transforms.extend(old_transforms);
        self.taps
            .set_running(self.instances.keys().cloned().collect());
        for id in &plan.removed {
            self.metrics.remove(id);
            self.buffers.remove(id);
            self.redactions.remove(id);
            self.detections.remove(id);
            self.deliveries.remove(id);
            self.resources.remove(id);
            self.capabilities.remove(id);
            self.consumer_lags.remove(id);
        }
    }

    /// Weak senders into the channels of `ids` (with a sink's tap).
    fn outputs(&self, ids: Vec<&str>) -> Vec<fanout::Output> {
        ids.into_iter()
            .filter_map(|d| {
                let tap = self
                    .config
                    .sinks
                    .contains_key(d)
                    .then(|| self.taps.point(d));
                self.inputs
                    .get(d)
                    .map(|tx| (Arc::from(d), tx.downgrade(), tap))
            })
            .collect()
    }

    /// Waits (until `deadline`) for a retired instance's tasks to end.
    async fn finish(id: &str, inst: &mut Instance, deadline: tokio::time::Instant) {
        for t in inst.tasks.iter_mut() {
            if tokio::time::timeout_at(deadline, &mut *t).await.is_err() {
                tracing::error!(component = %id, "the old instance did not drain in time; stopped");
                t.abort();
            }
        }
    }

    /// `id` could not start with its new config: started again with its old
    /// one, if it had one (on a fresh channel, rewired).
    async fn fall_back(
        &mut self,
        id: &str,
        old: &Config,
        failed: &mut Vec<anyhow::Error>,
        e: anyhow::Error,
    ) {
        if !self.started {
            tracing::error!(component = %id, error = %format!("{e:#}"), "this component does not start");
            failed.push(e);
            return;
        }
        tracing::error!(component = %id, error = %format!("{e:#}"), "reload: the new config of this component does not start");
        failed.push(e);
        // The old table back (none, for a component the reload added), its
        // channel made again and the fan-outs fed as that config says.
        self.config.sources.remove(id);
        self.config.transforms.remove(id);
        self.config.sinks.remove(id);
        if let Some(c) = old.sources.get(id) {
            self.config.sources.insert(id.to_owned(), c.clone());
        } else if let Some(c) = old.transforms.get(id) {
            self.config.transforms.insert(id.to_owned(), c.clone());
        } else if let Some(c) = old.sinks.get(id) {
            self.config.sinks.insert(id.to_owned(), c.clone());
        }
        self.inputs.remove(id);
        let rx = if old.transforms.contains_key(id) || old.sinks.contains_key(id) {
            let capacity = old
                .sinks
                .get(id)
                .map_or(CHANNEL_CAPACITY, |s| s.buffer().input_capacity());
            let (tx, rx) = mpsc::channel(capacity);
            self.inputs.insert(id.to_owned(), tx);
            Some(rx)
        } else {
            None
        };
        let graph = self.config.graph();
        for u in self
            .config
            .sources
            .keys()
            .chain(self.config.transforms.keys())
        {
            if let Some(w) = self.wirings.get(u) {
                w.set(self.outputs(graph.outputs_of(u)));
            }
        }
        let restored = match (
            old.sources.get(id),
            old.transforms.get(id),
            old.sinks.get(id),
            rx,
        ) {
            (Some(c), _, _, _) => self.start_source(id, c),
            (_, Some(c), _, Some(rx)) => self.start_transform(id, c, rx),
            (_, _, Some(c), Some(rx)) => self.start_sink(id, c, rx).await,
            _ => return,
        };
        match restored {
            Ok(()) => tracing::warn!(component = %id, "reload: running with its old config"),
            Err(e) => {
                tracing::error!(component = %id, error = %format!("{e:#}"), "reload: its old config does not start either; the component is down")
            }
        }
    }

    /// Spawns one task of component `id`, which reports its end, and
    /// whether it panicked (the panic is caught: the task ends normally
    /// for whoever waits on it).
    fn spawn(
        &self,
        id: &str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        use futures::FutureExt as _;
        let (done, name, generation) = (self.done_tx.clone(), id.to_owned(), self.generation);
        tokio::spawn(async move {
            let panic = std::panic::AssertUnwindSafe(task)
                .catch_unwind()
                .await
                .err()
                .map(|payload| panic_message(payload.as_ref()));
            let _ = done.send(Ended {
                id: name,
                generation,
                panic,
            });
        })
    }

    fn install(
        &mut self,
        id: &str,
        tasks: Vec<JoinHandle<()>>,
        stop: Option<shutdown::ShutdownTrigger>,
    ) {
        self.instances.insert(
            id.to_owned(),
            Instance {
                generation: self.generation,
                tasks,
                stop,
            },
        );
    }

    fn metrics_of(&self, id: &str) -> Arc<ComponentMetrics> {
        self.metrics.get(id).cloned().unwrap_or_default()
    }

    async fn start_sink(
        &mut self,
        id: &str,
        sink: &SinkConfig,
        input: mpsc::Receiver<Envelope>,
    ) -> anyhow::Result<()> {
        self.generation += 1;
        let data_dir = self.config.data_dir.clone();
        let buffer = lumen_sinks::buffer::start(id, sink.buffer(), &data_dir, input)
            .with_context(|| format!("starting the buffer of sink `{id}`"))?;
        let rx = buffer.output;
        if !sink.buffer().is_disk() {
            // With `block`, the channel is the buffer (drop_newest set its own).
            if let Some(tx) = self.inputs.get(id) {
                let _ = buffer.metrics.queue.set(tx.downgrade());
            }
        }
        self.buffers.insert(id.to_owned(), buffer.metrics.clone());
        let mut tasks: Vec<JoinHandle<()>> = buffer
            .tasks
            .into_iter()
            .map(|t| self.spawn(id, t))
            .collect();
        let m = self.metrics_of(id);
        let name = id.to_owned();
        // A network sink: built (config checked), checked (healthcheck,
        // templates), then run in its own task. A failed check holds the
        // sink's events in its buffer until its receiver answers (see
        // `lumen_sinks::health`), unless the check is required.
        let disk = sink.buffer().is_disk();
        let require = self.options.require_healthy;
        macro_rules! network_sink {
            ($sink:ty, $config:expr, $kind:literal) => {{
                let context = || format!("starting sink `{id}` ({})", $kind);
                let s = <$sink>::new(id, (**$config).clone(), &data_dir, m.clone())
                    .with_context(context)?;
                let first = s.start().await.err();
                match &first {
                    Some(why) if require || s.healthcheck_config().require => {
                        return Err(anyhow::Error::new(RequiredHealthcheckFailed {
                            sink: id.to_owned(),
                            kind: $kind,
                            why: why.clone(),
                        }));
                    }
                    Some(why) => lumen_sinks::health::report(id, &m, why),
                    None => m.set_health(Health::Healthy, None),
                }
                self.deliveries.insert(id.to_owned(), s.delivery_metrics());
                self.spawn(id, async move {
                    if let Some(first) = first {
                        let healthy = lumen_sinks::health::until_healthy(
                            &name,
                            &m,
                            first,
                            || s.start(),
                            &rx,
                            disk,
                        )
                        .await;
                        if !healthy {
                            return;
                        }
                    }
                    s.run(rx).await
                })
            }};
        }
        let task = match sink {
            SinkConfig::File(c) => {
                let s = FileSink::new(c.clone(), m);
                let file = s
                    .open()
                    .await
                    .with_context(|| format!("starting sink `{id}` (file)"))?;
                self.spawn(id, async move {
                    if let Err(e) = s.run(file, rx).await {
                        tracing::error!(component = %name, error = %e, "sink stopped");
                    }
                })
            }
            SinkConfig::Console(c) => {
                let s = ConsoleSink::new(c.clone(), m);
                self.spawn(id, async move { s.run(rx).await })
            }
            SinkConfig::Elasticsearch(c) => network_sink!(ElasticsearchSink, c, "elasticsearch"),
            SinkConfig::SplunkHec(c) => network_sink!(SplunkHecSink, c, "splunk_hec"),
            SinkConfig::Kafka(c) => network_sink!(KafkaSink, c, "kafka"),
            SinkConfig::Otlp(c) => network_sink!(OtlpSink, c, "otlp"),
        };
        tasks.push(task);
        self.install(id, tasks, None);
        Ok(())
    }

    fn fanout(&self, id: &str) -> Fanout {
        Fanout::new(self.wirings.get(id).cloned().unwrap_or_default())
    }

    fn start_transform(
        &mut self,
        id: &str,
        transform: &TransformConfig,
        rx: mpsc::Receiver<Envelope>,
    ) -> anyhow::Result<()> {
        self.generation += 1;
        #[cfg(debug_assertions)]
        if std::env::var("LUMEN_TEST_PANIC_IN").is_ok_and(|v| v == id) {
            // Fault injection for the tests of a failing component (debug
            // builds only): this transform panics on its first event.
            let mut rx = rx;
            let task = self.spawn(id, async move {
                let _first = rx.recv().await;
                panic!("injected by LUMEN_TEST_PANIC_IN on the first event");
            });
            self.install(id, vec![task], None);
            return Ok(());
        }
        let (out, m, name) = (self.fanout(id), self.metrics_of(id), id.to_owned());
        let task = match transform.clone() {
            TransformConfig::Filter(c) => self.spawn(id, async move {
                crate::transforms::filter::run(c, rx, out, m).await;
            }),
            TransformConfig::Redact(c) => {
                let key = crate::transforms::redact::load_key(&c, &self.config.data_dir, id)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("starting transform `{id}` (redact)"))?;
                let redactor = crate::transforms::redact::Redactor::new(&c, key)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("starting transform `{id}` (redact)"))?;
                self.redactions
                    .insert(id.to_owned(), redactor.metrics.clone());
                self.spawn(id, async move {
                    crate::transforms::redact::run(name, redactor, rx, out, m).await;
                })
            }
            TransformConfig::RateLimit(c) => self.spawn(id, async move {
                crate::transforms::rate_limit::run(name, c, rx, out, m).await;
            }),
            TransformConfig::Detect(c) => {
                let detector = crate::transforms::detect::Detector::new(&c)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("starting transform `{id}` (detect)"))?;
                self.detections
                    .insert(id.to_owned(), detector.metrics.clone());
                self.spawn(id, async move {
                    crate::transforms::detect::run(name, detector, rx, out, m).await;
                })
            }
        };
        self.install(id, vec![task], None);
        Ok(())
    }

    fn start_source(&mut self, id: &str, source: &SourceConfig) -> anyhow::Result<()> {
        self.generation += 1;
        let out = self.fanout(id);
        if out.is_empty() {
            tracing::warn!(component = %id, "source has no downstream component; not started");
            return Ok(());
        }
        let (trigger, sig) = shutdown::channel();
        let (m, host) = (self.metrics_of(id), self.host.clone());
        let task = match source {
            SourceConfig::Ebpf(c) => {
                let src = EbpfSource::start(c.clone(), host, m)
                    .with_context(|| format!("starting source `{id}` (ebpf)"))?;
                self.resources.insert(id.to_owned(), src.resource_metrics());
                self.capabilities.insert(id.to_owned(), src.capabilities());
                self.spawn(id, async move { src.run(out, sig).await })
            }
            SourceConfig::K8sAuditWebhook(c) => {
                let src = K8sAuditWebhookSource::new(c.clone(), host, m)
                    .with_context(|| format!("starting source `{id}` (k8s_audit_webhook)"))?;
                self.spawn(id, async move { src.run(out, sig).await })
            }
            SourceConfig::K8sAuditFile(c) => {
                let src = K8sAuditFileSource::new(c.clone(), host, m, &self.config.data_dir, id)
                    .with_context(|| format!("starting source `{id}` (k8s_audit_file)"))?;
                self.spawn(id, async move { src.run(out, sig).await })
            }
            SourceConfig::Kafka(c) => {
                let src = crate::sources::kafka::KafkaSource::new(
                    c.clone(),
                    host,
                    m,
                    &self.config.data_dir,
                    id,
                )
                .with_context(|| format!("starting source `{id}` (kafka)"))?;
                self.consumer_lags.insert(id.to_owned(), src.lag());
                self.spawn(id, async move { src.run(out, sig).await })
            }
        };
        self.install(id, vec![task], Some(trigger));
        Ok(())
    }

    /// Runs until `stop` resolves (a signal) or every component has ended,
    /// then drains. Each `reload` resolving (SIGHUP) reloads the config it
    /// returns (an invalid one is refused, the running topology kept).
    /// `telemetry` learns of every change; it goes unready when a component
    /// ends on its own and when the drain begins.
    pub async fn run_until<R>(
        mut self,
        stop: impl std::future::Future<Output = ()>,
        mut reload: R,
        telemetry: &crate::api::Telemetry,
    ) -> Stopped
    where
        R: Reloads,
    {
        use std::sync::atomic::Ordering;
        tokio::pin!(stop);
        let mut failed = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                next = reload.next() => {
                    let outcome = match next {
                        Err(e) => {
                            tracing::error!(error = %e, "reload refused: the config is invalid; the running config is kept");
                            "rejected"
                        }
                        Ok(config) => match self.reload(config).await {
                            Ok(c) if c.is_empty() => {
                                tracing::info!("reload: the config did not change");
                                "unchanged"
                            }
                            Ok(c) => {
                                tracing::info!(added = ?c.added, changed = ?c.changed, removed = ?c.removed, "reload applied");
                                "applied"
                            }
                            Err(e @ ReloadError::NeedsRestart(_)) => {
                                tracing::error!(error = %e, "reload refused");
                                "rejected"
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "reload failed");
                                "failed"
                            }
                        },
                    };
                    telemetry.reloaded(&self, outcome);
                }
                Some(ended) = self.done_rx.recv() => {
                    if let Some(panic) = ended.panic {
                        // Crash-only: a dead component is not left to
                        // look alive. The rest drains, Lumen exits non-zero
                        // and its supervisor restarts it.
                        telemetry.ready.store(false, Ordering::Relaxed);
                        let m = self.metrics_of(&ended.id);
                        m.add_errors(1);
                        m.set_health(Health::Failed, Some(format!("panicked: {panic}")));
                        tracing::error!(component = %ended.id, panic = %panic, "component failed (panicked): draining the rest and stopping Lumen");
                        failed.push(ended.id);
                        break;
                    }
                    if self.instances.get(&ended.id).is_some_and(|i| i.generation == ended.generation) {
                        telemetry.ready.store(false, Ordering::Relaxed);
                        tracing::warn!(component = %ended.id, "component finished on its own; /ready now answers 503");
                    }
                }
            }
        }
        telemetry.ready.store(false, Ordering::Relaxed);
        let stopped = self.shutdown().await;
        // Components that panicked while draining fail the run too.
        while let Ok(ended) = self.done_rx.try_recv() {
            if let Some(panic) = ended.panic {
                tracing::error!(component = %ended.id, panic = %panic, "component failed (panicked) while draining");
                failed.push(ended.id);
            }
        }
        if failed.is_empty() {
            return stopped;
        }
        failed.dedup();
        Stopped::Failed {
            components: failed,
            drained: stopped == Stopped::Drained,
        }
    }

    /// Stops the sources and drains the rest, in order, within the
    /// shutdown timeout.
    async fn shutdown(&mut self) -> Stopped {
        let timeout = Duration::from_secs(self.config.shutdown_timeout_secs);
        tracing::info!(
            timeout_secs = timeout.as_secs(),
            "shutting down: stopping sources, draining in-flight events"
        );
        let deadline = tokio::time::Instant::now() + timeout;
        for inst in self.instances.values_mut() {
            if let Some(t) = inst.stop.take() {
                t.trigger();
            }
        }
        // Sources; the old transforms (what they still hold goes
        // downstream while every downstream still reads); transforms in
        // order; sinks; old sinks. `None`: the running instance of the id.
        let running = |id: &str| (id.to_owned(), None);
        let retired = |v: Vec<(String, Instance)>| v.into_iter().map(|(id, i)| (id, Some(i)));
        let graph = self.config.graph();
        let mut all: Vec<(String, Option<Instance>)> =
            self.config.sources.keys().map(|id| running(id)).collect();
        all.extend(retired(std::mem::take(&mut self.retiring_transforms)));
        all.extend(graph.transform_order.iter().map(|id| running(id)));
        all.extend(self.config.sinks.keys().map(|id| running(id)));
        all.extend(retired(std::mem::take(&mut self.retiring)));
        let mut cut = Vec::new();
        for (id, retired) in all {
            // Its upstreams have stopped: its channel can close. (An old
            // instance's channel is closed already; its id may name a
            // running component whose turn comes.)
            if retired.is_none() {
                self.inputs.remove(&id);
            }
            let Some(mut inst) = retired.or_else(|| self.instances.remove(&id)) else {
                continue;
            };
            for t in inst.tasks.iter_mut() {
                match tokio::time::timeout_at(deadline, &mut *t).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(component = %id, error = %e, "component task failed while draining")
                    }
                    Err(_) => {
                        t.abort();
                        cut.push(id.clone());
                    }
                }
            }
        }
        Self::report(&self.metrics);
        if cut.is_empty() {
            Stopped::Drained
        } else {
            cut.dedup();
            Stopped::TimedOut(cut)
        }
    }

    /// Logs every component's counters.
    fn report(metrics: &BTreeMap<String, Arc<ComponentMetrics>>) {
        for (id, m) in metrics {
            let (received, sent, errors, dropped) = m.snapshot();
            tracing::info!(component = %id, received, sent, errors, dropped, "component totals");
        }
    }
}

/// The text of a panic's payload (`panic!("…")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Where reloaded configs come from: each `next` waits for a request (a
/// SIGHUP) and reads the config again.
pub trait Reloads {
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Config, crate::config::ConfigError>> + Send;
}

/// What the topology's unit tests send around.
#[cfg(test)]
pub(crate) mod testing {
    use lumen_schemas::event::LossReport;
    use lumen_schemas::{Event, EventKind};
    use lumen_sinks::ack::Ack;
    use lumen_sinks::Envelope;

    /// An event of no interest (an empty loss report).
    pub fn event() -> Event {
        Event {
            time: Default::default(),
            observed: Default::default(),
            host: Default::default(),
            kind: EventKind::Loss(LossReport::default()),
            redaction: Default::default(),
        }
    }

    /// [`event`] with nobody waiting for its acknowledgement.
    pub fn env() -> Envelope {
        Envelope::new(event(), Ack::none())
    }
}
