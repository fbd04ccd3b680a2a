//! GKE's audit events: Google Cloud Audit Logs `LogEntry` records whose
//! `protoPayload` is an `AuditLog` (what Cloud Logging stores, and what a
//! Pub/Sub or GCS export writes, one JSON entry per line).
//!
//! The entry becomes the same [`ApiActivity`] as a native event:
//! `methodName` (`io.k8s.core.v1.pods.exec.create`) gives the verb (its last
//! part), `resourceName` (`core/v1/namespaces/shop/pods/api-1/exec`) the
//! object reference (group `core` is the core group, `""`), `principalEmail`
//! the user, `requestMetadata` the caller's address and user agent,
//! `status` (a `google.rpc.Status`) the response status as the HTTP code the
//! API server answered with, `labels` the audit annotations (GKE moves them
//! there), `request` the object (a pod's images). The entry itself stays the
//! event's original; its cloud context (project, location, cluster, log,
//! insert id, method) is the [`Wrapper`].

use super::{annotation, require, timestamp, Annotations, AuditParseError, BStr, Text};
use crate::event::Wrapper;
use crate::event::{push, ApiActivity, Authorization, K8sUser, ObjectRef, ResponseStatus, Str};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(rename = "insertId", borrow)]
    insert_id: Option<BStr<'a>>,
    #[serde(rename = "logName", borrow)]
    log_name: Option<BStr<'a>>,
    #[serde(borrow)]
    operation: Option<Operation<'a>>,
    #[serde(rename = "protoPayload", borrow)]
    proto: Option<AuditLog<'a>>,
    #[serde(borrow)]
    resource: Option<MonitoredResource<'a>>,
    #[serde(borrow)]
    timestamp: Option<BStr<'a>>,
    #[serde(rename = "receiveTimestamp", borrow)]
    receive_timestamp: Option<BStr<'a>>,
    #[serde(borrow, default)]
    labels: Option<Annotations<'a>>,
}

#[derive(Deserialize)]
struct Operation<'a> {
    #[serde(borrow)]
    id: Option<BStr<'a>>,
}

#[derive(Deserialize)]
struct MonitoredResource<'a> {
    #[serde(borrow)]
    labels: Option<ResourceLabels<'a>>,
}

#[derive(Deserialize)]
struct ResourceLabels<'a> {
    #[serde(borrow)]
    cluster_name: Option<BStr<'a>>,
    #[serde(borrow)]
    location: Option<BStr<'a>>,
    #[serde(borrow)]
    project_id: Option<BStr<'a>>,
}

#[derive(Deserialize)]
struct AuditLog<'a> {
    #[serde(rename = "methodName", borrow)]
    method_name: Option<BStr<'a>>,
    #[serde(rename = "resourceName", borrow)]
    resource_name: Option<BStr<'a>>,
    #[serde(rename = "serviceName", borrow)]
    service_name: Option<BStr<'a>>,
    #[serde(rename = "authenticationInfo", borrow)]
    authentication: Option<AuthenticationInfo<'a>>,
    #[serde(rename = "authorizationInfo", borrow, default)]
    authorization: Vec<AuthorizationInfo<'a>>,
    #[serde(rename = "requestMetadata", borrow)]
    request_metadata: Option<RequestMetadata<'a>>,
    #[serde(borrow)]
    status: Option<RpcStatus<'a>>,
    #[serde(borrow)]
    request: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AuthenticationInfo<'a> {
    #[serde(rename = "principalEmail", borrow)]
    principal_email: Option<BStr<'a>>,
}

#[derive(Deserialize)]
struct AuthorizationInfo<'a> {
    #[serde(borrow)]
    permission: Option<BStr<'a>>,
    #[serde(borrow)]
    resource: Option<BStr<'a>>,
    granted: Option<bool>,
}

