//! `cargo xtask run` and `cargo xtask test`: the two commands a new machine
//! needs. Each first installs what is missing, idempotently and quietly when
//! everything is present:
//!
//! - the nightly toolchain with `rust-src` (the kernel programs build `core`
//!   for `bpfel-unknown-none`);
//! - `bpf-linker` 0.10.1 (newer releases want an external LLVM);
//! - Debian packages: `runc` and `busybox-static` for the container tests,
//!   `libc6-dev` for their statically linked helper programs, `libssl-dev`
//!   and `pkg-config` for librdkafka's TLS and SASL (kafka sink).
//!
//! `run` builds Lumen and runs it on the embedded default config.
//! `test` runs `cargo fmt --check`, clippy with `-D warnings` (host crates and
//! kernel programs) and every test.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const BPF_LINKER_VERSION: &str = "0.10.1";
const DEBIAN_PACKAGES: &[&str] = &[
    "runc",
    "busybox-static",
    "libssl-dev",
    "pkg-config",
    // glibc's static libraries: the e2e tests' helper programs run in
    // busybox containers.
    "libc6-dev",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command in the repository root; fails naming it.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .current_dir(
            cmd.get_current_dir()
                .map(Path::to_path_buf)
                .unwrap_or_else(root),
        )
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_nightly() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("xtask: installing the nightly toolchain (for the eBPF programs)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .unwrap_or_default();
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: adding rust-src to the nightly toolchain");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    for component in ["rustfmt", "clippy"] {
        if !components.lines().any(|l| l.starts_with(component)) {
            run(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                "nightly",
            ]))?;
        }
    }
    Ok(())
}

fn ensure_bpf_linker() -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.split_whitespace().any(|w| w == BPF_LINKER_VERSION) {
        return Ok(());
    }
    eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} (a few minutes, once)");
    run(Command::new("cargo").args([
        "+nightly",
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
        "--force",
    ]))
}

fn ensure_debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f", "${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if output(Command::new("id").arg("-u"))
        .as_deref()
        .map(str::trim)
        != Some("0")
    {
        eprintln!(
            "xtask: missing Debian packages {missing:?}; install them as root (apt-get install {})",
            missing.join(" ")
        );
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {missing:?}");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ensure_tools() -> Result<()> {
    ensure_nightly().context("setting up the nightly toolchain")?;
    ensure_bpf_linker().context("installing bpf-linker")?;
    ensure_debian_packages().context("installing Debian packages")?;
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

/// The kernel-program crate, built with nightly for the BPF target.
fn ebpf_cargo(subcommand: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", subcommand])
        .current_dir(root().join("collector-ebpf"));
    cmd
}

fn test() -> Result<()> {
    ensure_tools()?;
    eprintln!("xtask: cargo fmt --check");
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(ebpf_cargo("fmt").arg("--check"))?;
    eprintln!("xtask: clippy -D warnings");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(ebpf_cargo("clippy").args([
        "--release",
        "--locked",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("xtask: cargo test (every test; eBPF and end-to-end tests need root)");
    run(cargo().args(["test", "--workspace", "--locked"]))?;
    Ok(())
}

fn run_lumen(extra: &[String]) -> Result<()> {
    ensure_tools()?;
    run(cargo().args(["build", "--release", "--locked", "--package", "lumen"]))?;
    let binary = root().join("target/release/lumen");
    let mut cmd = Command::new(&binary);
    cmd.arg("run").args(extra);
    if output(Command::new("id").arg("-u"))
        .as_deref()
        .map(str::trim)
        != Some("0")
    {
        eprintln!("xtask: the ebpf source needs root; running lumen with sudo");
        cmd = Command::new("sudo");
        cmd.arg(&binary).arg("run").args(extra);
    }
    eprintln!("xtask: running lumen on the default config (Ctrl-C drains and stops)");
    run(&mut cmd)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("run") => run_lumen(&args[1..]),
        Some("setup") => ensure_tools(),
        _ => {
            eprintln!(
                "usage: cargo xtask run [lumen run options] | cargo xtask test | cargo xtask setup"
            );
            std::process::exit(2);
        }
    }
}
