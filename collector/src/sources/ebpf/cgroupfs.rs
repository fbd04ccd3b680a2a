//! Where the cgroup hierarchies are mounted: the unified (v2) hierarchy
//! and each v1 controller, from `/proc/self/mountinfo`. Hosts differ:
//! unified only (`/sys/fs/cgroup`), hybrid (v1 controllers under
//! `/sys/fs/cgroup/<controller>` with the unified hierarchy at
//! `/sys/fs/cgroup/unified`, as on this project's test machines), or v1
//! only. The kernel's cgroup ids are the unified hierarchy's.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hierarchies {
    /// The cgroup2 mount.
    pub unified: Option<PathBuf>,
    /// (controller, mount) of each v1 hierarchy; a mount shared by
    /// several controllers (`cpu,cpuacct`) is listed for each.
    v1: Vec<(String, PathBuf)>,
}

impl Hierarchies {
    /// This machine's, from `/proc/self/mountinfo` (none when unreadable).
    pub fn discover() -> Hierarchies {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|text| Hierarchies::from_mountinfo(&text))
            .unwrap_or_default()
    }

    /// Parses `mountinfo` text (proc(5)): the first cgroup2 mount, and the
    /// first mount of each v1 controller.
    pub fn from_mountinfo(text: &str) -> Hierarchies {
        let mut h = Hierarchies::default();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4).map(unescape) else {
                continue;
            };
            let mut right = right.split(' ');
            let (fstype, super_options) = (right.next(), right.nth(1));
            match fstype {
                Some("cgroup2") if h.unified.is_none() => h.unified = Some(mount_point),
                Some("cgroup") => {
                    for option in super_options.unwrap_or("").split(',') {
                        let known = h.v1.iter().any(|(c, _)| c == option);
                        if !known && !matches!(option, "rw" | "ro") && !option.contains('=') {
                            h.v1.push((option.to_owned(), mount_point.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
        h
    }

    /// Each distinct mount resource counters are read from: the unified
    /// hierarchy and the v1 `cpu`, `cpuacct`, `memory`, `pids` and `blkio`
    /// controllers (a mount shared by two controllers once).
    pub fn counted(&self) -> Vec<&Path> {
        let mut mounts: Vec<&Path> = Vec::new();
        let v1 = ["cpu", "cpuacct", "memory", "pids", "blkio"].map(|c| self.v1(c));
        for m in std::iter::once(self.unified.as_deref()).chain(v1).flatten() {
            if !mounts.contains(&m) {
                mounts.push(m);
            }
        }
        mounts
    }

    /// The mount of v1 controller `controller` (`cpu`, `cpuacct`,
    /// `memory`, `blkio`, `pids`, `cpuset`).
    pub fn v1(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, p)| p.as_path())
    }

    /// The v1 controllers mounted, in mount order.
    pub fn v1_controllers(&self) -> Vec<&str> {
        self.v1.iter().map(|(c, _)| c.as_str()).collect()
    }
}

/// Which cgroup attributes a task to its container (`cgroup_hierarchy`).
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CgroupHierarchy {
    /// The unified hierarchy's; a v1 controller's where that is the root
    /// (a v1-only host, a task placed in v1 controllers only).
    #[default]
    Auto,
    /// The unified hierarchy's only.
    Unified,
    /// The v1 controller's, always.
    V1,
}

/// The v1 controllers attribution may read, in order of preference: each
/// is in every container's cgroup on the hosts that mount it.
pub const V1_PREFERENCE: [&str; 3] = ["memory", "cpu", "pids"];

/// How tasks are attributed to cgroups on this host: what the kernel
/// programs are told to read, and the same done from `/proc` for the
/// processes that were there before them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupView {
    pub unified: Option<PathBuf>,
    /// The v1 controller read, and its mount.
    pub v1: Option<(String, PathBuf)>,
    /// Read the v1 controller's cgroup always, not only where the unified
    /// one is the root.
    pub always_v1: bool,
}

impl CgroupView {
    /// The view `hierarchy` and `controller` (`None`: the first of
    /// [`V1_PREFERENCE`] mounted) ask for on hierarchies `h`; an error names
    /// what is missing.
    pub fn choose(
        h: &Hierarchies,
        hierarchy: CgroupHierarchy,
        controller: Option<&str>,
    ) -> Result<CgroupView, String> {
        let mounted = || h.v1_controllers().join(", ");
        let v1 = match (hierarchy, controller) {
            (CgroupHierarchy::Unified, _) => None,
            (_, Some(c)) => match h.v1(c) {
                Some(mount) => Some((c.to_owned(), mount.to_owned())),
                None => {
                    return Err(format!(
                        "cgroup_v1_controller = {c:?} is not mounted as a cgroup v1 hierarchy (mounted: {})",
                        mounted()
                    ))
                }
            },
            (_, None) => V1_PREFERENCE
                .iter()
                .find_map(|c| h.v1(c).map(|m| ((*c).to_owned(), m.to_owned()))),
        };
        if hierarchy == CgroupHierarchy::V1 && v1.is_none() {
            return Err(format!(
                "cgroup_hierarchy = \"v1\" but none of {} is mounted as a cgroup v1 hierarchy (mounted: {})",
                V1_PREFERENCE.join(", "),
                mounted()
            ));
        }
        Ok(CgroupView {
            unified: h.unified.clone(),
            always_v1: hierarchy == CgroupHierarchy::V1,
            v1,
        })
    }

    /// The id of the cgroup the process at `/proc/<pid>` (`dir`) is
    /// attributed to — the inode number of the cgroup's directory, which is
    /// what the kernel's records carry — as the kernel programs choose it.
    pub fn id_of(&self, dir: &Path) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let text = std::fs::read_to_string(dir.join("cgroup")).ok()?;
        let ino = |root: &Path, path: &str| {
            std::fs::metadata(root.join(path.trim_start_matches('/')))
                .ok()
                .map(|m| m.ino())
        };
        let unified = self.unified.as_deref().and_then(|root| {
            let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
            Some((root, path))
        });
        if !self.always_v1 {
            if let Some((root, path)) = unified.filter(|(_, p)| *p != "/") {
                return ino(root, path);
            }
        }
        if let Some((controller, mount)) = &self.v1 {
            // `N:cpu,cpuacct:/path`.
            let path = text.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == controller)
                    .then_some(path)
            });
            if let Some(path) = path {
                return ino(mount, path);
            }
        }
        unified.and_then(|(root, path)| ino(root, path))
    }
}