#[derive(Deserialize)]
struct RequestMetadata<'a> {
    #[serde(rename = "callerIp", borrow)]
    caller_ip: Option<BStr<'a>>,
    #[serde(rename = "callerSuppliedUserAgent", borrow)]
    user_agent: Option<BStr<'a>>,
}

#[derive(Deserialize)]
struct RpcStatus<'a> {
    code: Option<i32>,
    #[serde(borrow)]
    message: Option<BStr<'a>>,
}

/// Parses a GKE `LogEntry` line.
pub(super) fn parse(line: &str) -> Result<ApiActivity, AuditParseError> {
    let entry: Entry<'_> = serde_json::from_str(line)?;
    let proto = entry
        .proto
        .ok_or_else(|| AuditParseError::NotAnEvent("missing `protoPayload`".to_owned()))?;
    let mut t = Text {
        text: line.to_owned(),
        base: line,
        base_offset: 0,
    };
    let method = require("protoPayload.methodName", t.str(proto.method_name))?;
    if !method.get(&t.text).starts_with("io.k8s.") {
        return Err(AuditParseError::NotAnEvent(format!(
            "`protoPayload.methodName` {:?} is not a Kubernetes API method (io.k8s.…)",
            method.get(&t.text)
        )));
    }
    // Elastic's GCP mapping makes `insertId` the event id; for GKE it is the
    // API server's audit id (as is `operation.id`).
    let audit_id = match t.str(entry.insert_id) {
        s if !s.is_empty() => s,
        _ => t.str(entry.operation.and_then(|o| o.id)),
    };
    let audit_id = require("insertId", audit_id)?;
    let verb = verb_of(&t.text, method);
    let resource_name = t.str(proto.resource_name);
    let object_ref = object_ref(resource_name, &t.text);
    let request_uri = match (&object_ref, resource_name.is_empty()) {
        // A non-resource request (`/readyz`, `/api/v1`): its path.
        (None, false) => {
            let path = format!("/{}", resource_name.get(&t.text));
            push(&mut t.text, &path)
        }
        _ => Str::EMPTY,
    };
    let user = K8sUser {
        username: t.str(proto.authentication.and_then(|a| a.principal_email)),
        ..K8sUser::default()
    };
    let (caller_ip, user_agent) = match proto.request_metadata {
        Some(m) => (t.str(m.caller_ip), t.str(m.user_agent)),
        None => (Str::EMPTY, Str::EMPTY),
    };
    let rpc_code = proto.status.as_ref().map(|s| s.code.unwrap_or(0));
    let response_status = match proto.status {
        Some(status) => {
            let code = status.code.unwrap_or(0);
            let (http, name) = http_status(code);
            Some(ResponseStatus {
                code: http,
                status: push(&mut t.text, if code == 0 { "Success" } else { "Failure" }),
                reason: if code == 0 {
                    Str::EMPTY
                } else {
                    push(&mut t.text, name)
                },
                message: t.str(status.message),
            })
        }
        None => None,
    };
    let authorizations: Vec<Authorization> = proto
        .authorization
        .into_iter()
        .map(|a| Authorization {
            permission: t.str(a.permission),
            resource: t.str(a.resource),
            granted: a.granted,
        })
        .collect();
    let annotations = t.annotations(entry.labels);
    let mut authz_decision = annotation(&annotations, "authorization.k8s.io/decision", &t.text);
    if authz_decision.is_empty() {
        authz_decision = match authorizations.first().and_then(|a| a.granted) {
            Some(true) => push(&mut t.text, "allow"),
            Some(false) => push(&mut t.text, "forbid"),
            None => Str::EMPTY,
        };
    }
    let authz_reason = annotation(&annotations, "authorization.k8s.io/reason", &t.text);
    let is_pod = object_ref
        .as_ref()
        .is_some_and(|o| o.subresource.is_empty() && o.resource.get(&t.text) == "pods");
    let container_images = match proto.request.filter(|_| is_pod) {
        Some(body) => t.pod_images(body),
        None => Vec::new(),
    };
    let stage_time = timestamp("timestamp", entry.timestamp)?;
    let request_received = match stage_time {
        Some(_) => None,
        None => timestamp("receiveTimestamp", entry.receive_timestamp)?,
    };
    let (cluster, location, account) = match entry.resource.and_then(|r| r.labels) {
        Some(l) => (
            t.str(l.cluster_name),
            t.str(l.location),
            t.str(l.project_id),
        ),
        None => (Str::EMPTY, Str::EMPTY, Str::EMPTY),
    };
    let wrapper = Wrapper {
        provider: "gke".into(),
        cluster,
        account,
        location,
        log_name: t.str(entry.log_name),
        record_id: audit_id,
        method,
        resource_name,
        service: t.str(proto.service_name),
        rpc_code,
        authorizations,
        ..Wrapper::default()
    };
    let stage = push(&mut t.text, "ResponseComplete");
    Ok(ApiActivity {
        audit_api_version: Str::EMPTY,
        audit_id,
        stage,
        level: Str::EMPTY,
        verb,
        request_uri,
        user,
        impersonated_user: None,
        source_ips: if caller_ip.is_empty() {
            Vec::new()
        } else {
            vec![caller_ip]
        },
        user_agent,
        object_ref,
        response_status,
        request_received,
        stage_time,
        authz_decision,
        authz_reason,
        annotations,
        container_images,
        wrapper: Some(wrapper),
        original_len: u32::try_from(line.len()).unwrap_or(u32::MAX),
        original_literal: Default::default(),
        text: t.text,
    })
}

