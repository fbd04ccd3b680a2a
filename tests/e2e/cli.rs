//! `lumen validate` and `lumen run` on good and bad configs.

use crate::support::{Lumen, LUMEN};
use std::process::Command;

fn validate(config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(LUMEN)
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "bad.toml");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

const GOOD: &str = "[sources.audit]\ntype = \"k8s_audit_file\"\npath = \"/tmp/*.log\"\n\n[transforms.only_audit]\ntype = \"filter\"\ninputs = [\"audit\"]\ninclude_kinds = [\"k8s_audit\"]\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"only_audit\"]\n";

#[test]
fn validate_prints_the_topology_and_exits_0() {
    let (code, stdout, _) = validate(GOOD);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("audit (k8s_audit_file) -> only_audit"),
        "{stdout}"
    );
    assert!(
        stdout.contains("only_audit (filter) <- audit -> out"),
        "{stdout}"
    );
    assert!(stdout.contains("out (console) <- only_audit"), "{stdout}");
}

#[test]
fn each_config_error_exits_2_with_file_line_column_and_reason() {
    let cases = [
        (
            GOOD.replace(
                "path = \"/tmp/*.log\"",
                "path = \"/tmp/*.log\"\nfollow = true",
            ),
            "bad.toml:4:1: unknown field `follow`",
        ),
        (
            GOOD.replace("type = \"console\"", "type = \"splunk\""),
            "bad.toml:11:8: unknown variant `splunk`, expected one of `file`, `console`, `elasticsearch`, `splunk_hec`, `kafka`, `otlp`",
        ),
        (
            GOOD.replace("inputs = [\"only_audit\"]", "inputs = [\"nothing\"]"),
            "bad.toml:12:12: [sinks.out]: input `nothing` names no source or transform",
        ),
        (
            GOOD.replace("inputs = [\"audit\"]", "inputs = [\"loop\"]")
                + "\n[transforms.loop]\ntype = \"filter\"\ninputs = [\"only_audit\"]\n",
            "transforms form a cycle",
        ),
        (
            GOOD.replace("/tmp/*.log", "${LUMEN_E2E_UNSET_VAR}"),
            "bad.toml:3:9: environment variable `LUMEN_E2E_UNSET_VAR` is not set",
        ),
        ("[sources.audit\n".to_owned(), "bad.toml:1:"),
        (
            format!("[api]\naddress = \"localhost\"\n{GOOD}"),
            "bad.toml:2:11: invalid socket address syntax",
        ),
        (
            format!("[api]\nport = 9598\n{GOOD}"),
            "bad.toml:2:1: unknown field `port`, expected `address`",
        ),
    ];
    for (config, want) in cases {
        let (code, _, stderr) = validate(&config);
        assert_eq!(code, 2, "{want}: {stderr}");
        assert!(stderr.contains(want), "want {want:?} in {stderr:?}");
        assert!(stderr.starts_with("error: bad.toml:"), "{stderr}");
    }
}

#[test]
fn run_with_a_missing_config_file_exits_2_naming_it() {
    let out = Command::new(LUMEN)
        .args(["run", "--config", "/nonexistent/lumen.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/lumen.toml: cannot read the config file"),
        "{stderr}"
    );
}

#[test]
fn version_names_the_binary() {
    let out = Command::new(LUMEN).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("lumen {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn every_shipped_config_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // The secrets a deployment gives by environment, as placeholders.
            let out = Command::new(LUMEN)
                .args(["validate", "--config"])
                .arg(&path)
                .env("ELASTIC_PASSWORD", "placeholder")
                .env("SPLUNK_HEC_TOKEN", "placeholder")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 7, "lumen.toml and the six ready configs");
}

/// `lumen doctor` on this machine: kernel 6.18 with BTF, root, tracefs,
/// hybrid cgroups; no Kubernetes API configured.
#[test]
fn doctor_says_what_this_node_lets_lumen_see() {
    assert!(
        crate::support::is_root(),
        "BPF maps need root (CI runs as root)"
    );
    let out = Command::new(LUMEN).arg("doctor").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let state = |name: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .map(|rest| rest.trim_start().to_owned())
            .unwrap_or_else(|| panic!("no {name} line: {stdout}"))
    };
    for name in [
        "btf",
        "ring_buffer",
        "process_tracepoints",
        "syscall_tracepoints",
        "scheduler",
        "oom_events",
    ] {
        assert!(state(name).starts_with("yes:"), "{name}: {stdout}");
    }
    let cgroups = state("cgroup_attribution");
    assert!(cgroups.starts_with("yes:"), "{stdout}");
    // This machine's layout: v1 controllers beside /sys/fs/cgroup/unified.
    if std::path::Path::new("/sys/fs/cgroup/unified").is_dir() {
        assert!(cgroups.contains("hybrid"), "{stdout}");
    }
    assert!(state("kubernetes_api").starts_with("no: off"), "{stdout}");
    assert!(stdout.contains("ebpf source kernel of"), "{stdout}");
}

/// mimalloc asks for transparent huge pages for its arenas; `lumen` turns
/// them off for itself (zeroing 2 MiB at each first touch made its first
/// event 0.5 – 0.9 s later on this VM).
#[test]
fn run_keeps_its_memory_in_small_pages() {
    let mut lumen = Lumen::start(
        "[sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{dir}/audit.log\"\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"audit\"]\nschema = \"ecs\"\npath = \"{dir}/out.ndjson\"\n",
    );
    lumen.wait_for_log("lumen starting", std::time::Duration::from_secs(30));
    let status = std::fs::read_to_string(format!("/proc/{}/status", lumen.pid())).unwrap();
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    assert_eq!(thp, Some("0"), "{status}");
    lumen.stop();
}
