//! Fixed-size `#[repr(C)]` records that Lumen's kernel programs write into the
//! BPF ring buffer and that user space decodes.
//!
//! Both sides compile this crate: the kernel programs (`no_std`, `bpfel`) and
//! the collector (with the `user` feature, which marks the records as
//! `aya::Pod`). Every record starts with a `u32` [`RecordKind`]: event
//! records with a [`RecordHeader`] (whose first field it is), the names of
//! a cgroup with a [`CgroupNamesRecord`].
#![no_std]

/// Longest executable path the exec record carries (bytes, NUL-terminated).
pub const PATH_MAX: usize = 256;
/// Longest argv the exec record carries: the NUL-separated argument area of
/// the new process, cut at this many bytes (power of two: the verifier needs
/// a mask to bound the copy).
pub const ARGV_MAX: usize = 1024;
/// Length of the kernel's `comm` (task name).
pub const COMM_LEN: usize = 16;
/// Cgroup path components a record carries, leaf first: the container's
/// cgroup, its pod's, and the pod's QoS class (kubelet layout).
pub const CGROUP_LEVELS: usize = 3;
/// Longest cgroup component carried (`cri-containerd-<64 hex>.scope` is 85).
pub const CGROUP_NAME_MAX: usize = 128;
/// A cgroup's path, last components, leaf first, each NUL-terminated.
pub type CgroupNames = [[u8; CGROUP_NAME_MAX]; CGROUP_LEVELS];
/// Marks a v1 hierarchy's cgroup id in cgroup-names keys (kernfs ids are
/// an inode number and a generation, far from the top bit): each hierarchy
/// numbers its own cgroups.
pub const CGROUP_V1_KEY: u64 = 1 << 63;

/// Kinds of records, the first field of every record.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A successful execve/execveat: [`ExecRecord`].
    Exec = 1,
    /// The exit of a thread-group leader (a process): [`ExitRecord`].
    Exit = 2,
    /// A new process (not a thread) from fork/clone: [`ForkRecord`].
    Fork = 3,
    /// A privilege-relevant syscall, successful or not: [`PrivRecord`].
    Privilege = 4,
    /// An IPv4/IPv6 socket connect, accept, bind or listen: [`NetRecord`].
    Network = 5,
    /// A file opened for writing or a sensitive file read, unlinked,
    /// renamed, chmod'ed or chown'ed: [`FileRecord`].
    File = 6,
    /// The OOM killer chose a victim: [`OomRecord`].
    Oom = 7,
    /// A cgroup's names, sent once: [`CgroupNamesRecord`].
    CgroupNames = 8,
}

impl RecordKind {
    /// The kind for a raw header value, if it is one this build knows.
    pub fn from_u32(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Exec),
            2 => Some(Self::Exit),
            3 => Some(Self::Fork),
            4 => Some(Self::Privilege),
            5 => Some(Self::Network),
            6 => Some(Self::File),
            7 => Some(Self::Oom),
            8 => Some(Self::CgroupNames),
            _ => None,
        }
    }
}

/// Fields every record carries, filled from BPF helpers in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RecordHeader {
    /// A [`RecordKind`] as `u32`.
    pub kind: u32,
    /// CPU the record was produced on.
    pub cpu: u32,
    /// `bpf_ktime_get_boot_ns()`: nanoseconds since boot, suspend included.
    pub ktime_ns: u64,
    /// Thread-group id (the process id user space sees).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread-group id of the real parent.
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// 1 when `cgroup_id` is a v1 hierarchy's (the names' key is then
    /// `cgroup_id | CGROUP_V1_KEY`), 0 when the unified hierarchy's.
    pub cgroup_v1: u32,
    /// Id of the cgroup the task is attributed to: on the unified hierarchy
    /// (`bpf_get_current_cgroup_id`), or on the chosen v1 controller's.
    pub cgroup_id: u64,
    /// Task name, NUL-padded.
    pub comm: [u8; COMM_LEN],
    /// The process's start: its group leader's `task_struct.start_boottime`
    /// (ns since boot, suspend included, the clock `/proc/<pid>/stat` counts
    /// in ticks). With `pid`, the identity of a process across pid reuse;
    /// the same for every thread of the process.
    pub start_time_ns: u64,
    /// The parent process's start, likewise: with `ppid`, its identity.
    pub parent_start_time_ns: u64,
    /// The address of the task's `mm_struct`: a new one at every exec, so
    /// an image the cache holds for (pid, start) is known stale when this
    /// differs. 0 for kernel threads and at exit. Never leaves Lumen.
    pub image_id: u64,
    /// Namespace inode numbers (`pid` is the namespace of new children).
    pub pid_ns: u32,
    pub mnt_ns: u32,
    pub net_ns: u32,
    pub _pad2: u32,
}

