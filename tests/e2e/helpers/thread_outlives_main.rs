//! A process whose main thread ends first, as Go and Java runtimes let it:
//! the main thread leaves with the `exit` system call (that thread only,
//! the way `pthread_exit` ends), a second thread named `worker-thread`
//! waits until the main thread is gone, prints `main thread gone`, opens
//! `argv[1]` for writing, connects to `argv[2]`, and ends the process with
//! status 3.
//!
//! Built by the ebpf e2e test with `rustc` (std only): it is test input,
//! not part of Lumen.

use std::io::Write;

extern "C" {
    fn syscall(number: i64, ...) -> i64;
}

#[cfg(target_arch = "x86_64")]
const SYS_EXIT: i64 = 60;
#[cfg(target_arch = "aarch64")]
const SYS_EXIT: i64 = 93;

/// Whether the thread `tid` of this process has ended (a zombie leader).
fn ended(tid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

fn start_worker() {
    let mut args = std::env::args().skip(1);
    let (path, addr) = match (args.next(), args.next()) {
        (Some(p), Some(a)) => (p, a),
        _ => {
            eprintln!("usage: thread_outlives_main <file to write> <host:port to connect>");
            std::process::exit(2);
        }
    };
    let main_tid = std::process::id();
    let spawned = std::thread::Builder::new()
        .name("worker-thread".into())
        .spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !ended(main_tid) {
                if std::time::Instant::now() > deadline {
                    eprintln!("the main thread did not end");
                    std::process::exit(4);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            println!("main thread gone");
            let _ = std::io::stdout().flush();
            let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(b"x"));
            let connected = std::net::TcpStream::connect(&addr);
            if written.is_err() || connected.is_err() {
                eprintln!("write: {written:?}, connect: {connected:?}");
                std::process::exit(5);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            std::process::exit(3);
        });
    if spawned.is_err() {
        std::process::exit(6);
    }
}

fn main() {
    start_worker();
    // SAFETY: ends the calling thread only; nothing on this stack needs
    // dropping, and the process lives on in the worker.
    unsafe { syscall(SYS_EXIT, 0i64) };
    unreachable!("the exit system call returned");
}
