//! File events against the real kernel: writes (absolute and relative to
//! the cwd), a sensitive read, a plain read that must not be reported,
//! rename, chmod, chown, unlink, and an excluded path.

use crate::support::{is_root, read_ndjson, wait_for_events, Lumen};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = r#"
[sources.kernel]
type = "ebpf"
sensitive_paths = ["/etc/shadow", "{dir}/secret/"]

[sinks.ecs]
type = "file"
inputs = ["kernel"]
schema = "ecs"
path = "{dir}/ecs.ndjson"
"#;

fn file_event<'a>(events: &'a [Value], action: &str, path: &str) -> Option<&'a Value> {
    events.iter().find(|e| {
        e["event"]["dataset"] == "lumen.file"
            && e["event"]["action"] == action
            && e["file"]["path"] == path
    })
}

/// Lumen attached, and in its directory a sensitive `secret/key` and a
/// plain `plain.txt`, both written (so reported) once.
fn start_with_files(envs: &[(&str, &str)]) -> (Lumen, std::path::PathBuf) {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let dir = tempfile::tempdir().unwrap();
    let mut lumen = Lumen::start_with_args(dir, CONFIG, std::process::Stdio::null(), &[], envs);
    lumen.wait_attached();
    let dir = lumen.dir.path().to_path_buf();
    std::fs::create_dir(dir.join("secret")).unwrap();
    std::fs::write(dir.join("secret/key"), b"k").unwrap();
    std::fs::write(dir.join("plain.txt"), b"p").unwrap();
    (lumen, dir)
}

#[test]
fn writes_sensitive_reads_renames_modes_owners_and_unlinks_are_reported_with_absolute_paths() {
    let (mut lumen, dir) = start_with_files(&[]);
    let d = |name: &str| dir.join(name).to_string_lossy().into_owned();

    // Writes: absolute, and relative to a child's cwd.
    std::fs::write(d("created.txt"), b"x").unwrap();
    let status = Command::new("/bin/sh")
        .args(["-c", "echo rel > relative.txt && cat plain.txt secret/key > /dev/null && echo hi > /dev/null"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    // Reads: one sensitive (absolute), one not.
    std::fs::read(d("secret/key")).unwrap();
    std::fs::read(d("plain.txt")).unwrap();
    std::fs::rename(d("created.txt"), d("moved.txt")).unwrap();
    std::fs::set_permissions(d("moved.txt"), std::fs::Permissions::from_mode(0o4711)).unwrap();
    std::os::unix::fs::chown(d("moved.txt"), Some(65534), Some(65534)).unwrap();
    std::fs::remove_file(d("moved.txt")).unwrap();

    let out = lumen.path("ecs.ndjson");
    // The unlink is the last action; by then everything before it is in.
    wait_for_events(&out, Duration::from_secs(20), |evs| {
        file_event(evs, "unlink", &d("moved.txt")).is_some()
    });
    std::thread::sleep(Duration::from_millis(500));
    let events = read_ndjson(&out);
    let summary = || -> String {
        events
            .iter()
            .filter(|e| e["event"]["dataset"] == "lumen.file")
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["event"]["action"], e["file"]["path"], e["process"]["executable"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        file_event(&events, "open", &d("relative.txt")).is_some(),
        "relative write:\n{}",
        summary()
    );
    let created = file_event(&events, "open", &d("created.txt"))
        .unwrap_or_else(|| panic!("created:\n{}", summary()));
    assert_eq!(created["event"]["type"], serde_json::json!(["creation"]));
    assert_eq!(created["lumen"]["file"]["write"], true);
    assert_eq!(
        created["process"]["pid"].as_u64(),
        Some(u64::from(std::process::id()))
    );
    assert_eq!(created["file"]["name"], "created.txt");
    assert_eq!(created["file"]["extension"], "txt");

    let relative = file_event(&events, "open", &d("relative.txt")).unwrap();
    // The path execve was given (exec events carry it as the kernel saw it).
    assert_eq!(relative["process"]["executable"], "/bin/sh");

    // The sensitive reads: by this process (absolute path) and by cat (relative).
    let secret: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["action"] == "open" && e["file"]["path"] == d("secret/key").as_str())
        .collect();
    assert!(secret
        .iter()
        .any(|e| e["event"]["type"] == serde_json::json!(["access"])
            && e["lumen"]["file"]["sensitive"] == true));
    // Plain reads are filtered in the kernel; /dev/ is excluded.
    // Only the write that created plain.txt is reported, not its reads.
    let plain: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["action"] == "open" && e["file"]["path"] == d("plain.txt").as_str())
        .collect();
    assert!(
        plain.iter().all(|e| e["lumen"]["file"]["write"] == true),
        "a plain read was reported:\n{}",
        summary()
    );
    assert!(!events
        .iter()
        .any(|e| e["event"]["dataset"] == "lumen.file" && e["file"]["path"] == "/dev/null"));

    let renamed = file_event(&events, "rename", &d("moved.txt")).unwrap();
    assert_eq!(
        renamed["lumen"]["file"]["original_path"],
        d("created.txt").as_str()
    );
    let chmod = file_event(&events, "chmod", &d("moved.txt")).unwrap();
    assert_eq!(chmod["file"]["mode"], "4711");
    let chown = file_event(&events, "chown", &d("moved.txt")).unwrap();
    assert_eq!(
        (chown["file"]["uid"].as_str(), chown["file"]["gid"].as_str()),
        (Some("65534"), Some("65534"))
    );
    let unlink = file_event(&events, "unlink", &d("moved.txt")).unwrap();
    assert_eq!(unlink["event"]["type"], serde_json::json!(["deletion"]));

    assert!(read_ndjson(&out)
        .iter()
        .all(|e| e["event"]["dataset"] != "lumen.file"
            || e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with('/'))));
    let (status, _) = lumen.stop();
    assert!(status.success());
}

