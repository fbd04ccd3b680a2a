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
}
