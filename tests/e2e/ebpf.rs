//! The ebpf source against the real kernel: a real process with distinctive
//! argv must produce exec and exit events with the right pid, ppid, argv and
//! exit code. Needs root (CI runs as root).

use crate::support::{
    component_total, is_root, read_ndjson, wait_for_events, wait_for_process_event, Lumen,
};
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = r#"
data_dir = "{dir}/data"
[sources.kernel]
type = "ebpf"

[sinks.ecs]
type = "file"
inputs = ["kernel"]
schema = "ecs"
path = "{dir}/ecs.ndjson"

[sinks.ocsf]
type = "file"
inputs = ["kernel"]
schema = "ocsf"
path = "{dir}/ocsf.ndjson"
"#;

#[test]
fn exec_and_exit_of_a_real_process_reach_the_file_sinks() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let mut lumen = Lumen::start(CONFIG);
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));

    let marker = format!("lumen-e2e-{}", std::process::id());
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 7", &marker, "second arg"])
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    assert_eq!(child.wait().unwrap().code(), Some(7));

    let ecs_path = lumen.path("ecs.ndjson");
    let of_pid = |e: &serde_json::Value| e["process"]["pid"].as_u64() == Some(pid);
    let has = |evs: &[serde_json::Value], action: &str| {
        evs.iter()
            .any(|e| of_pid(e) && e["event"]["action"] == action)
    };
    let events = wait_for_events(&ecs_path, Duration::from_secs(20), |evs| {
        has(evs, "exec") && has(evs, "exit")
    });
    let exec = events
        .iter()
        .find(|e| of_pid(e) && e["event"]["action"] == "exec")
        .expect("exec event");
    assert_eq!(
        exec["process"]["args"],
        serde_json::json!(["/bin/sh", "-c", "exit 7", marker, "second arg"])
    );
    assert_eq!(exec["process"]["executable"], "/bin/sh");
    assert_eq!(
        exec["process"]["parent"]["pid"].as_u64(),
        Some(u64::from(std::process::id()))
    );
    assert_eq!(exec["process"]["user"]["id"], "0");
    assert_eq!(exec["event"]["type"], serde_json::json!(["start"]));
    let exit = events
        .iter()
        .find(|e| of_pid(e) && e["event"]["action"] == "exit")
        .expect("exit event");
    assert_eq!(exit["process"]["exit_code"], 7);
    assert_eq!(exit["event"]["type"], serde_json::json!(["end"]));

    // The same process in OCSF Process Activity.
    let ocsf = wait_for_events(&lumen.path("ocsf.ndjson"), Duration::from_secs(10), |evs| {
        [1, 2].iter().all(|activity| {
            evs.iter()
                .any(|e| e["process"]["pid"].as_u64() == Some(pid) && e["activity_id"] == *activity)
        })
    });
    let launch = ocsf
        .iter()
        .find(|e| e["process"]["pid"].as_u64() == Some(pid) && e["activity_id"] == 1)
        .expect("OCSF launch");
    assert_eq!(launch["class_uid"], 1007);
    assert_eq!(
        launch["process"]["cmd_line"],
        format!("/bin/sh -c exit 7 {marker} second arg")
    );
    assert_eq!(
        launch["process"]["parent_process"]["pid"].as_u64(),
        Some(u64::from(std::process::id()))
    );
    let terminate = ocsf
        .iter()
        .find(|e| e["process"]["pid"].as_u64() == Some(pid) && e["activity_id"] == 2)
        .expect("OCSF terminate");
    assert_eq!(terminate["exit_code"], 7);

    let (status, log) = lumen.stop();
    assert!(
        status.success(),
        "lumen exited with {status}:\n{}",
        log.join("\n")
    );
}

#[test]
fn a_process_killed_by_a_signal_reports_the_signal() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let mut lumen = Lumen::start(CONFIG);
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    let mut child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let pid = child.id() as u64;
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();
    let exit = wait_for_process_event(&lumen.path("ecs.ndjson"), pid, "exit");
    assert_eq!(exit["lumen"]["process"]["exit_signal"], 9);
    assert_eq!(exit["process"]["exit_code"], 137);
    let (status, _) = lumen.stop();
    assert!(status.success());
}

