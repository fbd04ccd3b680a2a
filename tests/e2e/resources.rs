//! Resource samples through the binary: a real runc container in the
//! kubelet layout, with a CPU quota, spinning; its samples carry its
//! container and pod, its CPU use and its throttling, in ECS.

use crate::support::{is_root, random_container_id, wait_for_events, Container, Extra, Lumen};
use serde_json::Value;
use std::time::Duration;

const CONFIG: &str = r#"
[sources.kernel]
type = "ebpf"
resources.interval_secs = 0.5

[transforms.samples]
type = "filter"
inputs = ["kernel"]
include_kinds = ["resource_sample"]

[sinks.ecs]
type = "file"
inputs = ["samples"]
schema = "ecs"
path = "{dir}/ecs.ndjson"
"#;

#[test]
fn a_spinning_container_with_a_quota_is_sampled_with_its_cpu_and_throttling() {
    assert!(is_root(), "runc and eBPF need root (CI runs as root)");
    let mut lumen = Lumen::start(CONFIG);
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    let id = random_container_id();
    let pod = "0f5a7c1e-1111-2222-3333-777755556666";
    let container = Container::with(
        &format!("lumen-resources-{}", &id[..12]),
        &format!("/kubepods/burstable/pod{pod}/{id}"),
        &[
            "/bin/sh",
            "-c",
            "end=$(($(date +%s) + 3)); while [ $(date +%s) -lt $end ]; do :; done",
        ],
        Extra {
            cpu_quota_us: Some(20_000),
            ..Extra::default()
        },
    );
    assert!(container.run().success());
    let ecs = lumen.path("ecs.ndjson");
    let of_container = |evs: &[Value]| -> Vec<Value> {
        evs.iter()
            .filter(|e| e["container"]["id"] == id.as_str())
            .cloned()
            .collect()
    };
    let events = wait_for_events(&ecs, Duration::from_secs(20), |evs| {
        of_container(evs).len() >= 2
    });
    let samples = of_container(&events);
    for s in &samples {
        assert_eq!(s["event"]["kind"], "metric", "{s:#}");
        assert_eq!(s["lumen"]["resources"]["scope"], "container");
        assert_eq!(s["kubernetes"]["pod"]["uid"], pod);
        assert_eq!(s["lumen"]["resources"]["cpu"]["quota_us"], 20_000);
    }
    // 20 % of one CPU: the container used CPU and was throttled.
    let used: u64 = samples
        .iter()
        .filter_map(|s| s["lumen"]["resources"]["cpu"]["usage_ns"].as_u64())
        .sum();
    let throttled: u64 = samples
        .iter()
        .filter_map(|s| s["lumen"]["resources"]["cpu"]["throttled_periods"].as_u64())
        .sum();
    assert!(
        used > 50_000_000,
        "{used} ns over {} samples",
        samples.len()
    );
    assert!(throttled > 0, "{samples:#?}");
    let share = samples[0]["container"]["cpu"]["usage"].as_f64().unwrap();
    assert!(
        share > 0.0 && share <= 0.25,
        "at most 20 % of one CPU: {share}"
    );
    // The host as a whole too.
    assert!(events
        .iter()
        .any(|e| e["lumen"]["resources"]["scope"] == "host"));
    let (status, _) = lumen.stop();
    assert!(status.success());
}
