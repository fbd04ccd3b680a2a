//! The dead-letter file: what a receiver rejected for good, one NDJSON line
//! per event — when, which sink, why, and the event as it was sent — so an
//! operator can fix the cause and replay it. Sources use it too, for
//! messages they cannot read (the kafka source's poison messages).

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

    /// Appends one rejected event (`doc`: its JSON document, or a framed
    /// native event, written as OCSF JSON) with the receiver's reason.
    pub fn write(&self, doc: &[u8], reason: &str) -> std::io::Result<()> {
        let native = lumen_schemas::codec::is_framed(doc)
            .then(|| lumen_schemas::codec::decode_framed(doc).ok())
            .flatten()
            .map(|event| {
                let mut json = Vec::new();
                lumen_schemas::Schema::Ocsf.encode(&event, &mut json);
                json
            });
        let mut line = Vec::with_capacity(doc.len() + reason.len() + 128);
        {
            let mut w = JsonWriter::new(&mut line);
            w.begin_object();
            w.str("@timestamp", &Timestamp::now().rfc3339());
            w.str("sink", &self.sink);
            w.str("error", reason);
            match &native {
                Some(json) => {
                    w.str("encoding", "native");
                    w.raw("event", json);
                }
                None => w.raw("event", doc),
            }
            w.end_object();
        }
        line.push(b'\n');
        self.append(&line)
    }

    /// Appends a message a source could not read (`payload`, as text —
    /// invalid UTF-8 replaced — ), where it came from (`origin`: name,
    /// value pairs) and why.
    pub fn write_message(
        &self,
        payload: &[u8],
        origin: &[(&str, &str)],
        reason: &str,
    ) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(payload);
        let mut line = Vec::with_capacity(text.len() + reason.len() + 128);
        {
            let mut w = JsonWriter::new(&mut line);
            w.begin_object();
            w.str("@timestamp", &Timestamp::now().rfc3339());
            w.str("source", &self.sink);
            for (k, v) in origin {
                w.str(k, v);
            }
            w.str("error", reason);
            w.str("message", &text);
            w.end_object();
        }
        line.push(b'\n');
        self.append(&line)
    }

    fn append(&self, line: &[u8]) -> std::io::Result<()> {
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
            Some(f) => f.write_all(line),
            None => Err(std::io::Error::other("dead-letter file not open")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_native_event_is_written_as_json_and_an_unreadable_message_as_text_with_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let d = DeadLetters::new(dir.path().join("dl.ndjson"), "k");
        let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"dl-1","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"alice"},"sourceIPs":["10.0.0.1"],"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2025-03-04T06:22:18.819232Z","stageTimestamp":"2025-03-04T06:22:18.821530Z"}"#;
        let activity = lumen_schemas::k8s_audit::parse_line(line).unwrap();
        let event =
            lumen_schemas::Event::api_activity(activity, std::sync::Arc::default(), Timestamp(1));
        let mut framed = Vec::new();
        lumen_schemas::codec::encode_framed(&event, &mut framed);
        d.write(&framed, "rejected").unwrap();
        d.write_message(
            b"{\"half\":",
            &[("topic", "t"), ("offset", "7")],
            "no event",
        )
        .unwrap();
        let text = std::fs::read_to_string(d.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["encoding"], "native");
        assert_eq!(lines[0]["event"]["metadata"]["uid"], "dl-1");
        assert_eq!(lines[1]["topic"], "t");
        assert_eq!(lines[1]["offset"], "7");
        assert_eq!(lines[1]["message"], "{\"half\":");
        assert_eq!(lines[1]["error"], "no event");
    }
}
