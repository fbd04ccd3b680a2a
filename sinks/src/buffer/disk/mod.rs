//! `type = "disk"`: a sink's buffer as a segmented append-only log under
//! `data_dir/buffers/<sink id>/`, so that what Lumen accepted survives a
//! crash, a restart or a long sink outage.
//!
//! - The [`writer`] takes events from the sink's inputs, encodes them
//!   ([`lumen_schemas::codec`]), frames each with its length and CRC32C,
//!   compresses a block of them with zstd and appends the block to the
//!   current segment ([`segment`] has the format). Once the block is written
//!   it acknowledges the events upstream: they are safe from a crash of
//!   Lumen. Syncing to the device follows `fsync` (every
//!   `fsync_interval_ms` by default, after every block, or never) and always
//!   happens at shutdown.
//! - The [`reader`] reads blocks back in order, checks them, hands the
//!   events to the sink and tracks the sink's acknowledgements. The first
//!   unacknowledged record is kept in the [`ledger`]; a segment is deleted
//!   when every record in it is acknowledged.
//! - At start the last segment's tail is checked: a block a crash cut short
//!   is truncated and reported (never a reason to refuse to start); a
//!   corrupted block in the middle is skipped by the reader, reported, and
//!   the blocks after it delivered. Segments written by an incompatible
//!   version are set aside (`*.unreadable`) and reported.
//! - When the segments reach `max_size`, `when_full` decides: `block` waits
//!   for the sink to catch up, `drop_newest` discards (counted, `Rejected`).

pub mod ledger;
mod reader;
pub mod segment;
mod writer;

use super::{Buffer, BufferError, BufferMetrics, WhenFull};
use crate::Envelope;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};

/// `type = "disk"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiskBufferConfig {
    /// Bytes the segments may take on disk (default 256 MiB).
    #[serde(default = "default_max_size")]
    pub max_size: u64,
    #[serde(default)]
    pub when_full: WhenFull,
    /// When written blocks are synced to the device.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// With `fsync = "interval"`: how often (default 1000 ms).
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
}

/// When a disk buffer syncs what it wrote (`fdatasync`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Every `fsync_interval_ms` while there is unsynced data, and at
    /// shutdown. A power loss can take the last interval's events; a crash
    /// of Lumen takes nothing.
    #[default]
    Interval,
    /// After every block, before its events are acknowledged upstream.
    Always,
    /// Only at shutdown (and when a segment is full): the OS decides.
    Never,
}

fn default_max_size() -> u64 {
    256 << 20
}
fn default_fsync_interval_ms() -> u64 {
    1000
}

/// The smallest `max_size` accepted: room for a few segments.
pub const MIN_MAX_SIZE: u64 = 256 << 10;

impl Default for DiskBufferConfig {
    fn default() -> Self {
        DiskBufferConfig {
            max_size: default_max_size(),
            when_full: WhenFull::Block,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: default_fsync_interval_ms(),
        }
    }
}

