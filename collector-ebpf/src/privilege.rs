//! Privilege-relevant syscalls: set*id, capset, ptrace attach, module and
//! BPF program loads, mount, setns. Arguments and credentials at entry, the
//! outcome and the credentials after at exit.

use crate::maps::{count_drop, filtered_out, offsets, submit, EVENTS};
use crate::syscalls::{entry_program, leave_pending, take_pending, tp_ret};
use crate::task::{
    fd_file, fd_file_name, fill_header, inode_and_magic, read_creds, read_kernel, user_str,
};
use aya_ebpf::{helpers::gen, macros::tracepoint, programs::TracePointContext};
use core::ffi::c_void;
use lumen_common::{drop_index, KernelOffsets, Pending, PrivOp, PrivRecord, RecordKind};

pub(crate) const PTRACE_ATTACH: u64 = 16;
pub(crate) const PTRACE_SEIZE: u64 = 0x4206;
pub(crate) const BPF_PROG_LOAD: u64 = 5;
/// `NSFS_MAGIC`: the file system of `/proc/<pid>/ns/*`.
const NSFS_MAGIC: u64 = 0x6e73_6673;

/// `bpf_attr.prog_name` for BPF_PROG_LOAD.
pub(crate) const BPF_ATTR_PROG_NAME: usize = 48;

/// At a syscall's entry: keep its arguments and the caller's credentials.
#[inline(always)]
pub(crate) fn stash(mut args: [u64; 6], op: PrivOp) {
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
    leave_pending(&pending);
}

/// At a syscall's exit: report it with its outcome and the credentials
/// before and after.
#[inline(always)]
pub(crate) fn finish(ret: i64) {
    let Some(o) = offsets() else { return };
    // Another family's op: not a privilege syscall (its entry was lost).
    take_pending(1..101, |pending| report(ret, o, pending));
}

#[inline(always)]
fn report(ret: i64, o: &KernelOffsets, pending: &Pending) {
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
        } else if pending.op == PrivOp::Setns as u32 {
            (*rec).args[2] = namespace_of_fd(o, pending.args[0]);
        } else if pending.op == PrivOp::BpfProgLoad as u32 {
            // Read at entry (see `stash`): type in args[3], name in args[4..6].
            (*rec).args[2] = pending.args[3];
            let str1 = &mut *core::ptr::addr_of_mut!((*rec).str1);
            str1[..8].copy_from_slice(&pending.args[4].to_ne_bytes());
            str1[8..16].copy_from_slice(&pending.args[5].to_ne_bytes());
            str1[16] = 0;
        }
    }
    submit(entry);
}

/// The namespace number of the namespace file open as `fd` (0 when it is
/// none).
#[inline(always)]
unsafe fn namespace_of_fd(o: &lumen_common::KernelOffsets, fd: u64) -> u64 {
    // SAFETY: probe reads only.
    unsafe {
        let file = fd_file(o, fd);
        if file == 0 {
            return 0;
        }
        match inode_and_magic(o, file) {
            (inode, NSFS_MAGIC) => read_kernel::<u64>(inode as *const u8, o.inode_ino),
            _ => 0,
        }
    }
}

#[tracepoint]
pub fn lumen_exit_privilege(ctx: TracePointContext) -> u32 {
    finish(tp_ret(&ctx));
    0
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
entry_program!(stash, lumen_enter_setns, PrivOp::Setns, 2);
