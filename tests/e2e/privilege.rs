//! Privilege-relevant syscalls against the real kernel: the test performs
//! each one (in children where it changes credentials or mounts) and finds
//! the event with the right fields, failed attempts included.

use crate::support::{is_root, read_ndjson, wait_for_events, Lumen};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// The kernel events into ECS (and OCSF, unread here) files.
const CONFIG: &str = crate::support::KERNEL_TO_FILES;

const CAP_NET_RAW: u32 = 13;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops CAP_NET_RAW from the calling process (capget, then capset).
fn drop_net_raw() -> std::io::Result<()> {
    let mut header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        data[0].effective &= !(1 << CAP_NET_RAW);
        data[0].permitted &= !(1 << CAP_NET_RAW);
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Loads a two-instruction socket filter named `name`; returns its fd.
fn load_bpf_program(name: &str) -> i32 {
    // r0 = 0; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // BPF_PROG_TYPE_SOCKET_FILTER
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..48 + name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: BPF_PROG_LOAD with a zero-padded attr that outlives the call.
    unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len()) as i32 }
}

#[test]
fn privilege_changes_module_and_bpf_loads_and_mounts_are_reported() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let mut lumen = Lumen::start(CONFIG);
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    lumen.wait_attached();
    let modules_supported = std::path::Path::new("/proc/modules").exists();
    if !modules_supported {
        lumen.wait_for_log(
            "kernel built without module support",
            Duration::from_secs(1),
        );
    }

    // setgid + setuid to nobody (std does both before exec).
    let mut child = Command::new("/bin/true")
        .uid(65534)
        .gid(65534)
        .spawn()
        .unwrap();
    let setuid_pid = u64::from(child.id());
    assert!(child.wait().unwrap().success());

    // capset: drop CAP_NET_RAW.
    let mut cmd = Command::new("/bin/true");
    // SAFETY: only syscalls between fork and exec.
    unsafe { cmd.pre_exec(drop_net_raw) };
    let mut child = cmd.spawn().unwrap();
    let capset_pid = u64::from(child.id());
    assert!(child.wait().unwrap().success());

    // ptrace attach to a sleeping child, then detach.
    let mut sleeper = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let target = sleeper.id() as i32;
    // SAFETY: attach, wait for the stop, detach: the classic sequence.
    unsafe {
        assert_eq!(libc::ptrace(libc::PTRACE_ATTACH, target, 0, 0), 0);
        let mut status = 0;
        libc::waitpid(target, &mut status, 0);
        libc::ptrace(libc::PTRACE_DETACH, target, 0, 0);
    }
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();

    // finit_module on a file that is not a module: refused, and reported.
    let fake = lumen.path("lumen-fake.ko");
    std::fs::write(&fake, b"not an ELF module").unwrap();
    let file = std::fs::File::open(&fake).unwrap();
    // SAFETY: finit_module(fd, "", 0) on a file we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            c"".as_ptr(),
            0,
        )
    };
    assert!(rc < 0, "a fake module must not load");
    if !modules_supported {
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOSYS)
        );
    }

    // A real BPF program load.
    let prog = load_bpf_program("lumen_e2e");
    assert!(
        prog >= 0,
        "BPF_PROG_LOAD: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: closing the fd we got.
    unsafe { libc::close(prog) };

    // A tmpfs mount in a private mount namespace of a child.
    let target_dir = lumen.path("mnt");
    std::fs::create_dir(&target_dir).unwrap();
    let dir_c = std::ffi::CString::new(target_dir.to_str().unwrap()).unwrap();
    let mut cmd = Command::new("/bin/true");
    // SAFETY: unshare + mount syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                || libc::mount(
                    c"lumen-e2e".as_ptr(),
                    dir_c.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = cmd.spawn().unwrap();
    let mount_pid = u64::from(child.id());
    assert!(child.wait().unwrap().success());

    let out = lumen.path("ecs.ndjson");
    let action = |e: &serde_json::Value, a: &str| e["event"]["action"] == a;
    let found = |evs: &[serde_json::Value], a: &str, pred: &dyn Fn(&serde_json::Value) -> bool| {
        evs.iter().any(|e| action(e, a) && pred(e))
    };
    let pid_is = |p: u64| move |e: &serde_json::Value| e["process"]["pid"].as_u64() == Some(p);
    let events = wait_for_events(&out, Duration::from_secs(20), |evs| {
        found(evs, "setuid", &pid_is(setuid_pid))
            && found(evs, "setgid", &pid_is(setuid_pid))
            && found(evs, "capset", &pid_is(capset_pid))
            && found(evs, "ptrace_attach", &|e| {
                e["lumen"]["privilege"]["target_pid"].as_i64() == Some(i64::from(target))
            })
            && (!modules_supported
                || found(evs, "finit_module", &|e| {
                    e["file"]["name"] == "lumen-fake.ko"
                }))
            && found(evs, "bpf_prog_load", &|e| {
                e["lumen"]["privilege"]["bpf_prog_name"] == "lumen_e2e"
            })
            && found(evs, "mount", &|e| {
                e["lumen"]["privilege"]["mount_source"] == "lumen-e2e"
            })
    });
    let get = |a: &str, pred: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        events
            .iter()
            .find(|e| action(e, a) && pred(e))
            .cloned()
            .unwrap()
    };

    let setuid = get("setuid", &pid_is(setuid_pid));
    assert_eq!(setuid["event"]["outcome"], "success");
    assert_eq!(setuid["lumen"]["privilege"]["requested"][0], 65534);
    assert_eq!(setuid["lumen"]["privilege"]["old"]["uid"], 0);
    assert_eq!(setuid["lumen"]["privilege"]["new"]["uid"], 65534);
    assert_eq!(setuid["user"]["id"], "0");
    assert_eq!(setuid["user"]["effective"]["id"], "65534");
    let setgid = get("setgid", &pid_is(setuid_pid));
    assert_eq!(setgid["lumen"]["privilege"]["new"]["gid"], 65534);

    let capset = get("capset", &pid_is(capset_pid));
    let old = capset["lumen"]["privilege"]["old"]["cap_effective"]
        .as_u64()
        .unwrap();
    let new = capset["lumen"]["privilege"]["new"]["cap_effective"]
        .as_u64()
        .unwrap();
    assert!(
        old & (1 << CAP_NET_RAW) != 0 && new & (1 << CAP_NET_RAW) == 0,
        "{old:#x} -> {new:#x}"
    );
    assert_eq!(old & !(1 << CAP_NET_RAW), new, "only CAP_NET_RAW changed");

    let ptrace = get("ptrace_attach", &|e| {
        e["lumen"]["privilege"]["target_pid"].as_i64() == Some(i64::from(target))
    });
    assert_eq!(ptrace["event"]["outcome"], "success");
    assert_eq!(
        ptrace["process"]["pid"].as_u64(),
        Some(u64::from(std::process::id()))
    );
    assert_eq!(ptrace["event"]["category"], serde_json::json!(["process"]));

    if modules_supported {
        let module = get("finit_module", &|e| e["file"]["name"] == "lumen-fake.ko");
        assert_eq!(module["event"]["outcome"], "failure");
        assert!(module["lumen"]["privilege"]["result"].as_i64().unwrap() < 0);
        assert_eq!(module["event"]["category"], serde_json::json!(["driver"]));
    }

    let bpf = get("bpf_prog_load", &|e| {
        e["lumen"]["privilege"]["bpf_prog_name"] == "lumen_e2e"
    });
    assert_eq!(bpf["event"]["outcome"], "success");
    assert_eq!(bpf["lumen"]["privilege"]["bpf_prog_type"], 1);

    let mount = get("mount", &|e| {
        e["lumen"]["privilege"]["mount_source"] == "lumen-e2e"
    });
    assert_eq!(mount["process"]["pid"].as_u64(), Some(mount_pid));
    assert_eq!(mount["file"]["path"], target_dir.to_str().unwrap());
    assert_eq!(mount["lumen"]["privilege"]["mount_fstype"], "tmpfs");
    assert_eq!(mount["event"]["outcome"], "success");

    // Unrelated ptrace requests and bpf commands are filtered in the kernel.
    assert!(read_ndjson(&out)
        .iter()
        .all(|e| !action(e, "ptrace_attach")
            || e["lumen"]["privilege"]["target_pid"].as_i64().is_some()));
    let (status, _) = lumen.stop();
    assert!(status.success());
}
