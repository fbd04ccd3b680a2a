//! Sources: where events enter the topology.

pub mod checkpoint;
pub mod ebpf;
pub mod k8s_audit_file;
pub mod k8s_audit_webhook;
pub mod kafka;
