//! Restarts without blindness: with `pin_path`, a stopping Lumen leaves
//! its programs attached and pins their links and the maps user space
//! reads (ring buffer, drop counters, scheduler counters, the handoff
//! record) in bpffs; the next Lumen with the same programs and settings
//! adopts them instead of loading its own, and reads what they recorded
//! in between from the ring buffer. Detaching is what made a restart
//! blind: each perf tracepoint's detach waits for an RCU grace period
//! under the kernel's event mutex (2.3 s for all of them, in parallel),
//! and attaching anew takes 0.6 s more.
//!
//! The programs record for the successor until the handoff's deadline
//! (`handoff_grace_secs`), nothing after: a Lumen stopped for good leaves
//! idle hooks (one map lookup each) until the pins are removed
//! (`rm -r <pin_path>` detaches them) or a Lumen starts with that
//! `pin_path`. An adopter unpins everything at once, so if it dies
//! without a stop its programs detach with its file descriptors. A
//! successor with other programs or settings attaches its own and
//! releases the pinned ones; the time between is reported as unwatched.

use super::resources::sched::SchedMaps;
use super::ring::Ring;
use aya::maps::{Array, HashMap as KernelMap, Map, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::trace_point::TracePointLink;
use aya::programs::{BtfTracePoint, RawTracePoint, TracePoint};
use lumen_common::{drop_index, CgroupNames, Handoff};
use lumen_sinks::http::error_chain;
use sha2::{Digest, Sha256};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a handoff could not be made or taken.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("pin_path {path}: {reason}")]
    Path { path: PathBuf, reason: String },
    #[error("pinning {what} at {path}: {}", error_chain(source.as_ref()))]
    Pin {
        what: String,
        path: PathBuf,
        source: BoxError,
    },
    #[error("adopting {what} from {path}: {}", error_chain(source.as_ref()))]
    Adopt {
        what: String,
        path: PathBuf,
        source: BoxError,
    },
    #[error("this kernel attaches tracepoints without BPF links (Linux 5.15+ has them), which cannot be pinned")]
    Unpinnable,
}

/// An attachment, owned apart from its program so that a stop can pin it.
enum Owned {
    Fd(FdLink),
    /// A perf-event attachment without a BPF link (before Linux 5.15),
    /// held for its drop, which detaches it.
    #[allow(dead_code)]
    Perf(TracePointLink),
}

/// Every attachment, named `<program>.<tracepoint>`; dropped, detached.
#[derive(Default)]
pub struct Links(Vec<(String, Owned)>);

impl Links {
    pub fn tracepoint(
        &mut self,
        prog: &mut TracePoint,
        program: &str,
        category: &str,
        name: &str,
    ) -> Result<(), BoxError> {
        let id = prog.attach(category, name)?;
        let link = prog.take_link(id)?;
        let owned = if aya::features().bpf_perf_link() {
            Owned::Fd(FdLink::try_from(link)?)
        } else {
            Owned::Perf(link)
        };
        self.0.push((format!("{program}.{name}"), owned));
        Ok(())
    }

    pub fn raw(
        &mut self,
        prog: &mut RawTracePoint,
        program: &str,
        name: &str,
    ) -> Result<(), BoxError> {
        let id = prog.attach(name)?;
        let link = FdLink::from(prog.take_link(id)?);
        self.0.push((format!("{program}.{name}"), Owned::Fd(link)));
        Ok(())
    }

    pub fn btf(
        &mut self,
        prog: &mut BtfTracePoint,
        program: &str,
        name: &str,
    ) -> Result<(), BoxError> {
        let id = prog.attach()?;
        let link = FdLink::from(prog.take_link(id)?);
        self.0.push((format!("{program}.{name}"), Owned::Fd(link)));
        Ok(())
    }

