//! The `ebpf` source: kernel events from Lumen's BPF programs.
//!
//! Start-up: resolve kernel structure offsets from BTF ([`offsets`]), mount
//! tracefs if nobody has, load the programs, hand them the offsets, attach
//! them to the `sched` tracepoints, and read the ring buffer as records
//! arrive. Records become canonical events ([`decode`]); kernel-side drops
//! (ring buffer full) are read from a per-CPU counter map every few seconds,
//! logged and counted: loss is never silent.
//!
//! First slice: process exec and exit. This kernel has no kprobes; everything
//! here uses tracepoints.

pub mod capabilities;
pub mod cgroup_names;
pub mod cgroupfs;
pub mod decode;
pub mod drift;
mod handoff;
pub mod host_ns;
pub mod k8s_pods;
mod kfuncs;
pub mod offsets;
pub mod process_cache;
pub mod resources;
mod ring;

use crate::topology::fanout::Fanout;
use crate::topology::shutdown::ShutdownSignal;
use aya::maps::{Array, HashMap as KernelMap, LpmTrie, Map, MapData, PerCpuArray};
use aya::programs::{BtfTracePoint, RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use lumen_common::{
    drop_index, KernelOffsets, ProcFilter, RingConfig, COMM_LEN, EXCLUDED_COMMS, PREFIX_EXCLUDED,
    PREFIX_FLAG_EXCLUDED, PREFIX_FLAG_SENSITIVE, PREFIX_INCLUDED, PREFIX_MAX, PREFIX_SENSITIVE,
    PREFIX_SLOTS,
};
use lumen_schemas::event::{Host, LossCause, LossReport, ProcessActivity};
use lumen_schemas::time::Timestamp;
use lumen_schemas::{Event, EventKind};
use lumen_sinks::ack::Ack;
use lumen_sinks::{ComponentMetrics, Envelope};
use process_cache::ProcessCache;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// `[sources.<id>] type = "ebpf"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EbpfSourceConfig {
    /// Kernel BTF to resolve structure offsets from.
    #[serde(default = "default_btf_path")]
    pub btf_path: PathBuf,
    /// Seconds between reads of the kernel's drop counters.
    #[serde(default = "default_drop_check")]
    pub drop_check_interval_secs: u64,
    /// Size of the kernel ring buffer: a power of two, at least 4096.
    /// Larger absorbs longer bursts before records are dropped.
    #[serde(default = "default_ring_buffer_bytes")]
    pub ring_buffer_bytes: u32,
    /// Milliseconds between reads of the ring buffer: records wait there
    /// (the kernel does not wake Lumen for each) unless an eighth of the
    /// buffer fills first. 0: wake on every record (lowest latency, most
    /// CPU when events trickle).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Processes the user-space cache holds (parents, ancestry).
    #[serde(default = "default_process_cache_capacity")]
    pub process_cache_capacity: usize,
    /// Path prefixes whose reads are reported (writes are always). A
    /// leading `~/` means every home directory in /etc/passwd at start-up.
    #[serde(default = "default_sensitive_paths")]
    pub sensitive_paths: Vec<String>,
    /// Path prefixes of files never reported (checked in the kernel).
    #[serde(default = "default_exclude_paths")]
    pub exclude_paths: Vec<String>,
    /// Path prefixes reported even under an excluded one: by default the
    /// staging places of fileless payloads under `/dev/`.
    #[serde(default = "default_include_paths")]
    pub include_paths: Vec<String>,
    /// Report only tasks in containers (outside the host's mount namespace).
    #[serde(default)]
    pub containers_only: bool,
    /// Optional pod metadata from the Kubernetes API.
    #[serde(default)]
    pub kubernetes: k8s_pods::KubernetesConfig,
    /// Task names (comm, at most 15 bytes) whose process, file and network
    /// events are dropped in the kernel. Privilege events are never dropped
    /// by comm: a process chooses its own name.
    #[serde(default)]
    pub exclude_comms: Vec<String>,
    /// Sampling of each container's, pod's and the host's resource use.
    #[serde(default)]
    pub resources: resources::ResourcesConfig,
    /// Which cgroup names a task's container and pod: `auto` (the unified
    /// hierarchy's; a v1 controller's where that is the root: a v1-only
    /// host, a task placed in v1 controllers only), `unified`, or `v1`.
    #[serde(default)]
    pub cgroup_hierarchy: cgroupfs::CgroupHierarchy,
    /// The v1 controller read: by default the first of `memory`, `cpu`,
    /// `pids` mounted (from /proc/self/mountinfo at start).
    #[serde(default)]
    pub cgroup_v1_controller: Option<String>,
    /// A directory on bpffs (under /sys/fs/bpf, mounted if need be): at
    /// stop the programs stay attached and are pinned here with the ring
    /// buffer, and the next Lumen with the same programs and settings
    /// adopts them: a restart loses nothing. Unset: detached at stop.
    #[serde(default)]
    pub pin_path: Option<PathBuf>,
    /// Seconds pinned programs keep recording for a successor; after
    /// that they stay attached but idle until a Lumen starts with this
    /// `pin_path` or the directory is removed.
    #[serde(default = "default_handoff_grace")]
    pub handoff_grace_secs: u64,
}

fn default_handoff_grace() -> u64 {
    30
}

impl EbpfSourceConfig {
    /// What can be checked without the kernel (`lumen validate`, start).
    pub fn validate(&self) -> Result<(), String> {
        self.resources.validate()?;
        if let Some(dir) = &self.pin_path {
            handoff::validate(dir)?;
        }
        Ok(())
    }
}

/// The kernel's `FILTER` entry for a config; `host_mnt_ns` from /proc/1/ns/mnt,
/// `prefixes` the `PREFIXES` trie's ([`prefix_flags`]).
pub fn proc_filter(
    config: &EbpfSourceConfig,
    host_mnt_ns: u32,
    prefixes: &[(&str, u32)],
) -> Result<ProcFilter, EbpfError> {
    if config.exclude_comms.len() > EXCLUDED_COMMS {
        return Err(EbpfError::BadComm(format!(
            "{} exclude_comms; at most {EXCLUDED_COMMS}",
            config.exclude_comms.len()
        )));
    }
    let mut comms = [[0u8; COMM_LEN]; EXCLUDED_COMMS];
    for (slot, comm) in comms.iter_mut().zip(&config.exclude_comms) {
        if comm.is_empty() || comm.len() >= COMM_LEN {
            return Err(EbpfError::BadComm(format!(
                "{comm:?}: a comm has 1 to 15 bytes"
            )));
        }
        slot[..comm.len()].copy_from_slice(comm.as_bytes());
    }
    Ok(ProcFilter {
        containers_only: u32::from(config.containers_only),
        host_mnt_ns,
        comm_count: config.exclude_comms.len() as u32,
        _pad: 0,
        comms,
        prefix_second_bytes: ProcFilter::second_bytes(prefixes.iter().map(|(p, _)| p.as_bytes())),
    })
}

/// The inode of a namespace link such as /proc/1/ns/mnt (`mnt:[4026531841]`).
fn namespace_inode(link: &Path) -> Option<u32> {
    let target = std::fs::read_link(link).ok()?;
    let s = target.to_string_lossy();
    s.split('[').nth(1)?.trim_end_matches(']').parse().ok()
}

fn default_sensitive_paths() -> Vec<String> {
    [
        "/etc/shadow",
        "/etc/sudoers",
        "/etc/sudoers.d/",
        "~/.ssh/",
        "/root/.ssh/",
        "/var/run/secrets/kubernetes.io/",
        "/run/secrets/kubernetes.io/",
    ]
    .map(String::from)
    .to_vec()
}