impl DiskBufferConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_size < MIN_MAX_SIZE {
            return Err(format!(
                "buffer.max_size must be at least {MIN_MAX_SIZE} bytes (got {})",
                self.max_size
            ));
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval_ms == 0 {
            return Err(
                "buffer.fsync_interval_ms must be at least 1 (use fsync = \"always\" to sync every block)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Segments are an eighth of `max_size`, between 64 KiB and 64 MiB:
    /// small enough that acknowledged space comes back in steps, large
    /// enough that a segment holds many blocks.
    pub fn segment_max(&self) -> u64 {
        (self.max_size / 8).clamp(64 << 10, 64 << 20)
    }
}

/// Per segment id, what the writer has committed.
#[derive(Debug)]
struct SegmentState {
    /// Bytes of whole blocks (and the header): readers read no further.
    len: u64,
    /// The writer has moved on; nothing more will be appended.
    sealed: bool,
}

#[derive(Debug, Default)]
struct State {
    segments: BTreeMap<u64, SegmentState>,
    /// Sum of the segments' lengths.
    bytes: u64,
    /// The input closed and everything is written and synced.
    writer_done: bool,
}

/// What the writer and the reader share.
#[derive(Debug)]
struct Shared {
    sink: String,
    dir: PathBuf,
    state: Mutex<State>,
    /// Writer → reader: a block was committed, or the writer is done.
    data: Notify,
    /// Reader → writer: a segment was deleted.
    space: Notify,
    metrics: Arc<BufferMetrics>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters only; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        segment_path(&self.dir, id)
    }

    fn set_bytes(&self, state: &State) {
        self.metrics
            .bytes_on_disk
            .store(state.bytes, Ordering::Relaxed);
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BufferError + '_ {
    move |source| BufferError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Recovers what `dir` holds and starts the writer and the reader.
pub(super) fn start(
    sink: &str,
    config: &DiskBufferConfig,
    dir: &Path,
    input: mpsc::Receiver<Envelope>,
    metrics: Arc<BufferMetrics>,
) -> Result<Buffer, BufferError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let (ledger, acked) = ledger::Ledger::open(dir).map_err(io_err(dir))?;
    let recovered = recover(sink, dir, acked, &metrics)?;
    let mut state = State::default();
    for (id, len) in &recovered.segments {
        state.segments.insert(
            *id,
            SegmentState {
                len: *len,
                sealed: true,
            },
        );
        state.bytes += len;
    }
    if !state.segments.is_empty() {
        tracing::info!(
            component = %sink,
            segments = state.segments.len(),
            bytes = state.bytes,
            "disk buffer: resuming with what the last run left"
        );
    }
    let shared = Arc::new(Shared {
        sink: sink.to_owned(),
        dir: dir.to_owned(),
        state: Mutex::new(state),
        data: Notify::new(),
        space: Notify::new(),
        metrics: metrics.clone(),
    });
    shared.set_bytes(&shared.state());
    let (tx, output) = mpsc::channel(1024);
    let writer = writer::Writer::new(shared.clone(), config.clone(), recovered.next_id);
    let reader = reader::Reader::new(shared, tx, ledger, recovered.start);
    Ok(Buffer {
        output,
        tasks: vec![Box::pin(writer.run(input)), Box::pin(reader.run())],
        metrics,
    })
}

/// What a previous run left.
struct Recovered {
    /// Readable segments and their valid lengths, oldest first.
    segments: Vec<(u64, u64)>,
    /// Where the reader starts.
    start: ledger::Position,
    /// The writer's first new segment.
    next_id: u64,
}

fn recover(
    sink: &str,
    dir: &Path,
    acked: Option<ledger::Position>,
    metrics: &BufferMetrics,
) -> Result<Recovered, BufferError> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        ids.push(id);
    }
    ids.sort_unstable();
    let last = ids.last().copied();
    let mut next_id = last.map_or(0, |l| l + 1);
    if let Some(p) = acked {
        next_id = next_id.max(p.segment + 1);
    } else if !ids.is_empty() {
        tracing::warn!(component = %sink, "disk buffer: no acknowledgement ledger; every buffered event is sent again (duplicates possible)");
    }
    let mut decompressor = zstd::bulk::Decompressor::new().map_err(io_err(dir))?;
    let mut segments = Vec::new();
    for id in ids {
        let path = segment_path(dir, id);
        if acked.is_some_and(|p| id < p.segment) {
            // Every record in it was acknowledged; the deletion did not happen.
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            continue;
        }
        let file = std::fs::File::open(&path).map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        let mut header = [0u8; segment::SEGMENT_HEADER_LEN as usize];
        let header_ok = std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, 0)
            .map_err(|e| e.to_string())
            .and_then(|()| segment::check_segment_header(&header));
        if let Err(why) = header_ok {
            if Some(id) == last && len < segment::SEGMENT_HEADER_LEN {
                // A crash right after creating it.
                BufferMetrics::add(&metrics.torn_bytes, len);
                tracing::warn!(component = %sink, path = %path.display(), bytes = len, "disk buffer: removed a segment a crash left without its header");
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let aside = path.with_extension("unreadable");
            BufferMetrics::add(&metrics.corrupted_bytes, len);
            tracing::error!(component = %sink, path = %path.display(), moved_to = %aside.display(), reason = %why, "disk buffer: segment cannot be read; set aside, its events are not delivered");
            std::fs::rename(&path, &aside).map_err(io_err(&path))?;
            continue;
        }
        let mut valid = len;
        if Some(id) == last {
            let (end, tail) =
                segment::valid_end(&file, len, &mut decompressor).map_err(io_err(&path))?;
            valid = end;
            match tail {
                segment::Tail::Clean => {}
                segment::Tail::Torn => {
                    BufferMetrics::add(&metrics.torn_bytes, len - end);
                    tracing::warn!(component = %sink, path = %path.display(), offset = end, bytes = len - end, "disk buffer: truncated a torn write at the end of the last segment (a crash while writing; those events were never acknowledged)");
                }
                segment::Tail::Corrupt(why) => {
                    BufferMetrics::add(&metrics.corrupted_bytes, len - end);
                    tracing::error!(component = %sink, path = %path.display(), offset = end, skipped_bytes = len - end, reason = %why, "disk buffer: corrupted data skipped at the end of the last segment; the events in it are lost, the ones before it are delivered");
                }
            }
            if end < len {
                let f = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(end).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
            }
        }
        segments.push((id, valid));
    }
    let start = match acked {
        Some(p) if segments.iter().any(|(id, _)| *id == p.segment) => p,
        _ => ledger::Position {
            segment: segments.first().map_or(next_id, |(id, _)| *id),
            offset: segment::SEGMENT_HEADER_LEN,
            skip: 0,
        },
    };
    Ok(Recovered {
        segments,
        start,
        next_id,
    })
}

#[cfg(test)]
mod tests;
