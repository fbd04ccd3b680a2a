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
    maps::{Array, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use core::ffi::c_void;
use lumen_common::{
    drop_index, ExecRecord, ExitRecord, ForkRecord, KernelOffsets, RecordHeader, RecordKind,
    ARGV_MAX, CGROUP_LEVELS, CGROUP_NAME_MAX, PATH_MAX,
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
        (*h).start_time_ns = read_kernel(task, o.task_start_time);

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
    entry.submit(0);
    0
}

#[tracepoint]
pub fn lumen_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Threads exit too; a process has exited when its group leader does.
    if (pid_tgid >> 32) as u32 != pid_tgid as u32 {
        return 0;
    }
    let Some(o) = offsets() else { return 0 };
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
    entry.submit(0);
    0
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
    if child_pid != child_tgid {
        return 0; // a thread
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
        (*rec).child_start_time_ns = read_kernel(child, o.task_start_time);
    }
    entry.submit(0);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
