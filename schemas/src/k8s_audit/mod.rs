//! Parses Kubernetes API-server audit events (`audit.k8s.io/v1` `Event`, and
//! the older `v1beta1` shape) into [`ApiActivity`], as the managed clusters
//! deliver them.
//!
//! Accepted records, one JSON document per line ([`Format`]):
//! - `native`: an `Event`, as the log backend or a webhook's `EventList.items`
//!   holds it;
//! - `aks`: an Azure AKS diagnostic record whose `properties.log` carries the
//!   event, as a JSON string or an object ([`aks`]);
//! - `gke`: a Google Cloud Audit Logs `LogEntry` of a GKE cluster, whose
//!   `protoPayload` is an `AuditLog` ([`gke`]);
//! - `cloudwatch`: a CloudWatch Logs subscription payload of an EKS cluster's
//!   log group, each `logEvents[].message` an event, or a line of a
//!   CloudWatch export (`<timestamp> <event>`) ([`cloudwatch`]).
//!
//! `auto` (the default) tells them apart by their keys, in the same parse
//! that reads a native event. A document that is valid JSON but not an audit
//! event (no `auditID`, no `stage`, `verb` not a string, …) is an error,
//! never a half-filled event.

pub mod aks;
pub mod cloudwatch;
pub mod gke;

use crate::event::{push, ApiActivity, K8sUser, ObjectRef, ResponseStatus, Str};
use crate::time::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Why a record is not an audit event.
#[derive(Debug, thiserror::Error)]
pub enum AuditParseError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a Kubernetes audit event: {0}")]
    NotAnEvent(String),
    #[error("{found}, but this source reads `format = \"{format}\"`")]
    WrongFormat { found: &'static str, format: Format },
    #[error(
        "a CloudWatch Logs payload holds no or several events: read it as a record, not a line"
    )]
    SeveralEvents,
    #[error("gzip: {0}")]
    Gzip(String),
}

/// The shape of an audit source's records (`format` of the
/// `k8s_audit_file` and `k8s_audit_webhook` sources).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Each record by its keys.
    #[default]
    Auto,
    Native,
    Aks,
    Gke,
    Cloudwatch,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Native => "native",
            Format::Aks => "aks",
            Format::Gke => "gke",
            Format::Cloudwatch => "cloudwatch",
        })
    }
}

impl Format {
    /// Whether records of `found` may be read.
    fn admits(self, found: Format) -> bool {
        self == Format::Auto || self == found
    }

    fn describe(self) -> &'static str {
        match self {
            Format::Native | Format::Auto => "a native audit event",
            Format::Aks => "an AKS diagnostic record",
            Format::Gke => "a GKE Cloud Audit Logs entry",
            Format::Cloudwatch => "a CloudWatch Logs record",
        }
    }

    fn check(self, found: Format) -> Result<(), AuditParseError> {
        if self.admits(found) {
            Ok(())
        } else {
            Err(AuditParseError::WrongFormat {
                found: found.describe(),
                format: self,
            })
        }
    }
}

/// Parses one record (a line, a webhook item, a message) of `format` into
/// `out`: one result per event it holds — one for most records, one per
/// `logEvents` entry of a CloudWatch payload (each its own success or
/// error), none for a CloudWatch control message.
pub fn parse_record(
    record: &str,
    format: Format,
    out: &mut Vec<Result<ApiActivity, AuditParseError>>,
) {
    if !record.trim_start().starts_with('{') {
        if let Some(export) = cloudwatch::export_line(record) {
            out.push(format.check(Format::Cloudwatch).and(export));
            return;
        }
    }
    let raw: RawEvent<'_> = match serde_json::from_str(record) {
        Ok(raw) => raw,
        Err(e) => return out.push(Err(e.into())),
    };
    let found = raw.format();
    if let Err(e) = format.check(found) {
        return out.push(Err(e));
    }
    match found {
        Format::Cloudwatch => cloudwatch::parse_payload(record, out),
        _ => out.push(parse_single(record, raw, found)),
    }
}

/// Parses one line (without its newline) holding one event, of any format
/// (a CloudWatch payload of other than one event is an error: read those
/// with [`parse_record`]).
pub fn parse_line(line: &str) -> Result<ApiActivity, AuditParseError> {
    let mut out = Vec::with_capacity(1);
    parse_record(line, Format::Auto, &mut out);
    match (out.pop(), out.is_empty()) {
        (Some(one), true) => one,
        _ => Err(AuditParseError::SeveralEvents),
    }
}

