//! Container and pod attribution with a real container: runc, a busybox
//! rootfs, and a cgroup at the kubelet's path for a Burstable pod.

use crate::support::{
    is_root, random_container_id, wait_for_events, wait_for_process_event, Container, Lumen,
    KERNEL_TO_FILES,
};
use std::time::Duration;

/// The exec of `executable` with `marker` among its arguments (`runc exec`
/// on the host has the marker in its arguments too), checked to be
/// attributed to runc container `container_id` of Burstable pod `pod_uid`.
fn attributed_exec(
    lumen: &Lumen,
    executable: &str,
    marker: &str,
    container_id: &str,
    pod_uid: &str,
) -> serde_json::Value {
    let is_marker = |e: &serde_json::Value| {
        e["event"]["action"] == "exec"
            && e["process"]["executable"] == executable
            && e["process"]["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == marker))
    };
    let events = wait_for_events(&lumen.path("ecs.ndjson"), Duration::from_secs(20), |evs| {
        evs.iter().any(is_marker)
    });
    let exec = events.into_iter().find(|e| is_marker(e)).unwrap();
    assert_eq!(exec["container"]["id"], container_id, "{exec:#}");
    assert_eq!(exec["container"]["runtime"], "runc");
    assert_eq!(exec["kubernetes"]["pod"]["uid"], pod_uid);
    assert_eq!(exec["kubernetes"]["pod"]["qos_class"], "Burstable");
    assert_eq!(
        exec["lumen"]["process"]["cgroup"],
        format!("burstable/pod{pod_uid}/{container_id}").as_str()
    );
    exec
}

#[test]
fn a_short_lived_runc_container_is_attributed_to_its_container_and_pod() {
    assert!(is_root(), "runc and eBPF need root (CI runs as root)");
    let mut lumen = Lumen::start(KERNEL_TO_FILES);
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));

    let container_id = random_container_id();
    let pod_uid = "7c0d5b5e-8f3a-4f0e-9a57-2b1f3c4d5e6f";
    let marker = format!("lumen-ctr-{}", &container_id[..12]);
    let container = Container::new(
        &format!("lumen-e2e-{}", &container_id[..12]),
        &format!("/kubepods/burstable/pod{pod_uid}/{container_id}"),
        &["/bin/sh", "-c", &format!("/bin/true {marker}")],
    );
    assert!(container.run().success());

    // The container is gone (its cgroup too) by the time events are read.
    let exec = attributed_exec(&lumen, "/bin/true", &marker, &container_id, pod_uid);
    // Its own namespaces, not the host's.
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let host_mnt: u64 = host_mnt
        .to_string_lossy()
        .trim_start_matches("mnt:[")
        .trim_end_matches(']')
        .parse()
        .unwrap();
    let mnt = exec["lumen"]["process"]["namespaces"]["mnt"]
        .as_u64()
        .unwrap();
    assert!(
        mnt != 0 && mnt != host_mnt,
        "container mnt ns {mnt} vs host {host_mnt}"
    );

    // Every event of the container's processes is attributed, exits too.
    let pid = exec["process"]["pid"].as_u64().unwrap();
    let exit = wait_for_process_event(&lumen.path("ecs.ndjson"), pid, "exit");
    assert_eq!(exit["container"]["id"], container_id.as_str());

    // OCSF: process.container with the container profile declared.
    let ocsf = wait_for_events(&lumen.path("ocsf.ndjson"), Duration::from_secs(10), |evs| {
        evs.iter()
            .any(|e| e["process"]["pid"].as_u64() == Some(pid) && e["activity_id"] == 1)
    });
    let launch = ocsf
        .iter()
        .find(|e| e["process"]["pid"].as_u64() == Some(pid) && e["activity_id"] == 1)
        .unwrap();
    assert_eq!(launch["process"]["container"]["uid"], container_id.as_str());
    assert_eq!(launch["process"]["container"]["pod_uuid"], pod_uid);
    assert_eq!(
        launch["metadata"]["profiles"],
        serde_json::json!(["container"])
    );

    // Host processes are not attributed to any container: runc itself.
    let events = crate::support::read_ndjson(&lumen.path("ecs.ndjson"));
    let runc = events
        .iter()
        .find(|e| {
            e["event"]["action"] == "exec"
                && e["process"]["executable"]
                    .as_str()
                    .is_some_and(|x| x.ends_with("/runc"))
        })
        .expect("exec of runc");
    assert!(runc.get("container").is_none(), "{runc:#}");
    assert!(runc["kubernetes"].is_null());
    let (status, _) = lumen.stop();
    assert!(status.success());
}

/// cgroup v1 attribution: Lumen told to read the v1 `memory` controller
/// attributes a runc container (cgroupfs driver, which on this hybrid host
/// places it in the v1 controllers and the unified hierarchy alike) to the
/// same container and pod as through the unified hierarchy, and its events
/// carry the v1 cgroup's id.
#[test]
fn a_container_is_attributed_through_a_cgroup_v1_controller() {
    assert!(is_root(), "runc and eBPF need root (CI runs as root)");
    let memory = std::path::Path::new("/sys/fs/cgroup/memory");
    assert!(
        memory.is_dir(),
        "this test needs the v1 memory controller mounted (this project's machines are hybrid)"
    );
    let config = KERNEL_TO_FILES.replace(
        "type = \"ebpf\"\n",
        "type = \"ebpf\"\ncgroup_hierarchy = \"v1\"\n",
    );
    let mut lumen = Lumen::start(&config);
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    assert!(
        lumen
            .log()
            .iter()
            .any(|l| l.contains("the v1 `memory` controller at /sys/fs/cgroup/memory")),
        "{:#?}",
        lumen.log()
    );

    let container_id = random_container_id();
    let pod_uid = "0b8d2f5e-3c1a-4e7b-9f60-5a4c3b2d1e0f";
    let cgroup = format!("/kubepods/burstable/pod{pod_uid}/{container_id}");
    let container = Container::new(
        &format!("lumen-v1-{}", &container_id[..12]),
        &cgroup,
        &["/bin/sleep", "30"],
    );
    container.start();
    use std::os::unix::fs::MetadataExt;
    let v1_id = std::fs::metadata(memory.join(cgroup.trim_start_matches('/')))
        .expect("runc made the container's memory cgroup")
        .ino();
    // The same container's unified cgroup has another id: the check below
    // tells the two apart.
    if let Ok(unified) = std::fs::metadata(format!("/sys/fs/cgroup/unified{cgroup}")) {
        assert_ne!(unified.ino(), v1_id);
    }
    let marker = format!("lumen-v1-{}", &container_id[..12]);
    assert!(container
        .exec(&["/bin/sh", "-c", &format!("/bin/true {marker}")])
        .success());
    let exec = attributed_exec(&lumen, "/bin/true", &marker, &container_id, pod_uid);
    assert_eq!(
        exec["lumen"]["process"]["cgroup_id"].as_u64(),
        Some(v1_id),
        "the v1 memory cgroup's id, not the unified one's: {exec:#}"
    );
    drop(container);
    let (status, _) = lumen.stop();
    assert!(status.success());
}
