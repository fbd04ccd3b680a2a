//! End to end on the workload of issue 21: `lumen run` reads a
//! Kubernetes audit log (`k8s_audit_file`, from the beginning) and writes
//! ECS lines to a file sink (`max_bytes = 0`, on tmpfs) — bare, behind the
//! default GDPR `redact`, and behind `detect` with its built-in rules.
//! Reports, per round and as the median of the rounds: events/s (from
//! Lumen's start to the last line written), events per CPU-second (events
//! out / utime + stime of the Lumen process over the same span) and peak
//! RSS (VmHWM).
//!
//! The input is made here, as the issue's `gen_audit.py` makes it (the
//! same mix of verbs, resources, users, forbidden requests and request
//! bodies, the same field layout), with this crate's own deterministic
//! generator instead of Python's: the events differ, their shape does not
//! (about 840 bytes per line).
//! Run: `cargo bench -p lumen --bench pipeline [-- word]`;
//! `LUMEN_BENCH_EVENTS=n` (default 300,000), `LUMEN_BENCH_ROUNDS=n` (3).

mod common;

use common::{line_counter, spawn_lumen, usage};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic, good enough to pick from short lists.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Writes `n` audit events as gen_audit.py does; the mean line length.
fn write_log(path: &std::path::Path, n: usize) -> f64 {
    let verbs = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    let resources = [
        ("pods", ""),
        ("secrets", ""),
        ("configmaps", ""),
        ("deployments", "apps"),
        ("leases", "coordination.k8s.io"),
        ("roles", "rbac.authorization.k8s.io"),
    ];
    let mut rng = Rng(7);
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let mut out = std::io::BufWriter::new(file);
    let mut bytes = 0;
    let mut line = String::with_capacity(2048);
    for i in 0..n {
        use std::fmt::Write as _;
        let v = verbs[rng.below(verbs.len())];
        let (r, g) = resources[rng.below(resources.len())];
        let ns = format!("team-{}", i % 37);
        let name = format!("{}-{}", &r[..r.len() - 1], i % 1009);
        let code = if i % 20 == 0 {
            403
        } else if v == "create" {
            201
        } else {
            200
        };
        let api = if g.is_empty() {
            "api/v1".to_owned()
        } else {
            format!("apis/{g}/v1")
        };
        let body = i % 7 == 0 && matches!(v, "create" | "update" | "patch");
        let (decision, reason) = if code == 403 {
            ("forbid", String::new())
        } else {
            (
                "allow",
                format!("RBAC: allowed by RoleBinding \\\"edit/{ns}\\\""),
            )
        };
        line.clear();
        let _ = write!(
            line,
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"{level}","auditID":"{i:08x}-4a1b-4c2d-8e3f-{i:012x}","stage":"ResponseComplete","requestURI":"/{api}/namespaces/{ns}/{r}/{name}","verb":"{v}","user":{{"username":"user{u}@corp.example","uid":"uid-{u}","groups":["system:authenticated","team-{t}"]}},"sourceIPs":["10.{a}.{b}.{c}"],"userAgent":"kubectl/v1.31.0 (linux/amd64) kubernetes/abc1234","objectRef":{{"resource":"{r}","namespace":"{ns}","name":"{name}","apiGroup":"{g}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":{code}}},"requestReceivedTimestamp":"2026-11-20T10:00:00.000000Z","stageTimestamp":"2026-11-20T10:00:00.004512Z","annotations":{{"authorization.k8s.io/decision":"{decision}","authorization.k8s.io/reason":"{reason}"}}"#,
            level = if body { "RequestResponse" } else { "Metadata" },
            u = i % 211,
            t = i % 37,
            a = i % 256,
            b = (i >> 8) % 256,
            c = i % 250 + 1,
        );
        if body {
            let data = "replicas: 3\\nlog_level: info\\n".repeat(4);
            let _ = write!(
                line,
                r#","requestObject":{{"kind":"ConfigMap","apiVersion":"v1","metadata":{{"name":"{name}","namespace":"{ns}","labels":{{"app":"shop","tier":"web"}}}},"data":{{"config.yaml":"{data}"}}}}"#
            );
        }
        line.push('}');
        bytes += line.len() + 1;
        writeln!(out, "{line}").unwrap_or_else(|e| panic!("{e}"));
    }
    out.flush().unwrap_or_else(|e| panic!("{e}"));
    bytes as f64 / n as f64
}

