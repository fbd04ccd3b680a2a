//! EKS audit events as CloudWatch Logs delivers them: an EKS cluster writes
//! its API server's audit log to the log group `/aws/eks/<cluster>/cluster`,
//! streams `kube-apiserver-audit-…`, one audit event per log event.
//!
//! - A subscription payload (what a subscription filter sends to Kinesis,
//!   Firehose or Lambda: `{"messageType":"DATA_MESSAGE","owner":…,
//!   "logGroup":…,"logStream":…,"logEvents":[{"id","timestamp","message"}]}`,
//!   gzip-compressed as delivered; the sources decompress) holds many events:
//!   each `message` is one, its own success or error. A `CONTROL_MESSAGE`
//!   (CloudWatch checking the destination) holds none.
//! - A line of a CloudWatch export to S3 is `<RFC 3339 time> <event>`.
//!
//! The message is the event's original; the cluster (from the log group),
//! the account (`owner`), the log group and stream and the CloudWatch event
//! id and time are its [`Wrapper`], with `cloud.provider: aws`.

use super::{from_raw, AuditParseError, BStr, RawEvent, Text};
use crate::event::{push, ApiActivity, Str, Wrapper};
use crate::time::Timestamp;
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(rename = "messageType", borrow)]
    message_type: Option<BStr<'a>>,
    #[serde(borrow)]
    owner: Option<BStr<'a>>,
    #[serde(rename = "logGroup", borrow)]
    log_group: Option<BStr<'a>>,
    #[serde(rename = "logStream", borrow)]
    log_stream: Option<BStr<'a>>,
    #[serde(rename = "logEvents", borrow, default)]
    log_events: Vec<LogEvent<'a>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    id: Option<BStr<'a>>,
    timestamp: Option<i64>,
    #[serde(borrow)]
    message: Option<BStr<'a>>,
}

/// The record's metadata, shared by its events.
struct Origin<'r> {
    owner: &'r str,
    log_group: &'r str,
    log_stream: &'r str,
}

/// Parses a subscription payload into `out`, one result per log event.
pub(super) fn parse_payload(record: &str, out: &mut Vec<Result<ApiActivity, AuditParseError>>) {
    let payload: Payload<'_> = match serde_json::from_str(record) {
        Ok(p) => p,
        Err(e) => return out.push(Err(e.into())),
    };
    match payload.message_type.as_ref().map(|t| &*t.0) {
        Some("CONTROL_MESSAGE") => return,
        Some("DATA_MESSAGE") | None => {}
        Some(other) => {
            return out.push(Err(AuditParseError::NotAnEvent(format!(
                "CloudWatch Logs payload of messageType {other:?}"
            ))))
        }
    }
    let origin = Origin {
        owner: payload.owner.as_ref().map_or("", |s| &*s.0),
        log_group: payload.log_group.as_ref().map_or("", |s| &*s.0),
        log_stream: payload.log_stream.as_ref().map_or("", |s| &*s.0),
    };
    for event in payload.log_events {
        let Some(message) = event.message else {
            out.push(Err(AuditParseError::NotAnEvent(
                "CloudWatch log event without `message`".to_owned(),
            )));
            continue;
        };
        let time = event
            .timestamp
            .and_then(|ms| ms.checked_mul(1_000_000))
            .map(|nanos| Timestamp(nanos).rfc3339().to_string());
        let id = event.id.as_ref().map_or("", |s| &*s.0);
        out.push(parse_message(&message.0, &origin, id, time.as_deref()));
    }
}

/// A line of a CloudWatch export (`2026-10-01T10:00:00.000Z {"kind":…}`):
/// `None` when the line does not have that shape.
pub(super) fn export_line(line: &str) -> Option<Result<ApiActivity, AuditParseError>> {
    let (time, message) = line.trim_start().split_once(' ')?;
    Timestamp::parse_rfc3339(time)?;
    let message = message.trim();
    if !message.starts_with('{') {
        return None;
    }
    let origin = Origin {
        owner: "",
        log_group: "",
        log_stream: "",
    };
    Some(parse_message(message, &origin, "", Some(time)))
}

/// One audit event of a CloudWatch record, with the record's metadata.
fn parse_message(
    message: &str,
    origin: &Origin<'_>,
    id: &str,
    time: Option<&str>,
) -> Result<ApiActivity, AuditParseError> {
    let raw: RawEvent<'_> = serde_json::from_str(message)?;
    let text = Text {
        text: message.to_owned(),
        base: message,
        base_offset: 0,
    };
    let mut a = from_raw(raw, text, message.len())?;
    let mut put = |s: &str| {
        if s.is_empty() {
            Str::EMPTY
        } else {
            push(&mut a.text, s)
        }
    };
    let wrapper = Wrapper {
        provider: "eks".into(),
        cluster: put(cluster_of(origin.log_group)),
        account: put(origin.owner),
        log_name: put(origin.log_group),
        log_stream: put(origin.log_stream),
        record_id: put(id),
        time: put(time.unwrap_or("")),
        ..Wrapper::default()
    };
    a.wrapper = Some(wrapper);
    Ok(a)
}

