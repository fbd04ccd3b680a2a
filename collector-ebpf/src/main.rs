//! Lumen's kernel programs.
//!
//! Small programs, one per hook (Tetragon's habit): each fills a fixed-size
//! record from `lumen-common` directly in ring-buffer memory (the BPF stack is
//! 512 bytes; an exec record is larger) and submits it. When the ring buffer
//! is full the record is not written and a per-CPU drop counter is bumped, so
//! user space can report the loss instead of hiding it.
//!
//! Kernel structure offsets (task_struct, mm_struct) come from the running
//! kernel's BTF, resolved by user space and passed in the `CONFIG` map.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, gen},
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use core::ffi::c_void;
use lumen_common::{
    drop_index, Creds, ExecRecord, ExitRecord, FileOp, FileRecord, ForkRecord, KernelOffsets,
    NetOp, NetRecord, PathPrefix, Pending, PrivOp, PrivRecord, ProcFilter, RecordHeader,
    RecordKind, RingConfig, WalkedPath, ARGV_MAX, CGROUP_LEVELS, CGROUP_NAME_MAX, COMPONENT_MAX,
    EXCLUDED_COMMS, PATH_COMPONENTS, PATH_MAX, PATH_TAIL_MAX, PREFIX_EXCLUDED, PREFIX_MAX,
    PREFIX_SENSITIVE, PREFIX_SLOTS, SOCKADDR_MAX,
};

/// Records for user space. 8 MiB: roughly 6,000 exec records in flight.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Kernel structure offsets, index 0, written by user space before attach.
#[map]
static CONFIG: Array<KernelOffsets> = Array::with_max_entries(1, 0);

/// Records lost because the ring buffer was full, per CPU, per kind.
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop_index::COUNT, 0);

/// Offset of `__data_loc char[] filename` in sched_process_exec's record
/// (after the 8-byte common header); stable since the tracepoint exists.
const EXEC_FILENAME_LOC: usize = 8;

/// Which tasks are reported at all, index 0, written by user space.
#[map]
static FILTER: Array<ProcFilter> = Array::with_max_entries(1, 0);

/// True when the current task is out of scope: on the host while only
/// containers are watched, or (when `by_comm`) named like an excluded comm.
#[inline(always)]
fn filtered_out(o: &KernelOffsets, by_comm: bool) -> bool {
    let Some(f) = FILTER.get(0) else { return false };
    if f.containers_only != 0 {
        // SAFETY: probe reads only.
        let mnt_ns: u32 = unsafe {
            let task = gen::bpf_get_current_task() as *const u8;
            let nsproxy: u64 = read_kernel(task, o.task_nsproxy);
            if nsproxy == 0 {
                0
            } else {
                let ns: u64 = read_kernel(nsproxy as *const u8, o.nsproxy_mnt_ns);
                if ns == 0 {
                    0
                } else {
                    read_kernel(ns as *const u8, o.mnt_ns_inum)
                }
            }
        };
        if mnt_ns == f.host_mnt_ns {
            return true;
        }
    }
    if by_comm && f.comm_count > 0 {
        let comm = bpf_get_current_comm().unwrap_or([0; 16]);
        for i in 0..EXCLUDED_COMMS {
            if i as u32 >= f.comm_count {
                break;
            }
            if f.comms[i] == comm {
                return true;
            }
        }
    }
    false
}