struct Row {
    name: &'static str,
    transform: &'static str,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let events = env_usize("LUMEN_BENCH_EVENTS", 300_000);
    let rounds = env_usize("LUMEN_BENCH_ROUNDS", 3);
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Input and output on tmpfs: the disk's writeback is not Lumen's.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(shm.path().join("logs")).unwrap_or_else(|e| panic!("{e}"));
    let mean = write_log(&shm.path().join("logs/audit.log"), events);
    println!("input: {events} Kubernetes audit events (gen_audit.py's mix), mean {mean:.0} bytes per line, on tmpfs; {rounds} rounds, medians");
    println!();
    println!(
        "| path | events/s | events per CPU-second | peak RSS | rounds (events per CPU-second) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let rows = [
        Row {
            name: "audit file → ECS → file",
            transform: "",
        },
        Row {
            name: "audit file → redact (default GDPR profile) → ECS → file",
            transform: "[transforms.t]\ntype = \"redact\"\ninputs = [\"audit\"]\nhmac_key = \"bench-key\"\n",
        },
        Row {
            name: "audit file → detect (built-in rules) → ECS → file",
            transform: "[transforms.t]\ntype = \"detect\"\ninputs = [\"audit\"]\n",
        },
    ];
    for row in rows
        .iter()
        .filter(|r| only.is_empty() || only.iter().any(|w| r.name.contains(w.as_str())))
    {
        let input = if row.transform.is_empty() {
            "audit"
        } else {
            "t"
        };
        let (mut rates, mut per_cpu, mut rss_max) = (Vec::new(), Vec::new(), 0f64);
        for _ in 0..rounds {
            let out = shm.path().join("out.ndjson");
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_dir_all(dir.path().join("data"));
            let config = format!(
                "data_dir = \"{d}/data\"\n[sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{s}/logs/*.log\"\n\n{t}\n[sinks.out]\ntype = \"file\"\ninputs = [\"{input}\"]\nschema = \"ecs\"\npath = \"{o}\"\nmax_bytes = 0\n",
                d = dir.path().display(),
                s = shm.path().display(),
                t = row.transform,
                o = out.display(),
            );
            let config_path = dir.path().join("lumen.toml");
            std::fs::write(&config_path, config).unwrap_or_else(|e| panic!("{e}"));
            let count = Arc::new(AtomicU64::new(0));
            line_counter(out.clone(), count.clone(), events);
            let t = Instant::now();
            let mut child = spawn_lumen(&config_path);
            let pid = child.id();
            let deadline = Instant::now() + Duration::from_secs(300);
            // Findings are lines too: detect writes more than it reads.
            while (count.load(Ordering::Relaxed) as usize) < events && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            let elapsed = t.elapsed().as_secs_f64();
            let (cpu, rss) = usage(pid);
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let _ = child.wait();
            let got = count.load(Ordering::Relaxed) as usize;
            assert!(got >= events, "{}: {got} of {events} lines", row.name);
            rates.push(events as f64 / elapsed);
            per_cpu.push(events as f64 / cpu.max(0.01));
            rss_max = rss_max.max(rss);
        }
        let rounds_text: Vec<String> = per_cpu.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "| {} | {:.0} | {:.0} | {:.0} MiB | {} |",
            row.name,
            median(&mut rates),
            median(&mut per_cpu.clone()),
            rss_max,
            rounds_text.join(", ")
        );
    }
}
