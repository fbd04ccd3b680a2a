//! Process lifecycle: exec (`sched_process_exec`), exit of the last thread
//! (`sched_process_exit`) and fork (`sched_process_fork`).

use crate::maps::{count_drop, filtered_out, offsets, submit, EVENTS};
use crate::path::walk_path;
use crate::task::{
    cgroup_names_of, fill_header, inode_and_magic, process_start, read_kernel, read_kernel_bytes,
};
use aya_ebpf::{
    helpers::gen,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use core::ffi::c_void;
use lumen_common::{
    drop_index, ExecRecord, ExitRecord, ForkRecord, KernelOffsets, OomRecord, RecordKind, ARGV_MAX,
    COMM_LEN, EXE_DELETED, EXE_MEMFD, EXE_TMPFS, EXE_UPPER_LAYER, PATH_MAX,
};

/// `super_block.s_magic` of the file systems an executable's facts depend on.
const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;
const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;
const HUGETLBFS_MAGIC: u64 = 0x9584_58f6;

/// What the executable `file` (a `struct file *`) is: `EXE_*` bits. Drift:
/// an overlay inode with an upper dentry was written after the container
/// started. Fileless: a memfd (on shmem or hugetlbfs, named `memfd:…`), a
/// file with no link, or one on tmpfs/ramfs.
#[inline(always)]
unsafe fn exe_facts(o: &KernelOffsets, file: u64) -> u32 {
    // SAFETY: probe reads only.
    unsafe {
        let (inode, magic) = inode_and_magic(o, file);
        if inode == 0 {
            return 0;
        }
        let mut flags = 0;
        let nlink: u32 = read_kernel(inode as *const u8, o.inode_nlink);
        if nlink == 0 {
            flags |= EXE_DELETED;
        }
        if magic == OVERLAYFS_SUPER_MAGIC && o.ovl_upper_dentry != 0 {
            let upper: u64 = read_kernel(inode as *const u8, o.ovl_upper_dentry);
            if upper != 0 {
                flags |= EXE_UPPER_LAYER;
            }
        } else if magic == TMPFS_MAGIC || magic == RAMFS_MAGIC || magic == HUGETLBFS_MAGIC {
            let dentry: u64 = read_kernel(file as *const u8, o.file_f_path + o.path_dentry);
            let name: u64 = if dentry == 0 {
                0
            } else {
                read_kernel(dentry as *const u8, o.dentry_name)
            };
            let head: [u8; 6] = if name == 0 {
                [0; 6]
            } else {
                read_kernel_bytes(name as *const u8, 0)
            };
            if head == *b"memfd:" {
                flags |= EXE_MEMFD;
            } else if magic != HUGETLBFS_MAGIC {
                flags |= EXE_TMPFS;
            }
        }
        flags
    }
}

/// Offset of `__data_loc char[] filename` in sched_process_exec's record
/// (after the 8-byte common header); stable since the tracepoint exists.
pub(crate) const EXEC_FILENAME_LOC: usize = 8;

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

        let exe_path = core::ptr::addr_of_mut!((*rec).exe_path);
        (*exe_path).depth = 0;
        (*exe_path).truncated = 0;
        (*exe_path).tail[0] = 0;
        let exe_file: u64 = if mm == 0 {
            0
        } else {
            read_kernel(mm as *const u8, o.mm_exe_file)
        };
        (*rec).exe_flags = 0;
        if exe_file != 0 {
            (*rec).exe_flags = exe_facts(o, exe_file);
            walk_path(
                exe_path,
                o,
                read_kernel(exe_file as *const u8, o.file_f_path + o.path_dentry),
                read_kernel(exe_file as *const u8, o.file_f_path + o.path_mnt),
            );
        }
    }
    submit(entry);
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
    submit(entry);
    0
}

/// Whether the exiting task is the last of its thread group: the
/// tracepoint's own `group_dead` (Linux 6.16+), else `signal->live`, which
/// `do_exit` has decremented by now. Two threads ending at once may both
/// read 0 there; user space reports one exit per process.
#[inline(always)]
pub(crate) fn group_dead(ctx: &TracePointContext, o: &KernelOffsets) -> bool {
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
    submit(entry);
    0
}

/// The OOM killer chose a victim. `current` ran out of memory; the victim
/// is the tracepoint's task. Never filtered: a kill is always reported.
#[raw_tracepoint(tracepoint = "mark_victim")]
pub fn lumen_oom_victim(ctx: RawTracePointContext) -> i32 {
    let Some(o) = offsets() else { return 0 };
    // TP_PROTO(struct task_struct *task, uid_t uid) (Linux 6.2+; user
    // space attaches this only where the kernel's BTF says so).
    // SAFETY: raw tracepoint context is an array of u64 arguments.
    let (task, uid) = unsafe {
        let args = ctx.as_ptr() as *const u64;
        (*args as *const u8, *args.add(1) as u32)
    };
    let Some(mut entry) = EVENTS.reserve::<OomRecord>(0) else {
        count_drop(drop_index::EXIT);
        return 0;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: reserved ring-buffer memory of OomRecord's size; probe reads
    // of the victim task.
    unsafe {
        fill_header(&mut (*rec).header, RecordKind::Oom, o);
        (*rec).victim_pid = read_kernel(task, o.task_tgid);
        (*rec).victim_uid = uid;
        (*rec).victim_start_time_ns = process_start(task, o);
        (*rec).victim_comm = read_kernel_bytes::<COMM_LEN>(task, o.task_comm);
        cgroup_names_of(task, &mut (*rec).victim_cgroup_names, o);
    }
    submit(entry);
    0
}
