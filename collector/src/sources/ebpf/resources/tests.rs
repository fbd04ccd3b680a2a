//! The sampler on this machine's real cgroup hierarchies.

use super::*;

const ID: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const UID: &str = "0f5a7c1e-1111-2222-3333-444455556666";

/// A kubelet-layout pod and container cgroup in every hierarchy, removed
/// when dropped.
struct TestCgroup {
    dirs: Vec<std::path::PathBuf>,
    rel: String,
    /// Its container id, its own among the tests running at once.
    id: String,
}

impl TestCgroup {
    fn new(h: &Hierarchies) -> TestCgroup {
        // Tests run at once: each its own top directory.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{:064x}", 0x5a5a_0000 + n);
        let rel = format!(
            "lumen-sampler-{}-{n}/kubepods/besteffort/pod{UID}/{id}",
            std::process::id()
        );
        let mut dirs = Vec::new();
        for mount in h.counted() {
            let dir = mount.join(&rel);
            std::fs::create_dir_all(&dir).unwrap();
            dirs.push(dir);
        }
        if let Some(pids) = h.v1("pids") {
            std::fs::write(pids.join(&rel).join("pids.max"), "20").unwrap();
        }
        TestCgroup { dirs, rel, id }
    }

    /// Runs a shell in the container's cgroup that spins for `ms`.
    fn spin(&self, ms: u64) {
        let joins: String = self
            .dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs; ", d.display()))
            .collect();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{joins} end=$(($(date +%s%N) + {ms}000000)); while [ $(date +%s%N) -lt $end ]; do :; done"
            ))
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Leaf first, up to the test's own top directory.
            let mut d = dir.clone();
            for _ in 0..5 {
                let _ = std::fs::remove_dir(&d);
                d.pop();
            }
        }
    }
}

fn unified_usage_ns(h: &Hierarchies, rel: &str) -> Option<u64> {
    let text = std::fs::read_to_string(h.unified.as_ref()?.join(rel).join("cpu.stat")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|us| us * 1000)
}

#[test]
fn containers_pods_and_the_host_are_sampled_with_deltas_their_files_agree_with() {
    let h = Hierarchies::discover();
    let cgroup = TestCgroup::new(&h);
    let host = Arc::new(Host::default());
    let mut sampler = Sampler::new(h.clone());
    let found = sampler.cgroups();
    assert!(
        found.contains(&(cgroup.rel.clone(), ResourceScope::Container)),
        "{found:?}"
    );
    let pod = cgroup.rel.rsplit_once('/').unwrap().0.to_owned();
    assert!(
        found.contains(&(pod.clone(), ResourceScope::Pod)),
        "{found:?}"
    );
    assert_eq!(found[0], (String::new(), ResourceScope::Host));

    let first = sampler.sample(&host);
    let before = unified_usage_ns(&h, &cgroup.rel);
    assert!(
        !first
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Resource(r) if r.s(r.cgroup) == cgroup.rel)),
        "a cgroup's first sample has no interval yet"
    );
    cgroup.spin(300);
    let after = unified_usage_ns(&h, &cgroup.rel);
    let events = sampler.sample(&host);
    let of = |path: &str| {
        events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::Resource(r) if r.s(r.cgroup) == path => Some(r.as_ref().clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no sample of {path:?}"))
    };
    let c = of(&cgroup.rel);
    assert_eq!(c.scope, Some(ResourceScope::Container));
    assert_eq!(c.s(c.attribution.container_id), cgroup.id);
    assert_eq!(c.s(c.attribution.pod_uid), UID);
    assert_eq!(
        c.attribution.qos_class,
        Some(lumen_schemas::event::QosClass::BestEffort)
    );
    let used = c.usage.cpu_usage_ns.unwrap();
    assert!(used > 100_000_000, "300 ms of spinning: {used} ns");
    if let (Some(before), Some(after)) = (before, after) {
        assert_eq!(
            used,
            after - before,
            "the delta of the cgroup's own cpu.stat"
        );
    }
    assert!(c.interval_ns >= 300_000_000, "{}", c.interval_ns);
    if h.v1("pids").is_some() {
        assert_eq!(c.usage.pids_limit, Some(20));
        assert_eq!(c.usage.pids_current, Some(0), "the shell has exited");
    }
    let share = c.cpu_share().unwrap();
    assert!(share > 0.0 && share <= 1.0, "{share}");
    let p = of(&pod);
    assert_eq!(p.scope, Some(ResourceScope::Pod));
    assert_eq!(p.s(p.attribution.pod_uid), UID);
    assert!(p.attribution.container_id.is_empty());
    let whole = of("");
    assert_eq!(whole.scope, Some(ResourceScope::Host));
    assert!(
        whole.usage.cpu_usage_ns.unwrap() >= used,
        "the host's includes the container's"
    );

    // Gone: no sample, and forgotten.
    let id = cgroup.id.clone();
    drop(cgroup);
    let events = sampler.sample(&host);
    assert!(!events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Resource(r) if r.s(r.cgroup).contains(&id))));
    assert!(!sampler.last.keys().any(|k| k.contains(&id)));
}

