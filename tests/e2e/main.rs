//! End-to-end tests of the `lumen` binary: real processes, the real kernel
//! (as root), real files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod support;

mod api;
mod audit_file;
mod cli;
mod console;
mod containers;
mod deploy;
mod detect;
mod drift;
mod durability;
mod ebpf;
mod files;
mod filters;
mod handoff;
mod health;
mod kafka_source;
mod kubernetes;
mod logging;
mod network;
mod network_sinks;
mod privilege;
mod rate_limit;
mod redact;
mod reload;
mod resources;
mod shutdown;
mod tap;
mod webhook;
