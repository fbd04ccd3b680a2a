//! Helpers for driving the real `lumen` binary: start it on a config in a
//! temporary directory, watch its log, read what its file sink wrote, stop it
//! with a signal.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const LUMEN: &str = env!("CARGO_BIN_EXE_lumen");

/// The ebpf source into ECS and OCSF files (`ecs.ndjson`, `ocsf.ndjson`).
pub const KERNEL_TO_FILES: &str = r#"
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

/// What the ebpf source logs once every privilege, network and file
/// tracepoint this kernel has is attached (or adopted).
pub const ALL_ATTACHED: &str =
    "every privilege, network and file tracepoint this kernel has attached";

/// A running `lumen run`.
pub struct Lumen {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
}

impl Lumen {
    /// Writes `config` (with `{dir}` replaced by the temp dir) and starts lumen on it.
    pub fn start(config: &str) -> Lumen {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Lumen {
        Self::start_with_stdout(dir, config, Stdio::null())
    }

    /// As [`Lumen::start_in`], with lumen's standard output going to `stdout`.
    pub fn start_with_stdout(dir: tempfile::TempDir, config: &str, stdout: Stdio) -> Lumen {
        Self::start_with_args(dir, config, stdout, &[], &[])
    }

    /// As [`Lumen::start_with_stdout`], with more `lumen run` arguments and
    /// environment variables.
    pub fn start_with_args(
        dir: tempfile::TempDir,
        config: &str,
        stdout: Stdio,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Lumen {
        let path = dir.path().join("lumen.toml");
        std::fs::write(
            &path,
            config.replace("{dir}", &dir.path().display().to_string()),
        )
        .unwrap();
        let mut child = Command::new(LUMEN)
            .args(["run", "--config"])
            .arg(&path)
            .args(args)
            .env("LUMEN_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(strip_ansi(&line));
            }
        });
        Lumen { child, log, dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the ebpf source says every syscall tracepoint is attached.
    pub fn wait_attached(&mut self) {
        self.wait_for_log(ALL_ATTACHED, Duration::from_secs(60));
    }

    /// Waits until a log line contains `needle`; panics with the log otherwise.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().iter().any(|l| l.contains(needle)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "lumen exited ({status}) before logging {needle:?}:\n{}",
                    self.log().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no log line with {needle:?} within {timeout:?}:\n{}",
            self.log().join("\n")
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for lumen to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let status = wait_timeout(&mut self.child, timeout);
        std::thread::sleep(Duration::from_millis(50));
        (status, self.log())
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> (ExitStatus, Vec<String>) {
        self.signal(libc::SIGTERM);
        let status = wait_timeout(&mut self.child, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
        let log = self.log();
        (status, log)
    }
}

impl Drop for Lumen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every complete JSON line of an NDJSON file (missing file: none). A last
/// line without its newline is still being written: it is left for the
/// next read; a complete line that is not JSON fails the test.
pub fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line ({e}): {l}")))
        .collect()
}

/// Polls an NDJSON file until `done` says its events are complete.
pub fn wait_for_events(
    path: &Path,
    timeout: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let events = read_ndjson(path);
        if done(&events) {
            return events;
        }
        if start.elapsed() > timeout {
            let mut counts: std::collections::BTreeMap<String, usize> =
                std::collections::BTreeMap::new();
            for e in &events {
                let action = e["event"]["action"]
                    .as_str()
                    .or(e["activity_name"].as_str())
                    .unwrap_or("?");
                let key = format!(
                    "{action} exe={} file={} src={} dst={}",
                    e["process"]["executable"], e["file"]["path"], e["source"], e["destination"]
                );
                *counts.entry(key).or_default() += 1;
            }
            let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n:5} {k}")).collect();
            panic!(
                "events in {} incomplete after {timeout:?}: {} lines:\n{}",
                path.display(),
                events.len(),
                summary.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `key` (`received`, `sent`, `dropped`, …) of `component` in the totals
/// Lumen logs at stop.
pub fn component_total(log: &[String], component: &str, key: &str) -> u64 {
    let tag = format!("component={component} ");
    log.iter()
        .find(|l| l.contains("component totals") && l.contains(&tag))
        .and_then(|l| l.split(&format!(" {key}=")).nth(1))
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} total of {component}:\n{}", log.join("\n")))
}

/// Waits for the ECS event of process `pid` with `event.action` = `action`
/// in an NDJSON file, and returns it.
pub fn wait_for_process_event(path: &Path, pid: u64, action: &str) -> serde_json::Value {
    let matches = |e: &serde_json::Value| {
        e["process"]["pid"].as_u64() == Some(pid) && e["event"]["action"] == action
    };
    let events = wait_for_events(path, Duration::from_secs(20), |evs| evs.iter().any(matches));
    events.into_iter().find(matches).unwrap()
}

/// A loopback port nothing listens on (right now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One valid audit event line with a distinct auditID.
pub fn audit_line(id: &str, verb: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods/p","verb":"{verb}","user":{{"username":"alice","groups":["system:authenticated"]}},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.30","objectRef":{{"resource":"pods","namespace":"default","name":"p","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2026-11-28T10:00:00.000001Z","stageTimestamp":"2026-11-28T10:00:00.000002Z"}}"#
    )
}

/// Appends an [`audit_line`] (verb `get`) per id to the log at `path`, in
/// one write.
pub fn append_audit<S: AsRef<str>>(path: &Path, ids: impl IntoIterator<Item = S>) {
    let text: String = ids
        .into_iter()
        .map(|id| audit_line(id.as_ref(), "get") + "\n")
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
}

/// A real OCI container: runc with a busybox-static rootfs, in its own
/// namespaces and a cgroup at `cgroups_path` (kubelet layout in the tests).
pub struct Container {
    pub id: String,
    pub bundle: tempfile::TempDir,
    /// The overlay mounted as the root, when it is one.
    overlay: Option<PathBuf>,
}

impl Container {
    /// Writes a bundle that runs `args` in the container, its root a plain
    /// directory.
    pub fn new(id: &str, cgroups_path: &str, args: &[&str]) -> Container {
        Self::build(id, cgroups_path, args, false, Extra::default())
    }

    /// As [`Container::new`], its root an overlay as container runtimes
    /// mount one: the busybox rootfs as the image's (lower) layer, a fresh
    /// directory as the container's writable (upper) layer.
    pub fn on_overlay(id: &str, cgroups_path: &str, args: &[&str]) -> Container {
        Self::build(id, cgroups_path, args, true, Extra::default())
    }

    /// As [`Container::new`], with more in its image and another user.
    pub fn with(id: &str, cgroups_path: &str, args: &[&str], extra: Extra) -> Container {
        Self::build(id, cgroups_path, args, false, extra)
    }

    fn build(
        id: &str,
        cgroups_path: &str,
        args: &[&str],
        overlay: bool,
        extra: Extra,
    ) -> Container {
        let bundle = tempfile::tempdir().unwrap();
        let rootfs = bundle.path().join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is installed by `cargo xtask test`");
        std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "true", "sleep", "cat", "cp", "chmod", "nc", "mount", "nsenter",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        for (path, from, mode) in &extra.files {
            use std::os::unix::fs::PermissionsExt;
            let to = rootfs.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let mounted = overlay.then(|| {
            let merged = bundle.path().join("merged");
            for d in ["upper", "work", "merged"] {
                std::fs::create_dir(bundle.path().join(d)).unwrap();
            }
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                rootfs.display(),
                bundle.path().join("upper").display(),
                bundle.path().join("work").display()
            );
            let status = Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &options])
                .arg(&merged)
                .status()
                .unwrap();
            assert!(status.success(), "mounting the overlay root");
            merged
        });
        let status = Command::new("runc")
            .arg("spec")
            .current_dir(bundle.path())
            .status()
            .expect("runc is installed by `cargo xtask test`");
        assert!(status.success());
        let path = bundle.path().join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
        spec["linux"]["cgroupsPath"] = cgroups_path.into();
        // Writable, as a deployed container's root is.
        spec["root"]["readonly"] = false.into();
        if let Some(uid) = extra.uid {
            spec["process"]["user"]["uid"] = uid.into();
            spec["process"]["user"]["gid"] = uid.into();
        }
        if extra.allow_privilege_gain {
            spec["process"]["noNewPrivileges"] = false.into();
        }
        if let Some(limit) = extra.memory_limit {
            spec["linux"]["resources"]["memory"]["limit"] = limit.into();
            spec["linux"]["resources"]["memory"]["swap"] = limit.into();
        }
        if let Some(limit) = extra.pids_limit {
            spec["linux"]["resources"]["pids"]["limit"] = limit.into();
        }
        if let Some(cpus) = &extra.cpus {
            spec["linux"]["resources"]["cpu"]["cpus"] = cpus.as_str().into();
        }
        if let Some(quota) = extra.cpu_quota_us {
            spec["linux"]["resources"]["cpu"]["quota"] = quota.into();
            spec["linux"]["resources"]["cpu"]["period"] = 100_000.into();
        }
        if extra.privileged_host_pid {
            // All this process may hand on (a sandbox may withhold some).
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let bounding = status
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
                .unwrap();
            let all: Vec<serde_json::Value> = ALL_CAPABILITIES
                .iter()
                .enumerate()
                .filter(|(bit, _)| bounding & (1 << bit) != 0)
                .map(|(_, c)| (*c).into())
                .collect();
            for set in ["bounding", "effective", "permitted"] {
                spec["process"]["capabilities"][set] = all.clone().into();
            }
            if let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() {
                namespaces.retain(|n| n["type"] != "pid");
            }
        }
        if mounted.is_some() {
            spec["root"]["path"] = "merged".into();
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        Container {
            id: id.to_owned(),
            bundle,
            overlay: mounted,
        }
    }

    /// Runs the container to completion.
    pub fn run(&self) -> ExitStatus {
        let mut child = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(self.bundle.path())
            .arg(&self.id)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        wait_timeout(&mut child, Duration::from_secs(30))
    }

    /// Starts the container in the background (`runc run --detach`); it
    /// is killed when dropped.
    pub fn start(&self) {
        let status = Command::new("runc")
            .args(["run", "--detach", "--bundle"])
            .arg(self.bundle.path())
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "runc run --detach {}", self.id);
    }