#[test]
fn without_privileges_the_ebpf_source_fails_with_a_clear_reason() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    assert!(is_root(), "this test drops from root to nobody");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = dir.path().join("lumen.toml");
    std::fs::write(
        &config,
        CONFIG.replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(crate::support::LUMEN)
        .args(["run", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("starting source `kernel` (ebpf)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("needs root, or CAP_BPF, CAP_PERFMON"),
        "{stderr}"
    );
}

#[test]
fn with_a_wakeup_per_record_events_arrive_too() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    // poll_interval_ms = 0: the kernel wakes Lumen for every record instead
    // of Lumen draining on a timer.
    let config = CONFIG.replace("type = \"ebpf\"", "type = \"ebpf\"\npoll_interval_ms = 0");
    let mut lumen = Lumen::start(&config);
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 3"])
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let exit = wait_for_process_event(&lumen.path("ecs.ndjson"), pid, "exit");
    assert_eq!(exit["process"]["exit_code"], 3);
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
}

#[test]
fn a_full_ring_buffer_is_reported_and_counted_not_hidden() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    // Backpressure stalls the reader: the console sink writes into a pipe
    // nobody reads; once the pipe and the channel are full the source stops
    // reading the ring buffer (4 KiB: two exec records) and the kernel must
    // drop. The drops must be logged and counted.
    let config = r#"
[sources.kernel]
type = "ebpf"
ring_buffer_bytes = 4096
drop_check_interval_secs = 1

[sinks.stuck]
type = "console"
inputs = ["kernel"]

[sinks.file]
type = "file"
inputs = ["kernel"]
schema = "ecs"
path = "{dir}/ecs.ndjson"
"#;
    let (reader, writer) = std::io::pipe().unwrap();
    let mut lumen = Lumen::start_with_stdout(tempfile::tempdir().unwrap(), config, writer.into());
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    let status = Command::new("/bin/sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    lumen.wait_for_log(
        "kernel ring buffer was full; records lost",
        Duration::from_secs(20),
    );
    // Unblock the console so the drain can finish.
    let drain = std::thread::spawn(move || std::io::copy(&mut { reader }, &mut std::io::sink()));
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    // The loss reached the sinks as events of their own.
    let reports: Vec<serde_json::Value> = crate::support::read_ndjson(&lumen.path("ecs.ndjson"))
        .into_iter()
        .filter(|e| e["event"]["action"] == "kernel_events_lost")
        .collect();
    drop(lumen);
    let _ = drain.join();
    assert!(!reports.is_empty(), "no loss event in the sink");
    let reported: u64 = reports
        .iter()
        .map(|e| e["lumen"]["loss"]["total"].as_u64().unwrap())
        .sum();
    assert_eq!(reports[0]["event"]["kind"], "pipeline_error");
    assert!(reports[0]["message"]
        .as_str()
        .unwrap()
        .contains("kernel records lost"));
    let totals = log
        .iter()
        .find(|l| l.contains("component totals") && l.contains("component=kernel"))
        .unwrap_or_else(|| panic!("no totals:\n{}", log.join("\n")));
    let dropped: u64 = totals
        .split("dropped=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(dropped > 0, "{totals}");
    assert_eq!(reported, dropped, "every lost record is in a loss event");
}

#[test]
fn a_ring_buffer_size_that_is_not_a_power_of_two_is_refused() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let config = CONFIG.replace(
        "type = \"ebpf\"",
        "type = \"ebpf\"\nring_buffer_bytes = 5000",
    );
    let mut lumen = Lumen::start(&config);
    lumen.wait_for_log(
        "ring_buffer_bytes = 5000: must be a power of two",
        Duration::from_secs(30),
    );
}

#[test]
fn a_process_started_before_lumen_is_known_as_a_parent_and_forks_are_seen() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let marker = format!("lumen-pre-{}", std::process::id());
    let go = tempfile::tempdir().unwrap();
    let go_file = go.path().join("go");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; /bin/true child-of-old-shell; exit 0",
        go_file.display()
    );
    // A shell that exists before Lumen starts; once Lumen is up it forks and
    // execs a child.
    let mut shell = Command::new("/bin/sh")
        .args(["-c", &script, &marker])
        .spawn()
        .unwrap();
    let shell_pid = u64::from(shell.id());
    let mut lumen = Lumen::start(CONFIG);
    lumen.wait_for_log("process cache seeded from /proc", Duration::from_secs(60));
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    std::fs::write(&go_file, b"").unwrap();
    assert!(shell.wait().unwrap().success());

    let is_child_exec = |e: &serde_json::Value| {
        e["event"]["action"] == "exec" && e["process"]["args"][1] == "child-of-old-shell"
    };
    let events = wait_for_events(&lumen.path("ecs.ndjson"), Duration::from_secs(20), |evs| {
        evs.iter().any(is_child_exec)
    });
    let exec = events.iter().find(|e| is_child_exec(e)).unwrap();
    let parent = &exec["process"]["parent"];
    assert_eq!(parent["pid"].as_u64(), Some(shell_pid));
    assert_eq!(
        parent["executable"],
        "/usr/bin/dash"
            .to_owned()
            .as_str()
            .replace(
                "/usr/bin/dash",
                &std::fs::canonicalize("/bin/sh").unwrap().to_string_lossy()
            )
            .as_str()
    );
    assert_eq!(
        parent["args"],
        serde_json::json!(["/bin/sh", "-c", script, marker])
    );
    // Ancestry: the shell, then this test process.
    let ancestry: Vec<u64> = exec["lumen"]["process"]["ancestry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(&ancestry[..2], &[shell_pid, u64::from(std::process::id())]);

    // The child was forked by the old shell before it exec'd: the fork event
    // names the shell as parent and runs the shell's image.
    let child_pid = exec["process"]["pid"].as_u64().unwrap();
    let fork = events
        .iter()
        .find(|e| e["event"]["action"] == "fork" && e["process"]["pid"].as_u64() == Some(child_pid))
        .expect("fork event of the child");
    assert_eq!(fork["process"]["parent"]["pid"].as_u64(), Some(shell_pid));
    assert_eq!(fork["process"]["executable"], parent["executable"]);
    let (status, _) = lumen.stop();
    assert!(status.success());
}

