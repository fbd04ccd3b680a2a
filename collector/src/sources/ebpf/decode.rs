//! Turns kernel records (`lumen-common`) into canonical events.

use super::cgroup_names::CgroupNameCache;
#[cfg(test)]
use lumen_common::{CgroupNames, CGROUP_LEVELS, CGROUP_NAME_MAX};
use lumen_common::{
    CgroupNamesRecord, Creds, ExecRecord, ExitRecord, FileOp, FileRecord, ForkRecord, NetOp,
    NetRecord, OomRecord, PrivOp, PrivRecord, RecordHeader, RecordKind, WalkedPath, ARGV_MAX,
    EXE_DELETED, EXE_MEMFD, EXE_TMPFS, EXE_UPPER_LAYER, PATH_COMPONENTS, PATH_MAX, SOCKADDR_MAX,
};
use lumen_schemas::event::{
    push, Attribution, Credentials, ExecFacts, ExitStatus, FileEvent, FileOperation, MountInfo,
    NamespaceJoin, NamespaceKind, NetworkEvent, NetworkOp, ParentInfo, PrivilegeEvent, PrivilegeOp,
    Process, ProcessActivity, ProcessEvent, Str,
};
use lumen_schemas::EventKind;
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A decoded record: the event kind plus the kernel's boot-time clock.
#[derive(Debug)]
pub struct Decoded {
    pub ktime_ns: u64,
    pub kind: EventKind,
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its kind needs ({need})")]
    Short { len: usize, need: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
}

fn read<T: Copy>(bytes: &[u8]) -> Result<Cow<'_, T>, DecodeError> {
    let need = std::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    // Ring-buffer records are 8-byte aligned: read them in place (a copy of
    // a 3 KB file record was a sixth of the reader's time in a storm).
    if bytes.as_ptr().align_offset(std::mem::align_of::<T>()) == 0 {
        // SAFETY: length and alignment checked; the records are plain data
        // valid for any bit pattern, borrowed for as long as `bytes`.
        return Ok(Cow::Borrowed(unsafe { &*bytes.as_ptr().cast::<T>() }));
    }
    // SAFETY: length checked; read_unaligned makes no alignment assumption.
    Ok(Cow::Owned(unsafe {
        std::ptr::read_unaligned(bytes.as_ptr().cast::<T>())
    }))
}

/// A record the kernel may cut short after `min` bytes (a file open's
/// record ends after its walked components): the missing bytes read as
/// zeros (no components, an empty caller's path).
fn read_prefix<T: Copy>(bytes: &[u8], min: usize) -> Result<Cow<'_, T>, DecodeError> {
    let size = std::mem::size_of::<T>();
    if bytes.len() >= size || bytes.len() < min {
        return read(bytes);
    }
    // SAFETY: the records are plain data, valid as all zeros; fewer than
    // size_of::<T>() bytes are copied into it.
    let out = unsafe {
        let mut out: T = std::mem::zeroed();
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (&mut out as *mut T).cast::<u8>(),
            bytes.len(),
        );
        out
    };
    Ok(Cow::Owned(out))
}

/// Where a file record may end: after its path's depth and truncation.
const FILE_RECORD_MIN: usize =
    std::mem::offset_of!(FileRecord, path) + std::mem::offset_of!(WalkedPath, components);

/// Joins a kernel-walked path: an absolute tail stands alone; otherwise the
/// walked components (leaf first in the record) then the tail.
pub fn assemble_path(p: &WalkedPath) -> String {
    let tail = String::from_utf8_lossy(until_nul(&p.tail));
    if tail.starts_with('/') {
        return normalize_path(&tail);
    }
    let depth = (p.depth as usize).min(PATH_COMPONENTS);
    let mut raw = String::new();
    if p.truncated != 0 {
        raw.push_str("/...");
    }
    for component in p.components[..depth].iter().rev() {
        raw.push('/');
        raw.push_str(&String::from_utf8_lossy(until_nul(component)));
    }
    if !tail.is_empty() {
        raw.push('/');
        raw.push_str(&tail);
    }
    normalize_path(&raw)
}

/// Collapses `//`, `.` and `..` (a relative name appended to its directory
/// in the kernel may hold them). Not a symlink resolution: the kernel
/// already resolved the directory part.
pub fn normalize_path(raw: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = String::with_capacity(raw.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

fn socket_addr(v6: bool, addr: &[u8; 16], port: u16) -> SocketAddr {
    if v6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(*addr)), port)
    } else {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
            port,
        )
    }
}

