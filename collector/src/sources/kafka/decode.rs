//! What a Kafka message holds, as an event: Lumen's own native events (the
//! kafka sink's `encoding = "native"`, framed with the codec version) or
//! raw `audit.k8s.io` events, one per message (what an API server's
//! webhook-to-Kafka bridge or a cloud log export writes).

use lumen_schemas::event::Host;
use lumen_schemas::time::Timestamp;
use lumen_schemas::{codec, Event};
use serde::Deserialize;
use std::sync::Arc;

/// `decoding` of a kafka source.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// A native frame is a native event; anything else an audit event.
    #[default]
    Auto,
    Native,
    K8sAudit,
}

/// The event in `payload`, or why there is none.
pub fn decode(payload: &[u8], decoding: Decoding, host: &Arc<Host>) -> Result<Event, String> {
    let native = match decoding {
        Decoding::Auto => codec::is_framed(payload),
        Decoding::Native => true,
        Decoding::K8sAudit => false,
    };
    if native {
        return codec::decode_framed(payload).map_err(|e| e.to_string());
    }
    let line = std::str::from_utf8(payload)
        .map_err(|e| format!("not an audit.k8s.io event: not UTF-8 text ({e})"))?;
    let activity = lumen_schemas::k8s_audit::parse_line(line.trim_end())
        .map_err(|e| format!("not an audit.k8s.io event: {e}"))?;
    Ok(Event::api_activity(
        activity,
        host.clone(),
        Timestamp::now(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{"username":"alice"},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2025-03-04T06:22:18.819232Z","stageTimestamp":"2025-03-04T06:22:18.821530Z"}"#;

    #[test]
    fn native_frames_and_audit_lines_decode_and_anything_else_is_named() {
        let host = Arc::new(Host::default());
        let audit = decode(AUDIT.as_bytes(), Decoding::Auto, &host).unwrap();
        let mut framed = Vec::new();
        codec::encode_framed(&audit, &mut framed);
        let back = decode(&framed, Decoding::Auto, &host).unwrap();
        let json = |e: &Event| {
            let mut b = Vec::new();
            lumen_schemas::Schema::Ecs.encode(e, &mut b);
            b
        };
        assert_eq!(json(&back), json(&audit));
        assert!(decode(AUDIT.as_bytes(), Decoding::Native, &host)
            .unwrap_err()
            .contains("not a Lumen native event"));
        assert!(decode(&framed, Decoding::K8sAudit, &host)
            .unwrap_err()
            .contains("not an audit.k8s.io event"));
        assert!(decode(b"{\"kind\":", Decoding::Auto, &host)
            .unwrap_err()
            .contains("not an audit.k8s.io event"));
        assert!(decode(&[0xff, 0xfe], Decoding::Auto, &host)
            .unwrap_err()
            .contains("UTF-8"));
    }
}
