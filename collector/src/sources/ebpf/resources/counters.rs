//! One cgroup's resource counters as its files say them, on either layout:
//! the unified (v2) hierarchy first, a v1 controller for what the unified
//! hierarchy lacks. On a hybrid host the controllers are bound to v1 and
//! the unified hierarchy has only CPU usage and the pressure (PSI) files;
//! a v1-only host has no PSI. A counter no file gives stays `None`.

use super::super::cgroupfs::Hierarchies;
use std::path::Path;

/// Lifetime counters and current levels of one cgroup.
pub type Counters = lumen_schemas::event::ResourceUse;

const PSI_CPU_SOME: usize = Counters::PSI_CPU_SOME;
const PSI_CPU_FULL: usize = Counters::PSI_CPU_FULL;
const PSI_MEMORY_SOME: usize = Counters::PSI_MEMORY_SOME;
const PSI_MEMORY_FULL: usize = Counters::PSI_MEMORY_FULL;
const PSI_IO_SOME: usize = Counters::PSI_IO_SOME;
const PSI_IO_FULL: usize = Counters::PSI_IO_FULL;

/// Reads the cgroup at `path` (relative to each hierarchy's root; "" for
/// the root itself).
pub fn of_cgroup(h: &Hierarchies, path: &str) -> Counters {
    let rel = path.trim_start_matches('/');
    let v2 = h.unified.as_deref().map(|u| u.join(rel));
    let v1 = |controller: &str| h.v1(controller).map(|m| m.join(rel));
    let mut c = Counters::default();
    if let Some(dir) = &v2 {
        read_v2(&mut c, dir);
    }
    read_v1(&mut c, &v1);
    c
}

fn read_v2(c: &mut Counters, dir: &Path) {
    let stat = keyed(dir, "cpu.stat");
    c.cpu_usage_ns = stat.get("usage_usec").map(|us| us * 1000);
    c.cpu_periods = stat.get("nr_periods");
    c.cpu_throttled_periods = stat.get("nr_throttled");
    c.cpu_throttled_ns = stat.get("throttled_usec").map(|us| us * 1000);
    if let Some(max) = read(dir, "cpu.max") {
        let mut parts = max.split_whitespace();
        if let (Some(quota), Some(period)) = (parts.next(), parts.next()) {
            c.cpu_quota = quota.parse().ok().zip(period.parse().ok());
        }
    }
    c.memory_usage = number(dir, "memory.current");
    if let Some(max) = read(dir, "memory.max") {
        c.memory_limit = max.trim().parse().ok();
    }
    let events = keyed(dir, "memory.events");
    c.memory_high_events = events.get("high");
    c.memory_max_events = events.get("max");
    c.memory_oom_events = events.get("oom");
    c.memory_oom_kills = events.get("oom_kill");
    if let Some(io) = read(dir, "io.stat") {
        let mut sums = [0u64; 4];
        for line in io.lines() {
            for field in line.split_whitespace().skip(1) {
                let Some((k, v)) = field.split_once('=') else {
                    continue;
                };
                let i = match k {
                    "rbytes" => 0,
                    "wbytes" => 1,
                    "rios" => 2,
                    "wios" => 3,
                    _ => continue,
                };
                sums[i] += v.parse::<u64>().unwrap_or(0);
            }
        }
        [
            c.io_read_bytes,
            c.io_write_bytes,
            c.io_read_ops,
            c.io_write_ops,
        ] = sums.map(Some);
    }
    c.pids_current = number(dir, "pids.current");
    if let Some(max) = read(dir, "pids.max") {
        c.pids_limit = max.trim().parse().ok();
    }
    c.pids_max_events = keyed(dir, "pids.events").get("max");
    for (file, some, full) in [
        ("cpu.pressure", PSI_CPU_SOME, PSI_CPU_FULL),
        ("memory.pressure", PSI_MEMORY_SOME, PSI_MEMORY_FULL),
        ("io.pressure", PSI_IO_SOME, PSI_IO_FULL),
    ] {
        if let Some(text) = read(dir, file) {
            for line in text.lines() {
                let slot = match line.split_whitespace().next() {
                    Some("some") => some,
                    Some("full") => full,
                    _ => continue,
                };
                c.pressure_us[slot] = line
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix("total="))
                    .and_then(|t| t.parse().ok());
            }
        }
    }
}

