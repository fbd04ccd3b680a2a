//! Cost of one resource sample with 500 containers: real cgroups (250 pods
//! of two containers each, kubelet layout) made in every hierarchy of this
//! machine, read the way the ebpf source reads them. Needs root (it makes
//! cgroups). Run: `cargo bench -p lumen --bench resources`; numbers in
//! docs/PERFORMANCE.md. The target: ≤ 1 % of a core at the default 10 s
//! interval, i.e. a sample in ≤ 100 ms.

use criterion::{criterion_group, criterion_main, Criterion};
use lumen::sources::ebpf::cgroupfs::Hierarchies;
use lumen::sources::ebpf::resources::{sched, Sampler};
use lumen_schemas::event::Host;
use std::path::PathBuf;
use std::sync::Arc;

const PODS: usize = 250;

/// The bench's cgroups in every hierarchy, removed when dropped.
struct Cgroups(Vec<PathBuf>);

impl Cgroups {
    fn make(h: &Hierarchies) -> Cgroups {
        let top = format!("lumen-bench-{}", std::process::id());
        let mut made = Vec::new();
        for mount in h.counted() {
            let root = mount.join(&top);
            for p in 0..PODS {
                let pod = root.join(format!(
                    "kubepods/burstable/pod0f5a7c1e-1111-2222-3333-{p:012}"
                ));
                for c in 0..2 {
                    let id = format!("{:064x}", p * 2 + c);
                    std::fs::create_dir_all(pod.join(id))
                        .unwrap_or_else(|e| panic!("{e} (needs root)"));
                }
            }
            made.push(root);
        }
        Cgroups(made)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for root in &self.0 {
            // Leaves first: cgroup directories are removed with rmdir.
            let mut dirs: Vec<PathBuf> = walk(root);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&e.path()));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let h = Hierarchies::discover();
    let _cgroups = Cgroups::make(&h);
    let host = Arc::new(Host::default());
    let mut sampler = Sampler::new(h);
    let containers = sampler
        .cgroups()
        .iter()
        .filter(|(_, s)| *s == lumen_schemas::event::ResourceScope::Container)
        .count();
    assert!(containers >= 2 * PODS, "{containers} containers found");
    sampler.sample(&host);
    // The scheduler view too: every cgroup with waits, each charged to
    // the root, as the kernel maps would say (the maps' own read is not
    // in it: it needs the programs loaded).
    let reading = |h: &Hierarchies, scale: u64| {
        let mut r = sched::Reading::default();
        let mut ids = std::collections::HashMap::new();
        Sampler::new(h.clone()).cgroups_and_ids(Some(&mut ids));
        for id in ids.into_keys() {
            let mut stats = lumen_common::SchedStats {
                waits: 100 * scale,
                wait_ns: 1_000_000 * scale,
                preempted: scale,
                ..Default::default()
            };
            stats.hist[4] = 100 * scale;
            r.cgroups.insert(id, stats);
            r.pairs.insert(
                (id, 1),
                lumen_common::PairStats {
                    waits: 10 * scale,
                    wait_ns: 100_000 * scale,
                    preemptions: scale,
                    delays: scale,
                    delay_ns: 50_000 * scale,
                },
            );
        }
        r
    };
    let mut with_sched = Sampler::new(Hierarchies::discover());
    with_sched.sample_with(&host, Some(reading(&Hierarchies::discover(), 1)));
    let later = reading(&Hierarchies::discover(), 2);
    let mut g = c.benchmark_group("resources");
    g.sample_size(20);
    g.bench_function(format!("one sample, {containers} containers"), |b| {
        b.iter(|| sampler.sample(&host).len())
    });
    g.bench_function(
        format!("one sample with the scheduler view, {containers} containers"),
        |b| b.iter(|| with_sched.sample_with(&host, Some(later.clone())).len()),
    );
    // The real kernel maps (created without the programs) holding as many
    // cgroups and pairs: what `Sampler::sample` adds to read them.
    let entries = 2 * containers as u64;
    let (_ebpf, maps) = filled_maps(entries).unwrap_or_else(|e| panic!("{e} (needs root)"));
    assert_eq!(maps.read().cgroups.len() as u64, entries);
    g.bench_function(
        format!("read the scheduler maps, {entries} cgroups and {entries} pairs"),
        |b| b.iter(|| maps.read().pairs.len()),
    );
    g.finish();
}

/// The kernel object's scheduler maps with `entries` cgroups and as many
/// pairs, each with a value on every possible CPU.
fn filled_maps(entries: u64) -> Result<(aya::Ebpf, sched::SchedMaps), Box<dyn std::error::Error>> {
    let mut ebpf = lumen::sources::ebpf::unattached_object()?;
    let mut maps = sched::SchedMaps::take(&mut ebpf)?;
    let cpus = aya::util::nr_cpus().map_err(|(what, e)| format!("{what}: {e}"))?;
    for id in 0..entries {
        let stats = lumen_common::SchedStats {
            waits: 100,
            ..Default::default()
        };
        maps.set_cgroup(id, vec![stats; cpus])?;
        let pair = lumen_common::PairStats {
            waits: 10,
            ..Default::default()
        };
        maps.set_pair(id, id + 1, vec![pair; cpus])?;
    }
    Ok((ebpf, maps))
}

criterion_group!(benches, bench);
criterion_main!(benches);
