//! The user-space process cache: what Lumen knows of each live process
//! (executable, argv, name, parent, start time), so events carry their
//! parent's details and ancestry — also for processes that started before
//! Lumen, because the cache is seeded from `/proc` at start-up.
//!
//! A process is known by its identity, (pid, start time), which every
//! kernel record carries for the process and its parent — the same for all
//! threads, so a thread with a name of its own (Go, Java) is attributed
//! like the main thread, and a reused pid never inherits a dead process's
//! image. Start times compare in clock ticks: `/proc/<pid>/stat` has no
//! finer ones. An image is also checked against the record's `image_id`
//! (the kernel's `mm_struct`, new at every exec), so an exec the cache
//! missed (a lost record) does not lend the old image to the new one.
//!
//! Kept current by the kernel's own events: exec replaces a process's image,
//! fork copies the parent's entry for the child, exit — sent when the last
//! thread ends — removes the entry. Bounded: past `capacity` entries new
//! processes are not cached (and counted), so a fork bomb cannot exhaust
//! memory.
//!
//! The cache also knows each container process's *entry leader*: the first
//! process of its lineage inside its cgroup (a process whose parent is in
//! another cgroup). A container has one lineage from its start — the
//! entrypoint's, whose leader started first — and one more per `runc exec`
//! (`docker exec`, `kubectl exec`), each led by a process the runtime
//! started later from outside. Every record carries its process's current
//! cgroup, so a process the runtime moves into the container (runc's init)
//! is re-placed when it next acts.

use super::cgroupfs::CgroupView;
use lumen_schemas::event::{
    push, ContainerEntry, EntryLeader, ParentInfo, ProcessActivity, ProcessEvent,
};
use std::collections::{HashMap, VecDeque};
use std::path::Path;

/// One process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub ppid: u32,
    pub start_time_ns: u64,
    /// The parent's start (0: unknown).
    pub parent_start_time_ns: u64,
    /// The image's `mm_struct` address (0: unknown, e.g. seeded from /proc).
    pub image_id: u64,
    pub executable: String,
    pub name: String,
    /// argv, NUL-separated.
    pub argv: String,
    /// The cgroup the process was last seen in (0: unknown).
    pub cgroup_id: u64,
    /// Its lineage's first process in that cgroup, (pid, start); `None`
    /// while unknown.
    pub leader: Option<(u32, u64)>,
    /// The cgroup it was in when it loaded its image (exec; a fork's is its
    /// parent's).
    pub exec_cgroup: u64,
    /// The container runtime setting a container up: see
    /// [`EntryLeader::runtime_setup`].
    pub setup: bool,
}

impl Entry {
    /// What the cache keeps of a process the kernel just described.
    fn of(p: &lumen_schemas::event::Process) -> Entry {
        Entry {
            ppid: p.ppid,
            start_time_ns: p.start_time_ns,
            parent_start_time_ns: p.parent.start_time_ns,
            image_id: p.image_id,
            executable: p.executable().to_owned(),
            name: p.name().to_owned(),
            argv: p.argv.get(&p.text).to_owned(),
            cgroup_id: p.cgroup_id,
            leader: None,
            exec_cgroup: p.cgroup_id,
            setup: false,
        }
    }
}

/// A map keyed by pids or cgroup ids, looked up several times per event
/// (the process, then each ancestor): foldhash, seeded per process, rather
/// than SipHash (~30 % of the lookups' time in a write-open storm).
type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Live processes by pid, each checked against the identity asked for.
#[derive(Debug)]
pub struct ProcessCache {
    entries: IdMap<u32, Entry>,
    capacity: usize,
    /// Nanoseconds per clock tick (`/proc`'s start-time unit).
    tick_ns: u64,
    /// Identities whose exit was reported lately: a second exit record for
    /// one (two last threads ending at once, on kernels without the
    /// tracepoint's `group_dead`) is dropped.
    exited: VecDeque<(u32, u64)>,
    /// Per cgroup, the entry leader that started first: the container's
    /// entrypoint lineage. Outlives the leader (runc's init exits at once);
    /// bounded by `capacity`.
    first_leaders: IdMap<u64, (u32, u64)>,
    /// Processes not cached because the cache was full.
    pub overflow: u64,
}

/// How deep ancestry goes.
pub const ANCESTRY_DEPTH: usize = 8;

/// How many exits are remembered to drop a repeated one.
const EXITS_REMEMBERED: usize = 1024;