/// The verb: the last part of `methodName` (`io.k8s.core.v1.pods.create`
/// → `create`, `io.k8s.get` → `get`).
fn verb_of(text: &str, method: Str) -> Str {
    let (start, end) = method.bounds();
    let m = method.get(text);
    match m.rfind('.') {
        Some(dot) => Str::range(start + dot + 1, end),
        None => Str::range(start, end),
    }
}

/// The object reference a `resourceName` names:
/// `<group>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]`
/// (`core/v1/namespaces/default/pods/web`, `core/v1/nodes`,
/// `rbac.authorization.k8s.io/v1/clusterroles/admin`, `core/v1/namespaces/kube-system`).
/// `None` for a non-resource path (`readyz`, `api/v1`).
fn object_ref(resource_name: Str, text: &str) -> Option<ObjectRef> {
    let name = resource_name.get(text);
    let (base, _) = resource_name.bounds();
    // Each part with its range in `text`.
    let mut parts = Vec::with_capacity(8);
    let mut at = base;
    for part in name.split('/') {
        parts.push((part, Str::range(at, at + part.len())));
        at += part.len() + 1;
    }
    if parts.len() < 3 || parts.iter().any(|(p, _)| p.is_empty()) {
        return None;
    }
    let version = parts[1].0;
    if !is_version(version) {
        return None;
    }
    let mut rest = &parts[2..];
    let mut namespace = Str::EMPTY;
    // `namespaces/<ns>/<resource>…`; `namespaces/<ns>` alone is the namespace
    // object itself.
    if rest.len() >= 3 && rest[0].0 == "namespaces" {
        namespace = rest[1].1;
        rest = &rest[2..];
    }
    let pick = |i: usize| rest.get(i).map_or(Str::EMPTY, |(_, s)| *s);
    if rest.len() > 3 {
        return None;
    }
    Some(ObjectRef {
        resource: pick(0),
        namespace,
        name: pick(1),
        subresource: pick(2),
        api_group: if parts[0].0 == "core" {
            Str::EMPTY
        } else {
            parts[0].1
        },
        api_version: parts[1].1,
        ..ObjectRef::default()
    })
}

