//! What a Kafka message holds, as events: Lumen's own native events (the
//! kafka sink's `encoding = "native"`, framed with the codec version) or
//! raw audit records — an `audit.k8s.io` event, an AKS record, a GKE Cloud
//! Audit Logs entry (what an API server's webhook-to-Kafka bridge or a cloud
//! log export writes), or a CloudWatch Logs subscription payload of an EKS
//! cluster, gzip-compressed as delivered or not, which holds several.

use lumen_schemas::event::Host;
use lumen_schemas::k8s_audit::{self, cloudwatch, Format};
use lumen_schemas::time::Timestamp;
use lumen_schemas::{codec, Event};
use serde::Deserialize;
use std::sync::Arc;

/// `decoding` of a kafka source.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// A native frame is a native event; anything else an audit record.
    #[default]
    Auto,
    Native,
    K8sAudit,
}

/// A CloudWatch payload inflates to at most this (CloudWatch sends at most
/// 1 MB of events per payload).
const MAX_INFLATED: usize = 16 * 1024 * 1024;

/// The events of one message.
#[derive(Debug)]
pub enum Decoded {
    One(Event),
    /// A CloudWatch payload's events (none for a control message); the
    /// errors of those that were not audit events.
    Several(Vec<Event>, Vec<String>),
}

/// The events in `payload`, or why there are none.
pub fn decode(payload: &[u8], decoding: Decoding, host: &Arc<Host>) -> Result<Decoded, String> {
    let native = match decoding {
        Decoding::Auto => codec::is_framed(payload),
        Decoding::Native => true,
        Decoding::K8sAudit => false,
    };
    if native {
        return codec::decode_framed(payload)
            .map(Decoded::One)
            .map_err(|e| e.to_string());
    }
    let not_audit = |e: &dyn std::fmt::Display| format!("not an audit.k8s.io event: {e}");
    let inflated = cloudwatch::gunzip(payload, MAX_INFLATED).map_err(|e| not_audit(&e))?;
    let line = std::str::from_utf8(&inflated)
        .map_err(|e| format!("not an audit.k8s.io event: not UTF-8 text ({e})"))?;
    let mut parsed = Vec::new();
    k8s_audit::parse_record(line.trim_end(), Format::Auto, &mut parsed);
    let observed = Timestamp::now();
    let event = |a| Event::api_activity(a, host.clone(), observed);
    let several = parsed.len() != 1;
    let mut events = Vec::with_capacity(parsed.len());
    let mut errors = Vec::new();
    for p in parsed {
        match p {
            Ok(a) => events.push(event(a)),
            Err(e) if several => errors.push(not_audit(&e)),
            Err(e) => return Err(not_audit(&e)),
        }
    }
    if !several {
        return events
            .pop()
            .map(Decoded::One)
            .ok_or_else(|| not_audit(&"no event"));
    }
    if events.is_empty() && !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(Decoded::Several(events, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{"username":"alice"},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2025-03-04T06:22:18.819232Z","stageTimestamp":"2025-03-04T06:22:18.821530Z"}"#;

    #[test]
    fn native_frames_and_audit_lines_decode_and_anything_else_is_named() {
        let host = Arc::new(Host::default());
        let one = |d: Result<Decoded, String>| match d.unwrap() {
            Decoded::One(e) => e,
            other => panic!("{other:?}"),
        };
        let audit = one(decode(AUDIT.as_bytes(), Decoding::Auto, &host));
        let mut framed = Vec::new();
        codec::encode_framed(&audit, &mut framed);
        let back = one(decode(&framed, Decoding::Auto, &host));
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

    #[test]
    fn gke_entries_are_one_event_and_cloudwatch_payloads_several() {
        use std::io::Write as _;
        let host = Arc::new(Host::default());
        let gke = r#"{"insertId":"g-1","logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity","protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"alice@example.com"},"methodName":"io.k8s.core.v1.pods.exec.create","resourceName":"core/v1/namespaces/shop/pods/api-1/exec","requestMetadata":{"callerIp":"203.0.113.9"},"status":{}},"resource":{"labels":{"cluster_name":"c1","location":"us-central1","project_id":"p"},"type":"k8s_cluster"},"timestamp":"2026-10-01T10:00:00Z"}"#;
        let Ok(Decoded::One(e)) = decode(gke.as_bytes(), Decoding::Auto, &host) else {
            panic!("one event")
        };
        let lumen_schemas::EventKind::ApiActivity(a) = &e.kind else {
            panic!("api activity")
        };
        assert_eq!(a.wrapper.as_ref().unwrap().provider, "gke");
        let payload = format!(
            r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"/aws/eks/c2/cluster","logStream":"kube-apiserver-audit-1","logEvents":[{{"id":"1","timestamp":1,"message":{m}}},{{"id":"2","timestamp":2,"message":"oops"}},{{"id":"3","timestamp":3,"message":{m}}}]}}"#,
            m = serde_json::to_string(AUDIT).unwrap()
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(payload.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        for bytes in [payload.as_bytes(), &gz[..]] {
            let Ok(Decoded::Several(events, errors)) = decode(bytes, Decoding::K8sAudit, &host)
            else {
                panic!("several events")
            };
            assert_eq!((events.len(), errors.len()), (2, 1));
            assert!(errors[0].contains("invalid JSON"), "{errors:?}");
        }
    }
}
