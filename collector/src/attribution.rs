//! Cgroup path → container id, runtime, pod UID and QoS class.
//!
//! The kernel programs send the last components of a task's cgroup path
//! (leaf first) with every record, so attribution works from the path alone,
//! even for a container whose cgroup no longer exists. Recognized layouts:
//!
//! | layout | leaf | parent |
//! | --- | --- | --- |
//! | Docker (cgroupfs) | `<id>` | `docker` |
//! | Docker (systemd) | `docker-<id>.scope` | `system.slice` |
//! | containerd (systemd, CRI) | `cri-containerd-<id>.scope` | pod slice |
//! | CRI-O (systemd) | `crio-<id>.scope` | pod slice |
//! | podman | `libpod-<id>.scope`, or `<id>` under `libpod_parent` | |
//! | kubelet, cgroupfs driver | `<id>` | `pod<uid>` |
//! | kubelet, systemd driver | runtime scope | `kubepods[-<qos>]-pod<uid_with_underscores>.slice` |
//! | runc | `<id>` (64 hex) | anything |
//!
//! QoS: `kubepods/burstable|besteffort/pod…` or `kubepods-burstable|besteffort-pod…`;
//! a pod directly under `kubepods` is Guaranteed. Conmon scopes
//! (`crio-conmon-…`, `libpod-conmon-…`) are the runtime's monitor, not the
//! container, and are not attributed.

use lumen_schemas::event::{ContainerRuntime, QosClass};

/// What a cgroup path says about where a process runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub container_id: Option<&'a str>,
    pub runtime: Option<ContainerRuntime>,
    /// Pod UID with dashes (the systemd driver writes underscores).
    pub pod_uid: Option<String>,
    pub qos: Option<QosClass>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `<prefix><64 hex>.scope` → the id.
fn scoped<'a>(leaf: &'a str, prefix: &str) -> Option<&'a str> {
    let id = leaf.strip_prefix(prefix)?.strip_suffix(".scope")?;
    is_container_id(id).then_some(id)
}

fn is_pod_uid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-' || b == b'_',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `pod<uid>` (cgroupfs) or `kubepods[-qos]-pod<uid>.slice` (systemd).
fn pod(component: &str) -> Option<(String, Option<QosClass>)> {
    if let Some(uid) = component.strip_prefix("pod").filter(|u| is_pod_uid(u)) {
        return Some((uid.replace('_', "-"), None));
    }
    let rest = component
        .strip_prefix("kubepods-")?
        .strip_suffix(".slice")?;
    let (qos, uid) = match rest.split_once("-pod") {
        Some(("burstable", uid)) => (QosClass::Burstable, uid),
        Some(("besteffort", uid)) => (QosClass::BestEffort, uid),
        _ => (QosClass::Guaranteed, rest.strip_prefix("pod")?),
    };
    is_pod_uid(uid).then(|| (uid.replace('_', "-"), Some(qos)))
}

fn qos_of_cgroupfs_parent(component: &str) -> Option<QosClass> {
    match component {
        "burstable" => Some(QosClass::Burstable),
        "besteffort" => Some(QosClass::BestEffort),
        "kubepods" => Some(QosClass::Guaranteed),
        _ => None,
    }
}

