//! The host's namespaces — PID 1's, read at start-up — so that a setns from
//! a container is known as a step into the host (`nsenter -t 1`, a pidfd
//! of a host process) rather than into a sibling container's namespace.

use lumen_schemas::event::{NamespaceKind, PrivilegeEvent};
use std::path::Path;

#[derive(Debug, Default)]
pub struct HostNamespaces {
    /// (namespace number, kind) of each namespace PID 1 is in.
    known: Vec<(u64, NamespaceKind)>,
}

impl HostNamespaces {
    /// PID 1's namespaces under a procfs mount (normally `/proc`). Where
    /// PID 1's are unreadable (a sandbox that denies it even to root),
    /// Lumen's own stand in — right when Lumen runs on the host, or in a
    /// pod with hostPID and hostNetwork — as for `containers_only`. A kind
    /// the kernel lacks is left out.
    pub fn read(proc: &Path) -> HostNamespaces {
        let number = |pid: &str, kind: NamespaceKind| -> Option<u64> {
            super::namespace_inode(&proc.join(pid).join("ns").join(kind.as_str())).map(u64::from)
        };
        let mut own = Vec::new();
        let known = NamespaceKind::ALL
            .into_iter()
            .filter_map(|kind| match number("1", kind) {
                Some(n) => Some((n, kind)),
                None => {
                    let n = number("self", kind)?;
                    own.push(kind.as_str());
                    Some((n, kind))
                }
            })
            .collect();
        if !own.is_empty() {
            tracing::warn!(namespaces = ?own, "ebpf source: PID 1's namespaces are unreadable; taking Lumen's own as the host's for setns events (right when Lumen runs on the host)");
        }
        HostNamespaces { known }
    }

    /// The host's namespace of `kind`.
    fn of(&self, kind: NamespaceKind) -> Option<u64> {
        self.known.iter().find(|(_, k)| *k == kind).map(|(n, _)| *n)
    }

    /// Marks a setns whose target is one of the host's namespaces: asked
    /// for by the namespace's file, or — a pidfd names no namespace — where
    /// a container's process is after the call succeeded.
    pub fn mark(&self, p: &mut PrivilegeEvent) {
        let Some(ns) = &mut p.namespace else { return };
        if ns.inode != 0 {
            if let Some((_, kind)) = self.known.iter().find(|(n, _)| *n == ns.inode) {
                ns.host = true;
                ns.kind = ns.kind.or(Some(*kind));
            }
            return;
        }
        let at = &p.process.attribution;
        if p.result < 0 || at.container_id.is_empty() {
            return;
        }
        let now = [
            (NamespaceKind::Mnt, at.mnt_ns),
            (NamespaceKind::Net, at.net_ns),
            (NamespaceKind::Pid, at.pid_ns),
        ];
        ns.host = now.iter().any(|(kind, number)| {
            *number != 0
                && (ns.nstype == 0 || ns.nstype & kind.clone_flag() != 0)
                && self.of(*kind) == Some(u64::from(*number))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_schemas::event::{push, NamespaceJoin, PrivilegeOp, Process};

    fn setns(inode: u64, nstype: u32, result: i64, container: bool) -> PrivilegeEvent {
        let mut process = Process::default().with_text("/usr/bin/nsenter", "nsenter", &[]);
        if container {
            process.attribution.container_id = push(&mut process.text, &"c".repeat(64));
        }
        PrivilegeEvent {
            op: PrivilegeOp::Setns,
            process,
            result,
            old: Default::default(),
            new: Default::default(),
            requested: [u32::MAX; 3],
            target_pid: None,
            object_name: Default::default(),
            bpf_prog_type: None,
            mount: None,
            namespace: Some(NamespaceJoin {
                nstype,
                inode,
                kind: NamespaceKind::of_nstype(nstype),
                host: false,
            }),
        }
    }

    #[test]
    fn the_hosts_namespaces_are_read_and_a_setns_into_one_is_marked() {
        let host = HostNamespaces::read(Path::new("/proc"));
        let mnt = host
            .of(NamespaceKind::Mnt)
            .expect("the host's mnt namespace");
        assert!(host.of(NamespaceKind::Net).is_some());
        // Asked for by file (nstype 0): the kind comes from the host's.
        let mut into_host = setns(mnt, 0, -1, true);
        host.mark(&mut into_host);
        let ns = into_host.namespace.unwrap();
        assert!(ns.host, "refused or not, the target is the host's");
        assert_eq!(ns.kind, Some(NamespaceKind::Mnt));
        // A namespace that is not the host's (a sibling container's).
        let mut sideways = setns(mnt + 1_000_000, NamespaceKind::Mnt.clone_flag(), 0, true);
        host.mark(&mut sideways);
        assert!(!sideways.namespace.unwrap().host);
        // By pidfd: where the container's process is after the call.
        let mut by_pidfd = setns(0, NamespaceKind::Mnt.clone_flag(), 0, true);
        by_pidfd.process.attribution.mnt_ns = mnt as u32;
        host.mark(&mut by_pidfd);
        assert!(by_pidfd.namespace.unwrap().host);
        let mut refused = setns(0, NamespaceKind::Mnt.clone_flag(), -1, true);
        refused.process.attribution.mnt_ns = mnt as u32;
        host.mark(&mut refused);
        assert!(!refused.namespace.unwrap().host, "still where it was");
        // A host process joining a network namespace by pidfd stays in the
        // host's mount namespace: no step into the host.
        let mut on_host = setns(0, NamespaceKind::Net.clone_flag(), 0, false);
        on_host.process.attribution.mnt_ns = mnt as u32;
        host.mark(&mut on_host);
        assert!(!on_host.namespace.unwrap().host);
    }
}
