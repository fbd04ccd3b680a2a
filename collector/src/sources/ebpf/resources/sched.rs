//! The scheduler's view of each container: what the kernel programs of
//! `lumen-ebpf`'s `sched` module keep in their maps (run-queue waits per
//! cgroup, and what each pair of cgroups cost each other), read once per
//! sampling interval and turned into deltas. The maps are keyed by cgroup
//! id, which is the inode number of the cgroup's directory on the unified
//! hierarchy: the sampler's walk of that hierarchy (directory entries
//! only, no stat) names them.

use aya::maps::{MapData, PerCpuHashMap, PerCpuValues};
use lumen_common::{PairStats, SchedPair, SchedStats, SCHED_BUCKETS};
use lumen_schemas::event::{push, Neighbour, SchedUse};
use std::collections::HashMap;

/// The scheduler programs' maps, taken from the loaded object.
pub struct SchedMaps {
    cgroups: PerCpuHashMap<MapData, u64, SchedStats>,
    pairs: PerCpuHashMap<MapData, SchedPair, PairStats>,
}

impl std::fmt::Debug for SchedMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SchedMaps")
    }
}

/// Why the maps could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("scheduler map {name}: {reason}")]
pub struct SchedMapError {
    name: &'static str,
    reason: String,
}

impl SchedMaps {
    /// The maps of a predecessor's programs (see `handoff`).
    pub fn from_maps(
        cgroups: aya::maps::Map,
        pairs: aya::maps::Map,
    ) -> Result<SchedMaps, SchedMapError> {
        let err = |name: &'static str| {
            move |e: aya::maps::MapError| SchedMapError {
                name,
                reason: e.to_string(),
            }
        };
        Ok(SchedMaps {
            cgroups: PerCpuHashMap::try_from(cgroups).map_err(err("SCHED_CGROUPS"))?,
            pairs: PerCpuHashMap::try_from(pairs).map_err(err("SCHED_PAIRS"))?,
        })
    }

    pub fn take(ebpf: &mut aya::Ebpf) -> Result<SchedMaps, SchedMapError> {
        let take = |ebpf: &mut aya::Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(SchedMapError {
                name,
                reason: "missing from the kernel object".to_owned(),
            })
        };
        let err = |name: &'static str| {
            move |e: aya::maps::MapError| SchedMapError {
                name,
                reason: e.to_string(),
            }
        };
        Ok(SchedMaps {
            cgroups: PerCpuHashMap::try_from(take(ebpf, "SCHED_CGROUPS")?)
                .map_err(err("SCHED_CGROUPS"))?,
            pairs: PerCpuHashMap::try_from(take(ebpf, "SCHED_PAIRS")?)
                .map_err(err("SCHED_PAIRS"))?,
        })
    }

    /// Sets a cgroup's counters to `per_cpu`, one value per possible CPU
    /// (the programs do this; tests and benchmarks of the reader too).
    pub fn set_cgroup(&mut self, id: u64, per_cpu: Vec<SchedStats>) -> Result<(), SchedMapError> {
        let values = PerCpuValues::try_from(per_cpu).map_err(|e| SchedMapError {
            name: "SCHED_CGROUPS",
            reason: e.to_string(),
        })?;
        self.cgroups
            .insert(id, values, 0)
            .map_err(|e| SchedMapError {
                name: "SCHED_CGROUPS",
                reason: e.to_string(),
            })
    }

    /// Sets what `offender` cost `victim`, as [`SchedMaps::set_cgroup`].
    pub fn set_pair(
        &mut self,
        victim: u64,
        offender: u64,
        per_cpu: Vec<PairStats>,
    ) -> Result<(), SchedMapError> {
        let values = PerCpuValues::try_from(per_cpu).map_err(|e| SchedMapError {
            name: "SCHED_PAIRS",
            reason: e.to_string(),
        })?;
        self.pairs
            .insert(SchedPair { victim, offender }, values, 0)
            .map_err(|e| SchedMapError {
                name: "SCHED_PAIRS",
                reason: e.to_string(),
            })
    }

    /// The lifetime counters now, summed over CPUs. An entry that
    /// vanishes while it is read (evicted) is skipped.
    pub fn read(&self) -> Reading {
        let mut reading = Reading::default();
        for (cgroup, per_cpu) in self.cgroups.iter().flatten() {
            let total = reading.cgroups.entry(cgroup).or_default();
            for s in per_cpu.iter() {
                total.add(s);
            }
        }
        for (pair, per_cpu) in self.pairs.iter().flatten() {
            let total = reading
                .pairs
                .entry((pair.victim, pair.offender))
                .or_default();
            for p in per_cpu.iter() {
                total.waits += p.waits;
                total.wait_ns += p.wait_ns;
                total.preemptions += p.preemptions;
                total.delays += p.delays;
                total.delay_ns += p.delay_ns;
            }
        }
        reading
    }
}

