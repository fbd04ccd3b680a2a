//! The disk buffer against the real file system: order, acknowledgements,
//! restarts, torn tails, corruption, a full buffer.

use super::segment::{BLOCK_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::*;
use crate::ack::{self, Ack, AckReceiver, AckSender, Status};
use lumen_schemas::event::ApiActivity;
use lumen_schemas::time::Timestamp;
use lumen_schemas::{Event, EventKind};
use std::os::unix::fs::FileExt;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Event number `i`, carrying `size` bytes of incompressible text.
fn event(i: i64, size: usize) -> Event {
    let mut rng = fastrand::Rng::with_seed(i as u64);
    let text: String = (0..size).map(|_| rng.alphanumeric()).collect();
    Event {
        time: Timestamp(i),
        observed: Timestamp(i),
        host: Arc::default(),
        kind: EventKind::ApiActivity(Box::new(ApiActivity {
            text,
            ..Default::default()
        })),
        redaction: Default::default(),
    }
}

fn config(max_size: u64) -> DiskBufferConfig {
    DiskBufferConfig {
        max_size,
        ..Default::default()
    }
}

struct Running {
    input: Option<mpsc::Sender<Envelope>>,
    output: mpsc::Receiver<Envelope>,
    tasks: Vec<JoinHandle<()>>,
    metrics: Arc<BufferMetrics>,
    upstream: AckSender,
    upstream_acks: AckReceiver,
    /// Events the sink took and never answered (dropped at stop).
    held: Vec<Envelope>,
}

fn open(dir: &Path, config: &DiskBufferConfig) -> Running {
    let (tx, rx) = mpsc::channel(64);
    let buffer = super::start("test", config, dir, rx, Arc::default()).unwrap();
    let (upstream, upstream_acks) = ack::channel();
    Running {
        input: Some(tx),
        output: buffer.output,
        tasks: buffer.tasks.into_iter().map(tokio::spawn).collect(),
        metrics: buffer.metrics,
        upstream,
        upstream_acks,
        held: Vec::new(),
    }
}

impl Running {
    async fn send(&self, range: std::ops::Range<i64>, size: usize) {
        let input = self.input.as_ref().unwrap();
        for i in range {
            let env = Envelope::new(event(i, size), Ack::new(self.upstream.node(i as u64)));
            input.send(env).await.unwrap();
        }
    }

    /// Upstream acknowledgements, waiting up to `wait` for `n` of them.
    async fn upstream_acked(&mut self, n: usize, wait: Duration) -> Vec<(u64, Status)> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while got.len() < n {
            match tokio::time::timeout_at(deadline, self.upstream_acks.recv()).await {
                Ok(Some(a)) => got.push((a.cookie, a.status)),
                _ => break,
            }
        }
        got
    }

    /// Takes `n` events from the sink side; acknowledges them with `status`.
    async fn take(&mut self, n: usize, status: Option<Status>) -> Vec<i64> {
        let mut got = Vec::new();
        for _ in 0..n {
            let env = tokio::time::timeout(Duration::from_secs(10), self.output.recv())
                .await
                .expect("an event within 10 s")
                .expect("buffer open");
            got.push(env.event.time.0);
            match status {
                Some(s) => env.ack.complete(s),
                None => self.held.push(env),
            }
        }
        got
    }

    /// Closes the input (shutdown) and waits for the buffer's tasks.
    async fn stop(mut self) -> Arc<BufferMetrics> {
        self.input = None;
        drop(self.output);
        self.held.clear();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("buffer tasks end")
                .unwrap();
        }
        self.metrics
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn events_come_out_in_order_acked_upstream_once_written_and_segments_go_once_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    b.send(0..2000, 300).await;
    // Upstream learns "safe" before the sink has taken anything.
    let acked = b.upstream_acked(2000, Duration::from_secs(10)).await;
    assert_eq!(acked.len(), 2000);
    assert!(acked.iter().all(|(_, s)| *s == Status::Delivered));
    assert!(
        segments(dir.path()).len() > 1,
        "2000 × 300 B spans segments"
    );
    let got = b.take(2000, Some(Status::Delivered)).await;
    assert_eq!(got, (0..2000).collect::<Vec<_>>());
    // Acknowledged segments are deleted; the writer's current one stays.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while segments(dir.path()).len() > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(segments(dir.path()).len(), 1);
    let m = b.stop().await;
    assert_eq!(BufferMetrics::get(&m.events_in), 2000);
    assert_eq!(BufferMetrics::get(&m.events_out), 2000);
}

#[tokio::test]
async fn a_restart_resends_exactly_what_the_sink_had_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    b.send(0..500, 200).await;
    assert_eq!(
        b.upstream_acked(500, Duration::from_secs(10)).await.len(),
        500
    );
    // The sink delivers 0..150, then takes 150..160 without an answer.
    assert_eq!(
        b.take(150, Some(Status::Delivered)).await,
        (0..150).collect::<Vec<_>>()
    );
    b.take(10, None).await;
    b.stop().await;

    let mut b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    let got = b.take(350, Some(Status::Delivered)).await;
    assert_eq!(
        got,
        (150..500).collect::<Vec<_>>(),
        "no loss, no resend of acknowledged events"
    );
    b.send(500..510, 200).await;
    assert_eq!(
        b.take(10, Some(Status::Delivered)).await,
        (500..510).collect::<Vec<_>>()
    );
    b.stop().await;
}

