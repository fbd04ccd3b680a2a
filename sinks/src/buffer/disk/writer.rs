//! The disk buffer's writer: events in, blocks appended, events
//! acknowledged upstream once their block is written.

use super::segment::{self, BlockBuilder};
use super::{DiskBufferConfig, FsyncPolicy, SegmentState, Shared};
use crate::ack::{Ack, Status};
use crate::buffer::{BufferMetrics, WhenFull};
use crate::Envelope;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A block closes at this many records or raw bytes, or when the input has
/// nothing more right now.
const MAX_BLOCK_RECORDS: u32 = 1024;
const MAX_BLOCK_RAW: usize = 1 << 20;
/// zstd's fastest regular level: the disk buffer must not be the bottleneck.
const ZSTD_LEVEL: i32 = 1;
/// Longest wait between attempts after a failed write.
const MAX_RETRY: Duration = Duration::from_secs(5);

fn add(builder: &mut BlockBuilder, acks: &mut Vec<Ack>, env: Envelope) {
    let Envelope { event, ack } = env;
    builder.push(|out| lumen_schemas::codec::encode(&event, out));
    acks.push(ack);
}

/// The segment being appended to.
struct Current {
    id: u64,
    file: Arc<File>,
    len: u64,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    config: DiskBufferConfig,
    next_id: u64,
    current: Option<Current>,
    /// Written since the last sync.
    dirty: bool,
    last_sync: Instant,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, config: DiskBufferConfig, next_id: u64) -> Self {
        Writer {
            shared,
            config,
            next_id,
            current: None,
            dirty: false,
            last_sync: Instant::now(),
        }
    }

    pub(super) async fn run(mut self, mut input: mpsc::Receiver<Envelope>) {
        let sink = self.shared.sink.clone();
        let mut compressor = match zstd::bulk::Compressor::new(ZSTD_LEVEL) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(component = %sink, error = %e, "disk buffer: cannot set up zstd; buffer stopped");
                return;
            }
        };
        let interval = Duration::from_millis(self.config.fsync_interval_ms.max(1));
        let mut builder = BlockBuilder::default();
        let mut block = Vec::new();
        let mut acks: Vec<Ack> = Vec::new();
        loop {
            let next = if self.dirty && self.config.fsync == FsyncPolicy::Interval {
                tokio::select! {
                    env = input.recv() => env,
                    () = tokio::time::sleep_until(self.last_sync + interval) => {
                        self.sync().await;
                        continue;
                    }
                }
            } else {
                input.recv().await
            };
            let Some(env) = next else { break };
            add(&mut builder, &mut acks, env);
            while builder.records() < MAX_BLOCK_RECORDS && builder.raw_len() < MAX_BLOCK_RAW {
                match input.try_recv() {
                    Ok(env) => add(&mut builder, &mut acks, env),
                    Err(_) => break,
                }
            }
            let records = u64::from(builder.records());
            if let Err(e) = builder.finish(&mut compressor, &mut block) {
                // zstd fails only on memory exhaustion; the events cannot be
                // kept, and their acks say so.
                tracing::error!(component = %sink, error = %e, records, "disk buffer: cannot compress a block; its events are dropped");
                acks.clear();
                continue;
            }
            if !self.wait_for_room(block.len() as u64).await {
                BufferMetrics::add(&self.shared.metrics.dropped_full, records);
                tracing::debug!(component = %sink, records, "disk buffer full: newest events dropped");
                for a in acks.drain(..) {
                    a.complete(Status::Rejected);
                }
                continue;
            }
            self.append(&block).await;
            if self.config.fsync == FsyncPolicy::Always {
                self.sync().await;
            }
            BufferMetrics::add(&self.shared.metrics.events_in, records);
            for a in acks.drain(..) {
                a.complete(Status::Delivered);
            }
        }
        self.seal().await;
        self.shared.state().writer_done = true;
        self.shared.data.notify_one();
        tracing::debug!(component = %sink, "disk buffer: input closed; everything written and synced");
    }

    /// Whether a block of `len` bytes may be written now. Waits while the
    /// buffer is full and `when_full = "block"`; `false` means drop it.
    async fn wait_for_room(&mut self, len: u64) -> bool {
        let mut warned = false;
        loop {
            let bytes = self.shared.state().bytes;
            if bytes == 0 || bytes + len <= self.config.max_size {
                if warned {
                    tracing::info!(component = %self.shared.sink, "disk buffer has room again");
                }
                return true;
            }
            if self.config.when_full == WhenFull::DropNewest {
                return false;
            }
            if !warned {
                tracing::warn!(component = %self.shared.sink, bytes, max_size = self.config.max_size, "disk buffer full: holding the input back until the sink catches up");
                warned = true;
            }
            // Acknowledged records are freed a segment at a time: let the
            // reader finish this one.
            self.seal().await;
            let _ =
                tokio::time::timeout(Duration::from_secs(1), self.shared.space.notified()).await;
        }
    }

    /// Appends `block`, retrying until it is written (a full disk or an I/O
    /// error holds the input back; nothing is acknowledged meanwhile).
    async fn append(&mut self, block: &[u8]) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.try_append(block) {
                Ok(()) => return,
                Err((path, e)) => {
                    BufferMetrics::add(&self.shared.metrics.write_errors, 1);
                    tracing::error!(component = %self.shared.sink, path = %path.display(), error = %e, retry_in_ms = backoff.as_millis() as u64, "disk buffer: write failed (disk full?); the events wait and the write is retried");
                    // The next attempt goes to a new segment, so this one can
                    // be read to its end, acknowledged and deleted: that is
                    // how space comes back when the disk is full.
                    self.seal_now();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_RETRY);
                }
            }
        }
    }

    fn try_append(&mut self, block: &[u8]) -> Result<(), (std::path::PathBuf, std::io::Error)> {
        let segment_max = self.config.segment_max();
        if let Some(c) = &self.current {
            if c.len > segment::SEGMENT_HEADER_LEN && c.len + block.len() as u64 > segment_max {
                self.seal_now();
            }
        }
        if self.current.is_none() {
            self.open_segment()?;
        }
        let Some(c) = &mut self.current else {
            return Ok(());
        };
        if let Err(e) = c.file.write_all_at(block, c.len) {
            // Leave no partial block behind; if this fails too, the next
            // start truncates it as a torn tail.
            let _ = c.file.set_len(c.len);
            return Err((self.shared.segment_path(c.id), e));
        }
        c.len += block.len() as u64;
        self.dirty = true;
        {
            let mut state = self.shared.state();
            if let Some(s) = state.segments.get_mut(&c.id) {
                s.len = c.len;
            }
            state.bytes += block.len() as u64;
            self.shared.set_bytes(&state);
        }
        self.shared.data.notify_one();
        Ok(())
    }

    fn open_segment(&mut self) -> Result<(), (std::path::PathBuf, std::io::Error)> {
        let id = self.next_id;
        let path = self.shared.segment_path(id);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| (path.clone(), e))?;
        let header = segment::segment_header();
        if let Err(e) = file.write_all_at(&header, 0) {
            let _ = std::fs::remove_file(&path);
            return Err((path, e));
        }
        self.next_id += 1;
        let len = header.len() as u64;
        {
            let mut state = self.shared.state();
            state
                .segments
                .insert(id, SegmentState { len, sealed: false });
            state.bytes += len;
            self.shared.set_bytes(&state);
        }
        self.current = Some(Current {
            id,
            file: Arc::new(file),
            len,
        });
        Ok(())
    }

    /// Syncs and seals the current segment, if any.
    async fn seal(&mut self) {
        if self.current.is_some() {
            self.sync().await;
            self.seal_now();
        }
    }

    /// Seals the current segment without syncing it (policy `never` and
    /// the rollover path; `sync` happens on its own schedule).
    fn seal_now(&mut self) {
        if let Some(c) = self.current.take() {
            if self.dirty && self.config.fsync != FsyncPolicy::Never {
                if let Err(e) = c.file.sync_data() {
                    BufferMetrics::add(&self.shared.metrics.write_errors, 1);
                    tracing::error!(component = %self.shared.sink, path = %self.shared.segment_path(c.id).display(), error = %e, "disk buffer: sync failed");
                }
                self.dirty = false;
            }
            if let Some(s) = self.shared.state().segments.get_mut(&c.id) {
                s.sealed = true;
            }
            self.shared.data.notify_one();
        }
    }

    async fn sync(&mut self) {
        self.last_sync = Instant::now();
        let Some(c) = &self.current else { return };
        if !self.dirty {
            return;
        }
        let file = c.file.clone();
        match tokio::task::spawn_blocking(move || file.sync_data()).await {
            Ok(Ok(())) => self.dirty = false,
            Ok(Err(e)) => {
                BufferMetrics::add(&self.shared.metrics.write_errors, 1);
                tracing::error!(component = %self.shared.sink, path = %self.shared.segment_path(c.id).display(), error = %e, "disk buffer: sync failed; retried at the next interval");
            }
            Err(e) => {
                tracing::error!(component = %self.shared.sink, error = %e, "disk buffer: sync task failed")
            }
        }
    }
}