/// The path of an opened file is walked from its `struct file`, typed
/// with the `bpf_rdonly_cast` kfunc where the kernel has it: deep in a
/// directory, on another mount (/dev/shm: tmpfs on devtmpfs on the root,
/// where the typed walk hands over to probe reads at each mount's root),
/// through a descriptor past the 64 a process starts with, relative to a
/// directory descriptor (unlinkat), and from a child's working directory.
#[test]
fn paths_are_walked_from_open_files_across_mounts_and_descriptors() {
    walked_paths(
        &[("LUMEN_LOG", "info,lumen::sources::ebpf=debug")],
        "bpf_rdonly_cast calls linked",
    );
}

/// The same as on kernels without the kfunc (before Linux 6.2): every
/// field of the walk probe-read.
#[test]
fn without_the_kfunc_paths_are_probe_read_and_the_same() {
    walked_paths(&[("LUMEN_TEST_NO_KFUNC", "1")], "no bpf_rdonly_cast kfunc");
}

/// The walks, with `envs`, once Lumen has logged `how` it walks.
fn walked_paths(envs: &[(&str, &str)], how: &str) {
    let (mut lumen, dir) = start_with_files(envs);
    lumen.wait_for_log(how, Duration::from_secs(5));
    let d = |name: &str| dir.join(name).to_string_lossy().into_owned();
    std::fs::create_dir_all(d("a/b/c/d")).unwrap();
    std::fs::write(d("a/b/c/d/deep.txt"), b"x").unwrap();
    // Named after Lumen's own (unique) directory: the tests run in parallel.
    let unique = dir.file_name().unwrap().to_string_lossy();
    let shm = format!("/dev/shm/lumen-e2e-{unique}");
    std::fs::write(&shm, b"x").unwrap();
    std::fs::remove_file(&shm).unwrap();
    // 70 descriptors held open: the next one is past the first 64.
    let held: Vec<std::fs::File> = (0..70)
        .map(|_| std::fs::File::open(d("plain.txt")).unwrap())
        .collect();
    let high = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(d("high-fd.txt"))
        .unwrap();
    use std::os::fd::AsRawFd;
    assert!(high.as_raw_fd() >= 64, "fd {}", high.as_raw_fd());
    drop((held, high));
    let sub = std::fs::File::open(d("a/b")).unwrap();
    // SAFETY: a NUL-terminated relative path and a directory descriptor.
    let rc = unsafe { libc::unlinkat(sub.as_raw_fd(), path_arg("c/d/deep.txt").as_ptr(), 0) };
    assert_eq!(rc, 0);
    let status = Command::new("/bin/sh")
        .args(["-c", "echo w > c/from-cwd.txt"])
        .current_dir(d("a/b"))
        .status()
        .unwrap();
    assert!(status.success());

    let out = lumen.path("ecs.ndjson");
    wait_for_events(&out, Duration::from_secs(20), |evs| {
        file_event(evs, "open", &d("a/b/c/from-cwd.txt")).is_some()
    });
    let events = read_ndjson(&out);
    for (action, path) in [
        ("open", d("a/b/c/d/deep.txt")),
        ("open", shm.clone()),
        ("unlink", shm.clone()),
        ("open", d("high-fd.txt")),
        ("unlink", d("a/b/c/d/deep.txt")),
        ("open", d("a/b/c/from-cwd.txt")),
    ] {
        assert!(
            file_event(&events, action, &path).is_some(),
            "no {action} of {path}: {:?}",
            events
                .iter()
                .filter(|e| e["event"]["dataset"] == "lumen.file")
                .map(|e| format!("{} {}", e["event"]["action"], e["file"]["path"]))
                .collect::<Vec<_>>()
        );
    }
    let (status, _) = lumen.stop();
    assert!(status.success());
}

/// `syscall(2)` with a C path.
fn path_arg(path: &str) -> std::ffi::CString {
    std::ffi::CString::new(path).unwrap()
}