fn parse_single(
    line: &str,
    raw: RawEvent<'_>,
    found: Format,
) -> Result<ApiActivity, AuditParseError> {
    match found {
        Format::Gke => gke::parse(line),
        Format::Aks => match raw.properties {
            Some(props) => aks::parse(
                line,
                props,
                raw.category,
                raw.operation_name,
                raw.resource_id,
                raw.time,
            ),
            None => Err(AuditParseError::NotAnEvent(
                "AKS record without properties".to_owned(),
            )),
        },
        _ => {
            let text = Text {
                text: line.to_owned(),
                base: line,
                base_offset: 0,
            };
            from_raw(raw, text, line.len())
        }
    }
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    kind: Option<BStr<'a>>,
    #[serde(rename = "apiVersion", borrow)]
    api_version: Option<BStr<'a>>,
    #[serde(borrow)]
    level: Option<BStr<'a>>,
    #[serde(rename = "auditID", borrow)]
    audit_id: Option<BStr<'a>>,
    #[serde(borrow)]
    stage: Option<BStr<'a>>,
    #[serde(rename = "requestURI", borrow)]
    request_uri: Option<BStr<'a>>,
    #[serde(borrow)]
    verb: Option<BStr<'a>>,
    #[serde(borrow)]
    user: Option<RawUser<'a>>,
    #[serde(rename = "impersonatedUser", borrow)]
    impersonated_user: Option<RawUser<'a>>,
    #[serde(rename = "sourceIPs", borrow, default)]
    source_ips: Vec<BStr<'a>>,
    #[serde(rename = "userAgent", borrow)]
    user_agent: Option<BStr<'a>>,
    #[serde(rename = "objectRef", borrow)]
    object_ref: Option<RawObjectRef<'a>>,
    #[serde(rename = "responseStatus", borrow)]
    response_status: Option<RawStatus<'a>>,
    #[serde(rename = "requestObject", borrow)]
    request_object: Option<&'a RawValue>,
    #[serde(rename = "requestReceivedTimestamp", borrow)]
    request_received: Option<BStr<'a>>,
    #[serde(rename = "stageTimestamp", borrow)]
    stage_timestamp: Option<BStr<'a>>,
    /// v1beta1 only.
    #[serde(borrow)]
    timestamp: Option<BStr<'a>>,
    #[serde(borrow, default)]
    annotations: Option<Annotations<'a>>,
    // AKS diagnostic-record wrapper.
    #[serde(borrow)]
    properties: Option<AksProperties<'a>>,
    #[serde(borrow)]
    category: Option<BStr<'a>>,
    #[serde(rename = "operationName", borrow)]
    operation_name: Option<BStr<'a>>,
    #[serde(rename = "resourceId", borrow)]
    resource_id: Option<BStr<'a>>,
    #[serde(borrow)]
    time: Option<BStr<'a>>,
    // A GKE LogEntry, a CloudWatch payload: only seen, read elsewhere.
    #[serde(rename = "protoPayload", borrow)]
    proto_payload: Option<&'a RawValue>,
    #[serde(rename = "messageType", borrow)]
    message_type: Option<BStr<'a>>,
    #[serde(rename = "logEvents", borrow)]
    log_events: Option<&'a RawValue>,
}

impl RawEvent<'_> {
    /// Which format the document is, by its keys.
    fn format(&self) -> Format {
        if self.proto_payload.is_some() {
            Format::Gke
        } else if self.log_events.is_some() || self.message_type.is_some() {
            Format::Cloudwatch
        } else if self.audit_id.is_none() && self.properties.is_some() {
            Format::Aks
        } else {
            Format::Native
        }
    }
}

/// A string that borrows from the input when it has no escapes (serde only
/// borrows a `Cow<str>` that is a field of its own).
#[derive(Deserialize)]
struct BStr<'a>(#[serde(borrow)] Cow<'a, str>);

