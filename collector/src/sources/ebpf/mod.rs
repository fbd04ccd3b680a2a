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

pub mod decode;
pub mod offsets;
pub mod process_cache;

use crate::topology::fanout::Fanout;
use crate::topology::shutdown::ShutdownSignal;
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::{RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use lumen_common::{drop_index, KernelOffsets};
use lumen_schemas::event::{Host, LossReport};
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
    /// Processes the user-space cache holds (parents, ancestry).
    #[serde(default = "default_process_cache_capacity")]
    pub process_cache_capacity: usize,
}

fn default_process_cache_capacity() -> usize {
    65_536
}

fn default_ring_buffer_bytes() -> u32 {
    8 * 1024 * 1024
}

fn default_btf_path() -> PathBuf {
    PathBuf::from("/sys/kernel/btf/vmlinux")
}
fn default_drop_check() -> u64 {
    5
}

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(transparent)]
    Offsets(#[from] offsets::OffsetsError),
    #[error("loading the eBPF programs failed: {0}. The ebpf source needs root, or CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE, on a kernel with BPF ring buffers (5.8+)")]
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
        source: Box<aya::programs::ProgramError>,
    },
    #[error("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {0}")]
    Tracefs(std::io::Error),
    #[error("ring buffer: {0}")]
    RingBuffer(std::io::Error),
    #[error("ring_buffer_bytes = {0}: must be a power of two and at least 4096")]
    RingBufferSize(u32),
}

/// The compiled kernel programs (built by build.rs).
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lumen-ebpf.o"));

/// Tracepoints the programs attach to.
const ATTACHMENTS: &[(&str, &str, &str)] = &[
    ("lumen_exec", "sched", "sched_process_exec"),
    ("lumen_exit", "sched", "sched_process_exit"),
];

/// Syscall tracepoints whose absence costs coverage but not the source:
/// (program, tracepoint, what is lost without it).
const OPTIONAL_SYSCALLS: &[(&str, &str, &str)] = &[
    ("lumen_enter_setuid", "sys_enter_setuid", "setuid events"),
    ("lumen_exit_setuid", "sys_exit_setuid", "setuid events"),
    (
        "lumen_enter_setreuid",
        "sys_enter_setreuid",
        "setreuid events",
    ),
    (
        "lumen_exit_setreuid",
        "sys_exit_setreuid",
        "setreuid events",
    ),
    (
        "lumen_enter_setresuid",
        "sys_enter_setresuid",
        "setresuid events",
    ),
    (
        "lumen_exit_setresuid",
        "sys_exit_setresuid",
        "setresuid events",
    ),
    ("lumen_enter_setgid", "sys_enter_setgid", "setgid events"),
    ("lumen_exit_setgid", "sys_exit_setgid", "setgid events"),
    (
        "lumen_enter_setregid",
        "sys_enter_setregid",
        "setregid events",
    ),
    (
        "lumen_exit_setregid",
        "sys_exit_setregid",
        "setregid events",
    ),
    (
        "lumen_enter_setresgid",
        "sys_enter_setresgid",
        "setresgid events",
    ),
    (
        "lumen_exit_setresgid",
        "sys_exit_setresgid",
        "setresgid events",
    ),
    (
        "lumen_enter_capset",
        "sys_enter_capset",
        "capability changes",
    ),
    ("lumen_exit_capset", "sys_exit_capset", "capability changes"),
    (
        "lumen_enter_ptrace",
        "sys_enter_ptrace",
        "ptrace attach events",
    ),
    (
        "lumen_exit_ptrace",
        "sys_exit_ptrace",
        "ptrace attach events",
    ),
    (
        "lumen_enter_init_module",
        "sys_enter_init_module",
        "module loads from memory",
    ),
    (
        "lumen_exit_init_module",
        "sys_exit_init_module",
        "module loads from memory",
    ),
    (
        "lumen_enter_finit_module",
        "sys_enter_finit_module",
        "module loads from files",
    ),
    (
        "lumen_exit_finit_module",
        "sys_exit_finit_module",
        "module loads from files",
    ),
    ("lumen_enter_bpf", "sys_enter_bpf", "BPF program loads"),
    ("lumen_exit_bpf", "sys_exit_bpf", "BPF program loads"),
    ("lumen_enter_mount", "sys_enter_mount", "mount events"),
    ("lumen_exit_mount", "sys_exit_mount", "mount events"),
    (
        "lumen_enter_connect",
        "sys_enter_connect",
        "outbound connections",
    ),
    (
        "lumen_exit_connect",
        "sys_exit_connect",
        "outbound connections",
    ),
    (
        "lumen_enter_accept",
        "sys_enter_accept",
        "inbound connections (accept)",
    ),
    (
        "lumen_exit_accept",
        "sys_exit_accept",
        "inbound connections (accept)",
    ),
    (
        "lumen_enter_accept4",
        "sys_enter_accept4",
        "inbound connections (accept4)",
    ),
    (
        "lumen_exit_accept4",
        "sys_exit_accept4",
        "inbound connections (accept4)",
    ),
    ("lumen_enter_bind", "sys_enter_bind", "bind events"),
    ("lumen_exit_bind", "sys_exit_bind", "bind events"),
    ("lumen_enter_listen", "sys_enter_listen", "listen events"),
    ("lumen_exit_listen", "sys_exit_listen", "listen events"),
];

