//! File syscalls: opens with write intent or of sensitive paths, unlink,
//! rename, chmod, chown. Excluded prefixes stop a call at entry; the path
//! is resolved at exit.

use crate::maps::{
    count_drop, filtered_out, offsets, submit_flags, EVENTS, FILE_SCRATCH, FILTER, PREFIXES,
    SCRATCH,
};
use crate::path::{resolve_path, walk_fd};
use crate::syscalls::{
    entry_program, exit_program, leave_pending, saved_args, take_pending, tp_ret,
};
use crate::task::fill_header;
use aya_ebpf::{
    helpers::gen, macros::tracepoint, maps::lpm_trie::Key, programs::TracePointContext,
};
use core::ffi::c_void;
use lumen_common::{
    drop_index, Creds, FileOp, FileRecord, KernelOffsets, Pending, RecordKind, WalkedPath,
    COMPONENT_MAX, PATH_COMPONENTS, PREFIX_FLAG_EXCLUDED, PREFIX_FLAG_SENSITIVE, PREFIX_MAX,
};

/// Opens on a kernel that cannot give an exit program the saved arguments
/// (`bpf_task_pt_regs`, Linux 5.15): the entry programs keep them, and
/// this exit, shared by the four open syscalls, takes them.
#[tracepoint]
pub fn lumen_exit_opens(ctx: TracePointContext) -> u32 {
    let Some(o) = offsets() else { return 0 };
    take_pending(FileOp::Open as u32..FileOp::Unlink as u32, |p| {
        finish_file(tp_ret(&ctx), o, p)
    });
    0
}

#[tracepoint]
pub fn lumen_exit_file(ctx: TracePointContext) -> u32 {
    let Some(o) = offsets() else { return 0 };
    take_pending(FileOp::Unlink as u32..300, |p| {
        finish_file(tp_ret(&ctx), o, p)
    });
    0
}

pub(crate) const AT_FDCWD: u64 = -100i64 as u64;
pub(crate) const O_WRONLY: u64 = 0o1;
pub(crate) const O_RDWR: u64 = 0o2;
pub(crate) const O_CREAT: u64 = 0o100;
pub(crate) const O_TRUNC: u64 = 0o1000;

/// Syscall argument layouts, normalized at entry into `Pending.args`:
/// [dfd, path, flags|mode|uid, mode|gid, newdfd, newpath]; `Pending._pad`
/// carries the sensitive flag.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileCall {
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
pub(crate) fn file_wanted(a: [u64; 6], call: FileCall) -> Option<Pending> {
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
        let key = SCRATCH.get_ptr_mut(0)?;
        // SAFETY: per-CPU scratch; the helper validates the user address.
        // Bytes after the NUL may be stale, which cannot make a match (a
        // prefix holds no NUL, so it fails at the terminator).
        let (read, first) = unsafe {
            (*key).bits = (PREFIX_MAX * 8) as u32;
            let n = gen::bpf_probe_read_user_str(
                (*key).bytes.as_mut_ptr() as *mut c_void,
                PREFIX_MAX as u32,
                args[1] as *const c_void,
            );
            (n, (*key).bytes[0])
        };
        // SAFETY: the scratch key, filled above (its second byte is the
        // NUL or beyond it when the path is one byte long: no match then).
        let second = unsafe { (*key).bytes[1] };
        let may_match = FILTER.get(0).is_some_and(|f| f.may_match(second));
        if read > 1 && first == b'/' && may_match {
            // SAFETY: PrefixKey has the trie's key layout (bits, then data).
            let flags = unsafe { PREFIXES.get(&*(key as *const Key<[u8; PREFIX_MAX]>)) };
            let flags = flags.copied().unwrap_or(0);
            if flags & PREFIX_FLAG_EXCLUDED != 0 {
                return None;
            }
            sensitive = u32::from(flags & PREFIX_FLAG_SENSITIVE != 0);
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
pub(crate) fn stash_file(args: [u64; 6], call: FileCall) {
    let Some(o) = offsets() else { return };
    if filtered_out(o, true) {
        return;
    }
    let Some(pending) = file_wanted(args, call) else {
        return;
    };
    leave_pending(&pending);
}

/// At an open's exit, the only program an open runs (Linux 5.15+; before,
/// see [`lumen_exit_opens`]): a successful call,
/// in scope, wanted by `file_wanted` on the arguments the kernel saved (an
/// entry program keeping them for the exit cost a second tracepoint and a
/// pending-map entry per call, a tenth of a write-open's cost).
#[inline(always)]
pub(crate) fn open_exit(ret: i64, call: FileCall) {
    if ret < 0 {
        return;
    }
    let Some(o) = offsets() else { return };
    if filtered_out(o, true) {
        return;
    }
    if let Some(pending) = file_wanted(saved_args(o), call) {
        finish_file(ret, o, &pending);
    }
}

/// At a file syscall's exit: successful calls only (entry filtered the rest).
#[inline(always)]
pub(crate) fn finish_file(ret: i64, o: &KernelOffsets, pending: &Pending) {
    if ret < 0 {
        return;
    }
    let a = pending.args;
    let Some(rec) = FILE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch of FileRecord's size.
    unsafe {
        let path = core::ptr::addr_of_mut!((*rec).path);
        let path2 = core::ptr::addr_of_mut!((*rec).path2);
        (*path2).depth = 0;
        (*path2).truncated = 0;
        (*path2).tail[0] = 0;
        if pending.op == FileOp::Open as u32 {
            // The file that was opened: the new fd, resolved exactly.
            (*path).tail[0] = 0;
            walk_fd(path, o, ret as u64);
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
    // SAFETY: the scratch record was filled above.
    let len = unsafe { record_len(&*rec) };
    // SAFETY: `len` is at most the record's size (record_len's bound).
    let bytes = unsafe { core::slice::from_raw_parts(rec as *const u8, len) };
    if EVENTS.output(bytes, submit_flags(len as u64)).is_err() {
        count_drop(drop_index::FILE);
    }
}

/// The bytes of `rec` worth sending: an open's record ends after its walked
/// components (its caller's path string and a second path are unused),
/// other calls' after the path, a rename's carries both paths. An open of
/// a file two directories deep is 272 bytes of ring buffer instead of 3 KB.
#[inline(always)]
fn record_len(rec: &FileRecord) -> usize {
    let components =
        core::mem::offset_of!(FileRecord, path) + core::mem::offset_of!(WalkedPath, components);
    if rec.op == FileOp::Open as u32 {
        let depth = (rec.path.depth as usize).min(PATH_COMPONENTS);
        components + depth * COMPONENT_MAX
    } else if rec.op == FileOp::Rename as u32 {
        core::mem::size_of::<FileRecord>()
    } else {
        core::mem::offset_of!(FileRecord, path2)
    }
}

exit_program!(open_exit, lumen_exit_open, FileCall::Open);
exit_program!(open_exit, lumen_exit_openat, FileCall::Openat);
exit_program!(open_exit, lumen_exit_openat2, FileCall::Openat2);
exit_program!(open_exit, lumen_exit_creat, FileCall::Creat);
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