fn default_exclude_paths() -> Vec<String> {
    ["/proc/", "/sys/", "/dev/"].map(String::from).to_vec()
}

fn default_include_paths() -> Vec<String> {
    ["/dev/shm/", "/dev/mqueue/"].map(String::from).to_vec()
}

/// The prefixes for the kernel's `PREFIXES` map, `~/` expanded with the
/// home directories of login users (uid 0 and 1000–65533) in `passwd` (the
/// contents of /etc/passwd).
pub fn expand_prefixes(
    sensitive: &[String],
    excluded: &[String],
    included: &[String],
    passwd: &str,
) -> Result<Vec<(u32, String)>, EbpfError> {
    // Login users' homes: root and regular users (uid >= 1000), not nobody.
    let mut homes: Vec<&str> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let uid: u32 = f.get(2)?.parse().ok()?;
            let home = *f.get(5)?;
            let login = uid == 0 || (1000..65534).contains(&uid);
            (login && home.len() > 1 && home.starts_with('/')).then_some(home)
        })
        .collect();
    homes.dedup();
    let mut out = Vec::new();
    for (kind, list) in [
        (PREFIX_SENSITIVE, sensitive),
        (PREFIX_EXCLUDED, excluded),
        (PREFIX_INCLUDED, included),
    ] {
        for p in list {
            let expanded: Vec<String> = match p.strip_prefix("~/") {
                Some(rest) => homes
                    .iter()
                    .map(|h| format!("{}/{rest}", h.trim_end_matches('/')))
                    .collect(),
                None => vec![p.clone()],
            };
            for e in expanded {
                if !e.starts_with('/') || e.len() >= PREFIX_MAX {
                    return Err(EbpfError::BadPrefix(e));
                }
                if !out.iter().any(|(k, x)| *k == kind && *x == e) {
                    out.push((kind, e));
                }
            }
        }
    }
    if out.len() > PREFIX_SLOTS as usize {
        return Err(EbpfError::TooManyPrefixes(out.len()));
    }
    Ok(out)
}

/// What a path under each configured prefix is, as the kernel's trie
/// stores it: the trie returns only the longest prefix a path starts with,
/// so each entry carries every configured prefix of itself. Excluded unless
/// an included prefix also holds it (`/dev/shm/` under `/dev/`), sensitive
/// if any sensitive one does.
pub fn prefix_flags(prefixes: &[(u32, String)]) -> Vec<(&str, u32)> {
    let mut out: Vec<(&str, u32)> = Vec::new();
    for (_, p) in prefixes {
        if out.iter().any(|(q, _)| q == p) {
            continue;
        }
        let holds = |kind| {
            prefixes
                .iter()
                .any(|(k, q)| *k == kind && p.starts_with(q.as_str()))
        };
        let mut flags = 0;
        if holds(PREFIX_EXCLUDED) && !holds(PREFIX_INCLUDED) {
            flags |= PREFIX_FLAG_EXCLUDED;
        }
        if holds(PREFIX_SENSITIVE) {
            flags |= PREFIX_FLAG_SENSITIVE;
        }
        out.push((p, flags));
    }
    out
}

fn default_process_cache_capacity() -> usize {
    65_536
}

/// 32 MiB: a burst of 50,000 file opens in 60 ms, faster than the reader
/// decodes them, fits without loss (8 MiB lost a fifth of it).
fn default_ring_buffer_bytes() -> u32 {
    32 * 1024 * 1024
}

fn default_poll_interval_ms() -> u64 {
    50
}

fn default_btf_path() -> PathBuf {
    PathBuf::from("/sys/kernel/btf/vmlinux")
}
fn default_drop_check() -> u64 {
    5
}