/// Raw tracepoints (BTF args, no tracefs needed) the programs attach to.
const RAW_ATTACHMENTS: &[(&str, &str)] = &[("lumen_fork", "sched_process_fork")];

/// A loaded and attached collector, ready to read.
pub struct EbpfSource {
    _ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    drops: PerCpuArray<MapData, u64>,
    config: EbpfSourceConfig,
    host: Arc<Host>,
    metrics: Arc<ComponentMetrics>,
    boot_offset_ns: i64,
    cache: ProcessCache,
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
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
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
        return Err(EbpfError::Tracefs(std::io::Error::last_os_error()));
    }
    tracing::info!("mounted tracefs at /sys/kernel/tracing");
    Ok(())
}

/// Wall-clock minus boot-time clock, to date kernel timestamps.
fn boot_offset_ns() -> i64 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid clock id and out pointer.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    };
    read(libc::CLOCK_REALTIME) - read(libc::CLOCK_BOOTTIME)
}

impl EbpfSource {
    /// Loads and attaches the programs. Fails with a clear reason when the
    /// kernel or the privileges do not allow it.
    pub fn start(
        config: EbpfSourceConfig,
        host: Arc<Host>,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Self, EbpfError> {
        let offsets = offsets::resolve(&config.btf_path)?;
        // Loading needs the privileges; mounting tracefs (for attaching) too,
        // but its error would hide the real reason.
        let size = config.ring_buffer_bytes;
        if size < 4096 || !size.is_power_of_two() {
            return Err(EbpfError::RingBufferSize(size));
        }
        let mut ebpf = EbpfLoader::new()
            .set_max_entries("EVENTS", size)
            .load(PROGRAMS)
            .map_err(EbpfError::Load)?;
        ensure_tracefs()?;
        let map_err = |name| move |source| EbpfError::Map { name, source };
        {
            let map = ebpf
                .map_mut("CONFIG")
                .ok_or(EbpfError::MissingMap("CONFIG"))?;
            let mut cfg: Array<_, KernelOffsets> =
                Array::try_from(map).map_err(map_err("CONFIG"))?;
            cfg.set(0, offsets, 0).map_err(map_err("CONFIG"))?;
        }
        for &(program, category, name) in ATTACHMENTS {
            let attach_err = |source: aya::programs::ProgramError| EbpfError::Attach {
                program,
                category,
                name,
                source: Box::new(source),
            };
            let prog: &mut TracePoint = ebpf
                .program_mut(program)
                .ok_or(EbpfError::MissingProgram(program))?
                .try_into()
                .map_err(attach_err)?;
            prog.load().map_err(attach_err)?;
            prog.attach(category, name).map_err(attach_err)?;
        }
        for &(program, name) in RAW_ATTACHMENTS {
            let attach_err = |source: aya::programs::ProgramError| EbpfError::Attach {
                program,
                category: "raw",
                name,
                source: Box::new(source),
            };
            let prog: &mut RawTracePoint = ebpf
                .program_mut(program)
                .ok_or(EbpfError::MissingProgram(program))?
                .try_into()
                .map_err(attach_err)?;
            prog.load().map_err(attach_err)?;
            prog.attach(name).map_err(attach_err)?;
        }
        let mut unavailable = Vec::new();
        for &(program, tracepoint, coverage) in OPTIONAL_SYSCALLS {
            let attached = ebpf
                .program_mut(program)
                .ok_or_else(|| "not in the object".to_owned())
                .and_then(|p| <&mut TracePoint>::try_from(p).map_err(|e| e.to_string()))
                .and_then(|p| {
                    p.load().map_err(|e| e.to_string())?;
                    p.attach("syscalls", tracepoint).map_err(|e| e.to_string())
                });
            if let Err(error) = attached {
                if tracepoint.contains("init_module") && !Path::new("/proc/modules").exists() {
                    tracing::info!(
                        tracepoint,
                        "ebpf source: kernel built without module support (no /proc/modules): no module can load, nothing to watch"
                    );
                    continue;
                }
                tracing::warn!(tracepoint, %error, lost = coverage, "ebpf source: tracepoint unavailable");
                unavailable.push(coverage);
            }
        }
        unavailable.dedup();
        if unavailable.is_empty() {
            tracing::info!(
                "ebpf source: every privilege and network tracepoint this kernel has attached"
            );
        } else {
            tracing::warn!(lost = ?unavailable, "ebpf source: running without some coverage");
        }
        let ring = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or(EbpfError::MissingMap("EVENTS"))?,
        )
        .map_err(map_err("EVENTS"))?;
        // SAFETY: the RingBuf owns its map's file descriptor and keeps it open,
        // unchanged, for as long as it lives; the AsyncFd owns the RingBuf.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| EbpfError::RingBuffer(std::io::Error::other(e.to_string())))?;
        let drops = PerCpuArray::try_from(
            ebpf.take_map("DROPS")
                .ok_or(EbpfError::MissingMap("DROPS"))?,
        )
        .map_err(map_err("DROPS"))?;
        tracing::info!(
            programs = ATTACHMENTS.len(),
            "ebpf source attached: process exec, fork and exit (tracepoints sched:sched_process_exec, sched:sched_process_exit; raw tracepoint sched_process_fork)"
        );
        // Seeded after attaching: a process that starts meanwhile is seen by
        // both, and the kernel's event wins.
        let mut cache = ProcessCache::new(config.process_cache_capacity);
        match cache.seed_from_proc(Path::new("/proc")) {
            Ok(n) => tracing::info!(
                processes = n,
                "ebpf source: process cache seeded from /proc"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "ebpf source: cannot read /proc; parents of older processes will be unknown")
            }
        }
        Ok(EbpfSource {
            cache,
            _ebpf: ebpf,
            ring,
            drops,
            config,
            host,
            metrics,
            boot_offset_ns: boot_offset_ns(),
        })
    }

    /// Reads records until shutdown, then drains what the kernel already
    /// wrote. Kernel drops are watched by a task of their own: they happen
    /// when this loop is held up by backpressure, and must be reported then.
    pub async fn run(self, mut out: Fanout, mut shutdown: ShutdownSignal) {
        let EbpfSource {
            _ebpf: ebpf,
            mut ring,
            drops,
            config,
            host,
            metrics,
            boot_offset_ns,
            cache,
        } = self;
        let interval = Duration::from_secs(config.drop_check_interval_secs.max(1));
        let (loss_tx, mut loss_rx) = tokio::sync::mpsc::channel::<LossReport>(64);
        let reporter = tokio::spawn(watch_drops(
            drops,
            metrics.clone(),
            interval,
            shutdown.clone(),
            loss_tx,
        ));
        let mut reader = Reader {
            host,
            metrics: metrics.clone(),
            boot_offset_ns,
            cache,
        };
        let mut batch = Vec::with_capacity(256);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(report) = loss_rx.recv() => batch.push(loss_event(report, &reader.host)),
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
                }
            }
            if !emit(&mut out, &mut batch, &metrics).await {
                break;
            }
        }
        collect(ring.get_mut(), &mut batch, &mut reader);
        if let Err(e) = reporter.await {
            tracing::error!(error = %e, "ebpf source: drop watcher failed");
        }
        while let Ok(report) = loss_rx.try_recv() {
            batch.push(loss_event(report, &reader.host));
        }
        emit(&mut out, &mut batch, &metrics).await;
        drop(out);
        drop(ebpf);
    }
}

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

