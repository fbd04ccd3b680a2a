//! Parses Kubernetes API-server audit events (`audit.k8s.io/v1` `Event`, and
//! the older `v1beta1` shape) into [`ApiActivity`].
//!
//! Accepted input, one JSON document per line:
//! - a native `Event`, as the log backend or a webhook's `EventList.items` holds it;
//! - an Azure AKS diagnostic record whose `properties.log` carries the event,
//!   as a JSON string or an object.
//!
//! A document that is valid JSON but not an audit event (no `auditID`, no
//! `stage`, `verb` not a string, …) is an error, never a half-filled event.

use crate::event::{ApiActivity, K8sUser, ObjectRef, ResponseStatus, Wrapper};
use crate::time::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Why a line is not an audit event.
#[derive(Debug, thiserror::Error)]
pub enum AuditParseError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a Kubernetes audit event: {0}")]
    NotAnEvent(String),
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "apiVersion", borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    level: Option<Cow<'a, str>>,
    #[serde(rename = "auditID", borrow)]
    audit_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stage: Option<Cow<'a, str>>,
    #[serde(rename = "requestURI", borrow)]
    request_uri: Option<Cow<'a, str>>,
    #[serde(borrow)]
    verb: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<RawUser<'a>>,
    #[serde(rename = "impersonatedUser", borrow)]
    impersonated_user: Option<RawUser<'a>>,
    #[serde(rename = "sourceIPs", borrow, default)]
    source_ips: Vec<Cow<'a, str>>,
    #[serde(rename = "userAgent", borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(rename = "objectRef", borrow)]
    object_ref: Option<RawObjectRef<'a>>,
    #[serde(rename = "responseStatus", borrow)]
    response_status: Option<RawStatus<'a>>,
    #[serde(rename = "requestObject", borrow)]
    request_object: Option<&'a RawValue>,
    #[serde(rename = "requestReceivedTimestamp", borrow)]
    request_received: Option<Cow<'a, str>>,
    #[serde(rename = "stageTimestamp", borrow)]
    stage_timestamp: Option<Cow<'a, str>>,
    /// v1beta1 only.
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    annotations: Option<Annotations<'a>>,
    // AKS diagnostic-record wrapper.
    #[serde(borrow)]
    properties: Option<AksProperties<'a>>,
    #[serde(borrow)]
    category: Option<Cow<'a, str>>,
    #[serde(rename = "operationName", borrow)]
    operation_name: Option<Cow<'a, str>>,
    #[serde(rename = "resourceId", borrow)]
    resource_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
}

/// The annotations map, kept in document order.
struct Annotations<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

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
                while let Some((k, v)) = m.next_entry::<Cow<'de, str>, Cow<'de, str>>()? {
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
    username: Option<Cow<'a, str>>,
    #[serde(borrow)]
    uid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    groups: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawObjectRef<'a> {
    #[serde(borrow)]
    resource: Option<Cow<'a, str>>,
    #[serde(borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    uid: Option<Cow<'a, str>>,
    #[serde(rename = "apiGroup", borrow)]
    api_group: Option<Cow<'a, str>>,
    #[serde(rename = "apiVersion", borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(rename = "resourceVersion", borrow)]
    resource_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    subresource: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawStatus<'a> {
    code: Option<u16>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AksProperties<'a> {
    #[serde(borrow)]
    log: Option<&'a RawValue>,
    #[serde(rename = "containerID", borrow)]
    container_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pod: Option<Cow<'a, str>>,
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
    image: Option<Cow<'a, str>>,
}

fn owned(c: Option<Cow<'_, str>>) -> Option<String> {
    c.map(Cow::into_owned)
}

/// Non-empty string or `None` (the API server writes `""` for "not set").
fn nonempty(c: Option<Cow<'_, str>>) -> Option<String> {
    c.filter(|s| !s.is_empty()).map(Cow::into_owned)
}

impl From<RawUser<'_>> for K8sUser {
    fn from(u: RawUser<'_>) -> Self {
        K8sUser {
            username: owned(u.username).unwrap_or_default(),
            uid: nonempty(u.uid),
            groups: u.groups.into_iter().map(Cow::into_owned).collect(),
        }
    }
}

/// Parses one line (without its newline) into an [`ApiActivity`].
pub fn parse_line(line: &str) -> Result<ApiActivity, AuditParseError> {
    let raw: RawEvent<'_> = serde_json::from_str(line)?;
    if raw.audit_id.is_none() {
        if let Some(props) = raw.properties {
            return parse_aks(
                line,
                props,
                raw.category,
                raw.operation_name,
                raw.resource_id,
                raw.time,
            );
        }
    }
    from_raw(raw, line.to_owned())
}