/// How records wake the reader, index 0, written by user space.
#[map]
static RING: Array<RingConfig> = Array::with_max_entries(1, 0);

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Flags for submitting a record: see [`RingConfig`]. Waking the reader
/// per record costs user space far more than reading a batch.
#[inline(always)]
fn submit_flags() -> u64 {
    let threshold = match RING.get(0) {
        Some(r) if r.wakeup_bytes != 0 => u64::from(r.wakeup_bytes),
        _ => return 0,
    };
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
fn count_drop(index: u32) {
    if let Some(counter) = DROPS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
fn offsets() -> Option<&'static KernelOffsets> {
    match CONFIG.get(0) {
        Some(o) if o.ready != 0 => Some(o),
        _ => None,
    }
}

/// Reads a `T` at `base + offset` from kernel memory; zero when unreadable.
#[inline(always)]
unsafe fn read_kernel<T: Default>(base: *const u8, offset: u32) -> T {
    let mut out = T::default();
    // SAFETY: bpf_probe_read_kernel validates the source address.
    let rc = unsafe {
        gen::bpf_probe_read_kernel(
            &mut out as *mut T as *mut c_void,
            core::mem::size_of::<T>() as u32,
            base.add(offset as usize) as *const c_void,
        )
    };
    if rc != 0 {
        return T::default();
    }
    out
}

/// When the process of `task` started: its group leader's start, the same
/// for every thread.
#[inline(always)]
unsafe fn process_start(task: *const u8, o: &KernelOffsets) -> u64 {
    // SAFETY: probe reads; a null leader reads as 0.
    unsafe {
        let leader: u64 = read_kernel(task, o.task_group_leader);
        if leader == 0 {
            0
        } else {
            read_kernel(leader as *const u8, o.task_start_time)
        }
    }
}

/// Fills the header from the current task.
#[inline(always)]
unsafe fn fill_header(h: *mut RecordHeader, kind: RecordKind, o: &KernelOffsets) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: `h` points at reserved ring-buffer memory large enough for it.
    unsafe {
        let task = gen::bpf_get_current_task() as *const u8;
        let parent: u64 = read_kernel(task, o.task_real_parent);
        let ppid: u32 = if parent == 0 {
            0
        } else {
            read_kernel(parent as *const u8, o.task_tgid)
        };
        (*h).start_time_ns = process_start(task, o);
        (*h).parent_start_time_ns = if parent == 0 {
            0
        } else {
            process_start(parent as *const u8, o)
        };
        (*h).image_id = read_kernel(task, o.task_mm);
        (*h).kind = kind as u32;
        (*h).cpu = gen::bpf_get_smp_processor_id();
        (*h).ktime_ns = gen::bpf_ktime_get_boot_ns();
        (*h).pid = (pid_tgid >> 32) as u32;
        (*h).tid = pid_tgid as u32;
        (*h).ppid = ppid;
        (*h).uid = uid_gid as u32;
        (*h).gid = (uid_gid >> 32) as u32;
        (*h)._pad = 0;
        (*h).cgroup_id = gen::bpf_get_current_cgroup_id();
        (*h).comm = bpf_get_current_comm().unwrap_or([0; 16]);

        let nsproxy: u64 = read_kernel(task, o.task_nsproxy);
        let ns_inum = |field: u32, inum: u32| -> u32 {
            let ns: u64 = read_kernel(nsproxy as *const u8, field);
            if ns == 0 {
                0
            } else {
                read_kernel(ns as *const u8, inum)
            }
        };
        (*h).pid_ns = if nsproxy == 0 {
            0
        } else {
            ns_inum(o.nsproxy_pid_ns, o.pid_ns_inum)
        };
        (*h).mnt_ns = if nsproxy == 0 {
            0
        } else {
            ns_inum(o.nsproxy_mnt_ns, o.mnt_ns_inum)
        };
        (*h).net_ns = if nsproxy == 0 {
            0
        } else {
            ns_inum(o.nsproxy_net_ns, o.net_ns_inum)
        };
        (*h)._pad2 = 0;

        // task->cgroups->dfl_cgrp->kn, then up the kernfs parents.
        let css_set: u64 = read_kernel(task, o.task_cgroups);
        let cgrp: u64 = if css_set == 0 {
            0
        } else {
            read_kernel(css_set as *const u8, o.css_set_dfl_cgrp)
        };
        let mut kn: u64 = if cgrp == 0 {
            0
        } else {
            read_kernel(cgrp as *const u8, o.cgroup_kn)
        };
        for level in 0..CGROUP_LEVELS {
            let slot = &mut (*h).cgroup_names[level];
            slot[0] = 0;
            if kn == 0 {
                continue;
            }
            let name: u64 = read_kernel(kn as *const u8, o.kernfs_name);
            if name != 0 {
                gen::bpf_probe_read_kernel_str(
                    slot.as_mut_ptr() as *mut c_void,
                    CGROUP_NAME_MAX as u32,
                    name as *const c_void,
                );
            }
            kn = read_kernel(kn as *const u8, o.kernfs_parent);
        }
    }
}

