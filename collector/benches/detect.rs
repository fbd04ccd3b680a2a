//! Cost per event of the `detect` transform on one core, for events that
//! match nothing (the common case): the built-in rule pack on kernel events
//! of a container and on the sample audit log's events, and 100 user rules
//! on the same kernel events. Run: `cargo bench -p lumen --bench detect`;
//! numbers in docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lumen::transforms::detect::{rule, DetectConfig, Detector};
use lumen_schemas::event::{
    push, FileEvent, FileOperation, NetworkEvent, NetworkOp, Process, ProcessActivity,
    ProcessEvent, Str,
};
use lumen_schemas::time::Timestamp;
use lumen_schemas::{k8s_audit, Event, EventKind};
use std::sync::Arc;

fn event(kind: EventKind) -> Arc<Event> {
    Arc::new(Event {
        time: Timestamp(1_700_000_000_000_000_000),
        observed: Timestamp(1_700_000_000_000_000_000),
        host: Arc::default(),
        kind,
        redaction: Default::default(),
    })
}

fn process(exe: &str, args: &[&str]) -> Process {
    let name = exe.rsplit('/').next().unwrap_or(exe);
    let mut p = Process::default().with_text(exe, name, args);
    p.parent.name = push(&mut p.text, "python3");
    p.parent.executable = push(&mut p.text, "/usr/bin/python3");
    p.attribution.container_id = push(&mut p.text, &"ab".repeat(32));
    p
}

/// What an ordinary web container does: run a program, write a file, open
/// a connection, end a process.
fn kernel_events() -> Vec<Arc<Event>> {
    let mut file = process("/usr/bin/python3", &["python3", "app.py"]);
    let path = push(&mut file.text, "/tmp/cache/session-4f1.json");
    vec![
        event(EventKind::Process(Box::new(ProcessEvent {
            activity: ProcessActivity::Exec,
            process: process(
                "/usr/bin/convert",
                &["convert", "/tmp/in.png", "-resize", "50%", "/tmp/out.png"],
            ),
            exit: None,
            exe: Default::default(),
        }))),
        event(EventKind::File(Box::new(FileEvent {
            op: FileOperation::Open,
            process: file,
            path,
            new_path: Str::EMPTY,
            flags: 0o1101,
            mode: Some(0o644),
            uid: None,
            gid: None,
            sensitive: false,
        }))),
        event(EventKind::Network(Box::new(NetworkEvent {
            op: NetworkOp::Connect,
            process: process("/usr/bin/python3", &["python3", "app.py"]),
            result: 0,
            protocol: 6,
            local: "10.1.0.7:40000".parse().unwrap_or_else(|e| panic!("{e}")),
            remote: Some("10.1.0.9:5432".parse().unwrap_or_else(|e| panic!("{e}"))),
        }))),
        event(EventKind::Process(Box::new(ProcessEvent {
            activity: ProcessActivity::Exit,
            process: process("/usr/bin/convert", &["convert"]),
            exit: None,
            exe: Default::default(),
        }))),
    ]
}

fn audit_events() -> Vec<Arc<Event>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/samples/k8s-audit.log"
    );
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter_map(|l| k8s_audit::parse_line(l).ok())
        .map(|a| Arc::new(Event::api_activity(a, Arc::default(), Timestamp(1))))
        .collect()
}

