//! The buffer in front of each sink (`[sinks.<id>.buffer]`).
//!
//! Every sink has one, so a slow or dead sink never stalls the others until
//! its own buffer says so:
//! - `memory` (default): a bounded channel of `max_events`.
//! - `disk` ([`disk`]): a segmented, checksummed, compressed log under
//!   `data_dir/buffers/<sink id>/` that survives crashes and restarts.
//!
//! A buffer acknowledges an event upstream when it holds it: a disk buffer as
//! soon as the event is written to its segment (the source's checkpoint may
//! then move, the webhook may answer 200), a memory buffer only when the sink
//! has delivered it (memory does not survive a crash). When full, `block`
//! holds the input back (backpressure up to the sources) and `drop_newest`
//! discards what comes in, counted and acknowledged as `Rejected`.

pub mod disk;
mod memory;

use crate::Envelope;
use serde::Deserialize;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

pub use disk::{DiskBufferConfig, FsyncPolicy};

/// `[sinks.<id>.buffer]`; `type` is `memory` unless it says otherwise.
#[derive(Clone, Debug, PartialEq)]
pub enum BufferConfig {
    Memory(MemoryBufferConfig),
    Disk(DiskBufferConfig),
}

impl<'de> Deserialize<'de> for BufferConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Typed {
            Memory(MemoryBufferConfig),
            Disk(DiskBufferConfig),
        }
        let mut table = serde_json::Map::deserialize(d)?;
        table
            .entry("type")
            .or_insert_with(|| serde_json::Value::from("memory"));
        match Typed::deserialize(serde_json::Value::Object(table)) {
            Ok(Typed::Memory(m)) => Ok(BufferConfig::Memory(m)),
            Ok(Typed::Disk(d)) => Ok(BufferConfig::Disk(d)),
            Err(e) => Err(serde::de::Error::custom(e)),
        }
    }
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig::Memory(MemoryBufferConfig::default())
    }
}

/// What a full buffer does with the next event.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: backpressure up to the sources.
    #[default]
    Block,
    /// Discard the event (counted, acknowledged `Rejected`).
    DropNewest,
}

/// `type = "memory"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemoryBufferConfig {
    /// Events held between the sink's inputs and the sink.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    #[serde(default)]
    pub when_full: WhenFull,
}

fn default_max_events() -> usize {
    1024
}

impl Default for MemoryBufferConfig {
    fn default() -> Self {
        MemoryBufferConfig {
            max_events: default_max_events(),
            when_full: WhenFull::Block,
        }
    }
}

impl BufferConfig {
    /// Checks the settings; the error says which key is wrong.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            BufferConfig::Memory(m) if m.max_events == 0 => {
                Err("buffer.max_events must be at least 1".into())
            }
            BufferConfig::Memory(_) => Ok(()),
            BufferConfig::Disk(d) => d.validate(),
        }
    }

    pub fn is_disk(&self) -> bool {
        matches!(self, BufferConfig::Disk(_))
    }

    /// Capacity of the channel the sink's inputs write into.
    pub fn input_capacity(&self) -> usize {
        match self {
            BufferConfig::Memory(m) => m.max_events.max(1),
            BufferConfig::Disk(_) => 1024,
        }
    }
}

/// A buffer's counters (Prometheus: `lumen_buffer_*{component="…"}`).
#[derive(Debug, Default)]
pub struct BufferMetrics {
    /// Events written into the buffer.
    pub events_in: AtomicU64,
    /// Events the sink acknowledged (and the buffer released).
    pub events_out: AtomicU64,
    /// Events discarded by `when_full = "drop_newest"`.
    pub dropped_full: AtomicU64,
    /// Bytes the disk buffer's segments take now.
    pub bytes_on_disk: AtomicU64,
    /// Records a disk buffer could not read back (CRC, decoding) and skipped.
    pub corrupted_records: AtomicU64,
    /// Bytes skipped over to find the next good block after corruption.
    pub corrupted_bytes: AtomicU64,
    /// Bytes of torn writes truncated at start-up (a crash mid-write).
    pub torn_bytes: AtomicU64,
    /// Failed writes or syncs (disk full, I/O errors); each was retried.
    pub write_errors: AtomicU64,
    /// A memory buffer: the channel the sink reads, whose fill is the
    /// buffer's (set by the topology, or by a `drop_newest` buffer).
    pub queue: std::sync::OnceLock<mpsc::WeakSender<Envelope>>,
}

impl BufferMetrics {
    /// Events in the buffer now: a memory buffer's channel fill (0 once
    /// its channel is closing: nothing is added any more, the sink drains
    /// what is left), a disk buffer's written and not yet acknowledged
    /// events.
    pub fn queued(&self) -> u64 {
        match self.queue.get() {
            Some(queue) => queue
                .upgrade()
                .map_or(0, |tx| (tx.max_capacity() - tx.capacity()) as u64),
            None => Self::get(&self.events_in).saturating_sub(Self::get(&self.events_out)),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Logs the totals (at stop).
    pub fn report(&self, sink: &str) {
        let g = Self::get;
        tracing::info!(
            component = %sink,
            events_in = g(&self.events_in),
            events_out = g(&self.events_out),
            dropped_full = g(&self.dropped_full),
            bytes_on_disk = g(&self.bytes_on_disk),
            corrupted_records = g(&self.corrupted_records),
            torn_bytes = g(&self.torn_bytes),
            write_errors = g(&self.write_errors),
            "buffer totals"
        );
    }
}

/// A task a buffer needs run (the topology runs it with the sink's).
pub type BufferTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A started buffer: the sink reads `output`; `tasks` move the events and
/// must be run until they end (after the input closes and the sink is done).
pub struct Buffer {
    pub output: mpsc::Receiver<Envelope>,
    pub tasks: Vec<BufferTask>,
    pub metrics: Arc<BufferMetrics>,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("tasks", &self.tasks.len())
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

/// A buffer could not start.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("disk buffer at {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Starts the buffer of sink `sink_id`, reading from `input`.
pub fn start(
    sink_id: &str,
    config: &BufferConfig,
    data_dir: &Path,
    input: mpsc::Receiver<Envelope>,
) -> Result<Buffer, BufferError> {
    let metrics = Arc::new(BufferMetrics::default());
    match config {
        BufferConfig::Memory(m) => Ok(memory::start(m, input, metrics)),
        BufferConfig::Disk(d) => {
            let dir = data_dir.join("buffers").join(sink_id);
            disk::start(sink_id, d, &dir, input, metrics)
        }
    }
}
