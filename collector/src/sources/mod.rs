//! Sources: where events enter the topology.

pub mod ebpf;
pub mod k8s_audit_file;
