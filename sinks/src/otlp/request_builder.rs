//! Events as an encoded OTLP `ExportLogsServiceRequest` (written with
//! [`super::wire`]), following the OTel logs data model: one `ResourceLogs` per resource (host, container, pod; with
//! `service.name = lumen`), scope `lumen`, and per event a `LogRecord` with
//! `time_unix_nano`, `observed_time_unix_nano`, severity number and text,
//! the body (the event in the chosen schema, a structured map by default)
//! and attributes naming the schema and the event kind.

use super::config::BodyEncoding;
use super::wire;
use crate::batch::Batch;
use crate::deliver::Outcome;
use lumen_schemas::{ocsf, Event, EventKind, Schema, ECS_VERSION, OCSF_VERSION, PRODUCT_VERSION};
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;

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

fn nanos(t: lumen_schemas::time::Timestamp) -> u64 {
    u64::try_from(t.0).unwrap_or(0)
}

/// Appends the `LogRecord` of one event (document `doc` in `schema`) as a
/// `log_records` field (2) of a `ScopeLogs`.
pub fn log_record(
    event: &Event,
    doc: &[u8],
    schema: Schema,
    encoding: BodyEncoding,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let start = out.len();
    let record = wire::open(out, 2);
    wire::fixed64_field(out, 1, nanos(event.time));
    // A sensor that lost records is itself a warning; everything else is
    // information, as in OCSF's severity.
    let (severity, severity_text) = match &event.kind {
        EventKind::Loss(_) => (SeverityNumber::Warn, "WARN"),
        EventKind::Finding(f) => {
            use lumen_schemas::event::Severity as S;
            match f.rule.severity {
                S::Informational | S::Low => (SeverityNumber::Info, "INFO"),
                S::Medium => (SeverityNumber::Warn, "WARN"),
                S::High => (SeverityNumber::Error, "ERROR"),
                S::Critical => (SeverityNumber::Fatal, "FATAL"),
            }
        }
        _ => (SeverityNumber::Info, "INFO"),
    };
    wire::varint_field(out, 2, severity as u64);
    wire::bytes_field(out, 3, severity_text.as_bytes());
    let body = wire::open(out, 5);
    match encoding {
        BodyEncoding::Map => {
            if let Err(e) = wire::any_value(doc, out) {
                out.truncate(start);
                return Err(format!("internal: the event document is not JSON: {e}"));
            }
        }
        BodyEncoding::String => wire::bytes_field(out, 1, doc),
    }
    wire::close(out, body);
    wire::string_attribute(out, 6, "lumen.schema", schema.as_str());
    wire::string_attribute(
        out,
        6,
        "lumen.schema_version",
        match schema {
            Schema::Ocsf => OCSF_VERSION,
            Schema::Ecs => ECS_VERSION,
        },
    );
    wire::string_attribute(out, 6, "lumen.kind", event.kind.name());
    if schema == Schema::Ocsf {
        wire::int_attribute(out, 6, "ocsf.class_uid", ocsf::class_of(event).0 as i64);
    }
    wire::fixed64_field(out, 11, nanos(event.observed));
    wire::close(out, record);
    Ok(())
}

/// Resource attributes with OTel's semantic conventions, as the
/// `resource` field (1) of a `ResourceLogs`.
fn resource(key: &ResourceKey<'_>, out: &mut Vec<u8>) {
    let r = wire::open(out, 1);
    wire::string_attribute(out, 1, "service.name", "lumen");
    wire::string_attribute(out, 1, "service.version", PRODUCT_VERSION);
    wire::string_attribute(out, 1, "host.name", key[0]);
    for (name, value) in [
        ("container.id", key[1]),
        ("k8s.pod.uid", key[2]),
        ("k8s.pod.name", key[3]),
        ("k8s.namespace.name", key[4]),
    ] {
        if !value.is_empty() {
            wire::string_attribute(out, 1, name, value);
        }
    }
    wire::close(out, r);
}

/// The event of item `i` (OTLP batches keep their events); a rejection
/// when the batch let go of it.
pub(super) fn event_of(batch: &Batch, i: usize) -> Result<&Event, Outcome> {
    batch.items[i]
        .event
        .as_deref()
        .ok_or_else(|| Outcome::Reject {
            reason: "internal: the batch let go of the event".into(),
        })
}

/// The encoded `ExportLogsServiceRequest` for the events `pending` of
/// `batch`, and for each of them an outcome already decided (an event that
/// cannot be turned into a log record is rejected; the others wait for the
/// receiver's answer).
pub fn export_request(
    batch: &Batch,
    pending: &[usize],
    schema: Schema,
    encoding: BodyEncoding,
) -> (Vec<u8>, Vec<Option<Outcome>>) {
    // Per resource: its log_records fields, back to back.
    let mut groups: Vec<(ResourceKey<'_>, Vec<u8>)> = Vec::new();
    let mut decided = Vec::with_capacity(pending.len());
    for &i in pending {
        let event = match event_of(batch, i) {
            Ok(event) => event,
            Err(rejected) => {
                decided.push(Some(rejected));
                continue;
            }
        };
        let key = resource_key(event);
        let at = match groups.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                groups.push((key, Vec::with_capacity(16 * 1024)));
                groups.len() - 1
            }
        };
        match log_record(event, batch.doc(i), schema, encoding, &mut groups[at].1) {
            Ok(()) => decided.push(None),
            Err(reason) => decided.push(Some(Outcome::Reject { reason })),
        }
    }
    let size: usize = groups.iter().map(|(_, g)| g.len() + 256).sum();
    let mut out = Vec::with_capacity(size);
    for (key, records) in &groups {
        let resource_logs = wire::open(&mut out, 1);
        resource(key, &mut out);
        let scope_logs = wire::open(&mut out, 2);
        let scope = wire::open(&mut out, 1);
        wire::bytes_field(&mut out, 1, b"lumen");
        wire::bytes_field(&mut out, 2, PRODUCT_VERSION.as_bytes());
        wire::close(&mut out, scope);
        out.extend_from_slice(records);
        wire::close(&mut out, scope_logs);
        wire::close(&mut out, resource_logs);
    }
    (out, decided)
}