    /// Whether `program` is attached to `tracepoint`.
    pub fn has(&self, program: &str, tracepoint: &str) -> bool {
        self.0.iter().any(|(name, _)| {
            name.strip_prefix(program)
                .and_then(|rest| rest.strip_prefix('.'))
                == Some(tracepoint)
        })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Detaches every program at once. Each tracepoint's detach waits for
    /// an RCU grace period (~75 ms on this VM): one after another, 66 of
    /// them took 4.9 s; in parallel the waits overlap (2.3 s).
    pub fn detach(self) {
        std::thread::scope(|scope| {
            for (_, link) in self.0 {
                scope.spawn(move || drop(link));
            }
        });
    }
}

/// The kernel side a running source holds: its attachments and handles
/// on the maps a successor needs.
pub struct Kernel {
    pub links: Links,
    handoff: Array<MapData, Handoff>,
    /// Second handles on the maps to pin (the readers own the first).
    maps: Vec<(&'static str, MapData)>,
    identity: [u8; 32],
}

/// The maps a successor takes over, by name.
pub const HANDED_MAPS: [&str; 6] = [
    "EVENTS",
    "DROPS",
    "HANDOFF",
    "SCHED_CGROUPS",
    "SCHED_PAIRS",
    "CGROUP_NAMES",
];

impl Kernel {
    /// `maps`: second handles ([`dup`]) on whichever of [`HANDED_MAPS`]
    /// this source uses.
    pub fn new(
        links: Links,
        handoff: Array<MapData, Handoff>,
        maps: Vec<(&'static str, MapData)>,
        identity: [u8; 32],
    ) -> Kernel {
        Kernel {
            links,
            handoff,
            maps,
            identity,
        }
    }

    /// Leaves the programs attached for a successor: pins the maps and
    /// the links in `dir` and gives them `grace` to be adopted. On an
    /// error nothing stays pinned and the programs are detached.
    pub fn hand_off(
        mut self,
        dir: &Path,
        grace: std::time::Duration,
        drops_reported: [u64; drop_index::COUNT as usize],
    ) -> Result<usize, HandoffError> {
        if self
            .links
            .0
            .iter()
            .any(|(_, l)| matches!(l, Owned::Perf(_)))
        {
            self.links.detach();
            return Err(HandoffError::Unpinnable);
        }
        if let Err(e) = ensure_bpffs(dir).and_then(|()| {
            std::fs::create_dir(dir).map_err(|e| HandoffError::Path {
                path: dir.to_owned(),
                reason: match e.kind() {
                    std::io::ErrorKind::AlreadyExists => {
                        "already holds another Lumen's programs (two sources or Lumens with one pin_path?)".to_owned()
                    }
                    _ => e.to_string(),
                },
            })
        }) {
            self.links.detach();
            return Err(e);
        }
        let now = monotonic_ns();
        let record = Handoff {
            deadline_ns: now.saturating_add(grace.as_nanos() as u64),
            stopped_ns: now,
            identity: self.identity,
            drops_reported,
        };
        let pinned = self
            .handoff
            .set(0, record, 0)
            .map_err(|e| HandoffError::Pin {
                what: "the handoff record".to_owned(),
                path: dir.to_owned(),
                source: e.into(),
            })
            .and_then(|()| {
                for (name, map) in &self.maps {
                    let path = dir.join(format!("map-{name}"));
                    map.pin(&path).map_err(|e| HandoffError::Pin {
                        what: format!("map {name}"),
                        path,
                        source: e.into(),
                    })?;
                }
                Ok(())
            });
        if let Err(e) = pinned {
            self.links.detach();
            unpin_all(dir);
            return Err(e);
        }
        let count = self.links.len();
        let mut links = self.links.0.into_iter();
        while let Some((name, link)) = links.next() {
            let Owned::Fd(link) = link else {
                unreachable!("checked above")
            };
            let path = dir.join(link_file(&name));
            if let Err(e) = link.pin(&path) {
                let mut rest = take_pins(dir);
                rest.0.extend(links);
                rest.detach();
                return Err(HandoffError::Pin {
                    what: format!("link {name}"),
                    path,
                    source: e.into(),
                });
            }
        }
        Ok(count)
    }
}

/// A second handle on `map` (its file descriptor duplicated).
pub fn dup(name: &'static str, map: &MapData) -> Result<(&'static str, MapData), HandoffError> {
    map.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(BoxError::from)
        .and_then(|fd| MapData::from_fd(fd).map_err(BoxError::from))
        .map(|data| (name, data))
        .map_err(|source| HandoffError::Pin {
            what: format!("map {name}"),
            path: PathBuf::new(),
            source,
        })
}

/// The map behind `map`, for the kinds of [`HANDED_MAPS`].
pub fn map_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::RingBuf(m)
        | Map::Array(m)
        | Map::PerCpuArray(m)
        | Map::PerCpuHashMap(m)
        | Map::PerCpuLruHashMap(m)
        | Map::LruHashMap(m) => Some(m),
        _ => None,
    }
}

/// What a predecessor left at `pin_path`.
pub enum Found {
    Nothing,
    Adopted(Box<Adopted>),
    /// Other programs or settings, or an unusable pin: released (detached
    /// in the background); it stopped reading at `stopped_ns` (0: unknown).
    Released {
        stopped_ns: u64,
        reason: String,
    },
}

/// A predecessor's programs, now this source's.
pub struct Adopted {
    pub kernel: Kernel,
    pub ring: Ring,
    pub drops: PerCpuArray<MapData, u64>,
    pub sched: Option<SchedMaps>,
    /// The kernel's cgroup names (a predecessor before they were handed
    /// over left none).
    pub cgroup_names: Option<KernelMap<MapData, u64, CgroupNames>>,
    /// Its handoff record as it left it.
    pub previous: Handoff,
}

/// Takes over what a predecessor left in `dir` if it ran the programs
/// with the settings `identity` says; releases it otherwise.
pub fn adopt(dir: &Path, identity: [u8; 32]) -> Found {
    if !dir.exists() {
        return Found::Nothing;
    }
    let err = |what: &str| {
        let (what, path) = (what.to_owned(), dir.to_owned());
        move |e: BoxError| HandoffError::Adopt {
            what,
            path,
            source: e,
        }
    };
    let record = MapData::from_pin(dir.join("map-HANDOFF"))
        .map_err(BoxError::from)
        .and_then(|m| Array::<_, Handoff>::try_from(Map::Array(m)).map_err(BoxError::from))
        .and_then(|a| Ok((a.get(&0, 0)?, a)))
        .map_err(err("the handoff record"));
    let (previous, mut handoff) = match record {
        Ok(r) => r,
        Err(e) => return release(dir, 0, e.to_string()),
    };
    if previous.identity != identity {
        return release(
            dir,
            previous.stopped_ns,
            "the Lumen that left them ran other programs or settings".to_owned(),
        );
    }
    // Everything opened before anything is unpinned: a failure leaves the
    // pins to `release`, which detaches in the background.
    let taken = (|| -> Result<Adopted, HandoffError> {
        let map = |name: &str| {
            MapData::from_pin(dir.join(format!("map-{name}")))
                .map_err(|e| err(&format!("map {name}"))(e.into()))
        };
        let mut handles = vec![
            ("EVENTS", map("EVENTS")?),
            ("DROPS", map("DROPS")?),
            ("HANDOFF", map("HANDOFF")?),
        ];
        let ring = Ring::new(map("EVENTS")?).map_err(|e| err("map EVENTS")(e.into()))?;
        let drops = PerCpuArray::try_from(Map::PerCpuArray(map("DROPS")?))
            .map_err(|e| err("map DROPS")(e.into()))?;
        let sched = if dir.join("map-SCHED_CGROUPS").exists() {
            handles.push(("SCHED_CGROUPS", map("SCHED_CGROUPS")?));
            handles.push(("SCHED_PAIRS", map("SCHED_PAIRS")?));
            Some(
                SchedMaps::from_maps(
                    Map::PerCpuLruHashMap(map("SCHED_CGROUPS")?),
                    Map::PerCpuLruHashMap(map("SCHED_PAIRS")?),
                )
                .map_err(|e| err("the scheduler maps")(e.into()))?,
            )
        } else {
            None
        };
        let cgroup_names = if dir.join("map-CGROUP_NAMES").exists() {
            handles.push(("CGROUP_NAMES", map("CGROUP_NAMES")?));
            Some(
                KernelMap::try_from(Map::LruHashMap(map("CGROUP_NAMES")?))
                    .map_err(|e| err("map CGROUP_NAMES")(e.into()))?,
            )
        } else {
            None
        };
        let mut links = Links::default();
        for (name, path) in pinned_links(dir).map_err(|e| err("the directory")(e.into()))? {
            let link =
                PinnedLink::from_pin(path).map_err(|e| err(&format!("link {name}"))(e.into()))?;
            links.0.push((name, Owned::Fd(FdLink::from(link))));
        }
        // Recording again, for as long as this source runs.
        let running = Handoff {
            deadline_ns: 0,
            ..previous
        };
        handoff
            .set(0, running, 0)
            .map_err(|e| err("the handoff record")(e.into()))?;
        // Ours now: no pin outlives this process unless it hands off too.
        unpin_all(dir);
        Ok(Adopted {
            kernel: Kernel::new(links, handoff, handles, identity),
            ring,
            drops,
            sched,
            cgroup_names,
            previous,
        })
    })();
    match taken {
        Ok(adopted) => Found::Adopted(Box::new(adopted)),
        Err(e) => release(dir, previous.stopped_ns, e.to_string()),
    }
}

/// Removes the pins in `dir` (and `dir`), detaching their programs on a
/// thread of its own: a start does not wait for the old programs' detach.
fn release(dir: &Path, stopped_ns: u64, reason: String) -> Found {
    let links = take_pins(dir);
    std::thread::spawn(move || links.detach());
    Found::Released { stopped_ns, reason }
}

/// The links pinned in `dir`, unpinned (still attached while held), and
/// `dir` removed.
fn take_pins(dir: &Path) -> Links {
    let mut links = Links::default();
    for (name, path) in pinned_links(dir).unwrap_or_default() {
        if let Ok(link) = PinnedLink::from_pin(path) {
            links.0.push((name, Owned::Fd(FdLink::from(link))));
        }
    }
    unpin_all(dir);
    links
}

/// A link's pin file: `link-<program>-<tracepoint>` (bpffs refuses dots).
fn link_file(name: &str) -> String {
    format!("link-{}", name.replacen('.', "-", 1))
}

/// The links pinned in `dir`: their names (`<program>.<tracepoint>`, as
/// [`Links`] has them) and pin files.
fn pinned_links(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_prefix("link-") {
            found.push((name.replacen('-', ".", 1), entry.path()));
        }
    }
    Ok(found)
}