#[test]
fn deltas_of_counters_levels_as_they_are_and_resets_from_zero() {
    let last = Counters {
        cpu_usage_ns: Some(100),
        memory_usage: Some(50),
        memory_oom_kills: Some(2),
        pids_max_events: Some(9),
        pressure_us: [Some(10), None, None, None, None, None],
        ..Counters::default()
    };
    let now = Counters {
        cpu_usage_ns: Some(350),
        memory_usage: Some(40),
        memory_oom_kills: Some(3),
        pids_max_events: Some(1),
        pressure_us: [Some(15), Some(1), None, None, None, None],
        ..Counters::default()
    };
    let d = deltas(&last, &now);
    assert_eq!(d.cpu_usage_ns, Some(250));
    assert_eq!(d.memory_usage, Some(40), "a level, not a delta");
    assert_eq!(d.memory_oom_kills, Some(1));
    assert_eq!(
        d.pids_max_events,
        Some(1),
        "went back: a reset, counted from zero"
    );
    assert_eq!(d.pressure_us[0], Some(5));
    assert_eq!(d.pressure_us[1], Some(1));
}

#[test]
fn a_bad_interval_is_refused() {
    let bad = ResourcesConfig {
        interval_secs: 0.0,
        ..ResourcesConfig::default()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .contains("resources.interval_secs"));
    assert!(ResourcesConfig::default().validate().is_ok());
}

#[test]
fn series_of_known_pods_get_their_names_and_namespaces() {
    let pods = crate::sources::ebpf::k8s_pods::PodCache::default();
    pods.insert(
        UID.to_owned(),
        crate::sources::ebpf::k8s_pods::PodInfo {
            name: "web-1".into(),
            namespace: "shop".into(),
            ..Default::default()
        },
    );
    let series = |uid: &str| ContainerSeries {
        sched: None,
        container_id: ID.to_owned(),
        pod_uid: uid.to_owned(),
        pod: String::new(),
        namespace: String::new(),
        counters: Counters::default(),
    };
    let mut all = vec![series(UID), series("other")];
    name_pods(&mut all, &pods);
    assert_eq!(
        (all[0].pod.as_str(), all[0].namespace.as_str()),
        ("web-1", "shop")
    );
    assert_eq!((all[1].pod.as_str(), all[1].namespace.as_str()), ("", ""));
}

/// One walk finds the pods and containers (not a container's own
/// sub-cgroups) and names every cgroup of the unified hierarchy by id: its
/// directory's inode, the key of the scheduler maps.
#[test]
fn the_walk_names_every_unified_cgroup_by_its_inode() {
    use std::os::unix::fs::MetadataExt;
    let h = Hierarchies::discover();
    let Some(unified) = h.unified.clone() else {
        panic!("this test needs the unified cgroup hierarchy");
    };
    let cgroup = TestCgroup::new(&h);
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let nested = Removed(unified.join(&cgroup.rel).join("worker"));
    std::fs::create_dir(&nested.0).unwrap();
    let sampler = Sampler::new(h.clone());
    let mut ids = HashMap::new();
    let found = sampler.cgroups_and_ids(Some(&mut ids));
    assert_eq!(found, sampler.cgroups(), "the same cgroups either way");
    assert!(found.contains(&(cgroup.rel.clone(), ResourceScope::Container)));
    let nested_rel = format!("{}/worker", cgroup.rel);
    assert!(!found.iter().any(|(p, _)| *p == nested_rel), "{found:?}");
    let ino = |rel: &str| std::fs::metadata(unified.join(rel)).unwrap().ino();
    assert_eq!(ids[&ino("")], "");
    assert_eq!(ids[&ino(&cgroup.rel)], cgroup.rel);
    assert_eq!(ids[&ino(&nested_rel)], nested_rel);
    let pod = cgroup.rel.rsplit_once('/').unwrap().0;
    assert_eq!(ids[&ino(pod)], pod);
}