#[test]
fn runs_with_only_cap_bpf_and_cap_perfmon() {
    use std::os::unix::fs::PermissionsExt;
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("lumen.toml");
    std::fs::write(
        &config,
        CONFIG.replace("{dir}", &dir.path().display().to_string()),
    )
    .unwrap();
    // Root, but with every capability dropped except these two.
    let mut lumen = Command::new("setpriv")
        .args(["--bounding-set", "-all,+bpf,+perfmon", "--inh-caps", "-all"])
        .arg(crate::support::LUMEN)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("setpriv (util-linux)");
    let marker = format!("lumen-minimal-caps-{}", std::process::id());
    let ecs = dir.path().join("ecs.ndjson");
    let start = std::time::Instant::now();
    let mut seen = false;
    while !seen && start.elapsed() < Duration::from_secs(60) {
        let _ = Command::new("/bin/true").arg(&marker).status();
        std::thread::sleep(Duration::from_millis(300));
        seen = crate::support::read_ndjson(&ecs)
            .iter()
            .any(|e| e["process"]["args"][1] == marker.as_str());
        assert!(
            lumen.try_wait().unwrap().is_none(),
            "lumen exited with only CAP_BPF + CAP_PERFMON"
        );
    }
    // SAFETY: a signal to our own child (setpriv execs lumen in place).
    unsafe { libc::kill(lumen.id() as i32, libc::SIGTERM) };
    let status = crate::support::wait_timeout(&mut lumen, Duration::from_secs(30));
    assert!(seen, "no exec event with only CAP_BPF + CAP_PERFMON");
    assert!(status.success());
}

#[test]
fn a_process_whose_main_thread_ends_first_keeps_its_identity_and_exits_once() {
    main_thread_ends_first(&[]);
}

/// The same on a kernel without the tracepoint's `group_dead` (before
/// 6.16): the exit program reads the group's live count.
#[test]
fn without_the_tracepoints_group_dead_the_live_count_says_when_a_process_ends() {
    main_thread_ends_first(&[("LUMEN_TEST_EXIT_BY_LIVE_COUNT", "1")]);
}