/// What the source needs, for the errors that come from lacking it.
const NEEDS: &str = "The ebpf source needs root, or CAP_BPF, CAP_PERFMON (and CAP_SYS_ADMIN to mount tracefs), on Linux 5.11+ with BTF (BPF ring buffers, BTF-typed task pointers)";

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(transparent)]
    Offsets(#[from] offsets::OffsetsError),
    #[error("loading the eBPF programs failed: {0}. {needs}", needs = NEEDS)]
    Load(#[source] aya::EbpfError),
    #[error("eBPF map `{0}` is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF program `{0}` is missing from the object")]
    MissingProgram(&'static str),
    #[error("eBPF map `{name}`: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("attaching `{program}` to tracepoint {category}:{name} failed: {source}")]
    Attach {
        program: &'static str,
        category: &'static str,
        name: &'static str,
        source: handoff::BoxError,
    },
    #[error("tracefs is not mounted (or not readable) and mounting it at /sys/kernel/tracing failed: {0}. {needs}", needs = NEEDS)]
    Tracefs(std::io::Error),
    #[error("ring buffer: {0}")]
    RingBuffer(std::io::Error),
    #[error("ring buffer: {0}")]
    Ring(#[from] ring::RingError),
    #[error("ring_buffer_bytes = {0}: must be a power of two and at least 4096")]
    RingBufferSize(u32),
    #[error("path prefix {0:?}: must be absolute (or start with ~/) and shorter than 64 bytes")]
    BadPrefix(String),
    #[error("{0} path prefixes after expanding ~/ (sensitive_paths + exclude_paths + include_paths); at most {PREFIX_SLOTS}")]
    TooManyPrefixes(usize),
    #[error("exclude_comms: {0}")]
    BadComm(String),
    #[error("{0}")]
    Resources(String),
    #[error(transparent)]
    Kubernetes(#[from] k8s_pods::KubernetesError),
    #[error("containers_only needs the host's mount namespace, but neither /proc/1/ns/mnt nor /proc/self/ns/mnt is readable")]
    HostNamespace,
    #[error("{0}")]
    Cgroup(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Handoff(#[from] handoff::HandoffError),
    #[error(transparent)]
    Kfunc(#[from] kfuncs::KfuncError),
}

/// The compiled kernel programs (built by build.rs).
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lumen-ebpf.o"));

/// The kernel object's maps, created in the kernel without its programs
/// loaded (needs CAP_BPF): for tests and benchmarks of the map readers.
pub fn unattached_object() -> Result<Ebpf, EbpfError> {
    EbpfLoader::new()
        .set_max_entries("EVENTS", 4096)
        .load(PROGRAMS)
        .map_err(EbpfError::Load)
}

/// Tracepoints the programs attach to.
const ATTACHMENTS: &[(&str, &str, &str)] = &[
    ("lumen_exec", "sched", "sched_process_exec"),
    ("lumen_exit", "sched", "sched_process_exit"),
];

/// A syscall watched through its tracepoints: its exit program, whether
/// an entry program (`lumen_enter_<name>`) keeps its arguments for the exit
/// (an open's exit reads them from the saved registers instead), and what
/// is not seen when the kernel lacks them (a syscall whose tracepoints the
/// kernel lacks costs coverage but not the source).
#[derive(Clone, Copy)]
struct Syscall {
    name: &'static str,
    exit: &'static str,
    entry: bool,
    coverage: &'static str,
}

/// The exit program opens share where the kernel cannot give an exit
/// program the saved arguments (`bpf_task_pt_regs`, Linux 5.15): there
/// each open keeps its entry program.
const OPENS_WITH_ENTRY: &str = "lumen_exit_opens";

impl Syscall {
    /// The exit program, and whether an entry program goes with it, where
    /// exit programs can (`saved_args`) or cannot read saved arguments.
    fn programs(&self, saved_args: bool) -> (&'static str, bool) {
        if self.entry || saved_args {
            (self.exit, self.entry)
        } else {
            (OPENS_WITH_ENTRY, true)
        }
    }

    const fn both(name: &'static str, exit: &'static str, coverage: &'static str) -> Self {
        Self {
            name,
            exit,
            entry: true,
            coverage,
        }
    }

    const fn exit_only(name: &'static str, exit: &'static str, coverage: &'static str) -> Self {
        Self {
            name,
            exit,
            entry: false,
            coverage,
        }
    }
}

/// The syscalls watched; a family's exit program is shared where the
/// entry programs keep the arguments.
const SYSCALLS: &[Syscall] = &[
    Syscall::both("setuid", "lumen_exit_privilege", "setuid events"),
    Syscall::both("setreuid", "lumen_exit_privilege", "setreuid events"),
    Syscall::both("setresuid", "lumen_exit_privilege", "setresuid events"),
    Syscall::both("setgid", "lumen_exit_privilege", "setgid events"),
    Syscall::both("setregid", "lumen_exit_privilege", "setregid events"),
    Syscall::both("setresgid", "lumen_exit_privilege", "setresgid events"),
    Syscall::both("capset", "lumen_exit_privilege", "capability changes"),
    Syscall::both("ptrace", "lumen_exit_privilege", "ptrace attach events"),
    Syscall::both(
        "init_module",
        "lumen_exit_privilege",
        "module loads from memory",
    ),
    Syscall::both(
        "finit_module",
        "lumen_exit_privilege",
        "module loads from files",
    ),
    Syscall::both("bpf", "lumen_exit_privilege", "BPF program loads"),
    Syscall::both("mount", "lumen_exit_privilege", "mount events"),
    Syscall::both("setns", "lumen_exit_privilege", "namespace joins (setns)"),
    Syscall::both("connect", "lumen_exit_network", "outbound connections"),
    Syscall::both(
        "accept",
        "lumen_exit_network",
        "inbound connections (accept)",
    ),
    Syscall::both(
        "accept4",
        "lumen_exit_network",
        "inbound connections (accept4)",
    ),
    Syscall::both("bind", "lumen_exit_network", "bind events"),
    Syscall::both("listen", "lumen_exit_network", "listen events"),
    Syscall::exit_only("open", "lumen_exit_open", "open(2)"),
    Syscall::exit_only("openat", "lumen_exit_openat", "openat(2)"),
    Syscall::exit_only("openat2", "lumen_exit_openat2", "openat2(2)"),
    Syscall::exit_only("creat", "lumen_exit_creat", "creat(2)"),
    Syscall::both("unlink", "lumen_exit_file", "unlink(2)"),
    Syscall::both("unlinkat", "lumen_exit_file", "unlinkat(2)"),
    Syscall::both("rename", "lumen_exit_file", "rename(2)"),
    Syscall::both("renameat", "lumen_exit_file", "renameat(2)"),
    Syscall::both("renameat2", "lumen_exit_file", "renameat2(2)"),
    Syscall::both("chmod", "lumen_exit_file", "chmod(2)"),
    Syscall::both("fchmod", "lumen_exit_file", "fchmod(2)"),
    Syscall::both("fchmodat", "lumen_exit_file", "fchmodat(2)"),
    Syscall::both("chown", "lumen_exit_file", "chown(2)"),
    Syscall::both("lchown", "lumen_exit_file", "lchown(2)"),
    Syscall::both("fchown", "lumen_exit_file", "fchown(2)"),
    Syscall::both("fchownat", "lumen_exit_file", "fchownat(2)"),
];

/// The error of attaching `program` to `category:name`.
fn attach_error(
    program: &'static str,
    category: &'static str,
    name: &'static str,
) -> impl Fn(handoff::BoxError) -> EbpfError {
    move |source| EbpfError::Attach {
        program,
        category,
        name,
        source,
    }
}

/// Syscalls of kernel modules, on a kernel built without module support
/// (no /proc/modules): nothing to watch, nothing missed.
fn without_modules(syscall: &str) -> bool {
    syscall.contains("init_module") && !Path::new("/proc/modules").exists()
}

/// Loads `program` unless it already is, and attaches it to `syscalls:<tracepoint>`.
fn attach_syscall(
    ebpf: &mut Ebpf,
    links: &mut handoff::Links,
    program: &str,
    tracepoint: &str,
) -> Result<(), String> {
    let p: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} is not in the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    if p.fd().is_err() {
        p.load().map_err(|e| format!("loading {program}: {e}"))?;
    }
    links
        .tracepoint(p, program, "syscalls", tracepoint)
        .map_err(|e| e.to_string())
}

/// Whether exit programs can read a syscall's saved arguments: the first
/// that does loads (the helper, `bpf_task_pt_regs`, is Linux 5.15+).
fn saved_args_readable(ebpf: &mut Ebpf) -> bool {
    let Some(program) = SYSCALLS.iter().find(|s| !s.entry).map(|s| s.exit) else {
        return false;
    };
    let loaded = match ebpf
        .program_mut(program)
        .and_then(|p| <&mut TracePoint>::try_from(p).ok())
    {
        // Test hook (debug builds only): opens as on kernels before 5.15.
        #[cfg(debug_assertions)]
        Some(_) if std::env::var_os("LUMEN_TEST_NO_SAVED_ARGS").is_some() => {
            Err("LUMEN_TEST_NO_SAVED_ARGS is set".to_owned())
        }
        Some(p) => p.load().map_err(|e| lumen_sinks::http::error_chain(&e)),
        None => Err(format!("program {program} is not in the object")),
    };
    if let Err(reason) = &loaded {
        tracing::info!(%reason, "ebpf source: exit programs cannot read a syscall's saved arguments on this kernel (bpf_task_pt_regs, Linux 5.15+): opens keep an entry program");
    }
    loaded.is_ok()
}

/// What is not seen for want of syscall tracepoints, by what `links` holds.
fn unavailable(links: &handoff::Links) -> Vec<&'static str> {
    let mut unavailable = Vec::new();
    for s in SYSCALLS {
        // Adopted links may be either of an open's ways.
        let attached = [true, false].into_iter().any(|saved_args| {
            let (exit, entry) = s.programs(saved_args);
            links.has(exit, &format!("sys_exit_{}", s.name))
                && (!entry
                    || links.has(
                        &format!("lumen_enter_{}", s.name),
                        &format!("sys_enter_{}", s.name),
                    ))
        });
        if !(attached || without_modules(s.name)) {
            unavailable.push(s.coverage);
        }
    }
    unavailable.dedup();
    unavailable
}

/// The scheduler programs (run-queue waits, kept in maps) on BTF
/// tracepoints, and their maps for the sampler; `None`, with a warning,
/// where this kernel's `sched_switch` lacks the `prev_state` argument
/// (before Linux 5.18).
fn attach_scheduler(
    ebpf: &mut Ebpf,
    links: &mut handoff::Links,
    btf_path: &Path,
    kernel_btf: &offsets::KernelBtf,
    delay_ns: u64,
) -> Result<Option<resources::sched::SchedMaps>, EbpfError> {
    if kernel_btf.raw_tracepoint_arg_count("sched_switch") != Some(4) {
        tracing::warn!("ebpf source: this kernel's sched_switch tracepoint does not pass prev_state (Linux 5.18+ does); run-queue waits are not measured");
        return Ok(None);
    }
    {
        let map = ebpf
            .map_mut("SCHED_CONFIG")
            .ok_or(EbpfError::MissingMap("SCHED_CONFIG"))?;
        let map_err = |source| EbpfError::Map {
            name: "SCHED_CONFIG",
            source,
        };
        let mut cfg: Array<_, lumen_common::SchedConfig> = Array::try_from(map).map_err(map_err)?;
        cfg.set(0, lumen_common::SchedConfig { delay_ns }, 0)
            .map_err(map_err)?;
    }
    let btf = aya::Btf::parse_file(btf_path, aya::Endianness::default()).map_err(|e| {
        attach_error("lumen_switch", "btf", "sched_switch")(Box::new(
            aya::programs::ProgramError::Btf(e),
        ))
    })?;
    for (program, name) in [
        ("lumen_switch", "sched_switch"),
        ("lumen_wakeup", "sched_wakeup"),
        ("lumen_wakeup_new", "sched_wakeup_new"),
    ] {
        let attach_err = attach_error(program, "btf", name);
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(program)
            .ok_or(EbpfError::MissingProgram(program))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| attach_err(e.into()))?;
        prog.load(name, &btf).map_err(|e| attach_err(e.into()))?;
        links.btf(prog, program, name).map_err(attach_err)?;
    }
    let maps =
        resources::sched::SchedMaps::take(ebpf).map_err(|e| EbpfError::Resources(e.to_string()))?;
    tracing::info!("ebpf source: run-queue waits measured (BTF tracepoints sched_switch, sched_wakeup, sched_wakeup_new)");
    Ok(Some(maps))
}

/// Raw tracepoints (BTF args, no tracefs needed) the programs attach to.
const RAW_ATTACHMENTS: &[(&str, &str)] = &[("lumen_fork", "sched_process_fork")];

/// A loaded and attached collector, ready to read.
pub struct EbpfSource {
    /// The loaded object (none when adopted from a predecessor).
    _ebpf: Option<Ebpf>,
    /// The attachments and the maps a successor would adopt.
    kernel: handoff::Kernel,
    /// Drops already reported (by a predecessor, when adopted).
    drops_reported: [u64; drop_index::COUNT as usize],
    /// Time the kernel was not watched before this start, when known.
    unwatched: Option<LossReport>,
    ring: AsyncFd<ring::Ring>,
    drops: PerCpuArray<MapData, u64>,
    config: EbpfSourceConfig,
    host: Arc<Host>,
    metrics: Arc<ComponentMetrics>,
    boot_offset_ns: i64,
    cache: ProcessCache,
    pods: Option<k8s_pods::PodCache>,
    resource_metrics: Arc<resources::ResourceMetrics>,
    sched_maps: Option<resources::sched::SchedMaps>,
    /// Whether the kernel reports OOM kills (`oom:mark_victim` attached).
    kernel_oom: bool,
    /// The names of the cgroups the records name by key.
    names: cgroup_names::CgroupNameCache,
    /// What this node lets it see, for `/metrics`.
    capabilities: Arc<Vec<capabilities::Capability>>,
}

impl std::fmt::Debug for EbpfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfSource")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn ensure_tracefs() -> Result<(), EbpfError> {
    let populated = |p: &str| {
        std::fs::read_dir(p)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    };
    if populated("/sys/kernel/tracing") || populated("/sys/kernel/debug/tracing") {
        return Ok(());
    }
    mount_kernel_fs(c"tracefs", c"/sys/kernel/tracing").map_err(EbpfError::Tracefs)?;
    tracing::info!("mounted tracefs at /sys/kernel/tracing");
    Ok(())
}

/// Mounts a kernel file system (tracefs, bpffs) of `fstype` at `target`.
fn mount_kernel_fs(fstype: &std::ffi::CStr, target: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `clock`'s time in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Wall-clock minus boot-time clock, to date kernel timestamps.
fn boot_offset_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME)
}

/// Everything the programs are given: what a successor must match to
/// adopt them ([`handoff`]).
struct Settings {
    size: u32,
    offsets: KernelOffsets,
    filter: ProcFilter,
    ring: RingConfig,
    /// The `PREFIXES` trie's entries.
    prefixes: Vec<(String, u32)>,
    /// The scheduler programs' delay threshold, when they run.
    sched_delay_ns: Option<u64>,
    /// The programs' object, its kfunc calls linked to this kernel.
    object: kfuncs::Linked,
}

impl Settings {
    fn identity(&self) -> [u8; 32] {
        let mut prefixes = Vec::new();
        for (p, flags) in &self.prefixes {
            prefixes.extend_from_slice(p.as_bytes());
            prefixes.push(0);
            prefixes.extend_from_slice(&flags.to_le_bytes());
        }
        let sched = self.sched_delay_ns.map(u64::to_le_bytes);
        handoff::identity(&[
            PROGRAMS,
            &self.size.to_le_bytes(),
            handoff::bytes_of(&self.offsets),
            handoff::bytes_of(&self.filter),
            handoff::bytes_of(&self.ring),
            &prefixes,
            sched.as_ref().map_or(&[][..], |b| &b[..]),
        ])
    }
}

/// The programs, attached, and what user space reads of them.
struct Attached {
    ebpf: Option<Ebpf>,
    kernel: handoff::Kernel,
    ring: ring::Ring,
    drops: PerCpuArray<MapData, u64>,
    sched_maps: Option<resources::sched::SchedMaps>,
    cgroup_names: Option<KernelMap<MapData, u64, lumen_common::CgroupNames>>,
    drops_reported: [u64; drop_index::COUNT as usize],
}

/// Completes the offsets from tracefs (mounted by then): before the
/// programs load, as the offsets are their `.rodata`.
fn settle_offsets(offsets: &mut KernelOffsets) {
    offsets.exit_group_dead =
        offsets::tracepoint_field("sched", "sched_process_exit", "group_dead").unwrap_or(0);
    // Test hook (debug builds only): the exit program as on kernels
    // before 6.16, which read the group's live count instead.
    #[cfg(debug_assertions)]
    if std::env::var_os("LUMEN_TEST_EXIT_BY_LIVE_COUNT").is_some() {
        offsets.exit_group_dead = 0;
    }
    tracing::debug!(
        group_dead_offset = offsets.exit_group_dead,
        "ebpf source: a process exits with its last thread (0: by signal->live)"
    );
}

/// Loads the programs, gives them `settings` and attaches them.
fn load_and_attach(
    config: &EbpfSourceConfig,
    settings: &mut Settings,
    kernel_btf: &offsets::KernelBtf,
) -> Result<Attached, EbpfError> {
    let mut ebpf = EbpfLoader::new()
        .set_max_entries("EVENTS", settings.size)
        .set_global("OFFSETS", &settings.offsets, true)
        .load(settings.object.object())
        .map_err(EbpfError::Load)?;
    let map_err = |name| move |source| EbpfError::Map { name, source };
    let mut handles = Vec::new();
    for name in handoff::HANDED_MAPS {
        if let Some(data) = ebpf.map(name).and_then(handoff::map_data) {
            handles.push(handoff::dup(name, data)?);
        }
    }
    {
        let map = ebpf
            .map_mut("FILTER")
            .ok_or(EbpfError::MissingMap("FILTER"))?;
        let mut f: Array<_, ProcFilter> = Array::try_from(map).map_err(map_err("FILTER"))?;
        f.set(0, settings.filter, 0).map_err(map_err("FILTER"))?;
    }
    {
        let map = ebpf.map_mut("RING").ok_or(EbpfError::MissingMap("RING"))?;
        let mut ring: Array<_, RingConfig> = Array::try_from(map).map_err(map_err("RING"))?;
        ring.set(0, settings.ring, 0).map_err(map_err("RING"))?;
    }
    {
        let map = ebpf
            .map_mut("PREFIXES")
            .ok_or(EbpfError::MissingMap("PREFIXES"))?;
        let mut trie: LpmTrie<_, [u8; PREFIX_MAX], u32> =
            LpmTrie::try_from(map).map_err(map_err("PREFIXES"))?;
        for (prefix, flags) in &settings.prefixes {
            let mut bytes = [0u8; PREFIX_MAX];
            bytes[..prefix.len()].copy_from_slice(prefix.as_bytes());
            let key = aya::maps::lpm_trie::Key::new(prefix.len() as u32 * 8, bytes);
            trie.insert(&key, flags, 0).map_err(map_err("PREFIXES"))?;
        }
    }
    let mut links = handoff::Links::default();
    for &(program, category, name) in ATTACHMENTS {
        let attach_err = attach_error(program, category, name);
        let prog: &mut TracePoint = ebpf
            .program_mut(program)
            .ok_or(EbpfError::MissingProgram(program))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| attach_err(e.into()))?;
        prog.load().map_err(|e| attach_err(e.into()))?;
        links
            .tracepoint(prog, program, category, name)
            .map_err(attach_err)?;
    }
    // OOM kills: where the tracepoint passes the victim's task.
    let mut raw = RAW_ATTACHMENTS.to_vec();
    if kernel_btf.raw_tracepoint_arg_is_pointer("mark_victim", 0) {
        raw.push(("lumen_oom_victim", "mark_victim"));
    } else {
        tracing::warn!("ebpf source: this kernel's oom:mark_victim tracepoint does not pass the victim's task (Linux 6.2+ does); OOM kills are reported by resource samples only");
    }
    for (program, name) in raw {
        let attach_err = attach_error(program, "raw", name);
        let prog: &mut RawTracePoint = ebpf
            .program_mut(program)
            .ok_or(EbpfError::MissingProgram(program))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| attach_err(e.into()))?;
        prog.load().map_err(|e| attach_err(e.into()))?;
        links.raw(prog, program, name).map_err(attach_err)?;
    }
    let sched_maps = match settings.sched_delay_ns {
        Some(delay_ns) => attach_scheduler(
            &mut ebpf,
            &mut links,
            &config.btf_path,
            kernel_btf,
            delay_ns,
        )?,
        None => None,
    };
    if sched_maps.is_none() {
        handles.retain(|(name, _)| !name.starts_with("SCHED_"));
    }
    let saved_args = saved_args_readable(&mut ebpf);
    for s in SYSCALLS {
        let syscall = s.name;
        let (exit, entry) = s.programs(saved_args);
        // The exit first: an entry without its exit would only fill the
        // pending map.
        let attached = attach_syscall(&mut ebpf, &mut links, exit, &format!("sys_exit_{syscall}"))
            .and_then(|()| {
                if !entry {
                    return Ok(());
                }
                attach_syscall(
                    &mut ebpf,
                    &mut links,
                    &format!("lumen_enter_{syscall}"),
                    &format!("sys_enter_{syscall}"),
                )
            });
        if let Err(error) = attached {
            if without_modules(syscall) {
                tracing::info!(
                    syscall,
                    "ebpf source: kernel built without module support (no /proc/modules): no module can load, nothing to watch"
                );
                continue;
            }
            tracing::warn!(syscall, %error, lost = s.coverage, "ebpf source: syscall tracepoints unavailable");
        }
    }
    let ring = match ebpf.take_map("EVENTS") {
        Some(Map::RingBuf(data)) => ring::Ring::new(data)?,
        _ => return Err(EbpfError::MissingMap("EVENTS")),
    };
    let drops = PerCpuArray::try_from(
        ebpf.take_map("DROPS")
            .ok_or(EbpfError::MissingMap("DROPS"))?,
    )
    .map_err(map_err("DROPS"))?;
    let handoff_map = Array::try_from(
        ebpf.take_map("HANDOFF")
            .ok_or(EbpfError::MissingMap("HANDOFF"))?,
    )
    .map_err(map_err("HANDOFF"))?;
    let cgroup_names = KernelMap::try_from(
        ebpf.take_map("CGROUP_NAMES")
            .ok_or(EbpfError::MissingMap("CGROUP_NAMES"))?,
    )
    .map_err(map_err("CGROUP_NAMES"))?;
    Ok(Attached {
        kernel: handoff::Kernel::new(links, handoff_map, handles, settings.identity()),
        ebpf: Some(ebpf),
        ring,
        drops,
        sched_maps,
        cgroup_names: Some(cgroup_names),
        drops_reported: [0; drop_index::COUNT as usize],
    })
}

