//! Events as Kafka records: each item in the batch buffer is a small
//! routing header — topic, key and event kind, each length-prefixed — then
//! the value (the document in the configured schema, or the framed native
//! event). The service reads the header back with [`Record::parse`];
//! nothing is allocated per event.

use super::config::{KafkaConfig, KafkaEncoding};
use crate::batch::Encoder;
use crate::template::Template;
use lumen_schemas::{Event, Schema};
use std::ops::Range;

#[derive(Debug)]
pub struct RecordEncoder {
    schema: Schema,
    encoding: KafkaEncoding,
    topic: Template,
    key: Template,
}

impl RecordEncoder {
    /// The templates were checked by [`KafkaConfig::validate`].
    pub fn new(config: &KafkaConfig) -> Result<Self, String> {
        Ok(RecordEncoder {
            schema: config.schema,
            encoding: config.encoding,
            topic: Template::parse(&config.topic)?,
            key: Template::parse(&config.key_field)?,
        })
    }
}

/// Appends `render`'s output behind a 2-byte length.
fn prefixed(buf: &mut Vec<u8>, render: impl FnOnce(&mut Vec<u8>)) {
    let at = buf.len();
    buf.extend_from_slice(&[0, 0]);
    render(buf);
    let len = (buf.len() - at - 2).min(u16::MAX as usize);
    buf.truncate(at + 2 + len);
    buf[at..at + 2].copy_from_slice(&(len as u16).to_le_bytes());
}

impl Encoder for RecordEncoder {
    fn encode(&self, event: &Event, buf: &mut Vec<u8>) -> Range<usize> {
        prefixed(buf, |b| self.topic.render(event, self.schema, b));
        prefixed(buf, |b| self.key.render(event, self.schema, b));
        prefixed(buf, |b| b.extend_from_slice(event.kind.name().as_bytes()));
        let start = buf.len();
        match self.encoding {
            KafkaEncoding::Json => self.schema.encode(event, buf),
            KafkaEncoding::Native => lumen_schemas::codec::encode_framed(event, buf),
        }
        start..buf.len()
    }
}

/// One item of a batch, read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub kind: &'a str,
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    /// Reads an item written by [`RecordEncoder`].
    pub fn parse(bytes: &'a [u8]) -> Option<Record<'a>> {
        fn field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
            let len = u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]) as usize;
            let rest = bytes.get(2..)?;
            Some((rest.get(..len)?, rest.get(len..)?))
        }
        let (topic, rest) = field(bytes)?;
        let (key, rest) = field(rest)?;
        let (kind, value) = field(rest)?;
        Some(Record {
            topic: std::str::from_utf8(topic).ok()?,
            key,
            kind: std::str::from_utf8(kind).ok()?,
            value,
        })
    }
}
