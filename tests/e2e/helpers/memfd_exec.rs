//! Fileless execution as droppers do it: copies the program `argv[1]` into
//! an anonymous memory file (`memfd_create`) and executes that with the
//! remaining arguments (`fexecve`), so nothing on a disk holds what runs.
//!
//! Built by the ebpf e2e test with `rustc` (std only): it is test input,
//! not part of Lumen.

use std::ffi::{c_char, c_int, c_uint, CString};
use std::io::Write;
use std::os::fd::FromRawFd;

extern "C" {
    fn memfd_create(name: *const c_char, flags: c_uint) -> c_int;
    fn fexecve(fd: c_int, argv: *const *const c_char, envp: *const *const c_char) -> c_int;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(program) = args.first() else {
        eprintln!("usage: memfd_exec <program> [arguments…]");
        std::process::exit(2);
    };
    let bytes = std::fs::read(program).unwrap_or_else(|e| {
        eprintln!("{program}: {e}");
        std::process::exit(2)
    });
    let name = CString::new("payload").unwrap_or_default();
    // SAFETY: a NUL-terminated name; no flags (the fd is inherited by the
    // exec, which needs it).
    let fd = unsafe { memfd_create(name.as_ptr(), 0) };
    if fd < 0 {
        eprintln!("memfd_create: {}", std::io::Error::last_os_error());
        std::process::exit(3);
    }
    // SAFETY: `fd` was just created and is owned here.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    if let Err(e) = file.write_all(&bytes) {
        eprintln!("writing the memfd: {e}");
        std::process::exit(3);
    }
    let argv: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()).unwrap_or_default())
        .collect();
    let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let env: [*const c_char; 1] = [std::ptr::null()];
    // SAFETY: NULL-terminated arrays of NUL-terminated strings that outlive
    // the call; on success it does not return.
    unsafe { fexecve(fd, argv_ptrs.as_ptr(), env.as_ptr()) };
    eprintln!("fexecve: {}", std::io::Error::last_os_error());
    std::process::exit(4);
}