impl ProcessCache {
    pub fn new(capacity: usize) -> Self {
        ProcessCache {
            entries: IdMap::default(),
            capacity,
            tick_ns: 1_000_000_000 / clock_ticks().max(1),
            exited: VecDeque::new(),
            first_leaders: IdMap::default(),
            overflow: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether two start times are the same process's (0: unknown, agrees
    /// with anything).
    fn same_start(&self, a: u64, b: u64) -> bool {
        a == 0 || b == 0 || a / self.tick_ns == b / self.tick_ns
    }

    /// The process `pid` that started at `start_time_ns`.
    pub fn get(&self, pid: u32, start_time_ns: u64) -> Option<&Entry> {
        self.entries
            .get(&pid)
            .filter(|e| self.same_start(e.start_time_ns, start_time_ns))
    }

    /// Caches a process; one that had its pid before is gone.
    pub fn insert(&mut self, pid: u32, entry: Entry) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&pid) {
            self.overflow += 1;
            return;
        }
        self.entries.insert(pid, entry);
    }

    /// Forgets the process `pid` that started at `start_time_ns`.
    pub fn remove(&mut self, pid: u32, start_time_ns: u64) -> Option<Entry> {
        self.get(pid, start_time_ns)?;
        self.entries.remove(&pid)
    }

    /// Ancestors' pids, parent first, stopping at pid 0/1, at an unknown
    /// process, at a loop, or at [`ANCESTRY_DEPTH`].
    pub fn ancestry(&self, ppid: u32, parent_start_time_ns: u64) -> Vec<u32> {
        let mut out = Vec::new();
        let (mut pid, mut start) = (ppid, parent_start_time_ns);
        while pid > 0 && out.len() < ANCESTRY_DEPTH && !out.contains(&pid) {
            out.push(pid);
            match self.get(pid, start) {
                Some(e) if pid != 1 => (pid, start) = (e.ppid, e.parent_start_time_ns),
                _ => break,
            }
        }
        out
    }

    /// Updates the cache with a kernel event and fills the event's missing
    /// image (fork and exit records carry none), parent and ancestry.
    /// False for an exit already reported: drop it.
    pub fn enrich(&mut self, ev: &mut ProcessEvent) -> bool {
        let p = &mut ev.process;
        match ev.activity {
            ProcessActivity::Exec => {
                // The image being replaced, placed where the process is.
                self.place(p.pid, p.start_time_ns, p.cgroup_id);
                let mut entry = Entry::of(p);
                if let Some(old) = self.get(p.pid, p.start_time_ns) {
                    // An exec keeps the lineage. The runtime's setup goes on
                    // only through its own re-execution from a memfd (runc's
                    // CVE-2019-5736 protection); any other exec ends it.
                    entry.leader = old.leader;
                    entry.setup = old.setup && ev.exe.fileless();
                }
                self.insert(p.pid, entry);
                self.place(p.pid, p.start_time_ns, p.cgroup_id);
            }
            ProcessActivity::Fork => {
                // A fork record is the parent's doing: its cgroup is the
                // parent's (and the child's) now.
                self.place(p.ppid, p.parent.start_time_ns, p.cgroup_id);
                let image = self
                    .get(p.ppid, p.parent.start_time_ns)
                    .map(|e| (e.executable.clone(), e.argv.clone(), e.exec_cgroup));
                let mut entry = Entry::of(p);
                if let Some((exe, argv, exec_cgroup)) = image {
                    p.executable = push(&mut p.text, &exe);
                    p.argv = push(&mut p.text, &argv);
                    entry = Entry {
                        exec_cgroup,
                        ..Entry::of(p)
                    };
                }
                self.insert(p.pid, entry);
                self.place(p.pid, p.start_time_ns, p.cgroup_id);
            }
            ProcessActivity::OomKill => {
                // The victim as the cache knows it: image, parent, cgroup.
                let known = self.get(p.pid, p.start_time_ns).map(|e| {
                    (
                        e.executable.clone(),
                        e.argv.clone(),
                        e.ppid,
                        e.parent_start_time_ns,
                        e.cgroup_id,
                    )
                });
                if let Some((exe, argv, ppid, parent_start, cgroup_id)) = known {
                    p.executable = push(&mut p.text, &exe);
                    p.argv = push(&mut p.text, &argv);
                    p.ppid = ppid;
                    p.parent.start_time_ns = parent_start;
                    p.cgroup_id = cgroup_id;
                }
            }
            ProcessActivity::Exit => {
                let identity = (p.pid, p.start_time_ns / self.tick_ns);
                if self.exited.contains(&identity) {
                    return false;
                }
                if self.exited.len() >= EXITS_REMEMBERED {
                    self.exited.pop_front();
                }
                self.exited.push_back(identity);
                if let Some(e) = self.remove(p.pid, p.start_time_ns) {
                    p.executable = push(&mut p.text, &e.executable);
                    p.argv = push(&mut p.text, &e.argv);
                    if p.start_time_ns == 0 {
                        p.start_time_ns = e.start_time_ns;
                    }
                }
            }
        }
        self.fill_parent(p);
        self.fill_entry_leader(p);
        true
    }

