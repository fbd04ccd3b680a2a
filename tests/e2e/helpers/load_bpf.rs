//! A BPF program load from a container: asks the kernel to load a trivial
//! socket filter (`bpf(BPF_PROG_LOAD)`, "return 0"). Without CAP_BPF the
//! kernel refuses; the attempt is what is being tested. Exits 0 when
//! loaded.
//!
//! Built by the e2e tests with `rustc` (std only, static): test input, not
//! part of Lumen.

extern "C" {
    fn syscall(number: i64, ...) -> i64;
}

#[cfg(target_arch = "x86_64")]
const SYS_BPF: i64 = 321;
#[cfg(target_arch = "aarch64")]
const SYS_BPF: i64 = 280;
const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// The head of `union bpf_attr` for BPF_PROG_LOAD, up to `prog_name`.
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

fn main() {
    // r0 = 0; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"lumen_e2e");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
    };
    // SAFETY: a valid bpf_attr head whose pointers outlive the call.
    let rc = unsafe {
        syscall(
            SYS_BPF,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>() as i64,
        )
    };
    std::process::exit(if rc >= 0 { 0 } else { 1 });
}
