//! Lumen's kernel programs.
//!
//! Small programs, one per hook (Tetragon's habit): each fills a fixed-size
//! record from `lumen-common` directly in ring-buffer memory (the BPF stack is
//! 512 bytes; an exec record is larger) and submits it. When the ring buffer
//! is full the record is not written and a per-CPU drop counter is bumped, so
//! user space can report the loss instead of hiding it.
//!
//! Kernel structure offsets (task_struct, mm_struct) come from the running
//! kernel's BTF, resolved by user space and set as the `.rodata` `OFFSETS`
//! before the programs load: fields of BTF-typed pointers are read with
//! plain loads at them (`task::field`), the rest with probe reads.
//!
//! A module per hook family, as Tetragon's `bpf/process/` reads:
//! [`process`] (exec, exit, fork, OOM kills), [`file`], [`network`],
//! [`privilege`], [`sched`] (run-queue waits, kept in maps);
//! what they share: [`maps`], [`syscalls`] (entry/exit record layouts),
//! [`task`] (readers of the current task) and [`path`] (path walks).
//! One exit program per syscall family is loaded (and verified) once and
//! attached to every `sys_exit_*` tracepoint of the family: their records
//! share a layout. Opens, the most frequent calls, have an exit program of
//! their own per syscall and no entry program (`file::open_exit`).
#![no_std]
#![no_main]

mod file;
mod maps;
mod network;
mod path;
mod privilege;
mod process;
mod sched;
mod syscalls;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