/// A mountinfo path field: spaces, tabs, newlines and backslashes are
/// written as octal escapes (`\040`).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_unified_and_v1_only_layouts() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:7 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
        let h = Hierarchies::from_mountinfo(hybrid);
        assert_eq!(
            h.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(h.v1("cpu"), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(
            h.v1("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(h.v1("memory"), Some(Path::new("/sys/fs/cgroup/memory")));
        assert_eq!(h.v1("xattr"), Some(Path::new("/sys/fs/cgroup/systemd")));
        assert_eq!(h.v1("pids"), None);
        assert_eq!(
            h.counted(),
            [
                Path::new("/sys/fs/cgroup/unified"),
                Path::new("/sys/fs/cgroup/cpu,cpuacct"),
                Path::new("/sys/fs/cgroup/memory"),
            ],
            "cpu and cpuacct share a mount"
        );
        let unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        let h = Hierarchies::from_mountinfo(unified);
        assert_eq!(h.unified.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert_eq!(h.v1("memory"), None);
        let escaped = r"41 31 0:38 / /mnt/my\040cgroups rw - cgroup2 none rw";
        assert_eq!(
            Hierarchies::from_mountinfo(escaped).unified.as_deref(),
            Some(Path::new("/mnt/my cgroups"))
        );
    }

    #[test]
    fn this_machines_hierarchies_hold_this_process() {
        let h = Hierarchies::discover();
        let root = h.unified.expect("a cgroup2 mount");
        assert!(root.join("cgroup.procs").exists(), "{}", root.display());
    }

    #[test]
    fn a_process_is_attributed_as_the_kernel_programs_do() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let dir = |p: &str| {
            let d = root.path().join(p);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let (unified, memory) = (dir("unified"), dir("memory"));
        let in_unified = dir("unified/kubepods/pod1/ctr");
        let in_memory = dir("memory/kubepods/pod1/ctr");
        let proc = dir("proc/42");
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let write = |text: &str| std::fs::write(proc.join("cgroup"), text).unwrap();
        let mut view = CgroupView {
            unified: Some(unified.clone()),
            v1: Some(("memory".into(), memory.clone())),
            always_v1: false,
        };
        // Placed in both: the unified cgroup.
        write("4:memory:/kubepods/pod1/ctr\n1:cpu,cpuacct:/\n0::/kubepods/pod1/ctr\n");
        assert_eq!(view.id_of(&proc), Some(ino(&in_unified)));
        // In the unified root: the v1 controller's.
        write("4:memory:/kubepods/pod1/ctr\n0::/\n");
        assert_eq!(view.id_of(&proc), Some(ino(&in_memory)));
        // Asked for v1: always the controller's.
        view.always_v1 = true;
        write("4:memory:/kubepods/pod1/ctr\n0::/kubepods/pod1/ctr\n");
        assert_eq!(view.id_of(&proc), Some(ino(&in_memory)));
        // A controller listed with others (`cpu,cpuacct`) is found.
        view.v1 = Some(("cpuacct".into(), memory.clone()));
        write("1:cpu,cpuacct:/kubepods/pod1/ctr\n0::/\n");
        assert_eq!(view.id_of(&proc), Some(ino(&in_memory)));
        // No v1 controller: the unified root.
        view.v1 = None;
        view.always_v1 = false;
        write("0::/\n");
        assert_eq!(view.id_of(&proc), Some(ino(&unified)));
    }
}