/// What the unified hierarchy did not give, from the v1 controllers.
fn read_v1(c: &mut Counters, v1: &dyn Fn(&str) -> Option<std::path::PathBuf>) {
    if let Some(dir) = v1("cpuacct") {
        c.cpu_usage_ns = c.cpu_usage_ns.or(number(&dir, "cpuacct.usage"));
    }
    if let Some(dir) = v1("cpu") {
        if c.cpu_periods.is_none() {
            let stat = keyed(&dir, "cpu.stat");
            c.cpu_periods = stat.get("nr_periods");
            c.cpu_throttled_periods = stat.get("nr_throttled");
            c.cpu_throttled_ns = stat.get("throttled_time");
            let quota = read(&dir, "cpu.cfs_quota_us").and_then(|q| q.trim().parse::<i64>().ok());
            let period = number(&dir, "cpu.cfs_period_us");
            c.cpu_quota = match (quota, period) {
                (Some(q), Some(p)) if q > 0 => Some((q as u64, p)),
                _ => None,
            };
        }
    }
    if let Some(dir) = v1("memory").filter(|_| c.memory_usage.is_none()) {
        c.memory_usage = number(&dir, "memory.usage_in_bytes");
        // "No limit" is the largest page-aligned signed value.
        c.memory_limit = number(&dir, "memory.limit_in_bytes").filter(|l| *l < (1 << 62));
        c.memory_max_events = number(&dir, "memory.failcnt");
        c.memory_oom_kills = keyed(&dir, "memory.oom_control").get("oom_kill");
    }
    if let Some(dir) = v1("blkio").filter(|_| c.io_read_bytes.is_none()) {
        let bytes = io_service(&dir, "blkio.throttle.io_service_bytes");
        let ops = io_service(&dir, "blkio.throttle.io_serviced");
        (c.io_read_bytes, c.io_write_bytes) = bytes.unzip();
        (c.io_read_ops, c.io_write_ops) = ops.unzip();
    }
    if let Some(dir) = v1("pids").filter(|_| c.pids_current.is_none()) {
        c.pids_current = number(&dir, "pids.current");
        c.pids_limit = read(&dir, "pids.max").and_then(|m| m.trim().parse().ok());
        c.pids_max_events = keyed(&dir, "pids.events").get("max");
    }
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn number(dir: &Path, file: &str) -> Option<u64> {
    read(dir, file)?.trim().parse().ok()
}

/// A `key value` per line file.
struct Keyed(Vec<(String, u64)>);

impl Keyed {
    fn get(&self, key: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

fn keyed(dir: &Path, file: &str) -> Keyed {
    Keyed(
        read(dir, file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect(),
    )
}

/// v1 `blkio.throttle.io_service*`: `<major:minor> Read|Write|… N` lines
/// and a `Total` → (reads, writes) over every device.
fn io_service(dir: &Path, file: &str) -> Option<(u64, u64)> {
    let text = read(dir, file)?;
    let (mut r, mut w) = (0, 0);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(_device), Some(op), Some(n)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let n: u64 = n.parse().unwrap_or(0);
        match op {
            "Read" => r += n,
            "Write" => w += n,
            _ => {}
        }
    }
    Some((r, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    /// A unified-only host's files (as the kernel writes them), and a v1
    /// host's, in directories mounted nowhere: every counter parsed.
    #[test]
    fn unified_and_v1_files_are_read_alike() {
        let root = tempfile::tempdir().unwrap();
        let v2 = root.path().join("unified/kubepods/pod1/c1");
        write(&v2, "cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 40\nnr_throttled 7\nthrottled_usec 1200\n");
        write(&v2, "cpu.max", "50000 100000\n");
        write(&v2, "memory.current", "1048576\n");
        write(&v2, "memory.max", "max\n");
        write(
            &v2,
            "memory.events",
            "low 0\nhigh 3\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n",
        );
        write(&v2, "io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n");
        write(&v2, "pids.current", "12\n");
        write(&v2, "pids.max", "100\n");
        write(&v2, "pids.events", "max 5\n");
        write(&v2, "cpu.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=111\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=22\n");
        write(&v2, "memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=333\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=44\n");
        let mountinfo = format!(
            "41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n",
            root.path().join("unified").display()
        );
        let c = of_cgroup(
            &Hierarchies::from_mountinfo(&mountinfo),
            "/kubepods/pod1/c1",
        );
        assert_eq!(c.cpu_usage_ns, Some(2_500_000));
        assert_eq!(
            (c.cpu_periods, c.cpu_throttled_periods),
            (Some(40), Some(7))
        );
        assert_eq!(c.cpu_throttled_ns, Some(1_200_000));
        assert_eq!(c.cpu_quota, Some((50_000, 100_000)));
        assert_eq!((c.memory_usage, c.memory_limit), (Some(1_048_576), None));
        assert_eq!(
            [
                c.memory_high_events,
                c.memory_max_events,
                c.memory_oom_events,
                c.memory_oom_kills
            ],
            [Some(3), Some(9), Some(2), Some(1)]
        );
        assert_eq!(
            [
                c.io_read_bytes,
                c.io_write_bytes,
                c.io_read_ops,
                c.io_write_ops
            ],
            [Some(4097), Some(8194), Some(4), Some(6)]
        );
        assert_eq!(
            (c.pids_current, c.pids_limit, c.pids_max_events),
            (Some(12), Some(100), Some(5))
        );
        assert_eq!(
            c.pressure_us,
            [Some(111), Some(22), Some(333), Some(44), None, None]
        );

        let v1 = |c: &str| root.path().join("v1").join(c).join("docker/c2");
        write(&v1("cpuacct"), "cpuacct.usage", "777\n");
        write(
            &v1("cpu"),
            "cpu.stat",
            "nr_periods 10\nnr_throttled 4\nthrottled_time 900\n",
        );
        write(&v1("cpu"), "cpu.cfs_quota_us", "-1\n");
        write(&v1("cpu"), "cpu.cfs_period_us", "100000\n");
        write(&v1("memory"), "memory.usage_in_bytes", "4096\n");
        write(
            &v1("memory"),
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(&v1("memory"), "memory.failcnt", "6\n");
        write(
            &v1("memory"),
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        write(
            &v1("blkio"),
            "blkio.throttle.io_service_bytes",
            "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n8:0 Async 0\n8:0 Total 300\nTotal 300\n",
        );
        write(
            &v1("blkio"),
            "blkio.throttle.io_serviced",
            "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
        );
        write(&v1("pids"), "pids.current", "3\n");
        write(&v1("pids"), "pids.max", "max\n");
        write(&v1("pids"), "pids.events", "max 0\n");
        let mountinfo: String = ["cpu", "cpuacct", "memory", "blkio", "pids"]
            .iter()
            .map(|c| {
                format!(
                    "1 1 0:1 / {} rw - cgroup cgroup rw,{c}\n",
                    root.path().join("v1").join(c).display()
                )
            })
            .collect();
        let c = of_cgroup(&Hierarchies::from_mountinfo(&mountinfo), "docker/c2");
        assert_eq!(c.cpu_usage_ns, Some(777));
        assert_eq!(
            (c.cpu_periods, c.cpu_throttled_periods, c.cpu_throttled_ns),
            (Some(10), Some(4), Some(900))
        );
        assert_eq!(c.cpu_quota, None, "-1: no quota");
        assert_eq!((c.memory_usage, c.memory_limit), (Some(4096), None));
        assert_eq!(
            (c.memory_max_events, c.memory_oom_kills),
            (Some(6), Some(2))
        );
        assert_eq!(
            [
                c.io_read_bytes,
                c.io_write_bytes,
                c.io_read_ops,
                c.io_write_ops
            ],
            [Some(100), Some(200), Some(1), Some(2)]
        );
        assert_eq!(
            (c.pids_current, c.pids_limit, c.pids_max_events),
            (Some(3), None, Some(0))
        );
        assert_eq!(c.pressure_us, [None; 6], "no PSI on v1");
    }

    /// A real cgroup on this (hybrid) machine, with a CPU quota, memory
    /// and PID limits and a process that spins in it: the counters are
    /// what the kernel's files say.
    #[test]
    fn a_real_cgroup_reads_as_its_files_say() {
        let h = Hierarchies::discover();
        let name = format!("lumen-counters-{}", std::process::id());
        let mut dirs = Vec::new();
        for (mount, settings) in [
            (
                h.v1("cpu"),
                &[
                    ("cpu.cfs_quota_us", "20000"),
                    ("cpu.cfs_period_us", "100000"),
                ][..],
            ),
            (h.v1("memory"), &[("memory.limit_in_bytes", "67108864")][..]),
            (h.v1("pids"), &[("pids.max", "50")][..]),
            (h.v1("cpuacct"), &[][..]),
            (h.unified.as_deref(), &[][..]),
        ] {
            let Some(mount) = mount else { continue };
            let dir = mount.join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, value) in settings {
                std::fs::write(dir.join(file), value).unwrap();
            }
            dirs.push(dir);
        }
        // A shell that joins every hierarchy's cgroup, then spins 300 ms.
        let joins: String = dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs; ", d.display()))
            .collect();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{joins} end=$(($(date +%s%N) + 300000000)); while [ $(date +%s%N) -lt $end ]; do :; done"))
            .status()
            .unwrap();
        assert!(status.success());
        let c = of_cgroup(&h, &name);
        let file = |i: usize, f: &str| std::fs::read_to_string(dirs[i].join(f)).unwrap();
        if h.v1("cpu").is_some() {
            assert_eq!(c.cpu_quota, Some((20_000, 100_000)));
            assert!(
                c.cpu_throttled_periods.unwrap() > 0,
                "20 % of a CPU, spun for 300 ms: {c:?}"
            );
            assert!(file(0, "cpu.stat").contains(&format!(
                "nr_throttled {}",
                c.cpu_throttled_periods.unwrap()
            )));
        }
        if h.v1("memory").is_some() {
            assert_eq!(c.memory_limit, Some(67_108_864));
        }
        if h.v1("pids").is_some() {
            assert_eq!(c.pids_limit, Some(50));
            assert_eq!(c.pids_current, Some(0), "the shell has exited");
        }
        // 20 % quota over ≥300 ms: at least some tens of ms of CPU.
        let used = c.cpu_usage_ns.unwrap();
        assert!(used > 20_000_000, "{used} ns");
        for dir in dirs.iter().rev() {
            std::fs::remove_dir(dir).unwrap();
        }
    }
}