/// The maps' counters, all CPUs together: lifetime, or over an interval.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub cgroups: HashMap<u64, SchedStats>,
    /// (victim, offender) → what the offender cost the victim.
    pub pairs: HashMap<(u64, u64), PairStats>,
}

trait Add {
    fn add(&mut self, other: &Self);
}

impl Add for SchedStats {
    fn add(&mut self, s: &SchedStats) {
        self.waits += s.waits;
        self.wait_ns += s.wait_ns;
        self.preempted += s.preempted;
        self.delays += s.delays;
        self.delay_ns += s.delay_ns;
        for (a, b) in self.hist.iter_mut().zip(s.hist.iter()) {
            *a += b;
        }
    }
}

impl Reading {
    /// What was counted from `last` to `self`. An entry that is new, or
    /// whose counters went back (evicted from the kernel's LRU map and
    /// counted again), counts from zero.
    pub fn since(&self, last: &Reading) -> Reading {
        let d = |a: u64, b: u64| b.checked_sub(a);
        let cgroups = self
            .cgroups
            .iter()
            .map(|(id, now)| {
                let delta = last.cgroups.get(id).and_then(|was| {
                    let mut hist = [0; SCHED_BUCKETS];
                    for (i, slot) in hist.iter_mut().enumerate() {
                        *slot = d(was.hist[i], now.hist[i])?;
                    }
                    Some(SchedStats {
                        waits: d(was.waits, now.waits)?,
                        wait_ns: d(was.wait_ns, now.wait_ns)?,
                        preempted: d(was.preempted, now.preempted)?,
                        delays: d(was.delays, now.delays)?,
                        delay_ns: d(was.delay_ns, now.delay_ns)?,
                        hist,
                    })
                });
                (*id, delta.unwrap_or(*now))
            })
            .collect();
        let pairs = self
            .pairs
            .iter()
            .map(|(key, now)| {
                let delta = last.pairs.get(key).and_then(|was| {
                    Some(PairStats {
                        waits: d(was.waits, now.waits)?,
                        wait_ns: d(was.wait_ns, now.wait_ns)?,
                        preemptions: d(was.preemptions, now.preemptions)?,
                        delays: d(was.delays, now.delays)?,
                        delay_ns: d(was.delay_ns, now.delay_ns)?,
                    })
                });
                (*key, delta.unwrap_or(*now))
            })
            .collect();
        Reading { cgroups, pairs }
    }

    /// Each victim's offenders (other cgroups only): most delay first,
    /// then most wait, then most preemptions.
    pub fn offenders(&self) -> HashMap<u64, Vec<(u64, PairStats)>> {
        let mut by_victim: HashMap<u64, Vec<(u64, PairStats)>> = HashMap::new();
        for (&(victim, offender), stats) in &self.pairs {
            if victim != offender && (stats.waits > 0 || stats.preemptions > 0) {
                by_victim
                    .entry(victim)
                    .or_default()
                    .push((offender, *stats));
            }
        }
        for list in by_victim.values_mut() {
            list.sort_by_key(|(offender, p)| {
                (
                    std::cmp::Reverse((p.delay_ns, p.wait_ns, p.preemptions)),
                    *offender,
                )
            });
        }
        by_victim
    }
}

/// The scheduler's view of one cgroup over the interval: its waits and
/// its [`SchedUse::MAX_NEIGHBOURS`] worst neighbours (named by `paths`),
/// with their strings pushed to `text`.
pub fn sched_use(
    stats: &SchedStats,
    offenders: &[(u64, PairStats)],
    paths: &HashMap<u64, String>,
    text: &mut String,
) -> SchedUse {
    let mut neighbours = Vec::new();
    for (id, pair) in offenders.iter().take(SchedUse::MAX_NEIGHBOURS) {
        let mut n = Neighbour {
            waits: pair.waits,
            wait_ns: pair.wait_ns,
            delays: pair.delays,
            delay_ns: pair.delay_ns,
            preemptions: pair.preemptions,
            ..Neighbour::default()
        };
        match paths.get(id) {
            Some(path) => {
                n.cgroup = push(text, path);
                let components: Vec<&str> = path.rsplit('/').filter(|c| !c.is_empty()).collect();
                let parsed = crate::attribution::parse(&components);
                if let Some(cid) = parsed.container_id {
                    n.container_id = push(text, cid);
                }
                if let Some(uid) = &parsed.pod_uid {
                    n.pod_uid = push(text, uid);
                }
            }
            // Gone before it was named.
            None => n.cgroup = push(text, &format!("<cgroup id {id}>")),
        }
        neighbours.push(n);
    }
    let used = stats.hist.iter().rposition(|n| *n > 0).map_or(0, |i| i + 1);
    SchedUse {
        waits: stats.waits,
        wait_ns: stats.wait_ns,
        wait_p99_ns: p99_ns(&stats.hist, stats.waits),
        wait_hist: stats.hist[..used].to_vec(),
        delays: stats.delays,
        delay_ns: stats.delay_ns,
        preempted: stats.preempted,
        neighbours,
    }
}

