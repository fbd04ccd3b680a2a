//! Restarts of the ebpf source with `pin_path`: the programs a stopping
//! Lumen leaves attached record what happens until the next one adopts
//! them; after the grace they record nothing, and the gap is reported; a
//! successor with other settings attaches its own and reports the gap; of
//! two Lumens sharing a pin_path, the second to stop detaches its own.
//! Needs root (CI runs as root) and bpffs (Lumen mounts it).

use crate::support::{component_total, is_root, read_ndjson, wait_for_events, Lumen};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A pin directory of its own per test; removed (programs detached) at
/// the end, whatever happens.
struct PinDir(PathBuf);

impl PinDir {
    fn new(test: &str) -> PinDir {
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/lumen-e2e-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        PinDir(dir)
    }

    fn config(&self, extra: &str) -> String {
        format!(
            r#"
data_dir = "{{dir}}/data"
[sources.kernel]
type = "ebpf"
pin_path = "{}"
{extra}

[sinks.ecs]
type = "file"
inputs = ["kernel"]
schema = "ecs"
path = "{{dir}}/ecs.ndjson"
"#,
            self.0.display()
        )
    }

    fn links(&self) -> usize {
        std::fs::read_dir(&self.0)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("link-"))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `/bin/sh -c 'exit 0' <marker>`; its pid.
fn run_marker(marker: &str) -> u64 {
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 0", marker])
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    assert!(child.wait().unwrap().success());
    pid
}

fn is_exec_of(e: &serde_json::Value, pid: u64) -> bool {
    e["process"]["pid"].as_u64() == Some(pid) && e["event"]["action"] == "exec"
}

/// Stops are taken one at a time: on a machine without bpffs mounted the
/// first to hand off mounts it, and two mounting at the same instant
/// would stack two (Lumen checks, then mounts).
static STOPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn stopped(lumen: &mut Lumen) -> Vec<String> {
    let _one_at_a_time = STOPS.lock().unwrap_or_else(|e| e.into_inner());
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    log
}

fn logged(log: &[String], needle: &str) -> bool {
    log.iter().any(|l| l.contains(needle))
}

#[test]
fn a_restart_with_pin_path_sees_what_happened_while_no_lumen_ran() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let pins = PinDir::new("restart");
    let config = pins.config("");
    let mut first = Lumen::start(&config);
    first.wait_for_log("ebpf source attached", Duration::from_secs(60));
    let log = stopped(&mut first);
    assert!(logged(&log, "programs left attached"), "{}", log.join("\n"));
    assert!(pins.links() > 40, "links pinned: {}", pins.links());

    // Between the two Lumens: nobody reads, the programs still record.
    let pid = run_marker("lumen-e2e-between-lumens");

    let mut second = Lumen::start(&config);
    let events = wait_for_events(&second.path("ecs.ndjson"), Duration::from_secs(30), |evs| {
        evs.iter().any(|e| is_exec_of(e, pid))
    });
    let exec = events.iter().find(|e| is_exec_of(e, pid)).unwrap();
    assert_eq!(
        exec["process"]["args"],
        serde_json::json!(["/bin/sh", "-c", "exit 0", "lumen-e2e-between-lumens"])
    );
    second.wait_for_log("adopted the programs", Duration::from_secs(5));
    assert!(!pins.0.exists(), "the adopter holds the programs, unpinned");
    // What it adopted is what it reports it can see.
    assert!(
        logged(&second.log(), crate::support::ALL_ATTACHED),
        "{}",
        second.log().join("\n")
    );
    // Nothing went unwatched, so no gap is reported.
    assert!(!events
        .iter()
        .any(|e| e["event"]["action"] == "kernel_events_unwatched"));
    // And it reads on as usual.
    let pid = run_marker("lumen-e2e-after-adoption");
    wait_for_events(&second.path("ecs.ndjson"), Duration::from_secs(20), |evs| {
        evs.iter().any(|e| is_exec_of(e, pid))
    });
    stopped(&mut second);
}

