//! The user-space process cache: what Lumen knows of each live process
//! (executable, argv, name, parent, start time), so events carry their
//! parent's details and ancestry — also for processes that started before
//! Lumen, because the cache is seeded from `/proc` at start-up.
//!
//! Kept current by the kernel's own events: exec replaces a process's image,
//! fork copies the parent's entry for the child, exit removes the entry.
//! Bounded: past `capacity` entries new processes are not cached (and
//! counted), so a fork bomb cannot exhaust memory.

use lumen_schemas::event::{push, ParentInfo, ProcessActivity, ProcessEvent};
use std::collections::HashMap;
use std::path::Path;

/// One process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub ppid: u32,
    pub start_time_ns: u64,
    pub executable: String,
    pub name: String,
    /// argv, NUL-separated.
    pub argv: String,
}

impl Entry {
    /// What the cache keeps of a process the kernel just described.
    fn of(p: &lumen_schemas::event::Process) -> Entry {
        Entry {
            ppid: p.ppid,
            start_time_ns: p.start_time_ns,
            executable: p.executable().to_owned(),
            name: p.name().to_owned(),
            argv: p.argv.get(&p.text).to_owned(),
        }
    }
}

/// Live processes by pid.
#[derive(Debug)]
pub struct ProcessCache {
    entries: HashMap<u32, Entry>,
    capacity: usize,
    /// Processes not cached because the cache was full.
    pub overflow: u64,
}

/// How deep ancestry goes.
pub const ANCESTRY_DEPTH: usize = 8;

