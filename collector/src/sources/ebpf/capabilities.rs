//! What this node lets the ebpf source see (issue 20): the kernel's BTF,
//! BPF maps and the ring buffer, each tracepoint family, the cgroup layout
//! that attributes events to containers, and the Kubernetes API for pod
//! names. Probed without loading a program for `lumen doctor` (the only
//! change to the machine: tracefs is mounted if nobody has, as the ebpf
//! source does when it starts); observed while attaching by a starting
//! source, which logs them and exports them as `lumen_capability` gauges,
//! so an operator sees fleet-wide which nodes see what.

use super::{cgroupfs, offsets, EbpfSourceConfig, SYSCALLS};
use std::path::Path;

/// One capability: whether the node has it, what Lumen sees through it or
/// loses without it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    /// A stable name, the `capability` label of `lumen_capability`.
    pub name: &'static str,
    pub available: bool,
    /// The ebpf source cannot start without it.
    pub required: bool,
    pub detail: String,
}

/// The capabilities, in a fixed order.
pub fn probe(config: &EbpfSourceConfig) -> Vec<Capability> {
    let btf = config.btf_path.as_path();
    let tracefs = match super::ensure_tracefs() {
        Ok(()) => tracefs_events().ok_or_else(|| "tracefs has no events directory".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let types = offsets::KernelBtf::read(btf).ok();
    let types = types.as_ref();
    vec![
        kernel_btf(btf),
        bpf_maps(),
        process_tracepoints(types, tracefs.as_deref()),
        syscall_tracepoints(tracefs.as_deref()),
        scheduler_of(types.and_then(|t| t.raw_tracepoint_arg_count("sched_switch"))),
        oom_events(types.is_some_and(|t| t.raw_tracepoint_arg_is_pointer("mark_victim", 0))),
        match cgroupfs::CgroupView::choose(
            &cgroupfs::Hierarchies::discover(),
            config.cgroup_hierarchy,
            config.cgroup_v1_controller.as_deref(),
        ) {
            Ok(view) => cgroup_attribution(&view),
            Err(e) => capability("cgroup_attribution", false, e),
        },
        kubernetes_api(&config.kubernetes),
    ]
}

/// What a started source found while attaching (nothing probed again:
/// the BTF, maps and process tracepoints it could not have started
/// without). `lost` names the syscall coverage it went without;
/// `scheduler`: whether run-queue waits are measured (`None`: turned off).
pub fn observed(
    config: &EbpfSourceConfig,
    view: &cgroupfs::CgroupView,
    lost: &[&str],
    scheduler: Option<bool>,
    kernel_oom: bool,
) -> Vec<Capability> {
    let sched = match scheduler {
        Some(true) => scheduler_of(Some(4)),
        Some(false) => capability(
            "scheduler",
            false,
            "sched_switch does not pass prev_state (Linux 5.18+): no run-queue waits, no starvation findings",
        ),
        None => capability(
            "scheduler",
            false,
            "off (resources.scheduler = false, or resources off)",
        ),
    };
    vec![
        capability(
            "btf",
            true,
            format!("kernel BTF at {}", config.btf_path.display()),
        ),
        capability(
            "ring_buffer",
            true,
            format!("ring buffer of {} bytes", config.ring_buffer_bytes),
        ),
        capability("process_tracepoints", true, "process exec, fork and exit"),
        syscalls_of(lost),
        sched,
        oom_events(kernel_oom),
        cgroup_attribution(view),
        kubernetes_api(&config.kubernetes),
    ]
}

fn capability(name: &'static str, available: bool, detail: impl Into<String>) -> Capability {
    Capability {
        name,
        available,
        required: REQUIRED.contains(&name),
        detail: detail.into(),
    }
}

/// What the ebpf source cannot start without.
const REQUIRED: [&str; 3] = ["btf", "ring_buffer", "process_tracepoints"];

fn kernel_btf(btf: &Path) -> Capability {
    match aya::Btf::parse_file(btf, aya::Endianness::default()) {
        Ok(_) => capability(
            "btf",
            true,
            format!("kernel BTF at {}: structure offsets resolved", btf.display()),
        ),
        Err(e) => capability(
            "btf",
            false,
            format!(
                "no kernel BTF at {} ({e}): the ebpf source cannot start (CONFIG_DEBUG_INFO_BTF, Linux 5.4+; or set btf_path)",
                btf.display()
            ),
        ),
    }
}

/// Creates the kernel object's maps (the ring buffer among them) without
/// loading a program: what needs CAP_BPF (or root) and Linux 5.11+.
fn bpf_maps() -> Capability {
    match super::unattached_object() {
        Ok(_) => capability(
            "ring_buffer",
            true,
            "BPF maps and the ring buffer can be created",
        ),
        Err(e) => capability(
            "ring_buffer",
            false,
            format!("BPF maps cannot be created ({e}): the ebpf source cannot start (needs root or CAP_BPF and CAP_PERFMON, Linux 5.11+)"),
        ),
    }
}

/// The `events` directory of a mounted tracefs.
fn tracefs_events() -> Option<std::path::PathBuf> {
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_dir())
}

fn process_tracepoints(
    btf: Option<&offsets::KernelBtf>,
    events: Result<&Path, &String>,
) -> Capability {
    let fork = btf.is_some_and(|t| t.raw_tracepoint_arg_count("sched_process_fork").is_some());
    let events = match events {
        Ok(events) => events,
        Err(e) => {
            return capability(
                "process_tracepoints",
                false,
                format!("no tracefs ({e}): the ebpf source cannot start"),
            )
        }
    };
    let missing: Vec<&str> = ["sched_process_exec", "sched_process_exit"]
        .into_iter()
        .filter(|t| !events.join("sched").join(t).is_dir())
        .chain((!fork).then_some("sched_process_fork (raw)"))
        .collect();
    if missing.is_empty() {
        capability(
            "process_tracepoints",
            true,
            "process exec, fork and exit: sched:sched_process_exec, sched:sched_process_exit, raw sched_process_fork",
        )
    } else {
        capability(
            "process_tracepoints",
            false,
            format!(
                "missing {}: the ebpf source cannot start",
                missing.join(", ")
            ),
        )
    }
}

fn syscall_tracepoints(events: Result<&Path, &String>) -> Capability {
    let events = match events {
        Ok(events) => events,
        Err(e) => {
            return capability(
                "syscall_tracepoints",
                false,
                format!("no tracefs ({e}): no privilege, network or file events"),
            )
        }
    };
    let syscalls = events.join("syscalls");
    let mut lost: Vec<&str> = SYSCALLS
        .iter()
        .filter(|s| {
            (s.entry && !syscalls.join(format!("sys_enter_{}", s.name)).is_dir())
                || !syscalls.join(format!("sys_exit_{}", s.name)).is_dir()
        })
        // No module support, no module loads to miss.
        .filter(|s| !s.name.contains("init_module") || Path::new("/proc/modules").exists())
        .map(|s| s.coverage)
        .collect();
    lost.dedup();
    syscalls_of(&lost)
}

/// From the coverage lost for want of syscall tracepoints.
fn syscalls_of(lost: &[&str]) -> Capability {
    if lost.is_empty() {
        capability(
            "syscall_tracepoints",
            true,
            format!(
                "privilege, network and file events: all {} syscall tracepoints",
                SYSCALLS.len()
            ),
        )
    } else {
        capability(
            "syscall_tracepoints",
            false,
            format!("no tracepoints for: {}", lost.join(", ")),
        )
    }
}

/// From the arguments the kernel's `sched_switch` passes (`None`: not in
/// its BTF).
fn scheduler_of(args: Option<usize>) -> Capability {
    match args {
        Some(4) => capability(
            "scheduler",
            true,
            "run-queue waits and noisy neighbours (sched_switch passes prev_state)",
        ),
        Some(n) => capability(
            "scheduler",
            false,
            format!("sched_switch passes {n} arguments, not prev_state (Linux 5.18+): no run-queue waits, no starvation findings"),
        ),
        None => capability(
            "scheduler",
            false,
            "sched_switch not in the kernel's BTF: no run-queue waits, no starvation findings",
        ),
    }
}

fn oom_events(reported: bool) -> Capability {
    if reported {
        capability(
            "oom_events",
            true,
            "OOM kills as they happen (oom:mark_victim passes the task)",
        )
    } else {
        capability(
            "oom_events",
            false,
            "oom:mark_victim does not pass the victim's task (Linux 6.2+ does): OOM kills come from resource samples only, an interval late",
        )
    }
}

fn cgroup_attribution(view: &cgroupfs::CgroupView) -> Capability {
    let v1 = view
        .v1
        .as_ref()
        .map(|(c, mount)| format!("the v1 `{c}` controller at {}", mount.display()));
    match (&view.unified, v1) {
        (_, Some(v1)) if view.always_v1 => capability(
            "cgroup_attribution",
            true,
            format!("containers and pods from {v1} (cgroup_hierarchy = \"v1\")"),
        ),
        (Some(unified), v1) => capability(
            "cgroup_attribution",
            true,
            format!(
                "containers and pods from the unified hierarchy at {}{}",
                unified.display(),
                v1.map_or(String::new(), |v1| format!(
                    "; for tasks in its root, from {v1} (hybrid host)"
                ))
            ),
        ),
        (None, Some(v1)) => capability(
            "cgroup_attribution",
            true,
            format!("containers and pods from {v1} (cgroup v1 only: no scheduler view)"),
        ),
        (None, None) => capability(
            "cgroup_attribution",
            false,
            "no cgroup hierarchy to read (no unified one, no v1 memory, cpu or pids controller): events carry no container or pod",
        ),
    }
}

fn kubernetes_api(k: &super::k8s_pods::KubernetesConfig) -> Capability {
    if !k.enabled {
        return capability(
            "kubernetes_api",
            false,
            "off (kubernetes.enabled = false): pods are known by UID from cgroup paths, without names, namespaces or labels",
        );
    }
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let token = k.token_file.is_file();
    match (k.endpoint.as_deref(), in_cluster, token) {
        (_, _, false) => capability(
            "kubernetes_api",
            false,
            format!("no token at {}: pods are not named", k.token_file.display()),
        ),
        (Some(endpoint), _, true) => capability(
            "kubernetes_api",
            true,
            format!("pods named from {endpoint}"),
        ),
        (None, true, true) => capability(
            "kubernetes_api",
            true,
            "pods named from the in-cluster API server",
        ),
        (None, false, true) => capability(
            "kubernetes_api",
            false,
            "not in a cluster (no KUBERNETES_SERVICE_HOST) and no endpoint set: pods are not named",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_layouts_and_kubernetes_settings_are_told_apart() {
        let hybrid = cgroupfs::Hierarchies::from_mountinfo(
            "35 24 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             36 24 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        );
        use cgroupfs::{CgroupHierarchy, CgroupView};
        let view = |h, mode, c| CgroupView::choose(h, mode, c);
        let c = cgroup_attribution(&view(&hybrid, CgroupHierarchy::Auto, None).unwrap());
        assert!(c.available && c.detail.contains("hybrid") && c.detail.contains("`memory`"));
        let c = cgroup_attribution(&view(&hybrid, CgroupHierarchy::V1, None).unwrap());
        assert!(
            c.detail.contains("cgroup_hierarchy = \"v1\""),
            "{}",
            c.detail
        );
        let c = cgroup_attribution(&view(&hybrid, CgroupHierarchy::Unified, None).unwrap());
        assert!(!c.detail.contains("memory"), "{}", c.detail);
        let err = view(&hybrid, CgroupHierarchy::Auto, Some("pids")).unwrap_err();
        assert!(
            err.contains("\"pids\" is not mounted") && err.contains("memory"),
            "{err}"
        );
        let v1_only = cgroupfs::Hierarchies::from_mountinfo(
            "36 24 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        );
        let c = cgroup_attribution(&view(&v1_only, CgroupHierarchy::Auto, None).unwrap());
        assert!(c.available && c.detail.contains("v1 only"), "{}", c.detail);
        let nothing = cgroupfs::Hierarchies::from_mountinfo("");
        assert!(
            !cgroup_attribution(&view(&nothing, CgroupHierarchy::Auto, None).unwrap()).available
        );
        assert!(view(&nothing, CgroupHierarchy::V1, None).is_err());

        let mut k = super::super::k8s_pods::KubernetesConfig::default();
        assert!(!kubernetes_api(&k).available);
        k.enabled = true;
        k.token_file = "/nonexistent/token".into();
        let c = kubernetes_api(&k);
        assert!(!c.available && c.detail.contains("/nonexistent/token"));
        let token = tempfile::NamedTempFile::new().unwrap();
        k.token_file = token.path().to_owned();
        k.endpoint = Some("https://10.0.0.1:6443".into());
        assert!(kubernetes_api(&k).available);
    }
}