#[tracepoint]
pub fn lumen_exec(ctx: TracePointContext) -> u32 {
    let Some(o) = offsets() else { return 0 };
    if filtered_out(o, true) {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<ExecRecord>(0) else {
        count_drop(drop_index::EXEC);
        return 0;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` is reserved ring-buffer memory of ExecRecord's size; all
    // kernel reads go through probe-read helpers.
    unsafe {
        fill_header(&mut (*rec).header, RecordKind::Exec, o);

        // __data_loc: low 16 bits offset from the record start, high 16 length.
        let loc: u32 = ctx.read_at(EXEC_FILENAME_LOC).unwrap_or(0);
        let name_ptr = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
        let n = gen::bpf_probe_read_kernel_str(
            (*rec).filename.as_mut_ptr() as *mut c_void,
            PATH_MAX as u32,
            name_ptr as *const c_void,
        );
        (*rec).filename_len = if n > 0 { (n - 1) as u32 } else { 0 };

        let task = gen::bpf_get_current_task() as *const u8;
        let mm: u64 = read_kernel(task, o.task_mm);
        let (start, end): (u64, u64) = if mm == 0 {
            (0, 0)
        } else {
            (
                read_kernel(mm as *const u8, o.mm_arg_start),
                read_kernel(mm as *const u8, o.mm_arg_end),
            )
        };
        let full = end.saturating_sub(start);
        (*rec).argv_full_len = full as u32;
        // The explicit clamp is the bound the verifier checks the copy by.
        let len = if full > ARGV_MAX as u64 {
            ARGV_MAX as u64
        } else {
            full
        };
        let rc = if len == 0 {
            -1
        } else {
            gen::bpf_probe_read_user(
                (*rec).argv.as_mut_ptr() as *mut c_void,
                len as u32,
                start as *const c_void,
            )
        };
        (*rec).argv_len = if rc == 0 { len as u32 } else { 0 };
        (*rec)._pad = 0;
    }
    entry.submit(submit_flags());
    0
}

/// A process has exited when its last thread does — not its group leader,
/// which may end first (`pthread_exit` in main, as Go and Java runtimes
/// do).
#[tracepoint]
pub fn lumen_exit(ctx: TracePointContext) -> u32 {
    let Some(o) = offsets() else { return 0 };
    if !group_dead(&ctx, o) || filtered_out(o, true) {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<ExitRecord>(0) else {
        count_drop(drop_index::EXIT);
        return 0;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory of ExitRecord's size.
    unsafe {
        fill_header(&mut (*rec).header, RecordKind::Exit, o);
        let task = gen::bpf_get_current_task() as *const u8;
        (*rec).exit_code = read_kernel(task, o.task_exit_code);
        (*rec)._pad = 0;
    }
    entry.submit(submit_flags());
    0
}

/// Whether the exiting task is the last of its thread group: the
/// tracepoint's own `group_dead` (Linux 6.16+), else `signal->live`, which
/// `do_exit` has decremented by now. Two threads ending at once may both
/// read 0 there; user space reports one exit per process.
#[inline(always)]
fn group_dead(ctx: &TracePointContext, o: &KernelOffsets) -> bool {
    if o.exit_group_dead != 0 {
        // SAFETY: an offset inside this tracepoint's record, from its format.
        return unsafe { ctx.read_at::<u8>(o.exit_group_dead as usize) }.unwrap_or(1) != 0;
    }
    // SAFETY: probe reads of the current task and its signal_struct.
    unsafe {
        let task = gen::bpf_get_current_task() as *const u8;
        let signal: u64 = read_kernel(task, o.task_signal);
        signal == 0 || read_kernel::<i32>(signal as *const u8, o.signal_live) == 0
    }
}

/// A new process: fork/clone without CLONE_THREAD. `current` is the parent.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn lumen_fork(ctx: RawTracePointContext) -> i32 {
    let Some(o) = offsets() else { return 0 };
    // TP_PROTO(struct task_struct *parent, struct task_struct *child)
    // SAFETY: raw tracepoint context is an array of u64 arguments.
    let child = unsafe { *(ctx.as_ptr() as *const u64).add(1) } as *const u8;
    // SAFETY: probe reads of the child task.
    let (child_pid, child_tgid): (u32, u32) = unsafe {
        (
            read_kernel(child, o.task_pid),
            read_kernel(child, o.task_tgid),
        )
    };
    if child_pid != child_tgid || filtered_out(o, true) {
        return 0; // a thread, or out of scope
    }
    let Some(mut entry) = EVENTS.reserve::<ForkRecord>(0) else {
        count_drop(drop_index::FORK);
        return 0;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory of ForkRecord's size.
    unsafe {
        fill_header(&mut (*rec).header, RecordKind::Fork, o);
        (*rec).child_pid = child_pid;
        (*rec)._pad = 0;
        (*rec).child_start_time_ns = process_start(child, o);
        (*rec).child_image_id = read_kernel(child, o.task_mm);
    }
    entry.submit(submit_flags());
    0
}

/// Syscalls between entry and exit: arguments and credentials at entry.
#[map]
static PENDING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(16384, 0);

/// `syscalls:sys_enter_*` records: args at 16 + 8*i; `sys_exit_*`: ret at 16.
const SYSCALL_ARGS: usize = 16;

/// The `N` arguments of a `syscalls:sys_enter_*` record (the rest zero).
/// Direct loads: the record is the program's context (a probe-read helper
/// per argument cost more than the rest of a filtered-out call). `N` must
/// be the syscall's argument count: the kernel refuses to attach a program
/// that reads past the end of the tracepoint's record.
#[inline(always)]
fn tp_args<const N: usize>(ctx: &TracePointContext) -> [u64; 6] {
    let p = ctx.as_ptr() as *const u64;
    let mut args = [0u64; 6];
    for (i, a) in args.iter_mut().enumerate().take(N) {
        // SAFETY: the record holds N u64 arguments after its 16-byte header
        // (common fields and the syscall number).
        *a = unsafe { *p.add(SYSCALL_ARGS / 8 + i) };
    }
    args
}

/// The return value in a `syscalls:sys_exit_*` record.
#[inline(always)]
fn tp_ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: the exit record's first field after the 16-byte header is `ret`.
    unsafe { *(ctx.as_ptr() as *const i64).add(SYSCALL_ARGS / 8) }
}

const PTRACE_ATTACH: u64 = 16;
const PTRACE_SEIZE: u64 = 0x4206;
const BPF_PROG_LOAD: u64 = 5;
/// `bpf_attr.prog_name` for BPF_PROG_LOAD.
const BPF_ATTR_PROG_NAME: usize = 48;

#[inline(always)]
unsafe fn read_creds(o: &KernelOffsets) -> Creds {
    // SAFETY: probe reads only.
    unsafe {
        let task = gen::bpf_get_current_task() as *const u8;
        let cred: u64 = read_kernel(task, o.task_cred);
        if cred == 0 {
            return Creds::default();
        }
        let c = cred as *const u8;
        Creds {
            uid: read_kernel(c, o.cred_uid),
            euid: read_kernel(c, o.cred_euid),
            suid: read_kernel(c, o.cred_suid),
            fsuid: read_kernel(c, o.cred_fsuid),
            gid: read_kernel(c, o.cred_gid),
            egid: read_kernel(c, o.cred_egid),
            sgid: read_kernel(c, o.cred_sgid),
            fsgid: read_kernel(c, o.cred_fsgid),
            cap_inheritable: read_kernel(c, o.cred_cap_inheritable),
            cap_permitted: read_kernel(c, o.cred_cap_permitted),
            cap_effective: read_kernel(c, o.cred_cap_effective),
        }
    }
}

/// At a socket syscall's entry: keep its arguments.
#[inline(always)]
fn stash_net(args: [u64; 6], op: NetOp) {
    let Some(o) = offsets() else { return };
    if filtered_out(o, true) {
        return;
    }
    let pending = Pending {
        op: op as u32,
        _pad: 0,
        args,
        old: Creds::default(),
    };
    if PENDING
        .insert(&bpf_get_current_pid_tgid(), &pending, 0)
        .is_err()
    {
        count_drop(drop_index::PENDING_FULL);
    }
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// At a socket syscall's exit: the socket's 5-tuple, for IPv4/IPv6 only.
#[inline(always)]
fn finish_net(ret: i64, o: &KernelOffsets, pending: &Pending) {
    // accept returns the new socket; the others act on their first argument.
    let fd = if pending.op == NetOp::Accept as u32 {
        if ret < 0 {
            return;
        }
        ret as u64
    } else {
        pending.args[0]
    };
    // SAFETY: probe reads only.
    let sk: u64 = unsafe {
        let file = fd_file(o, fd);
        if file == 0 {
            return;
        }
        let socket: u64 = read_kernel(file as *const u8, o.file_private_data);
        if socket == 0 {
            return;
        }
        // A socket's file points back at it; other files' private data does not.
        let back: u64 = read_kernel(socket as *const u8, o.socket_file);
        if back != file {
            return;
        }
        read_kernel(socket as *const u8, o.socket_sk)
    };
    if sk == 0 {
        return;
    }
    let s = sk as *const u8;
    // SAFETY: probe reads only.
    let family: u16 = unsafe { read_kernel(s, o.skc_family) };
    if family != AF_INET && family != AF_INET6 {
        return; // unix sockets and the rest: never cross into user space
    }
    let Some(mut entry) = EVENTS.reserve::<NetRecord>(0) else {
        count_drop(drop_index::NETWORK);
        return;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory of NetRecord's size; probe reads.
    unsafe {
        fill_header(&mut (*rec).header, RecordKind::Network, o);
        (*rec).op = pending.op;
        (*rec).family = family;
        (*rec).protocol = read_kernel(s, o.sk_protocol);
        (*rec).sock_type = read_kernel(s, o.sk_type);
        (*rec).local_port = read_kernel(s, o.skc_num);
        let dport: u16 = read_kernel(s, o.skc_dport);
        (*rec).remote_port = u16::from_be(dport);
        (*rec)._pad = 0;
        (*rec).ret = ret;
        (*rec).local_addr = [0; 16];
        (*rec).remote_addr = [0; 16];
        if family == AF_INET {
            let l: [u8; 4] = read_kernel_bytes(s, o.skc_rcv_saddr);
            let r: [u8; 4] = read_kernel_bytes(s, o.skc_daddr);
            let (mut la, mut ra) = ([0u8; 16], [0u8; 16]);
            la[..4].copy_from_slice(&l);
            ra[..4].copy_from_slice(&r);
            (*rec).local_addr = la;
            (*rec).remote_addr = ra;
        } else {
            (*rec).local_addr = read_kernel_bytes(s, o.skc_v6_rcv_saddr);
            (*rec).remote_addr = read_kernel_bytes(s, o.skc_v6_daddr);
        }
        (*rec).user_addr = [0; SOCKADDR_MAX];
        (*rec)._pad2 = 0;
        let uaddr = pending.args[1];
        if (pending.op == NetOp::Connect as u32 || pending.op == NetOp::Bind as u32) && uaddr != 0 {
            gen::bpf_probe_read_user(
                (*rec).user_addr.as_mut_ptr() as *mut c_void,
                SOCKADDR_MAX as u32,
                uaddr as *const c_void,
            );
        }
    }
    entry.submit(submit_flags());
}

/// Reads `N` bytes at `base + offset` from kernel memory; zeros if unreadable.
#[inline(always)]
unsafe fn read_kernel_bytes<const N: usize>(base: *const u8, offset: u32) -> [u8; N] {
    let mut out = [0u8; N];
    // SAFETY: bpf_probe_read_kernel validates the source address.
    let rc = unsafe {
        gen::bpf_probe_read_kernel(
            out.as_mut_ptr() as *mut c_void,
            N as u32,
            base.add(offset as usize) as *const c_void,
        )
    };
    if rc != 0 {
        return [0; N];
    }
    out
}

/// At a syscall's entry: keep its arguments and the caller's credentials.
#[inline(always)]
fn stash(mut args: [u64; 6], op: PrivOp) {
    let Some(o) = offsets() else { return };
    // comm is chosen by the process: privilege events are never excluded by it.
    if filtered_out(o, false) {
        return;
    }
    let interesting = match op {
        PrivOp::PtraceAttach => args[0] == PTRACE_ATTACH || args[0] == PTRACE_SEIZE,
        PrivOp::BpfProgLoad => args[0] == BPF_PROG_LOAD,
        _ => true,
    };
    if !interesting {
        return;
    }
    if op == PrivOp::BpfProgLoad {
        // bpf(cmd, attr, size) has three arguments: the attr's program type
        // and name are kept in the unused slots while the caller's memory is
        // certainly what it passed. The name exists only if `size` covers it.
        let attr = args[1];
        let mut prog_type = 0u32;
        let mut name = [0u8; 16];
        if attr != 0 {
            // SAFETY: the helpers validate the user addresses.
            unsafe {
                gen::bpf_probe_read_user(
                    &mut prog_type as *mut u32 as *mut c_void,
                    4,
                    attr as *const c_void,
                );
                if args[2] >= (BPF_ATTR_PROG_NAME + 16) as u64 {
                    gen::bpf_probe_read_user(
                        name.as_mut_ptr() as *mut c_void,
                        16,
                        (attr as usize + BPF_ATTR_PROG_NAME) as *const c_void,
                    );
                }
            }
        }
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&name[..8]);
        hi.copy_from_slice(&name[8..]);
        args[3] = u64::from(prog_type);
        args[4] = u64::from_ne_bytes(lo);
        args[5] = u64::from_ne_bytes(hi);
    }
    let pending = Pending {
        op: op as u32,
        _pad: 0,
        args,
        // SAFETY: probe reads only.
        old: unsafe { read_creds(o) },
    };
    if PENDING
        .insert(&bpf_get_current_pid_tgid(), &pending, 0)
        .is_err()
    {
        count_drop(drop_index::PENDING_FULL);
    }
}

/// Reads a user-space C string into `dst` (empty on failure).
#[inline(always)]
unsafe fn user_str(dst: &mut [u8], src: u64) {
    dst[0] = 0;
    if src != 0 {
        // SAFETY: the helper validates the user address.
        unsafe {
            gen::bpf_probe_read_user_str(
                dst.as_mut_ptr() as *mut c_void,
                dst.len() as u32,
                src as *const c_void,
            );
        }
    }
}

/// The `struct file` behind the caller's `fd` (0 if none).
#[inline(always)]
unsafe fn fd_file(o: &KernelOffsets, fd: u64) -> u64 {
    // SAFETY: probe reads only; the index is checked against max_fds.
    unsafe {
        let task = gen::bpf_get_current_task() as *const u8;
        let files: u64 = read_kernel(task, o.task_files);
        if files == 0 {
            return 0;
        }
        let fdt: u64 = read_kernel(files as *const u8, o.files_fdt);
        if fdt == 0 {
            return 0;
        }
        let max: u32 = read_kernel(fdt as *const u8, o.fdt_max_fds);
        if fd >= u64::from(max) {
            return 0;
        }
        let fds: u64 = read_kernel(fdt as *const u8, o.fdt_fd);
        read_kernel((fds + fd * 8) as *const u8, 0)
    }
}

/// The name (last path component) of the file behind the caller's `fd`.
#[inline(always)]
unsafe fn fd_file_name(dst: &mut [u8], o: &KernelOffsets, fd: u64) {
    dst[0] = 0;
    // SAFETY: probe reads only.
    unsafe {
        let file = fd_file(o, fd);
        if file == 0 {
            return;
        }
        let dentry: u64 = read_kernel(file as *const u8, o.file_dentry);
        if dentry == 0 {
            return;
        }
        let name: u64 = read_kernel(dentry as *const u8, o.dentry_name);
        if name != 0 {
            gen::bpf_probe_read_kernel_str(
                dst.as_mut_ptr() as *mut c_void,
                dst.len() as u32,
                name as *const c_void,
            );
        }
    }
}

/// At a syscall's exit: report it with its outcome and the credentials
/// before and after.
#[inline(always)]
fn finish(ret: i64) {
    let Some(o) = offsets() else { return };
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(pending) = (unsafe { PENDING.get(&key) }).copied() else {
        return;
    };
    let _ = PENDING.remove(&key);
    if pending.op > 100 {
        return; // not a privilege syscall: its entry was lost
    }
    let Some(mut entry) = EVENTS.reserve::<PrivRecord>(0) else {
        count_drop(drop_index::PRIVILEGE);
        return;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory of PrivRecord's size; probe reads.
    unsafe {
        fill_header(&mut (*rec).header, RecordKind::Privilege, o);
        (*rec).op = pending.op;
        (*rec)._pad = 0;
        (*rec).ret = ret;
        (*rec).args = [
            pending.args[0],
            pending.args[1],
            pending.args[2],
            pending.args[3],
        ];
        (*rec).old = pending.old;
        (*rec).new = read_creds(o);
        (*rec).str1[0] = 0;
        (*rec).str2[0] = 0;
        (*rec).str3[0] = 0;
        if pending.op == PrivOp::Mount as u32 {
            // mount(dev_name, dir_name, type, flags, data)
            user_str(&mut (*rec).str1, pending.args[1]);
            user_str(&mut (*rec).str2, pending.args[0]);
            user_str(&mut (*rec).str3, pending.args[2]);
        } else if pending.op == PrivOp::FinitModule as u32 {
            fd_file_name(&mut (*rec).str1, o, pending.args[0]);
        } else if pending.op == PrivOp::BpfProgLoad as u32 {
            // Read at entry (see `stash`): type in args[3], name in args[4..6].
            (*rec).args[2] = pending.args[3];
            let str1 = &mut *core::ptr::addr_of_mut!((*rec).str1);
            str1[..8].copy_from_slice(&pending.args[4].to_ne_bytes());
            str1[8..16].copy_from_slice(&pending.args[5].to_ne_bytes());
            str1[16] = 0;
        }
    }
    entry.submit(submit_flags());
}

/// The pending entry of the calling thread, if its op is in `range`.
#[inline(always)]
fn take_pending(range: core::ops::Range<u32>) -> Option<Pending> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let pending = (unsafe { PENDING.get(&key) }).copied()?;
    if !range.contains(&pending.op) {
        return None;
    }
    let _ = PENDING.remove(&key);
    Some(pending)
}

// One exit program per family, loaded (and verified) once and attached to
// every sys_exit_* tracepoint of the family: their records share a layout.

#[tracepoint]
pub fn lumen_exit_privilege(ctx: TracePointContext) -> u32 {
    finish(tp_ret(&ctx));
    0
}

#[tracepoint]
pub fn lumen_exit_network(ctx: TracePointContext) -> u32 {
    let Some(o) = offsets() else { return 0 };
    if let Some(p) = take_pending(100..200) {
        finish_net(tp_ret(&ctx), o, &p);
    }
    0
}

#[tracepoint]
pub fn lumen_exit_open(ctx: TracePointContext) -> u32 {
    let Some(o) = offsets() else { return 0 };
    if let Some(p) = take_pending(FileOp::Open as u32..FileOp::Open as u32 + 1) {
        finish_file(tp_ret(&ctx), o, &p);
    }
    0
}

#[tracepoint]
pub fn lumen_exit_file(ctx: TracePointContext) -> u32 {
    let Some(o) = offsets() else { return 0 };
    if let Some(p) = take_pending(FileOp::Open as u32 + 1..300) {
        finish_file(tp_ret(&ctx), o, &p);
    }
    0
}

/// The entry program `$name` for one syscall of `$nargs` arguments: hands
/// them and `$arg` (which syscall, in the family's terms) to `$handler`.
macro_rules! entry_program {
    ($handler:ident, $name:ident, $arg:expr, $nargs:literal) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            $handler(tp_args::<$nargs>(&ctx), $arg);
            0
        }
    };
}

entry_program!(stash, lumen_enter_setuid, PrivOp::Setuid, 1);
entry_program!(stash, lumen_enter_setreuid, PrivOp::Setreuid, 2);
entry_program!(stash, lumen_enter_setresuid, PrivOp::Setresuid, 3);
entry_program!(stash, lumen_enter_setgid, PrivOp::Setgid, 1);
entry_program!(stash, lumen_enter_setregid, PrivOp::Setregid, 2);
entry_program!(stash, lumen_enter_setresgid, PrivOp::Setresgid, 3);
entry_program!(stash, lumen_enter_capset, PrivOp::Capset, 2);
entry_program!(stash, lumen_enter_ptrace, PrivOp::PtraceAttach, 4);
entry_program!(stash, lumen_enter_init_module, PrivOp::InitModule, 3);
entry_program!(stash, lumen_enter_finit_module, PrivOp::FinitModule, 3);
entry_program!(stash, lumen_enter_bpf, PrivOp::BpfProgLoad, 3);
entry_program!(stash, lumen_enter_mount, PrivOp::Mount, 5);

/// Path prefixes: sensitive (reads reported) and excluded (nothing reported).
#[map]
static PREFIXES: Array<PathPrefix> = Array::with_max_entries(PREFIX_SLOTS, 0);

const AT_FDCWD: u64 = -100i64 as u64;
const O_WRONLY: u64 = 0o1;
const O_RDWR: u64 = 0o2;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;

/// Per-CPU scratch for the caller's path string at syscall entry.
#[map]
static SCRATCH: PerCpuArray<[u8; PATH_TAIL_MAX]> = PerCpuArray::with_max_entries(1, 0);

/// Walks (`dentry`, `vfsmnt`) up to the task's root like the kernel's
/// d_path, writing component names leaf first into `out`'s fixed slots.
/// The loop index is the slot: mount crossings happen in a small inner loop,
/// so the verifier sees one shape per iteration.
#[inline(never)]
unsafe fn walk_path(out: *mut WalkedPath, o: &KernelOffsets, mut dentry: u64, mut vfsmnt: u64) {
    // SAFETY: probe reads; writes go to fixed slots of `out`.
    unsafe {
        let task = gen::bpf_get_current_task() as *const u8;
        let fs: u64 = read_kernel(task, o.task_fs);
        let root_mnt: u64 = if fs == 0 {
            0
        } else {
            read_kernel(fs as *const u8, o.fs_root + o.path_mnt)
        };
        let root_dentry: u64 = if fs == 0 {
            0
        } else {
            read_kernel(fs as *const u8, o.fs_root + o.path_dentry)
        };
        (*out).depth = 0;
        (*out).truncated = 0;
        for i in 0..PATH_COMPONENTS {
            // Up the mount tree while at a mount's root (at most 2 levels).
            for _ in 0..2 {
                let mnt_root: u64 = read_kernel(vfsmnt as *const u8, o.vfsmount_root);
                if dentry != mnt_root || (dentry == root_dentry && vfsmnt == root_mnt) {
                    break;
                }
                let mnt = vfsmnt - o.mount_mnt as u64;
                let parent: u64 = read_kernel(mnt as *const u8, o.mount_parent);
                if parent == mnt || parent == 0 {
                    break;
                }
                dentry = read_kernel(mnt as *const u8, o.mount_mountpoint);
                vfsmnt = parent + o.mount_mnt as u64;
            }
            if dentry == 0 || (dentry == root_dentry && vfsmnt == root_mnt) {
                return;
            }
            let parent: u64 = read_kernel(dentry as *const u8, o.dentry_parent);
            if parent == dentry {
                return;
            }
            let name: u64 = read_kernel(dentry as *const u8, o.dentry_name);
            let slot = core::ptr::addr_of_mut!((*out).components[i]) as *mut u8;
            gen::bpf_probe_read_kernel_str(
                slot as *mut c_void,
                COMPONENT_MAX as u32,
                name as *const c_void,
            );
            (*out).depth = i as u32 + 1;
            dentry = parent;
        }
        (*out).truncated = 1;
    }
}

/// Fills `out` for `user_path` relative to `dfd` (the cwd for AT_FDCWD);
/// `user_path` 0 means the file behind `dfd` itself (fchmod, fchown). An
/// absolute `user_path` needs no walk.
#[inline(always)]
unsafe fn resolve_path(out: *mut WalkedPath, o: &KernelOffsets, dfd: u64, user_path: u64) {
    // SAFETY: see walk_path; user reads go through the helper.
    unsafe {
        (*out).depth = 0;
        (*out).truncated = 0;
        let tail = core::ptr::addr_of_mut!((*out).tail) as *mut u8;
        *tail = 0;
        if user_path != 0 {
            gen::bpf_probe_read_user_str(
                tail as *mut c_void,
                PATH_TAIL_MAX as u32,
                user_path as *const c_void,
            );
            if *tail == b'/' {
                return;
            }
        }
        let (dentry, vfsmnt): (u64, u64) = if dfd as u32 == AT_FDCWD as u32 {
            let task = gen::bpf_get_current_task() as *const u8;
            let fs: u64 = read_kernel(task, o.task_fs);
            if fs == 0 {
                return;
            }
            (
                read_kernel(fs as *const u8, o.fs_pwd + o.path_dentry),
                read_kernel(fs as *const u8, o.fs_pwd + o.path_mnt),
            )
        } else {
            let file = fd_file(o, dfd);
            if file == 0 {
                return;
            }
            (
                read_kernel(file as *const u8, o.file_f_path + o.path_dentry),
                read_kernel(file as *const u8, o.file_f_path + o.path_mnt),
            )
        };
        walk_path(out, o, dentry, vfsmnt);
    }
}

/// The kinds of prefix `path` (the caller's string, NUL-terminated) starts
/// with, in one pass over the slots: (excluded, sensitive). Compares 8 bytes
/// at a time (slots are zero-padded; only the first PREFIX_MAX bytes of the
/// path are ever read).
#[inline(always)]
fn prefix_kinds(path: &[u8; PATH_TAIL_MAX]) -> (bool, bool) {
    let (mut excluded, mut sensitive) = (false, false);
    for slot in 0..PREFIX_SLOTS {
        let Some(p) = PREFIXES.get(slot) else {
            continue;
        };
        let plen = p.len as usize;
        if plen == 0 {
            break; // user space fills the slots in order
        }
        if plen > PREFIX_MAX {
            continue;
        }
        let mut equal = true;
        for w in 0..PREFIX_MAX / 8 {
            let start = w * 8;
            if start >= plen {
                break;
            }
            let rem = plen - start;
            let mask = if rem >= 8 {
                u64::MAX
            } else {
                (1u64 << (rem * 8)) - 1
            };
            let mut have = [0u8; 8];
            have.copy_from_slice(&path[start..start + 8]);
            let mut want = [0u8; 8];
            want.copy_from_slice(&p.bytes[start..start + 8]);
            if u64::from_ne_bytes(have) & mask != u64::from_ne_bytes(want) & mask {
                equal = false;
                break;
            }
        }
        if equal {
            if p.kind == PREFIX_EXCLUDED {
                excluded = true;
            } else if p.kind == PREFIX_SENSITIVE {
                sensitive = true;
            }
        }
    }
    (excluded, sensitive)
}

/// Syscall argument layouts, normalized at entry into `Pending.args`:
/// [dfd, path, flags|mode|uid, mode|gid, newdfd, newpath]; `Pending._pad`
/// carries the sensitive flag.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileCall {
    Open,
    Openat,
    Openat2,
    Creat,
    Unlink,
    Unlinkat,
    Rename,
    Renameat,
    Chmod,
    Fchmod,
    Fchmodat,
    Chown,
    Fchown,
    Fchownat,
}

/// The file call `a` (its raw arguments), normalized, if it is to be
/// reported: not under an excluded prefix, and for an open, with write
/// intent or on a sensitive path. The caller checks `filtered_out`.
#[inline(always)]
fn file_wanted(a: [u64; 6], call: FileCall) -> Option<Pending> {
    let cwd = AT_FDCWD;
    let (op, args) = match call {
        FileCall::Open => (FileOp::Open, [cwd, a[0], a[1], a[2], 0, 0]),
        FileCall::Openat => (FileOp::Open, [a[0], a[1], a[2], a[3], 0, 0]),
        FileCall::Openat2 => {
            // openat2(dfd, path, struct open_how *how, size): how->flags, how->mode.
            let mut how = [0u64; 2];
            // SAFETY: the helper validates the user address.
            unsafe {
                gen::bpf_probe_read_user(how.as_mut_ptr() as *mut c_void, 16, a[2] as *const c_void)
            };
            (FileOp::Open, [a[0], a[1], how[0], how[1], 0, 0])
        }
        FileCall::Creat => (
            FileOp::Open,
            [cwd, a[0], O_CREAT | O_WRONLY | O_TRUNC, a[1], 0, 0],
        ),
        FileCall::Unlink => (FileOp::Unlink, [cwd, a[0], 0, 0, 0, 0]),
        FileCall::Unlinkat => (FileOp::Unlink, [a[0], a[1], a[2], 0, 0, 0]),
        FileCall::Rename => (FileOp::Rename, [cwd, a[0], 0, 0, cwd, a[1]]),
        // renameat(olddfd, old, newdfd, new) and renameat2(…, flags).
        FileCall::Renameat => (FileOp::Rename, [a[0], a[1], a[4], 0, a[2], a[3]]),
        FileCall::Chmod => (FileOp::Chmod, [cwd, a[0], a[1], 0, 0, 0]),
        FileCall::Fchmod => (FileOp::Chmod, [a[0], 0, a[1], 0, 0, 0]),
        FileCall::Fchmodat => (FileOp::Chmod, [a[0], a[1], a[2], 0, 0, 0]),
        FileCall::Chown => (FileOp::Chown, [cwd, a[0], a[1], a[2], 0, 0]),
        FileCall::Fchown => (FileOp::Chown, [a[0], 0, a[1], a[2], 0, 0]),
        FileCall::Fchownat => (FileOp::Chown, [a[0], a[1], a[2], a[3], 0, 0]),
    };
    // Prefix checks on the path the caller passed, when absolute: excluded
    // paths stop here; a read-only open goes on only if sensitive.
    let mut sensitive = 0u32;
    if args[1] != 0 {
        let buf = SCRATCH.get_ptr_mut(0)?;
        // SAFETY: per-CPU scratch; the helper validates the user address.
        // Only the first PREFIX_MAX bytes matter for the prefixes; bytes after
        // the NUL may be stale, which cannot make a match (a prefix holds no
        // NUL, so it fails at the terminator).
        let (read, path) = unsafe {
            let b = &mut *buf;
            let n = gen::bpf_probe_read_user_str(
                b.as_mut_ptr() as *mut c_void,
                PREFIX_MAX as u32,
                args[1] as *const c_void,
            );
            (n, &*b)
        };
        if read > 1 && path[0] == b'/' {
            let (excluded, is_sensitive) = prefix_kinds(path);
            if excluded {
                return None;
            }
            sensitive = u32::from(is_sensitive);
        }
    }
    let write_intent = args[2] & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC) != 0;
    if op == FileOp::Open && !write_intent && sensitive == 0 {
        return None;
    }
    Some(Pending {
        op: op as u32,
        _pad: sensitive,
        args,
        old: Creds::default(),
    })
}

/// At a file syscall's entry (tracepoint hooks): keep what `file_wanted`
/// keeps for the exit.
#[inline(always)]
fn stash_file(args: [u64; 6], call: FileCall) {
    let Some(o) = offsets() else { return };
    if filtered_out(o, true) {
        return;
    }
    let Some(pending) = file_wanted(args, call) else {
        return;
    };
    if PENDING
        .insert(&bpf_get_current_pid_tgid(), &pending, 0)
        .is_err()
    {
        count_drop(drop_index::PENDING_FULL);
    }
}

/// At a file syscall's exit: successful calls only (entry filtered the rest).
#[inline(always)]
fn finish_file(ret: i64, o: &KernelOffsets, pending: &Pending) {
    if ret < 0 {
        return;
    }
    let a = pending.args;
    let Some(mut entry) = EVENTS.reserve::<FileRecord>(0) else {
        count_drop(drop_index::FILE);
        return;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory of FileRecord's size.
    unsafe {
        let path = core::ptr::addr_of_mut!((*rec).path);
        let path2 = core::ptr::addr_of_mut!((*rec).path2);
        (*path2).depth = 0;
        (*path2).truncated = 0;
        (*path2).tail[0] = 0;
        if pending.op == FileOp::Open as u32 {
            // The file that was opened: the new fd, resolved exactly.
            (*path).tail[0] = 0;
            (*path).depth = 0;
            (*path).truncated = 0;
            let file = fd_file(o, ret as u64);
            if file != 0 {
                walk_path(
                    path,
                    o,
                    read_kernel(file as *const u8, o.file_f_path + o.path_dentry),
                    read_kernel(file as *const u8, o.file_f_path + o.path_mnt),
                );
            }
        } else {
            resolve_path(path, o, a[0], a[1]);
            if pending.op == FileOp::Rename as u32 {
                resolve_path(path2, o, a[4], a[5]);
            }
        }
        fill_header(&mut (*rec).header, RecordKind::File, o);
        (*rec).op = pending.op;
        (*rec).flags = a[2] as u32;
        (*rec).mode = 0;
        (*rec).uid = u32::MAX;
        (*rec).gid = u32::MAX;
        if pending.op == FileOp::Open as u32 {
            (*rec).mode = a[3] as u32;
        } else if pending.op == FileOp::Chmod as u32 {
            (*rec).mode = a[2] as u32;
            (*rec).flags = 0;
        } else if pending.op == FileOp::Chown as u32 {
            (*rec).uid = a[2] as u32;
            (*rec).gid = a[3] as u32;
            (*rec).flags = 0;
        }
        (*rec).sensitive = pending._pad;
        (*rec).ret = ret;
    }
    entry.submit(submit_flags());
}

entry_program!(stash_file, lumen_enter_open, FileCall::Open, 3);
entry_program!(stash_file, lumen_enter_openat, FileCall::Openat, 4);
entry_program!(stash_file, lumen_enter_openat2, FileCall::Openat2, 4);
entry_program!(stash_file, lumen_enter_creat, FileCall::Creat, 2);
entry_program!(stash_file, lumen_enter_unlink, FileCall::Unlink, 1);
entry_program!(stash_file, lumen_enter_unlinkat, FileCall::Unlinkat, 3);
entry_program!(stash_file, lumen_enter_rename, FileCall::Rename, 2);
entry_program!(stash_file, lumen_enter_renameat, FileCall::Renameat, 4);
entry_program!(stash_file, lumen_enter_renameat2, FileCall::Renameat, 5);
entry_program!(stash_file, lumen_enter_chmod, FileCall::Chmod, 2);
entry_program!(stash_file, lumen_enter_fchmod, FileCall::Fchmod, 2);
entry_program!(stash_file, lumen_enter_fchmodat, FileCall::Fchmodat, 3);
entry_program!(stash_file, lumen_enter_chown, FileCall::Chown, 3);
entry_program!(stash_file, lumen_enter_lchown, FileCall::Chown, 3);
entry_program!(stash_file, lumen_enter_fchown, FileCall::Fchown, 3);
entry_program!(stash_file, lumen_enter_fchownat, FileCall::Fchownat, 5);

entry_program!(stash_net, lumen_enter_connect, NetOp::Connect, 3);
entry_program!(stash_net, lumen_enter_accept, NetOp::Accept, 3);
entry_program!(stash_net, lumen_enter_accept4, NetOp::Accept, 4);
entry_program!(stash_net, lumen_enter_bind, NetOp::Bind, 3);
entry_program!(stash_net, lumen_enter_listen, NetOp::Listen, 2);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