impl RecordHeader {
    /// The key of the task's cgroup names ([`CgroupNamesRecord::key`]).
    #[inline(always)]
    pub fn cgroup_key(&self) -> u64 {
        if self.cgroup_v1 != 0 {
            self.cgroup_id | CGROUP_V1_KEY
        } else {
            self.cgroup_id
        }
    }
}

/// The names of a cgroup, read in the kernel at the first event of a task
/// in it (or the first after the kernel's cache let it go) and sent before
/// that event: event records carry only the cgroup's id, so a container
/// that is already gone is still attributed, and a record is 384 bytes
/// shorter. The kernel keeps the names in its `CGROUP_NAMES` map too, by
/// the same key, for a reader that missed this record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CgroupNamesRecord {
    /// [`RecordKind::CgroupNames`] as `u32`.
    pub kind: u32,
    pub _pad: u32,
    /// [`RecordHeader::cgroup_key`] of the events in this cgroup.
    pub key: u64,
    pub names: CgroupNames,
}

/// A process image replaced by execve/execveat (sched:sched_process_exec).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub header: RecordHeader,
    /// Bytes of `filename` that are valid (without the NUL).
    pub filename_len: u32,
    /// Bytes of `argv` that are valid.
    pub argv_len: u32,
    /// Length of the whole argument area in the process; larger than
    /// `argv_len` when the record had to cut it.
    pub argv_full_len: u32,
    /// What the executable file is: `EXE_*` bits.
    pub exe_flags: u32,
    /// The path execve was given, as the kernel resolved it.
    pub filename: [u8; PATH_MAX],
    /// NUL-separated arguments, argv[0] first.
    pub argv: [u8; ARGV_MAX],
    /// The executable (`mm->exe_file`), walked up to the task's root:
    /// absolute in the process's view, symlinks resolved.
    pub exe_path: WalkedPath,
}

/// The executable is on an overlayfs upper layer: created or copied up
/// (modified) after the container's root was mounted.
pub const EXE_UPPER_LAYER: u32 = 1;
/// The executable is a memfd (`memfd_create`): it never was on a disk.
pub const EXE_MEMFD: u32 = 2;
/// The executable has no link left (deleted after it was started, or never
/// linked).
pub const EXE_DELETED: u32 = 4;
/// The executable lives on tmpfs or ramfs (`/dev/shm`, a tmpfs `/tmp`).
pub const EXE_TMPFS: u32 = 8;

/// A process that exited: its last thread ended (sched:sched_process_exit
/// with the group dead). The header's `tid` is that last thread.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub header: RecordHeader,
    /// `task_struct.exit_code`: the wait(2) status (code << 8 | signal).
    pub exit_code: u32,
    pub _pad: u32,
}

/// A process created by fork/clone (sched:sched_process_fork). The header
/// describes the parent (the task that called fork).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    pub header: RecordHeader,
    /// The child's pid (its thread-group id).
    pub child_pid: u32,
    pub _pad: u32,
    /// The child's `task_struct.start_boottime`.
    pub child_start_time_ns: u64,
    /// The child's `mm_struct` address (its own copy of the parent's).
    pub child_image_id: u64,
}

/// The OOM killer chose a victim (`oom:mark_victim`). The header is the
/// task that ran out of memory (usually in the same memory cgroup); the
/// victim is described here, its cgroup read from its own task.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OomRecord {
    pub header: RecordHeader,
    /// The victim's pid (thread-group id) and uid.
    pub victim_pid: u32,
    pub victim_uid: u32,
    /// The victim's `start_boottime`: with its pid, its identity.
    pub victim_start_time_ns: u64,
    /// The victim's task name.
    pub victim_comm: [u8; COMM_LEN],
    /// The victim's cgroup path, last components, leaf first.
    pub victim_cgroup_names: CgroupNames,
}

