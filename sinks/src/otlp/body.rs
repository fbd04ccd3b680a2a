//! The event's JSON document as an OTLP `AnyValue`, built by deserializing
//! the encoder's bytes straight into the protobuf types (maps, arrays,
//! strings, integers, doubles, booleans) — no intermediate JSON value.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// `AnyValue` with a `Deserialize` that reads any JSON.
struct Any(AnyValue);

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

fn any(v: Value) -> Any {
    Any(AnyValue { value: Some(v) })
}

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Any;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Any, E> {
        Ok(any(Value::BoolValue(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Any, E> {
        Ok(any(Value::IntValue(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Any, E> {
        // AnyValue integers are signed 64-bit; larger ones keep their
        // digits as a string rather than lose precision.
        Ok(match i64::try_from(v) {
            Ok(i) => any(Value::IntValue(i)),
            Err(_) => any(Value::StringValue(v.to_string())),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Any, E> {
        Ok(any(Value::DoubleValue(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Any, E> {
        Ok(any(Value::StringValue(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Any, E> {
        Ok(any(Value::StringValue(v)))
    }
    fn visit_unit<E>(self) -> Result<Any, E> {
        Ok(Any(AnyValue { value: None }))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Any, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(Any(v)) = seq.next_element()? {
            values.push(v);
        }
        Ok(any(Value::ArrayValue(ArrayValue { values })))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Any, A::Error> {
        let mut values = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((key, Any(value))) = map.next_entry::<String, Any>()? {
            values.push(KeyValue {
                key,
                value: Some(value),
                ..Default::default()
            });
        }
        Ok(any(Value::KvlistValue(KeyValueList { values })))
    }
}

/// The JSON document `doc` as an `AnyValue` (a map for an object).
pub fn from_json(doc: &[u8]) -> Result<AnyValue, serde_json::Error> {
    serde_json::from_slice::<Any>(doc).map(|a| a.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_become_maps_with_typed_values() {
        let v =
            from_json(br#"{"a":1,"b":[true,"x",2.5],"c":{"d":null},"big":18446744073709551615}"#)
                .unwrap();
        let Some(Value::KvlistValue(kv)) = v.value else {
            panic!("not a map")
        };
        assert_eq!(kv.values[0].key, "a");
        assert_eq!(
            kv.values[0].value.as_ref().unwrap().value,
            Some(Value::IntValue(1))
        );
        let Some(Value::ArrayValue(arr)) = kv.values[1].value.as_ref().unwrap().value.clone()
        else {
            panic!("not an array")
        };
        assert_eq!(arr.values[0].value, Some(Value::BoolValue(true)));
        assert_eq!(arr.values[2].value, Some(Value::DoubleValue(2.5)));
        assert_eq!(
            kv.values[3].value.as_ref().unwrap().value,
            Some(Value::StringValue("18446744073709551615".into()))
        );
    }
}
