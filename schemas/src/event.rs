//! The canonical event: one typed struct per kind of activity, with shared
//! objects (process, user, host) that every encoder reads the same way.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

/// One security event, as every source produces it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// When the activity happened (the kernel's clock, the audit stage time).
    pub time: Timestamp,
    /// When Lumen observed it.
    pub observed: Timestamp,
    /// The host that observed it.
    pub host: Arc<Host>,
    pub kind: EventKind,
    /// What a `redact` transform changed (names, never values).
    pub redaction: Marker,
}

/// The fields and the rules a `redact` transform applied to an event, each
/// once, in the order first applied. Empty when nothing was redacted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    pub fields: Vec<Cow<'static, str>>,
    pub rules: Vec<Cow<'static, str>>,
}

impl Redaction {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.rules.is_empty()
    }

    /// Empties it, keeping its room.
    pub fn clear(&mut self) {
        self.fields.clear();
        self.rules.clear();
    }

    /// Records that `rule` changed `field`.
    pub fn record(
        &mut self,
        field: impl Into<Cow<'static, str>>,
        rule: impl Into<Cow<'static, str>>,
    ) {
        push_new(&mut self.fields, field.into());
        push_new(&mut self.rules, rule.into());
    }

    /// Adds what another transform redacted to this.
    pub fn merge(&mut self, other: Redaction) {
        if self.is_empty() {
            *self = other;
            return;
        }
        for f in other.fields {
            push_new(&mut self.fields, f);
        }
        for r in other.rules {
            push_new(&mut self.rules, r);
        }
    }
}

/// What redact transforms changed in an event, as the event carries it:
/// shared, because the events a profile changes alike carry the same names
/// (one `Arc` for all of them: no allocation per event, and what an
/// encoder makes of the names is made once, see [`Marker::encoded`]).
/// Reads as a [`Redaction`] (empty when nothing was redacted) and is
/// serialized as one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marker(Option<Arc<Marked>>);

/// A [`Marker`]'s names and their encoded forms, made when first asked for.
#[derive(Debug, Default)]
pub struct Marked {
    names: Redaction,
    encoded: [std::sync::OnceLock<Box<[u8]>>; 2],
}

impl Clone for Marked {
    /// The names: encoded forms are of names that are about to change.
    fn clone(&self) -> Marked {
        Marked {
            names: self.names.clone(),
            encoded: Default::default(),
        }
    }
}

impl PartialEq for Marked {
    fn eq(&self, other: &Marked) -> bool {
        self.names == other.names
    }
}

impl Eq for Marked {}

static NOTHING: Redaction = Redaction {
    fields: Vec::new(),
    rules: Vec::new(),
};

/// Which encoded form of a [`Marker`] is asked for.
#[derive(Clone, Copy, Debug)]
pub enum MarkerForm {
    EcsLabels = 0,
    OcsfLabels = 1,
}

impl std::ops::Deref for Marker {
    type Target = Redaction;

    fn deref(&self) -> &Redaction {
        self.0.as_ref().map_or(&NOTHING, |m| &m.names)
    }
}

impl Marker {
    /// A marker for `names`, to be shared by every event they apply to.
    pub fn shared(names: Redaction) -> Marker {
        Marker((!names.is_empty()).then(|| {
            Arc::new(Marked {
                names,
                encoded: Default::default(),
            })
        }))
    }

    /// Adds what another transform redacted: `other` itself when nothing
    /// was before (the common case: no copy).
    pub fn merge(&mut self, other: &Marker) {
        match (&mut self.0, &other.0) {
            (_, None) => {}
            (None, Some(_)) => *self = other.clone(),
            (Some(mine), Some(theirs)) => {
                if mine.names != theirs.names {
                    Arc::make_mut(mine).names.merge(theirs.names.clone());
                }
            }
        }
    }

    /// The `form` of the names, made by `encode` the first time a marker
    /// that events share is asked for it; `None` when the marker is empty
    /// or this event's own (nothing to gain from keeping it: `encode` is
    /// for the caller to run).
    pub fn encoded(
        &self,
        form: MarkerForm,
        encode: impl FnOnce(&Redaction) -> Vec<u8>,
    ) -> Option<&[u8]> {
        let m = self.0.as_ref()?;
        if Arc::strong_count(m) < 2 {
            return None;
        }
        Some(m.encoded[form as usize].get_or_init(|| encode(&m.names).into_boxed_slice()))
    }
}

impl Serialize for Marker {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Marker {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Marker, D::Error> {
        Redaction::deserialize(d).map(Marker::shared)
    }
}

/// Appends `name` unless it is there. Names are mostly the same
/// `&'static str`s: where they point is compared before their bytes.
fn push_new(names: &mut Vec<Cow<'static, str>>, name: Cow<'static, str>) {
    if !names
        .iter()
        .any(|n| std::ptr::eq(n.as_ref(), name.as_ref()) || *n == name)
    {
        names.push(name);
    }
}

impl Event {
    /// An API-server audit event, timed by its stage (or its receipt, or
    /// `observed` when it carries neither).
    pub fn api_activity(activity: ApiActivity, host: Arc<Host>, observed: Timestamp) -> Event {
        Event {
            time: activity
                .stage_time
                .or(activity.request_received)
                .unwrap_or(observed),
            observed,
            host,
            kind: EventKind::ApiActivity(Box::new(activity)),
            redaction: Default::default(),
        }
    }
}

/// The host Lumen runs on; shared by every event it produces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    /// `uname -m` (`x86_64`).
    pub architecture: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum EventKind {
    /// A process started (exec), forked or ended (exit).
    Process(Box<ProcessEvent>),
    /// A call to the Kubernetes API server, from its audit log.
    ApiActivity(Box<ApiActivity>),
    /// A privilege-relevant syscall (credentials, capabilities, ptrace,
    /// kernel modules, BPF programs, mounts), successful or not.
    Privilege(Box<PrivilegeEvent>),
    /// A socket connect, accept, bind or listen (IPv4/IPv6).
    Network(Box<NetworkEvent>),
    /// Lumen lost kernel records (ring buffer full): how many, which kinds.
    Loss(LossReport),
    /// A file opened for writing or a sensitive file read; an unlink,
    /// rename, chmod or chown.
    File(Box<FileEvent>),
    /// A detection rule matched an event: the rule, and the event as
    /// evidence.
    Finding(Box<Finding>),
    /// A cgroup's (a container's, a pod's, the host's) use of CPU, memory,
    /// I/O and PIDs over one sampling interval.
    Resource(Box<ResourceSample>),
}

/// What a [`ResourceSample`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceScope {
    /// The root cgroup: the whole machine.
    Host,
    Pod,
    Container,
}