    /// Notes that the process (pid, start) is in `cgroup_id` and, when that
    /// is news, finds its entry leader there: its parent's, when the parent
    /// is in the same cgroup, else itself. A leader that runs an image it
    /// loaded in another cgroup is the runtime's init, moved in to set the
    /// container up; its forks are too.
    fn place(&mut self, pid: u32, start_time_ns: u64, cgroup_id: u64) {
        let Some(e) = self.get(pid, start_time_ns) else {
            return;
        };
        if e.cgroup_id == cgroup_id && e.leader.is_some() {
            return;
        }
        let (ppid, parent_start, start) = (e.ppid, e.parent_start_time_ns, e.start_time_ns);
        let loaded_elsewhere = e.exec_cgroup != 0 && e.exec_cgroup != cgroup_id;
        let (leader, setup) = match self.get(ppid, parent_start) {
            Some(parent) if parent.cgroup_id == cgroup_id && ppid != pid => {
                (parent.leader, parent.setup)
            }
            Some(_) => (Some((pid, start)), loaded_elsewhere),
            // Pid 0's children (init, kthreadd) lead their own lineages.
            None if ppid == 0 => (Some((pid, start)), false),
            // The parent is unknown: so is where the lineage began.
            None => (None, false),
        };
        if let Some((leader_pid, leader_start)) = leader.filter(|l| *l == (pid, start)) {
            self.note_leader(cgroup_id, leader_pid, leader_start);
        }
        if let Some(e) = self.entries.get_mut(&pid) {
            e.cgroup_id = cgroup_id;
            e.leader = leader;
            e.setup = setup;
        }
    }

    /// Keeps the earliest-started leader per cgroup.
    fn note_leader(&mut self, cgroup_id: u64, pid: u32, start_time_ns: u64) {
        let (tick, full) = (self.tick_ns, self.first_leaders.len() >= self.capacity);
        match self.first_leaders.get_mut(&cgroup_id) {
            Some(first) if start_time_ns / tick < first.1 / tick => *first = (pid, start_time_ns),
            Some(_) => {}
            None if full => self.overflow += 1,
            None => {
                self.first_leaders.insert(cgroup_id, (pid, start_time_ns));
            }
        }
    }

    /// A container process's entry leader and how its lineage came in.
    fn fill_entry_leader(&self, p: &mut lumen_schemas::event::Process) {
        if p.attribution.container_id.is_empty() {
            return;
        }
        let Some(((pid, start), setup)) = self
            .get(p.pid, p.start_time_ns)
            .filter(|e| e.cgroup_id == p.cgroup_id)
            .and_then(|e| Some((e.leader?, e.setup)))
        else {
            return;
        };
        let entry = match self.first_leaders.get(&p.cgroup_id) {
            Some(&first) if first.0 == pid && self.same_start(first.1, start) => {
                ContainerEntry::Entrypoint
            }
            Some(_) => ContainerEntry::Exec,
            None => return,
        };
        p.entry_leader = Some(EntryLeader {
            pid,
            start_time_ns: start,
            entry,
            runtime_setup: setup,
        });
    }

    /// The parent's image and the ancestry, from the cache.
    fn fill_parent(&self, p: &mut lumen_schemas::event::Process) {
        let start = p.parent.start_time_ns;
        if let Some(parent) = self.get(p.ppid, start) {
            p.parent = ParentInfo {
                executable: push(&mut p.text, &parent.executable),
                name: push(&mut p.text, &parent.name),
                argv: push(&mut p.text, &parent.argv),
                start_time_ns: if start == 0 {
                    parent.start_time_ns
                } else {
                    start
                },
            };
        }
        p.ancestry = self.ancestry(p.ppid, start);
    }