impl EbpfSource {
    /// Loads and attaches the programs. Fails with a clear reason when the
    /// kernel or the privileges do not allow it.
    pub fn start(
        config: EbpfSourceConfig,
        host: Arc<Host>,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Self, EbpfError> {
        config.validate().map_err(EbpfError::Config)?;
        let hierarchies = cgroupfs::Hierarchies::discover();
        let view = cgroupfs::CgroupView::choose(
            &hierarchies,
            config.cgroup_hierarchy,
            config.cgroup_v1_controller.as_deref(),
        )
        .map_err(EbpfError::Cgroup)?;
        let kernel_btf = offsets::KernelBtf::read(&config.btf_path)?;
        let mut offsets = offsets::resolve(&kernel_btf, view.v1.as_ref().map(|(c, _)| c.as_str()))?;
        if view.always_v1 {
            offsets.cgroup_v1_mode = lumen_common::CGROUP_V1_ALWAYS;
        }
        let rdonly_cast = kfuncs::rdonly_cast_ids(&kernel_btf);
        // Test hook (debug builds only): as on kernels before 6.2.
        #[cfg(debug_assertions)]
        let rdonly_cast = rdonly_cast.filter(|_| std::env::var_os("LUMEN_TEST_NO_KFUNC").is_none());
        let object = kfuncs::link(PROGRAMS, rdonly_cast)?;
        match object.ids {
            Some(ids) => {
                offsets.btf_file = ids.file;
                offsets.btf_mount = ids.mount;
                tracing::debug!(
                    calls = object.calls,
                    "ebpf source: bpf_rdonly_cast calls linked: the paths of files are walked with typed loads"
                );
            }
            None => tracing::info!("ebpf source: this kernel has no bpf_rdonly_cast kfunc (Linux 6.2+): the paths of files are walked with probe reads, which cost more per event"),
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let prefixes = expand_prefixes(
            &config.sensitive_paths,
            &config.exclude_paths,
            &config.include_paths,
            &passwd,
        )?;
        let host_mnt_ns = match namespace_inode(Path::new("/proc/1/ns/mnt")) {
            Some(ns) => ns,
            None => match namespace_inode(Path::new("/proc/self/ns/mnt")) {
                Some(ns) => {
                    if config.containers_only {
                        tracing::warn!(
                            "ebpf source: /proc/1/ns/mnt is unreadable; taking Lumen's own mount namespace as the host's (right when Lumen runs on the host, or with hostPID)"
                        );
                    }
                    ns
                }
                None if config.containers_only => return Err(EbpfError::HostNamespace),
                None => 0,
            },
        };
        let flags = prefix_flags(&prefixes);
        let filter = proc_filter(&config, host_mnt_ns, &flags)?;
        // Loading needs the privileges; mounting tracefs (for attaching) too,
        // but its error would hide the real reason.
        let size = config.ring_buffer_bytes;
        if size < 4096 || !size.is_power_of_two() {
            return Err(EbpfError::RingBufferSize(size));
        }
        tracing::info!(prefixes = ?prefixes, "ebpf source: file path prefixes (1 = sensitive, 2 = excluded, 3 = included)");
        let mut settings = Settings {
            size,
            offsets,
            filter,
            ring: RingConfig {
                wakeup_bytes: if config.poll_interval_ms == 0 {
                    0
                } else {
                    size / 8
                },
                _pad: 0,
            },
            prefixes: flags.iter().map(|&(p, f)| (p.to_owned(), f)).collect(),
            sched_delay_ns: (config.resources.enabled && config.resources.scheduler)
                .then(|| config.resources.findings.delay_ns()),
            object,
        };
        let mut adopted = None;
        let mut unwatched = None;
        ensure_tracefs()?;
        settle_offsets(&mut settings.offsets);
        if let Some(dir) = config.pin_path.as_deref().filter(|d| d.exists()) {
            match handoff::adopt(dir, settings.identity()) {
                handoff::Found::Nothing => {}
                handoff::Found::Adopted(a) => adopted = Some(*a),
                handoff::Found::Released { stopped_ns, reason } => {
                    tracing::warn!(path = %dir.display(), %reason, "ebpf source: not adopting the programs a previous Lumen left at pin_path; attaching anew, detaching those");
                    unwatched = Some((stopped_ns, reason));
                }
            }
        }
        let attached = match adopted {
            Some(a) => {
                let waited = handoff::monotonic_ns().saturating_sub(a.previous.stopped_ns);
                tracing::info!(
                    links = a.kernel.links.len(),
                    since_stop_ms = waited / 1_000_000,
                    "ebpf source: adopted the programs the previous Lumen left attached; what they recorded since it stopped is read first"
                );
                let deadline = a.previous.deadline_ns;
                if handoff::monotonic_ns() > deadline {
                    unwatched = Some((
                        deadline,
                        "the programs a previous Lumen left attached stopped recording when its handoff_grace_secs ran out, before this Lumen adopted them".to_owned(),
                    ));
                }
                Attached {
                    ebpf: None,
                    kernel: a.kernel,
                    ring: a.ring,
                    drops: a.drops,
                    sched_maps: a.sched,
                    cgroup_names: a.cgroup_names,
                    drops_reported: a.previous.drops_reported,
                }
            }
            None => load_and_attach(&config, &mut settings, &kernel_btf)?,
        };
        let Attached {
            ebpf,
            kernel,
            ring,
            drops,
            sched_maps,
            cgroup_names: kernel_names,
            drops_reported,
        } = attached;
        let unavailable = unavailable(&kernel.links);
        if unavailable.is_empty() {
            tracing::info!(
                "ebpf source: every privilege, network and file tracepoint this kernel has attached"
            );
        } else {
            tracing::warn!(lost = ?unavailable, "ebpf source: running without some coverage");
        }
        let kernel_oom = kernel.links.has("lumen_oom_victim", "mark_victim");
        // SAFETY: the Ring owns its map's file descriptor and keeps it open,
        // unchanged, for as long as it lives; the AsyncFd owns the Ring.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| EbpfError::RingBuffer(std::io::Error::other(e.to_string())))?;
        let unwatched = unwatched.map(|(since_ns, reason)| {
            let now = Timestamp::now();
            let ago = handoff::monotonic_ns().saturating_sub(since_ns);
            LossReport {
                since: if since_ns == 0 {
                    now
                } else {
                    Timestamp(now.0 - ago as i64)
                },
                until: now,
                by_kind: Vec::new(),
                cause: LossCause::KernelUnwatched { reason },
            }
        });
        let scheduler = (config.resources.enabled && config.resources.scheduler)
            .then_some(sched_maps.is_some());
        let found = capabilities::observed(&config, &view, &unavailable, scheduler, kernel_oom);
        for c in &found {
            if c.available {
                tracing::info!(capability = c.name, "ebpf source: can see: {}", c.detail);
            } else {
                tracing::warn!(capability = c.name, "ebpf source: cannot see: {}", c.detail);
            }
        }
        tracing::info!(
            programs = ATTACHMENTS.len(),
            "ebpf source attached: process exec, fork and exit (tracepoints sched:sched_process_exec, sched:sched_process_exit; raw tracepoint sched_process_fork)"
        );
        // Seeded after attaching: a process that starts meanwhile is seen by
        // both, and the kernel's event wins.
        let mut cache = ProcessCache::new(config.process_cache_capacity);
        match cache.seed_from_proc(Path::new("/proc"), &view) {
            Ok(n) => tracing::info!(
                processes = n,
                "ebpf source: process cache seeded from /proc"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "ebpf source: cannot read /proc; parents of older processes will be unknown")
            }
        }
        let pods = if config.kubernetes.enabled {
            Some(k8s_pods::start(&config.kubernetes)?)
        } else {
            None
        };
        Ok(EbpfSource {
            capabilities: Arc::new(found),
            pods,
            cache,
            _ebpf: ebpf,
            kernel,
            drops_reported,
            unwatched,
            ring,
            drops,
            config,
            host,
            metrics,
            boot_offset_ns: boot_offset_ns(),
            resource_metrics: Arc::default(),
            sched_maps,
            kernel_oom,
            names: cgroup_names::CgroupNameCache::new(kernel_names),
        })
    }

    /// Its containers' resource counters, for `/metrics`.
    pub fn resource_metrics(&self) -> Arc<resources::ResourceMetrics> {
        self.resource_metrics.clone()
    }

    /// What this node lets it see, for `/metrics`.
    pub fn capabilities(&self) -> Arc<Vec<capabilities::Capability>> {
        self.capabilities.clone()
    }

    /// Reads records until shutdown, then drains what the kernel already
    /// wrote. Kernel drops are watched by a task of their own: they happen
    /// when this loop is held up by backpressure, and must be reported then.
    pub async fn run(self, mut out: Fanout, mut shutdown: ShutdownSignal) {
        let EbpfSource {
            _ebpf: ebpf,
            kernel,
            drops_reported,
            unwatched,
            mut ring,
            drops,
            config,
            host,
            metrics,
            boot_offset_ns,
            cache,
            pods,
            resource_metrics,
            sched_maps,
            kernel_oom,
            names,
            capabilities: _,
        } = self;
        let interval = Duration::from_secs(config.drop_check_interval_secs.max(1));
        let (loss_tx, mut loss_rx) = tokio::sync::mpsc::channel::<LossReport>(64);
        let (sample_tx, mut sample_rx) = tokio::sync::mpsc::channel::<Event>(1024);
        // Resource findings, from the samples and from the kernel's OOM kills.
        let resource_findings = Arc::new(std::sync::Mutex::new(
            resources::findings::Findings::new(config.resources.findings.clone())
                .with_kernel_oom(kernel_oom),
        ));
        let sampler = config.resources.enabled.then(|| {
            let mut sampler =
                resources::Sampler::new(cgroupfs::Hierarchies::discover()).with_pods(pods.clone());
            if let Some(maps) = sched_maps {
                sampler = sampler.with_sched(maps);
            }
            tokio::spawn(resources::run(
                config.resources.clone(),
                sampler,
                host.clone(),
                resource_metrics,
                resource_findings.clone(),
                sample_tx,
                shutdown.clone(),
            ))
        });
        // The drop counters are read until the programs are detached or
        // handed off: a record they drop meanwhile is reported too.
        let (stop_drops, drops_stopped) = tokio::sync::oneshot::channel::<()>();
        let reporter = tokio::spawn(watch_drops(
            drops,
            drops_reported,
            metrics.clone(),
            interval,
            drops_stopped,
            loss_tx,
        ));
        let mut reader = Reader {
            host,
            metrics: metrics.clone(),
            boot_offset_ns,
            cache,
            writes: drift::ContainerWrites::new(CONTAINER_WRITES),
            pods,
            host_ns: host_ns::HostNamespaces::read(Path::new("/proc")),
            oom_findings: config.resources.enabled.then(|| resource_findings.clone()),
            names,
        };
        let mut batch = Vec::with_capacity(256);
        if let Some(report) = unwatched {
            tracing::warn!("ebpf source: {}", report.message());
            batch.push(loss_event(report, &reader.host));
        }
        // Records submitted without a wakeup are read on this tick; with
        // wakeups on every record it is only a safety net.
        let poll_ms = match config.poll_interval_ms {
            0 => 250,
            ms => ms,
        };
        let mut poll = tokio::time::interval(Duration::from_millis(poll_ms));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut more = false;
        'read: loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(report) = loss_rx.recv() => batch.push(loss_event(report, &reader.host)),
                Some(mut sample) = sample_rx.recv() => {
                    if let (Some(pods), EventKind::Resource(r)) = (&reader.pods, &mut sample.kind) {
                        let r = &mut **r;
                        k8s_pods::enrich_attribution(&mut r.attribution, &mut r.text, pods);
                    }
                    batch.push(Envelope::new(sample, Ack::none()));
                }
                ready = ring.readable_mut() => {
                    let mut guard = match ready {
                        Ok(g) => g,
                        Err(e) => {
                            tracing::error!(error = %e, "ebpf source: ring buffer poll failed; stopping");
                            break;
                        }
                    };
                    collect(guard.get_inner_mut(), &mut batch, &mut reader);
                    guard.clear_ready();
                    // The kernel wakes the reader only when it has caught up:
                    // a record that landed between the drain and clear_ready
                    // would otherwise stay unread, and none after it would
                    // wake us again. Drain on now that readiness is cleared.
                    more = true;
                }
                _ = poll.tick() => more = collect(ring.get_mut(), &mut batch, &mut reader),
            }
            if !emit(&mut out, &mut batch, &metrics).await {
                break;
            }
            // Whatever waits is read now, a slice at a time.
            while more {
                more = collect(ring.get_mut(), &mut batch, &mut reader);
                if !emit(&mut out, &mut batch, &metrics).await {
                    break 'read;
                }
            }
        }
        // Without a handoff the programs are detached now, while the
        // reader drains: what they record until each is detached (2.3 s
        // for all of them) is still read, not freed with the ring.
        let kernel = match config.pin_path {
            Some(_) => Some(kernel),
            None => {
                let links = kernel.links;
                let mut detaching = tokio::task::spawn_blocking(move || links.detach());
                loop {
                    let more = collect(ring.get_mut(), &mut batch, &mut reader);
                    emit(&mut out, &mut batch, &metrics).await;
                    if more {
                        continue;
                    }
                    tokio::select! {
                        _ = &mut detaching => break,
                        _ = tokio::time::sleep(DETACH_DRAIN) => {}
                    }
                }
                None
            }
        };
        while collect(ring.get_mut(), &mut batch, &mut reader) {
            emit(&mut out, &mut batch, &metrics).await;
        }
        let _ = stop_drops.send(());
        let drops_reported = match reporter.await {
            Ok(reported) => reported,
            Err(e) => {
                tracing::error!(error = %e, "ebpf source: drop watcher failed");
                drops_reported
            }
        };
        if let Some(Err(e)) = match sampler {
            Some(task) => Some(task.await),
            None => None,
        } {
            tracing::error!(error = %e, "ebpf source: resource sampler failed");
        }
        while let Ok(sample) = sample_rx.try_recv() {
            batch.push(Envelope::new(sample, Ack::none()));
        }
        while let Ok(report) = loss_rx.try_recv() {
            batch.push(loss_event(report, &reader.host));
        }
        emit(&mut out, &mut batch, &metrics).await;
        drop(out);
        let grace = Duration::from_secs(config.handoff_grace_secs);
        let stopped = tokio::task::spawn_blocking(move || {
            if let (Some(dir), Some(kernel)) = (&config.pin_path, kernel) {
                match kernel.hand_off(dir, grace, drops_reported) {
                    Ok(links) => tracing::info!(
                        path = %dir.display(),
                        links,
                        grace_secs = grace.as_secs(),
                        "ebpf source: programs left attached for the next Lumen to adopt (they stop recording after the grace unless one does; rm -r the path to detach them)"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "ebpf source: no handoff; programs detached")
                    }
                }
            }
            drop(ebpf);
        });
        let _ = stopped.await;
    }
}

