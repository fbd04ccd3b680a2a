//! The detect transform through the binary: a real container that drops a
//! binary and runs it raises a drift finding (ECS alert, OCSF Detection
//! Finding) with the exec as evidence, while an ordinary container raises
//! none; audit events from a file raise the Kubernetes findings; a bad
//! rule file is refused by `lumen validate` with its file and line.

use crate::support::{
    build_helper, is_root, random_container_id, read_ndjson, wait_for_events, Container, Extra,
    Lumen, LUMEN,
};
use serde_json::Value;
use std::time::Duration;

const KERNEL: &str = r#"
[sources.kernel]
type = "ebpf"

[transforms.detect]
type = "detect"
inputs = ["kernel"]

[sinks.ecs]
type = "file"
inputs = ["detect"]
schema = "ecs"
path = "{dir}/ecs.ndjson"

[sinks.ocsf]
type = "file"
inputs = ["detect"]
schema = "ocsf"
path = "{dir}/ocsf.ndjson"
"#;

/// Checks every OCSF Detection Finding in `docs` against the OCSF 1.8.0
/// schema kept in the repository; returns how many there were.
fn assert_valid_ocsf_findings(docs: &[Value]) -> usize {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/tests/reference/ocsf/detection_finding.schema.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let findings: Vec<&Value> = docs.iter().filter(|d| d["class_uid"] == 2004).collect();
    for f in &findings {
        let errors: Vec<String> = validator
            .iter_errors(f)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{f:#}");
    }
    findings.len()
}

fn findings(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"]["kind"] == "alert")
        .collect()
}

#[test]
fn a_dropped_binary_in_a_container_is_a_finding_and_an_ordinary_container_is_not() {
    assert!(is_root(), "runc and eBPF need root (CI runs as root)");
    let mut lumen = Lumen::start(KERNEL);
    lumen.wait_attached();
    let run = |overlay: bool, script: &str| -> String {
        let id = random_container_id();
        let name = format!("lumen-detect-{}", &id[..12]);
        let cgroup = format!("/kubepods/besteffort/pod0f5a7c1e-1111-2222-3333-444455556666/{id}");
        let args = ["/bin/sh", "-c", script];
        let c = if overlay {
            Container::on_overlay(&name, &cgroup, &args)
        } else {
            Container::new(&name, &cgroup, &args)
        };
        assert!(c.run().success());
        id
    };
    let ordinary = run(false, "/bin/cat /dev/null; /bin/true");
    let attacked = run(true, "cp /bin/busybox /tmp/busybox && /tmp/busybox true");
    let ecs = lumen.path("ecs.ndjson");
    wait_for_events(&ecs, Duration::from_secs(20), |evs| {
        findings(evs)
            .iter()
            .any(|f| f["container"]["id"] == attacked.as_str())
    });
    std::thread::sleep(Duration::from_millis(500));
    let events = read_ndjson(&ecs);
    let found = findings(&events);
    let drift = found
        .iter()
        .find(|f| f["container"]["id"] == attacked.as_str())
        .unwrap();
    assert_eq!(
        drift["rule"]["id"], "lumen.container.drift_exec",
        "{drift:#}"
    );
    assert_eq!(drift["threat"]["technique"]["id"][0], "T1610");
    assert_eq!(drift["event"]["severity"], 4);
    assert_eq!(drift["process"]["executable"], "/tmp/busybox");
    assert_eq!(drift["lumen"]["exe"]["drift"], true);
    // The events themselves passed through unchanged.
    assert!(events.iter().any(|e| e["event"]["kind"] == "event"
        && e["event"]["action"] == "exec"
        && e["process"]["executable"] == "/tmp/busybox"));
    // The ordinary container, and everything else on this machine in the
    // meantime that is about a container, raised nothing.
    for f in &found {
        assert_ne!(f["container"]["id"], ordinary.as_str(), "{f:#}");
    }
    let ocsf = read_ndjson(&lumen.path("ocsf.ndjson"));
    let finding = ocsf
        .iter()
        .find(|e| {
            e["class_uid"] == 2004 && e["finding_info"]["uid"] == "lumen.container.drift_exec"
        })
        .expect("the OCSF finding");
    assert_eq!(
        finding["evidences"][0]["process"]["file"]["path"],
        "/tmp/busybox"
    );
    assert_eq!(finding["attacks"][0]["tactic"]["uid"], "TA0002");
    assert!(assert_valid_ocsf_findings(&ocsf) >= 1);
    let (status, _) = lumen.stop();
    assert!(status.success());
}

const AUDIT: &str = r#"
data_dir = "{dir}/data"
[api]
address = "127.0.0.1:PORT"
[sources.audit]
type = "k8s_audit_file"
path = "{dir}/logs/*.log"

[transforms.detect]
type = "detect"
inputs = ["audit"]
rule_files = ["{dir}/rules/*.yml"]

[sinks.ecs]
type = "file"
inputs = ["detect"]
schema = "ecs"
path = "{dir}/ecs.ndjson"
"#;

/// The built-in rules and a SigmaHQ rule file.
#[test]
fn audit_events_from_a_file_raise_the_kubernetes_findings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/../schemas/tests/reference/k8s-audit/falco/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let log: String = [
        "exec_pod.json",
        "create_nginx_pod_unprivileged.json",
        "attach_cluster_admin_role.json",
        "create_configmap.json",
    ]
    .iter()
    .map(|f| fixture(f).trim().to_owned() + "\n")
    .collect();
    std::fs::write(dir.path().join("logs/audit.log"), log).unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/transforms/detect/sigmahq/kubernetes_audit_exec_into_container.yml"
        ),
        dir.path().join("rules/exec.yml"),
    )
    .unwrap();
    let port = crate::support::free_port();
    let mut lumen = Lumen::start_in(dir, &AUDIT.replace("PORT", &port.to_string()));
    let ecs = lumen.path("ecs.ndjson");
    let events = wait_for_events(&ecs, Duration::from_secs(20), |evs| evs.len() >= 7);
    let rules: Vec<&str> = findings(&events)
        .iter()
        .map(|f| f["rule"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "lumen.k8s.exec_into_pod",
            "sigma.a1b0ca4e-7835-413e-8471-3ff2b8a66be6",
            "lumen.k8s.cluster_admin_binding"
        ],
        "the findings after each event they are about, none for the others"
    );
    assert_eq!(events.len(), 7, "4 events and 3 findings");
    let sigma = findings(&events)[1];
    assert_eq!(sigma["rule"]["ruleset"], "sigma");
    assert_eq!(sigma["threat"]["technique"]["id"][0], "T1609");
    // Counted per rule on /metrics.
    let metrics = crate::support::scrape_text(port);
    for line in [
        "lumen_findings_total{component_id=\"detect\",rule=\"lumen.k8s.exec_into_pod\"} 1",
        "lumen_detect_matches_total{component_id=\"detect\",rule=\"lumen.k8s.cluster_admin_binding\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
    let (status, _) = lumen.stop();
    assert!(status.success());
}

