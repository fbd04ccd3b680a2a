//! Resource samples as an OTLP `ExportMetricsServiceRequest` (the official
//! protobuf types, encoded with prost), for an `otlp` sink with
//! `signal = "metrics"`. One `ResourceMetrics` per host (`service.name =
//! lumen`, `host.name`), scope `lumen`, and per sample a data point of each
//! metric it has, attributed to its container and pod. Names follow the
//! OTel semantic conventions where they have one — `container.*` for a
//! container, `k8s.pod.*` for a pod, `system.*` for the host: `cpu.time`
//! (a delta sum, seconds), `memory.usage` (a gauge, bytes), `disk.io` (a
//! delta sum, bytes, by `disk.io.direction`) — and `lumen.*` for the rest
//! (throttling, OOM kills, tasks, PID-limit hits, PSI stall time).
//! Samples are deltas over their interval: sums say so
//! (`AGGREGATION_TEMPORALITY_DELTA`, start = end − interval).

use crate::batch::Batch;
use crate::deliver::Outcome;
use lumen_schemas::event::{ResourceSample, ResourceScope, ResourceUse};
use lumen_schemas::{Event, EventKind, PRODUCT_VERSION};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::collections::BTreeMap;

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// A metric being built: (is a sum, unit, description, points).
type Building = (bool, &'static str, &'static str, Vec<NumberDataPoint>);