/// The upper bound of the histogram bucket holding the 99th percentile.
fn p99_ns(hist: &[u64; SCHED_BUCKETS], waits: u64) -> u64 {
    let total: u64 = hist.iter().sum();
    if total == 0 || waits == 0 {
        return 0;
    }
    let target = total - total / 100;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= target {
            return (1u64 << i) * 1000;
        }
    }
    (1u64 << (SCHED_BUCKETS - 1)) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(waits: u64, wait_ns: u64, bucket: usize) -> SchedStats {
        let mut hist = [0; SCHED_BUCKETS];
        hist[bucket] = waits;
        SchedStats {
            waits,
            wait_ns,
            hist,
            ..SchedStats::default()
        }
    }

    #[test]
    fn deltas_count_new_and_evicted_entries_from_zero() {
        let mut last = Reading::default();
        last.cgroups.insert(1, stats(10, 1_000, 0));
        last.cgroups.insert(2, stats(50, 9_000, 3));
        let mut now = Reading::default();
        now.cgroups.insert(1, stats(15, 1_500, 0));
        now.cgroups.insert(2, stats(4, 800, 3)); // evicted and counted again
        now.cgroups.insert(3, stats(7, 700, 1)); // new
        now.pairs.insert(
            (1, 2),
            PairStats {
                waits: 3,
                wait_ns: 300,
                preemptions: 1,
                ..PairStats::default()
            },
        );
        let d = now.since(&last);
        assert_eq!(d.cgroups[&1].waits, 5);
        assert_eq!(d.cgroups[&1].wait_ns, 500);
        assert_eq!(d.cgroups[&1].hist[0], 5);
        assert_eq!(d.cgroups[&2], now.cgroups[&2]);
        assert_eq!(d.cgroups[&3], now.cgroups[&3]);
        assert_eq!(d.pairs[&(1, 2)].wait_ns, 300);
    }

    #[test]
    fn offenders_are_other_cgroups_most_delay_first_and_named_by_path() {
        let mut r = Reading::default();
        let pair = |waits, wait_ns, preemptions, delay_ns| PairStats {
            waits,
            wait_ns,
            preemptions,
            delays: u64::from(delay_ns > 0),
            delay_ns,
        };
        r.pairs.insert((10, 20), pair(5, 5_000_000, 0, 0));
        r.pairs
            .insert((10, 30), pair(90, 80_000_000, 12, 4_000_000));
        // Ended more waits, short ones: after those behind the delays.
        r.pairs.insert((10, 40), pair(400, 90_000_000, 400, 0));
        r.pairs
            .insert((10, 10), pair(9, 9_000_000_000, 0, 9_000_000)); // itself
        r.pairs.insert((20, 10), pair(1, 1_000, 3, 0));
        let offenders = r.offenders();
        assert_eq!(
            offenders[&10].iter().map(|o| o.0).collect::<Vec<_>>(),
            [30, 40, 20]
        );
        let spinner = format!(
            "kubepods/pod{}/{}",
            "1234abcd-0000-4000-8000-000000000001",
            "ef".repeat(32)
        );
        let paths = HashMap::from([(30, spinner), (20, "system.slice/cron.service".to_owned())]);
        let mut text = String::new();
        // 99 waits under 2^4 µs, one far longer: p99 is the first bucket.
        let mut s = stats(99, 85_000_000, 4);
        s.waits = 100;
        s.hist[20] = 1;
        s.delays = 1;
        s.delay_ns = 84_000_000;
        let u = sched_use(&s, &offenders[&10], &paths, &mut text);
        assert_eq!(u.wait_avg_ns(), 850_000);
        assert_eq!(u.wait_p99_ns, 16_000);
        assert_eq!(u.wait_hist.len(), 21, "up to the last bucket used");
        assert_eq!((u.delays, u.delay_ns), (1, 84_000_000));
        assert_eq!(u.neighbours.len(), 3);
        assert_eq!(u.neighbours[0].container_id.get(&text), "ef".repeat(32));
        assert_eq!(
            u.neighbours[0].pod_uid.get(&text),
            "1234abcd-0000-4000-8000-000000000001"
        );
        assert_eq!(u.neighbours[0].preemptions, 12);
        assert_eq!(
            (u.neighbours[0].delays, u.neighbours[0].delay_ns),
            (1, 4_000_000)
        );
        assert_eq!(u.neighbours[1].cgroup.get(&text), "<cgroup id 40>");
        assert_eq!(
            u.neighbours[2].cgroup.get(&text),
            "system.slice/cron.service"
        );
        assert!(u.neighbours[2].container_id.get(&text).is_empty());
    }
}
