//! The canonical event as bytes, for disk buffers and for Lumen-to-Lumen
//! messages (the kafka sink's `encoding = "native"`).
//!
//! postcard (a compact, non-self-describing serde format) over the event's
//! serde derives: no JSON, no field names, strings stay in their shared text
//! buffers. Because the format follows the structs, a change to the event
//! model changes [`FORMAT_VERSION`]; a disk buffer written by another version
//! is reported, not misread. A message on its own carries the version in a
//! frame ([`encode_framed`]), so a reader of another version refuses it by
//! name.

use crate::Event;

/// Bumped whenever a change to `event.rs` changes the encoding.
pub const FORMAT_VERSION: u32 = 7;

/// An event that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode an event: {0}")]
pub struct DecodeError(#[from] postcard::Error);

/// Appends `event` to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    // Serializing into a Vec cannot fail: every type in the model is
    // serializable and the output grows as needed.
    if let Ok(v) = postcard::to_extend(event, std::mem::take(out)) {
        *out = v;
    }
}

/// Decodes one event encoded by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// The first bytes of a framed event: a magic, then the codec version
/// (u32, little-endian).
pub const FRAME_MAGIC: &[u8; 4] = b"LMNE";

/// Why a framed event was not read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("not a Lumen native event (no LMNE frame)")]
    NotNative,
    #[error("a Lumen native event of codec version {found}; this Lumen reads version {FORMAT_VERSION} (run the same Lumen version on both sides)")]
    Version { found: u32 },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Appends `event` framed: [`FRAME_MAGIC`], the codec version, the event.
