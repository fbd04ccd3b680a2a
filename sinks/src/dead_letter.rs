//! The dead-letter file: what a receiver rejected for good, one NDJSON line
//! per event — when, which sink, why, and the event as it was sent — so an
//! operator can fix the cause and replay it.

use lumen_schemas::json::JsonWriter;
use lumen_schemas::time::Timestamp;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An append-only NDJSON file of rejected events.
#[derive(Debug)]
pub struct DeadLetters {
    path: PathBuf,
    sink: String,
    file: Mutex<Option<std::fs::File>>,
}

impl DeadLetters {
    /// Writes go to `path` (created with its directory on first use).
    pub fn new(path: PathBuf, sink: &str) -> Self {
        DeadLetters {
            path,
            sink: sink.to_owned(),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one rejected event (`doc`: its JSON document) with the
    /// receiver's reason.
    pub fn write(&self, doc: &[u8], reason: &str) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(doc.len() + reason.len() + 128);
        {
            let mut w = JsonWriter::new(&mut line);
            w.begin_object();
            w.str("@timestamp", &Timestamp::now().rfc3339());
            w.str("sink", &self.sink);
            w.str("error", reason);
            w.raw("event", doc);
            w.end_object();
        }
        line.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            *guard = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        match guard.as_mut() {
            Some(f) => f.write_all(&line),
            None => Err(std::io::Error::other("dead-letter file not open")),
        }
    }
}
