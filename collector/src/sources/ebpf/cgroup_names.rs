//! The names of the cgroups events come from. The kernel sends a cgroup's
//! names once, in a `CgroupNamesRecord` ahead of the first event in it,
//! and event records carry only the cgroup's key: this cache keeps what
//! was sent. A key it does not hold — a record another CPU reserved before
//! the names' (the kernel stores the names in its `CGROUP_NAMES` map first),
//! names this cache let go, or programs adopted from a predecessor that
//! read their names records — is looked up in that map.

use aya::maps::{HashMap as KernelMap, MapData};
use lumen_common::CgroupNames;
use std::collections::HashMap;

/// Cgroups held before the cache starts over (the kernel's map holds 4096;
/// a cache cleared refills from the map, one lookup per cgroup).
const MAX_CGROUPS: usize = 16384;

/// Cgroup names by key (`RecordHeader::cgroup_key`).
#[derive(Debug)]
pub struct CgroupNameCache {
    names: HashMap<u64, Box<CgroupNames>, foldhash::fast::RandomState>,
    kernel: Option<KernelMap<MapData, u64, CgroupNames>>,
    /// Events whose cgroup's names neither this cache nor the kernel's
    /// map had (attributed by id only).
    pub unknown: u64,
}

impl CgroupNameCache {
    /// A cache that falls back on the kernel's `CGROUP_NAMES` map, when
    /// given.
    pub fn new(kernel: Option<KernelMap<MapData, u64, CgroupNames>>) -> CgroupNameCache {
        CgroupNameCache {
            names: HashMap::default(),
            kernel,
            unknown: 0,
        }
    }

    /// Keeps the names a `CgroupNamesRecord` carried.
    pub fn insert(&mut self, key: u64, names: &CgroupNames) {
        if self.names.len() >= MAX_CGROUPS && !self.names.contains_key(&key) {
            self.names.clear();
        }
        self.names.insert(key, Box::new(*names));
    }

    /// The names of the cgroup `key`, from this cache or the kernel's map;
    /// `None` for key 0 (no cgroup was readable) and when neither has them.
    pub fn get(&mut self, key: u64) -> Option<&CgroupNames> {
        if key == 0 {
            return None;
        }
        if !self.names.contains_key(&key) {
            let found = self.kernel.as_ref().and_then(|m| m.get(&key, 0).ok());
            let Some(names) = found else {
                self.unknown += 1;
                if self.unknown.is_power_of_two() {
                    tracing::warn!(
                        key,
                        events = self.unknown,
                        "ebpf source: a cgroup's names were neither sent nor in the kernel's map (evicted before they were read); its events are attributed by cgroup id only"
                    );
                }
                return None;
            };
            self.insert(key, &names);
        }
        self.names.get(&key).map(|n| &**n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_common::{CGROUP_LEVELS, CGROUP_NAME_MAX};

    fn names(leaf: &str) -> CgroupNames {
        let mut n = [[0u8; CGROUP_NAME_MAX]; CGROUP_LEVELS];
        n[0][..leaf.len()].copy_from_slice(leaf.as_bytes());
        n
    }

    #[test]
    fn keeps_what_was_sent_and_counts_what_was_not() {
        let mut cache = CgroupNameCache::new(None);
        cache.insert(7, &names("a.scope"));
        assert_eq!(cache.get(7).map(|n| n[0][0]), Some(b'a'));
        assert!(cache.get(8).is_none());
        assert!(cache.get(0).is_none(), "key 0: no cgroup, not a miss");
        assert_eq!(cache.unknown, 1);
    }

    #[test]
    fn starts_over_when_full() {
        let mut cache = CgroupNameCache::new(None);
        for key in 1..=MAX_CGROUPS as u64 {
            cache.insert(key, &names("x"));
        }
        assert!(cache.get(1).is_some());
        cache.insert(MAX_CGROUPS as u64 + 1, &names("y"));
        assert_eq!(cache.names.len(), 1);
        assert!(cache.get(MAX_CGROUPS as u64 + 1).is_some());
    }
}