impl ResourceScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceScope::Host => "host",
            ResourceScope::Pod => "pod",
            ResourceScope::Container => "container",
        }
    }
}

/// A cgroup's resource use over one interval (see [`ResourceUse`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// `cgroup` and the attribution's strings live here.
    pub text: String,
    pub scope: Option<ResourceScope>,
    /// The cgroup's path below its hierarchy's root ("" for the host).
    pub cgroup: Str,
    pub attribution: Attribution,
    /// The interval's length, ns.
    pub interval_ns: u64,
    /// CPUs the machine has online (to normalize CPU use).
    pub online_cpus: u32,
    /// Counters as deltas over the interval; levels (usage, limits, tasks)
    /// at its end.
    pub usage: ResourceUse,
    /// The scheduler's view over the interval (a container's, when the
    /// scheduler programs run); `None` otherwise.
    pub sched: Option<SchedUse>,
}

/// A cgroup's run-queue waits over an interval: how often its tasks got a
/// CPU after waiting runnable (woken, or preempted), how long they waited,
/// how many of those waits were delays (at least the configured
/// `starvation_latency_ms`), how often they were preempted, and which other
/// cgroups held the CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedUse {
    pub waits: u64,
    pub wait_ns: u64,
    /// The upper bound of the log2 histogram bucket holding the 99th
    /// percentile wait, ns.
    pub wait_p99_ns: u64,
    /// Waits by length: bucket `i` counts waits under 2^i µs (bucket 0:
    /// under 1 µs); the last, every longer one. Trailing empty buckets
    /// are left out.
    pub wait_hist: Vec<u64>,
    /// Waits at least as long as the delay threshold, and their total, ns.
    pub delays: u64,
    pub delay_ns: u64,
    pub preempted: u64,
    /// The other cgroups whose tasks held the CPU when this one's waits
    /// ended (or that preempted it), most delay first (then most wait,
    /// then most preemptions), at most
    /// [`SchedUse::MAX_NEIGHBOURS`]. An idle CPU is nobody's.
    pub neighbours: Vec<Neighbour>,
}

impl SchedUse {
    pub const MAX_NEIGHBOURS: usize = 3;

    /// The mean wait, ns.
    pub fn wait_avg_ns(&self) -> u64 {
        self.wait_ns.checked_div(self.waits).unwrap_or(0)
    }
}

/// A cgroup that held the CPU while a sample's cgroup waited; its strings
/// live in the sample's `text`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    /// Its path on the unified hierarchy ("" for the root).
    pub cgroup: Str,
    /// Empty when it is no container (a host service, a pod's own cgroup).
    pub container_id: Str,
    pub pod_uid: Str,
    /// Waits of the sample's cgroup it ended, and how long it held the CPU
    /// during them (up to each wait's length), ns.
    pub waits: u64,
    pub wait_ns: u64,
    /// The same for the delays among those waits.
    pub delays: u64,
    pub delay_ns: u64,
    /// Preemptions of the sample's cgroup by it.
    pub preemptions: u64,
}

/// A cgroup's counters and levels, as its files say them (lifetime
/// counters) or over an interval (deltas). `None`: the files do not say (a
/// controller not enabled, no PSI on cgroup v1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUse {
    /// CPU time used, ns.
    pub cpu_usage_ns: Option<u64>,
    /// CFS bandwidth: enforcement periods, periods throttled, time
    /// throttled (ns).
    pub cpu_periods: Option<u64>,
    pub cpu_throttled_periods: Option<u64>,
    pub cpu_throttled_ns: Option<u64>,
    /// The CPU quota: (µs of CPU, per period of µs); `None`: no quota.
    pub cpu_quota: Option<(u64, u64)>,
    /// Memory charged, and the limit (`None`: none).
    pub memory_usage: Option<u64>,
    pub memory_limit: Option<u64>,
    /// `memory.events`: reclaim throttling (`high`), the limit hit
    /// (`max`), OOM, OOM kills (v1: `failcnt`, `oom_control`'s `oom_kill`).
    pub memory_high_events: Option<u64>,
    pub memory_max_events: Option<u64>,
    pub memory_oom_events: Option<u64>,
    pub memory_oom_kills: Option<u64>,
    /// Block I/O, all devices.
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    pub io_read_ops: Option<u64>,
    pub io_write_ops: Option<u64>,
    /// Tasks, the limit (`None`: none), forks refused at the limit.
    pub pids_current: Option<u64>,
    pub pids_limit: Option<u64>,
    pub pids_max_events: Option<u64>,
    /// PSI stall time, µs: `[cpu_some, cpu_full, memory_some,
    /// memory_full, io_some, io_full]`.
    pub pressure_us: [Option<u64>; 6],
}

impl ResourceUse {
    /// Indexes into [`ResourceUse::pressure_us`], with their names.
    pub const PSI: [(usize, &'static str); 6] = [
        (Self::PSI_CPU_SOME, "cpu_some_us"),
        (Self::PSI_CPU_FULL, "cpu_full_us"),
        (Self::PSI_MEMORY_SOME, "memory_some_us"),
        (Self::PSI_MEMORY_FULL, "memory_full_us"),
        (Self::PSI_IO_SOME, "io_some_us"),
        (Self::PSI_IO_FULL, "io_full_us"),
    ];
    pub const PSI_CPU_SOME: usize = 0;
    pub const PSI_CPU_FULL: usize = 1;
    pub const PSI_MEMORY_SOME: usize = 2;
    pub const PSI_MEMORY_FULL: usize = 3;
    pub const PSI_IO_SOME: usize = 4;
    pub const PSI_IO_FULL: usize = 5;
}

impl ResourceSample {
    pub fn s(&self, s: Str) -> &str {
        s.get(&self.text)
    }