/// Two Lumens given one `pin_path`: the first to stop leaves its programs
/// there; the second cannot, says why, and detaches its own (its stop is
/// a plain one); the next Lumen adopts the first's and reads what they
/// recorded after both stopped.
#[test]
fn two_lumens_with_one_pin_path_leave_one_set_of_programs() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let pins = PinDir::new("two");
    let config = pins.config("");
    let mut first = Lumen::start(&config);
    let mut second = Lumen::start(&config);
    for lumen in [&mut first, &mut second] {
        lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    }
    let log = stopped(&mut first);
    assert!(logged(&log, "programs left attached"), "{}", log.join("\n"));
    let left = pins.links();
    assert!(left > 40, "links pinned: {left}");

    let log = stopped(&mut second);
    assert!(
        logged(&log, "already holds another Lumen's programs"),
        "{}",
        log.join("\n")
    );
    assert_eq!(pins.links(), left, "the second left nothing of its own");

    let pid = run_marker("lumen-e2e-after-both-stopped");
    let mut third = Lumen::start(&config);
    wait_for_events(&third.path("ecs.ndjson"), Duration::from_secs(30), |evs| {
        evs.iter().any(|e| is_exec_of(e, pid))
    });
    third.wait_for_log("adopted the programs", Duration::from_secs(5));
    stopped(&mut third);
}

#[test]
fn a_reload_that_leaves_the_kernel_settings_alone_hands_the_programs_over_in_place() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let pins = PinDir::new("reload");
    let mut lumen = Lumen::start(&pins.config(""));
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    // Only the resource sampling's interval changes: a new instance of the
    // source, the same programs and settings in the kernel.
    let path = lumen.path("lumen.toml");
    let changed = format!(
        "{}\n[sources.kernel.resources]\ninterval_secs = 7\n",
        std::fs::read_to_string(&path).unwrap()
    );
    std::fs::write(&path, changed).unwrap();
    lumen.signal(libc::SIGHUP);
    lumen.wait_for_log("reload applied", Duration::from_secs(30));
    let log = lumen.log();
    assert!(
        logged(&log, "programs left attached") && logged(&log, "adopted the programs"),
        "{}",
        log.join("\n")
    );
    assert!(!pins.0.exists(), "the new instance holds the programs");
    let pid = run_marker("lumen-e2e-after-reload");
    let events = wait_for_events(&lumen.path("ecs.ndjson"), Duration::from_secs(20), |evs| {
        evs.iter().any(|e| is_exec_of(e, pid))
    });
    assert!(!events
        .iter()
        .any(|e| e["event"]["action"] == "kernel_events_unwatched"));
    stopped(&mut lumen);
}

#[test]
fn after_the_grace_the_programs_record_nothing_and_the_gap_is_reported() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let pins = PinDir::new("grace");
    let config = pins.config("handoff_grace_secs = 1");
    let mut first = Lumen::start(&config);
    first.wait_for_log("ebpf source attached", Duration::from_secs(60));
    stopped(&mut first);
    std::thread::sleep(Duration::from_millis(2500));
    let idle = run_marker("lumen-e2e-after-the-grace");

    let mut second = Lumen::start(&config);
    second.wait_for_log("adopted the programs", Duration::from_secs(60));
    let later = run_marker("lumen-e2e-adopted-late");
    let events = wait_for_events(&second.path("ecs.ndjson"), Duration::from_secs(30), |evs| {
        evs.iter().any(|e| is_exec_of(e, later))
    });
    assert!(
        !events.iter().any(|e| is_exec_of(e, idle)),
        "idle programs recorded an exec after the grace"
    );
    let gap = events
        .iter()
        .find(|e| e["event"]["action"] == "kernel_events_unwatched")
        .expect("the gap is reported");
    assert_eq!(gap["event"]["kind"], "pipeline_error");
    let reason = gap["lumen"]["loss"]["unwatched_reason"].as_str().unwrap();
    assert!(reason.contains("handoff_grace_secs ran out"), "{reason}");
    // The gap runs from the grace's end to the adoption: at least the
    // 1.5 s slept past the grace.
    let ms = |key: &str| {
        let t = gap["event"][key].as_str().unwrap();
        chrono_ms(t)
    };
    assert!(ms("end") - ms("start") >= 1400, "{gap}");
    stopped(&mut second);
}