#[tokio::test]
async fn acknowledgements_out_of_order_hold_the_frontier_at_the_first_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    b.send(0..20, 100).await;
    let mut envs = Vec::new();
    for _ in 0..20 {
        envs.push(b.output.recv().await.unwrap());
    }
    // Everything but event 5 is delivered.
    for (i, env) in envs.into_iter().enumerate() {
        if i == 5 {
            drop(env);
        } else {
            env.ack.complete(Status::Delivered);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.stop().await;
    let mut b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    let got = b.take(15, Some(Status::Delivered)).await;
    assert_eq!(
        got,
        (5..20).collect::<Vec<_>>(),
        "resent from the first unacknowledged event"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_reported_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    b.send(0..100, 100).await;
    b.stop().await;
    let seg = segments(dir.path()).pop().unwrap();
    // A crash in the middle of appending a block: half a block's header.
    let f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    use std::io::Write;
    (&f).write_all(&segment::BLOCK_MAGIC.to_le_bytes()).unwrap();
    (&f).write_all(&[7u8; 9]).unwrap();
    let len = f.metadata().unwrap().len();

    let mut b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    assert_eq!(BufferMetrics::get(&b.metrics.torn_bytes), 13);
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        len - 13,
        "truncated to the last whole block"
    );
    assert_eq!(
        b.take(100, Some(Status::Delivered)).await,
        (0..100).collect::<Vec<_>>()
    );
    let m = b.stop().await;
    assert_eq!(BufferMetrics::get(&m.corrupted_bytes), 0);
}

#[tokio::test]
async fn a_flipped_byte_is_caught_by_the_crc_reported_and_the_other_blocks_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    // One event per block: each send waits until the writer has written it.
    for i in 0..30 {
        b.send(i..i + 1, 100).await;
        assert_eq!(b.upstream_acked(1, Duration::from_secs(5)).await.len(), 1);
    }
    b.stop().await;
    let seg = segments(dir.path()).pop().unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    // The second block starts after the first one; flip a byte in its payload.
    let mut h = [0u8; BLOCK_HEADER_LEN];
    f.read_exact_at(&mut h, SEGMENT_HEADER_LEN).unwrap();
    let first_len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
    let second = SEGMENT_HEADER_LEN + BLOCK_HEADER_LEN as u64 + first_len;
    let at = second + BLOCK_HEADER_LEN as u64 + 5;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x40], at).unwrap();

    let mut b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    let got = b.take(29, Some(Status::Delivered)).await;
    assert_eq!(got, std::iter::once(0).chain(2..30).collect::<Vec<_>>());
    let m = b.stop().await;
    assert!(
        BufferMetrics::get(&m.corrupted_bytes) > 0,
        "the corruption is counted"
    );
    assert_eq!(
        BufferMetrics::get(&m.torn_bytes),
        0,
        "corruption is not mistaken for a torn tail"
    );
}

#[tokio::test]
async fn a_full_buffer_blocks_its_input_until_the_sink_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = open(dir.path(), &config(MIN_MAX_SIZE));
    // 600 KiB of incompressible events into a 256 KiB buffer.
    let input = b.input.clone().unwrap();
    let upstream = b.upstream.clone();
    let producer = tokio::spawn(async move {
        for i in 0..600 {
            let env = Envelope::new(event(i, 1024), Ack::new(upstream.node(i as u64)));
            input.send(env).await.unwrap();
        }
    });
    let first = b.upstream_acked(600, Duration::from_secs(2)).await;
    assert!(
        first.len() < 600 && first.len() > 100,
        "held back after {} events",
        first.len()
    );
    assert!(BufferMetrics::get(&b.metrics.bytes_on_disk) <= MIN_MAX_SIZE);
    assert!(!producer.is_finished(), "the input is held back");
    // The sink catches up: everything gets through, in order, none dropped.
    let mut got = Vec::new();
    while got.len() < 600 {
        got.extend(b.take(1, Some(Status::Delivered)).await);
    }
    assert_eq!(got, (0..600).collect::<Vec<_>>());
    producer.await.unwrap();
    let rest = b
        .upstream_acked(600 - first.len(), Duration::from_secs(5))
        .await;
    assert!(rest
        .iter()
        .chain(&first)
        .all(|(_, s)| *s == Status::Delivered));
    let m = b.stop().await;
    assert_eq!(BufferMetrics::get(&m.dropped_full), 0);
}

#[tokio::test]
async fn a_full_buffer_with_drop_newest_rejects_and_counts_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(MIN_MAX_SIZE);
    c.when_full = WhenFull::DropNewest;
    let mut b = open(dir.path(), &c);
    b.send(0..400, 1024).await;
    let acks = b.upstream_acked(400, Duration::from_secs(10)).await;
    assert_eq!(acks.len(), 400, "the input is never held back");
    let rejected = acks.iter().filter(|(_, s)| *s == Status::Rejected).count() as u64;
    assert!(rejected > 0);
    assert_eq!(BufferMetrics::get(&b.metrics.dropped_full), rejected);
    let kept = 400 - rejected as usize;
    let got = b.take(kept, Some(Status::Delivered)).await;
    assert_eq!(
        got,
        (0..kept as i64).collect::<Vec<_>>(),
        "the oldest are kept"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_segment_of_another_version_is_set_aside_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    b.send(0..10, 100).await;
    b.stop().await;
    let seg = segments(dir.path()).pop().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&99u32.to_le_bytes(), 12).unwrap();
    let b = open(dir.path(), &config(MIN_MAX_SIZE * 4));
    assert!(seg.with_extension("unreadable").exists());
    assert!(BufferMetrics::get(&b.metrics.corrupted_bytes) > 0);
    b.stop().await;
}

#[test]
fn settings_are_checked() {
    assert!(config(MIN_MAX_SIZE - 1)
        .validate()
        .unwrap_err()
        .contains("max_size"));
    let mut c = config(MIN_MAX_SIZE);
    c.fsync_interval_ms = 0;
    assert!(c.validate().unwrap_err().contains("fsync_interval_ms"));
    c.fsync = FsyncPolicy::Always;
    assert!(c.validate().is_ok());
}