/// The reader of the real kernel maps (created without their programs):
/// each cgroup's and pair's counters summed over every CPU, and the
/// interval's deltas from two readings.
#[test]
fn scheduler_maps_are_read_summed_over_cpus() {
    use lumen_common::{PairStats, SchedStats};
    let mut ebpf = crate::sources::ebpf::unattached_object().unwrap();
    let mut maps = sched::SchedMaps::take(&mut ebpf).unwrap();
    let cpus = aya::util::nr_cpus().unwrap();
    let per_cpu = |waits: u64| -> Vec<SchedStats> {
        (0..cpus as u64)
            .map(|cpu| {
                let mut s = SchedStats {
                    waits: waits + cpu,
                    wait_ns: (waits + cpu) * 1_000,
                    delays: cpu,
                    delay_ns: cpu * 3_000_000,
                    ..SchedStats::default()
                };
                s.hist[1] = waits + cpu;
                s
            })
            .collect()
    };
    let pair = |delays: u64| -> Vec<PairStats> {
        vec![
            PairStats {
                waits: 2 * delays,
                delays,
                delay_ns: delays * 2_000_000,
                ..PairStats::default()
            };
            cpus
        ]
    };
    maps.set_cgroup(41, per_cpu(10)).unwrap();
    maps.set_pair(41, 42, pair(1)).unwrap();
    let first = maps.read();
    let n = cpus as u64;
    let spread = n * (n - 1) / 2; // 0 + 1 + … + (n - 1)
    let s = first.cgroups[&41];
    assert_eq!(s.waits, 10 * n + spread);
    assert_eq!(s.hist[1], 10 * n + spread);
    assert_eq!((s.delays, s.delay_ns), (spread, spread * 3_000_000));
    assert_eq!(first.pairs[&(41, 42)].delays, n);
    maps.set_cgroup(41, per_cpu(25)).unwrap();
    maps.set_pair(41, 42, pair(4)).unwrap();
    let d = maps.read().since(&first);
    assert_eq!(d.cgroups[&41].waits, 15 * n);
    assert_eq!(d.cgroups[&41].delays, 0);
    assert_eq!(d.pairs[&(41, 42)].delays, 3 * n);
    assert_eq!(d.pairs[&(41, 42)].delay_ns, 6_000_000 * n);
    assert_eq!(d.offenders()[&41][0].0, 42);
}

/// The scheduler maps' counters, keyed by cgroup id (the unified
/// directory's inode), become each container's interval deltas, its
/// neighbours named by their paths.
#[test]
fn scheduler_counters_become_a_containers_deltas_with_its_neighbours_named() {
    use lumen_common::{PairStats, SchedStats};
    use std::os::unix::fs::MetadataExt;
    let h = Hierarchies::discover();
    let Some(unified) = h.unified.clone() else {
        panic!("this test needs the unified cgroup hierarchy");
    };
    let cgroup = TestCgroup::new(&h);
    let id = std::fs::metadata(unified.join(&cgroup.rel)).unwrap().ino();
    let root = std::fs::metadata(&unified).unwrap().ino();
    let host = Arc::new(Host::default());
    let mut sampler = Sampler::new(h.clone());
    let reading = |waits: u64, charged: u64| {
        let mut r = sched::Reading::default();
        let mut hist = [0; lumen_common::SCHED_BUCKETS];
        hist[12] = waits;
        r.cgroups.insert(
            id,
            SchedStats {
                waits,
                wait_ns: waits * 3_000_000,
                preempted: 1,
                delays: waits,
                delay_ns: waits * 3_000_000,
                hist,
            },
        );
        r.pairs.insert(
            (id, root),
            PairStats {
                waits,
                wait_ns: charged,
                preemptions: 1,
                delays: waits,
                delay_ns: charged,
            },
        );
        r
    };
    sampler.sample_with(&host, Some(reading(10, 30_000_000)));
    let events = sampler.sample_with(&host, Some(reading(25, 75_000_000)));
    let sample = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Resource(r) if r.s(r.cgroup) == cgroup.rel => Some(r.as_ref().clone()),
            _ => None,
        })
        .unwrap();
    let s = sample.sched.as_ref().unwrap();
    assert_eq!((s.waits, s.wait_ns, s.preempted), (15, 45_000_000, 0));
    assert_eq!(s.wait_hist.len(), 13);
    assert_eq!(s.wait_hist[12], 15);
    assert_eq!(s.neighbours.len(), 1);
    assert_eq!(s.neighbours[0].wait_ns, 45_000_000);
    assert_eq!((s.delays, s.delay_ns), (15, 45_000_000));
    assert_eq!(
        (s.neighbours[0].delays, s.neighbours[0].delay_ns),
        (15, 45_000_000)
    );
    assert_eq!(sample.s(s.neighbours[0].cgroup), "", "the root cgroup");
    // `/metrics` gets its lifetime counters.
    let (series, _) = sampler.series();
    let mine = series.iter().find(|s| s.container_id == cgroup.id).unwrap();
    let lifetime = mine.sched.unwrap();
    assert_eq!(
        (
            lifetime.waits,
            lifetime.wait_ns,
            lifetime.delays,
            lifetime.preempted
        ),
        (25, 75_000_000, 25, 1)
    );
    // Pods and the host have no scheduler view of their own.
    for e in &events {
        if let EventKind::Resource(r) = &e.kind {
            if r.scope != Some(ResourceScope::Container) {
                assert!(r.sched.is_none(), "{r:?}");
            }
        }
    }
}

#[test]
fn steal_is_the_eighth_value_of_the_cpu_line() {
    let stat = "cpu  3671085 0 792193 5146009 63882 0 5385 3826 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
    assert_eq!(host_steal_ticks(stat), 3826);
    assert_eq!(host_steal_ticks("cpu  1 2 3 4\n"), 0);
    assert_eq!(host_steal_ticks(""), 0);
    // This machine's has the field (a guest whose hypervisor reports steal).
    let here = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu = here.lines().next().unwrap();
    assert!(
        cpu.starts_with("cpu ") && cpu.split_whitespace().count() >= 9,
        "{cpu}"
    );
}