/// Reads the kernel's drop counters every `interval` until shutdown, and
/// once more then.
async fn watch_drops(
    drops: PerCpuArray<MapData, u64>,
    metrics: Arc<ComponentMetrics>,
    interval: Duration,
    mut shutdown: ShutdownSignal,
    reports: tokio::sync::mpsc::Sender<LossReport>,
) {
    let mut seen = [0u64; drop_index::COUNT as usize];
    let mut tick = tokio::time::interval(interval);
    let mut since = Timestamp::now();
    let check = |seen: &mut [u64; drop_index::COUNT as usize], since: &mut Timestamp| {
        let by_kind = report_drops(&drops, &metrics, seen);
        let until = Timestamp::now();
        let report = (!by_kind.is_empty()).then_some(LossReport {
            since: *since,
            until,
            by_kind,
        });
        *since = until;
        report
    };
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tick.tick() => {
                if let Some(report) = check(&mut seen, &mut since) {
                    // The reader may be held up by backpressure: the count is
                    // already in the metrics and the log; the event follows.
                    if reports.send(report).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    if let Some(report) = check(&mut seen, &mut since) {
        let _ = reports.send(report).await;
    }
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
        },
        Ack::none(),
    )
}

/// Decodes every record the kernel has written into `batch`.
fn collect(ring: &mut RingBuf<MapData>, batch: &mut Vec<Envelope>, r: &mut Reader) {
    let (host, metrics, boot_offset_ns) = (&r.host, &r.metrics, r.boot_offset_ns);
    let observed = Timestamp::now();
    while let Some(item) = ring.next() {
        match decode::decode(&item) {
            Ok(mut d) => {
                match &mut d.kind {
                    EventKind::Process(p) => r.cache.enrich(p),
                    EventKind::Privilege(p) => r.cache.annotate(&mut p.process),
                    EventKind::Network(n) => r.cache.annotate(&mut n.process),
                    EventKind::ApiActivity(_) | EventKind::Loss(_) => {}
                }
                let event = Event {
                    time: Timestamp(boot_offset_ns + d.ktime_ns as i64),
                    observed,
                    host: host.clone(),
                    kind: d.kind,
                };
                batch.push(Envelope::new(event, Ack::none()));
            }
            Err(e) => {
                metrics.add_errors(1);
                tracing::warn!(error = %e, "ebpf source: undecodable kernel record skipped");
            }
        }
    }
    metrics.add_received(batch.len() as u64);
}

/// What turning records into events needs.
struct Reader {
    host: Arc<Host>,
    metrics: Arc<ComponentMetrics>,
    boot_offset_ns: i64,
    cache: ProcessCache,
}

/// Reads the kernel's per-CPU drop counters; logs and counts what is new.
fn report_drops(
    drops: &PerCpuArray<MapData, u64>,
    metrics: &ComponentMetrics,
    seen: &mut [u64; drop_index::COUNT as usize],
) -> Vec<(&'static str, u64)> {
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
            by_kind.push((*kind, new));
        }
        seen[i as usize] = total;
    }
    by_kind
}
