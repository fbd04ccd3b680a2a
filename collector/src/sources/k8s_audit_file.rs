//! The `k8s_audit_file` source: tails Kubernetes API-server audit logs
//! (JSON lines of `audit.k8s.io` Events) matched by a glob.
//!
//! Files are tracked by device and inode, so a file renamed by rotation keeps
//! being read to its end under its new name while the new file at the old
//! path is read from its start; a file whose size drops below the read offset
//! was truncated in place (copytruncate) and is read again from the start.
//! The glob is re-expanded every `poll_interval_ms`.
//!
//! A malformed line (invalid JSON, or JSON that is not an audit event) is
//! logged with its file and line number, counted, and skipped; a line longer
//! than `max_line_bytes` likewise. Every event carries an acknowledgement.
//!
//! Checkpoints ([`super::checkpoint`]): per file, the offset up to which
//! every event was acknowledged by every sink (delivered, or rejected into a
//! dead-letter file — not one lost on the way) is saved every second and at
//! shutdown. A restart resumes each file where its checkpoint says, found
//! by device, inode and a fingerprint of its first bytes — so a file
//! rotated (renamed) while Lumen was down is read on from its checkpoint
//! and the new file from its start: nothing skipped, nothing acknowledged
//! read twice. A crash re-reads at most what was not yet checkpointed.

use super::checkpoint::{self, CheckpointStore, FileCheckpoint};
use crate::topology::fanout::Fanout;
use crate::topology::shutdown::ShutdownSignal;
use lumen_schemas::event::{ApiActivity, Host};
use lumen_schemas::k8s_audit::AuditParseError;
use lumen_schemas::time::Timestamp;
use lumen_schemas::{k8s_audit, Event};
use lumen_sinks::ack::{self, Ack, AckReceiver, Status};
use lumen_sinks::{ComponentMetrics, Envelope};
use serde::Deserialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// `[sources.<id>] type = "k8s_audit_file"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct K8sAuditFileConfig {
    /// A glob: `/var/log/kubernetes/audit/*.log`.
    pub path: String,
    /// Where to start in files that exist when Lumen starts.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Longest line accepted; longer ones are skipped and counted.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// How often to look for new data, new files and rotation.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often checkpoints are saved while running (and always at
    /// shutdown): after a crash, at most this much acknowledged reading is
    /// done again.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// What the lines are: `auto` (each line by its keys), or `native`,
    /// `aks`, `gke`, `cloudwatch` to accept only that.
    #[serde(default)]
    pub format: k8s_audit::Format,
}