/// `bytes` decompressed when they are gzip (a CloudWatch subscription
/// payload as delivered: they start with the gzip magic `1f 8b`), else as
/// they are. At most `limit` bytes come out: a payload that would inflate
/// past it is refused rather than held in memory.
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, AuditParseError> {
    use std::io::Read as _;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(8).min(limit));
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| AuditParseError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(AuditParseError::Gzip(format!(
            "decompresses to more than {limit} bytes"
        )));
    }
    Ok(Cow::Owned(out))
}

/// The cluster of an EKS log group, `/aws/eks/<cluster>/cluster`.
fn cluster_of(log_group: &str) -> &str {
    log_group
        .strip_prefix("/aws/eks/")
        .and_then(|rest| rest.strip_suffix("/cluster"))
        .filter(|c| !c.is_empty() && !c.contains('/'))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use crate::k8s_audit::{parse_line, parse_record, Format};

    const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/db","verb":"get","user":{"username":"kubernetes-admin","groups":["system:masters"]},"sourceIPs":["192.0.2.10"],"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-10-01T10:00:00.000000Z","stageTimestamp":"2026-10-01T10:00:00.010000Z"}"#;

    fn payload(message_type: &str, messages: &[&str]) -> String {
        let events: Vec<String> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                format!(
                    r#"{{"id":"3795{i}","timestamp":1790848800000,"message":{}}}"#,
                    serde_json::to_string(m).unwrap()
                )
            })
            .collect();
        format!(
            r#"{{"messageType":"{message_type}","owner":"123456789012","logGroup":"/aws/eks/prod-eu/cluster","logStream":"kube-apiserver-audit-0a1b2c","subscriptionFilters":["to-lumen"],"logEvents":[{}]}}"#,
            events.join(",")
        )
    }

    #[test]
    fn each_log_event_of_a_payload_is_an_event_with_the_cluster_and_account() {
        let record = payload("DATA_MESSAGE", &[EVENT, "{not json", EVENT]);
        let mut out = Vec::new();
        parse_record(&record, Format::Auto, &mut out);
        assert_eq!(out.len(), 3);
        assert!(out[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("invalid JSON"));
        for r in [&out[0], &out[2]] {
            let a = r.as_ref().unwrap();
            assert_eq!(a.original(), EVENT);
            assert_eq!(a.s(a.verb), "get");
            let w = a.wrapper.as_ref().unwrap();
            assert_eq!(w.cloud_provider(), "aws");
            assert_eq!(
                (a.s(w.cluster), a.s(w.account)),
                ("prod-eu", "123456789012")
            );
            assert_eq!(a.s(w.log_stream), "kube-apiserver-audit-0a1b2c");
            assert_eq!(a.s(w.time), "2026-10-01T10:00:00.000000Z");
        }
        // Pinned to another format, the whole record is refused once.
        out.clear();
        parse_record(&record, Format::Native, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("CloudWatch"));
        // A line holding several events is not a line.
        assert!(parse_line(&record).is_err());
    }

    #[test]
    fn gzip_payloads_inflate_within_a_limit_and_other_bytes_pass() {
        use std::io::Write as _;
        let record = payload("DATA_MESSAGE", &[EVENT]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(record.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(&*super::gunzip(&gz, 1 << 20).unwrap(), record.as_bytes());
        let err = super::gunzip(&gz, 100).unwrap_err().to_string();
        assert!(err.contains("more than 100 bytes"), "{err}");
        let err = super::gunzip(&gz[..gz.len() / 2], 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gzip:"), "{err}");
        assert_eq!(
            &*super::gunzip(record.as_bytes(), 10).unwrap(),
            record.as_bytes()
        );
    }

    #[test]
    fn control_messages_hold_nothing_and_export_lines_hold_one() {
        let mut out = Vec::new();
        parse_record(
            &payload(
                "CONTROL_MESSAGE",
                &["CWL CONTROL MESSAGE: Checking health of destination"],
            ),
            Format::Cloudwatch,
            &mut out,
        );
        assert!(out.is_empty());
        let line = format!("2026-10-01T10:00:00.000Z {EVENT}");
        parse_record(&line, Format::Auto, &mut out);
        let a = out.pop().unwrap().unwrap();
        assert_eq!(a.original(), EVENT);
        assert_eq!(a.wrapper.as_ref().unwrap().provider, "eks");
        let err = parse_line("2026-10-01T10:00:00.000Z not an event").unwrap_err();
        assert!(err.to_string().contains("invalid JSON"), "{err}");
    }
}