/// The annotations map, kept in document order.
struct Annotations<'a>(Vec<(BStr<'a>, BStr<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Annotations<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Annotations<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of string annotations")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(2));
                while let Some((k, v)) = m.next_entry::<BStr<'de>, BStr<'de>>()? {
                    out.push((k, v));
                }
                Ok(Annotations(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct RawUser<'a> {
    #[serde(borrow)]
    username: Option<BStr<'a>>,
    #[serde(borrow)]
    uid: Option<BStr<'a>>,
    #[serde(borrow, default)]
    groups: Vec<BStr<'a>>,
}

#[derive(Deserialize)]
struct RawObjectRef<'a> {
    #[serde(borrow)]
    resource: Option<BStr<'a>>,
    #[serde(borrow)]
    namespace: Option<BStr<'a>>,
    #[serde(borrow)]
    name: Option<BStr<'a>>,
    #[serde(borrow)]
    uid: Option<BStr<'a>>,
    #[serde(rename = "apiGroup", borrow)]
    api_group: Option<BStr<'a>>,
    #[serde(rename = "apiVersion", borrow)]
    api_version: Option<BStr<'a>>,
    #[serde(rename = "resourceVersion", borrow)]
    resource_version: Option<BStr<'a>>,
    #[serde(borrow)]
    subresource: Option<BStr<'a>>,
}

#[derive(Deserialize)]
struct RawStatus<'a> {
    code: Option<u16>,
    #[serde(borrow)]
    status: Option<BStr<'a>>,
    #[serde(borrow)]
    reason: Option<BStr<'a>>,
    #[serde(borrow)]
    message: Option<BStr<'a>>,
}

#[derive(Deserialize)]
struct AksProperties<'a> {
    #[serde(borrow)]
    log: Option<&'a RawValue>,
    #[serde(rename = "containerID", borrow)]
    container_id: Option<BStr<'a>>,
    #[serde(borrow)]
    pod: Option<BStr<'a>>,
}

#[derive(Deserialize)]
struct PodSpecOnly<'a> {
    #[serde(borrow)]
    spec: Option<PodSpec<'a>>,
}

#[derive(Deserialize)]
struct PodSpec<'a> {
    #[serde(borrow, default)]
    containers: Vec<ContainerImage<'a>>,
}

#[derive(Deserialize)]
struct ContainerImage<'a> {
    #[serde(borrow)]
    image: Option<BStr<'a>>,
}

/// Builds an event's text: the source line first, then strings that had to
/// be unescaped. Strings borrowed from the parsed document become ranges.
struct Text<'b> {
    text: String,
    /// The document serde parsed (the line, or AKS's unescaped inner event).
    base: &'b str,
    /// Where `base` starts in `text`.
    base_offset: usize,
}

impl Text<'_> {
    fn str(&mut self, c: Option<BStr<'_>>) -> Str {
        match c.map(|b| b.0) {
            None => Str::EMPTY,
            Some(c) if c.is_empty() => Str::EMPTY,
            Some(Cow::Borrowed(b)) => match offset_within(self.base, b) {
                Some(at) => Str::range(self.base_offset + at, self.base_offset + at + b.len()),
                None => push(&mut self.text, b),
            },
            Some(Cow::Owned(o)) => push(&mut self.text, &o),
        }
    }

    fn list(&mut self, v: Vec<BStr<'_>>) -> Vec<Str> {
        v.into_iter().map(|s| self.str(Some(s))).collect()
    }

    /// The images of the containers of a pod object (a request body).
    fn pod_images(&mut self, body: &RawValue) -> Vec<Str> {
        serde_json::from_str::<PodSpecOnly<'_>>(body.get())
            .ok()
            .and_then(|p| p.spec)
            .map(|s| {
                s.containers
                    .into_iter()
                    .map(|c| self.str(c.image))
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn annotations(&mut self, a: Option<Annotations<'_>>) -> Vec<(Str, Str)> {
        a.map(|a| a.0)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (self.str(Some(k)), self.str(Some(v))))
            .collect()
    }

    fn user(&mut self, u: RawUser<'_>) -> K8sUser {
        K8sUser {
            username: self.str(u.username),
            uid: self.str(u.uid),
            groups: self.list(u.groups),
        }
    }
}

/// The value of annotation `key`, empty when absent or empty.
fn annotation(annotations: &[(Str, Str)], key: &str, text: &str) -> Str {
    annotations
        .iter()
        .find(|(k, v)| k.get(text) == key && !v.is_empty())
        .map_or(Str::EMPTY, |(_, v)| *v)
}

/// Byte offset of `inner` inside `outer`, if it is a sub-slice of it.
fn offset_within(outer: &str, inner: &str) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start)
}

fn require(field: &str, s: Str) -> Result<Str, AuditParseError> {
    if s.is_empty() {
        Err(AuditParseError::NotAnEvent(format!("missing `{field}`")))
    } else {
        Ok(s)
    }
}

