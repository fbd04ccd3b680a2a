//! Audit line → canonical event → ECS and OCSF bytes, on one core.
//!
//! Input: the audit events of `config/samples/k8s-audit.log` (real events
//! from public fixtures plus one written for Lumen; 0.7–3.6 KB, mean about
//! 1.5 KB). Each iteration parses every line and encodes it in both schemas
//! into reused buffers, as the file source and a sink do. Run with
//! `cargo bench -p lumen-schemas`; method and numbers are in
//! docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lumen_schemas::event::Host;
use lumen_schemas::time::Timestamp;
use lumen_schemas::{k8s_audit, Event, EventKind, Schema};
use std::hint::black_box;
use std::sync::Arc;

fn corpus() -> Vec<String> {
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

fn to_event(line: &str, host: &Arc<Host>) -> Event {
    let a = match k8s_audit::parse_line(line) {
        Ok(a) => a,
        Err(e) => panic!("corpus line does not parse: {e}"),
    };
    Event {
        time: a.stage_time.unwrap_or_default(),
        observed: Timestamp(1_700_000_000_000_000_000),
        host: host.clone(),
        kind: EventKind::ApiActivity(Box::new(a)),
        redaction: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let lines = corpus();
    let bytes: usize = lines.iter().map(String::len).sum();
    let host = Arc::new(Host {
        name: "node-1".into(),
        architecture: "x86_64".into(),
        kernel: "6.18.0".into(),
    });
    let mean = bytes / lines.len();
    let mut g = c.benchmark_group("k8s_audit");
    g.throughput(Throughput::Elements(lines.len() as u64));
    let mut out = Vec::with_capacity(64 * 1024);
    g.bench_function("escape original", |b| {
        b.iter(|| {
            for line in &lines {
                out.clear();
                lumen_schemas::json::write_escaped(&mut out, black_box(line));
                black_box(&out);
            }
        })
    });
    g.bench_function(format!("parse only ({mean} B mean)"), |b| {
        b.iter(|| {
            for line in &lines {
                black_box(to_event(black_box(line), &host));
            }
        })
    });
    // Each iteration parses afresh: the escaped original an event caches for
    // its encoders is made inside the measurement, as in the pipeline.
    let plans: [(&str, &[Schema]); 3] = [
        ("parse+ecs", &[Schema::Ecs]),
        ("parse+ocsf", &[Schema::Ocsf]),
        ("parse+ecs+ocsf", &[Schema::Ecs, Schema::Ocsf]),
    ];
    for (name, schemas) in plans {
        g.bench_function(name, |b| {
            b.iter(|| {
                for line in &lines {
                    let event = to_event(black_box(line), &host);
                    for schema in schemas {
                        out.clear();
                        schema.encode(&event, &mut out);
                        black_box(&out);
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
