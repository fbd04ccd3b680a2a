//! Cost per event of the governance transforms, on one core: `redact` with
//! the default GDPR profile (the real audit events of
//! `config/samples/k8s-audit.log`; kernel events with and without personal
//! data) and `rate_limit` keyed per user. For scale, parsing the same audit
//! lines. Run: `cargo bench -p lumen --bench transforms`; numbers in
//! docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lumen::transforms::rate_limit::{Limiter, RateLimitConfig};
use lumen::transforms::redact::{json, RedactConfig, Redactor};
use lumen_schemas::event::{Process, ProcessActivity, ProcessEvent};
use lumen_schemas::time::Timestamp;
use lumen_schemas::{k8s_audit, Event, EventKind};
use std::hint::black_box;
use std::sync::Arc;

fn audit_lines() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/samples/k8s-audit.log"
    );
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn strings(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push('\0');
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn exec(args: &[&str]) -> Event {
    Event {
        time: Timestamp(1),
        observed: Timestamp(1),
        host: Arc::default(),
        kind: EventKind::Process(Box::new(ProcessEvent {
            activity: ProcessActivity::Exec,
            process: Process::default().with_text("/usr/bin/x", "x", args),
            exit: None,
            exe: Default::default(),
        })),
        redaction: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let lines = audit_lines();
    let audit: Vec<Event> = lines
        .iter()
        .map(|l| {
            let a = k8s_audit::parse_line(l).unwrap_or_else(|e| panic!("{e}"));
            Event::api_activity(a, Arc::default(), Timestamp(1))
        })
        .collect();
    let config: RedactConfig = toml::from_str("inputs = [\"x\"]").unwrap_or_else(|e| panic!("{e}"));
    let redactor = Redactor::new(&config, b"bench-key".to_vec()).unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("per_event");
    g.throughput(Throughput::Elements(audit.len() as u64));
    g.bench_function("parse audit line (for scale)", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(k8s_audit::parse_line(l).ok());
            }
        })
    });
    // The transform owns the events it gets (changed in place): each
    // iteration gets fresh copies, made outside the measurement.
    let fresh = |events: &[Event]| -> Vec<Arc<Event>> {
        events.iter().map(|e| Arc::new(e.clone())).collect()
    };
    g.bench_function("redact audit event (GDPR default)", |b| {
        b.iter_batched_ref(
            || fresh(&audit),
            |events| {
                for e in events.iter_mut() {
                    black_box(redactor.redact(e));
                }
            },
            BatchSize::SmallInput,
        )
    });
    let clean = exec(&["ls", "-la", "/var/lib/app"]);
    let personal = exec(&[
        "curl",
        "-u",
        "jane@example.org:pw",
        "https://bob:s3cret@api.example.com/?token=abc123",
    ]);
    g.throughput(Throughput::Elements(1));
    let mut clean = Arc::new(clean);
    g.bench_function("redact kernel exec, nothing personal", |b| {
        b.iter(|| black_box(redactor.redact(&mut clean)))
    });
    g.bench_function("redact kernel exec with personal data", |b| {
        b.iter_batched_ref(
            || Arc::new(personal.clone()),
            |e| black_box(redactor.redact(e)),
            BatchSize::SmallInput,
        )
    });
    // The screen alone, over what it gets per audit event: the event's
    // strings NUL-joined (every string value of the line, an upper bound on
    // the free text the walk gathers).
    let batches: Vec<String> = lines
        .iter()
        .map(|l| {
            let mut out = String::new();
            strings(&serde_json::from_str(l).unwrap_or_default(), &mut out);
            out
        })
        .collect();
    g.throughput(Throughput::Elements(batches.len() as u64));
    g.bench_function("screen the free text of an audit event", |b| {
        b.iter(|| {
            for t in &batches {
                black_box(lumen::transforms::redact::detect::suspects(t));
            }
        })
    });
    // The JSON walk alone, with a visitor that changes nothing: the floor
    // under the audit redaction.
    struct Unchanged;
    impl json::Visit for Unchanged {
        fn drop_member(&mut self, _: &[json::Seg<'_>]) -> bool {
            false
        }
        fn string(&mut self, _: &[json::Seg<'_>], raw: &str, _: &mut String) -> bool {
            black_box(raw);
            false
        }
    }
    let (mut buf, mut edits) = (String::new(), Vec::new());
    g.bench_function("walk an audit event's JSON (nothing changed)", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(json::edits_of(l, &mut Unchanged, &mut buf, &mut edits));
            }
        })
    });
    let rl: RateLimitConfig =
        toml::from_str("inputs = [\"x\"]\nkey = \"{{ user.name }}\"\nrate = 1000000000\n")
            .unwrap_or_else(|e| panic!("{e}"));
    let mut limiter = Limiter::new("bench", &rl, governor::clock::DefaultClock::default());
    g.throughput(Throughput::Elements(audit.len() as u64));
    g.bench_function("rate_limit audit event (key per user)", |b| {
        b.iter(|| {
            for e in &audit {
                black_box(limiter.admit(e));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