/// Privilege-relevant syscalls the kernel programs report.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrivOp {
    Setuid = 1,
    Setreuid = 2,
    Setresuid = 3,
    Setgid = 4,
    Setregid = 5,
    Setresgid = 6,
    Capset = 7,
    /// `ptrace(PTRACE_ATTACH | PTRACE_SEIZE, pid)`.
    PtraceAttach = 8,
    InitModule = 9,
    FinitModule = 10,
    /// `bpf(BPF_PROG_LOAD, …)`.
    BpfProgLoad = 11,
    Mount = 12,
    /// `setns(fd, nstype)`.
    Setns = 13,
}

impl PrivOp {
    pub const ALL: [PrivOp; 13] = [
        PrivOp::Setuid,
        PrivOp::Setreuid,
        PrivOp::Setresuid,
        PrivOp::Setgid,
        PrivOp::Setregid,
        PrivOp::Setresgid,
        PrivOp::Capset,
        PrivOp::PtraceAttach,
        PrivOp::InitModule,
        PrivOp::FinitModule,
        PrivOp::BpfProgLoad,
        PrivOp::Mount,
        PrivOp::Setns,
    ];

    pub fn from_u32(raw: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|op| *op as u32 == raw)
    }
}

/// Socket syscalls the kernel programs report (in `Pending.op`, after the
/// [`PrivOp`] values).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetOp {
    Connect = 101,
    Accept = 102,
    Bind = 103,
    Listen = 104,
}

impl NetOp {
    pub fn from_u32(raw: u32) -> Option<Self> {
        [NetOp::Connect, NetOp::Accept, NetOp::Bind, NetOp::Listen]
            .into_iter()
            .find(|op| *op as u32 == raw)
    }
}

/// File syscalls the kernel programs report (in `Pending.op`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp {
    Open = 201,
    Unlink = 202,
    Rename = 203,
    Chmod = 204,
    Chown = 205,
}

impl FileOp {
    pub fn from_u32(raw: u32) -> Option<Self> {
        [
            FileOp::Open,
            FileOp::Unlink,
            FileOp::Rename,
            FileOp::Chmod,
            FileOp::Chown,
        ]
        .into_iter()
        .find(|op| *op as u32 == raw)
    }
}

/// Path components a walked path keeps (deeper paths keep their last
/// ones and are marked truncated) and the longest component kept.
pub const PATH_COMPONENTS: usize = 16;
pub const COMPONENT_MAX: usize = 64;
/// Longest path string taken from the caller.
pub const PATH_TAIL_MAX: usize = 256;

/// One path: directory components walked in the kernel (leaf first, as
/// fixed slots the verifier can check cheaply) and the name the caller
/// passed. User space joins them: `/` + components reversed + `/` + tail;
/// an absolute tail stands alone.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WalkedPath {
    /// Components in `components`, leaf first.
    pub depth: u32,
    /// Non-zero when the walk stopped before the root (path too deep).
    pub truncated: u32,
    pub components: [[u8; COMPONENT_MAX]; PATH_COMPONENTS],
    /// The caller's path string (absolute, or relative to the walked dir).
    pub tail: [u8; PATH_TAIL_MAX],
}

/// A file operation, its path(s) resolved in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileRecord {
    pub header: RecordHeader,
    /// A [`FileOp`] as `u32`.
    pub op: u32,
    /// open: `O_*` flags; unlink: `AT_REMOVEDIR`; rename: `RENAME_*`.
    pub flags: u32,
    /// chmod: the new mode; open: the creation mode.
    pub mode: u32,
    /// chown: the new owner and group (`u32::MAX`: unchanged).
    pub uid: u32,
    pub gid: u32,
    /// Non-zero when the path matched a sensitive prefix.
    pub sensitive: u32,
    pub ret: i64,
    pub path: WalkedPath,
    /// rename: the new path.
    pub path2: WalkedPath,
}

/// Comms a [`ProcFilter`] can exclude.
pub const EXCLUDED_COMMS: usize = 8;