#[test]
fn a_successor_with_other_settings_attaches_its_own_and_reports_the_gap() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let pins = PinDir::new("settings");
    let mut first = Lumen::start(&pins.config(""));
    first.wait_for_log("ebpf source attached", Duration::from_secs(60));
    stopped(&mut first);
    let unseen = run_marker("lumen-e2e-other-settings");

    let mut second = Lumen::start(&pins.config(r#"exclude_comms = ["nonesuch"]"#));
    second.wait_for_log("ebpf source attached", Duration::from_secs(60));
    let log = second.log();
    assert!(
        logged(&log, "not adopting") && !logged(&log, "adopted the programs"),
        "{}",
        log.join("\n")
    );
    let seen = run_marker("lumen-e2e-own-programs");
    let events = wait_for_events(&second.path("ecs.ndjson"), Duration::from_secs(30), |evs| {
        evs.iter().any(|e| is_exec_of(e, seen))
    });
    // The predecessor's records are not decoded with other settings.
    assert!(!events.iter().any(|e| is_exec_of(e, unseen)));
    let gap = events
        .iter()
        .find(|e| e["event"]["action"] == "kernel_events_unwatched")
        .expect("the gap is reported");
    assert!(gap["message"]
        .as_str()
        .unwrap()
        .contains("other programs or settings"));
    // The old pins are gone; at its stop the successor pins its own.
    let log = stopped(&mut second);
    assert!(logged(&log, "programs left attached"), "{}", log.join("\n"));
    assert!(pins.links() > 40);
}

#[test]
fn records_lost_while_no_lumen_read_are_reported_once_by_the_successor() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let pins = PinDir::new("drops");
    // 4 KiB: one exec record fits; the rest of a burst is dropped.
    let config = pins.config("ring_buffer_bytes = 4096\ndrop_check_interval_secs = 1");
    let burst = |n: u32| {
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"
            ))
            .status()
            .unwrap();
        assert!(status.success());
    };
    // The first Lumen's reader is held up (a console sink writing into a
    // pipe nobody reads), so its burst is mostly dropped and reported.
    let stuck = format!("{config}\n[sinks.stuck]\ntype = \"console\"\ninputs = [\"kernel\"]\n");
    let (reader, writer) = std::io::pipe().unwrap();
    let mut first = Lumen::start_with_stdout(tempfile::tempdir().unwrap(), &stuck, writer.into());
    first.wait_for_log("ebpf source attached", Duration::from_secs(60));
    burst(1500);
    first.wait_for_log("records lost", Duration::from_secs(20));
    let drain = std::thread::spawn(move || std::io::copy(&mut { reader }, &mut std::io::sink()));
    stopped(&mut first);
    let first_losses = lost(&first.path("ecs.ndjson"));
    drop(first);
    let _ = drain.join();
    assert!(first_losses >= 1000, "first Lumen reported {first_losses}");
    burst(200);

    let mut second = Lumen::start(&config);
    second.wait_for_log("adopted the programs", Duration::from_secs(60));
    second.wait_for_log("records lost", Duration::from_secs(20));
    let log = stopped(&mut second);
    let reported = lost(&second.path("ecs.ndjson"));
    // At least the 199 execs of the gap that did not fit; not again the
    // ~3,000 records the first Lumen reported (the kernel's counters hold
    // both: the successor counts from where its predecessor stopped).
    assert!(reported >= 199, "reported {reported}:\n{}", log.join("\n"));
    assert!(
        reported < first_losses,
        "reported {reported}, first Lumen {first_losses}"
    );
    assert_eq!(reported, component_total(&log, "kernel", "dropped"));
}

/// Records the loss events in `path` report lost.
fn lost(path: &Path) -> u64 {
    read_ndjson(path)
        .iter()
        .filter(|e| e["event"]["action"] == "kernel_events_lost")
        .map(|e| e["lumen"]["loss"]["total"].as_u64().unwrap())
        .sum()
}

/// Milliseconds of an RFC 3339 UTC timestamp (`2026-12-04T10:13:50.341978Z`)
/// since midnight: enough to subtract two within a test.
fn chrono_ms(t: &str) -> i64 {
    let time = t.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: i64 = parts.next().unwrap().parse().unwrap();
    let m: i64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    (h * 3600 + m * 60) * 1000 + (s * 1000.0) as i64
}