/// How often the ring is drained while the programs are being detached.
const DETACH_DRAIN: Duration = Duration::from_millis(50);

/// Sends the batch downstream; false when every output has gone.
async fn emit(out: &mut Fanout, batch: &mut Vec<Envelope>, metrics: &ComponentMetrics) -> bool {
    for env in batch.drain(..) {
        if out.send(env).await.is_err() {
            return false;
        }
        metrics.add_sent(1);
    }
    true
}

/// Reads the kernel's drop counters every `interval` until `stop`, and
/// once more then; what it has reported, counter by counter.
async fn watch_drops(
    drops: PerCpuArray<MapData, u64>,
    reported: [u64; drop_index::COUNT as usize],
    metrics: Arc<ComponentMetrics>,
    interval: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    reports: tokio::sync::mpsc::Sender<LossReport>,
) -> [u64; drop_index::COUNT as usize] {
    let mut seen = reported;
    let mut tick = tokio::time::interval(interval);
    let mut since = Timestamp::now();
    let check = |seen: &mut [u64; drop_index::COUNT as usize], since: &mut Timestamp| {
        let by_kind = report_drops(&drops, &metrics, seen);
        let until = Timestamp::now();
        let report = (!by_kind.is_empty()).then_some(LossReport {
            since: *since,
            until,
            by_kind,
            cause: Default::default(),
        });
        *since = until;
        report
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                if let Some(report) = check(&mut seen, &mut since) {
                    // The reader may be held up by backpressure: the count is
                    // already in the metrics and the log; the event follows.
                    if reports.send(report).await.is_err() {
                        return seen;
                    }
                }
            }
        }
    }
    if let Some(report) = check(&mut seen, &mut since) {
        let _ = reports.send(report).await;
    }
    seen
}