/// The encoded request for the events `pending` of `batch`, and per event
/// an outcome already decided: an event that is not a resource sample is
/// rejected (route only `resource_sample` events to a metrics sink).
pub fn metrics_request(batch: &Batch, pending: &[usize]) -> (Vec<u8>, Vec<Option<Outcome>>) {
    let mut by_host: BTreeMap<&str, BTreeMap<String, Building>> = BTreeMap::new();
    let mut decided = Vec::with_capacity(pending.len());
    for &i in pending {
        let event = match super::request_builder::event_of(batch, i) {
            Ok(event) => event,
            Err(rejected) => {
                decided.push(Some(rejected));
                continue;
            }
        };
        let EventKind::Resource(r) = &event.kind else {
            decided.push(Some(Outcome::Reject {
                reason: format!(
                    "an otlp metrics sink takes resource_sample events only, not {}",
                    event.kind.name()
                ),
            }));
            continue;
        };
        points(
            event,
            r,
            by_host.entry(event.host.name.as_str()).or_default(),
        );
        decided.push(None);
    }
    let resource_metrics = by_host
        .into_iter()
        .map(|(host, metrics)| ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    attr("service.name", "lumen"),
                    attr("service.version", PRODUCT_VERSION),
                    attr("host.name", host),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "lumen".into(),
                    version: PRODUCT_VERSION.into(),
                    ..Default::default()
                }),
                metrics: metrics
                    .into_iter()
                    .map(|(name, (sum, unit, description, data_points))| Metric {
                        name,
                        description: description.into(),
                        unit: unit.into(),
                        data: Some(if sum {
                            metric::Data::Sum(Sum {
                                data_points,
                                aggregation_temporality: AggregationTemporality::Delta as i32,
                                is_monotonic: true,
                            })
                        } else {
                            metric::Data::Gauge(Gauge { data_points })
                        }),
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    let request = ExportMetricsServiceRequest { resource_metrics };
    (request.encode_to_vec(), decided)
}

/// Adds `r`'s data points to `metrics`.
fn points(event: &Event, r: &ResourceSample, metrics: &mut BTreeMap<String, Building>) {
    let end = u64::try_from(event.time.0).unwrap_or(0);
    let start = end.saturating_sub(r.interval_ns);
    let at = &r.attribution;
    let mut attributes = vec![attr("lumen.cgroup", r.s(r.cgroup))];
    for (key, value) in [
        ("container.id", at.container_id),
        ("k8s.pod.uid", at.pod_uid),
        ("k8s.pod.name", at.pod_name),
        ("k8s.namespace.name", at.namespace),
        ("k8s.container.name", at.container_name),
    ] {
        if !value.is_empty() {
            attributes.push(attr(key, r.s(value)));
        }
    }
    let prefix = match r.scope {
        Some(ResourceScope::Container) => "container",
        Some(ResourceScope::Pod) => "k8s.pod",
        Some(ResourceScope::Host) | None => "system",
    };
    let mut add = |name: String, sum: bool, unit, description, value: f64, extra: &[KeyValue]| {
        let mut attributes = attributes.clone();
        attributes.extend_from_slice(extra);
        metrics
            .entry(name)
            .or_insert_with(|| (sum, unit, description, Vec::new()))
            .3
            .push(NumberDataPoint {
                attributes,
                start_time_unix_nano: if sum { start } else { 0 },
                time_unix_nano: end,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            });
    };
    let u: &ResourceUse = &r.usage;
    let secs = |ns: u64| ns as f64 / 1e9;
    if let Some(ns) = u.cpu_usage_ns {
        add(
            format!("{prefix}.cpu.time"),
            true,
            "s",
            "CPU time used",
            secs(ns),
            &[],
        );
    }
    if let Some(bytes) = u.memory_usage {
        add(
            format!("{prefix}.memory.usage"),
            false,
            "By",
            "Memory charged",
            bytes as f64,
            &[],
        );
    }
    for (direction, bytes) in [("read", u.io_read_bytes), ("write", u.io_write_bytes)] {
        if let Some(bytes) = bytes {
            let dir = [attr("disk.io.direction", direction)];
            add(
                format!("{prefix}.disk.io"),
                true,
                "By",
                "Block I/O",
                bytes as f64,
                &dir,
            );
        }
    }
    let sched = r.sched.as_ref();
    let counts: [(&str, bool, &str, &str, Option<f64>); 9] = [
        (
            "lumen.cpu.throttled_periods",
            true,
            "{period}",
            "CFS periods the CPU quota stopped it in",
            u.cpu_throttled_periods.map(|n| n as f64),
        ),
        (
            "lumen.cpu.throttled_time",
            true,
            "s",
            "Time the CPU quota stopped it",
            u.cpu_throttled_ns.map(secs),
        ),
        (
            "lumen.memory.oom_kills",
            true,
            "{process}",
            "Processes OOM-killed at its memory limit",
            u.memory_oom_kills.map(|n| n as f64),
        ),
        (
            "lumen.pids",
            false,
            "{task}",
            "Tasks",
            u.pids_current.map(|n| n as f64),
        ),
        (
            "lumen.pids.limit_hits",
            true,
            "{fork}",
            "Forks refused at its PID limit",
            u.pids_max_events.map(|n| n as f64),
        ),
        (
            "lumen.memory.limit",
            false,
            "By",
            "Memory limit",
            u.memory_limit.map(|n| n as f64),
        ),
        (
            "lumen.cpu.runqueue.waits",
            true,
            "{wait}",
            "Times its tasks got a CPU after waiting runnable",
            sched.map(|s| s.waits as f64),
        ),
        (
            "lumen.cpu.runqueue.wait_time",
            true,
            "s",
            "Time its tasks waited runnable for a CPU",
            sched.map(|s| secs(s.wait_ns)),
        ),
        (
            "lumen.cpu.preemptions",
            true,
            "{preemption}",
            "Times another cgroup's task took the CPU from its tasks",
            sched.map(|s| s.preempted as f64),
        ),
    ];
    for (name, sum, unit, description, value) in counts {
        if let Some(v) = value {
            add(name.to_owned(), sum, unit, description, v, &[]);
        }
    }
    for (i, psi) in ResourceUse::PSI {
        if let Some(us) = u.pressure_us[i] {
            // `cpu_some_us` → resource `cpu`, kind `some`.
            let (resource, kind) = psi
                .trim_end_matches("_us")
                .split_once('_')
                .unwrap_or(("", ""));
            let extra = [
                attr("lumen.pressure.resource", resource),
                attr("lumen.pressure.kind", kind),
            ];
            add(
                "lumen.pressure.stall_time".to_owned(),
                true,
                "s",
                "PSI: time some or all tasks stalled",
                us as f64 / 1e6,
                &extra,
            );
        }
    }
}