    /// Gives a process seen in another kind of event (privilege, file,
    /// network) — from any of its threads — its image, parent and
    /// ancestry from the cache.
    pub fn annotate(&mut self, p: &mut lumen_schemas::event::Process) {
        self.place(p.pid, p.start_time_ns, p.cgroup_id);
        if p.executable.is_empty() {
            let cached = self
                .get(p.pid, p.start_time_ns)
                .filter(|e| e.image_id == 0 || p.image_id == 0 || e.image_id == p.image_id);
            if let Some(e) = cached {
                p.executable = push(&mut p.text, &e.executable);
                p.argv = push(&mut p.text, &e.argv);
            }
        }
        self.fill_parent(p);
        self.fill_entry_leader(p);
    }

    /// Seeds the cache from a procfs mount (normally `/proc`), with each
    /// process's cgroup id from the unified (v2) hierarchy mounted at
    /// `unified` (none on a v1-only host: ids unknown). Processes that
    /// vanish while being read are skipped.
    pub fn seed_from_proc(&mut self, proc: &Path, view: &CgroupView) -> std::io::Result<usize> {
        let ticks_per_sec = clock_ticks();
        let mut n = 0;
        for dir in std::fs::read_dir(proc)? {
            let Ok(dir) = dir else { continue };
            let Some(pid) = dir.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(entry) = read_proc_entry(&dir.path(), ticks_per_sec, view) {
                self.insert(pid, entry);
                n += 1;
            }
        }
        // Parents' identities, now that every process is read.
        let starts: HashMap<u32, u64> = self
            .entries
            .iter()
            .map(|(pid, e)| (*pid, e.start_time_ns))
            .collect();
        for e in self.entries.values_mut() {
            e.parent_start_time_ns = starts.get(&e.ppid).copied().unwrap_or(0);
        }
        // Lineages, parents first.
        let mut by_start: Vec<(u64, u32, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.cgroup_id != 0)
            .map(|(pid, e)| (e.start_time_ns, *pid, e.cgroup_id))
            .collect();
        by_start.sort_unstable();
        for (start, pid, cgroup_id) in by_start {
            self.place(pid, start, cgroup_id);
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
fn read_proc_entry(dir: &Path, ticks_per_sec: u64, view: &CgroupView) -> Option<Entry> {
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
        parent_start_time_ns: 0,
        image_id: 0,
        executable,
        name,
        argv: String::from_utf8_lossy(&argv).into_owned(),
        cgroup_id: view.id_of(dir).unwrap_or(0),
        leader: None,
        exec_cgroup: 0,
        setup: false,
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
        assert_eq!(c.ancestry(20, 0), [20, 10, 1]);
        assert_eq!(c.ancestry(99, 0), [99], "unknown parent: itself only");
        c.insert(30, entry(31, "a"));
        c.insert(31, entry(30, "b"));
        assert_eq!(c.ancestry(30, 0), [30, 31]);
        for pid in 100..120 {
            c.insert(pid, entry(pid + 1, "x"));
        }
        assert_eq!(c.ancestry(100, 0).len(), ANCESTRY_DEPTH);
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
            exe: Default::default(),
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
        assert!(c.enrich(&mut fork));
        assert_eq!(
            fork.process.executable(),
            "/bin/bash",
            "the child runs its parent's image"
        );
        assert_eq!(fork.process.args().collect::<Vec<_>>(), ["bash", "-l"]);
        assert_eq!(fork.process.s(fork.process.parent.executable), "/bin/bash");

        let mut exec = event(ProcessActivity::Exec, 20, 10, "/usr/bin/ls", &["ls", "-la"]);
        assert!(c.enrich(&mut exec));
        assert_eq!(c.get(20, 0).unwrap().executable, "/usr/bin/ls");
        assert_eq!(
            exec.process.parent_args().collect::<Vec<_>>(),
            ["bash", "-l"]
        );
        assert_eq!(exec.process.ancestry, [10, 1]);

        let mut exit = event(ProcessActivity::Exit, 20, 10, "", &[]);
        assert!(c.enrich(&mut exit));
        assert_eq!(
            exit.process.executable(),
            "/usr/bin/ls",
            "exit records carry no image; the cache does"
        );
        assert!(c.get(20, 0).is_none());
    }

    /// A second of start time: distinct at tick precision.
    const S: u64 = 1_000_000_000;

    fn process(pid: u32, start: u64, image: u64, comm: &str) -> lumen_schemas::event::Process {
        let mut p = lumen_schemas::event::Process {
            pid,
            ppid: 1,
            start_time_ns: start,
            image_id: image,
            ..Default::default()
        }
        .with_text("", comm, &[]);
        p.parent.start_time_ns = 0;
        p
    }

    /// The host's cgroup and a container's.
    const HOST: u64 = 7;
    const CONTAINER: u64 = 9;

    /// A kernel record of `activity` by (pid, start) in `cgroup`, its
    /// parent (ppid, parent_start); a container process when in CONTAINER.
    fn record(
        activity: ProcessActivity,
        (pid, start): (u32, u64),
        (ppid, parent_start): (u32, u64),
        cgroup: u64,
    ) -> ProcessEvent {
        let mut ev = event(activity, pid, ppid, "/x", &["x"]);
        let p = &mut ev.process;
        p.start_time_ns = start;
        p.parent.start_time_ns = parent_start;
        p.cgroup_id = cgroup;
        if cgroup == CONTAINER {
            p.attribution.container_id = push(&mut p.text, &"c".repeat(64));
        }
        ev
    }

    fn leader_of(c: &mut ProcessCache, ev: &mut ProcessEvent) -> Option<(u32, &'static str)> {
        assert!(c.enrich(ev));
        ev.process.entry_leader.map(|l| (l.pid, l.entry.as_str()))
    }

    /// Whether the process of `ev` is the runtime setting its container up.
    fn setup_of(c: &mut ProcessCache, mut ev: ProcessEvent) -> bool {
        assert!(c.enrich(&mut ev));
        ev.process.entry_leader.unwrap().runtime_setup
    }

    fn memfd_exec(mut ev: ProcessEvent) -> ProcessEvent {
        ev.exe.memfd = true;
        ev
    }

    /// runc as it starts a container and later execs into it: runc's init
    /// is started in the host's cgroup, moved into the container's, and
    /// forks the entrypoint there; `runc exec` does the same later. Each
    /// lineage's leader is the init that was moved; the one that started
    /// first leads the entrypoint's lineage, the later one an exec's.
    /// The init, its forks and its memfd re-execution are the runtime
    /// setting up, until an exec of another program.
    #[test]
    fn entry_leaders_tell_the_entrypoints_lineage_from_an_execs() {
        use ProcessActivity::{Exec, Fork};
        let mut c = ProcessCache::new(100);
        c.insert(1, entry(0, "/sbin/init"));
        c.place(1, 0, HOST);
        // `runc run`: runc (100) forks its init (101) and execs it.
        let runc = (100, S);
        let _ = leader_of(&mut c, &mut record(Exec, runc, (1, 0), HOST));
        let init = (101, 2 * S);
        assert_eq!(leader_of(&mut c, &mut record(Fork, init, runc, HOST)), None);
        assert_eq!(leader_of(&mut c, &mut record(Exec, init, runc, HOST)), None);
        // Moved into the container, the init re-executes itself from a
        // memfd and forks the entrypoint, which execs and forks a worker.
        assert!(setup_of(
            &mut c,
            memfd_exec(record(Exec, init, runc, CONTAINER))
        ));
        let entrypoint = (102, 3 * S);
        let mut fork = record(Fork, entrypoint, init, CONTAINER);
        assert_eq!(leader_of(&mut c, &mut fork), Some((101, "entrypoint")));
        assert!(fork.process.entry_leader.unwrap().runtime_setup);
        let mut exec = record(Exec, entrypoint, runc, CONTAINER);
        assert_eq!(leader_of(&mut c, &mut exec), Some((101, "entrypoint")));
        assert!(!exec.process.entry_leader.unwrap().runtime_setup);
        // The workload's own memfd exec is not the runtime's.
        assert!(!setup_of(
            &mut c,
            memfd_exec(record(Exec, entrypoint, runc, CONTAINER))
        ));
        let worker = (103, 4 * S);
        let mut fork = record(Fork, worker, entrypoint, CONTAINER);
        assert_eq!(leader_of(&mut c, &mut fork), Some((101, "entrypoint")));
        // runc's init is gone; its lineage stays the entrypoint's.
        assert!(c.enrich(&mut record(ProcessActivity::Exit, init, runc, CONTAINER)));
        // `runc exec`: a second runc (200) and init (201), moved likewise;
        // the process it runs is moved before it execs (no fork seen in
        // the container).
        let runc2 = (200, 10 * S);
        let _ = leader_of(&mut c, &mut record(Exec, runc2, (1, 0), HOST));
        let init2 = (201, 11 * S);
        let _ = leader_of(&mut c, &mut record(Fork, init2, runc2, HOST));
        let _ = leader_of(&mut c, &mut record(Exec, init2, runc2, HOST));
        let mut exec = record(Exec, init2, runc2, CONTAINER);
        assert_eq!(leader_of(&mut c, &mut exec), Some((201, "exec")));
        assert!(!exec.process.entry_leader.unwrap().runtime_setup);
        let shell_child = (202, 12 * S);
        let mut fork = record(Fork, shell_child, init2, CONTAINER);
        assert_eq!(leader_of(&mut c, &mut fork), Some((201, "exec")));
        // Other kinds of events say the same of each process.
        let mut cat = record(Exec, shell_child, init2, CONTAINER).process;
        cat.entry_leader = None;
        c.annotate(&mut cat);
        assert_eq!(
            cat.entry_leader.map(|l| l.entry),
            Some(ContainerEntry::Exec)
        );
        let mut app = record(Exec, worker, entrypoint, CONTAINER).process;
        c.annotate(&mut app);
        assert_eq!(
            app.entry_leader.map(|l| l.entry),
            Some(ContainerEntry::Entrypoint)
        );
        // Host processes are nobody's container lineage.
        let mut host = record(Exec, runc2, (1, 0), HOST).process;
        c.annotate(&mut host);
        assert_eq!(host.entry_leader, None);
    }

    /// Lumen started after the container: the exec session acted first,
    /// and looked like the container's own until the entrypoint's lineage,
    /// which started earlier, showed up. A lineage whose parent the cache
    /// does not know stays unknown.
    #[test]
    fn the_earliest_leader_is_the_entrypoints_whatever_is_seen_first() {
        use ProcessActivity::{Exec, Fork};
        let mut c = ProcessCache::new(100);
        c.insert(1, entry(0, "/sbin/init"));
        c.place(1, 0, HOST);
        c.insert(50, entry(1, "/usr/bin/containerd-shim"));
        c.place(50, 0, HOST);
        let exec_session = (300, 20 * S);
        let mut ev = record(Exec, exec_session, (50, 0), CONTAINER);
        assert_eq!(leader_of(&mut c, &mut ev), Some((300, "entrypoint")));
        let entrypoint = (60, 5 * S);
        let mut ev = record(Fork, (61, 6 * S), (60, 5 * S), CONTAINER);
        assert_eq!(leader_of(&mut c, &mut ev), None, "parent 60 unknown");
        let mut ev = record(Exec, entrypoint, (50, 0), CONTAINER);
        assert_eq!(leader_of(&mut c, &mut ev), Some((60, "entrypoint")));
        let mut ev = record(Fork, (301, 21 * S), exec_session, CONTAINER);
        assert_eq!(leader_of(&mut c, &mut ev), Some((300, "exec")));
    }

    #[test]
    fn annotate_goes_by_identity_not_by_the_threads_name() {
        let mut c = ProcessCache::new(100);
        c.insert(
            30,
            Entry {
                ppid: 1,
                start_time_ns: 5 * S + 123,
                image_id: 7,
                executable: "/usr/bin/java".into(),
                name: "java".into(),
                ..Entry::default()
            },
        );
        // A thread named as it pleases (a JVM's "C2 CompilerThre").
        let mut thread = process(30, 5 * S + 123, 7, "C2 CompilerThre");
        c.annotate(&mut thread);
        assert_eq!(thread.executable(), "/usr/bin/java");
        // The same pid started later: a reused pid, not this process.
        let mut reused = process(30, 9 * S, 7, "java");
        c.annotate(&mut reused);
        assert_eq!(reused.executable(), "", "a reused pid gets no stale image");
        // Same process, another image: an exec the cache did not see.
        let mut execd = process(30, 5 * S + 123, 8, "java");
        c.annotate(&mut execd);
        assert_eq!(execd.executable(), "", "a missed exec lends no old image");
        // /proc has ticks only: a seeded start agrees with the kernel's ns.
        let tick = c.tick_ns;
        c.insert(
            40,
            Entry {
                start_time_ns: (5 * S + 7 * tick + 5) / tick * tick,
                executable: "/usr/sbin/sshd".into(),
                ..Entry::default()
            },
        );
        let mut seeded = process(40, 5 * S + 7 * tick + 5, 3, "sshd");
        c.annotate(&mut seeded);
        assert_eq!(seeded.executable(), "/usr/sbin/sshd");
    }

    #[test]
    fn one_exit_per_process_and_only_its_own_entry_goes() {
        let mut c = ProcessCache::new(100);
        c.insert(
            50,
            Entry {
                start_time_ns: 2 * S,
                executable: "/usr/bin/new".into(),
                ..Entry::default()
            },
        );
        // A late exit of the pid's previous process leaves the new one.
        let mut old = ProcessEvent {
            activity: ProcessActivity::Exit,
            process: process(50, S, 0, "old"),
            exit: None,
            exe: Default::default(),
        };
        assert!(c.enrich(&mut old));
        assert_eq!(old.process.executable(), "");
        assert_eq!(c.get(50, 2 * S).unwrap().executable, "/usr/bin/new");
        // Two last threads ending at once: one exit is reported.
        let exit = || ProcessEvent {
            activity: ProcessActivity::Exit,
            process: process(50, 2 * S, 0, "new"),
            exit: None,
            exe: Default::default(),
        };
        let mut first = exit();
        assert!(c.enrich(&mut first));
        assert_eq!(first.process.executable(), "/usr/bin/new");
        assert!(!c.enrich(&mut exit()), "the second exit is dropped");
        assert!(c.get(50, 2 * S).is_none());
    }

    #[test]
    fn ancestry_stops_at_a_parent_whose_pid_was_reused() {
        let mut c = ProcessCache::new(100);
        c.insert(
            10,
            Entry {
                ppid: 1,
                start_time_ns: 3 * S,
                executable: "/bin/bash".into(),
                ..Entry::default()
            },
        );
        c.insert(1, entry(0, "/sbin/init"));
        assert_eq!(c.ancestry(10, 3 * S), [10, 1]);
        assert_eq!(c.ancestry(10, 4 * S), [10], "pid 10 is another process now");
        let mut p = process(20, 6 * S, 0, "x");
        p.ppid = 10;
        p.parent.start_time_ns = 4 * S;
        c.annotate(&mut p);
        assert_eq!(
            p.s(p.parent.executable),
            "",
            "no parent image from a reused pid"
        );
    }

    #[test]
    fn capacity_bounds_the_cache_and_counts_what_it_refused() {
        let mut c = ProcessCache::new(2);
        c.insert(1, entry(0, "a"));
        c.insert(2, entry(1, "b"));
        c.insert(3, entry(1, "c"));
        assert_eq!((c.len(), c.overflow), (2, 1));
        c.insert(2, entry(1, "b2"));
        assert_eq!(c.get(2, 0).unwrap().executable, "b2", "updates always fit");
    }

    #[test]
    fn seeds_from_this_machines_proc_including_this_process() {
        let mut c = ProcessCache::new(1 << 20);
        let unified = super::super::cgroupfs::Hierarchies::discover()
            .unified
            .unwrap();
        let view = CgroupView {
            unified: Some(unified.clone()),
            ..CgroupView::default()
        };
        let n = c.seed_from_proc(Path::new("/proc"), &view).unwrap();
        assert!(n > 1);
        let me = c.get(std::process::id(), 0).unwrap();
        // Its cgroup id is its cgroup directory's inode, and its lineage
        // in that cgroup is known.
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let dir = unified.join(path.trim_start_matches('/'));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(me.cgroup_id, std::fs::metadata(dir).unwrap().ino());
        assert!(me.leader.is_some(), "{me:?}");
        assert_eq!(
            me.executable,
            std::env::current_exe().unwrap().to_string_lossy()
        );
        assert!(me.argv.split('\0').next().is_some_and(|a| !a.is_empty()));
        // SAFETY: getppid has no preconditions.
        assert_eq!(me.ppid, unsafe { libc::getppid() } as u32);
        assert!(me.start_time_ns > 0);
        // The parent's identity, from its own entry.
        let parent = c.get(me.ppid, me.parent_start_time_ns).unwrap();
        assert!(parent.start_time_ns > 0);
        assert_eq!(me.parent_start_time_ns, parent.start_time_ns);
    }
}