    /// CPU used as a share of the whole machine, 0 to 1.
    pub fn cpu_share(&self) -> Option<f64> {
        let used = self.usage.cpu_usage_ns? as f64;
        let available = self.interval_ns as f64 * f64::from(self.online_cpus.max(1));
        (available > 0.0).then(|| (used / available).min(1.0))
    }

    /// Memory used as a share of the limit, 0 to 1 (`None` without one).
    pub fn memory_share(&self) -> Option<f64> {
        let limit = self.usage.memory_limit.filter(|l| *l > 0)? as f64;
        Some((self.usage.memory_usage? as f64 / limit).min(1.0))
    }
}

/// What a `detect` transform found: a rule that matched, how often for
/// its key since the last finding, and the event that matched.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finding {
    pub rule: Arc<RuleInfo>,
    /// Matches this finding stands for: 1, or more when matches for the
    /// same rule and key were suppressed since the previous finding.
    pub count: u64,
    /// When the first and the last of those matches happened.
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// The event that matched (the last one).
    pub evidence: Box<Event>,
}

/// A detection rule as findings describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    /// `lumen.container.drift_exec`, a Sigma rule's `id`, a user's id.
    pub id: String,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    /// Finding types (`Container Drift`, `Privilege Escalation`, …).
    pub types: Vec<String>,
    pub attacks: Vec<Attack>,
    /// Where the rule comes from: `builtin`, `lumen` (a rule file) or
    /// `sigma`.
    pub ruleset: String,
    pub references: Vec<String>,
}

/// A MITRE ATT&CK technique and the tactic it serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attack {
    /// `TA0002`.
    pub tactic_id: String,
    /// `Execution`.
    pub tactic: String,
    /// `T1610` or a sub-technique `T1611.001`.
    pub technique_id: String,
    pub technique: String,
}

/// How bad a finding is, as OCSF's `severity_id` counts (ECS
/// `event.severity` uses the same numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Informational = 1,
    Low = 2,
    #[default]
    Medium = 3,
    High = 4,
    Critical = 5,
}

impl Severity {
    pub fn id(self) -> u64 {
        self as u64
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }
}

/// A file operation; paths are absolute as the process sees them (from its
/// root: container-relative inside a container).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileEvent {
    pub op: FileOperation,
    pub process: Process,
    /// The file (rename: its old path).
    pub path: Str,
    /// rename: the new path.
    pub new_path: Str,
    /// open: `O_*` flags.
    pub flags: u32,
    /// chmod: the new mode; open with O_CREAT: the creation mode.
    pub mode: Option<u32>,
    /// chown: the new owner/group (`None`: unchanged).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The path is under a configured sensitive prefix.
    pub sensitive: bool,
}

impl FileEvent {
    pub const O_ACCMODE: u32 = 0o3;
    pub const O_CREAT: u32 = 0o100;
    pub const O_TRUNC: u32 = 0o1000;

    /// open with write, create or truncate intent.
    pub fn writes(&self) -> bool {
        self.flags & (Self::O_ACCMODE | Self::O_CREAT | Self::O_TRUNC) != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOperation {
    Open,
    Unlink,
    Rename,
    Chmod,
    Chown,
}

impl FileOperation {
    pub fn action(self) -> &'static str {
        match self {
            FileOperation::Open => "open",
            FileOperation::Unlink => "unlink",
            FileOperation::Rename => "rename",
            FileOperation::Chmod => "chmod",
            FileOperation::Chown => "chown",
        }
    }
}

/// Events Lumen did not pass on during an interval: kernel records it could
/// not read (the ring buffer was full), or events a rate limit suppressed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossReport {
    /// The interval the counts cover (for a rate limit: the first and the
    /// last suppressed event's time).
    pub since: crate::time::Timestamp,
    pub until: crate::time::Timestamp,
    /// Lost records per kind (`exec`, `exit`, `fork`, …), non-zero only.
    pub by_kind: Vec<(Cow<'static, str>, u64)>,
    pub cause: LossCause,
}

/// Why events were not passed on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LossCause {
    /// The kernel's ring buffer was full.
    #[default]
    KernelRingBuffer,
    /// A `rate_limit` transform suppressed them: its id and the key.
    RateLimit { transform: String, key: String },
    /// Nothing recorded the kernel's events for a while (how many is not
    /// known): why.
    KernelUnwatched { reason: String },
}

impl LossReport {
    pub fn total(&self) -> u64 {
        self.by_kind.iter().map(|(_, n)| n).sum()
    }

    /// "12 kernel records lost (exec 10, exit 2)", or "12 events suppressed
    /// by rate limit `limit` for key `c0ffee` (file_write 12)".
    pub fn message(&self) -> String {
        let mut s = match &self.cause {
            LossCause::KernelRingBuffer => format!("{} kernel records lost (", self.total()),
            LossCause::RateLimit { transform, key } => format!(
                "{} events suppressed by rate limit `{transform}` for key `{key}` (",
                self.total()
            ),
            LossCause::KernelUnwatched { reason } => {
                let ms = (self.until.0 - self.since.0).max(0) / 1_000_000;
                return format!(
                    "kernel events not recorded for {}.{:03} s: {reason}",
                    ms / 1000,
                    ms % 1000
                );
            }
        };
        for (i, (kind, n)) in self.by_kind.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(kind);
            s.push(' ');
            s.push_str(&n.to_string());
        }
        s.push(')');
        s
    }

    /// `kernel_events_lost` or `events_rate_limited` (ECS `event.action`).
    pub fn action(&self) -> &'static str {
        match self.cause {
            LossCause::KernelRingBuffer => "kernel_events_lost",
            LossCause::RateLimit { .. } => "events_rate_limited",
            LossCause::KernelUnwatched { .. } => "kernel_events_unwatched",
        }
    }
}

