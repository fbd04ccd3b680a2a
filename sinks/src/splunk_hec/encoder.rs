//! Events as HEC requests: JSON envelopes (`time`, `host`, `source`,
//! `sourcetype`, `index`, `fields`, `event`) for `/services/collector/event`,
//! or bare documents, one per line, for `/services/collector/raw`.

use super::config::{EndpointTarget, SplunkHecConfig};
use crate::batch::Encoder;
use lumen_schemas::json::JsonWriter;
use lumen_schemas::{ecs, ocsf, Event, Schema};
use std::ops::Range;

#[derive(Debug)]
pub struct HecEncoder {
    schema: Schema,
    target: EndpointTarget,
    index: Option<String>,
    sourcetype: Option<String>,
    source: String,
    with_host: bool,
}

impl HecEncoder {
    pub fn new(config: &SplunkHecConfig) -> Self {
        HecEncoder {
            schema: config.schema,
            target: config.endpoint_target,
            index: config.index.clone(),
            sourcetype: config.sourcetype.clone(),
            source: config.source.clone(),
            with_host: !config.host_key.is_empty(),
        }
    }
}

/// The default source type of an event: one per OCSF class in OCSF
/// (`ocsf:process_activity`), one per dataset in ECS (`lumen:process`).
pub fn default_sourcetype(schema: Schema, event: &Event) -> &'static str {
    match schema {
        Schema::Ocsf => match ocsf::class_of(event).0 {
            1001 => "ocsf:file_system_activity",
            1002 => "ocsf:kernel_extension_activity",
            1003 => "ocsf:kernel_activity",
            1007 => "ocsf:process_activity",
            2004 => "ocsf:detection_finding",
            4001 => "ocsf:network_activity",
            6003 => "ocsf:api_activity",
            _ => "ocsf:other",
        },
        Schema::Ecs => match ecs::dataset(event) {
            "lumen.process" => "lumen:process",
            "lumen.file" => "lumen:file",
            "lumen.network" => "lumen:network",
            "lumen.privilege" => "lumen:privilege",
            "lumen.k8s_audit" => "lumen:k8s_audit",
            "lumen.loss" => "lumen:loss",
            _ => "lumen:other",
        },
    }
}

/// `time` as HEC documents it: epoch seconds with milliseconds.
fn write_time(ms: i64, out: &mut [u8; 32]) -> usize {
    let mut secs = itoa::Buffer::new();
    let s = secs.format(ms.div_euclid(1000)).as_bytes();
    out[..s.len()].copy_from_slice(s);
    let frac = ms.rem_euclid(1000) as u16;
    let n = s.len();
    out[n] = b'.';
    out[n + 1] = b'0' + (frac / 100) as u8;
    out[n + 2] = b'0' + (frac / 10 % 10) as u8;
    out[n + 3] = b'0' + (frac % 10) as u8;
    n + 4
}

impl Encoder for HecEncoder {
    fn encode(&self, event: &Event, buf: &mut Vec<u8>) -> Range<usize> {
        if self.target == EndpointTarget::Raw {
            let start = buf.len();
            self.schema.encode(event, buf);
            let end = buf.len();
            buf.push(b'\n');
            return start..end;
        }
        let sourcetype = match &self.sourcetype {
            Some(s) => s.as_str(),
            None => default_sourcetype(self.schema, event),
        };
        {
            let mut w = JsonWriter::new(buf);
            w.begin_object();
            let mut time = [0u8; 32];
            let n = write_time(event.time.as_millis(), &mut time);
            w.raw("time", &time[..n]);
            if self.with_host {
                w.str("host", &event.host.name);
            }
            w.str("source", &self.source);
            w.str("sourcetype", sourcetype);
            if let Some(index) = &self.index {
                w.str("index", index);
            }
            w.object("fields");
            w.str("lumen_schema", self.schema.as_str());
            w.str("lumen_kind", event.kind.name());
            w.end_object();
        }
        // The envelope stays open: `"event":` and the schema encoder's
        // bytes complete it (the writer has members before, hence the comma).
        buf.extend_from_slice(b",\"event\":");
        let start = buf.len();
        self.schema.encode(event, buf);
        let end = buf.len();
        buf.push(b'}');
        buf.push(b'\n');
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_epoch_seconds_with_milliseconds() {
        let mut t = [0u8; 32];
        let n = write_time(1_700_000_000_042, &mut t);
        assert_eq!(&t[..n], b"1700000000.042");
        let n = write_time(5, &mut t);
        assert_eq!(&t[..n], b"0.005");
    }
}