/// Which tasks the programs report at all (the `FILTER` map, index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcFilter {
    /// Non-zero: only tasks outside the host's mount namespace (containers).
    pub containers_only: u32,
    /// The host's mount namespace inode (`/proc/1/ns/mnt`).
    pub host_mnt_ns: u32,
    /// Entries of `comms` in use.
    pub comm_count: u32,
    pub _pad: u32,
    /// Task names whose process, file and network events are dropped.
    pub comms: [[u8; COMM_LEN]; EXCLUDED_COMMS],
    /// Bit `b` set: some path prefix in `PREFIXES` has `b` as its second
    /// byte (all bits for a prefix shorter than that). A path whose second
    /// byte is not set here matches no prefix: the trie is not searched.
    pub prefix_second_bytes: [u64; 4],
}

impl ProcFilter {
    /// The [`ProcFilter::prefix_second_bytes`] of `prefixes`.
    pub fn second_bytes<'a>(prefixes: impl IntoIterator<Item = &'a [u8]>) -> [u64; 4] {
        let mut bits = [0u64; 4];
        for p in prefixes {
            match p.get(1) {
                Some(&b) => bits[usize::from(b >> 6)] |= 1 << (b & 63),
                None => return [u64::MAX; 4],
            }
        }
        bits
    }

    /// Whether a path whose second byte is `b` may match a prefix.
    #[inline(always)]
    pub fn may_match(&self, b: u8) -> bool {
        self.prefix_second_bytes[usize::from(b >> 6)] >> (b & 63) & 1 != 0
    }
}

/// How the programs wake the reader (the `RING` map, index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RingConfig {
    /// 0: wake the reader for every record it has not caught up with (the
    /// kernel's default). Otherwise: no wakeup while fewer than this many
    /// bytes wait (the reader drains on a timer), a forced one from then on.
    pub wakeup_bytes: u32,
    pub _pad: u32,
}

/// A restart's handoff (the `HANDOFF` map, index 0): a stopping Lumen
/// leaves its programs attached and its maps pinned, and a Lumen started
/// with the same programs and settings adopts them, ring buffer and all.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Handoff {
    /// 0 while a reader runs. Otherwise (`bpf_ktime_get_ns`) when the
    /// programs stop recording unless a successor has adopted them.
    pub deadline_ns: u64,
    /// When the predecessor stopped reading (`bpf_ktime_get_ns` clock).
    pub stopped_ns: u64,
    /// SHA-256 of the programs and of every setting they were given.
    pub identity: [u8; 32],
    /// The drop counters the predecessor had already reported.
    pub drops_reported: [u64; drop_index::COUNT as usize],
}

/// Path prefixes for in-kernel filtering of file events: the `PREFIXES`
/// longest-prefix-match trie holds at most this many.
pub const PREFIX_SLOTS: u32 = 64;
pub const PREFIX_MAX: usize = 64;

/// A key of the `PREFIXES` trie (the layout of an LPM trie key): the first
/// `bits` of `bytes` are matched. Keys stored hold a prefix; a lookup holds
/// the caller's path (its first `PREFIX_MAX` bytes) with all bits.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PrefixKey {
    pub bits: u32,
    pub bytes: [u8; PREFIX_MAX],
}

/// The value of a `PREFIXES` entry: what a path under that prefix is,
/// every configured prefix of it counted (user space combines them, as the
/// trie returns only the longest match).
pub const PREFIX_FLAG_EXCLUDED: u32 = 1;
pub const PREFIX_FLAG_SENSITIVE: u32 = 2;

/// Reads of paths under this prefix are reported.
pub const PREFIX_SENSITIVE: u32 = 1;
/// Nothing under this prefix is reported (e.g. `/proc/`, `/dev/`).
pub const PREFIX_EXCLUDED: u32 = 2;
/// Reported even under an excluded prefix (`/dev/shm/` under `/dev/`).
pub const PREFIX_INCLUDED: u32 = 3;

/// Length of a `struct sockaddr_in6` (the largest address Lumen reads).
pub const SOCKADDR_MAX: usize = 28;