/// Parses the last cgroup path components, leaf first.
pub fn parse<'a>(leaf_first: &[&'a str]) -> Parsed<'a> {
    let mut out = Parsed::default();
    let (Some(&leaf), parent) = (leaf_first.first(), leaf_first.get(1).copied()) else {
        return out;
    };
    let grandparent = leaf_first.get(2).copied();
    let scopes: [(&str, ContainerRuntime); 4] = [
        ("docker-", ContainerRuntime::Docker),
        ("cri-containerd-", ContainerRuntime::Containerd),
        ("crio-", ContainerRuntime::CriO),
        ("libpod-", ContainerRuntime::Podman),
    ];
    for (prefix, runtime) in scopes {
        if let Some(id) = scoped(leaf, prefix) {
            out.container_id = Some(id);
            out.runtime = Some(runtime);
        }
    }
    if out.container_id.is_none() && is_container_id(leaf) {
        out.container_id = Some(leaf);
        out.runtime = Some(match parent {
            Some("docker") => ContainerRuntime::Docker,
            Some("libpod_parent") => ContainerRuntime::Podman,
            _ => ContainerRuntime::Runc,
        });
    }
    if out.container_id.is_some() {
        if let Some((uid, qos)) = parent.and_then(pod) {
            out.pod_uid = Some(uid);
            out.qos = qos.or_else(|| grandparent.and_then(qos_of_cgroupfs_parent));
        }
    } else if let Some((uid, qos)) = pod(leaf) {
        // A process in the pod's own cgroup (not in one of its containers).
        out.pod_uid = Some(uid);
        out.qos = qos.or_else(|| parent.and_then(qos_of_cgroupfs_parent));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "abababababababababababababababababababababababababababababababab";
    const UID: &str = "0f5a7c1e-1111-2222-3333-444455556666";
    const UID_: &str = "0f5a7c1e_1111_2222_3333_444455556666";

    fn p<'a>(c: &[&'a str]) -> Parsed<'a> {
        parse(c)
    }

    #[test]
    fn kubelet_cgroupfs_layout_gives_container_pod_and_qos() {
        let pod = format!("pod{UID}");
        let got = p(&[ID, &pod, "burstable"]);
        assert_eq!(got.container_id, Some(ID));
        assert_eq!(got.runtime, Some(ContainerRuntime::Runc));
        assert_eq!(got.pod_uid.as_deref(), Some(UID));
        assert_eq!(got.qos, Some(QosClass::Burstable));
        assert_eq!(p(&[ID, &pod, "besteffort"]).qos, Some(QosClass::BestEffort));
        assert_eq!(p(&[ID, &pod, "kubepods"]).qos, Some(QosClass::Guaranteed));
    }

    #[test]
    fn kubelet_systemd_layout_with_each_cri_runtime() {
        let slice = format!("kubepods-besteffort-pod{UID_}.slice");
        for (leaf, runtime) in [
            (
                format!("cri-containerd-{ID}.scope"),
                ContainerRuntime::Containerd,
            ),
            (format!("crio-{ID}.scope"), ContainerRuntime::CriO),
            (format!("docker-{ID}.scope"), ContainerRuntime::Docker),
        ] {
            let got = p(&[&leaf, &slice, "kubepods-besteffort.slice"]);
            assert_eq!(got.container_id, Some(ID), "{leaf}");
            assert_eq!(got.runtime, Some(runtime));
            assert_eq!(got.pod_uid.as_deref(), Some(UID));
            assert_eq!(got.qos, Some(QosClass::BestEffort));
        }
        let guaranteed = format!("kubepods-pod{UID_}.slice");
        let leaf = format!("cri-containerd-{ID}.scope");
        assert_eq!(
            p(&[&leaf, &guaranteed, "kubepods.slice"]).qos,
            Some(QosClass::Guaranteed)
        );
    }

    #[test]
    fn docker_podman_and_plain_runc_outside_kubernetes() {
        assert_eq!(p(&[ID, "docker"]).runtime, Some(ContainerRuntime::Docker));
        let scope = format!("docker-{ID}.scope");
        assert_eq!(
            p(&[&scope, "system.slice"]).runtime,
            Some(ContainerRuntime::Docker)
        );
        let libpod = format!("libpod-{ID}.scope");
        let got = p(&[&libpod, "machine.slice"]);
        assert_eq!(
            (got.container_id, got.runtime),
            (Some(ID), Some(ContainerRuntime::Podman))
        );
        assert_eq!(
            p(&[ID, "libpod_parent"]).runtime,
            Some(ContainerRuntime::Podman)
        );
        let got = p(&[ID, "mycontainers"]);
        assert_eq!(
            (got.container_id, got.runtime, got.pod_uid),
            (Some(ID), Some(ContainerRuntime::Runc), None)
        );
    }

    #[test]
    fn host_cgroups_conmon_and_garbage_are_not_containers() {
        for c in [
            vec!["session-3.scope", "user-1000.slice", "user.slice"],
            vec!["sshd.service", "system.slice"],
            vec![""],
            vec![],
            vec!["crio-conmon-abababababababababababababababababababababababababababababababab.scope"],
            vec!["ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB"],
            vec!["abab", "pod-not-a-uid"],
        ] {
            assert_eq!(p(&c), Parsed::default(), "{c:?}");
        }
    }

    #[test]
    fn a_process_in_the_pod_cgroup_itself_gets_the_pod() {
        let pod = format!("pod{UID}");
        let got = p(&[&pod, "burstable", "kubepods"]);
        assert_eq!(
            (got.container_id, got.pod_uid.as_deref(), got.qos),
            (None, Some(UID), Some(QosClass::Burstable))
        );
    }
}
