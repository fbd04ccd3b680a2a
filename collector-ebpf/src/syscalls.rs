//! What every syscall hook shares: the `syscalls:sys_enter_*` and
//! `sys_exit_*` record layouts, the pending entry a call leaves between its
//! entry and its exit, the arguments an exit reads from the saved registers
//! instead, and the macros that write entry and exit programs.

use crate::maps::{count_drop, PENDING};
use crate::task::{copy_words, current_task, field};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, gen},
    programs::TracePointContext,
    EbpfContext,
};
use lumen_common::{drop_index, KernelOffsets, Pending};

/// `syscalls:sys_enter_*` records: args at 16 + 8*i; `sys_exit_*`: ret at 16.
pub(crate) const SYSCALL_ARGS: usize = 16;

/// The `N` arguments of a `syscalls:sys_enter_*` record (the rest zero).
/// Direct loads: the record is the program's context (a probe-read helper
/// per argument cost more than the rest of a filtered-out call). `N` must
/// be the syscall's argument count: the kernel refuses to attach a program
/// that reads past the end of the tracepoint's record.
#[inline(always)]
pub(crate) fn tp_args<const N: usize>(ctx: &TracePointContext) -> [u64; 6] {
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
pub(crate) fn tp_ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: the exit record's first field after the 16-byte header is `ret`.
    unsafe { *(ctx.as_ptr() as *const i64).add(SYSCALL_ARGS / 8) }
}

/// The current syscall's arguments from the registers the kernel saved at
/// its entry, untouched until it returns but for the return value (see
/// `KernelOffsets::regs_args`): an exit program that reads them needs no
/// entry program, nor a pending entry between the two. The first four;
/// the rest zero. A debugger that rewrote them at entry changed the call
/// that ran too.
#[inline(always)]
pub(crate) fn saved_args(o: &KernelOffsets) -> [u64; 6] {
    // SAFETY: the helper takes the current task, BTF-typed, and returns
    // its saved registers, BTF-typed; `field` reads them.
    unsafe {
        let regs = gen::bpf_task_pt_regs(current_task() as *mut _) as *const u8;
        [
            field(regs, o.regs_args[0]),
            field(regs, o.regs_args[1]),
            field(regs, o.regs_args[2]),
            field(regs, o.regs_args[3]),
            0,
            0,
        ]
    }
}

/// Marks a thread's pending entry as taken by its exit.
const TAKEN: u32 = 0;

/// The words of a [`Pending`].
const PENDING_WORDS: usize = core::mem::size_of::<Pending>() / 8;

/// Leaves `pending` for the calling thread's exit. A thread keeps its entry
/// from one call to the next, rewritten in place and marked taken at exit:
/// an insert and a delete per call cost the LRU's free lists a cold element
/// each time (a tenth of a wopen storm's time). Threads that are gone are
/// evicted by the LRU.
#[inline(always)]
pub(crate) fn leave_pending(pending: &Pending) {
    let key = bpf_get_current_pid_tgid();
    if let Some(slot) = PENDING.get_ptr_mut(&key) {
        // SAFETY: a map value of Pending's size; only this thread uses it.
        unsafe {
            copy_words(
                pending as *const Pending as *const u64,
                slot as *mut u64,
                PENDING_WORDS,
            )
        };
        return;
    }
    if PENDING.insert(&key, pending, 0).is_err() {
        count_drop(drop_index::PENDING_FULL);
    }
}

/// Hands the calling thread's pending entry, if its op is in `range`, to
/// `exit` where it lies (no copy), then marks it taken.
#[inline(always)]
pub(crate) fn take_pending(range: core::ops::Range<u32>, exit: impl FnOnce(&Pending)) {
    let key = bpf_get_current_pid_tgid();
    let Some(slot) = PENDING.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: a map value of Pending's size; only this thread uses it.
    unsafe {
        if !range.contains(&(*slot).op) {
            return;
        }
        exit(&*slot);
        (*slot).op = TAKEN;
    }
}

/// The entry program `$name` for one syscall of `$nargs` arguments: hands
/// them and `$arg` (which syscall, in the family's terms) to `$handler`.
macro_rules! entry_program {
    ($handler:ident, $name:ident, $arg:expr, $nargs:literal) => {
        #[aya_ebpf::macros::tracepoint]
        pub fn $name(ctx: aya_ebpf::programs::TracePointContext) -> u32 {
            $handler($crate::syscalls::tp_args::<$nargs>(&ctx), $arg);
            0
        }
    };
}
pub(crate) use entry_program;

/// The exit program `$name` for one syscall: hands its return value and
/// `$arg` (which syscall) to `$handler`, which reads the arguments with
/// [`saved_args`].
macro_rules! exit_program {
    ($handler:ident, $name:ident, $arg:expr) => {
        #[aya_ebpf::macros::tracepoint]
        pub fn $name(ctx: aya_ebpf::programs::TracePointContext) -> u32 {
            $handler($crate::syscalls::tp_ret(&ctx), $arg);
            0
        }
    };
}
pub(crate) use exit_program;
