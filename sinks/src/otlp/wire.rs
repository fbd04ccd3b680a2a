//! OTLP protobuf written straight into bytes: the event's JSON document
//! transcoded into an `AnyValue` (no intermediate value tree, no
//! per-field allocation), log records, and the request around them.
//!
//! prost's generated types recompute every nested message's length at
//! every level when encoding; for event bodies (maps within maps) that and
//! the allocation of one `String` per key and value were most of the
//! sink's CPU (docs/PERFORMANCE.md). Here each nested message reserves
//! room for its length, and the length is written once its content is.
//!
//! Field numbers from `opentelemetry/proto/common/v1/common.proto` and
//! `logs/v1/logs.proto`.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

const LEN: u8 = 2;
const VARINT: u8 = 0;
const I64: u8 = 1;

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from((field << 3) | u32::from(wire)));
}

pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Starts a length-delimited field; returns where its content starts.
pub fn open(out: &mut Vec<u8>, field: u32) -> usize {
    tag(out, field, LEN);
    // Room for the longest length varint (5 bytes: up to 4 GiB).
    out.extend_from_slice(&[0; 5]);
    out.len()
}

/// Ends a field [`open`] started: writes its length, closing the gap.
pub fn close(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    let mut v = Vec::with_capacity(5);
    varint(&mut v, len as u64);
    let at = start - 5;
    out[at..at + v.len()].copy_from_slice(&v);
    if v.len() < 5 {
        out.copy_within(start.., at + v.len());
        out.truncate(out.len() - (5 - v.len()));
    }
}

pub fn bytes_field(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    tag(out, field, LEN);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

pub fn fixed64_field(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, I64);
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, VARINT);
    varint(out, value);
}

/// A `KeyValue` with a string value, as field `field` of its parent.
pub fn string_attribute(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    let kv = open(out, field);
    bytes_field(out, 1, key.as_bytes());
    let any = open(out, 2);
    bytes_field(out, 1, value.as_bytes());
    close(out, any);
    close(out, kv);
}

/// A `KeyValue` with an integer value.
pub fn int_attribute(out: &mut Vec<u8>, field: u32, key: &str, value: i64) {
    let kv = open(out, field);
    bytes_field(out, 1, key.as_bytes());
    let any = open(out, 2);
    varint_field(out, 3, value as u64);
    close(out, any);
    close(out, kv);
}

/// Writes the content of an `AnyValue` for the JSON value the deserializer
/// yields: string 1, bool 2, int 3, double 4, array 5, kvlist 6; null is
/// an empty `AnyValue`.
struct AnyValueSeed<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for AnyValueSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        varint_field(self.0, 2, u64::from(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        varint_field(self.0, 3, v as u64);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        // AnyValue integers are signed 64-bit; larger ones keep their
        // digits as a string rather than lose precision.
        match i64::try_from(v) {
            Ok(i) => varint_field(self.0, 3, i as u64),
            Err(_) => bytes_field(self.0, 1, itoa::Buffer::new().format(v).as_bytes()),
        }
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        fixed64_field(self.0, 4, v.to_bits());
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        bytes_field(self.0, 1, v.as_bytes());
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        let array = open(out, 5);
        loop {
            let value = open(out, 1);
            if seq.next_element_seed(AnyValueSeed(&mut *out))?.is_none() {
                // No element after all: drop the field just opened.
                out.truncate(value - 6);
                break;
            }
            close(out, value);
        }
        close(out, array);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.0;
        let list = open(out, 6);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let kv = open(out, 1);
            bytes_field(out, 1, key.as_bytes());
            let value = open(out, 2);
            map.next_value_seed(AnyValueSeed(&mut *out))?;
            close(out, value);
            close(out, kv);
        }
        close(out, list);
        Ok(())
    }
}

/// Appends the `AnyValue` content (no tag or length) for JSON `doc`.
pub fn any_value(doc: &[u8], out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(doc);
    AnyValueSeed(out).deserialize(&mut de)?;
    de.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use prost::Message;

    /// The transcoder and prost agree: decoding its bytes with the
    /// official types gives what the typed conversion gives.
    #[test]
    fn transcoded_bodies_decode_with_the_official_types() {
        let docs: [&[u8]; 4] = [
            br#"{"a":1,"b":[true,"x",2.5,null,-7],"c":{"d":null,"e":{}},"big":18446744073709551615,"s":"\u00e9\"q"}"#,
            br#"[]"#,
            br#""plain""#,
            br#"{"long":"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"}"#,
        ];
        for doc in docs {
            let mut out = Vec::new();
            any_value(doc, &mut out).unwrap();
            let decoded = AnyValue::decode(out.as_slice()).unwrap();
            let expected = super::super::body::from_json(doc).unwrap();
            assert_eq!(decoded, expected, "{}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn lengths_longer_than_one_byte_close_correctly() {
        let mut out = Vec::new();
        let start = open(&mut out, 1);
        out.extend_from_slice(&[7u8; 300]);
        close(&mut out, start);
        // tag, 2-byte length (300 = 0xAC 0x02), content.
        assert_eq!(&out[..3], &[0x0A, 0xAC, 0x02]);
        assert_eq!(out.len(), 3 + 300);
    }
}
