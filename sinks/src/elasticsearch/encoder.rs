//! Events as bulk API lines: an action line naming the target index, then
//! the document in the configured schema.

use super::config::{BulkAction, ElasticsearchConfig, Mode};
use crate::batch::Encoder;
use lumen_schemas::{ecs, ocsf, Event, Schema};
use std::ops::Range;

#[derive(Debug)]
pub struct BulkEncoder {
    schema: Schema,
    mode: Mode,
    index: String,
    action: BulkAction,
}

impl BulkEncoder {
    pub fn new(config: &ElasticsearchConfig) -> Self {
        BulkEncoder {
            schema: config.schema,
            mode: config.mode,
            index: config.bulk.index.clone(),
            action: config.bulk.action,
        }
    }

    /// Appends the target index of `event`.
    fn index(&self, event: &Event, out: &mut Vec<u8>) {
        match self.mode {
            Mode::DataStream => {
                out.extend_from_slice(b"logs-");
                match self.schema {
                    Schema::Ecs => out.extend_from_slice(ecs::dataset(event).as_bytes()),
                    Schema::Ocsf => {
                        // One data stream per OCSF class: logs-lumen.ocsf_process_activity-default.
                        out.extend_from_slice(b"lumen.ocsf_");
                        for b in ocsf::class_of(event).1.bytes() {
                            out.push(if b == b' ' {
                                b'_'
                            } else {
                                b.to_ascii_lowercase()
                            });
                        }
                    }
                }
                out.extend_from_slice(b"-default");
            }
            Mode::Bulk => expand_index(&self.index, event, out),
        }
    }
}

/// `%Y`, `%m`, `%d`, `%H` from the event's time; `%%` is `%`.
fn expand_index(template: &str, event: &Event, out: &mut Vec<u8>) {
    let time = event.time.rfc3339();
    let t = time.as_bytes();
    let mut bytes = template.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'Y') => out.extend_from_slice(&t[0..4]),
            Some(b'm') => out.extend_from_slice(&t[5..7]),
            Some(b'd') => out.extend_from_slice(&t[8..10]),
            Some(b'H') => out.extend_from_slice(&t[11..13]),
            Some(other) => {
                out.push(b'%');
                out.push(other);
            }
            None => out.push(b'%'),
        }
    }
}

impl Encoder for BulkEncoder {
    fn encode(&self, event: &Event, buf: &mut Vec<u8>) -> Range<usize> {
        let action: &[u8] = match (self.mode, self.action) {
            (Mode::DataStream, _) | (Mode::Bulk, BulkAction::Create) => {
                b"{\"create\":{\"_index\":\""
            }
            (Mode::Bulk, BulkAction::Index) => b"{\"index\":{\"_index\":\"",
        };
        buf.extend_from_slice(action);
        self.index(event, buf);
        buf.extend_from_slice(b"\"}}\n");
        let start = buf.len();
        self.schema.encode(event, buf);
        if self.schema == Schema::Ocsf && self.mode == Mode::DataStream {
            // Data streams need `@timestamp`; OCSF carries its time as
            // `time` (epoch ms). Both go in, the same instant.
            let time = event.time.rfc3339();
            let ts = [b"\"@timestamp\":\"".as_slice(), time.as_bytes(), b"\","];
            buf.splice(start + 1..start + 1, ts.into_iter().flatten().copied());
        }
        let end = buf.len();
        buf.push(b'\n');
        start..end
    }
}
