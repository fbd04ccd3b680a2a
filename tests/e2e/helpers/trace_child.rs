//! Process injection's first step: forks a child that waits, attaches to
//! it with `ptrace(PTRACE_ATTACH)`, detaches and ends it. Exits 0 when the
//! attach worked.
//!
//! Built by the e2e tests with `rustc` (std only, static): test input, not
//! part of Lumen.

use std::ffi::c_void;

extern "C" {
    fn fork() -> i32;
    fn pause() -> i32;
    fn ptrace(request: i32, ...) -> i64;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn kill(pid: i32, signal: i32) -> i32;
}

const PTRACE_ATTACH: i32 = 16;
const PTRACE_DETACH: i32 = 17;
const SIGKILL: i32 = 9;

fn main() {
    // SAFETY: the child only waits for a signal; the parent traces it with
    // the ptrace and waitpid calls, each given valid arguments.
    let attached = unsafe {
        let pid = fork();
        if pid == 0 {
            loop {
                pause();
            }
        }
        if pid < 0 {
            std::process::exit(2);
        }
        let null = std::ptr::null_mut::<c_void>();
        let rc = ptrace(PTRACE_ATTACH, pid, null, null);
        let mut status = 0;
        waitpid(pid, &mut status, 0);
        ptrace(PTRACE_DETACH, pid, null, null);
        kill(pid, SIGKILL);
        waitpid(pid, &mut status, 0);
        rc == 0
    };
    std::process::exit(if attached { 0 } else { 1 });
}