/// A `sockaddr_in` or `sockaddr_in6` as the caller passed it.
fn user_sockaddr(raw: &[u8; SOCKADDR_MAX]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    match family {
        AF_INET => Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7])),
            port,
        )),
        AF_INET6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&raw[8..24]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port))
        }
        _ => None,
    }
}

/// A process from a record header plus its strings, packed into one buffer.
fn process_from(
    h: &RecordHeader,
    names: &mut CgroupNameCache,
    executable: &[u8],
    argv: &[u8],
) -> Process {
    let comm = until_nul(&h.comm);
    // The argument area ends with a NUL; arguments are NUL-separated.
    let argv = argv.strip_suffix(&[0]).unwrap_or(argv);
    let mut text = String::with_capacity(executable.len() + comm.len() + argv.len());
    let exe = push(&mut text, &String::from_utf8_lossy(executable));
    let name = push(&mut text, &String::from_utf8_lossy(comm));
    let args = push(&mut text, &String::from_utf8_lossy(argv));
    let attribution = attribute(h, names, &mut text);
    Process {
        pid: h.pid,
        tid: h.tid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        text,
        executable: exe,
        name,
        argv: args,
        args_truncated: false,
        cgroup_id: h.cgroup_id,
        start_time_ns: h.start_time_ns,
        image_id: h.image_id,
        attribution,
        parent: ParentInfo {
            start_time_ns: h.parent_start_time_ns,
            ..ParentInfo::default()
        },
        ancestry: Vec::new(),
        entry_leader: None,
    }
}

/// Cgroup path tail, container and pod from the names of the record's
/// cgroup (sent before it, or in the kernel's map); namespaces.
fn attribute(h: &RecordHeader, names: &mut CgroupNameCache, text: &mut String) -> Attribution {
    let from_names = names
        .get(h.cgroup_key())
        .map(|n| attribute_names(n, text))
        .unwrap_or_default();
    Attribution {
        pid_ns: h.pid_ns,
        mnt_ns: h.mnt_ns,
        net_ns: h.net_ns,
        ..from_names
    }
}

/// Cgroup path tail, container and pod from cgroup names, leaf first.
fn attribute_names(
    cgroup_names: &[[u8; lumen_common::CGROUP_NAME_MAX]; lumen_common::CGROUP_LEVELS],
    text: &mut String,
) -> Attribution {
    // Cgroup names are ASCII; a name that is not UTF-8 is skipped.
    let mut names = [""; lumen_common::CGROUP_LEVELS];
    let mut count = 0;
    for raw in cgroup_names {
        match std::str::from_utf8(until_nul(raw)) {
            Ok(n) if !n.is_empty() && n != "/" => {
                names[count] = n;
                count += 1;
            }
            _ => {}
        }
    }
    let leaf_first = &names[..count];
    let parsed = crate::attribution::parse(leaf_first);
    let start = text.len();
    for (i, n) in leaf_first.iter().rev().enumerate() {
        if i > 0 {
            text.push('/');
        }
        text.push_str(n);
    }
    let cgroup = Str::range(start, text.len());
    let container_id = parsed.container_id.map_or(Str::EMPTY, |id| push(text, id));
    let pod_uid = parsed
        .pod_uid
        .as_deref()
        .map_or(Str::EMPTY, |uid| push(text, uid));
    Attribution {
        cgroup,
        container_id,
        runtime: parsed.runtime,
        pod_uid,
        qos_class: parsed.qos,
        ..Attribution::default()
    }
}

