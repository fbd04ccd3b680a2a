//! `{{ field }}` templates for routing (Kafka topics and keys): literal
//! text with fields of the event, from a fixed set Lumen can name without
//! building a JSON value per event.
//!
//! Fields: `ocsf.class_name` (`process_activity`), `ocsf.class_uid`,
//! `event.dataset` (`lumen.process`), `event.category` (ECS's first,
//! `process`), `event.kind` (Lumen's kind, `process_exec`), `host.name`,
//! `container.id`, `kubernetes.pod.uid`, `kubernetes.pod.name`,
//! `kubernetes.namespace` (the pod's; for audit events the object's),
//! `user.name` (audit events: the requesting user), `user.id` (the uid),
//! `process.executable`, `schema` (`ocsf` or `ecs`). A field an event does
//! not have renders empty.

use lumen_schemas::{ecs, ocsf, Event, EventKind, Schema};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    OcsfClassName,
    OcsfClassUid,
    EventDataset,
    EventCategory,
    EventKind,
    HostName,
    ContainerId,
    PodUid,
    PodName,
    Namespace,
    UserName,
    UserId,
    Executable,
    Schema,
}

const FIELDS: &[(&str, Field)] = &[
    ("ocsf.class_name", Field::OcsfClassName),
    ("ocsf.class_uid", Field::OcsfClassUid),
    ("event.dataset", Field::EventDataset),
    ("event.category", Field::EventCategory),
    ("event.kind", Field::EventKind),
    ("host.name", Field::HostName),
    ("container.id", Field::ContainerId),
    ("kubernetes.pod.uid", Field::PodUid),
    ("kubernetes.pod.name", Field::PodName),
    ("kubernetes.namespace", Field::Namespace),
    ("user.name", Field::UserName),
    ("user.id", Field::UserId),
    ("process.executable", Field::Executable),
    ("schema", Field::Schema),
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Field),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; an unknown field or an unclosed `{{` is an error that
    /// names it and lists the fields there are.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("template `{text}`: `{{{{` without `}}}}`"))?;
            let name = after[..close].trim();
            let field = FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| *f)
                .ok_or_else(|| {
                    let known: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
                    format!(
                        "template `{text}`: unknown field `{name}` (known: {})",
                        known.join(", ")
                    )
                })?;
            parts.push(Part::Field(field));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// True when the template has no fields (the same for every event).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Appends the template for `event`, written in `schema`.
    pub fn render(&self, event: &Event, schema: Schema, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.extend_from_slice(l.as_bytes()),
                Part::Field(f) => match f {
                    Field::OcsfClassName => {
                        for b in ocsf::class_of(event).1.bytes() {
                            out.push(if b == b' ' {
                                b'_'
                            } else {
                                b.to_ascii_lowercase()
                            });
                        }
                    }
                    Field::OcsfClassUid => out.extend_from_slice(
                        itoa::Buffer::new()
                            .format(ocsf::class_of(event).0)
                            .as_bytes(),
                    ),
                    Field::EventDataset => out.extend_from_slice(ecs::dataset(event).as_bytes()),
                    Field::EventCategory => out.extend_from_slice(ecs::category(event).as_bytes()),
                    Field::EventKind => out.extend_from_slice(event.kind.name().as_bytes()),
                    Field::HostName => out.extend_from_slice(event.host.name.as_bytes()),
                    Field::ContainerId => {
                        out.extend_from_slice(event.kind.container_id().as_bytes())
                    }
                    Field::PodUid => out.extend_from_slice(event.kind.pod_uid().as_bytes()),
                    Field::PodName => {
                        if let Some(p) = event.kind.process() {
                            out.extend_from_slice(p.s(p.attribution.pod_name).as_bytes());
                        }
                    }
                    Field::Namespace => match &event.kind {
                        EventKind::ApiActivity(a) => {
                            if let Some(o) = &a.object_ref {
                                out.extend_from_slice(a.s(o.namespace).as_bytes());
                            }
                        }
                        kind => {
                            if let Some(p) = kind.process() {
                                out.extend_from_slice(p.s(p.attribution.namespace).as_bytes());
                            }
                        }
                    },
                    Field::UserName => {
                        if let EventKind::ApiActivity(a) = &event.kind {
                            out.extend_from_slice(a.s(a.user.username).as_bytes());
                        }
                    }
                    Field::UserId => match &event.kind {
                        EventKind::ApiActivity(a) => {
                            out.extend_from_slice(a.s(a.user.uid).as_bytes())
                        }
                        kind => {
                            if let Some(p) = kind.process() {
                                out.extend_from_slice(itoa::Buffer::new().format(p.uid).as_bytes());
                            }
                        }
                    },
                    Field::Executable => {
                        if let Some(p) = event.kind.process() {
                            out.extend_from_slice(p.executable().as_bytes());
                        }
                    }
                    Field::Schema => out.extend_from_slice(schema.as_str().as_bytes()),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_and_fields_and_refuses_unknown_ones() {
        let t = Template::parse("lumen.{{ ocsf.class_name }}").unwrap();
        assert!(!t.is_static());
        assert!(Template::parse("plain").unwrap().is_static());
        let e = Template::parse("x-{{ user.nam }}").unwrap_err();
        assert!(
            e.contains("unknown field `user.nam`") && e.contains("host.name"),
            "{e}"
        );
        assert!(Template::parse("x-{{ host.name")
            .unwrap_err()
            .contains("without"));
    }
}
