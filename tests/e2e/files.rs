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

#[test]
fn writes_sensitive_reads_renames_modes_owners_and_unlinks_are_reported_with_absolute_paths() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let mut lumen = Lumen::start(CONFIG);
    lumen.wait_for_log(
        "every privilege, network and file tracepoint this kernel has attached",
        Duration::from_secs(60),
    );
    let dir = lumen.dir.path().to_path_buf();
    let d = |name: &str| dir.join(name).to_string_lossy().into_owned();
    std::fs::create_dir(dir.join("secret")).unwrap();
    std::fs::write(dir.join("secret/key"), b"k").unwrap();
    std::fs::write(dir.join("plain.txt"), b"p").unwrap();

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