/// The executable's facts from the kernel's bits; a memfd is only that
/// (it also has no link and lives on shmem).
fn exec_facts(r: &ExecRecord) -> ExecFacts {
    let on = |bit: u32| r.exe_flags & bit != 0;
    let memfd = on(EXE_MEMFD);
    let path = if r.exe_path.depth == 0 && r.exe_path.tail[0] == 0 {
        String::new()
    } else {
        assemble_path(&r.exe_path)
    };
    ExecFacts {
        upper_layer: on(EXE_UPPER_LAYER),
        written_in_container: false,
        memfd,
        deleted: on(EXE_DELETED) && !memfd,
        tmpfs: on(EXE_TMPFS) && !memfd,
        path,
    }
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// Decodes one ring-buffer record: an event, or `None` for the names of a
/// cgroup, which go into `names` for the events that follow.
pub fn decode(bytes: &[u8], names: &mut CgroupNameCache) -> Result<Option<Decoded>, DecodeError> {
    if *read::<u32>(bytes)? == RecordKind::CgroupNames as u32 {
        let r = read::<CgroupNamesRecord>(bytes)?;
        names.insert(r.key, &r.names);
        return Ok(None);
    }
    decode_event(bytes, names).map(Some)
}

fn decode_event(bytes: &[u8], names: &mut CgroupNameCache) -> Result<Decoded, DecodeError> {
    let header = read::<RecordHeader>(bytes)?;
    match RecordKind::from_u32(header.kind) {
        Some(RecordKind::Exec) => {
            let r = read::<ExecRecord>(bytes)?;
            let name_len = (r.filename_len as usize).min(PATH_MAX);
            let argv_len = (r.argv_len as usize).min(ARGV_MAX);
            let exe = exec_facts(&r);
            let given = until_nul(&r.filename[..name_len]);
            // ECS wants an absolute executable: a relative execve path
            // (`./payload`) is replaced by the one the kernel resolved.
            let executable = if given.starts_with(b"/") || exe.path.is_empty() {
                given
            } else {
                exe.path.as_bytes()
            };
            let mut process = process_from(&r.header, names, executable, &r.argv[..argv_len]);
            process.args_truncated = r.argv_full_len as usize > argv_len;
            Ok(Decoded {
                ktime_ns: r.header.ktime_ns,
                kind: EventKind::Process(Box::new(ProcessEvent {
                    activity: ProcessActivity::Exec,
                    process,
                    exit: None,
                    exe,
                })),
            })
        }
        Some(RecordKind::Exit) => {
            let r = read::<ExitRecord>(bytes)?;
            Ok(Decoded {
                ktime_ns: r.header.ktime_ns,
                kind: EventKind::Process(Box::new(ProcessEvent {
                    activity: ProcessActivity::Exit,
                    process: process_from(&r.header, names, &[], &[]),
                    exit: Some(ExitStatus::from_wait_status(r.exit_code)),
                    exe: Default::default(),
                })),
            })
        }
        Some(RecordKind::Fork) => {
            let r = read::<ForkRecord>(bytes)?;
            // The child starts as a copy of the parent: same credentials,
            // comm, cgroup and namespaces; its image comes from the cache.
            let mut process = process_from(&r.header, names, &[], &[]);
            process.ppid = r.header.pid;
            process.parent.start_time_ns = r.header.start_time_ns;
            process.pid = r.child_pid;
            process.tid = r.child_pid;
            process.start_time_ns = r.child_start_time_ns;
            process.image_id = r.child_image_id;
            Ok(Decoded {
                ktime_ns: r.header.ktime_ns,
                kind: EventKind::Process(Box::new(ProcessEvent {
                    activity: ProcessActivity::Fork,
                    process,
                    exit: None,
                    exe: Default::default(),
                })),
            })
        }
        Some(RecordKind::Oom) => {
            let r = read::<OomRecord>(bytes)?;
            // The victim, not the task that ran out of memory: its own
            // cgroup; its image, parent and cgroup id come from the cache.
            let comm = until_nul(&r.victim_comm);
            let mut text = String::new();
            let name = push(&mut text, &String::from_utf8_lossy(comm));
            let attribution = attribute_names(&r.victim_cgroup_names, &mut text);
            let process = Process {
                pid: r.victim_pid,
                tid: r.victim_pid,
                uid: r.victim_uid,
                // Known when the victim is the task that ran out of memory.
                gid: if r.header.pid == r.victim_pid {
                    r.header.gid
                } else {
                    0
                },
                text,
                name,
                start_time_ns: r.victim_start_time_ns,
                attribution,
                ..Process::default()
            };
            Ok(Decoded {
                ktime_ns: r.header.ktime_ns,
                kind: EventKind::Process(Box::new(ProcessEvent {
                    activity: ProcessActivity::OomKill,
                    process,
                    exit: None,
                    exe: Default::default(),
                })),
            })
        }
        Some(RecordKind::Privilege) => {
            let r = read::<PrivRecord>(bytes)?;
            let op = PrivOp::from_u32(r.op).ok_or(DecodeError::UnknownKind(header.kind))?;
            let mut process = process_from(&r.header, names, &[], &[]);
            let text = &mut process.text;
            let mut string = |raw: &[u8]| {
                let s = until_nul(raw);
                if s.is_empty() {
                    Str::EMPTY
                } else {
                    push(text, &String::from_utf8_lossy(s))
                }
            };
            let id = |v: u64| v as u32;
            let (op, requested) = match op {
                PrivOp::Setuid => (PrivilegeOp::Setuid, [id(r.args[0]), u32::MAX, u32::MAX]),
                PrivOp::Setreuid => (
                    PrivilegeOp::Setreuid,
                    [id(r.args[0]), id(r.args[1]), u32::MAX],
                ),
                PrivOp::Setresuid => (
                    PrivilegeOp::Setresuid,
                    [id(r.args[0]), id(r.args[1]), id(r.args[2])],
                ),
                PrivOp::Setgid => (PrivilegeOp::Setgid, [id(r.args[0]), u32::MAX, u32::MAX]),
                PrivOp::Setregid => (
                    PrivilegeOp::Setregid,
                    [id(r.args[0]), id(r.args[1]), u32::MAX],
                ),
                PrivOp::Setresgid => (
                    PrivilegeOp::Setresgid,
                    [id(r.args[0]), id(r.args[1]), id(r.args[2])],
                ),
                PrivOp::Capset => (PrivilegeOp::Capset, [u32::MAX; 3]),
                PrivOp::PtraceAttach => (PrivilegeOp::PtraceAttach, [u32::MAX; 3]),
                PrivOp::InitModule => (PrivilegeOp::InitModule, [u32::MAX; 3]),
                PrivOp::FinitModule => (PrivilegeOp::FinitModule, [u32::MAX; 3]),
                PrivOp::BpfProgLoad => (PrivilegeOp::BpfProgLoad, [u32::MAX; 3]),
                PrivOp::Mount => (PrivilegeOp::Mount, [u32::MAX; 3]),
                PrivOp::Setns => (PrivilegeOp::Setns, [u32::MAX; 3]),
            };
            let object_name = match op {
                PrivilegeOp::FinitModule | PrivilegeOp::BpfProgLoad => string(&r.str1),
                _ => Str::EMPTY,
            };
            let mount = (op == PrivilegeOp::Mount).then(|| MountInfo {
                target: string(&r.str1),
                source: string(&r.str2),
                fstype: string(&r.str3),
                flags: r.args[3],
            });
            let creds = |c: &Creds| Credentials {
                uid: c.uid,
                euid: c.euid,
                suid: c.suid,
                fsuid: c.fsuid,
                gid: c.gid,
                egid: c.egid,
                sgid: c.sgid,
                fsgid: c.fsgid,
                cap_inheritable: c.cap_inheritable,
                cap_permitted: c.cap_permitted,
                cap_effective: c.cap_effective,
            };
            Ok(Decoded {
                ktime_ns: r.header.ktime_ns,
                kind: EventKind::Privilege(Box::new(PrivilegeEvent {
                    op,
                    result: r.ret,
                    old: creds(&r.old),
                    new: creds(&r.new),
                    requested,
                    target_pid: (op == PrivilegeOp::PtraceAttach).then_some(r.args[1] as u32),
                    object_name,
                    bpf_prog_type: (op == PrivilegeOp::BpfProgLoad).then_some(r.args[2] as u32),
                    mount,
                    namespace: (op == PrivilegeOp::Setns).then(|| NamespaceJoin {
                        nstype: r.args[1] as u32,
                        inode: r.args[2],
                        kind: NamespaceKind::of_nstype(r.args[1] as u32),
                        host: false,
                    }),
                    process,
                })),
            })
        }
        Some(RecordKind::Network) => {
            let r = read::<NetRecord>(bytes)?;
            let op = match NetOp::from_u32(r.op) {
                Some(NetOp::Connect) => NetworkOp::Connect,
                Some(NetOp::Accept) => NetworkOp::Accept,
                Some(NetOp::Bind) => NetworkOp::Bind,
                Some(NetOp::Listen) => NetworkOp::Listen,
                None => return Err(DecodeError::UnknownKind(header.kind)),
            };
            let v6 = r.family == AF_INET6;
            let local = socket_addr(v6, &r.local_addr, r.local_port);
            let mut remote = socket_addr(v6, &r.remote_addr, r.remote_port);
            // A failed connect leaves the socket without a peer (a refused
            // one keeps the address but resets the port): take the address
            // the caller asked for.
            if op == NetworkOp::Connect && (remote.ip().is_unspecified() || remote.port() == 0) {
                if let Some(asked) = user_sockaddr(&r.user_addr) {
                    remote = asked;
                }
            }
            let remote = matches!(op, NetworkOp::Connect | NetworkOp::Accept).then_some(remote);
            Ok(Decoded {
                ktime_ns: r.header.ktime_ns,
                kind: EventKind::Network(Box::new(NetworkEvent {
                    op,
                    process: process_from(&r.header, names, &[], &[]),
                    result: r.ret,
                    protocol: r.protocol,
                    local,
                    remote,
                })),
            })
        }
        Some(RecordKind::File) => {
            let r = read_prefix::<FileRecord>(bytes, FILE_RECORD_MIN)?;
            let op = match FileOp::from_u32(r.op) {
                Some(FileOp::Open) => FileOperation::Open,
                Some(FileOp::Unlink) => FileOperation::Unlink,
                Some(FileOp::Rename) => FileOperation::Rename,
                Some(FileOp::Chmod) => FileOperation::Chmod,
                Some(FileOp::Chown) => FileOperation::Chown,
                None => return Err(DecodeError::UnknownKind(header.kind)),
            };
            let mut process = process_from(&r.header, names, &[], &[]);
            let path = push(&mut process.text, &assemble_path(&r.path));
            let new_path = if op == FileOperation::Rename {
                push(&mut process.text, &assemble_path(&r.path2))
            } else {
                Str::EMPTY
            };
            let creates = r.flags & FileEvent::O_CREAT != 0;
            Ok(Decoded {
                ktime_ns: r.header.ktime_ns,
                kind: EventKind::File(Box::new(FileEvent {
                    op,
                    path,
                    new_path,
                    flags: if op == FileOperation::Open
                        || op == FileOperation::Unlink
                        || op == FileOperation::Rename
                    {
                        r.flags
                    } else {
                        0
                    },
                    mode: match op {
                        FileOperation::Chmod => Some(r.mode & 0o7777),
                        FileOperation::Open if creates => Some(r.mode & 0o7777),
                        _ => None,
                    },
                    uid: (op == FileOperation::Chown && r.uid != u32::MAX).then_some(r.uid),
                    gid: (op == FileOperation::Chown && r.gid != u32::MAX).then_some(r.gid),
                    sensitive: r.sensitive != 0,
                    process,
                })),
            })
        }
        Some(RecordKind::CgroupNames) | None => Err(DecodeError::UnknownKind(header.kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_bytes<T>(v: &T) -> &[u8] {
        // SAFETY: test-only view of a plain-data record.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
    }

    fn header(kind: RecordKind) -> RecordHeader {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"true");
        RecordHeader {
            kind: kind as u32,
            cpu: 0,
            ktime_ns: 5,
            pid: 10,
            tid: 11,
            ppid: 1,
            uid: 1000,
            gid: 100,
            cgroup_v1: 0,
            cgroup_id: 77,
            comm,
            start_time_ns: 9,
            parent_start_time_ns: 3,
            image_id: 0xffff_8880_1234_5000,
            pid_ns: 4026531836,
            mnt_ns: 4026531841,
            net_ns: 4026531840,
            _pad2: 0,
        }
    }

    /// The names of the cgroup every test header is in (id 77).
    fn pod_names() -> CgroupNames {
        cgroup(&[
            "abababababababababababababababababababababababababababababababab",
            "pod0f5a7c1e-1111-2222-3333-444455556666",
            "besteffort",
        ])
    }

    /// Decodes an event record as the reader does, after the names record
    /// of its cgroup.
    fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
        let mut names = CgroupNameCache::new(None);
        names.insert(77, &pod_names());
        super::decode(bytes, &mut names).map(|d| d.expect("an event record"))
    }

    fn cgroup(leaf_first: &[&str]) -> [[u8; CGROUP_NAME_MAX]; CGROUP_LEVELS] {
        let mut out = [[0u8; CGROUP_NAME_MAX]; CGROUP_LEVELS];
        for (slot, name) in out.iter_mut().zip(leaf_first) {
            slot[..name.len()].copy_from_slice(name.as_bytes());
        }
        out
    }

    fn exit_record() -> ExitRecord {
        ExitRecord {
            header: header(RecordKind::Exit),
            exit_code: 0,
            _pad: 0,
        }
    }

    /// The process event an exit record decodes to, with `names`.
    fn exit_of(r: &ExitRecord, names: &mut CgroupNameCache) -> Box<ProcessEvent> {
        match super::decode(as_bytes(r), names).unwrap() {
            Some(Decoded {
                kind: EventKind::Process(p),
                ..
            }) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn attributes_container_and_pod_from_the_cgroup_names() {
        let mut names = CgroupNameCache::new(None);
        let sent = CgroupNamesRecord {
            kind: RecordKind::CgroupNames as u32,
            _pad: 0,
            key: 77,
            names: pod_names(),
        };
        assert!(super::decode(as_bytes(&sent), &mut names)
            .unwrap()
            .is_none());
        let p = exit_of(&exit_record(), &mut names);
        let a = &p.process.attribution;
        let pr = &p.process;
        assert_eq!(
            pr.s(a.cgroup),
            "besteffort/pod0f5a7c1e-1111-2222-3333-444455556666/abababababababababababababababababababababababababababababababab"
        );
        assert_eq!(pr.s(a.container_id), "ab".repeat(32));
        assert_eq!(pr.s(a.pod_uid), "0f5a7c1e-1111-2222-3333-444455556666");
        assert_eq!(
            a.qos_class,
            Some(lumen_schemas::event::QosClass::BestEffort)
        );
        assert_eq!(
            (a.pid_ns, a.mnt_ns, a.net_ns),
            (4026531836, 4026531841, 4026531840)
        );
        assert_eq!(pr.start_time_ns, 9);
        assert_eq!(pr.parent.start_time_ns, 3, "the parent's identity");
        assert_eq!(pr.image_id, 0xffff_8880_1234_5000);
    }

    #[test]
    fn a_cgroup_whose_names_were_not_sent_keeps_its_id_and_namespaces() {
        let mut names = CgroupNameCache::new(None);
        // The same id on a v1 hierarchy is another cgroup.
        names.insert(77 | lumen_common::CGROUP_V1_KEY, &pod_names());
        let r = exit_record();
        let p = exit_of(&r, &mut names);
        let a = &p.process.attribution;
        assert_eq!(p.process.cgroup_id, 77);
        assert_eq!(p.process.s(a.cgroup), "");
        assert_eq!(p.process.s(a.container_id), "");
        assert_eq!(a.net_ns, 4026531840);
        assert_eq!(names.unknown, 1);
        let mut v1 = r;
        v1.header.cgroup_v1 = 1;
        let p = exit_of(&v1, &mut names);
        assert_eq!(
            p.process.s(p.process.attribution.container_id),
            "ab".repeat(32)
        );
    }

    #[test]
    fn decodes_exec_with_argv_and_truncation() {
        let mut r = ExecRecord {
            header: header(RecordKind::Exec),
            filename_len: 9,
            argv_len: 12,
            argv_full_len: 4000,
            exe_flags: 0,
            filename: [0; PATH_MAX],
            argv: [0; ARGV_MAX],
            exe_path: walked(&["usr", "bin", "true"]),
        };
        r.filename[..9].copy_from_slice(b"/bin/true");
        r.argv[..12].copy_from_slice(b"true\0-a\0b c\0");
        let d = decode(as_bytes(&r)).unwrap();
        let EventKind::Process(p) = d.kind else {
            panic!()
        };
        assert_eq!(p.process.executable(), "/bin/true");
        assert_eq!(p.process.args().collect::<Vec<_>>(), ["true", "-a", "b c"]);
        assert!(p.process.args_truncated);
        assert_eq!(
            (p.process.pid, p.process.ppid, p.process.name()),
            (10, 1, "true")
        );
        assert_eq!(p.exe.path, "/usr/bin/true", "resolved by the kernel");
        assert!(!p.exe.drift() && !p.exe.fileless());
    }

    /// A walked path of `components`, root first.
    fn walked(components: &[&str]) -> WalkedPath {
        let mut p = WalkedPath {
            depth: components.len() as u32,
            truncated: 0,
            components: [[0; lumen_common::COMPONENT_MAX]; PATH_COMPONENTS],
            tail: [0; lumen_common::PATH_TAIL_MAX],
        };
        for (slot, c) in p.components.iter_mut().zip(components.iter().rev()) {
            slot[..c.len()].copy_from_slice(c.as_bytes());
        }
        p
    }

    #[test]
    fn a_file_open_cut_after_its_components_decodes_like_the_whole_record() {
        let mut r = FileRecord {
            header: header(RecordKind::File),
            op: FileOp::Open as u32,
            flags: 1,
            mode: 0o600,
            uid: u32::MAX,
            gid: u32::MAX,
            sensitive: 0,
            ret: 3,
            path: walked(&["tmp", "storm-w"]),
            path2: walked(&[]),
        };
        r.path.tail[0] = 0;
        let whole = as_bytes(&r);
        // What the kernel sends for an open two components deep.
        let cut = &whole[..FILE_RECORD_MIN + 2 * lumen_common::COMPONENT_MAX];
        let paths = |bytes: &[u8]| match decode(bytes).unwrap().kind {
            EventKind::File(f) => (
                f.path.get(&f.process.text).to_owned(),
                f.flags,
                f.process.pid,
            ),
            other => panic!("{other:?}"),
        };
        assert_eq!(paths(cut), ("/tmp/storm-w".to_owned(), 1, 10));
        assert_eq!(paths(cut), paths(whole));
        // A record that is not 8-byte aligned is copied, not borrowed.
        let mut shifted = vec![0u8; whole.len() + 1];
        shifted[1..].copy_from_slice(whole);
        assert_ne!(shifted[1..].as_ptr().align_offset(8), 0);
        assert_eq!(paths(&shifted[1..]), paths(whole));
        // Shorter than the fixed part: refused, naming the lengths.
        let e = decode(&whole[..FILE_RECORD_MIN - 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("{} bytes", FILE_RECORD_MIN - 1)), "{e}");
    }

    #[test]
    fn exec_facts_say_drift_and_fileless_and_a_relative_path_is_made_absolute() {
        let record = |flags: u32, given: &[u8], path: &[&str]| {
            let mut r = ExecRecord {
                header: header(RecordKind::Exec),
                filename_len: given.len() as u32,
                argv_len: 0,
                argv_full_len: 0,
                exe_flags: flags,
                filename: [0; PATH_MAX],
                argv: [0; ARGV_MAX],
                exe_path: walked(path),
            };
            r.filename[..given.len()].copy_from_slice(given);
            let EventKind::Process(p) = decode(as_bytes(&r)).unwrap().kind else {
                panic!()
            };
            p
        };
        let dropped = record(EXE_UPPER_LAYER, b"./payload", &["tmp", "payload"]);
        assert_eq!(dropped.process.executable(), "/tmp/payload");
        assert!(dropped.exe.drift() && !dropped.exe.fileless());
        assert_eq!(
            dropped.exe.drift_reasons().collect::<Vec<_>>(),
            ["overlay_upper_layer"]
        );
        // A memfd also has no link and lives on shmem: it is only a memfd.
        let memfd = record(
            EXE_MEMFD | EXE_DELETED | EXE_TMPFS,
            b"/proc/self/fd/3",
            &["memfd:x (deleted)"],
        );
        assert_eq!(memfd.exe.fileless_reasons().collect::<Vec<_>>(), ["memfd"]);
        assert_eq!(memfd.process.executable(), "/proc/self/fd/3");
        let shm = record(EXE_TMPFS, b"/dev/shm/x", &["dev", "shm", "x"]);
        assert_eq!(shm.exe.fileless_reasons().collect::<Vec<_>>(), ["tmpfs"]);
        let gone = record(EXE_DELETED, b"/tmp/x", &["tmp", "x (deleted)"]);
        assert_eq!(gone.exe.fileless_reasons().collect::<Vec<_>>(), ["deleted"]);
    }

    #[test]
    fn a_fork_record_describes_the_child_with_the_caller_as_parent() {
        let r = ForkRecord {
            header: header(RecordKind::Fork),
            child_pid: 77,
            _pad: 0,
            child_start_time_ns: 123,
            child_image_id: 456,
        };
        let EventKind::Process(p) = decode(as_bytes(&r)).unwrap().kind else {
            panic!()
        };
        assert_eq!(p.activity, ProcessActivity::Fork);
        assert_eq!((p.process.pid, p.process.tid, p.process.ppid), (77, 77, 10));
        assert_eq!(p.process.start_time_ns, 123);
        assert_eq!(p.process.image_id, 456, "the child's own mm");
        assert_eq!(
            p.process.parent.start_time_ns, 9,
            "the caller is the parent: its start identifies it"
        );
        assert_eq!(p.process.name(), "true");
    }

    fn net_record(op: NetOp, family: u16, ret: i64) -> NetRecord {
        NetRecord {
            header: header(RecordKind::Network),
            op: op as u32,
            family,
            protocol: 6,
            sock_type: 1,
            local_port: 40000,
            remote_port: 443,
            _pad: 0,
            ret,
            local_addr: [0; 16],
            remote_addr: [0; 16],
            user_addr: [0; SOCKADDR_MAX],
            _pad2: 0,
        }
    }

    #[test]
    fn network_records_give_5_tuples_and_refused_connects_use_the_asked_address() {
        let mut r = net_record(NetOp::Accept, AF_INET6, 7);
        r.local_addr = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        r.remote_addr = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        let EventKind::Network(n) = decode(as_bytes(&r)).unwrap().kind else {
            panic!()
        };
        assert_eq!(n.op, NetworkOp::Accept);
        assert_eq!(n.local, "[fd00::1]:40000".parse().unwrap());
        assert_eq!(n.remote, Some("[fd00::2]:443".parse().unwrap()));

        // Refused: the socket kept 127.0.0.1 but port 0; the caller asked for :1.
        let mut r = net_record(NetOp::Connect, AF_INET, -111);
        r.remote_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        r.remote_port = 0;
        r.user_addr[..2].copy_from_slice(&AF_INET.to_ne_bytes());
        r.user_addr[2..4].copy_from_slice(&1u16.to_be_bytes());
        r.user_addr[4..8].copy_from_slice(&[127, 0, 0, 1]);
        let EventKind::Network(n) = decode(as_bytes(&r)).unwrap().kind else {
            panic!()
        };
        assert_eq!(n.remote, Some("127.0.0.1:1".parse().unwrap()));
        assert!(!n.succeeded());

        let r = net_record(NetOp::Listen, AF_INET, 0);
        let EventKind::Network(n) = decode(as_bytes(&r)).unwrap().kind else {
            panic!()
        };
        assert_eq!(n.remote, None, "listen has no peer");
    }

    #[test]
    fn walked_paths_join_components_and_tail() {
        let mut p = WalkedPath {
            depth: 2,
            truncated: 0,
            components: [[0; lumen_common::COMPONENT_MAX]; PATH_COMPONENTS],
            tail: [0; lumen_common::PATH_TAIL_MAX],
        };
        p.components[0][..3].copy_from_slice(b"dir");
        p.components[1][..3].copy_from_slice(b"tmp");
        p.tail[..9].copy_from_slice(b"../x.txt\0");
        assert_eq!(assemble_path(&p), "/tmp/x.txt");
        p.tail[..11].copy_from_slice(b"/etc/shadow");
        assert_eq!(
            assemble_path(&p),
            "/etc/shadow",
            "an absolute tail stands alone"
        );
        p.tail = [0; lumen_common::PATH_TAIL_MAX];
        p.truncated = 1;
        assert_eq!(assemble_path(&p), "/.../tmp/dir");
    }

    #[test]
    fn paths_are_normalized_without_losing_the_root() {
        assert_eq!(normalize_path("/tmp/dir/../x//./y"), "/tmp/x/y");
        assert_eq!(normalize_path("/../.."), "/");
        assert_eq!(normalize_path("/etc/shadow"), "/etc/shadow");
    }

    #[test]
    fn decodes_exit_status_and_rejects_short_or_unknown_records() {
        let r = ExitRecord {
            header: header(RecordKind::Exit),
            exit_code: 3 << 8,
            _pad: 0,
        };
        let EventKind::Process(p) = decode(as_bytes(&r)).unwrap().kind else {
            panic!()
        };
        assert_eq!(
            p.exit,
            Some(ExitStatus {
                code: 3,
                signal: None
            })
        );
        assert!(matches!(
            decode(&as_bytes(&r)[..10]),
            Err(DecodeError::Short { .. })
        ));
        let mut h = header(RecordKind::Exit);
        h.kind = 99;
        assert_eq!(
            decode(as_bytes(&h)).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
    }
}
