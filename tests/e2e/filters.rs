//! In-kernel scope filters: `containers_only` and `exclude_comms`.

use crate::support::{
    is_root, random_container_id, read_ndjson, wait_for_events, Container, Lumen,
};
use std::process::Command;
use std::time::Duration;

fn config(extra: &str) -> String {
    format!(
        "[sources.kernel]\ntype = \"ebpf\"\n{extra}\n\n[sinks.ecs]\ntype = \"file\"\ninputs = [\"kernel\"]\nschema = \"ecs\"\npath = \"{{dir}}/ecs.ndjson\"\n"
    )
}

/// setuid, setreuid or setresuid (setpriv picks one).
fn is_uid_change(e: &serde_json::Value) -> bool {
    matches!(
        e["event"]["action"].as_str(),
        Some("setuid" | "setreuid" | "setresuid")
    ) && e["lumen"]["privilege"]["new"]["uid"] == 65534
}

fn has_arg(e: &serde_json::Value, marker: &str) -> bool {
    e["process"]["args"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == marker))
}

#[test]
fn containers_only_reports_the_container_and_not_the_host() {
    assert!(is_root(), "runc and eBPF need root (CI runs as root)");
    let mut lumen = Lumen::start(&config("containers_only = true"));
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    let host_marker = format!("lumen-host-{}", std::process::id());
    assert!(Command::new("/bin/true")
        .arg(&host_marker)
        .status()
        .unwrap()
        .success());
    let id = random_container_id();
    let ctr_marker = format!("lumen-ctr-{}", &id[..12]);
    let container = Container::new(
        &format!("lumen-filter-{}", &id[..12]),
        &format!("/lumen-e2e/{id}"),
        &["/bin/sh", "-c", &format!("/bin/true {ctr_marker}")],
    );
    assert!(container.run().success());
    let out = lumen.path("ecs.ndjson");
    wait_for_events(&out, Duration::from_secs(20), |evs| {
        evs.iter().any(|e| has_arg(e, &ctr_marker))
    });
    std::thread::sleep(Duration::from_millis(500));
    let events = read_ndjson(&out);
    assert!(
        !events.iter().any(|e| has_arg(e, &host_marker)),
        "a host process was reported"
    );
    // Nothing from the host at all: every event is in another mount namespace.
    let host_mnt: u64 = std::fs::read_link("/proc/self/ns/mnt")
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("mnt:[")
        .trim_end_matches(']')
        .parse()
        .unwrap();
    assert!(events
        .iter()
        .all(|e| e["lumen"]["process"]["namespaces"]["mnt"].as_u64() != Some(host_mnt)));
    let (status, _) = lumen.stop();
    assert!(status.success());
}

#[test]
fn excluded_comms_are_dropped_but_never_their_privilege_events() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let mut lumen = Lumen::start(&config("exclude_comms = [\"sleep\", \"setpriv\"]"));
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    let marker = format!("lumen-kept-{}", std::process::id());
    assert!(Command::new("/bin/sleep")
        .arg("0.01")
        .status()
        .unwrap()
        .success());
    // setpriv (util-linux) switches to nobody, then execs true.
    let status = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/true",
            &marker,
        ])
        .status()
        .expect("setpriv (util-linux) is on Debian systems");
    assert!(status.success());
    let out = lumen.path("ecs.ndjson");
    let events = wait_for_events(&out, Duration::from_secs(20), |evs| {
        evs.iter().any(|e| has_arg(e, &marker))
            && evs
                .iter()
                .any(|e| is_uid_change(e) && e["process"]["name"] == "setpriv")
    });
    // The comm filter applies to process, file and network events...
    assert!(
        !events.iter().any(|e| e["process"]["name"] == "sleep"),
        "sleep was reported"
    );
    assert!(!events
        .iter()
        .any(|e| e["event"]["action"] == "exec" && e["process"]["name"] == "setpriv"));
    // ...but not to privilege events: a process chooses its own name.
    let setuid = events
        .iter()
        .find(|e| is_uid_change(e) && e["process"]["name"] == "setpriv")
        .unwrap();
    assert_eq!(setuid["lumen"]["privilege"]["new"]["uid"], 65534);
    let (status, _) = lumen.stop();
    assert!(status.success());
}
