//! Disk buffers through the binary, under the faults of issue 6: kill -9
//! while shipping to a flaky sink, SIGTERM during an outage, a flipped byte
//! in a segment, a full disk.

use crate::network_sinks::peers::elasticsearch_peer::{EsPeer, Fault};
use crate::network_sinks::{runtime, write_audit_log};
use crate::support::{audit_line, is_root, Lumen};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An audit-file → elasticsearch config over `base`, the sink behind a
/// buffer of type `buffer`.
pub(crate) fn config_with(base: &Path, es: &EsPeer, buffer: &str, extra_sink: &str) -> String {
    format!(
        r#"
data_dir = "{b}/data"
shutdown_timeout_secs = 30
[sources.audit]
type = "k8s_audit_file"
path = "{b}/logs/*.log"
poll_interval_ms = 50
checkpoint_interval_ms = 100

[sinks.es]
type = "elasticsearch"
inputs = ["audit"]
endpoints = ["{es}"]
healthcheck = false
install_templates = false
batch.max_events = 20
batch.timeout_secs = 0.05
request.concurrency = 1
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.2
buffer.type = "{buffer}"
{extra_sink}
"#,
        b = base.display(),
        es = es.url()
    )
}

/// The same behind a disk buffer.
fn config(base: &Path, es: &EsPeer, extra_sink: &str) -> String {
    config_with(base, es, "disk", extra_sink)
}

fn down(es: &EsPeer) {
    es.with(|s| {
        s.faults.clear();
        s.faults
            .extend(std::iter::repeat_n(Fault::Status(503, None), 1_000_000));
    });
}

fn wait_arrivals(es: &EsPeer, ids: impl Iterator<Item = String> + Clone, timeout: Duration) {
    wait_arrivals_or_say(es, ids, timeout, &String::new);
}

