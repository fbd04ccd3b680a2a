//! Events as an OTLP `ExportLogsServiceRequest`, following the OTel logs
//! data model: one `ResourceLogs` per resource (host, container, pod; with
//! `service.name = lumen`), scope `lumen`, and per event a `LogRecord` with
//! `time_unix_nano`, `observed_time_unix_nano`, severity number and text,
//! the body (the event in the chosen schema, a structured map by default)
//! and attributes naming the schema and the event kind.

use super::body;
use super::config::BodyEncoding;
use crate::batch::Batch;
use crate::deliver::Outcome;
use lumen_schemas::{ocsf, Event, EventKind, Schema, ECS_VERSION, OCSF_VERSION, PRODUCT_VERSION};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, Value::StringValue(value.to_owned()))
}

/// What tells one resource from another: host, container, pod uid, pod
/// name, namespace (empty when unknown).
type ResourceKey<'a> = [&'a str; 5];

fn resource_key(event: &Event) -> ResourceKey<'_> {
    let (pod_name, namespace) = match event.kind.process() {
        Some(p) => (
            p.attribution.pod_name.get(&p.text),
            p.attribution.namespace.get(&p.text),
        ),
        None => ("", ""),
    };
    [
        event.host.name.as_str(),
        event.kind.container_id(),
        event.kind.pod_uid(),
        pod_name,
        namespace,
    ]
}

/// Resource attributes with OTel's semantic conventions.
fn resource(key: &ResourceKey<'_>) -> Resource {
    let mut attributes = vec![
        text("service.name", "lumen"),
        text("service.version", PRODUCT_VERSION),
        text("host.name", key[0]),
    ];
    for (name, value) in [
        ("container.id", key[1]),
        ("k8s.pod.uid", key[2]),
        ("k8s.pod.name", key[3]),
        ("k8s.namespace.name", key[4]),
    ] {
        if !value.is_empty() {
            attributes.push(text(name, value));
        }
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

fn nanos(t: lumen_schemas::time::Timestamp) -> u64 {
    u64::try_from(t.0).unwrap_or(0)
}

/// The log record of one event whose document (in `schema`) is `doc`.
pub fn log_record(
    event: &Event,
    doc: &[u8],
    schema: Schema,
    encoding: BodyEncoding,
) -> Result<LogRecord, String> {
    let body = match encoding {
        BodyEncoding::Map => body::from_json(doc).map_err(|e| format!("internal: {e}"))?,
        BodyEncoding::String => AnyValue {
            value: Some(Value::StringValue(
                String::from_utf8_lossy(doc).into_owned(),
            )),
        },
    };
    // A sensor that lost records is itself a warning; everything else is
    // information, as in OCSF's severity.
    let (severity, severity_text) = match event.kind {
        EventKind::Loss(_) => (SeverityNumber::Warn, "WARN"),
        _ => (SeverityNumber::Info, "INFO"),
    };
    let mut attributes = vec![
        text("lumen.schema", schema.as_str()),
        text(
            "lumen.schema_version",
            match schema {
                Schema::Ocsf => OCSF_VERSION,
                Schema::Ecs => ECS_VERSION,
            },
        ),
        text("lumen.kind", event.kind.name()),
    ];
    if schema == Schema::Ocsf {
        attributes.push(kv(
            "ocsf.class_uid",
            Value::IntValue(ocsf::class_of(event).0 as i64),
        ));
    }
    Ok(LogRecord {
        time_unix_nano: nanos(event.time),
        observed_time_unix_nano: nanos(event.observed),
        severity_number: severity as i32,
        severity_text: severity_text.to_owned(),
        body: Some(body),
        attributes,
        ..Default::default()
    })
}

/// The request for the events `pending` of `batch`, and for each of them
/// an outcome already decided (an event that cannot be turned into a log
/// record is rejected; the others wait for the receiver's answer).
pub fn export_request(
    batch: &Batch,
    pending: &[usize],
    schema: Schema,
    encoding: BodyEncoding,
) -> (ExportLogsServiceRequest, Vec<Option<Outcome>>) {
    let mut groups: Vec<(ResourceKey<'_>, Vec<LogRecord>)> = Vec::new();
    let mut decided = Vec::with_capacity(pending.len());
    for &i in pending {
        let event = &batch.items[i].env.event;
        match log_record(event, batch.doc(i), schema, encoding) {
            Ok(record) => {
                let key = resource_key(event);
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, records)) => records.push(record),
                    None => groups.push((key, vec![record])),
                }
                decided.push(None);
            }
            Err(reason) => decided.push(Some(Outcome::Reject { reason })),
        }
    }
    let scope = InstrumentationScope {
        name: "lumen".to_owned(),
        version: PRODUCT_VERSION.to_owned(),
        ..Default::default()
    };
    let resource_logs = groups
        .into_iter()
        .map(|(key, log_records)| ResourceLogs {
            resource: Some(resource(&key)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope.clone()),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    (ExportLogsServiceRequest { resource_logs }, decided)
}