/// The event that reports lost records through the sinks.
fn loss_event(report: LossReport, host: &Arc<Host>) -> Envelope {
    let now = Timestamp::now();
    Envelope::new(
        Event {
            time: report.until,
            observed: now,
            host: host.clone(),
            kind: EventKind::Loss(report),
            redaction: Default::default(),
        },
        Ack::none(),
    )
}

/// Records decoded per batch: a backlog of a large ring buffer is sent on
/// in slices, not held whole (decoding 100,000 waiting records at once
/// spent a fifth of the reader's time faulting in fresh memory).
const COLLECT_MAX: usize = 1024;

/// Decodes up to [`COLLECT_MAX`] of the records the kernel has written
/// into `batch`; true when it stopped there with more waiting.
fn collect(ring: &mut ring::Ring, batch: &mut Vec<Envelope>, r: &mut Reader) -> bool {
    let (host, metrics, boot_offset_ns) = (&r.host, &r.metrics, r.boot_offset_ns);
    let observed = Timestamp::now();
    let before = batch.len();
    let mut records = 0;
    let full = loop {
        if records == COLLECT_MAX {
            break true;
        }
        let Some(item) = ring.next() else {
            break false;
        };
        records += 1;
        match decode::decode(&item, &mut r.names) {
            Ok(None) => {}
            Ok(Some(mut d)) => {
                match &mut d.kind {
                    EventKind::Process(p) => {
                        if !r.cache.enrich(p) {
                            continue; // the process's exit, reported already
                        }
                        if p.activity == ProcessActivity::Exec {
                            r.writes.mark(p);
                        }
                    }
                    EventKind::Privilege(p) => {
                        r.cache.annotate(&mut p.process);
                        r.host_ns.mark(p);
                    }
                    EventKind::Network(n) => r.cache.annotate(&mut n.process),
                    EventKind::File(f) => {
                        r.cache.annotate(&mut f.process);
                        r.writes.observe(f);
                    }
                    EventKind::ApiActivity(_)
                    | EventKind::Loss(_)
                    | EventKind::Finding(_)
                    | EventKind::Resource(_) => {}
                }
                if let (Some(pods), Some(p)) = (&r.pods, d.kind.process_mut()) {
                    k8s_pods::enrich(p, pods);
                }
                let event = Event {
                    time: Timestamp(boot_offset_ns + d.ktime_ns as i64),
                    observed,
                    host: host.clone(),
                    kind: d.kind,
                    redaction: Default::default(),
                };
                let oom_kill = matches!(&event.kind,
                    EventKind::Process(p) if p.activity == ProcessActivity::OomKill);
                let mut findings = Vec::new();
                if let (true, Some(rules)) = (oom_kill, &r.oom_findings) {
                    let mut rules = rules.lock().unwrap_or_else(|e| e.into_inner());
                    rules.check_oom_kill(&event, &mut findings);
                }
                batch.push(Envelope::new(event, Ack::none()));
                batch.extend(findings.into_iter().map(|f| Envelope::new(f, Ack::none())));
            }
            Err(e) => {
                metrics.add_errors(1);
                tracing::warn!(error = %e, "ebpf source: undecodable kernel record skipped");
            }
        }
    };
    metrics.add_received((batch.len() - before) as u64);
    full
}