/// As [`wait_arrivals`], with `context()` (Lumen's log) in the failure.
fn wait_arrivals_or_say(
    es: &EsPeer,
    ids: impl Iterator<Item = String> + Clone,
    timeout: Duration,
    context: &dyn Fn() -> String,
) {
    let start = Instant::now();
    loop {
        let arrivals = es.arrivals();
        let missing: Vec<String> = ids
            .clone()
            .filter(|id| !arrivals.contains_key(id))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{} events never arrived, first {}\n{}",
            missing.len(),
            missing[0],
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the file source's checkpoint covers `len` bytes of the log:
/// every line is acknowledged, which with a disk buffer means written to it.
fn wait_checkpointed(base: &Path, len: u64) {
    let path = base.join("data/checkpoints/audit.json");
    let start = Instant::now();
    loop {
        let offset = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["files"][0]["offset"].as_u64());
        if offset == Some(len) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "checkpoint at {offset:?}, log is {len} bytes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ids(prefix: &str, range: std::ops::Range<usize>) -> impl Iterator<Item = String> + Clone {
    let prefix = prefix.to_owned();
    range.map(move |i| format!("{prefix}-{i:04}"))
}

fn segments(base: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(base.join("data/buffers/es"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    v.sort();
    v
}

/// (a) kill -9 again and again while a disk buffer ships a large audit log
/// to a sink that is down part of the time: after the last restart every
/// event has arrived, and each crash repeated at most the batch in flight
/// and the one answered just before it.
#[test]
fn sigkill_with_a_disk_buffer_loses_nothing_and_repeats_at_most_two_batches_per_crash() {
    const N: usize = 3000;
    const BATCH: usize = 20;
    let rt = runtime();
    let es = rt.block_on(EsPeer::start(None));
    es.with(|s| {
        s.faults
            .extend(std::iter::repeat_n(Fault::Status(503, None), 5));
        s.faults.extend(std::iter::repeat_n(
            Fault::SlowAfterIndexing(Duration::from_millis(20)),
            1000,
        ));
    });
    let base = tempfile::tempdir().unwrap();
    write_audit_log(base.path(), "kill", N);
    let config = config(base.path(), &es, "");
    let mut crashes = 0;
    for round in 0..5 {
        let mut lumen = Lumen::start_in(tempfile::tempdir_in(base.path()).unwrap(), &config);
        let target = es.with(|s| s.docs.len()) + 150 + round * 50;
        let start = Instant::now();
        while es.with(|s| s.docs.len()) < target.min(N) && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        if es.with(|s| s.docs.len()) >= N {
            let _ = lumen.stop();
            break;
        }
        // Half the crashes while Elasticsearch is down.
        if round % 2 == 1 {
            es.with(|s| {
                for _ in 0..3 {
                    s.faults.push_front(Fault::Status(503, None));
                }
            });
        }
        lumen.signal(libc::SIGKILL);
        let _ = lumen.wait_exit(Duration::from_secs(10));
        crashes += 1;
    }
    let mut lumen = Lumen::start_in(tempfile::tempdir_in(base.path()).unwrap(), &config);
    wait_arrivals(&es, ids("kill", 0..N), Duration::from_secs(60));
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let repeats: usize = es.arrivals().values().map(|n| n - 1).sum();
    assert!(crashes >= 3, "the test crashed lumen {crashes} times");
    // Each crash repeats the batch in flight (the peer indexes it, then
    // answers 20 ms late): one batch per crash, as a rule. With the CPUs
    // busy, a crash sometimes also repeats the batch before it (measured:
    // 1 run in 7 with two busy loops beside the test): the receiver had
    // answered it and the next batch was indexed, but its acknowledgement
    // had not yet reached the disk buffer's ledger. At-least-once allows
    // both; more would mean acknowledgements lost.
    assert!(
        repeats <= crashes * 2 * BATCH,
        "{repeats} repeated events over {crashes} crashes: more than two batches ({BATCH}) per crash"
    );
    eprintln!("{crashes} crashes, {repeats} repeated events of {N}");
}

/// Runs lumen with Elasticsearch down until the log's events are all in the
/// disk buffer (written in `parts`, each its own block), then SIGTERMs it.
/// The log is removed afterwards: from then on the events exist only in
/// the buffer.
fn buffer_during_an_outage(base: &Path, es: &EsPeer, prefix: &str, parts: &[usize]) {
    down(es);
    let config = config(base, es, "");
    std::fs::create_dir_all(base.join("logs")).unwrap();
    let log = base.join("logs/audit.log");
    let mut lumen = Lumen::start_in(tempfile::tempdir_in(base).unwrap(), &config);
    let mut n = 0;
    for part in parts {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        for i in n..n + part {
            writeln!(f, "{}", audit_line(&format!("{prefix}-{i:04}"), "get")).unwrap();
        }
        drop(f);
        n += part;
        wait_checkpointed(base, std::fs::metadata(&log).unwrap().len());
    }
    assert!(es.arrivals().is_empty(), "Elasticsearch was down");
    let stopping = Instant::now();
    lumen.signal(libc::SIGTERM);
    let (status, out) = lumen.wait_exit(Duration::from_secs(20));
    let out = out.join("\n");
    assert!(out.contains("SIGTERM received"), "{out}");
    // The sink does not hold the shutdown up retrying: the buffer keeps
    // what it could not deliver.
    assert!(status.success(), "{out}");
    assert!(stopping.elapsed() < Duration::from_secs(10), "{out}");
    assert!(
        out.contains("stay in the disk buffer for the next start"),
        "{out}"
    );
    std::fs::remove_file(&log).unwrap();
    assert!(!segments(base).is_empty(), "the buffer keeps its segments");
}

/// (e) SIGTERM while the sink is down: the buffered events wait on disk for
/// the next start, which delivers them (the log they came from is gone).
#[test]
fn sigterm_during_an_outage_keeps_the_disk_buffer_for_the_next_start() {
    let rt = runtime();
    let es = rt.block_on(EsPeer::start(None));
    let base = tempfile::tempdir().unwrap();
    buffer_during_an_outage(base.path(), &es, "term", &[300]);
    es.with(|s| s.faults.clear());
    let mut lumen = Lumen::start_in(
        tempfile::tempdir_in(base.path()).unwrap(),
        &config(base.path(), &es, ""),
    );
    wait_arrivals(&es, ids("term", 0..300), Duration::from_secs(30));
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    assert!(log.join("\n").contains("disk buffer: resuming"));
    // Delivered and acknowledged: the segments are gone but the current one.
    assert!(segments(base.path()).len() <= 1);
}

/// (c) A flipped byte in a segment: the CRC catches it, Lumen reports it
/// and delivers the other blocks.
#[test]
fn a_flipped_byte_in_a_segment_is_reported_and_the_other_blocks_delivered() {
    let rt = runtime();
    let es = rt.block_on(EsPeer::start(None));
    let base = tempfile::tempdir().unwrap();
    buffer_during_an_outage(base.path(), &es, "flip", &[100, 100]);
    // The segment holds the two parts as blocks; flip a byte in the first
    // block's payload.
    let seg = segments(base.path()).pop().unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut h = [0u8; 20];
    f.read_exact_at(&mut h, 16).unwrap();
    let first_len = 20 + u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
    assert!(16 + first_len < f.metadata().unwrap().len(), "two blocks");
    let victim = 16 + 20 + 3;
    let mut b = [0u8];
    f.read_exact_at(&mut b, victim).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], victim).unwrap();

    es.with(|s| s.faults.clear());
    let mut lumen = Lumen::start_in(
        tempfile::tempdir_in(base.path()).unwrap(),
        &config(base.path(), &es, ""),
    );
    wait_arrivals(&es, ids("flip", 100..200), Duration::from_secs(30));
    lumen.wait_for_log("corrupted data skipped", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let arrivals = es.arrivals();
    assert!(
        ids("flip", 0..100).all(|id| !arrivals.contains_key(&id)),
        "the corrupt block's events cannot be delivered"
    );
    let (status, log) = lumen.stop();
    assert!(
        status.success(),
        "lumen keeps going after corruption: {}",
        log.join("\n")
    );
    let log = log.join("\n");
    assert!(log.contains("block CRC32C mismatch"), "{log}");
}

/// A tmpfs of `size` at `path`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs at {}", path.display());
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// (b) The disk fills up under the buffer: a clear error naming the file,
/// the input held back, nothing corrupted, and everything delivered once
/// the sink drains the buffer and space comes back.
#[test]
fn a_full_disk_holds_the_input_back_and_recovers_when_space_returns() {
    assert!(
        is_root(),
        "mounting a small tmpfs needs root (CI runs as root)"
    );
    const N: usize = 1500;
    let rt = runtime();
    let es = rt.block_on(EsPeer::start(None));
    down(&es);
    let base = tempfile::tempdir().unwrap();
    let _tmpfs = Tmpfs::mount(&base.path().join("data"), "1m");
    // ~2 KiB events that zstd shrinks little: 1500 of them need ~3 MiB.
    std::fs::create_dir_all(base.path().join("logs")).unwrap();
    let mut f = std::fs::File::create(base.path().join("logs/audit.log")).unwrap();
    let mut rng = fastrand::Rng::with_seed(6);
    for id in ids("full", 0..N) {
        let noise: String = (0..2048).map(|_| rng.alphanumeric()).collect();
        let line = audit_line(&id, "get").replace("kubectl/v1.30", &format!("kubectl/{noise}"));
        writeln!(f, "{line}").unwrap();
    }
    drop(f);
    let config = config(
        base.path(),
        &es,
        "buffer.max_size = 67108864\nbatch.max_events = 100\n",
    )
    .replace("batch.max_events = 20\n", "");
    let mut lumen = Lumen::start_in(tempfile::tempdir_in(base.path()).unwrap(), &config);
    lumen.wait_for_log(
        "disk buffer: write failed (disk full?)",
        Duration::from_secs(30),
    );
    let log = lumen.log().join("\n");
    assert!(log.contains("No space left on device"), "{log}");
    assert!(
        log.contains("/data/buffers/es/"),
        "the error names the file: {log}"
    );
    // Elasticsearch comes back: the buffer drains, segments go, space returns.
    es.with(|s| s.faults.clear());
    let tail = || {
        let log = lumen.log();
        log[log.len().saturating_sub(60)..].join("\n")
    };
    wait_arrivals_or_say(&es, ids("full", 0..N), Duration::from_secs(90), &tail);
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let log = log.join("\n");
    assert!(
        !log.contains("corrupted data"),
        "a full disk must not corrupt the buffer: {log}"
    );
    let repeats: usize = es.arrivals().values().map(|n| n - 1).sum();
    assert_eq!(repeats, 0, "nothing was resent");
}

/// An event lost on the way — Elasticsearch rejects it and its dead letter
/// cannot be written — is acknowledged as dropped: the file checkpoint
/// stays before it, and the next start reads it (and what follows) again.
#[test]
fn an_event_lost_on_the_way_holds_the_file_checkpoint_back() {
    let rt = runtime();
    let es = rt.block_on(EsPeer::start(None));
    es.with(|s| s.reject_containing = Some("lost-0300".into()));
    let base = tempfile::tempdir().unwrap();
    // Several read chunks (64 KiB; the source acknowledges per chunk).
    write_audit_log(base.path(), "lost", 400);
    // /proc refuses new files: the dead letter cannot be written.
    let config = config_with(
        base.path(),
        &es,
        "memory",
        "dead_letter_path = \"/proc/lumen-e2e/dead-letter.ndjson\"",
    );
    let mut lumen = Lumen::start_in(tempfile::tempdir_in(base.path()).unwrap(), &config);
    wait_arrivals(
        &es,
        ids("lost", 0..300).chain(ids("lost", 301..400)),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(400));
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    assert!(
        log.join("\n").contains("event lost"),
        "the loss is reported"
    );
    let text = std::fs::read_to_string(base.path().join("logs/audit.log")).unwrap();
    let before_lost: usize = text.lines().take(300).map(|l| l.len() + 1).sum();
    let checkpoint: serde_json::Value = serde_json::from_slice(
        &std::fs::read(base.path().join("data/checkpoints/audit.json")).unwrap(),
    )
    .unwrap();
    let offset = checkpoint["files"][0]["offset"].as_u64().unwrap() as usize;
    // Never past the lost event; past the chunks acknowledged before it;
    // at the end of a line.
    assert!(
        offset > 0 && offset <= before_lost,
        "the checkpoint stops before the lost event: {offset} of {before_lost}"
    );
    assert_eq!(text.as_bytes()[offset - 1], b'\n');
    // The next start reads from the checkpoint on: the lost event and what
    // follows it are sent again, the chunks before it are not.
    es.with(|s| s.reject_containing = None);
    let mut lumen = Lumen::start_in(tempfile::tempdir_in(base.path()).unwrap(), &config);
    wait_arrivals(&es, ids("lost", 300..301), Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let _ = lumen.stop();
    let arrivals = es.arrivals();
    assert_eq!(
        arrivals["lost-0004"], 1,
        "acknowledged events are not read again"
    );
    assert_eq!(
        arrivals["lost-0350"], 2,
        "events after the lost one are read again"
    );
}