/// 100 rules of the kinds users write: names and arguments of programs,
/// paths of files, ports and networks of connections.
fn user_rules() -> String {
    let mut text = String::new();
    for i in 0..100 {
        let (kinds, when) = match i % 4 {
            0 => (
                "process_exec",
                format!("{{ all = [{{ field = \"process.name\", in = [\"tool{i}\", \"helper{i}\"] }}, {{ field = \"container.id\", exists = true }}] }}"),
            ),
            1 => (
                "process_exec",
                format!("{{ field = \"process.command_line\", contains = [\"--flag-{i}\", \"secret-{i}\"] }}"),
            ),
            2 => (
                "file_write",
                format!("{{ field = \"file.path\", prefix = [\"/etc/app{i}/\", \"/opt/app{i}/bin/\"] }}"),
            ),
            _ => (
                "network_connect",
                format!("{{ all = [{{ field = \"destination.port\", equals = {} }}, {{ not = {{ field = \"destination.ip\", cidr = \"10.0.0.0/8\" }} }}] }}", 20000 + i),
            ),
        };
        text.push_str(&format!(
            "[[rule]]\nid = \"user.r{i}\"\ntitle = \"rule {i}\"\nkinds = [\"{kinds}\"]\nattack = [\"T1105\"]\nwhen = {when}\n\n"
        ));
    }
    text
}

fn bench(c: &mut Criterion) {
    let kernel = kernel_events();
    let config: DetectConfig = toml::from_str("inputs = [\"x\"]").unwrap_or_else(|e| panic!("{e}"));
    let mut builtin = Detector::new(&config).unwrap_or_else(|e| panic!("{e}"));
    // The sample log's kubectl exec is a finding: left out here.
    let audit: Vec<Arc<Event>> = audit_events()
        .into_iter()
        .filter(|e| {
            // Ten times: the forbidden request would reach its threshold.
            let mut found = Vec::new();
            let mut d = Detector::new(&config).unwrap_or_else(|e| panic!("{e}"));
            for _ in 0..10 {
                d.inspect(e, &mut found);
            }
            found.is_empty()
        })
        .collect();
    let rules =
        rule::parse_file("bench.toml", &user_rules(), "lumen").unwrap_or_else(|e| panic!("{e}"));
    let mut users = Detector::with_rules(rules, 60, 10_000);
    let mut out = Vec::new();
    for e in kernel.iter().chain(&audit) {
        builtin.inspect(e, &mut out);
        users.inspect(e, &mut out);
    }
    assert!(
        out.is_empty(),
        "the bench events must match nothing: {} findings",
        out.len()
    );

    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(kernel.len() as u64));
    g.bench_function("built-in pack, kernel events matching nothing", |b| {
        b.iter(|| {
            for e in &kernel {
                builtin.inspect(e, &mut out);
            }
        })
    });
    g.bench_function("100 user rules, kernel events matching nothing", |b| {
        b.iter(|| {
            for e in &kernel {
                users.inspect(e, &mut out);
            }
        })
    });
    g.throughput(Throughput::Elements(audit.len() as u64));
    g.bench_function("built-in pack, audit events matching nothing", |b| {
        b.iter(|| {
            for e in &audit {
                builtin.inspect(e, &mut out);
            }
        })
    });
    // Most of an audit log: reads (get, list, watch), which no rule needs
    // a body for.
    let reads: Vec<Arc<Event>> = audit
        .iter()
        .filter(|e| match &e.kind {
            EventKind::ApiActivity(a) => ["get", "list", "watch"].contains(&a.s(a.verb)),
            _ => false,
        })
        .cloned()
        .collect();
    g.throughput(Throughput::Elements(reads.len() as u64));
    g.bench_function("built-in pack, audit reads matching nothing", |b| {
        b.iter(|| {
            for e in &reads {
                builtin.inspect(e, &mut out);
            }
        })
    });
    // The writes whose body a rule reads: a binding, a pod.
    let writes: Vec<Arc<Event>> = audit
        .iter()
        .filter(|e| match &e.kind {
            EventKind::ApiActivity(a) => a.s(a.verb) == "create",
            _ => false,
        })
        .cloned()
        .collect();
    g.throughput(Throughput::Elements(writes.len() as u64));
    g.bench_function("built-in pack, audit creates matching nothing", |b| {
        b.iter(|| {
            for e in &writes {
                builtin.inspect(e, &mut out);
            }
        })
    });
    g.finish();
    assert!(out.is_empty());
}

criterion_group!(benches, bench);
criterion_main!(benches);
