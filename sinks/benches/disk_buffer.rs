//! Disk buffer throughput, per fsync policy: 200,000 Kubernetes audit events
//! (Lumen's sample log, ~1.25 KB each) written through a disk buffer as fast
//! as it takes them (time to the last upstream acknowledgement), then read
//! back and acknowledged by a consumer that does nothing else (time to the
//! last event). MB/s are of the encoded events (what the buffer frames and
//! compresses) and of the bytes on disk.
//! Run: `cargo bench -p lumen-sinks --bench disk_buffer [-- word]`.

use lumen_schemas::event::Host;
use lumen_schemas::time::Timestamp;
use lumen_schemas::{k8s_audit, Event};
use lumen_sinks::ack::{self, Ack, Status};
use lumen_sinks::buffer::{self, BufferConfig, BufferMetrics, DiskBufferConfig, FsyncPolicy};
use lumen_sinks::Envelope;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

const EVENTS: usize = 200_000;

/// With `noise`, each event carries 256 random characters (an extra field),
/// which zstd cannot shrink: the sample log alone repeats a few events and
/// compresses far better than a real audit log would.
fn events(noise: bool) -> Vec<Event> {
    let mut rng = fastrand::Rng::with_seed(1);
    let sample = include_str!("../../config/samples/k8s-audit.log");
    let host = Arc::new(Host {
        name: "node-1".into(),
        architecture: "x86_64".into(),
        kernel: "6.18.0".into(),
    });
    let lines: Vec<&str> = sample
        .lines()
        .filter(|l| l.contains("\"auditID\""))
        .collect();
    (0..EVENTS)
        .map(|i| {
            let line = lines[i % lines.len()];
            let at = line.find("\"auditID\":\"").unwrap_or(0) + 11;
            let mut unique = format!("{}{:08x}{}", &line[..at], i, &line[at + 8..]);
            if noise {
                let random: String = (0..256).map(|_| rng.alphanumeric()).collect();
                unique = unique.replacen('{', &format!("{{\"noise\":\"{random}\","), 1);
            }
            let a = k8s_audit::parse_line(&unique).unwrap_or_else(|e| panic!("{e}"));
            Event::api_activity(a, host.clone(), Timestamp::now())
        })
        .collect()
}

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for noise in [false, true] {
        run(&rt, &events(noise), noise, &only);
    }
}

fn run(rt: &tokio::runtime::Runtime, source: &[Event], noise: bool, only: &[String]) {
    let mut encoded = 0usize;
    let mut scratch = Vec::new();
    for e in source {
        scratch.clear();
        lumen_schemas::codec::encode(e, &mut scratch);
        encoded += scratch.len();
    }
    let mb = encoded as f64 / 1e6;
    println!();
    println!(
        "input: {EVENTS} audit events{}, {:.0} bytes each encoded ({mb:.0} MB)",
        if noise {
            " with 256 random characters each"
        } else {
            " from the sample log"
        },
        encoded as f64 / EVENTS as f64
    );
    println!();
    println!("| fsync | write events/s | write MB/s (encoded) | on disk | read events/s | read MB/s (encoded) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let policies = [
        ("never (OS decides)", FsyncPolicy::Never),
        ("interval 1 s (default)", FsyncPolicy::Interval),
        ("always (every block)", FsyncPolicy::Always),
    ];
    for (name, fsync) in policies
        .iter()
        .filter(|(n, _)| only.is_empty() || only.iter().any(|w| n.contains(w.as_str())))
    {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = BufferConfig::Disk(DiskBufferConfig {
            max_size: 4 << 30,
            fsync: *fsync,
            ..Default::default()
        });
        let events = source.to_vec();
        let (write_s, read_s, on_disk) = rt.block_on(async move {
            let (tx, rx) = mpsc::channel(1024);
            let mut b =
                buffer::start("bench", &config, dir.path(), rx).unwrap_or_else(|e| panic!("{e}"));
            let tasks: Vec<_> = b.tasks.drain(..).map(tokio::spawn).collect();
            let (acks, mut acked) = ack::channel();
            let t = Instant::now();
            let producer = tokio::spawn(async move {
                for (i, e) in events.into_iter().enumerate() {
                    let env = Envelope::new(e, Ack::new(acks.node(i as u64)));
                    if tx.send(env).await.is_err() {
                        break;
                    }
                }
                tx
            });
            for _ in 0..EVENTS {
                acked.recv().await;
            }
            let write_s = t.elapsed().as_secs_f64();
            let on_disk = BufferMetrics::get(&b.metrics.bytes_on_disk);
            let t = Instant::now();
            for _ in 0..EVENTS {
                match b.output.recv().await {
                    Some(env) => env.ack.complete(Status::Delivered),
                    None => break,
                }
            }
            let read_s = t.elapsed().as_secs_f64();
            drop(producer.await);
            drop(b.output);
            for t in tasks {
                let _ = t.await;
            }
            (write_s, read_s, on_disk)
        });
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} MB ({:.1}× smaller) | {:.0} | {:.0} |",
            EVENTS as f64 / write_s,
            mb / write_s,
            on_disk as f64 / 1e6,
            encoded as f64 / on_disk.max(1) as f64,
            EVENTS as f64 / read_s,
            mb / read_s,
        );
    }
}
