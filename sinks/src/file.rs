//! The `file` sink: NDJSON, one event per line in the chosen schema, with
//! rotation by size (`path` → `path.1` → … → `path.<max_files>`).
//!
//! Events are acknowledged once their batch is written and flushed to the
//! operating system. A write error (disk full, permissions) is logged with the
//! path, counted, and retried with backoff from the first unwritten byte: the
//! sink exerts backpressure instead of losing or tearing lines.

use crate::ack::Status;
use crate::{ComponentMetrics, Envelope};
use lumen_schemas::Schema;
use serde::Deserialize;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// `[sinks.<id>] type = "file"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Components whose events this sink takes.
    pub inputs: Vec<String>,
    /// The buffer in front of the sink (`memory` by default).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    /// Schema of the lines written.
    #[serde(default = "default_schema")]
    pub schema: Schema,
    /// File to append to; parent directories are created.
    pub path: PathBuf,
    /// Rotate when the file would grow past this many bytes (0: never).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` is the newest).
    #[serde(default = "default_max_files")]
    pub max_files: u32,
}

fn default_schema() -> Schema {
    Schema::Ocsf
}
fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_max_files() -> u32 {
    5
}

/// Fatal errors of the file sink.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("file sink: cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("file sink: the write to {path} did not finish: {source}")]
    Write {
        path: PathBuf,
        source: tokio::task::JoinError,
    },
}

/// The file being appended to, and its length.
#[derive(Debug)]
pub struct OpenFile {
    file: Arc<std::fs::File>,
    len: u64,
}

/// The running sink.
#[derive(Debug)]
pub struct FileSink {
    config: FileSinkConfig,
    metrics: Arc<ComponentMetrics>,
}

const MAX_BATCH: usize = 1024;

impl FileSink {
    pub fn new(config: FileSinkConfig, metrics: Arc<ComponentMetrics>) -> Self {
        FileSink { config, metrics }
    }

    /// Opens the file now, so a bad path fails at start-up.
    pub async fn open(&self) -> Result<OpenFile, FileSinkError> {
        open_append(&self.config.path).await
    }

