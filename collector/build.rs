//! Builds the kernel programs (`collector-ebpf`, `bpfel-unknown-none`) with the
//! nightly toolchain and bpf-linker, and leaves the object in `OUT_DIR` for
//! `include_bytes_aligned!`. `cargo xtask run|test` installs both tools.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let ebpf = manifest.join("../collector-ebpf");
    for p in ["src", "Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        println!("cargo:rerun-if-changed={}", ebpf.join(p).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("../collector-common/src").display()
    );

    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--manifest-path")
        .arg(ebpf.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings (host rustc, flags, target dir) must not leak
    // into the BPF build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let leaks = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key == "RUSTFLAGS"
            || key == "RUSTUP_TOOLCHAIN";
        if leaks {
            cmd.env_remove(&key);
        }
    }
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        "-Cdebuginfo=2\x1f-Clink-arg=--btf",
    );
    let status = cmd.status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            println!(
                "cargo:warning=building the eBPF programs failed ({other:?}); they need the nightly \
                 toolchain with rust-src and bpf-linker 0.10.1: run `cargo xtask test` or \
                 `cargo xtask run`, which install both"
            );
            std::process::exit(1);
        }
    }
    let object = target_dir.join("bpfel-unknown-none/release/lumen");
    let dest = out_dir.join("lumen-ebpf.o");
    if let Err(e) = std::fs::copy(&object, &dest) {
        println!("cargo:warning=cannot copy {}: {e}", object.display());
        std::process::exit(1);
    }
}
