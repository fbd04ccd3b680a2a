//! A kernel event → ECS and OCSF bytes, on one core: the user-space half of
//! what an ebpf-sourced event costs a sink.
//!
//! Input: a write-open of `/tmp/storm-w-4242` by a process as the ebpf
//! source describes one — executable, argv, parent, seven ancestors,
//! cgroup and namespaces — once on the host and once in a Kubernetes pod
//! (container id, pod, labels, image). Each iteration encodes the event
//! into a reused buffer, as a sink does. Run with
//! `cargo bench -p lumen-schemas --bench kernel_event`; method and numbers
//! are in docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lumen_schemas::event::{
    push, Attribution, ContainerRuntime, FileEvent, FileOperation, Host, ParentInfo, Process,
    QosClass,
};
use lumen_schemas::time::Timestamp;
use lumen_schemas::{Event, EventKind, Schema};
use std::hint::black_box;
use std::sync::Arc;

fn process(in_pod: bool) -> Process {
    let mut p = Process {
        pid: 18415,
        tid: 18415,
        ppid: 18413,
        uid: 0,
        gid: 0,
        cgroup_id: 22211,
        start_time_ns: 11_042_839_130_000,
        ..Process::default()
    }
    .with_text("/tmp/storm", "storm", &["/tmp/storm", "wopen", "300000"]);
    p.parent = ParentInfo {
        executable: push(&mut p.text, "/usr/bin/bash"),
        name: push(&mut p.text, "t.sh"),
        argv: push(&mut p.text, "/bin/bash\0/tmp/ko/t.sh\0wopen\x00300000"),
        start_time_ns: 11_042_800_000_000,
    };
    p.ancestry = vec![18413, 18394, 18389, 18388, 16310, 16309, 1];
    let text = &mut p.text;
    p.attribution = if in_pod {
        Attribution {
            cgroup: push(text, "burstable/pod0f5a7c1e-1111-2222-3333-444455556666/cri-containerd-abababababababababababababababababababababababababababababababab.scope"),
            container_id: push(text, &"ab".repeat(32)),
            runtime: Some(ContainerRuntime::Containerd),
            pod_uid: push(text, "0f5a7c1e-1111-2222-3333-444455556666"),
            qos_class: Some(QosClass::Burstable),
            pod_name: push(text, "web-7d9f"),
            namespace: push(text, "shop"),
            labels: vec![(push(text, "app.kubernetes.io/name"), push(text, "web"))],
            container_name: push(text, "nginx"),
            image: push(text, "nginx:1.27"),
            pid_ns: 4026532200,
            mnt_ns: 4026532201,
            net_ns: 4026532202,
        }
    } else {
        Attribution {
            cgroup: push(text, "process_api/8b2bc501235b9c81d31995c05915794d"),
            pid_ns: 4026531836,
            mnt_ns: 4026531832,
            net_ns: 4026531833,
            ..Attribution::default()
        }
    };
    p
}

fn open_event(in_pod: bool, host: &Arc<Host>) -> Event {
    let mut process = process(in_pod);
    let path = push(&mut process.text, "/tmp/storm-w-18415");
    let t = Timestamp(1_796_398_460_734_000_000);
    Event {
        time: t,
        observed: Timestamp(t.0 + 13_000_000),
        host: host.clone(),
        kind: EventKind::File(Box::new(FileEvent {
            op: FileOperation::Open,
            process,
            path,
            new_path: Default::default(),
            flags: 0o101,
            mode: Some(0o600),
            uid: None,
            gid: None,
            sensitive: false,
        })),
        redaction: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let host = Arc::new(Host {
        name: "node-1".into(),
        architecture: "x86_64".into(),
        kernel: "6.18.44".into(),
    });
    let mut g = c.benchmark_group("kernel_event");
    g.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(8 * 1024);
    for (place, in_pod) in [("host", false), ("pod", true)] {
        let event = open_event(in_pod, &host);
        for (schema, name) in [(Schema::Ocsf, "ocsf"), (Schema::Ecs, "ecs")] {
            g.bench_function(format!("file open on the {place} → {name}"), |b| {
                b.iter(|| {
                    out.clear();
                    schema.encode(black_box(&event), &mut out);
                    black_box(&out);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
