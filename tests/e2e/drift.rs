//! Drift and fileless execution seen in the kernel, with real containers:
//! a binary copied into a running container and executed is drift (on an
//! overlay root by its upper layer, on any root because the container
//! wrote it); the image's binaries and the entrypoint are not. A memfd and
//! a `/dev/shm` executable are fileless, and the write to `/dev/shm` is
//! reported though `/dev/` is excluded.

use crate::support::{
    build_helper, is_root, random_container_id, read_ndjson, wait_for_events, Container, Lumen,
    KERNEL_TO_FILES,
};
use serde_json::Value;
use std::time::Duration;

fn start() -> Lumen {
    assert!(is_root(), "runc and eBPF need root (CI runs as root)");
    let mut lumen = Lumen::start(KERNEL_TO_FILES);
    lumen.wait_attached();
    lumen
}

fn execs_of<'a>(events: &'a [Value], container: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"]["action"] == "exec" && e["container"]["id"] == container)
        .collect()
}

fn exec_of<'a>(events: &'a [Value], container: &str, executable: &str) -> Option<&'a Value> {
    execs_of(events, container)
        .into_iter()
        .find(|e| e["process"]["executable"] == executable)
}

/// Runs `script` in a container and returns its id and Lumen's ECS events
/// once the exec of `last` (an executable path) is in.
fn run_in_container(
    lumen: &Lumen,
    overlay: bool,
    script: &str,
    last: &str,
) -> (String, Vec<Value>) {
    let id = random_container_id();
    let name = format!("lumen-drift-{}", &id[..12]);
    let cgroup = format!("/kubepods/besteffort/pod0f5a7c1e-1111-2222-3333-444455556666/{id}");
    let args = ["/bin/sh", "-c", script];
    let container = if overlay {
        Container::on_overlay(&name, &cgroup, &args)
    } else {
        Container::new(&name, &cgroup, &args)
    };
    assert!(container.run().success(), "the container's script failed");
    let ecs = lumen.path("ecs.ndjson");
    wait_for_events(&ecs, Duration::from_secs(20), |evs| {
        exec_of(evs, &id, last).is_some()
    });
    // Anything of the container still on the way is in by now.
    std::thread::sleep(Duration::from_millis(300));
    (id, read_ndjson(&ecs))
}

/// The entrypoint and an image binary run after the drift carry no facts
/// (busybox sh runs cp and chmod in-process: they are no exec).
fn image_is_not_drift(events: &[Value], id: &str) {
    for image in ["/bin/sh", "/bin/cat"] {
        let e = exec_of(events, id, image).unwrap_or_else(|| panic!("exec of {image}"));
        assert!(
            e["lumen"].get("exe").is_none(),
            "{image} is not drift: {e:#}"
        );
    }
}

#[test]
fn a_binary_dropped_in_an_overlay_container_is_drift_and_its_image_is_not() {
    let mut lumen = start();
    let (id, events) = run_in_container(
        &lumen,
        true,
        "cp /bin/busybox /tmp/busybox && /tmp/busybox true && /bin/cat /dev/null",
        "/bin/cat",
    );
    let dropped = exec_of(&events, &id, "/tmp/busybox").expect("exec of the dropped binary");
    assert_eq!(dropped["lumen"]["exe"]["drift"], true, "{dropped:#}");
    assert_eq!(
        dropped["lumen"]["exe"]["drift_reasons"],
        serde_json::json!(["overlay_upper_layer", "written_in_container"])
    );
    assert!(dropped["lumen"]["exe"].get("fileless").is_none());
    image_is_not_drift(&events, &id);
    // OCSF carries the same facts.
    let ocsf = read_ndjson(&lumen.path("ocsf.ndjson"));
    let o = ocsf
        .iter()
        .find(|e| e["activity_id"] == 1 && e["process"]["file"]["path"] == "/tmp/busybox")
        .expect("OCSF launch of the dropped binary");
    assert_eq!(o["unmapped"]["exe"]["drift"], true);
    let (status, _) = lumen.stop();
    assert!(status.success());
}

#[test]
fn on_a_plain_root_a_program_the_container_wrote_and_ran_is_drift() {
    let mut lumen = start();
    let (id, events) = run_in_container(
        &lumen,
        false,
        "cp /bin/busybox /tmp/busybox && chmod 755 /tmp/busybox && /tmp/busybox true && /bin/cat /dev/null",
        "/bin/cat",
    );
    let tool = exec_of(&events, &id, "/tmp/busybox").expect("exec of the written binary");
    assert_eq!(
        tool["lumen"]["exe"]["drift_reasons"],
        serde_json::json!(["written_in_container"]),
        "no overlay here: the write is the evidence"
    );
    image_is_not_drift(&events, &id);
    let (status, _) = lumen.stop();
    assert!(status.success());
}

#[test]
fn memfd_and_dev_shm_executions_are_fileless_and_dev_shm_writes_are_seen() {
    let mut lumen = start();
    let memfd_exec = build_helper("memfd_exec", lumen.dir.path());
    let marker = format!("lumen-fileless-{}", std::process::id());
    let status = std::process::Command::new(&memfd_exec)
        .args(["/bin/echo", &marker, "memfd"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let staged = format!("/dev/shm/{marker}");
    std::fs::copy("/bin/echo", &staged).unwrap();
    let status = std::process::Command::new(&staged)
        .args([&marker, "shm"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    std::fs::remove_file(&staged).unwrap();
    assert!(status.success());
    let status = std::process::Command::new("/bin/echo")
        .args([&marker, "disk"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let with = |e: &Value, word: &str| {
        e["event"]["action"] == "exec"
            && e["process"]["args"]
                .as_array()
                .is_some_and(|a| a.len() == 3 && a[1] == marker.as_str() && a[2] == word)
    };
    let ecs = lumen.path("ecs.ndjson");
    let events = wait_for_events(&ecs, Duration::from_secs(20), |evs| {
        ["memfd", "shm", "disk"]
            .iter()
            .all(|w| evs.iter().any(|e| with(e, w)))
    });
    let find = |w: &str| events.iter().find(|e| with(e, w)).unwrap();
    assert_eq!(
        find("memfd")["lumen"]["exe"]["fileless_reasons"],
        serde_json::json!(["memfd"]),
        "{:#}",
        find("memfd")
    );
    assert_eq!(
        find("shm")["lumen"]["exe"]["fileless_reasons"],
        serde_json::json!(["tmpfs"])
    );
    assert!(find("disk")["lumen"].get("exe").is_none());
    // The copy into /dev/shm is a reported write.
    assert!(
        events.iter().any(|e| e["event"]["action"] == "open"
            && e["file"]["path"] == staged.as_str()
            && e["lumen"]["file"]["write"] == true),
        "the write to {staged} was not reported"
    );
    let (status, _) = lumen.stop();
    assert!(status.success());
}