impl EventKind {
    /// The process that acted, for the kinds that have one.
    pub fn process(&self) -> Option<&Process> {
        match self {
            EventKind::Process(p) => Some(&p.process),
            EventKind::Privilege(p) => Some(&p.process),
            EventKind::Network(n) => Some(&n.process),
            EventKind::File(f) => Some(&f.process),
            EventKind::Finding(f) => f.evidence.kind.process(),
            EventKind::ApiActivity(_) | EventKind::Loss(_) | EventKind::Resource(_) => None,
        }
    }

    /// The process that acted, to change it.
    pub fn process_mut(&mut self) -> Option<&mut Process> {
        match self {
            EventKind::Process(p) => Some(&mut p.process),
            EventKind::Privilege(p) => Some(&mut p.process),
            EventKind::Network(n) => Some(&mut n.process),
            EventKind::File(f) => Some(&mut f.process),
            EventKind::Finding(f) => f.evidence.kind.process_mut(),
            EventKind::ApiActivity(_) | EventKind::Loss(_) | EventKind::Resource(_) => None,
        }
    }

    /// The container id of the acting process ("" when none or unknown).
    pub fn container_id(&self) -> &str {
        self.process()
            .map_or("", |p| p.attribution.container_id.get(&p.text))
    }

    /// The Kubernetes pod UID of the acting process ("" when none).
    pub fn pod_uid(&self) -> &str {
        self.process()
            .map_or("", |p| p.attribution.pod_uid.get(&p.text))
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Process(p) => match p.activity {
                ProcessActivity::Exec => "process_exec",
                ProcessActivity::Fork => "process_fork",
                ProcessActivity::Exit => "process_exit",
                ProcessActivity::OomKill => "process_oom_kill",
            },
            EventKind::ApiActivity(_) => "k8s_audit",
            EventKind::Finding(_) => "finding",
            EventKind::Resource(_) => "resource_sample",
            EventKind::Privilege(p) => p.op.kind_name(),
            EventKind::Loss(l) => match l.cause {
                LossCause::KernelRingBuffer | LossCause::KernelUnwatched { .. } => "loss",
                LossCause::RateLimit { .. } => "rate_limit_summary",
            },
            EventKind::File(f) => match f.op {
                FileOperation::Open if f.writes() => "file_write",
                FileOperation::Open => "file_read_sensitive",
                FileOperation::Unlink => "file_unlink",
                FileOperation::Rename => "file_rename",
                FileOperation::Chmod => "file_chmod",
                FileOperation::Chown => "file_chown",
            },
            EventKind::Network(n) => match n.op {
                NetworkOp::Connect => "network_connect",
                NetworkOp::Accept => "network_accept",
                NetworkOp::Bind => "network_bind",
                NetworkOp::Listen => "network_listen",
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessActivity {
    /// The process image was replaced by execve/execveat.
    Exec,
    /// A new process was created by fork/clone (it runs its parent's image).
    Fork,
    /// The process (thread group) exited.
    Exit,
    /// The kernel's OOM killer chose the process as its victim (it is
    /// being killed: its exit follows).
    OomKill,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessEvent {
    pub activity: ProcessActivity,
    pub process: Process,
    /// For exits: how it ended.
    pub exit: Option<ExitStatus>,
    /// For execs: what the executable is (drift, fileless).
    pub exe: ExecFacts,
}

/// What the kernel saw of an exec's executable file, and what Lumen knows
/// of how it got there: the facts behind drift and fileless execution.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecFacts {
    /// On an overlayfs upper layer: created or modified after the
    /// container's root was mounted, not part of its image.
    pub upper_layer: bool,
    /// Written, or made executable, by a process of the same container
    /// since Lumen watched it (any root file system, overlay or not).
    pub written_in_container: bool,
    /// A memfd (`memfd_create`): the program was never on a disk.
    pub memfd: bool,
    /// A file with no link left (deleted once started, or never linked).
    pub deleted: bool,
    /// On tmpfs or ramfs (`/dev/shm`, a tmpfs `/tmp`).
    pub tmpfs: bool,
    /// The executable as the kernel resolved it (absolute in the process's
    /// root, symlinks followed); used to match writes, not serialized.
    #[serde(skip)]
    pub path: String,
}

impl ExecFacts {
    /// Drift: the container runs a program its image did not have.
    pub fn drift(&self) -> bool {
        self.upper_layer || self.written_in_container
    }

    /// Why it is drift, in the names the schemas use.
    pub fn drift_reasons(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            (self.upper_layer, "overlay_upper_layer"),
            (self.written_in_container, "written_in_container"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
    }

    /// Fileless execution: nothing on a disk holds the program.
    pub fn fileless(&self) -> bool {
        self.memfd || self.deleted || self.tmpfs
    }

    /// Why it is fileless, in the names the schemas use.
    pub fn fileless_reasons(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            (self.memfd, "memfd"),
            (self.deleted, "deleted"),
            (self.tmpfs, "tmpfs"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
    }
}

/// A socket syscall and the socket's addresses after it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkEvent {
    pub op: NetworkOp,
    pub process: Process,
    /// The syscall's return value (`-errno` on failure; connect on a
    /// non-blocking socket returns `-EINPROGRESS`).
    pub result: i64,
    /// IP protocol number (6 TCP, 17 UDP, …).
    pub protocol: u16,
    /// This host's end.
    pub local: std::net::SocketAddr,
    /// The peer (connect, accept).
    pub remote: Option<std::net::SocketAddr>,
}

impl NetworkEvent {
    /// connect on a non-blocking socket is under way, not failed.
    pub const EINPROGRESS: i64 = 115;
    pub const ECONNREFUSED: i64 = 111;

    pub fn succeeded(&self) -> bool {
        self.result >= 0 || self.result == -Self::EINPROGRESS
    }

    /// `tcp`, `udp`, `icmp`, … (IANA keyword, lowercase as ECS wants).
    pub fn transport(&self) -> Option<&'static str> {
        match self.protocol {
            6 => Some("tcp"),
            17 => Some("udp"),
            1 => Some("icmp"),
            58 => Some("ipv6-icmp"),
            132 => Some("sctp"),
            _ => None,
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.local.is_ipv6()
    }
}

/// Socket syscalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkOp {
    /// Outbound: this host connects to `remote`.
    Connect,
    /// Inbound: `remote` connected to this host.
    Accept,
    Bind,
    Listen,
}

impl NetworkOp {
    pub fn action(self) -> &'static str {
        match self {
            NetworkOp::Connect => "connect",
            NetworkOp::Accept => "accept",
            NetworkOp::Bind => "bind",
            NetworkOp::Listen => "listen",
        }
    }
}

/// A privilege-relevant syscall.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrivilegeEvent {
    pub op: PrivilegeOp,
    /// The caller.
    pub process: Process,
    /// The syscall's return value: 0 or more on success, `-errno` on failure.
    pub result: i64,
    /// Credentials before and after the call.
    pub old: Credentials,
    pub new: Credentials,
    /// The ids the caller asked for (set*id: up to three, `u32::MAX` = unchanged).
    pub requested: [u32; 3],
    /// ptrace: the traced process.
    pub target_pid: Option<u32>,
    /// finit_module: the module file's name; bpf: the program's name.
    pub object_name: Str,
    /// bpf: the program type (`enum bpf_prog_type`).
    pub bpf_prog_type: Option<u32>,
    pub mount: Option<MountInfo>,
    /// setns: the namespace asked for.
    pub namespace: Option<NamespaceJoin>,
}

/// setns(2)'s target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceJoin {
    /// The `nstype` argument (`CLONE_NEW*` bits; 0: whatever the fd is).
    pub nstype: u32,
    /// The namespace the fd names, by number (the inode of
    /// `/proc/<pid>/ns/<type>`); 0 when the fd is no namespace file (a
    /// pidfd).
    pub inode: u64,
    /// Its type, from `nstype` or from the host's namespaces.
    pub kind: Option<NamespaceKind>,
    /// It is one of the host's (PID 1's) namespaces — asked for by its
    /// file, or, after a successful join by pidfd, where the process is now.
    pub host: bool,
}