fn default_max_line_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_poll_interval_ms() -> u64 {
    250
}
fn default_checkpoint_interval_ms() -> u64 {
    1000
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditFileError {
    #[error("k8s_audit_file: invalid glob {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
}

/// One file being read.
#[derive(Debug)]
struct Tracked {
    /// (device, inode).
    key: (u64, u64),
    path: PathBuf,
    file: tokio::fs::File,
    offset: u64,
    /// Lines read so far (1-based number of the next line).
    line_no: u64,
    partial: Vec<u8>,
    /// Inside a line longer than the limit: discard until its newline.
    skipping: bool,
    /// Still matched by the glob in the latest scan.
    matched: bool,
    /// Scans since it was last matched and had no new data.
    idle_scans: u32,
}

const CHUNK: usize = 64 * 1024;

/// How far one file's events are acknowledged.
#[derive(Debug)]
struct Progress {
    checkpoint: FileCheckpoint,
    /// Chunks of lines read and not yet behind the checkpoint, in file
    /// order: their events' cookie (none when they made no event), the
    /// offset after the chunk's last line, the number of the next line.
    queue: VecDeque<(Option<u64>, u64, u64)>,
}

/// The acknowledgement the events of one read chunk share.
struct ChunkAck {
    cookie: u64,
    node: Arc<ack::AckNode>,
    events: u64,
}

/// The running source.
#[derive(Debug)]
pub struct K8sAuditFileSource {
    config: K8sAuditFileConfig,
    host: Arc<Host>,
    metrics: Arc<ComponentMetrics>,
    files: HashMap<(u64, u64), Tracked>,
    acks: ack::AckSender,
    acked: AckReceiver,
    next_cookie: u64,
    /// Events sent, and acknowledged delivered or not.
    sent_events: u64,
    delivered: u64,
    not_delivered: u64,
    /// The events of each chunk in flight, by cookie.
    chunk_events: HashMap<u64, u64>,
    store: CheckpointStore,
    /// Checkpoints loaded at start-up, by (device, inode), until used.
    saved: HashMap<(u64, u64), FileCheckpoint>,
    progress: HashMap<(u64, u64), Progress>,
    /// Cookies acknowledged ahead of an earlier, still pending line.
    acked_ahead: HashSet<u64>,
    dirty: bool,
    last_save: std::time::Instant,
    /// The events of the line being read (reused).
    parsed: Vec<Result<ApiActivity, AuditParseError>>,
}

impl K8sAuditFileSource {
    /// A source whose checkpoints live under `data_dir` as `source_id`.
    pub fn new(
        config: K8sAuditFileConfig,
        host: Arc<Host>,
        metrics: Arc<ComponentMetrics>,
        data_dir: &std::path::Path,
        source_id: &str,
    ) -> Result<Self, AuditFileError> {
        glob::Pattern::new(&config.path).map_err(|e| AuditFileError::Glob {
            pattern: config.path.clone(),
            message: e.to_string(),
        })?;
        let (acks, acked) = ack::channel();
        let store = CheckpointStore::new(data_dir, source_id);
        let saved = match store.load() {
            Ok(files) => {
                if !files.is_empty() {
                    tracing::info!(checkpoints = %store.path().display(), files = files.len(), "k8s_audit_file: resuming from checkpoints");
                }
                files.into_iter().map(|c| ((c.dev, c.ino), c)).collect()
            }
            Err(e) => {
                metrics.add_errors(1);
                tracing::error!(error = %e, "k8s_audit_file: checkpoints not used");
                HashMap::new()
            }
        };
        Ok(K8sAuditFileSource {
            store,
            saved,
            progress: HashMap::new(),
            acked_ahead: HashSet::new(),
            dirty: false,
            last_save: std::time::Instant::now(),
            parsed: Vec::new(),
            config,
            host,
            metrics,
            files: HashMap::new(),
            acks,
            acked,
            next_cookie: 0,
            sent_events: 0,
            delivered: 0,
            not_delivered: 0,
            chunk_events: HashMap::new(),
        })
    }

    pub async fn run(mut self, mut out: Fanout, mut shutdown: ShutdownSignal) {
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let mut first = true;
        loop {
            if shutdown.is_triggered() {
                break;
            }
            self.scan(first).await;
            first = false;
            let read_any = match self.read_all(&mut out, &shutdown).await {
                Ok(n) => n > 0,
                Err(_closed) => break,
            };
            self.count_acks();
            self.save_if_due();
            if !read_any {
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(poll) => {}
                }
            }
        }
        drop(out);
        self.finish_acks().await;
    }

    /// Expands the glob and opens files not seen before.
    async fn scan(&mut self, first: bool) {
        for t in self.files.values_mut() {
            t.matched = false;
        }
        let paths = match glob::glob(&self.config.path) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(pattern = %self.config.path, error = %e, "k8s_audit_file: bad glob");
                return;
            }
        };
        for entry in paths {
            let path = match entry {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "k8s_audit_file: cannot read a path matched by the glob");
                    continue;
                }
            };
            let meta = match tokio::fs::metadata(&path).await {
                Ok(m) if m.is_file() => m,
                _ => continue,
            };
            let key = (meta.dev(), meta.ino());
            if let Some(t) = self.files.get_mut(&key) {
                t.matched = true;
                t.idle_scans = 0;
                if t.path != path {
                    tracing::info!(from = %t.path.display(), to = %path.display(), "k8s_audit_file: file renamed (rotation); reading on");
                    t.path = path;
                }
                continue;
            }
            let mut file = match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(e) => {
                    self.metrics.add_errors(1);
                    tracing::error!(path = %path.display(), error = %e, "k8s_audit_file: cannot open");
                    continue;
                }
            };
            let head = read_head(&mut file).await;
            let (fingerprint, fingerprint_len) = checkpoint::fingerprint(&head);
            let (offset, line_no) = match self.saved.remove(&key) {
                Some(cp)
                    if cp.fingerprint_len as usize <= head.len()
                        && checkpoint::fingerprint(&head[..cp.fingerprint_len as usize]).0
                            == cp.fingerprint
                        && cp.offset <= meta.len() =>
                {
                    tracing::info!(path = %path.display(), offset = cp.offset, line = cp.line_no, "k8s_audit_file: resuming at the checkpoint");
                    (cp.offset, cp.line_no)
                }
                Some(cp) => {
                    tracing::info!(path = %path.display(), checkpoint_offset = cp.offset, "k8s_audit_file: file changed while Lumen was down (other content or truncated); reading from its start");
                    (0, 1)
                }
                None if first && self.config.read_from == ReadFrom::End => (meta.len(), 0),
                None => (0, 1),
            };
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
                continue;
            }
            self.progress.insert(
                key,
                Progress {
                    checkpoint: FileCheckpoint {
                        path: path.clone(),
                        dev: key.0,
                        ino: key.1,
                        fingerprint,
                        fingerprint_len,
                        offset,
                        line_no: line_no.max(1),
                    },
                    queue: VecDeque::new(),
                },
            );
            tracing::info!(path = %path.display(), offset, "k8s_audit_file: reading");
            self.files.insert(
                key,
                Tracked {
                    key,
                    path,
                    file,
                    offset,
                    line_no: line_no.max(1),
                    partial: Vec::new(),
                    skipping: false,
                    matched: true,
                    idle_scans: 0,
                },
            );
        }
    }

    /// Reads new data from every tracked file; returns the bytes read.
    async fn read_all(
        &mut self,
        out: &mut Fanout,
        shutdown: &ShutdownSignal,
    ) -> Result<usize, crate::topology::fanout::Closed> {
        let mut total = 0;
        let keys: Vec<(u64, u64)> = self.files.keys().copied().collect();
        let mut buf = vec![0u8; CHUNK];
        for key in keys {
            let Some(mut t) = self.files.remove(&key) else {
                continue;
            };
            // Copytruncate: the file is now shorter than what was read.
            if let Ok(meta) = t.file.metadata().await {
                if meta.len() < t.offset {
                    tracing::info!(path = %t.path.display(), "k8s_audit_file: file truncated; reading from its start");
                    if let Some(p) = self.progress.get_mut(&key) {
                        p.queue.clear();
                        p.checkpoint.offset = 0;
                        p.checkpoint.line_no = 1;
                        self.dirty = true;
                    }
                    t.offset = 0;
                    t.line_no = 1;
                    t.partial.clear();
                    t.skipping = false;
                    if t.file.seek(std::io::SeekFrom::Start(0)).await.is_err() {
                        continue;
                    }
                }
            }
            let mut read_here = 0;
            loop {
                let n = match t.file.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        self.metrics.add_errors(1);
                        tracing::error!(path = %t.path.display(), error = %e, "k8s_audit_file: read failed");
                        break;
                    }
                };
                t.offset += n as u64;
                read_here += n;
                if let Err(closed) = self.lines(&mut t, &buf[..n], out).await {
                    self.files.insert(key, t);
                    return Err(closed);
                }
                if shutdown.is_triggered() {
                    break;
                }
            }
            total += read_here;
            if !t.matched && read_here == 0 {
                t.idle_scans += 1;
            }
            // Renamed away from the glob or deleted, and read to its end.
            if !t.matched && t.idle_scans >= 2 {
                tracing::info!(path = %t.path.display(), "k8s_audit_file: file gone from the glob and fully read; closing");
                if self.progress.get(&key).is_some_and(|p| p.queue.is_empty()) {
                    self.progress.remove(&key);
                    self.dirty = true;
                }
                continue;
            }
            self.files.insert(key, t);
        }
        Ok(total)
    }

    /// Splits a chunk into lines and emits the events. The events of one
    /// chunk share one acknowledgement: the checkpoint passes the chunk's
    /// lines when every one of its events is acknowledged (one node, one
    /// queue entry and one acknowledgement message per chunk, not per
    /// event; a crash repeats at most the chunks in flight, as before).
    async fn lines(
        &mut self,
        t: &mut Tracked,
        mut chunk: &[u8],
        out: &mut Fanout,
    ) -> Result<(), crate::topology::fanout::Closed> {
        let max = self.config.max_line_bytes;
        // The file offset where `chunk` starts (`t.offset` is already past it).
        let mut at = t.offset - chunk.len() as u64;
        let mut node = None;
        let mut ended = None;
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            let (head, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            chunk = rest;
            at += nl as u64 + 1;
            let line_no = t.line_no;
            t.line_no += 1;
            ended = Some(at);
            if t.skipping {
                t.skipping = false;
            } else if t.partial.is_empty() {
                self.line(t, line_no, head, &mut node, out).await?;
            } else {
                t.partial.extend_from_slice(head);
                let line = std::mem::take(&mut t.partial);
                let sent = self.line(t, line_no, &line, &mut node, out).await;
                t.partial = line;
                t.partial.clear();
                sent?;
            }
        }
        if let Some(end) = ended {
            // Counted before the chunk's own hold on its node goes: the
            // acknowledgement cannot come earlier.
            let cookie = node.map(|c| {
                self.chunk_events.insert(c.cookie, c.events);
                c.cookie
            });
            self.read_up_to(t.key, cookie, end, t.line_no);
            // Reading a long file behind a slow sink can take long: the
            // checkpoints keep up while it does.
            self.count_acks();
            self.save_if_due();
        }
        if !t.skipping {
            t.partial.extend_from_slice(chunk);
            if t.partial.len() > max {
                self.oversized(t, t.line_no);
                t.partial.clear();
                t.skipping = true;
            }
        }
        Ok(())
    }

    fn oversized(&self, t: &Tracked, line_no: u64) {
        self.metrics.add_errors(1);
        tracing::warn!(
            path = %t.path.display(),
            line = line_no,
            max_line_bytes = self.config.max_line_bytes,
            "k8s_audit_file: line longer than max_line_bytes skipped"
        );
    }

    /// Emits the events of one line, acknowledged through `node` (made
    /// for the chunk's first event).
    async fn line(
        &mut self,
        t: &Tracked,
        line_no: u64,
        raw: &[u8],
        node: &mut Option<ChunkAck>,
        out: &mut Fanout,
    ) -> Result<(), crate::topology::fanout::Closed> {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if raw.len() > self.config.max_line_bytes {
            self.oversized(t, line_no);
            return Ok(());
        }
        let mut parsed = std::mem::take(&mut self.parsed);
        match std::str::from_utf8(raw) {
            Ok(s) => k8s_audit::parse_record(s, self.config.format, &mut parsed),
            Err(e) => {
                self.metrics.add_errors(1);
                tracing::warn!(path = %t.path.display(), line = line_no, error = %format!("not UTF-8: {e}"), "k8s_audit_file: malformed line skipped");
            }
        }
        let several = parsed.len() > 1;
        let mut result = Ok(());
        let mut sent_any = false;
        for (i, p) in parsed.drain(..).enumerate() {
            let activity = match p {
                Ok(a) => a,
                Err(error) => {
                    self.metrics.add_errors(1);
                    if several {
                        tracing::warn!(path = %t.path.display(), line = line_no, event = i, %error, "k8s_audit_file: malformed event of a line skipped");
                    } else {
                        tracing::warn!(path = %t.path.display(), line = line_no, %error, "k8s_audit_file: malformed line skipped");
                    }
                    continue;
                }
            };
            if result.is_err() {
                continue;
            }
            self.metrics.add_received(1);
            let chunk = node.get_or_insert_with(|| {
                let cookie = self.next_cookie;
                self.next_cookie += 1;
                ChunkAck {
                    cookie,
                    node: self.acks.node(cookie),
                    events: 0,
                }
            });
            let event = Event::api_activity(activity, self.host.clone(), Timestamp::now());
            result = out
                .send(Envelope::new(event, Ack::new(chunk.node.clone())))
                .await;
            if result.is_ok() {
                chunk.events += 1;
                self.sent_events += 1;
                self.metrics.add_sent(1);
                sent_any = true;
            }
        }
        self.parsed = parsed;
        if sent_any {
            self.metrics.add_received_bytes(raw.len());
        }
        result
    }

    /// The lines of file `key` up to `end` were read; `cookie` is their
    /// events' (one per read chunk), if they made any. Lines without an
    /// event are behind the checkpoint as soon as every line before them is.
    fn read_up_to(&mut self, key: (u64, u64), cookie: Option<u64>, end: u64, next_line: u64) {
        if let Some(p) = self.progress.get_mut(&key) {
            p.queue.push_back((cookie, end, next_line));
        }
        self.advance(key);
    }

    /// Moves file `key`'s checkpoint past every line at the front of its
    /// queue that is acknowledged (or has no event).
    fn advance(&mut self, key: (u64, u64)) {
        let Some(p) = self.progress.get_mut(&key) else {
            return;
        };
        while let Some(&(cookie, end, next_line)) = p.queue.front() {
            match cookie {
                Some(c) if !self.acked_ahead.remove(&c) => break,
                _ => {}
            }
            p.queue.pop_front();
            p.checkpoint.offset = end;
            p.checkpoint.line_no = next_line;
            self.dirty = true;
        }
    }

    /// Records an acknowledgement: delivered and rejected (dead-lettered)
    /// events are handled; one dropped on the way holds its file's
    /// checkpoint back, so a restart reads it again.
    fn acknowledged(&mut self, cookie: u64, status: Status) {
        self.tally(cookie, status);
        if status == Status::Dropped {
            return;
        }
        self.acked_ahead.insert(cookie);
        // Only the file whose oldest pending line this is can move.
        let key = self
            .progress
            .iter()
            .find(|(_, p)| p.queue.front().is_some_and(|f| f.0 == Some(cookie)))
            .map(|(k, _)| *k);
        if let Some(key) = key {
            self.advance(key);
        }
    }

    /// Saves the checkpoints when they changed and the interval has passed.
    fn save_if_due(&mut self) {
        if self.dirty
            && self.last_save.elapsed() >= Duration::from_millis(self.config.checkpoint_interval_ms)
        {
            self.save_checkpoints();
        }
    }

    /// Saves every file's checkpoint (fingerprints of files that were
    /// shorter than the fingerprint length are taken again first).
    fn save_checkpoints(&mut self) {
        let mut files = Vec::with_capacity(self.progress.len());
        for p in self.progress.values_mut() {
            let cp = &mut p.checkpoint;
            if (cp.fingerprint_len as usize) < checkpoint::FINGERPRINT_BYTES {
                if let Some(fp) = head_fingerprint(&cp.path, cp.dev, cp.ino) {
                    (cp.fingerprint, cp.fingerprint_len) = fp;
                }
            }
            files.push(cp.clone());
        }
        match self.store.save(&files) {
            Ok(()) => self.dirty = false,
            Err(e) => {
                self.metrics.add_errors(1);
                tracing::error!(error = %e, "k8s_audit_file: cannot save checkpoints; a restart would read again from the last saved ones");
            }
        }
        self.last_save = std::time::Instant::now();
    }

    fn count_acks(&mut self) {
        while let Ok(a) = self.acked.try_recv() {
            self.acknowledged(a.cookie, a.status);
        }
    }

    /// Counts the events of chunk `cookie` as `status` says.
    fn tally(&mut self, cookie: u64, status: Status) {
        let events = self.chunk_events.remove(&cookie).unwrap_or(0);
        if status == Status::Delivered {
            self.delivered += events;
        } else {
            self.not_delivered += events;
        }
    }

    /// After the outputs closed: waits for the sinks to acknowledge what is
    /// in flight (they drain before exiting) and reports.
    async fn finish_acks(mut self) {
        let sent = self.sent_events;
        // Only the events in flight hold senders now: the channel closes
        // when the last is acknowledged.
        drop(std::mem::replace(&mut self.acks, ack::channel().0));
        while let Some(a) = self.acked.recv().await {
            self.acknowledged(a.cookie, a.status);
        }
        self.save_checkpoints();
        tracing::info!(
            events = sent,
            acknowledged = self.delivered,
            not_delivered = self.not_delivered,
            "k8s_audit_file: stopped"
        );
    }
}

/// The first bytes of a file (for its fingerprint), leaving its position at
/// the start.
async fn read_head(file: &mut tokio::fs::File) -> Vec<u8> {
    let mut head = vec![0u8; checkpoint::FINGERPRINT_BYTES];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    head.truncate(n);
    let _ = file.seek(std::io::SeekFrom::Start(0)).await;
    head
}

/// The fingerprint of the file at `path` if it still is (dev, ino).
fn head_fingerprint(path: &std::path::Path, dev: u64, ino: u64) -> Option<(u32, u32)> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    if (meta.dev(), meta.ino()) != (dev, ino) {
        return None;
    }
    let mut head = vec![0u8; checkpoint::FINGERPRINT_BYTES];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    Some(checkpoint::fingerprint(&head[..n]))
}