/// A socket syscall on an IPv4 or IPv6 socket, with its 5-tuple as the
/// kernel's `struct sock` holds it after the call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetRecord {
    pub header: RecordHeader,
    /// A [`NetOp`] as `u32`.
    pub op: u32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// `IPPROTO_TCP` (6), `IPPROTO_UDP` (17), …
    pub protocol: u16,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2), …
    pub sock_type: u16,
    /// Local port (host order) and remote port (host order).
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u16,
    /// The syscall's return value (accept: the new fd; `-errno` on failure).
    pub ret: i64,
    /// Addresses: IPv4 in the first 4 bytes, or IPv6.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// connect/bind: the address the caller passed (a `sockaddr_in[6]`),
    /// for when the socket holds none (a failed connect).
    pub user_addr: [u8; SOCKADDR_MAX],
    pub _pad2: u32,
}

/// A task's credentials (`struct cred`), before or after a syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
}

/// Longest string argument a privilege record carries (mount paths).
pub const PRIV_STR_MAX: usize = 256;

/// A privilege-relevant syscall and its outcome.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PrivRecord {
    pub header: RecordHeader,
    /// A [`PrivOp`] as `u32`.
    pub op: u32,
    pub _pad: u32,
    /// The syscall's return value (negative errno on failure).
    pub ret: i64,
    /// The syscall's first four arguments (ids, target pid, mount flags, …).
    pub args: [u64; 4],
    /// Credentials before the call and after it.
    pub old: Creds,
    pub new: Creds,
    /// mount: target directory; finit_module: module file name;
    /// bpf: program name. (setns: `args` are the fd, the nstype asked for,
    /// and the namespace the fd names — its inode number, 0 when the fd is
    /// no namespace file, e.g. a pidfd.)
    pub str1: [u8; PRIV_STR_MAX],
    /// mount: source device.
    pub str2: [u8; PRIV_STR_MAX],
    /// mount: filesystem type.
    pub str3: [u8; 32],
}

/// A syscall's arguments and the caller's credentials at entry, kept until
/// its exit (the `PENDING` map).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    pub op: u32,
    pub _pad: u32,
    pub args: [u64; 6],
    pub old: Creds,
}