/// A kind of Linux namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceKind {
    Mnt,
    Net,
    Pid,
    Uts,
    Ipc,
    Cgroup,
    User,
    Time,
}

impl NamespaceKind {
    pub const ALL: [NamespaceKind; 8] = [
        NamespaceKind::Mnt,
        NamespaceKind::Net,
        NamespaceKind::Pid,
        NamespaceKind::Uts,
        NamespaceKind::Ipc,
        NamespaceKind::Cgroup,
        NamespaceKind::User,
        NamespaceKind::Time,
    ];

    /// The name of its file in `/proc/<pid>/ns/`.
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceKind::Mnt => "mnt",
            NamespaceKind::Net => "net",
            NamespaceKind::Pid => "pid",
            NamespaceKind::Uts => "uts",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Cgroup => "cgroup",
            NamespaceKind::User => "user",
            NamespaceKind::Time => "time",
        }
    }

    /// Its `CLONE_NEW*` flag.
    pub fn clone_flag(self) -> u32 {
        match self {
            NamespaceKind::Mnt => 0x0002_0000,
            NamespaceKind::Net => 0x4000_0000,
            NamespaceKind::Pid => 0x2000_0000,
            NamespaceKind::Uts => 0x0400_0000,
            NamespaceKind::Ipc => 0x0800_0000,
            NamespaceKind::Cgroup => 0x0200_0000,
            NamespaceKind::User => 0x1000_0000,
            NamespaceKind::Time => 0x0000_0080,
        }
    }

    /// The kind an `nstype` names, when it names exactly one.
    pub fn of_nstype(nstype: u32) -> Option<NamespaceKind> {
        Self::ALL.into_iter().find(|k| k.clone_flag() == nstype)
    }
}

impl PrivilegeEvent {
    pub fn succeeded(&self) -> bool {
        self.result >= 0
    }
}

/// mount(2)'s arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    pub source: Str,
    pub target: Str,
    pub fstype: Str,
    pub flags: u64,
}

/// The privilege-relevant syscalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrivilegeOp {
    Setuid,
    Setreuid,
    Setresuid,
    Setgid,
    Setregid,
    Setresgid,
    Capset,
    PtraceAttach,
    InitModule,
    FinitModule,
    BpfProgLoad,
    Mount,
    Setns,
}

impl PrivilegeOp {
    /// The syscall (or action) name: ECS `event.action`.
    pub fn action(self) -> &'static str {
        match self {
            PrivilegeOp::Setuid => "setuid",
            PrivilegeOp::Setreuid => "setreuid",
            PrivilegeOp::Setresuid => "setresuid",
            PrivilegeOp::Setgid => "setgid",
            PrivilegeOp::Setregid => "setregid",
            PrivilegeOp::Setresgid => "setresgid",
            PrivilegeOp::Capset => "capset",
            PrivilegeOp::PtraceAttach => "ptrace_attach",
            PrivilegeOp::InitModule => "init_module",
            PrivilegeOp::FinitModule => "finit_module",
            PrivilegeOp::BpfProgLoad => "bpf_prog_load",
            PrivilegeOp::Mount => "mount",
            PrivilegeOp::Setns => "setns",
        }
    }

    /// The event kind for filters and logs.
    pub fn kind_name(self) -> &'static str {
        match self {
            PrivilegeOp::Setuid | PrivilegeOp::Setreuid | PrivilegeOp::Setresuid => {
                "privilege_setuid"
            }
            PrivilegeOp::Setgid | PrivilegeOp::Setregid | PrivilegeOp::Setresgid => {
                "privilege_setgid"
            }
            PrivilegeOp::Capset => "privilege_capset",
            PrivilegeOp::PtraceAttach => "privilege_ptrace",
            PrivilegeOp::InitModule | PrivilegeOp::FinitModule => "module_load",
            PrivilegeOp::BpfProgLoad => "bpf_prog_load",
            PrivilegeOp::Mount => "mount",
            PrivilegeOp::Setns => "privilege_setns",
        }
    }

    pub fn changes_uid(self) -> bool {
        matches!(
            self,
            PrivilegeOp::Setuid | PrivilegeOp::Setreuid | PrivilegeOp::Setresuid
        )
    }

    pub fn changes_gid(self) -> bool {
        matches!(
            self,
            PrivilegeOp::Setgid | PrivilegeOp::Setregid | PrivilegeOp::Setresgid
        )
    }
}