    /// Runs `args` in the running container as `docker exec` and
    /// `kubectl exec` do (`runc exec`), to completion.
    pub fn exec(&self, args: &[&str]) -> ExitStatus {
        let mut child = Command::new("runc")
            .args(["exec", &self.id])
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        wait_timeout(&mut child, Duration::from_secs(30))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .output();
        if let Some(merged) = &self.overlay {
            let _ = Command::new("umount").arg(merged).output();
        }
    }
}

/// What a [`Container::with`] has beyond the busybox image.
#[derive(Default)]
pub struct Extra {
    /// Files in its root: (path in the root, file to copy, mode).
    pub files: Vec<(String, PathBuf, u32)>,
    /// The user its processes run as (root without it).
    pub uid: Option<u32>,
    /// Whether a setuid program may raise privileges (`noNewPrivileges`
    /// off, as Docker and Kubernetes leave it by default).
    pub allow_privilege_gain: bool,
    /// Every capability and the host's PID namespace: Kubernetes'
    /// `privileged: true` with `hostPID: true`.
    pub privileged_host_pid: bool,
    /// The CPUs it may run on (a cpuset, `"1"`), as a static CPU manager
    /// policy pins a Guaranteed pod.
    pub cpus: Option<String>,
    /// A CFS quota (µs per 100 ms period), as a CPU limit sets one.
    pub cpu_quota_us: Option<u64>,
    /// A memory limit (bytes; no swap beyond it).
    pub memory_limit: Option<u64>,
    /// A PID limit.
    pub pids_limit: Option<u64>,
}