impl ProcessCache {
    pub fn new(capacity: usize) -> Self {
        ProcessCache {
            entries: HashMap::new(),
            capacity,
            overflow: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, pid: u32) -> Option<&Entry> {
        self.entries.get(&pid)
    }

    pub fn insert(&mut self, pid: u32, entry: Entry) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&pid) {
            self.overflow += 1;
            return;
        }
        self.entries.insert(pid, entry);
    }

    pub fn remove(&mut self, pid: u32) -> Option<Entry> {
        self.entries.remove(&pid)
    }

    /// Ancestors' pids, parent first, stopping at pid 0/1, at an unknown
    /// process, at a loop, or at [`ANCESTRY_DEPTH`].
    pub fn ancestry(&self, ppid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut pid = ppid;
        while pid > 0 && out.len() < ANCESTRY_DEPTH && !out.contains(&pid) {
            out.push(pid);
            match self.entries.get(&pid) {
                Some(e) if pid != 1 => pid = e.ppid,
                _ => break,
            }
        }
        out
    }

    /// Updates the cache with a kernel event and fills the event's missing
    /// image (fork and exit records carry none), parent and ancestry.
    pub fn enrich(&mut self, ev: &mut ProcessEvent) {
        let p = &mut ev.process;
        match ev.activity {
            ProcessActivity::Exec => self.insert(p.pid, Entry::of(p)),
            ProcessActivity::Fork => {
                let image = self
                    .get(p.ppid)
                    .map(|e| (e.executable.clone(), e.argv.clone()));
                if let Some((exe, argv)) = image {
                    p.executable = push(&mut p.text, &exe);
                    p.argv = push(&mut p.text, &argv);
                }
                self.insert(p.pid, Entry::of(p));
            }
            ProcessActivity::Exit => {
                if let Some(e) = self.remove(p.pid) {
                    p.executable = push(&mut p.text, &e.executable);
                    p.argv = push(&mut p.text, &e.argv);
                    if p.start_time_ns == 0 {
                        p.start_time_ns = e.start_time_ns;
                    }
                }
            }
        }
        self.fill_parent(p);
    }

    /// The parent's image and the ancestry, from the cache.
    fn fill_parent(&self, p: &mut lumen_schemas::event::Process) {
        if let Some(parent) = self.entries.get(&p.ppid) {
            p.parent = ParentInfo {
                executable: push(&mut p.text, &parent.executable),
                name: push(&mut p.text, &parent.name),
                argv: push(&mut p.text, &parent.argv),
                start_time_ns: parent.start_time_ns,
            };
        }
        p.ancestry = self.ancestry(p.ppid);
    }

    /// Gives a process seen in another kind of event (privilege, file,
    /// network) its image, parent and ancestry from the cache.
    pub fn annotate(&self, p: &mut lumen_schemas::event::Process) {
        if p.executable.is_empty() {
            // The cached image is this process's only if its name matches
            // the kernel's comm (an exec the cache missed changes the comm).
            let comm = p.name();
            let cached = self
                .entries
                .get(&p.pid)
                .filter(|e| comm.is_empty() || e.name.as_bytes().starts_with(comm.as_bytes()));
            if let Some(e) = cached {
                p.executable = push(&mut p.text, &e.executable);
                p.argv = push(&mut p.text, &e.argv);
            }
        }
        self.fill_parent(p);
    }

    /// Seeds the cache from a procfs mount (normally `/proc`). Processes that
    /// vanish while being read are skipped.
    pub fn seed_from_proc(&mut self, proc: &Path) -> std::io::Result<usize> {
        let ticks_per_sec = clock_ticks();
        let mut n = 0;
        for dir in std::fs::read_dir(proc)? {
            let Ok(dir) = dir else { continue };
            let Some(pid) = dir.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(entry) = read_proc_entry(&dir.path(), ticks_per_sec) {
                self.insert(pid, entry);
                n += 1;
            }
        }
        Ok(n)
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Reads one `/proc/<pid>` directory.
fn read_proc_entry(dir: &Path, ticks_per_sec: u64) -> Option<Entry> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // The name is in parentheses and may contain spaces and parentheses:
    // the fields after it start after the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // fields[0] is field 3 (state): ppid is field 4, starttime field 22.
    let ppid = fields.get(1)?.parse().ok()?;
    let start_ticks: u64 = fields.get(19)?.parse().ok()?;
    let executable = std::fs::read_link(dir.join("exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut argv = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    if argv.last() == Some(&0) {
        argv.pop();
    }
    Some(Entry {
        ppid,
        start_time_ns: start_ticks.saturating_mul(1_000_000_000 / ticks_per_sec.max(1)),
        executable,
        name,
        argv: String::from_utf8_lossy(&argv).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ppid: u32, exe: &str) -> Entry {
        Entry {
            ppid,
            executable: exe.to_owned(),
            ..Entry::default()
        }
    }

    #[test]
    fn ancestry_walks_parents_and_stops_at_init_unknowns_loops_and_depth() {
        let mut c = ProcessCache::new(100);
        c.insert(1, entry(0, "/sbin/init"));
        c.insert(10, entry(1, "/bin/bash"));
        c.insert(20, entry(10, "/usr/bin/make"));
        assert_eq!(c.ancestry(20), [20, 10, 1]);
        assert_eq!(c.ancestry(99), [99], "unknown parent: itself only");
        c.insert(30, entry(31, "a"));
        c.insert(31, entry(30, "b"));
        assert_eq!(c.ancestry(30), [30, 31]);
        for pid in 100..120 {
            c.insert(pid, entry(pid + 1, "x"));
        }
        assert_eq!(c.ancestry(100).len(), ANCESTRY_DEPTH);
    }

    fn event(
        activity: ProcessActivity,
        pid: u32,
        ppid: u32,
        exe: &str,
        args: &[&str],
    ) -> ProcessEvent {
        let process = lumen_schemas::event::Process {
            pid,
            ppid,
            ..Default::default()
        }
        .with_text(exe, "comm", args);
        ProcessEvent {
            activity,
            process,
            exit: None,
        }
    }

    #[test]
    fn fork_exec_exit_keep_the_cache_current_and_fill_parents() {
        let mut c = ProcessCache::new(100);
        c.insert(1, entry(0, "/sbin/init"));
        c.insert(
            10,
            Entry {
                ppid: 1,
                executable: "/bin/bash".into(),
                argv: "bash\0-l".into(),
                ..Entry::default()
            },
        );

        let mut fork = event(ProcessActivity::Fork, 20, 10, "", &[]);
        c.enrich(&mut fork);
        assert_eq!(
            fork.process.executable(),
            "/bin/bash",
            "the child runs its parent's image"
        );
        assert_eq!(fork.process.args().collect::<Vec<_>>(), ["bash", "-l"]);
        assert_eq!(fork.process.s(fork.process.parent.executable), "/bin/bash");

        let mut exec = event(ProcessActivity::Exec, 20, 10, "/usr/bin/ls", &["ls", "-la"]);
        c.enrich(&mut exec);
        assert_eq!(c.get(20).unwrap().executable, "/usr/bin/ls");
        assert_eq!(
            exec.process.parent_args().collect::<Vec<_>>(),
            ["bash", "-l"]
        );
        assert_eq!(exec.process.ancestry, [10, 1]);

        let mut exit = event(ProcessActivity::Exit, 20, 10, "", &[]);
        c.enrich(&mut exit);
        assert_eq!(
            exit.process.executable(),
            "/usr/bin/ls",
            "exit records carry no image; the cache does"
        );
        assert!(c.get(20).is_none());
    }

    #[test]
    fn annotate_fills_the_image_only_when_the_comm_matches() {
        let mut c = ProcessCache::new(100);
        c.insert(
            30,
            Entry {
                ppid: 1,
                executable: "/usr/bin/python3".into(),
                name: "python3".into(),
                ..Entry::default()
            },
        );
        let mut same = lumen_schemas::event::Process {
            pid: 30,
            ppid: 1,
            ..Default::default()
        }
        .with_text("", "python3", &[]);
        c.annotate(&mut same);
        assert_eq!(same.executable(), "/usr/bin/python3");
        // An exec the cache did not see (filtered) changed the comm.
        let mut other = lumen_schemas::event::Process {
            pid: 30,
            ppid: 1,
            ..Default::default()
        }
        .with_text("", "setpriv", &[]);
        c.annotate(&mut other);
        assert_eq!(other.executable(), "", "a stale image is not attributed");
    }

    #[test]
    fn capacity_bounds_the_cache_and_counts_what_it_refused() {
        let mut c = ProcessCache::new(2);
        c.insert(1, entry(0, "a"));
        c.insert(2, entry(1, "b"));
        c.insert(3, entry(1, "c"));
        assert_eq!((c.len(), c.overflow), (2, 1));
        c.insert(2, entry(1, "b2"));
        assert_eq!(c.get(2).unwrap().executable, "b2", "updates always fit");
    }

    #[test]
    fn seeds_from_this_machines_proc_including_this_process() {
        let mut c = ProcessCache::new(1 << 20);
        let n = c.seed_from_proc(Path::new("/proc")).unwrap();
        assert!(n > 1);
        let me = c.get(std::process::id()).unwrap();
        assert_eq!(
            me.executable,
            std::env::current_exe().unwrap().to_string_lossy()
        );
        assert!(me.argv.split('\0').next().is_some_and(|a| !a.is_empty()));
        // SAFETY: getppid has no preconditions.
        assert_eq!(me.ppid, unsafe { libc::getppid() } as u32);
        assert!(me.start_time_ns > 0);
    }
}