/// A task's credentials (`struct cred`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
}

impl Credentials {
    /// The ids, named as in `struct cred`.
    pub fn ids(&self) -> [(&'static str, u32); 8] {
        [
            ("uid", self.uid),
            ("euid", self.euid),
            ("suid", self.suid),
            ("fsuid", self.fsuid),
            ("gid", self.gid),
            ("egid", self.egid),
            ("sgid", self.sgid),
            ("fsgid", self.fsgid),
        ]
    }

    /// The capability sets, as bit masks.
    pub fn caps(&self) -> [(&'static str, u64); 3] {
        [
            ("cap_inheritable", self.cap_inheritable),
            ("cap_permitted", self.cap_permitted),
            ("cap_effective", self.cap_effective),
        ]
    }
}

/// How a process ended, decoded from the kernel's wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// `exit(code)` value, 0–255 (0 when killed by a signal).
    pub code: i32,
    /// Terminating signal, if one killed it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Decodes a wait(2) status (`code << 8 | signal`).
    pub fn from_wait_status(raw: u32) -> Self {
        let signal = (raw & 0x7f) as i32;
        Self {
            code: ((raw >> 8) & 0xff) as i32,
            signal: (signal != 0).then_some(signal),
        }
    }

    /// The value a shell would report: the code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match self.signal {
            Some(s) => 128 + s,
            None => self.code,
        }
    }
}

/// A process as the kernel described it. Its strings share one buffer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `executable`, `name` and `argv` live here.
    pub text: String,
    /// Absolute path of the executable, when known.
    pub executable: Str,
    /// The task name (`comm`).
    pub name: Str,
    /// argv, NUL-separated, argv[0] first.
    pub argv: Str,
    /// True when argv was longer than the kernel record could carry.
    pub args_truncated: bool,
    /// Cgroup v2 id of the process.
    pub cgroup_id: u64,
    /// Kernel start time (ns since boot): with `pid`, the process's identity.
    pub start_time_ns: u64,
    /// Which image the process runs: the kernel's `mm_struct` address,
    /// new at every exec (0: unknown). Only the process cache reads it; it
    /// is neither serialized nor buffered.
    #[serde(skip)]
    pub image_id: u64,
    /// Cgroup, container, pod and namespaces.
    pub attribution: Attribution,
    /// The parent, from the process cache (empty when unknown).
    pub parent: ParentInfo,
    /// Ancestors' pids, parent first, up to the cache's depth.
    pub ancestry: Vec<u32>,
    /// For a process in a container: the lineage it belongs to, from the
    /// process cache (none when unknown).
    pub entry_leader: Option<EntryLeader>,
}

/// The first process of a container process's lineage inside the
/// container's cgroup — its entry leader — and how that lineage came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryLeader {
    pub pid: u32,
    pub start_time_ns: u64,
    pub entry: ContainerEntry,
    /// The process is the container runtime setting the container up
    /// (runc's or crun's init, moved into the container's cgroup, before it
    /// runs the entrypoint or the exec'd command): its mounts, capsets and
    /// memfd re-execution are the runtime's, not the workload's.
    pub runtime_setup: bool,
}

/// How a lineage entered its container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerEntry {
    /// The container's own: started with it (its entrypoint and every
    /// descendant).
    Entrypoint,
    /// Entered later from outside: `runc exec`, `docker exec`,
    /// `kubectl exec`, `crictl exec`.
    Exec,
}

impl ContainerEntry {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerEntry::Entrypoint => "entrypoint",
            ContainerEntry::Exec => "exec",
        }
    }
}

/// What the process cache knows of a process's parent. Strings are in the
/// owning [`Process`]'s text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentInfo {
    pub executable: Str,
    pub name: Str,
    /// argv, NUL-separated.
    pub argv: Str,
    pub start_time_ns: u64,
}

/// Where a process runs. Strings are in the owning [`Process`]'s text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// The last components of the cgroup path, `/`-joined
    /// (`burstable/pod<uid>/<container id>`).
    pub cgroup: Str,
    /// Container id (64 hex digits for every runtime Lumen recognizes).
    pub container_id: Str,
    pub runtime: Option<ContainerRuntime>,
    /// Kubernetes pod UID.
    pub pod_uid: Str,
    pub qos_class: Option<QosClass>,
    /// From the Kubernetes API (optional enrichment): pod name and
    /// namespace, the pod's labels, the container's name and image.
    pub pod_name: Str,
    pub namespace: Str,
    pub labels: Vec<(Str, Str)>,
    pub container_name: Str,
    pub image: Str,
    /// Namespace inode numbers (0: unknown).
    pub pid_ns: u32,
    pub mnt_ns: u32,
    pub net_ns: u32,
}

/// The container runtime a cgroup name reveals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerRuntime {
    Docker,
    Containerd,
    CriO,
    Podman,
    /// A bare 64-hex cgroup: runc directly, or a CRI runtime with the
    /// cgroupfs driver (kubelet layout without a runtime prefix).
    Runc,
}