pub fn encode_framed(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(FRAME_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    encode(event, out);
}

/// Whether `bytes` start like a framed event (of any version).
pub fn is_framed(bytes: &[u8]) -> bool {
    bytes.starts_with(FRAME_MAGIC)
}

/// Decodes one event written by [`encode_framed`].
pub fn decode_framed(bytes: &[u8]) -> Result<Event, FrameError> {
    let rest = bytes
        .strip_prefix(FRAME_MAGIC)
        .ok_or(FrameError::NotNative)?;
    let version = rest
        .get(..4)
        .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
        .ok_or(FrameError::NotNative)?;
    if version != FORMAT_VERSION {
        return Err(FrameError::Version { found: version });
    }
    Ok(decode(&rest[4..])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Schema;

    fn audit_event() -> Event {
        let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/s","verb":"get","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.33","objectRef":{"resource":"secrets","namespace":"default","name":"s","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2025-03-04T06:22:18.819232Z","stageTimestamp":"2025-03-04T06:22:18.821530Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}}"#;
        let host = std::sync::Arc::new(crate::event::Host {
            name: "node-1".into(),
            architecture: "x86_64".into(),
            kernel: "6.18.0".into(),
        });
        let activity = crate::k8s_audit::parse_line(line).expect("valid audit line");
        Event::api_activity(activity, host, crate::time::Timestamp(7))
    }

    fn loss_event() -> Event {
        Event {
            time: crate::time::Timestamp(1),
            observed: crate::time::Timestamp(2),
            host: std::sync::Arc::default(),
            kind: crate::EventKind::Loss(crate::event::LossReport {
                since: crate::time::Timestamp(1),
                until: crate::time::Timestamp(2),
                by_kind: vec![("exec".into(), 3), ("file".into(), 4)],
                cause: Default::default(),
            }),
            redaction: Default::default(),
        }
    }

    #[test]
    fn a_framed_event_round_trips_and_another_version_or_garbage_is_refused_by_name() {
        let mut bytes = Vec::new();
        encode_framed(&audit_event(), &mut bytes);
        assert!(is_framed(&bytes));
        let back = decode_framed(&bytes).expect("decodes");
        let json = |e: &Event| {
            let mut b = Vec::new();
            Schema::Ocsf.encode(e, &mut b);
            b
        };
        assert_eq!(json(&back), json(&audit_event()));
        let mut other = bytes.clone();
        other[4..8].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let e = decode_framed(&other).unwrap_err();
        assert!(matches!(e, FrameError::Version { found } if found == FORMAT_VERSION + 1));
        assert!(e
            .to_string()
            .contains(&format!("reads version {FORMAT_VERSION}")));
        assert!(matches!(
            decode_framed(b"{\"kind\":\"Event\"}"),
            Err(FrameError::NotNative)
        ));
        assert!(matches!(
            decode_framed(&bytes[..12]),
            Err(FrameError::Decode(_))
        ));
    }

    #[test]
    fn an_event_survives_the_round_trip_byte_for_byte_in_both_schemas() {
        for event in [audit_event(), loss_event()] {
            round_trip(event);
        }
    }

    #[test]
    fn a_shared_marker_is_written_like_an_own_one_made_once_and_follows_a_merge() {
        use crate::event::{Marker, MarkerForm, Redaction};
        let mut names = Redaction::default();
        names.record("user.name", "hash:user.name");
        names.record("source.ip", "truncate_ip:source.ip");
        let mut own = audit_event();
        own.redaction = Marker::shared(names.clone());
        let shared = Marker::shared(names.clone());
        let (mut first, mut second) = (audit_event(), audit_event());
        first.redaction = shared.clone();
        second.redaction = shared.clone();
        let out = |e: &Event, schema: Schema| {
            let mut b = Vec::new();
            schema.encode(e, &mut b);
            String::from_utf8(b).expect("utf-8")
        };
        for schema in [Schema::Ecs, Schema::Ocsf] {
            let want = out(&own, schema);
            assert_eq!(out(&first, schema), want, "{schema:?}");
            assert_eq!(out(&second, schema), want, "{schema:?}, from what was kept");
        }
        assert!(out(&own, Schema::Ecs).contains(
            r#""labels":{"lumen_redacted_fields":"user.name,source.ip","lumen_redaction_rules":"hash:user.name,truncate_ip:source.ip"}"#
        ));
        assert!(out(&own, Schema::Ocsf).contains(
            r#""labels":["redacted:user.name","redacted:source.ip","redaction_rule:hash:user.name","redaction_rule:truncate_ip:source.ip"]"#
        ));
        // Made once: a second ask does not encode again.
        let kept = shared.encoded(MarkerForm::EcsLabels, |_| {
            unreachable!("kept from the first")
        });
        assert!(kept.is_some_and(|k| k.starts_with(b"{\"lumen_redacted_fields\"")));
        // An event's own marker is not kept (it is written directly).
        assert!(own
            .redaction
            .encoded(MarkerForm::EcsLabels, |_| Vec::new())
            .is_none());
        // Another transform's names merged into one event: that event's
        // labels have them, the others' do not.
        let mut more = Redaction::default();
        more.record("user_agent.original", "detector:email");
        first.redaction.merge(&Marker::shared(more.clone()));
        let mut all = names.clone();
        all.merge(more);
        own.redaction = Marker::shared(all);
        for schema in [Schema::Ecs, Schema::Ocsf] {
            assert_eq!(out(&first, schema), out(&own, schema), "{schema:?}");
            assert!(out(&first, schema).contains("detector:email"));
            assert!(!out(&second, schema).contains("detector:email"));
        }
        // Carried through a disk buffer as the names.
        round_trip(first);
        round_trip(second);
    }

    fn round_trip(event: Event) {
        let mut bytes = Vec::new();
        encode(&event, &mut bytes);
        let back = decode(&bytes).expect("decodes");
        for schema in [Schema::Ecs, Schema::Ocsf] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            schema.encode(&event, &mut a);
            schema.encode(&back, &mut b);
            assert_eq!(a, b, "{schema:?} output differs after the round trip");
        }
        assert!(
            bytes.len() < event_text_len(&event) + 256,
            "compact: {}",
            bytes.len()
        );
    }

    fn event_text_len(e: &Event) -> usize {
        match &e.kind {
            crate::EventKind::ApiActivity(a) => a.text.len(),
            _ => 0,
        }
    }

    #[test]
    fn truncated_or_garbled_bytes_are_an_error_not_a_panic() {
        let mut bytes = Vec::new();
        encode(&audit_event(), &mut bytes);
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Flipped bits either fail to decode or decode to some event (the
        // disk buffer's CRC is what catches them); they never panic.
        for i in 0..bytes.len().min(200) {
            let mut garbled = bytes.clone();
            garbled[i] ^= 0x5a;
            if let Ok(e) = decode(&garbled) {
                Schema::Ecs.encode(&e, &mut Vec::new());
            }
        }
    }
}
