//! Privilege escalation through a setuid-root program: installed with mode
//! 4755 and run by a user that is not root, it makes root its real user
//! too (`setuid(0)`), as an exploit's payload does. Exits 0 when that
//! worked.
//!
//! Built by the e2e tests with `rustc` (std only, static): test input, not
//! part of Lumen.

extern "C" {
    fn setuid(uid: u32) -> i32;
}

fn main() {
    // SAFETY: setuid has no memory preconditions.
    let rc = unsafe { setuid(0) };
    std::process::exit(if rc == 0 { 0 } else { 1 });
}