impl ContainerRuntime {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerRuntime::Docker => "docker",
            ContainerRuntime::Containerd => "containerd",
            ContainerRuntime::CriO => "cri-o",
            ContainerRuntime::Podman => "podman",
            ContainerRuntime::Runc => "runc",
        }
    }
}

/// Kubernetes pod QoS class, from the kubelet's cgroup layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// As Kubernetes writes it in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

impl Process {
    /// Builds a process's text from its parts.
    pub fn with_text(mut self, executable: &str, name: &str, args: &[&str]) -> Self {
        self.text.clear();
        self.executable = push(&mut self.text, executable);
        self.name = push(&mut self.text, name);
        let start = self.text.len();
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                self.text.push('\0');
            }
            self.text.push_str(a);
        }
        self.argv = Str::range(start, self.text.len());
        self
    }

    /// The text of one of this process's fields.
    pub fn s(&self, s: Str) -> &str {
        s.get(&self.text)
    }

    pub fn executable(&self) -> &str {
        self.executable.get(&self.text)
    }

    pub fn name(&self) -> &str {
        self.name.get(&self.text)
    }

    /// argv, argv[0] first.
    pub fn args(&self) -> impl Iterator<Item = &str> + Clone {
        split_argv(self.argv.get(&self.text))
    }

    /// The parent's argv, when known.
    pub fn parent_args(&self) -> impl Iterator<Item = &str> + Clone {
        split_argv(self.parent.argv.get(&self.text))
    }

    pub fn args_count(&self) -> usize {
        self.args().count()
    }
}

/// NUL-separated arguments (none for an empty area).
pub fn split_argv(argv: &str) -> impl Iterator<Item = &str> + Clone {
    argv.split('\0').filter(move |_| !argv.is_empty())
}

/// A string inside an event's text buffer: a byte range, empty when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Str {
    start: u32,
    end: u32,
}

impl Str {
    pub const EMPTY: Str = Str { start: 0, end: 0 };

    /// The range `start..end` (clamped to u32; event text is far smaller).
    pub fn range(start: usize, end: usize) -> Str {
        Str {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    pub fn is_empty(self) -> bool {
        self.start >= self.end
    }

    /// `(start, end)` byte offsets in the text buffer.
    pub fn bounds(self) -> (usize, usize) {
        (self.start as usize, self.end as usize)
    }

    /// The text this refers to in `buf` (empty if out of range).
    pub fn get(self, buf: &str) -> &str {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or("")
    }
}

/// Appends `s` to `buf` and returns where it is.
pub fn push(buf: &mut String, s: &str) -> Str {
    let start = buf.len();
    buf.push_str(s);
    Str::range(start, buf.len())
}

/// A Kubernetes API request, from an `audit.k8s.io` Event.
///
/// The event keeps its source line once, in `text`; string fields are
/// [`Str`] ranges into it (strings that had JSON escapes are unescaped and
/// appended after the line). An empty `Str` means "absent". Read fields with
/// [`ApiActivity::s`] or [`ApiActivity::opt`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ApiActivity {
    /// The source line, then unescaped strings.
    pub text: String,
    /// `text[..original_len]` is the event exactly as read.
    pub original_len: u32,
    /// `apiVersion` of the audit event itself (`audit.k8s.io/v1`).
    pub audit_api_version: Str,
    pub audit_id: Str,
    /// `RequestReceived`, `ResponseStarted`, `ResponseComplete`, `Panic`.
    pub stage: Str,
    /// `Metadata`, `Request`, `RequestResponse`, `None`.
    pub level: Str,
    pub verb: Str,
    pub request_uri: Str,
    pub user: K8sUser,
    pub impersonated_user: Option<K8sUser>,
    pub source_ips: Vec<Str>,
    pub user_agent: Str,
    pub object_ref: Option<ObjectRef>,
    pub response_status: Option<ResponseStatus>,
    pub request_received: Option<Timestamp>,
    pub stage_time: Option<Timestamp>,
    /// `authorization.k8s.io/decision`: `allow` or `forbid`.
    pub authz_decision: Str,
    /// `authorization.k8s.io/reason`.
    pub authz_reason: Str,
    /// Every annotation, in the order the event lists them.
    pub annotations: Vec<(Str, Str)>,
    /// Images of the containers in a pod `requestObject`.
    pub container_images: Vec<Str>,
    /// Where the event came from when it was wrapped (AKS diagnostic logs).
    pub wrapper: Option<Wrapper>,
    /// `original` as a JSON string literal, made once and shared by every
    /// encoder and sink that writes it.
    #[serde(skip)]
    pub original_literal: std::sync::OnceLock<Vec<u8>>,
}

impl ApiActivity {
    /// Calls `f` on every string field, in a fixed order, for code that
    /// moves the text around (a redaction rewriting the original): the
    /// caller repoints each.
    pub fn visit_strs_mut(&mut self, f: &mut dyn FnMut(&mut Str)) {
        for s in [
            &mut self.audit_api_version,
            &mut self.audit_id,
            &mut self.stage,
            &mut self.level,
            &mut self.verb,
            &mut self.request_uri,
            &mut self.user_agent,
            &mut self.authz_decision,
            &mut self.authz_reason,
        ] {
            f(s);
        }
        for u in std::iter::once(&mut self.user).chain(self.impersonated_user.as_mut()) {
            f(&mut u.username);
            f(&mut u.uid);
            u.groups.iter_mut().for_each(&mut *f);
        }
        self.source_ips.iter_mut().for_each(&mut *f);
        if let Some(o) = &mut self.object_ref {
            for s in [
                &mut o.resource,
                &mut o.namespace,
                &mut o.name,
                &mut o.uid,
                &mut o.api_group,
                &mut o.api_version,
                &mut o.resource_version,
                &mut o.subresource,
            ] {
                f(s);
            }
        }
        if let Some(r) = &mut self.response_status {
            for s in [&mut r.status, &mut r.reason, &mut r.message] {
                f(s);
            }
        }
        for (k, val) in &mut self.annotations {
            f(k);
            f(val);
        }
        self.container_images.iter_mut().for_each(&mut *f);
        if let Some(w) = &mut self.wrapper {
            w.visit_strs_mut(f);
        }
    }