/// `lumen run` on `config` with only CAP_BPF and CAP_PERFMON (root
/// otherwise), stopped with SIGTERM once `ready` shows in its log; the log.
fn run_with_minimal_caps(config: &Path, ready: &str) -> String {
    use std::io::Read;
    // The log is read whole at exit; the output file says when it runs.
    let out = config.with_file_name("ecs.ndjson");
    let _ = std::fs::remove_file(&out);
    let mut lumen = Command::new("setpriv")
        .args(["--bounding-set", "-all,+bpf,+perfmon", "--inh-caps", "-all"])
        .arg(crate::support::LUMEN)
        .args(["run", "--config"])
        .arg(config)
        .env("LUMEN_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let mut stderr = lumen.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = std::time::Instant::now();
    while std::fs::metadata(&out).map_or(true, |m| m.len() == 0)
        && start.elapsed() < Duration::from_secs(60)
    {
        let _ = Command::new("/bin/true").status();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _one_at_a_time = STOPS.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: a signal to our own child (setpriv execs lumen in place).
    unsafe { libc::kill(lumen.id() as i32, libc::SIGTERM) };
    let status = crate::support::wait_timeout(&mut lumen, Duration::from_secs(30));
    let text = log.join().unwrap();
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains(ready), "no {ready:?} in:\n{text}");
    text
}

#[test]
fn the_handoff_needs_no_capability_beyond_cap_bpf_and_cap_perfmon() {
    use std::os::unix::fs::PermissionsExt;
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let pins = PinDir::new("caps");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("lumen.toml");
    std::fs::write(
        &config,
        pins.config("")
            .replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    // bpffs mounted beforehand: mounting it needs CAP_SYS_ADMIN, which
    // PRIVILEGES.md lists for that case.
    {
        let _one_at_a_time = STOPS.lock().unwrap_or_else(|e| e.into_inner());
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/sys/fs/bpf"));
        if !mounted {
            let status = Command::new("mount")
                .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let first = run_with_minimal_caps(&config, "programs left attached");
    assert!(pins.links() > 40, "{first}");
    run_with_minimal_caps(&config, "adopted the programs");
}

/// A container seen before a restart: its names went to the first Lumen,
/// once; the successor adopts the programs and finds them in the kernel's
/// map, so the container's later events are attributed all the same.
#[test]
fn a_container_seen_before_a_restart_is_attributed_after_it() {
    assert!(is_root(), "runc and eBPF need root (CI runs as root)");
    let pins = PinDir::new("names");
    let config = pins.config("");
    let mut first = Lumen::start(&config);
    first.wait_for_log("ebpf source attached", Duration::from_secs(60));

    let container_id = crate::support::random_container_id();
    let pod_uid = "5d0c9f3e-1a2b-4c3d-8e4f-a0b1c2d3e4f5";
    let container = crate::support::Container::new(
        &format!("lumen-e2e-{}", &container_id[..12]),
        &format!("/kubepods/besteffort/pod{pod_uid}/{container_id}"),
        &["/bin/sleep", "60"],
    );
    container.start();
    let exec_in = |lumen: &Lumen, marker: &str| {
        assert!(container
            .exec(&["/bin/sh", "-c", &format!("/bin/true {marker}")])
            .success());
        let is_marker = |e: &serde_json::Value| {
            e["event"]["action"] == "exec"
                && e["process"]["args"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == marker))
        };
        let events = wait_for_events(&lumen.path("ecs.ndjson"), Duration::from_secs(20), |evs| {
            evs.iter().any(is_marker)
        });
        events.into_iter().find(is_marker).unwrap()
    };
    let before = exec_in(&first, "lumen-e2e-names-before");
    assert_eq!(
        before["container"]["id"],
        container_id.as_str(),
        "{before:#}"
    );
    stopped(&mut first);

    let mut second = Lumen::start(&config);
    second.wait_for_log("adopted the programs", Duration::from_secs(30));
    let after = exec_in(&second, "lumen-e2e-names-after");
    assert_eq!(after["container"]["id"], container_id.as_str(), "{after:#}");
    assert_eq!(after["kubernetes"]["pod"]["uid"], pod_uid);
    assert!(
        !logged(
            &second.log(),
            "names were neither sent nor in the kernel's map"
        ),
        "{}",
        second.log().join("\n")
    );
    stopped(&mut second);
}
