//! The `filter` transform: passes events whose kind is included and not
//! excluded. Kinds: see [`KINDS`] (the names `EventKind::name` gives).
//! Filtered-out events are acknowledged as delivered (the user asked for them
//! to go nowhere) and counted as dropped.

use crate::topology::fanout::Fanout;
use lumen_sinks::ack::Status;
use lumen_sinks::{ComponentMetrics, Envelope};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// `[transforms.<id>] type = "filter"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub inputs: Vec<String>,
    /// Kinds to pass; empty passes every kind.
    #[serde(default)]
    pub include_kinds: Vec<FilterKind>,
    /// Kinds to drop.
    #[serde(default)]
    pub exclude_kinds: Vec<FilterKind>,
}

/// Every event kind, as `EventKind::name` spells it.
macro_rules! kinds {
    ($($variant:ident => $name:literal),* $(,)?) => {
        #[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
        pub enum FilterKind {
            $(#[serde(rename = $name)] $variant,)*
        }

        /// Event kinds a filter can name.
        pub const KINDS: &[&str] = &[$($name),*];

        impl FilterKind {
            fn name(self) -> &'static str {
                match self {
                    $(FilterKind::$variant => $name,)*
                }
            }
        }
    };
}

kinds! {
    ProcessExec => "process_exec",
    ProcessFork => "process_fork",
    ProcessExit => "process_exit",
    ProcessOomKill => "process_oom_kill",
    PrivilegeSetuid => "privilege_setuid",
    PrivilegeSetgid => "privilege_setgid",
    PrivilegeCapset => "privilege_capset",
    PrivilegePtrace => "privilege_ptrace",
    PrivilegeSetns => "privilege_setns",
    ModuleLoad => "module_load",
    BpfProgLoad => "bpf_prog_load",
    Mount => "mount",
    NetworkConnect => "network_connect",
    NetworkAccept => "network_accept",
    NetworkBind => "network_bind",
    NetworkListen => "network_listen",
    FileWrite => "file_write",
    FileReadSensitive => "file_read_sensitive",
    FileUnlink => "file_unlink",
    FileRename => "file_rename",
    FileChmod => "file_chmod",
    FileChown => "file_chown",
    Loss => "loss",
    RateLimitSummary => "rate_limit_summary",
    K8sAudit => "k8s_audit",
    Finding => "finding",
    ResourceSample => "resource_sample",
}

impl FilterConfig {
    pub fn passes(&self, kind_name: &str) -> bool {
        (self.include_kinds.is_empty() || self.include_kinds.iter().any(|k| k.name() == kind_name))
            && !self.exclude_kinds.iter().any(|k| k.name() == kind_name)
    }
}

pub async fn run(
    config: FilterConfig,
    mut rx: mpsc::Receiver<Envelope>,
    mut out: Fanout,
    metrics: Arc<ComponentMetrics>,
) {
    let mut burst = Vec::new();
    while crate::topology::burst::next(&mut rx, &mut burst).await > 0 {
        metrics.add_received(burst.len() as u64);
        for env in burst.drain(..) {
            if config.passes(env.event.kind.name()) {
                if out.send(env).await.is_err() {
                    return;
                }
                metrics.add_sent(1);
            } else {
                metrics.add_dropped(1);
                env.ack.complete(Status::Delivered);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_then_exclude() {
        let c = FilterConfig {
            inputs: vec![],
            include_kinds: vec![FilterKind::ProcessExec, FilterKind::K8sAudit],
            exclude_kinds: vec![FilterKind::K8sAudit],
        };
        assert!(c.passes("process_exec"));
        assert!(!c.passes("process_exit"));
        assert!(!c.passes("k8s_audit"));
        let all = FilterConfig {
            inputs: vec![],
            include_kinds: vec![],
            exclude_kinds: vec![],
        };
        assert!(KINDS.iter().all(|k| all.passes(k)));
    }
}