    /// The text of a field.
    pub fn s(&self, s: Str) -> &str {
        s.get(&self.text)
    }

    /// The text of a field, `None` when absent.
    pub fn opt(&self, s: Str) -> Option<&str> {
        (!s.is_empty()).then(|| s.get(&self.text))
    }

    /// The texts of a list of fields.
    pub fn strs<'a>(&'a self, v: &'a [Str]) -> impl Iterator<Item = &'a str> + Clone + 'a {
        v.iter().map(move |x| x.get(&self.text))
    }

    /// The event exactly as read (one JSON document).
    pub fn original(&self) -> &str {
        self.text.get(..self.original_len as usize).unwrap_or("")
    }

    /// [`Self::original`] as an escaped JSON string literal, with quotes.
    pub fn original_literal(&self) -> &[u8] {
        self.original_literal.get_or_init(|| {
            let mut out = Vec::new();
            crate::json::write_escaped(&mut out, self.original());
            out
        })
    }

    /// True when the API server answered with an error status.
    pub fn failed(&self) -> Option<bool> {
        self.response_status.as_ref().map(|s| s.code >= 400)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct K8sUser {
    pub username: Str,
    pub uid: Str,
    pub groups: Vec<Str>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub resource: Str,
    pub namespace: Str,
    pub name: Str,
    pub uid: Str,
    pub api_group: Str,
    pub api_version: Str,
    pub resource_version: Str,
    pub subresource: Str,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseStatus {
    pub code: u16,
    pub status: Str,
    pub reason: Str,
    pub message: Str,
}

/// Metadata of a cloud log record that carried the audit event: an Azure
/// AKS diagnostic record, a GKE Cloud Audit Logs entry, or a CloudWatch Logs
/// event of an EKS cluster. A field the record does not have is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrapper {
    /// `aks`, `gke` or `eks`.
    pub provider: Cow<'static, str>,
    /// AKS: `category`.
    pub category: Str,
    /// AKS: `operationName`.
    pub operation_name: Str,
    /// AKS: `resourceId`.
    pub resource_id: Str,
    /// AKS: `properties.pod`.
    pub pod: Str,
    /// AKS: `properties.containerID`.
    pub container_id: Str,
    /// AKS: `time`; EKS: the CloudWatch event's timestamp (RFC 3339).
    pub time: Str,
    /// The cluster's name: GKE `resource.labels.cluster_name`, EKS from the
    /// log group `/aws/eks/<cluster>/cluster`, AKS from `resourceId`.
    pub cluster: Str,
    /// GCP project id, AWS account id (the CloudWatch `owner`), Azure
    /// subscription id.
    pub account: Str,
    /// GKE `resource.labels.location`: a region or a zone.
    pub location: Str,
    /// GKE `logName`; EKS: the log group.
    pub log_name: Str,
    /// EKS: the log stream (`kube-apiserver-audit-…`).
    pub log_stream: Str,
    /// GKE `insertId`; EKS: the CloudWatch event `id`.
    pub record_id: Str,
    /// GKE `protoPayload.methodName` (`io.k8s.core.v1.pods.create`).
    pub method: Str,
    /// GKE `protoPayload.resourceName` (`core/v1/namespaces/default/pods/web`).
    pub resource_name: Str,
    /// GKE `protoPayload.serviceName` (`k8s.io`).
    pub service: Str,
    /// GKE `protoPayload.status.code`: a `google.rpc.Code` (0 is OK).
    pub rpc_code: Option<i32>,
    /// GKE `protoPayload.authorizationInfo[]`.
    pub authorizations: Vec<Authorization>,
}

/// One authorization check of a GKE request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub permission: Str,
    pub resource: Str,
    pub granted: Option<bool>,
}

impl Wrapper {
    /// Calls `f` on every string field (see [`ApiActivity::visit_strs_mut`]).
    pub fn visit_strs_mut(&mut self, f: &mut dyn FnMut(&mut Str)) {
        for s in [
            &mut self.category,
            &mut self.operation_name,
            &mut self.resource_id,
            &mut self.pod,
            &mut self.container_id,
            &mut self.time,
            &mut self.cluster,
            &mut self.account,
            &mut self.location,
            &mut self.log_name,
            &mut self.log_stream,
            &mut self.record_id,
            &mut self.method,
            &mut self.resource_name,
            &mut self.service,
        ] {
            f(s);
        }
        for a in &mut self.authorizations {
            f(&mut a.permission);
            f(&mut a.resource);
        }
    }

    /// The same metadata with its strings copied from `from` (the text it
    /// points into) to the end of `to`.
    pub fn moved(&self, from: &str, to: &mut String) -> Wrapper {
        let mut w = self.clone();
        w.visit_strs_mut(&mut |s| {
            if !s.is_empty() {
                *s = push(to, s.get(from));
            }
        });
        w
    }

    /// `gcp`, `aws` or `azure`: ECS `cloud.provider`.
    pub fn cloud_provider(&self) -> &'static str {
        match &*self.provider {
            "gke" => "gcp",
            "eks" => "aws",
            _ => "azure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Redaction;

    #[test]
    fn redaction_markers_keep_each_name_once_in_first_seen_order() {
        let mut first = Redaction::default();
        first.record("user.name", "hash:user.name");
        first.record("user.name", "detector:email");
        let mut second = Redaction::default();
        second.record(String::from("user.name"), "hash:user.name");
        second.record("source.ip", "truncate_ip:source.ip");
        let mut merged = Redaction::default();
        merged.merge(first.clone());
        assert_eq!(merged, first, "into an empty marker: taken whole");
        merged.merge(second);
        assert_eq!(merged.fields, ["user.name", "source.ip"]);
        assert_eq!(
            merged.rules,
            ["hash:user.name", "detector:email", "truncate_ip:source.ip"]
        );
    }
}