/// `v1`, `v1beta1`, `v2alpha3`.
fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail.is_empty()
        || ["alpha", "beta"].iter().any(|stage| {
            tail.strip_prefix(stage)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The HTTP status the API server answered with for a `google.rpc.Code`
/// (the mapping `google/rpc/code.proto` documents), and the code's name.
fn http_status(code: i32) -> (u16, &'static str) {
    match code {
        0 => (200, "OK"),
        1 => (499, "CANCELLED"),
        3 => (400, "INVALID_ARGUMENT"),
        4 => (504, "DEADLINE_EXCEEDED"),
        5 => (404, "NOT_FOUND"),
        6 => (409, "ALREADY_EXISTS"),
        7 => (403, "PERMISSION_DENIED"),
        8 => (429, "RESOURCE_EXHAUSTED"),
        9 => (400, "FAILED_PRECONDITION"),
        10 => (409, "ABORTED"),
        11 => (400, "OUT_OF_RANGE"),
        12 => (501, "UNIMPLEMENTED"),
        14 => (503, "UNAVAILABLE"),
        15 => (500, "DATA_LOSS"),
        16 => (401, "UNAUTHENTICATED"),
        13 => (500, "INTERNAL"),
        _ => (500, "UNKNOWN"),
    }
}

#[cfg(test)]
mod tests {
    use crate::k8s_audit::{parse_line, parse_record, Format};

    /// A pod created with `kubectl run`, as GKE logs it (the `LogEntry`
    /// fields Cloud Logging documents; the request trimmed to the spec).
    const CREATE: &str = r#"{"insertId":"3f1c9e0a-1b2c-4d5e-8f90-aabbccddeeff","logName":"projects/shop-prod/logs/cloudaudit.googleapis.com%2Factivity","operation":{"first":true,"id":"3f1c9e0a-1b2c-4d5e-8f90-aabbccddeeff","last":true,"producer":"k8s.io"},"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"alice@example.com"},"authorizationInfo":[{"granted":true,"permission":"io.k8s.core.v1.pods.create","resource":"core/v1/namespaces/shop/pods/web"}],"methodName":"io.k8s.core.v1.pods.create","request":{"@type":"core.k8s.io/v1.Pod","apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"shop"},"spec":{"containers":[{"image":"nginx:1.27","name":"web"},{"image":"busybox:1.36","name":"side"}]}},"requestMetadata":{"callerIp":"203.0.113.7","callerSuppliedUserAgent":"kubectl/v1.30.1 (linux/amd64) kubernetes/abc"},"resourceName":"core/v1/namespaces/shop/pods/web","serviceName":"k8s.io","status":{}},"receiveTimestamp":"2026-10-01T10:00:01.2Z","resource":{"labels":{"cluster_name":"prod-1","location":"europe-west1","project_id":"shop-prod"},"type":"k8s_cluster"},"timestamp":"2026-10-01T10:00:00.5Z"}"#;

    #[test]
    fn a_pod_create_maps_like_the_native_event() {
        let a = parse_line(CREATE).unwrap();
        assert_eq!(a.original(), CREATE);
        assert_eq!(a.s(a.verb), "create");
        assert_eq!(a.s(a.stage), "ResponseComplete");
        assert_eq!(a.s(a.audit_id), "3f1c9e0a-1b2c-4d5e-8f90-aabbccddeeff");
        assert_eq!(a.s(a.user.username), "alice@example.com");
        let o = a.object_ref.as_ref().unwrap();
        assert_eq!(
            (
                a.s(o.resource),
                a.s(o.namespace),
                a.s(o.name),
                a.s(o.api_group),
                a.s(o.api_version)
            ),
            ("pods", "shop", "web", "", "v1")
        );
        let images: Vec<&str> = a.strs(&a.container_images).collect();
        assert_eq!(images, ["nginx:1.27", "busybox:1.36"]);
        assert_eq!(a.response_status.as_ref().unwrap().code, 200);
        assert_eq!(a.failed(), Some(false));
        assert_eq!(a.s(a.authz_decision), "allow");
        let ips: Vec<&str> = a.strs(&a.source_ips).collect();
        assert_eq!(ips, ["203.0.113.7"]);
        let w = a.wrapper.as_ref().unwrap();
        assert_eq!(w.cloud_provider(), "gcp");
        assert_eq!(
            (a.s(w.cluster), a.s(w.location), a.s(w.account)),
            ("prod-1", "europe-west1", "shop-prod")
        );
        assert_eq!(a.s(w.method), "io.k8s.core.v1.pods.create");
        assert_eq!(
            &*a.stage_time.unwrap().rfc3339(),
            "2026-10-01T10:00:00.500000Z"
        );
    }

    #[test]
    fn exec_denied_and_non_resource_requests() {
        let exec = CREATE
            .replace(
                "io.k8s.core.v1.pods.create",
                "io.k8s.core.v1.pods.exec.create",
            )
            .replace(
                "core/v1/namespaces/shop/pods/web",
                "core/v1/namespaces/shop/pods/web/exec",
            )
            .replace(
                r#""status":{}"#,
                r#""status":{"code":7,"message":"pods \"web\" is forbidden"}"#,
            )
            .replace(r#""granted":true"#, r#""granted":false"#);
        let a = parse_line(&exec).unwrap();
        let o = a.object_ref.as_ref().unwrap();
        assert_eq!(
            (a.s(a.verb), a.s(o.subresource), a.s(o.name)),
            ("create", "exec", "web")
        );
        // Exec carries a pod path but no pod body: no images.
        assert!(a.container_images.is_empty());
        let st = a.response_status.as_ref().unwrap();
        assert_eq!((st.code, a.s(st.reason)), (403, "PERMISSION_DENIED"));
        assert_eq!(a.s(st.message), r#"pods "web" is forbidden"#);
        assert_eq!(a.s(a.authz_decision), "forbid");
        assert_eq!(a.wrapper.as_ref().unwrap().rpc_code, Some(7));

        for (name, resource, ns, obj) in [
            ("core/v1/nodes", "nodes", "", ""),
            (
                "core/v1/namespaces/kube-system",
                "namespaces",
                "",
                "kube-system",
            ),
            (
                "extensions/v1beta1/namespaces/cos/ingresses",
                "ingresses",
                "cos",
                "",
            ),
            (
                "rbac.authorization.k8s.io/v1/clusterroles/admin",
                "clusterroles",
                "",
                "admin",
            ),
        ] {
            let line = CREATE.replace("core/v1/namespaces/shop/pods/web", name);
            let a = parse_line(&line).unwrap();
            let o = a.object_ref.as_ref().unwrap();
            assert_eq!(
                (a.s(o.resource), a.s(o.namespace), a.s(o.name)),
                (resource, ns, obj),
                "{name}"
            );
        }
        let probe = CREATE
            .replace("io.k8s.core.v1.pods.create", "io.k8s.get")
            .replace("core/v1/namespaces/shop/pods/web", "readyz");
        let a = parse_line(&probe).unwrap();
        assert!(a.object_ref.is_none());
        assert_eq!((a.s(a.verb), a.s(a.request_uri)), ("get", "/readyz"));
    }

    #[test]
    fn other_google_services_and_pinned_formats_are_named() {
        let compute = CREATE.replace("io.k8s.core.v1.pods.create", "v1.compute.instances.insert");
        let err = parse_line(&compute).unwrap_err().to_string();
        assert!(err.contains("not a Kubernetes API method"), "{err}");
        let mut out = Vec::new();
        parse_record(CREATE, Format::Native, &mut out);
        let err = out.pop().unwrap().unwrap_err().to_string();
        assert_eq!(
            err,
            "a GKE Cloud Audit Logs entry, but this source reads `format = \"native\"`"
        );
        parse_record(CREATE, Format::Gke, &mut out);
        assert!(out.pop().unwrap().is_ok());
    }
}