fn timestamp(field: &str, v: Option<BStr<'_>>) -> Result<Option<Timestamp>, AuditParseError> {
    match v.map(|b| b.0) {
        None => Ok(None),
        Some(s) => Timestamp::parse_rfc3339(&s).map(Some).ok_or_else(|| {
            AuditParseError::NotAnEvent(format!("`{field}` is not an RFC 3339 time: {s:?}"))
        }),
    }
}

fn from_raw(
    raw: RawEvent<'_>,
    mut t: Text<'_>,
    original_len: usize,
) -> Result<ApiActivity, AuditParseError> {
    if let Some(kind) = raw.kind.as_ref().map(|k| &*k.0) {
        if kind != "Event" {
            return Err(AuditParseError::NotAnEvent(format!(
                "`kind` is {kind:?}, not \"Event\""
            )));
        }
    }
    let audit_id = require("auditID", t.str(raw.audit_id))?;
    let stage = require("stage", t.str(raw.stage))?;
    let verb = require("verb", t.str(raw.verb))?;
    let user = raw
        .user
        .ok_or_else(|| AuditParseError::NotAnEvent("missing `user`".to_owned()))?;
    let user = t.user(user);
    let impersonated_user = raw.impersonated_user.map(|u| t.user(u));
    let object_ref = raw.object_ref.map(|o| ObjectRef {
        resource: t.str(o.resource),
        namespace: t.str(o.namespace),
        name: t.str(o.name),
        uid: t.str(o.uid),
        api_group: t.str(o.api_group),
        api_version: t.str(o.api_version),
        resource_version: t.str(o.resource_version),
        subresource: t.str(o.subresource),
    });
    let is_pod = object_ref
        .as_ref()
        .is_some_and(|o| o.subresource.is_empty() && o.resource.get(&t.text) == "pods");
    let container_images = match raw.request_object.filter(|_| is_pod) {
        Some(body) => t.pod_images(body),
        None => Vec::new(),
    };
    let annotations = t.annotations(raw.annotations);
    let authz_decision = annotation(&annotations, "authorization.k8s.io/decision", &t.text);
    let authz_reason = annotation(&annotations, "authorization.k8s.io/reason", &t.text);
    let request_received = timestamp("requestReceivedTimestamp", raw.request_received)?;
    let stage_time = match timestamp("stageTimestamp", raw.stage_timestamp)? {
        Some(ts) => Some(ts),
        None => timestamp("timestamp", raw.timestamp)?,
    };
    let response_status = match raw.response_status {
        Some(RawStatus {
            code: Some(code),
            status,
            reason,
            message,
        }) => Some(ResponseStatus {
            code,
            status: t.str(status),
            reason: t.str(reason),
            message: t.str(message),
        }),
        _ => None,
    };
    Ok(ApiActivity {
        audit_api_version: t.str(raw.api_version),
        audit_id,
        stage,
        level: t.str(raw.level),
        verb,
        request_uri: t.str(raw.request_uri),
        user,
        impersonated_user,
        source_ips: t.list(raw.source_ips),
        user_agent: t.str(raw.user_agent),
        object_ref,
        response_status,
        request_received,
        stage_time,
        authz_decision,
        authz_reason,
        annotations,
        container_images,
        wrapper: None,
        original_len: u32::try_from(original_len).unwrap_or(u32::MAX),
        original_literal: Default::default(),
        text: t.text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strings_are_ranges_into_the_line_and_escaped_ones_are_appended() {
        let line = r#"{"kind":"Event","auditID":"id-1","stage":"ResponseComplete","verb":"get","requestURI":"/api?x=\"y\"","user":{"username":"alice","groups":["a","b\u0041"]},"sourceIPs":["10.0.0.1"]}"#;
        let a = parse_line(line).unwrap();
        assert_eq!(a.original(), line);
        assert_eq!(a.s(a.verb), "get");
        assert_eq!(a.s(a.request_uri), "/api?x=\"y\"");
        let groups: Vec<&str> = a.user.groups.iter().map(|g| a.s(*g)).collect();
        assert_eq!(groups, ["a", "bA"]);
        // Only the two escaped strings were appended after the line.
        assert_eq!(a.text.len(), line.len() + "/api?x=\"y\"".len() + "bA".len());
        assert_eq!(a.opt(a.user.uid), None);
        let literal: String = serde_json::from_slice(a.original_literal()).unwrap();
        assert_eq!(literal, line);
    }
}
