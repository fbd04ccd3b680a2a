//! Resource sampling (issue 18): every `interval_secs`, each container's,
//! pod's and the host's use of CPU, memory, I/O and PIDs, read from the
//! cgroup files (either layout, [`counters`]) and sent as
//! `EventKind::Resource` events: counters as deltas over the interval,
//! levels at its end (a cgroup that appeared since the last sample counts
//! from zero). Containers and pods are found by walking the cgroup
//! hierarchies and recognizing their directories as the kernel records'
//! attribution does; a cgroup gone since the last sample is forgotten.

pub mod counters;
pub mod findings;
pub mod sched;

use super::cgroupfs::Hierarchies;
use counters::Counters;
use lumen_schemas::event::{push, Host, ResourceSample, ResourceScope};
use lumen_schemas::time::Timestamp;
use lumen_schemas::{Event, EventKind};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `[sources.<id>.resources]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourcesConfig {
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Seconds between samples.
    #[serde(default = "default_interval")]
    pub interval_secs: f64,
    /// Run-queue waits per container from the scheduler's tracepoints.
    #[serde(default = "default_enabled")]
    pub scheduler: bool,
    /// Findings from the samples, and their thresholds.
    #[serde(default)]
    pub findings: findings::FindingsConfig,
}

impl Default for ResourcesConfig {
    fn default() -> Self {
        ResourcesConfig {
            enabled: default_enabled(),
            interval_secs: default_interval(),
            scheduler: default_enabled(),
            findings: findings::FindingsConfig::default(),
        }
    }
}

fn default_enabled() -> bool {
    true
}

fn default_interval() -> f64 {
    10.0
}

impl ResourcesConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.interval_secs >= 0.1 && self.interval_secs.is_finite()) {
            return Err(format!(
                "resources.interval_secs must be at least 0.1, not {}",
                self.interval_secs
            ));
        }
        self.findings.validate()
    }
}

/// Containers whose series `/metrics` shows at most (the rest are counted
/// in `lumen_container_series_dropped`).
pub const MAX_SERIES: usize = 2000;

/// Each live container's lifetime counters, for `/metrics`: replaced at
/// every sample, so a gone container's series go with it.
#[derive(Debug, Default)]
pub struct ResourceMetrics {
    state: std::sync::Mutex<(Vec<ContainerSeries>, u64)>,
}

/// One container's series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSeries {
    pub container_id: String,
    pub pod_uid: String,
    /// The pod's name and namespace, when the Kubernetes pod cache is on
    /// and knows the pod ("" otherwise).
    pub pod: String,
    pub namespace: String,
    pub counters: Counters,
    /// Its run-queue waits since Lumen started (when the scheduler
    /// programs run), all CPUs together.
    pub sched: Option<lumen_common::SchedStats>,
}

impl ResourceMetrics {
    /// The series now, and how many containers did not fit.
    pub fn snapshot(&self) -> (Vec<ContainerSeries>, u64) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, series: Vec<ContainerSeries>, dropped: u64) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (series, dropped);
    }
}

/// Gives the series of pods the cache knows their names and namespaces.
fn name_pods(series: &mut [ContainerSeries], pods: &super::k8s_pods::PodCache) {
    for s in series {
        if let Some(info) = pods.get(&s.pod_uid) {
            s.pod.clone_from(&info.name);
            s.namespace.clone_from(&info.namespace);
        }
    }
}

/// How deep below a hierarchy's root containers are looked for
/// (`kubepods/burstable/pod<uid>/<id>` is 4).
const MAX_DEPTH: usize = 8;

/// The sampler's state between samples.
#[derive(Debug)]
pub struct Sampler {
    hierarchies: Hierarchies,
    /// Each cgroup's counters at the last sample.
    last: HashMap<String, Counters>,
    at: Option<Instant>,
    online_cpus: u32,
    /// The scheduler programs' maps, when they run, and their counters at
    /// the last sample.
    sched: Option<sched::SchedMaps>,
    sched_last: Option<sched::Reading>,
    /// Each cgroup's id (unified hierarchy path → id) at the last sample.
    sched_ids: HashMap<String, u64>,
    /// Names the pods of the `/metrics` series, when on.
    pods: Option<super::k8s_pods::PodCache>,
}

impl Sampler {
    pub fn new(hierarchies: Hierarchies) -> Sampler {
        // SAFETY: sysconf has no preconditions.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        Sampler {
            hierarchies,
            last: HashMap::new(),
            at: None,
            online_cpus: u32::try_from(online).unwrap_or(1).max(1),
            sched: None,
            sched_last: None,
            sched_ids: HashMap::new(),
            pods: None,
        }
    }

    /// Names the pods of its `/metrics` series from this cache.
    pub fn with_pods(mut self, pods: Option<super::k8s_pods::PodCache>) -> Sampler {
        self.pods = pods;
        self
    }

    /// Also reports each container's run-queue waits from these maps.
    pub fn with_sched(mut self, maps: sched::SchedMaps) -> Sampler {
        self.sched = Some(maps);
        self
    }

    /// The host's, pods' and containers' cgroups now: (path, scope).
    pub fn cgroups(&self) -> Vec<(String, ResourceScope)> {
        self.cgroups_and_ids(None)
    }

    /// [`Sampler::cgroups`], and every cgroup of the unified hierarchy by
    /// id into `ids` (the scheduler maps' keys: id → path, "" for the
    /// root), from the same walk.
    pub fn cgroups_and_ids(
        &self,
        mut ids: Option<&mut HashMap<u64, String>>,
    ) -> Vec<(String, ResourceScope)> {
        let mut found = vec![(String::new(), ResourceScope::Host)];
        if let Some(unified) = self.hierarchies.unified.as_deref() {
            if let (Some(ids), Ok(meta)) = (ids.as_deref_mut(), std::fs::metadata(unified)) {
                ids.insert(std::os::unix::fs::MetadataExt::ino(&meta), String::new());
            }
            walk(unified, unified, 0, false, &mut found, &mut ids);
        }
        for root in [self.hierarchies.v1("cpu"), self.hierarchies.v1("memory")]
            .into_iter()
            .flatten()
        {
            walk(root, root, 0, false, &mut found, &mut None);
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        found
    }

    /// Reads every cgroup: an event for each, but none at the very first
    /// sample (it only sets the baseline).
    pub fn sample(&mut self, host: &Arc<Host>) -> Vec<Event> {
        let reading = self.sched.as_ref().map(sched::SchedMaps::read);
        self.sample_with(host, reading)
    }

    /// [`Sampler::sample`] with the scheduler maps' counters as `reading`
    /// says them (lifetime counters; `None`: no scheduler view).
    pub fn sample_with(&mut self, host: &Arc<Host>, reading: Option<sched::Reading>) -> Vec<Event> {
        let mut paths = HashMap::new();
        let cgroups = self.cgroups_and_ids(reading.is_some().then_some(&mut paths));
        let sched = reading.and_then(|now| {
            let delta = self.sched_last.as_ref().map(|last| now.since(last));
            self.sched_last = Some(now);
            self.hierarchies.unified.as_ref()?;
            self.sched_ids = paths.iter().map(|(id, p)| (p.clone(), *id)).collect();
            let delta = delta?;
            let offenders = delta.offenders();
            Some(SchedView {
                paths,
                delta,
                offenders,
            })
        });
        let now = Instant::now();
        let elapsed = self.at.map(|at| now.duration_since(at));
        self.at = Some(now);
        let time = Timestamp::now();
        let mut seen = HashMap::with_capacity(self.last.len());
        let mut events = Vec::new();
        let zero = Counters::default();
        for (path, scope) in cgroups {
            let current = counters::of_cgroup(&self.hierarchies, &path);
            // A cgroup new since the last sample: all it counted happened
            // since then (an OOM kill at a container's start included). At
            // the very first sample, what cgroups counted before is history.
            let last = self.last.get(&path).unwrap_or(&zero);
            if let Some(elapsed) = elapsed {
                let mut sample = self.sample_of(&path, scope, last, &current, elapsed);
                if let (Some(view), ResourceScope::Container) = (&sched, scope) {
                    if let Some(id) = self.sched_ids.get(&path) {
                        view.fill(*id, &mut sample);
                    }
                }
                events.push(Event {
                    time,
                    observed: time,
                    host: host.clone(),
                    kind: EventKind::Resource(Box::new(sample)),
                    redaction: Default::default(),
                });
            }
            seen.insert(path, current);
        }
        self.last = seen;
        events
    }

    /// The containers' lifetime counters as of the last sample (at most
    /// [`MAX_SERIES`]), and how many more there were.
    pub fn series(&self) -> (Vec<ContainerSeries>, u64) {
        let mut series: Vec<ContainerSeries> = self
            .last
            .iter()
            .filter_map(|(path, counters)| {
                let components: Vec<&str> = path.rsplit('/').filter(|c| !c.is_empty()).collect();
                let parsed = crate::attribution::parse(&components);
                let sched = self
                    .sched_last
                    .as_ref()
                    .and_then(|r| r.cgroups.get(self.sched_ids.get(path)?).copied());
                Some(ContainerSeries {
                    container_id: parsed.container_id?.to_owned(),
                    pod_uid: parsed.pod_uid.unwrap_or_default(),
                    pod: String::new(),
                    namespace: String::new(),
                    counters: counters.clone(),
                    sched,
                })
            })
            .collect();
        series.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        if let Some(pods) = &self.pods {
            name_pods(&mut series, pods);
        }
        let dropped = series.len().saturating_sub(MAX_SERIES) as u64;
        series.truncate(MAX_SERIES);
        (series, dropped)
    }

    fn sample_of(
        &self,
        path: &str,
        scope: ResourceScope,
        last: &Counters,
        now: &Counters,
        elapsed: Duration,
    ) -> ResourceSample {
        let mut r = ResourceSample {
            scope: Some(scope),
            interval_ns: u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            online_cpus: self.online_cpus,
            usage: deltas(last, now),
            ..ResourceSample::default()
        };
        r.cgroup = push(&mut r.text, path);
        let components: Vec<&str> = path.rsplit('/').filter(|c| !c.is_empty()).collect();
        let parsed = crate::attribution::parse(&components);
        if let Some(id) = parsed.container_id {
            r.attribution.container_id = push(&mut r.text, id);
        }
        r.attribution.runtime = parsed.runtime;
        if let Some(uid) = &parsed.pod_uid {
            r.attribution.pod_uid = push(&mut r.text, uid);
        }
        r.attribution.qos_class = parsed.qos;
        r
    }
}

/// The scheduler maps' counters over the interval, and the cgroups'
/// names.
struct SchedView {
    paths: HashMap<u64, String>,
    delta: sched::Reading,
    offenders: HashMap<u64, Vec<(u64, lumen_common::PairStats)>>,
}

impl SchedView {
    /// Gives the sample of the cgroup `id` its scheduler view.
    fn fill(&self, id: u64, sample: &mut ResourceSample) {
        let stats = self.delta.cgroups.get(&id).copied().unwrap_or_default();
        let offenders = self.offenders.get(&id).map_or(&[][..], Vec::as_slice);
        sample.sched = Some(sched::sched_use(
            &stats,
            offenders,
            &self.paths,
            &mut sample.text,
        ));
    }
}

/// Counters as deltas from `last` to `now` (a counter that went back — a
/// reset — counts from zero); levels as `now` has them.
fn deltas(last: &Counters, now: &Counters) -> Counters {
    let d = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b >= a => Some(b - a),
        (_, b) => b,
    };
    let mut pressure_us = [None; 6];
    for (i, slot) in pressure_us.iter_mut().enumerate() {
        *slot = d(last.pressure_us[i], now.pressure_us[i]);
    }
    Counters {
        cpu_usage_ns: d(last.cpu_usage_ns, now.cpu_usage_ns),
        cpu_periods: d(last.cpu_periods, now.cpu_periods),
        cpu_throttled_periods: d(last.cpu_throttled_periods, now.cpu_throttled_periods),
        cpu_throttled_ns: d(last.cpu_throttled_ns, now.cpu_throttled_ns),
        cpu_quota: now.cpu_quota,
        memory_usage: now.memory_usage,
        memory_limit: now.memory_limit,
        memory_high_events: d(last.memory_high_events, now.memory_high_events),
        memory_max_events: d(last.memory_max_events, now.memory_max_events),
        memory_oom_events: d(last.memory_oom_events, now.memory_oom_events),
        memory_oom_kills: d(last.memory_oom_kills, now.memory_oom_kills),
        io_read_bytes: d(last.io_read_bytes, now.io_read_bytes),
        io_write_bytes: d(last.io_write_bytes, now.io_write_bytes),
        io_read_ops: d(last.io_read_ops, now.io_read_ops),
        io_write_ops: d(last.io_write_ops, now.io_write_ops),
        pids_current: now.pids_current,
        pids_limit: now.pids_limit,
        pids_max_events: d(last.pids_max_events, now.pids_max_events),
        pressure_us,
    }
}

/// Collects the pod and container cgroups below `dir` (relative to
/// `root`; `in_container`: `dir` is a container's or below it) and, into
/// `ids`, every cgroup's id: its directory's inode number, which the
/// directory entry already holds (no stat).
fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    in_container: bool,
    found: &mut Vec<(String, ResourceScope)>,
    ids: &mut Option<&mut HashMap<u64, String>>,
) {
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let rel = rel.to_string_lossy().into_owned();
        if let Some(ids) = ids.as_deref_mut() {
            ids.insert(std::os::unix::fs::DirEntryExt::ino(&entry), rel.clone());
        }
        let mut container = in_container;
        if !in_container {
            let components: Vec<&str> = rel.rsplit('/').collect();
            let parsed = crate::attribution::parse(&components);
            if parsed.container_id.is_some() {
                found.push((rel, ResourceScope::Container));
                container = true;
            } else if parsed.pod_uid.is_some() {
                found.push((rel, ResourceScope::Pod));
            }
        }
        // A container's sub-cgroups are its own business, but for the
        // ids: its tasks in them are named by the scheduler maps.
        if !container || ids.is_some() {
            walk(root, &path, depth + 1, container, found, ids);
        }
    }
}

/// Samples every `interval` until `tx` closes or shutdown; reads run on a
/// blocking thread (hundreds of small files).
pub async fn run(
    config: ResourcesConfig,
    mut sampler: Sampler,
    host: Arc<Host>,
    metrics: Arc<ResourceMetrics>,
    rules: Arc<std::sync::Mutex<findings::Findings>>,
    tx: tokio::sync::mpsc::Sender<Event>,
    mut shutdown: crate::topology::shutdown::ShutdownSignal,
) {
    let period = Duration::from_secs_f64(config.interval_secs);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ns_per_tick = 1_000_000_000 / clock_ticks_per_sec();
    let mut steal = host_steal_ticks(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let host_for_task = host.clone();
        let Ok((back, events, steal_now)) = tokio::task::spawn_blocking(move || {
            let events = sampler.sample(&host_for_task);
            let steal =
                host_steal_ticks(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
            (sampler, events, steal)
        })
        .await
        else {
            tracing::error!("ebpf source: resource sampling failed; stopped");
            return;
        };
        sampler = back;
        let (series, dropped) = sampler.series();
        metrics.replace(series, dropped);
        let mut raised = Vec::new();
        {
            let stolen = steal_now.saturating_sub(steal).saturating_mul(ns_per_tick);
            steal = steal_now;
            let mut rules = rules.lock().unwrap_or_else(|e| e.into_inner());
            rules.note_steal(stolen);
            rules.check(&events, &mut raised);
            rules.expire(Timestamp::now(), &mut raised);
        }
        for e in events.into_iter().chain(raised) {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// The host's steal time (all CPUs), in clock ticks, from `/proc/stat`
/// text: the eighth value of the `cpu` line (0 when absent: no
/// hypervisor reports it).
fn host_steal_ticks(stat: &str) -> u64 {
    stat.lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .and_then(|rest| rest.split_whitespace().nth(7))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `/proc/stat`'s unit (USER_HZ).
fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}
