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
//! than `max_line_bytes` likewise. Every event carries an acknowledgement;
//! the source counts what every sink has taken (checkpointing on top of that
//! comes with the disk buffer).

use crate::topology::fanout::Fanout;
use crate::topology::shutdown::ShutdownSignal;
use lumen_schemas::event::Host;
use lumen_schemas::time::Timestamp;
use lumen_schemas::{k8s_audit, Event, EventKind};
use lumen_sinks::ack::{self, Ack, AckReceiver, Status};
use lumen_sinks::{ComponentMetrics, Envelope};
use serde::Deserialize;
use std::collections::HashMap;
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
}

fn default_max_line_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_poll_interval_ms() -> u64 {
    250
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
    delivered: u64,
    not_delivered: u64,
}

impl K8sAuditFileSource {
    pub fn new(
        config: K8sAuditFileConfig,
        host: Arc<Host>,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Self, AuditFileError> {
        glob::Pattern::new(&config.path).map_err(|e| AuditFileError::Glob {
            pattern: config.path.clone(),
            message: e.to_string(),
        })?;
        let (acks, acked) = ack::channel();
        Ok(K8sAuditFileSource {
            config,
            host,
            metrics,
            files: HashMap::new(),
            acks,
            acked,
            next_cookie: 0,
            delivered: 0,
            not_delivered: 0,
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
            let offset = if first && self.config.read_from == ReadFrom::End {
                meta.len()
            } else {
                0
            };
            if offset > 0 && file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
                continue;
            }
            tracing::info!(path = %path.display(), offset, "k8s_audit_file: reading");
            self.files.insert(
                key,
                Tracked {
                    path,
                    file,
                    offset,
                    line_no: 1,
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
                continue;
            }
            self.files.insert(key, t);
        }
        Ok(total)
    }

    /// Splits a chunk into lines and emits the events.
    async fn lines(
        &mut self,
        t: &mut Tracked,
        mut chunk: &[u8],
        out: &mut Fanout,
    ) -> Result<(), crate::topology::fanout::Closed> {
        let max = self.config.max_line_bytes;
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            let (head, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            chunk = rest;
            let line_no = t.line_no;
            t.line_no += 1;
            if t.skipping {
                t.skipping = false;
                continue;
            }
            if t.partial.is_empty() {
                self.line(t, line_no, head, out).await?;
            } else {
                t.partial.extend_from_slice(head);
                let line = std::mem::take(&mut t.partial);
                self.line(t, line_no, &line, out).await?;
                t.partial = line;
                t.partial.clear();
            }
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

    async fn line(
        &mut self,
        t: &Tracked,
        line_no: u64,
        raw: &[u8],
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
        let parsed = std::str::from_utf8(raw)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(|s| k8s_audit::parse_line(s).map_err(|e| e.to_string()));
        let activity = match parsed {
            Ok(a) => a,
            Err(error) => {
                self.metrics.add_errors(1);
                tracing::warn!(path = %t.path.display(), line = line_no, %error, "k8s_audit_file: malformed line skipped");
                return Ok(());
            }
        };
        self.metrics.add_received(1);
        let observed = Timestamp::now();
        let event = Event {
            time: activity
                .stage_time
                .or(activity.request_received)
                .unwrap_or(observed),
            observed,
            host: self.host.clone(),
            kind: EventKind::ApiActivity(Box::new(activity)),
        };
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        out.send(Envelope::new(event, Ack::new(self.acks.node(cookie))))
            .await?;
        self.metrics.add_sent(1);
        Ok(())
    }

    fn count_acks(&mut self) {
        while let Ok(a) = self.acked.try_recv() {
            self.tally(a.status);
        }
    }

    fn tally(&mut self, status: Status) {
        if status == Status::Delivered {
            self.delivered += 1;
        } else {
            self.not_delivered += 1;
        }
    }

    /// After the outputs closed: waits for the sinks to acknowledge what is
    /// in flight (they drain before exiting) and reports.
    async fn finish_acks(mut self) {
        let sent = self.next_cookie;
        drop(self.acks);
        while let Some(a) = self.acked.recv().await {
            if a.status == Status::Delivered {
                self.delivered += 1;
            } else {
                self.not_delivered += 1;
            }
        }
        tracing::info!(
            events = sent,
            acknowledged = self.delivered,
            not_delivered = self.not_delivered,
            "k8s_audit_file: stopped"
        );
    }
}