/// What turning records into events needs.
struct Reader {
    host: Arc<Host>,
    metrics: Arc<ComponentMetrics>,
    boot_offset_ns: i64,
    cache: ProcessCache,
    /// Files containers wrote: drift on any root file system.
    writes: drift::ContainerWrites,
    pods: Option<k8s_pods::PodCache>,
    host_ns: host_ns::HostNamespaces,
    /// The resource findings, for the kernel's OOM kills (none when
    /// resource sampling is off).
    oom_findings: Option<Arc<std::sync::Mutex<resources::findings::Findings>>>,
    /// The names of the cgroups the records name by key.
    names: cgroup_names::CgroupNameCache,
}

/// Files written in containers remembered for drift (about 100 bytes each).
const CONTAINER_WRITES: usize = 65_536;

/// Reads the kernel's per-CPU drop counters; logs and counts what is new.
fn report_drops(
    drops: &PerCpuArray<MapData, u64>,
    metrics: &ComponentMetrics,
    seen: &mut [u64; drop_index::COUNT as usize],
) -> Vec<(std::borrow::Cow<'static, str>, u64)> {
    let mut by_kind = Vec::new();
    for (i, kind) in drop_index::NAMES.iter().enumerate() {
        let i = i as u32;
        let total: u64 = drops.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0);
        let new = total.saturating_sub(seen[i as usize]);
        if new > 0 {
            metrics.add_dropped(new);
            tracing::warn!(
                kind,
                lost = new,
                total,
                "ebpf source: kernel ring buffer was full; records lost"
            );
            by_kind.push(((*kind).into(), new));
        }
        seen[i as usize] = total;
    }
    by_kind
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

    #[test]
    fn home_prefixes_expand_to_login_users_and_duplicates_collapse() {
        let p = expand_prefixes(
            &["~/.ssh/".into(), "/root/.ssh/".into()],
            &["/dev/".into()],
            &["/dev/shm/".into()],
            PASSWD,
        )
        .unwrap();
        assert_eq!(
            p,
            [
                (PREFIX_SENSITIVE, "/root/.ssh/".to_owned()),
                (PREFIX_SENSITIVE, "/home/alice/.ssh/".to_owned()),
                (PREFIX_EXCLUDED, "/dev/".to_owned()),
                (PREFIX_INCLUDED, "/dev/shm/".to_owned()),
            ]
        );
    }

    #[test]
    fn each_trie_entry_carries_every_configured_prefix_of_itself() {
        let p = expand_prefixes(
            &["/etc/shadow".into(), "/dev/shm/keys/".into()],
            &["/dev/".into(), "/etc/".into()],
            &["/dev/shm/".into()],
            PASSWD,
        )
        .unwrap();
        let flags = prefix_flags(&p);
        let of = |path: &str| flags.iter().find(|(p, _)| *p == path).map(|f| f.1);
        // Sensitive under an excluded prefix: still excluded, and sensitive.
        assert_eq!(
            of("/etc/shadow"),
            Some(PREFIX_FLAG_EXCLUDED | PREFIX_FLAG_SENSITIVE)
        );
        assert_eq!(of("/dev/"), Some(PREFIX_FLAG_EXCLUDED));
        assert_eq!(of("/etc/"), Some(PREFIX_FLAG_EXCLUDED));
        // Included under an excluded prefix: reported.
        assert_eq!(of("/dev/shm/"), Some(0));
        assert_eq!(of("/dev/shm/keys/"), Some(PREFIX_FLAG_SENSITIVE));
        assert_eq!(flags.len(), 5, "one entry per distinct prefix: {flags:?}");
    }

    fn config(comms: &[&str]) -> EbpfSourceConfig {
        let mut c: EbpfSourceConfig = toml::from_str("").unwrap();
        c.exclude_comms = comms.iter().map(|s| s.to_string()).collect();
        c
    }

    #[test]
    fn only_paths_whose_second_byte_some_prefix_has_are_looked_up() {
        let prefixes = ["/etc/shadow", "/dev/", "/dev/shm/", "/root/.ssh/"].map(|p| (p, 0));
        let f = proc_filter(&config(&[]), 0, &prefixes).unwrap();
        for path in ["/etc/passwd", "/dev/null", "/root/x", "/e"] {
            assert!(f.may_match(path.as_bytes()[1]), "{path}");
        }
        for path in ["/tmp/storm-w-1", "/home/u/.ssh/id", "/", "/E"] {
            let second = path.as_bytes().get(1).copied().unwrap_or(0);
            assert!(!f.may_match(second), "{path}");
        }
        // High bytes (UTF-8) land in the upper words.
        let utf8 = ProcFilter::second_bytes(["/é/".as_bytes()]);
        assert_eq!(utf8.iter().map(|w| w.count_ones()).sum::<u32>(), 1);
        assert_ne!(utf8[3], 0);
        // A one-byte prefix ("/") matches every path: every bit is set.
        assert_eq!(ProcFilter::second_bytes(["/".as_bytes()]), [u64::MAX; 4]);
        assert_eq!(ProcFilter::second_bytes([]), [0; 4]);
    }

    #[test]
    fn proc_filter_packs_comms_and_refuses_bad_ones() {
        let f = proc_filter(&config(&["sshd", "kubelet"]), 42, &[]).unwrap();
        assert_eq!((f.comm_count, f.host_mnt_ns, f.containers_only), (2, 42, 0));
        assert_eq!(&f.comms[1][..8], b"kubelet\0");
        let e = proc_filter(&config(&["a-name-longer-than-15"]), 1, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 to 15 bytes"), "{e}");
        let nine: Vec<&str> = vec!["x"; 9];
        assert!(proc_filter(&config(&nine), 1, &[])
            .unwrap_err()
            .to_string()
            .contains("at most 8"));
        assert!(namespace_inode(Path::new("/proc/self/ns/mnt")).is_some_and(|n| n > 0));
    }

    #[test]
    fn bad_or_too_many_prefixes_are_refused_with_the_reason() {
        let e = expand_prefixes(&["etc/shadow".into()], &[], &[], PASSWD)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"etc/shadow\": must be absolute"), "{e}");
        let many: Vec<String> = (0..65).map(|i| format!("/p{i}/")).collect();
        let e = expand_prefixes(&many, &[], &[], PASSWD)
            .unwrap_err()
            .to_string();
        assert!(e.contains("65 path prefixes"), "{e}");
        assert!(e.contains("at most 64"), "{e}");
        assert!(expand_prefixes(
            &default_sensitive_paths(),
            &default_exclude_paths(),
            &default_include_paths(),
            PASSWD
        )
        .is_ok());
    }
}