/// The capabilities a privileged container gets (Linux 5.9+), in the
/// kernel's order (`CAP_CHOWN` is bit 0).
#[rustfmt::skip]
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// 64 lowercase hex digits, unique enough per test run.
pub fn random_container_id() -> String {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id()) << 32;
    (0..64)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from_digit((seed % 16) as u32, 16).unwrap()
        })
        .collect()
}

/// A client for Lumen's plain-HTTP API; reqwest still wants a TLS
/// configuration (rustls without a default provider).
pub fn http_client() -> reqwest::blocking::Client {
    let tls = lumen_sinks::tls::TlsConfig::default()
        .client_config()
        .unwrap();
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// `/metrics` of the Lumen whose API listens on `port`, as text.
pub fn scrape_text(port: u16) -> String {
    try_scrape_text(port).expect("a scrape")
}

/// As [`scrape_text`], `None` while nothing answers.
pub fn try_scrape_text(port: u16) -> Option<String> {
    http_client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .ok()?
        .text()
        .ok()
}

/// Builds the test helper `tests/e2e/helpers/<name>.rs` (std only) with
/// rustc into `dir`, statically linked so it also runs in a busybox
/// container.
pub fn build_helper(name: &str, dir: &Path) -> PathBuf {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/e2e/helpers")
        .join(format!("{name}.rs"));
    let out = dir.join(name);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&out)
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "building {}", source.display());
    out
}