fn main_thread_ends_first(envs: &[(&str, &str)]) {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let dir = tempfile::tempdir().unwrap();
    let mut lumen = Lumen::start_with_args(dir, CONFIG, std::process::Stdio::null(), &[], envs);
    let helper = crate::support::build_helper("thread_outlives_main", lumen.dir.path());
    lumen.wait_attached();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = lumen.path("written-by-a-thread.txt");
    let out = Command::new(&helper)
        .arg(&written)
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "main thread gone\n");
    let helper_exe = helper.to_string_lossy().into_owned();
    let me = u64::from(std::process::id());
    let my_exe = std::env::current_exe().unwrap();

    let ecs = lumen.path("ecs.ndjson");
    let of_helper = |e: &serde_json::Value| e["process"]["executable"] == helper_exe.as_str();
    let action = |e: &serde_json::Value, a: &str| e["event"]["action"] == a;
    let written_str = written.to_string_lossy().into_owned();
    let is_write =
        |e: &serde_json::Value| action(e, "open") && e["file"]["path"] == written_str.as_str();
    let is_connect = |e: &serde_json::Value| {
        action(e, "connect") && e["destination"]["port"].as_u64() == Some(u64::from(port))
    };
    let exec_pid = |evs: &[serde_json::Value]| {
        evs.iter()
            .find(|e| action(e, "exec") && of_helper(e))
            .and_then(|e| e["process"]["pid"].as_u64())
    };
    wait_for_events(&ecs, Duration::from_secs(20), |evs| {
        exec_pid(evs).is_some_and(|pid| {
            evs.iter()
                .any(|e| action(e, "exit") && e["process"]["pid"].as_u64() == Some(pid))
        }) && evs.iter().any(is_write)
            && evs.iter().any(is_connect)
    });
    // Anything late (a second exit) would be in by now.
    std::thread::sleep(Duration::from_millis(500));
    let events = crate::support::read_ndjson(&ecs)
        .into_iter()
        .collect::<Vec<_>>();
    assert!(!events.is_empty());
    let pid = exec_pid(&events).unwrap();
    let position = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        events
            .iter()
            .position(|e| e["process"]["pid"].as_u64() == Some(pid) && pred(e))
    };

    // The second thread's events: the process's executable and parent,
    // though the thread has a name of its own and the main thread is gone.
    for (what, at) in [
        ("write", position(&is_write)),
        ("connect", position(&is_connect)),
    ] {
        let e = &events[at.unwrap_or_else(|| panic!("no {what} by pid {pid}"))];
        assert_eq!(e["process"]["executable"], helper_exe.as_str(), "{what}");
        assert_ne!(e["process"]["thread"]["id"].as_u64(), Some(pid), "{what}");
        assert_eq!(e["process"]["parent"]["pid"].as_u64(), Some(me), "{what}");
        assert_eq!(
            e["process"]["parent"]["executable"],
            my_exe.to_string_lossy().as_ref(),
            "{what}"
        );
    }
    // One exit, when the last thread ended: after its events, by that thread.
    let exits: Vec<usize> = (0..events.len())
        .filter(|&i| {
            events[i]["process"]["pid"].as_u64() == Some(pid) && action(&events[i], "exit")
        })
        .collect();
    assert_eq!(exits.len(), 1, "exits of pid {pid}: {exits:?}");
    let exit = &events[exits[0]];
    assert!(exits[0] > position(&is_connect).unwrap());
    assert_eq!(exit["process"]["exit_code"], 3);
    assert_ne!(exit["process"]["thread"]["id"].as_u64(), Some(pid));
    assert_eq!(exit["process"]["executable"], helper_exe.as_str());
    drop(listener);
    let (status, _) = lumen.stop();
    assert!(status.success());
}

/// Creates `path`, then opens it for writing `n` times, as fast as this
/// process can: `n` + 1 open events.
fn open_for_write(path: &std::path::Path, n: usize) {
    std::fs::write(path, b"x").unwrap();
    for _ in 0..n {
        drop(std::fs::OpenOptions::new().write(true).open(path).unwrap());
    }
}

fn opens_of(events: &[serde_json::Value], path: &std::path::Path) -> usize {
    let path = path.to_str().unwrap();
    events
        .iter()
        .filter(|e| e["event"]["action"] == "open" && e["file"]["path"] == path)
        .count()
}

#[test]
fn a_burst_larger_than_a_read_slice_is_delivered_whole_and_counted_once() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let mut lumen = Lumen::start(CONFIG);
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    // 5,000 records in a few ms, under an eighth of the 32 MiB ring: no
    // wakeup, so the next drain finds them all and reads them 1,024 at a
    // time.
    let target = lumen.path("burst.txt");
    open_for_write(&target, 5_000);
    let ecs = lumen.path("ecs.ndjson");
    wait_for_events(&ecs, Duration::from_secs(30), |evs| {
        opens_of(evs, &target) > 5_000
    });
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    assert_eq!(opens_of(&read_ndjson(&ecs), &target), 5_001);
    // Each record counted once as received, and everything received sent.
    let received = component_total(&log, "kernel", "received");
    assert!(received >= 5_000);
    assert_eq!(received, component_total(&log, "kernel", "sent"));
}

#[test]
fn records_wake_the_reader_once_an_eighth_of_the_ring_waits() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    // A drain every 60 s only: records reach the file sooner only if the
    // kernel woke the reader, which it does as the bytes waiting cross
    // each eighth of the 1 MiB ring (~180 open records).
    let config = CONFIG.replace(
        "type = \"ebpf\"",
        "type = \"ebpf\"\nring_buffer_bytes = 1048576\npoll_interval_ms = 60000",
    );
    let mut lumen = Lumen::start(&config);
    lumen.wait_for_log("ebpf source attached", Duration::from_secs(60));
    // The first tick drains at once; the next is a minute away.
    std::thread::sleep(Duration::from_millis(500));
    let target = lumen.path("wakeups.txt");
    open_for_write(&target, 1_000);
    let ecs = lumen.path("ecs.ndjson");
    // All but the last eighth's worth at most, long before the tick.
    wait_for_events(&ecs, Duration::from_secs(20), |evs| {
        opens_of(evs, &target) >= 800
    });
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    assert_eq!(
        opens_of(&read_ndjson(&ecs), &target),
        1_001,
        "all at the stop's drain"
    );
}