    /// Writes every event received until the channel closes.
    ///
    /// A batch is encoded into one buffer, which moves to the blocking pool
    /// for the write and comes back for the next batch (the write copies it
    /// once, into the page cache).
    pub async fn run(
        self,
        mut file: OpenFile,
        mut rx: mpsc::Receiver<Envelope>,
    ) -> Result<(), FileSinkError> {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut buf = Vec::with_capacity(256 * 1024);
        loop {
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                break;
            }
            self.metrics.add_received(batch.len() as u64);
            if let Some(last) = batch.last() {
                self.metrics.took(last.event.observed);
            }
            buf.clear();
            for env in &batch {
                self.config.schema.encode(&env.event, &mut buf);
                buf.push(b'\n');
            }
            if self.config.max_bytes > 0
                && file.len > 0
                && file.len + buf.len() as u64 > self.config.max_bytes
            {
                file = self.rotate(file).await;
            }
            buf = self.write_retrying(&mut file, buf).await?;
            self.metrics.add_sent(batch.len() as u64);
            self.metrics.add_sent_bytes(buf.len());
            for env in batch.drain(..) {
                env.ack.complete(Status::Delivered);
            }
        }
        Ok(())
    }

    /// Writes all of `buf`, retrying with backoff from the first unwritten
    /// byte; gives the buffer back.
    async fn write_retrying(
        &self,
        file: &mut OpenFile,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, FileSinkError> {
        let mut written = 0;
        let mut backoff = Duration::from_millis(100);
        loop {
            let f = Arc::clone(&file.file);
            let (back, at, result) = tokio::task::spawn_blocking(move || {
                let result = write_from(&f, &buf, &mut written);
                (buf, written, result)
            })
            .await
            .map_err(|source| FileSinkError::Write {
                path: self.config.path.clone(),
                source,
            })?;
            (buf, written) = (back, at);
            self.metrics.set_failing(result.is_err());
            let Err(e) = result else {
                file.len += buf.len() as u64;
                return Ok(buf);
            };
            self.metrics.add_errors(1);
            tracing::error!(
                path = %self.config.path.display(),
                error = %e,
                retry_in_ms = backoff.as_millis() as u64,
                "file sink: write failed; retrying (events are held, not dropped)"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn rotate(&self, file: OpenFile) -> OpenFile {
        let path = &self.config.path;
        let numbered = |n: u32| {
            let mut p = path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let keep = self.config.max_files;
        let result: std::io::Result<()> = async {
            if keep == 0 {
                tokio::fs::remove_file(path).await?;
                return Ok(());
            }
            let _ = tokio::fs::remove_file(numbered(keep)).await;
            for n in (1..keep).rev() {
                match tokio::fs::rename(numbered(n), numbered(n + 1)).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            tokio::fs::rename(path, numbered(1)).await
        }
        .await;
        if let Err(e) = result {
            self.metrics.add_errors(1);
            tracing::error!(path = %path.display(), error = %e, "file sink: rotation failed; appending to the current file");
            return file;
        }
        match open_append(path).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "file sink: reopening after rotation failed");
                file
            }
        }
    }
}

/// Writes `buf` from `*written` to its end, advancing `*written`.
fn write_from(mut file: &std::fs::File, buf: &[u8], written: &mut usize) -> std::io::Result<()> {
    while *written < buf.len() {
        match file.write(&buf[*written..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "wrote 0 bytes",
                ))
            }
            Ok(n) => *written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn open_append(path: &Path) -> Result<OpenFile, FileSinkError> {
    let err = |source| FileSinkError::Open {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(err)?;
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(err)?;
    let len = file.metadata().await.map_err(err)?.len();
    Ok(OpenFile {
        file: Arc::new(file.into_std().await),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{self, Ack};
    use lumen_schemas::event::{Host, Process, ProcessActivity, ProcessEvent};
    use lumen_schemas::time::Timestamp;
    use lumen_schemas::{Event, EventKind};

    fn event(pid: u32) -> Event {
        Event {
            time: Timestamp(1_700_000_000_000_000_000),
            observed: Timestamp(1_700_000_000_000_000_000),
            host: Arc::new(Host::default()),
            kind: EventKind::Process(Box::new(ProcessEvent {
                activity: ProcessActivity::Exec,
                process: Process {
                    pid,
                    ..Process::default()
                }
                .with_text("/bin/x", "x", &[&"x".repeat(100)]),
                exit: None,
                exe: Default::default(),
            })),
            redaction: Default::default(),
        }
    }

    fn config(path: PathBuf, max_bytes: u64) -> FileSinkConfig {
        FileSinkConfig {
            inputs: vec![],
            buffer: Default::default(),
            schema: Schema::Ecs,
            path,
            max_bytes,
            max_files: 2,
        }
    }

    #[tokio::test]
    async fn writes_one_line_per_event_acks_them_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/events.ndjson");
        let metrics = Arc::new(ComponentMetrics::default());
        let sink = FileSink::new(config(path.clone(), 2_000), metrics.clone());
        let file = sink.open().await.unwrap();
        let (tx, rx) = mpsc::channel(16);
        let (acks, mut acked) = ack::channel();
        let task = tokio::spawn(sink.run(file, rx));
        for pid in 0..40u32 {
            tx.send(Envelope::new(
                event(pid),
                Ack::new(acks.node(u64::from(pid))),
            ))
            .await
            .unwrap();
        }
        drop(tx);
        task.await.unwrap().unwrap();
        let mut delivered = 0;
        while let Ok(a) = acked.try_recv() {
            assert_eq!(a.status, Status::Delivered);
            delivered += 1;
        }
        assert_eq!(delivered, 40);
        // Newest file plus at most two rotated ones; each below the limit
        // unless a single batch was larger.
        let mut pids = Vec::new();
        for p in [
            path.with_extension("ndjson.2"),
            path.with_extension("ndjson.1"),
            path.clone(),
        ] {
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                pids.push(v["process"]["pid"].as_u64().unwrap());
            }
        }
        assert!(
            std::fs::metadata(path.with_extension("ndjson.1")).is_ok(),
            "rotated"
        );
        assert!(!pids.is_empty());
        // What is kept is the newest events, in order, ending with the last.
        assert_eq!(*pids.last().unwrap(), 39);
        assert!(pids.windows(2).all(|w| w[0] + 1 == w[1]));
        assert_eq!(metrics.snapshot().1, 40);
    }
}