fn parse_aks(
    line: &str,
    props: AksProperties<'_>,
    category: Option<Cow<'_, str>>,
    operation_name: Option<Cow<'_, str>>,
    resource_id: Option<Cow<'_, str>>,
    time: Option<Cow<'_, str>>,
) -> Result<ApiActivity, AuditParseError> {
    let log = props.log.ok_or_else(|| {
        AuditParseError::NotAnEvent("AKS record without properties.log".to_owned())
    })?;
    let inner: String = match log.get().as_bytes().first() {
        Some(b'"') => serde_json::from_str(log.get())?,
        Some(b'{') => log.get().to_owned(),
        _ => {
            return Err(AuditParseError::NotAnEvent(
                "AKS properties.log is neither a string nor an object".to_owned(),
            ))
        }
    };
    let raw: RawEvent<'_> = serde_json::from_str(&inner)?;
    let mut activity = from_raw(raw, line.to_owned())?;
    activity.wrapper = Some(Wrapper {
        provider: "aks",
        category: owned(category),
        operation_name: owned(operation_name),
        resource_id: owned(resource_id),
        pod: owned(props.pod),
        container_id: owned(props.container_id),
        time: owned(time),
    });
    Ok(activity)
}

fn required<'a>(field: &str, v: Option<Cow<'a, str>>) -> Result<Cow<'a, str>, AuditParseError> {
    match v {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(AuditParseError::NotAnEvent(format!("missing `{field}`"))),
    }
}

fn timestamp(field: &str, v: Option<Cow<'_, str>>) -> Result<Option<Timestamp>, AuditParseError> {
    match v {
        None => Ok(None),
        Some(s) => Timestamp::parse_rfc3339(&s).map(Some).ok_or_else(|| {
            AuditParseError::NotAnEvent(format!("`{field}` is not an RFC 3339 time: {s:?}"))
        }),
    }
}

fn from_raw(raw: RawEvent<'_>, original: String) -> Result<ApiActivity, AuditParseError> {
    if let Some(kind) = raw.kind.as_deref() {
        if kind != "Event" {
            return Err(AuditParseError::NotAnEvent(format!(
                "`kind` is {kind:?}, not \"Event\""
            )));
        }
    }
    let audit_id = required("auditID", raw.audit_id)?.into_owned();
    let stage = required("stage", raw.stage)?.into_owned();
    let verb = required("verb", raw.verb)?.into_owned();
    let user = raw
        .user
        .ok_or_else(|| AuditParseError::NotAnEvent("missing `user`".to_owned()))?;
    let object_ref = raw.object_ref.map(|o| ObjectRef {
        resource: nonempty(o.resource),
        namespace: nonempty(o.namespace),
        name: nonempty(o.name),
        uid: nonempty(o.uid),
        api_group: nonempty(o.api_group),
        api_version: nonempty(o.api_version),
        resource_version: nonempty(o.resource_version),
        subresource: nonempty(o.subresource),
    });
    let container_images = match (&object_ref, raw.request_object) {
        (
            Some(ObjectRef {
                resource: Some(r),
                subresource: None,
                ..
            }),
            Some(body),
        ) if r == "pods" => serde_json::from_str::<PodSpecOnly<'_>>(body.get())
            .ok()
            .and_then(|p| p.spec)
            .map(|s| {
                s.containers
                    .into_iter()
                    .filter_map(|c| owned(c.image))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let annotations: Vec<(String, String)> = raw
        .annotations
        .map(|a| a.0)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let annotation = |key: &str| {
        annotations
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let request_received = timestamp("requestReceivedTimestamp", raw.request_received)?;
    let stage_time = match timestamp("stageTimestamp", raw.stage_timestamp)? {
        Some(t) => Some(t),
        None => timestamp("timestamp", raw.timestamp)?,
    };
    Ok(ApiActivity {
        audit_api_version: owned(raw.api_version).unwrap_or_default(),
        audit_id,
        stage,
        level: owned(raw.level).unwrap_or_default(),
        verb,
        request_uri: owned(raw.request_uri).unwrap_or_default(),
        user: user.into(),
        impersonated_user: raw.impersonated_user.map(K8sUser::from),
        source_ips: raw.source_ips.into_iter().map(Cow::into_owned).collect(),
        user_agent: nonempty(raw.user_agent),
        object_ref,
        response_status: raw.response_status.and_then(|s| {
            s.code.map(|code| ResponseStatus {
                code,
                status: nonempty(s.status),
                reason: nonempty(s.reason),
                message: nonempty(s.message),
            })
        }),
        request_received,
        stage_time,
        authz_decision: annotation("authorization.k8s.io/decision"),
        authz_reason: annotation("authorization.k8s.io/reason"),
        annotations,
        container_images,
        wrapper: None,
        original,
    })
}