/// Removes every pin in `dir` and `dir` itself.
fn unpin_all(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %dir.display(), error = %e, "ebpf source: cannot remove the handoff's pins");
        }
    }
}

/// The identity of programs and their settings: what must match for a
/// successor to read their records as its own.
pub fn identity(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// A map record's bytes, for [`identity`].
pub fn bytes_of<T: aya::Pod>(value: &T) -> &[u8] {
    // SAFETY: a Pod is plain data without padding: every byte is initialised.
    unsafe { std::slice::from_raw_parts(value as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// The clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    super::clock_ns(libc::CLOCK_MONOTONIC) as u64
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Makes sure `dir`'s parent is on bpffs, mounting it at `/sys/fs/bpf`
/// when that is where it goes and nobody has.
fn ensure_bpffs(dir: &Path) -> Result<(), HandoffError> {
    let path_err = |reason: String| HandoffError::Path {
        path: dir.to_owned(),
        reason,
    };
    let parent = dir
        .parent()
        .ok_or_else(|| path_err("has no parent directory".to_owned()))?;
    let on_bpffs = |p: &Path| -> bool {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: a NUL-terminated path and a zeroed out struct.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statfs(c.as_ptr(), &mut fs) };
        rc == 0 && fs.f_type as i64 == BPF_FS_MAGIC
    };
    let bpffs = Path::new("/sys/fs/bpf");
    if !parent.exists() || !on_bpffs(parent) {
        if parent.starts_with(bpffs) && !on_bpffs(bpffs) {
            super::mount_kernel_fs(c"bpf", c"/sys/fs/bpf").map_err(|e| {
                path_err(format!(
                    "bpffs is not mounted at /sys/fs/bpf and mounting it failed: {e}"
                ))
            })?;
            tracing::info!("mounted bpffs at /sys/fs/bpf");
        }
        std::fs::create_dir_all(parent).map_err(|e| path_err(e.to_string()))?;
        if !on_bpffs(parent) {
            return Err(path_err(
                "is not on a BPF file system (mount -t bpf bpf <dir>, or use a path under /sys/fs/bpf)".to_owned(),
            ));
        }
    }
    Ok(())
}

/// Checks a configured `pin_path`.
pub fn validate(dir: &Path) -> Result<(), String> {
    if !dir.is_absolute() || dir.parent().is_none() {
        return Err(format!(
            "pin_path {}: must be an absolute path below a directory",
            dir.display()
        ));
    }
    // bpffs refuses names with a dot (reserved for its own files).
    if dir
        .file_name()
        .is_some_and(|n| n.as_encoded_bytes().contains(&b'.'))
    {
        return Err(format!(
            "pin_path {}: bpffs refuses names with a dot",
            dir.display()
        ));
    }
    if dir.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(format!("pin_path {:?}: contains a NUL byte", dir));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_paths_bpffs_refuses_are_refused_with_the_reason() {
        assert!(validate(Path::new("/sys/fs/bpf/lumen/kernel")).is_ok());
        let err = validate(Path::new("/sys/fs/bpf/lumen.kernel")).unwrap_err();
        assert!(err.contains("dot"), "{err}");
        let err = validate(Path::new("lumen")).unwrap_err();
        assert!(err.contains("absolute"), "{err}");
        assert!(validate(Path::new("/")).is_err());
    }

    #[test]
    fn identity_changes_with_any_part_and_with_where_parts_split() {
        let base = identity(&[b"programs", b"settings"]);
        assert_eq!(base, identity(&[b"programs", b"settings"]));
        assert_ne!(base, identity(&[b"programs", b"settingz"]));
        assert_ne!(base, identity(&[b"program", b"ssettings"]));
        assert_ne!(base, identity(&[b"programs", b"settings", b""]));
    }
}