/// The open syscalls have no entry program: their exit reads the
/// arguments the kernel saved at entry, at a different position for each.
/// Each reports its own flags and mode, a directory descriptor resolves,
/// and neither a read-only open of a plain file nor a failed one is
/// reported, whichever syscall made it.
#[test]
fn each_open_syscall_reports_its_own_arguments() {
    each_open_syscall(&[]);
}

/// The same where exit programs cannot read saved arguments (before Linux
/// 5.15): each open keeps an entry program, and one exit takes them all.
#[test]
fn without_saved_arguments_opens_keep_an_entry_program_and_report_the_same() {
    each_open_syscall(&[("LUMEN_TEST_NO_SAVED_ARGS", "1")]);
}

fn each_open_syscall(envs: &[(&str, &str)]) {
    let (mut lumen, dir) = start_with_files(envs);
    if !envs.is_empty() {
        lumen.wait_for_log("opens keep an entry program", Duration::from_secs(5));
    }
    let d = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (rd, wr, rw) = (libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR);
    let (creat, excl, trunc) = (libc::O_CREAT, libc::O_EXCL, libc::O_TRUNC);
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let openat2 = |path: &str, flags: i32, mode: u64| -> i64 {
        let how = OpenHow {
            flags: flags as u64,
            mode,
            resolve: 0,
        };
        // SAFETY: a NUL-terminated path and an open_how of the size given.
        unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                path_arg(path).as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        }
    };
    let dirfd = std::fs::File::open(&dir).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: NUL-terminated paths; every descriptor is closed at the end.
    let fds = unsafe {
        [
            libc::syscall(
                libc::SYS_open,
                path_arg(&d("by-open")).as_ptr(),
                wr | creat | excl,
                0o640,
            ),
            libc::syscall(libc::SYS_creat, path_arg(&d("by-creat")).as_ptr(), 0o600),
            libc::syscall(
                libc::SYS_openat,
                dirfd.as_raw_fd(),
                path_arg("by-openat").as_ptr(),
                rw | creat,
                0o604,
            ),
            openat2(&d("by-openat2"), wr | creat | trunc, 0o620),
            // Read-only: a sensitive file is reported, a plain one is not.
            openat2(&d("secret/key"), rd, 0),
            libc::syscall(libc::SYS_open, path_arg(&d("plain.txt")).as_ptr(), rd, 0),
            libc::syscall(
                libc::SYS_openat,
                dirfd.as_raw_fd(),
                path_arg("plain.txt").as_ptr(),
                rd,
                0,
            ),
            openat2(&d("plain.txt"), rd, 0),
        ]
    };
    assert!(fds.iter().all(|&fd| fd >= 0), "{fds:?}");
    // Failed: no such file, without O_CREAT, through each syscall.
    // SAFETY: as above.
    let failed = unsafe {
        [
            libc::syscall(libc::SYS_open, path_arg(&d("absent")).as_ptr(), wr, 0),
            libc::syscall(
                libc::SYS_openat,
                dirfd.as_raw_fd(),
                path_arg("absent").as_ptr(),
                wr,
                0,
            ),
            openat2(&d("absent"), wr, 0),
        ]
    };
    assert_eq!(failed, [-1, -1, -1]);
    for fd in fds {
        // SAFETY: descriptors opened above.
        unsafe { libc::close(fd as i32) };
    }
    std::fs::remove_file(d("by-open")).unwrap();

    let out = lumen.path("ecs.ndjson");
    wait_for_events(&out, Duration::from_secs(20), |evs| {
        file_event(evs, "unlink", &d("by-open")).is_some()
    });
    let events = read_ndjson(&out);
    let opened = |name: &str| {
        file_event(&events, "open", &d(name)).unwrap_or_else(|| panic!("no open of {name}"))
    };
    for (name, flags, mode) in [
        ("by-open", wr | creat | excl, "0640"),
        ("by-creat", wr | creat | trunc, "0600"),
        ("by-openat", rw | creat, "0604"),
        ("by-openat2", wr | creat | trunc, "0620"),
    ] {
        let e = opened(name);
        assert_eq!(e["lumen"]["file"]["flags"], flags, "{name}: {e}");
        assert_eq!(e["file"]["mode"], mode, "{name}: {e}");
        assert_eq!(
            e["event"]["type"],
            serde_json::json!(["creation"]),
            "{name}"
        );
        assert_eq!(e["process"]["pid"], std::process::id(), "{name}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["file"]["path"] == d("secret/key").as_str()
                && e["lumen"]["file"]["write"] == false
                && e["lumen"]["file"]["sensitive"] == true),
        "the sensitive read (openat2) was not reported"
    );
    let plain_reads = events
        .iter()
        .filter(|e| e["file"]["path"] == d("plain.txt").as_str())
        .filter(|e| e["lumen"]["file"]["write"] == false)
        .count();
    assert_eq!(plain_reads, 0, "a plain read was reported");
    assert!(
        file_event(&events, "open", &d("absent")).is_none(),
        "a failed open was reported"
    );
    let (status, _) = lumen.stop();
    assert!(status.success());
}