#[test]
fn lumen_validate_names_the_rule_file_and_line_of_a_bad_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("acme.toml");
    std::fs::write(
        &rules,
        "# acme's rules\n[[rule]]\nid = \"acme.a\"\ntitle = \"t\"\nkinds = [\"process_exec\"]\nwhen = { field = \"proces.name\", equals = \"curl\" }\n",
    )
    .unwrap();
    let config = dir.path().join("lumen.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.audit]\ntype = \"k8s_audit_file\"\npath = \"/tmp/*.log\"\n[transforms.detect]\ntype = \"detect\"\ninputs = [\"audit\"]\nrule_files = [\"{}\"]\n[sinks.out]\ntype = \"console\"\ninputs = [\"detect\"]\n",
            rules.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(LUMEN)
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:3: rule `acme.a`: `proces.name` is not a field",
            rules.display()
        )),
        "{stderr}"
    );
}

/// The container behaviours the built-in rules are about, done in a real
/// container by a user that is not root: a shell run by an application, a
/// setuid escalation, a memfd exec, a miner's command line, a connect to a
/// Stratum port, a ptrace attach, the escape attempts the kernel refuses
/// (a mount of the host's disk, nsenter into PID 1, a BPF program load;
/// this kernel has no module support, so module loads are tested with
/// synthetic events only), and a read of the service-account token by a
/// process that came in by `runc exec` — the entrypoint's own read of it
/// is not a finding. Each raises its finding, attributed to the container,
/// and nothing else does.
#[test]
fn container_behaviours_raise_their_findings() {
    assert!(is_root(), "runc and eBPF need root (CI runs as root)");
    let mut lumen = Lumen::start(KERNEL);
    let helpers = tempfile::tempdir().unwrap();
    let helper = |name: &str| build_helper(name, helpers.path());
    let token = helpers.path().join("token");
    std::fs::write(&token, "eyJhbGciOi.test.token").unwrap();
    lumen.wait_attached();
    let id = random_container_id();
    let script = "/bin/webapp; /bin/escalate; /bin/memfd_exec /bin/busybox true; \
                  /bin/cat /var/run/secrets/kubernetes.io/serviceaccount/token > /dev/null; \
                  /bin/true -o stratum+tcp://pool.example:3333; \
                  /bin/nc -w 1 127.0.0.1 3333 < /dev/null; \
                  /bin/trace_child; /bin/mount /dev/vda /mnt 2>/dev/null; \
                  /bin/nsenter -t 1 -m /bin/true 2>/dev/null; /bin/load_bpf; \
                  /bin/cat /dev/null; /bin/sleep 60";
    let container = Container::with(
        &format!("lumen-behaviours-{}", &id[..12]),
        &format!("/kubepods/besteffort/pod0f5a7c1e-1111-2222-3333-444455556666/{id}"),
        &["/bin/sh", "-c", script],
        Extra {
            files: vec![
                ("/bin/webapp".into(), helper("webapp"), 0o755),
                ("/bin/escalate".into(), helper("escalate"), 0o4755),
                ("/bin/memfd_exec".into(), helper("memfd_exec"), 0o755),
                ("/bin/trace_child".into(), helper("trace_child"), 0o755),
                ("/bin/load_bpf".into(), helper("load_bpf"), 0o755),
                (
                    "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
                    token.clone(),
                    0o644,
                ),
            ],
            uid: Some(1000),
            allow_privilege_gain: true,
            ..Extra::default()
        },
    );
    container.start();
    let want = [
        "lumen.container.shell_by_non_shell_parent",
        "lumen.container.setuid_escalation",
        "lumen.process.fileless_exec",
        "lumen.container.credential_read",
        "lumen.miner.command_line",
        "lumen.miner.stratum_port_connect",
        "lumen.escape.ptrace",
        "lumen.escape.mount_host_device_or_cgroup",
        "lumen.escape.nsenter",
        "lumen.escape.kernel_code_load",
    ];
    let ecs = lumen.path("ecs.ndjson");
    let of_container = |evs: &[Value]| -> Vec<String> {
        findings(evs)
            .iter()
            .filter(|f| f["container"]["id"] == id.as_str())
            .filter_map(|f| f["rule"]["id"].as_str().map(str::to_owned))
            .collect()
    };
    let events = wait_for_events(&ecs, Duration::from_secs(20), |evs| {
        let found = of_container(evs);
        want.iter()
            .filter(|w| **w != "lumen.container.credential_read")
            .all(|w| found.iter().any(|f| f == w))
    });
    // The entrypoint's own read of its token: no finding so far.
    assert!(
        !of_container(&events).contains(&"lumen.container.credential_read".to_owned()),
        "the entrypoint lineage read its own token"
    );
    let status = container.exec(&[
        "/bin/cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ]);
    assert!(status.success());
    let events = wait_for_events(&ecs, Duration::from_secs(20), |evs| {
        of_container(evs).contains(&"lumen.container.credential_read".to_owned())
    });
    let read = findings(&events)
        .into_iter()
        .find(|f| f["rule"]["id"] == "lumen.container.credential_read")
        .unwrap();
    assert_eq!(
        read["lumen"]["process"]["container_entry"], "exec",
        "{read:#}"
    );
    assert_eq!(read["process"]["name"], "cat");
    let entrypoint_read = events
        .iter()
        .find(|e| {
            e["container"]["id"] == id.as_str()
                && e["event"]["kind"] == "event"
                && e["file"]["path"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
        })
        .expect("the entrypoint's read, reported as an event");
    assert_eq!(
        entrypoint_read["lumen"]["process"]["container_entry"], "entrypoint",
        "{entrypoint_read:#}"
    );
    // runc's own mounts and capsets while it set the container up: known
    // as the runtime's by lineage, not by name, and no finding.
    let setup: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["container"]["id"] == id.as_str() && e["lumen"]["process"]["runtime_setup"] == true
        })
        .collect();
    let actions: Vec<&str> = setup
        .iter()
        .filter_map(|e| e["event"]["action"].as_str())
        .collect();
    eprintln!("runtime setup: {actions:?}");
    assert!(actions.contains(&"mount"), "{actions:?}");
    assert!(actions.contains(&"capset"), "{actions:?}");
    let found = of_container(&events);
    for f in &found {
        assert!(want.contains(&f.as_str()), "unexpected finding {f}");
    }
    let escalation = findings(&events)
        .into_iter()
        .find(|f| f["rule"]["id"] == "lumen.container.setuid_escalation")
        .unwrap();
    eprintln!("{escalation:#}");
    assert_eq!(escalation["user"]["id"], "1000", "{escalation:#}");
    assert_eq!(escalation["user"]["effective"]["id"], "0");
    // The same findings in OCSF, each valid against the schema.
    std::thread::sleep(Duration::from_millis(300));
    let ocsf = read_ndjson(&lumen.path("ocsf.ndjson"));
    assert!(assert_valid_ocsf_findings(&ocsf) >= want.len());
    let (status, _) = lumen.stop();
    assert!(status.success());
}

/// A privileged container that sees the host's processes (`privileged`,
/// `hostPID`) runs `nsenter -t <a host process> -m -n`: it joins the
/// host's mount and network namespaces — a host namespace join, critical,
/// with the host's namespace as evidence. The host process is this test,
/// not PID 1 as in `nsenter -t 1`: this machine's sandbox denies
/// `/proc/1/ns` even to root, and this test runs in the host's namespaces.
/// (The unprivileged container of the test above runs `nsenter -t 1`: its
/// own init's namespaces, which is no finding.)
#[test]
fn nsenter_into_the_hosts_namespaces_from_a_privileged_container_is_a_finding() {
    assert!(is_root(), "runc and eBPF need root (CI runs as root)");
    let mut lumen = Lumen::start(KERNEL);
    lumen.wait_attached();
    let id = random_container_id();
    let container = Container::with(
        &format!("lumen-escape-{}", &id[..12]),
        &format!("/kubepods/pod0f5a7c1e-1111-2222-3333-444455556666/{id}"),
        &[
            "/bin/nsenter",
            "-t",
            &std::process::id().to_string(),
            "-m",
            "-n",
            "/bin/true",
        ],
        Extra {
            privileged_host_pid: true,
            ..Extra::default()
        },
    );
    assert!(
        container.run().success(),
        "nsenter into the host's namespaces"
    );
    let ecs = lumen.path("ecs.ndjson");
    let events = wait_for_events(&ecs, Duration::from_secs(20), |evs| {
        findings(evs).iter().any(|f| {
            f["rule"]["id"] == "lumen.escape.host_namespace_join"
                && f["container"]["id"] == id.as_str()
        })
    });
    let finding = findings(&events)
        .into_iter()
        .find(|f| f["rule"]["id"] == "lumen.escape.host_namespace_join")
        .unwrap();
    let ns = &finding["lumen"]["privilege"]["namespace"];
    assert_eq!(ns["host"], true, "{finding:#}");
    assert_eq!(finding["event"]["outcome"], "success");
    assert!(
        ["mnt", "net"].contains(&ns["type"].as_str().unwrap_or("")),
        "{ns}"
    );
    let own =
        std::fs::read_link(format!("/proc/self/ns/{}", ns["type"].as_str().unwrap())).unwrap();
    assert!(
        own.to_string_lossy().contains(&ns["inode"].to_string()),
        "the namespace joined is this host's ({}): {ns}",
        own.display()
    );
    assert_eq!(finding["event"]["severity"], 5, "critical: {finding:#}");
    std::thread::sleep(Duration::from_millis(300));
    let ocsf = read_ndjson(&lumen.path("ocsf.ndjson"));
    assert!(assert_valid_ocsf_findings(&ocsf) >= 1);
    let (status, _) = lumen.stop();
    assert!(status.success());
}