/// Offsets into kernel structures, read from the running kernel's BTF by user
/// space and set as the programs' `.rodata` before they load, so the
/// programs work on any kernel layout (CO-RE done in user space) and the
/// verifier knows each offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelOffsets {
    /// `task_struct.real_parent` (pointer).
    pub task_real_parent: u32,
    /// `task_struct.tgid`.
    pub task_tgid: u32,
    /// `task_struct.pid`.
    pub task_pid: u32,
    /// `task_struct.mm` (pointer).
    pub task_mm: u32,
    /// `task_struct.exit_code`.
    pub task_exit_code: u32,
    /// `mm_struct.arg_start`.
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`.
    pub mm_arg_end: u32,
    /// `task_struct.start_boottime` (`real_start_time` before Linux 5.5).
    pub task_start_time: u32,
    /// `task_struct.cgroups` (pointer to `css_set`).
    pub task_cgroups: u32,
    /// `css_set.dfl_cgrp` (pointer to the default-hierarchy `cgroup`).
    pub css_set_dfl_cgrp: u32,
    /// `cgroup.kn` (pointer to its `kernfs_node`).
    pub cgroup_kn: u32,
    /// `kernfs_node.name` (pointer to a C string).
    pub kernfs_name: u32,
    /// `kernfs_node.parent` (`__parent` since Linux 6.15).
    pub kernfs_parent: u32,
    /// `task_struct.nsproxy`.
    pub task_nsproxy: u32,
    /// `nsproxy.pid_ns_for_children`, `.mnt_ns`, `.net_ns`.
    pub nsproxy_pid_ns: u32,
    pub nsproxy_mnt_ns: u32,
    pub nsproxy_net_ns: u32,
    /// `pid_namespace.ns.inum`, `mnt_namespace.ns.inum`, `net.ns.inum`.
    pub pid_ns_inum: u32,
    pub mnt_ns_inum: u32,
    pub net_ns_inum: u32,
    /// `task_struct.cred` and the `struct cred` members.
    pub task_cred: u32,
    pub cred_uid: u32,
    pub cred_euid: u32,
    pub cred_suid: u32,
    pub cred_fsuid: u32,
    pub cred_gid: u32,
    pub cred_egid: u32,
    pub cred_sgid: u32,
    pub cred_fsgid: u32,
    pub cred_cap_inheritable: u32,
    pub cred_cap_permitted: u32,
    pub cred_cap_effective: u32,
    /// fd → file: `task_struct.files`, `files_struct.fdt`, `fdtable.fd`,
    /// `fdtable.max_fds`.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub fdt_max_fds: u32,
    /// `file.f_path.dentry`, `dentry.d_name.name`.
    pub file_dentry: u32,
    pub dentry_name: u32,
    /// fd → socket → sock: `file.private_data`, `socket.sk`, `socket.file`.
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub socket_file: u32,
    /// Paths: `task_struct.fs`, `fs_struct.pwd`, `fs_struct.root`,
    /// `file.f_path`, `path.mnt`, `path.dentry`, `dentry.d_parent`,
    /// `mount.mnt` (the embedded vfsmount), `mount.mnt_parent`,
    /// `mount.mnt_mountpoint`, `vfsmount.mnt_root`.
    pub task_fs: u32,
    pub fs_pwd: u32,
    pub fs_root: u32,
    pub file_f_path: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_parent: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub vfsmount_root: u32,
    /// `sock.__sk_common.*`, `sock.sk_protocol`, `sock.sk_type`.
    pub skc_family: u32,
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_num: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    pub sk_protocol: u32,
    pub sk_type: u32,
    /// `task_struct.group_leader` (pointer), `task_struct.signal`,
    /// `signal_struct.live` (threads of the group still running).
    pub task_group_leader: u32,
    pub task_signal: u32,
    pub signal_live: u32,
    /// The executable's facts: `mm_struct.exe_file`, `file.f_inode`,
    /// `inode.i_sb`, `inode.i_nlink`, `super_block.s_magic`.
    pub mm_exe_file: u32,
    pub file_inode: u32,
    pub inode_sb: u32,
    pub inode_nlink: u32,
    pub sb_magic: u32,
    /// `ovl_inode.__upperdentry` counted from its `vfs_inode` (an overlay
    /// inode's pointer); 0 when the kernel's BTF has no `ovl_inode`
    /// (overlayfs built as a module), and the upper-layer fact is unknown.
    pub ovl_upper_dentry: u32,
    /// Offset of `group_dead` in the `sched_process_exit` tracepoint's
    /// record (Linux 6.16+); 0 where the tracepoint has no such field, and
    /// the exit program reads `signal->live` instead.
    pub exit_group_dead: u32,
    /// Non-zero once user space has filled the offsets.
    pub ready: u32,
    /// `inode.i_ino`: a namespace file's inode is the namespace's number.
    pub inode_ino: u32,
    /// `task_struct.comm`.
    pub task_comm: u32,
    /// cgroup v1 attribution: `css_set.subsys` (the array of
    /// `cgroup_subsys_state` pointers), `cgroup_subsys_state.cgroup`,
    /// `kernfs_node.id` (a cgroup's id).
    pub css_set_subsys: u32,
    pub css_cgroup: u32,
    pub kernfs_id: u32,
    /// The v1 controller read (its `cgroup_subsys_id`), or
    /// [`CGROUP_SUBSYS_MAX`] or more for none.
    pub cgroup_v1_ssid: u32,
    /// [`CGROUP_V1_FALLBACK`] or [`CGROUP_V1_ALWAYS`].
    pub cgroup_v1_mode: u32,
    /// Where a syscall's first four arguments lie in the `pt_regs` saved at
    /// syscall entry (x86-64: `di`, `si`, `dx`, `r10`; arm64: `orig_x0`,
    /// `regs[1..4]`): an exit program reads its call's arguments there.
    pub regs_args: [u32; 4],
    /// The kernel BTF ids of `struct file` and `struct mount` when the
    /// programs may type pointers with the `bpf_rdonly_cast` kfunc (Linux
    /// 6.2; the marker calls are linked to it), 0 when not.
    pub btf_file: u32,
    pub btf_mount: u32,
    pub _pad: u32,
}

impl KernelOffsets {
    /// Every offset 0, not ready: what the object file holds until user
    /// space sets the programs' copy.
    pub const ZERO: Self = {
        // SAFETY: every field is a u32, for which zero is valid.
        unsafe { core::mem::zeroed() }
    };
}

/// The helper number the kernel programs call for the `bpf_rdonly_cast`
/// kfunc. No kernel has such a helper: user space rewrites each such call
/// into the kfunc's call (or, where the kernel lacks it, into `r0 = 0` on
/// a path the verifier knows dead) before the programs load.
pub const KFUNC_RDONLY_CAST: u32 = 0x4c4d_0001;

/// More controllers than any kernel has (`CGROUP_SUBSYS_COUNT` is 14 in
/// Linux 6.x): a `cgroup_v1_ssid` at or over it means "no v1 controller".
pub const CGROUP_SUBSYS_MAX: u32 = 32;
/// Read the v1 controller's cgroup only when the unified one is the root.
pub const CGROUP_V1_FALLBACK: u32 = 0;
/// Read the v1 controller's cgroup always.
pub const CGROUP_V1_ALWAYS: u32 = 1;

/// Indexes into the per-CPU `DROPS` counter array.
pub mod drop_index {
    /// An exec record could not be reserved in the ring buffer.
    pub const EXEC: u32 = 0;
    /// An exit record could not be reserved in the ring buffer.
    pub const EXIT: u32 = 1;
    /// A fork record could not be reserved in the ring buffer.
    pub const FORK: u32 = 2;
    /// A privilege record could not be reserved in the ring buffer.
    pub const PRIVILEGE: u32 = 3;
    /// The pending-syscall map was full at a syscall's entry.
    pub const PENDING_FULL: u32 = 4;
    /// A network record could not be reserved in the ring buffer.
    pub const NETWORK: u32 = 5;
    /// A file record could not be reserved in the ring buffer.
    pub const FILE: u32 = 6;
    /// Number of counters.
    pub const COUNT: u32 = 7;

    /// Names of the counters, by index.
    pub const NAMES: [&str; COUNT as usize] = [
        "exec",
        "exit",
        "fork",
        "privilege",
        "pending_full",
        "network",
        "file",
    ];
}

/// Run-queue wait histogram buckets: bucket `i` counts waits shorter
/// than 2^i µs (bucket 0: under 1 µs); the last holds every longer wait.
pub const SCHED_BUCKETS: usize = 24;

/// How the scheduler programs count (`SCHED_CONFIG`, index 0, written by
/// user space before they attach).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedConfig {
    /// A wait at least this long is a delay (0: none is).
    pub delay_ns: u64,
}

/// One cgroup's scheduler facts on one CPU (`SCHED_CGROUPS`, keyed by the
/// cgroup id), lifetime counters: its tasks' waits runnable before they
/// got the CPU (from wakeup or preemption to running), those of them that
/// were delays ([`SchedConfig::delay_ns`] or longer), and how often its
/// tasks were preempted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedStats {
    pub waits: u64,
    pub wait_ns: u64,
    pub preempted: u64,
    pub delays: u64,
    pub delay_ns: u64,
    pub hist: [u64; SCHED_BUCKETS],
}

/// Key of `SCHED_PAIRS`: a task of `victim` waited, or was preempted,
/// while a task of `offender` held the CPU (cgroup ids).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SchedPair {
    pub victim: u64,
    pub offender: u64,
}

/// Value of `SCHED_PAIRS`, per CPU, lifetime counters: waits of the victim
/// that ended when the offender's task left the CPU, and how long the
/// offender held the CPU during them (up to each wait's length); the same
/// for the victim's delays alone; preemptions of the victim's tasks by the
/// offender's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairStats {
    pub waits: u64,
    pub wait_ns: u64,
    pub preemptions: u64,
    pub delays: u64,
    pub delay_ns: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, no padding.
    unsafe impl aya::Pod for super::SchedConfig {}
    // SAFETY: plain-old-data, no padding.
    unsafe impl aya::Pod for super::SchedStats {}
    // SAFETY: plain-old-data, no padding.
    unsafe impl aya::Pod for super::SchedPair {}
    // SAFETY: plain-old-data, no padding.
    unsafe impl aya::Pod for super::PairStats {}
    // SAFETY: plain-old-data records with explicit padding, no pointers.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: plain-old-data with explicit padding.
    unsafe impl aya::Pod for super::Pending {}
    // SAFETY: plain-old-data with explicit padding.
    unsafe impl aya::Pod for super::RingConfig {}
    // SAFETY: repr(C), plain integers, no padding.
    unsafe impl aya::Pod for super::Handoff {}
    // SAFETY: plain-old-data with explicit padding.
    unsafe impl aya::Pod for super::ProcFilter {}
}
