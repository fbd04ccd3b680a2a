//! Graph validation: ids are unique across sources, transforms and sinks;
//! every input names a source or a transform; sinks have inputs; transforms
//! form no cycle. Positions are found in the (interpolated) text by looking
//! for the component's table header and the quoted input name after it.

use super::{line_col, Config, SinkConfig};
use std::collections::{BTreeMap, BTreeSet};

type Position = Option<(usize, usize)>;

/// The component graph of a valid config.
#[derive(Debug)]
pub struct Graph<'a> {
    /// Every component id → the ids it reads from (empty for sources).
    pub inputs: BTreeMap<&'a str, Vec<&'a str>>,
    /// Transforms in an order where each comes after all its inputs.
    pub transform_order: Vec<&'a str>,
}

impl<'a> Graph<'a> {
    pub(crate) fn new(config: &'a Config) -> Self {
        let mut inputs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for id in config.sources.keys() {
            inputs.insert(id, Vec::new());
        }
        for (id, t) in &config.transforms {
            inputs.insert(id, t.inputs().iter().map(String::as_str).collect());
        }
        for (id, s) in &config.sinks {
            inputs.insert(id, s.inputs().iter().map(String::as_str).collect());
        }
        let transform_order = topo_order(config).unwrap_or_default();
        Graph {
            inputs,
            transform_order,
        }
    }

    /// Components that read from `id`.
    pub fn outputs_of(&self, id: &str) -> Vec<&'a str> {
        self.inputs
            .iter()
            .filter(|(_, ins)| ins.contains(&id))
            .map(|(c, _)| *c)
            .collect()
    }
}

/// Byte offset of `[kind.id]` in the text, if written as a table header.
fn header_offset(text: &str, kind: &str, id: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if let Some(inner) = t.strip_prefix('[').and_then(|t| t.split(']').next()) {
            let inner: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
            let quoted = format!("{kind}.\"{id}\"");
            if inner == format!("{kind}.{id}") || inner == quoted {
                return Some(offset + (line.len() - line.trim_start().len()));
            }
        }
        offset += line.len();
    }
    None
}

/// Position of the quoted `needle` inside component `[kind.id]`, or of its header.
fn locate(text: &str, kind: &str, id: &str, needle: Option<&str>) -> Position {
    let start = header_offset(text, kind, id)?;
    if let Some(n) = needle {
        let section_end = text[start + 1..]
            .find("\n[")
            .map_or(text.len(), |i| start + 1 + i);
        let quoted = format!("\"{n}\"");
        if let Some(i) = text[start..section_end].find(&quoted) {
            return Some(line_col(text, start + i + 1));
        }
    }
    Some(line_col(text, start))
}

pub(super) fn validate(config: &Config, text: &str) -> Result<(), (Position, String)> {
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    let sections = [
        ("sources", config.sources.keys().collect::<Vec<_>>()),
        ("transforms", config.transforms.keys().collect()),
        ("sinks", config.sinks.keys().collect()),
    ];
    for (kind, ids) in &sections {
        for id in ids {
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err((
                    locate(text, kind, id, None),
                    format!("component id {id:?} must be letters, digits, `_` or `-`"),
                ));
            }
            if let Some(other) = kinds.insert(id, kind) {
                return Err((
                    locate(text, kind, id, None),
                    format!("component id `{id}` is used twice (in [{other}] and [{kind}])"),
                ));
            }
        }
    }
    if config.sinks.is_empty() {
        return Err((
            None,
            "no sinks: add at least one [sinks.<id>] table".to_owned(),
        ));
    }
    for (id, transform) in &config.transforms {
        let checked = match transform {
            super::TransformConfig::RateLimit(c) => c.validate(),
            super::TransformConfig::Redact(c) => c.validate(),
            super::TransformConfig::Filter(_) => Ok(()),
            super::TransformConfig::Detect(c) => c.validate(),
        };
        {
            if let Err(message) = checked {
                return Err((
                    locate(text, "transforms", id, None),
                    format!("[transforms.{id}]: {message}"),
                ));
            }
        }
    }
    // Pinned programs of two ebpf sources in one directory would clash at
    // their handoff.
    let mut pin_paths = std::collections::HashMap::new();
    for (id, source) in &config.sources {
        let checked = match source {
            super::SourceConfig::K8sAuditWebhook(c) => c.validate(),
            super::SourceConfig::Ebpf(c) => c.validate().and_then(|()| match &c.pin_path {
                Some(dir) => match pin_paths.insert(dir, id) {
                    Some(other) => Err(format!(
                        "pin_path {} is source `{other}`'s too: one pin_path per source",
                        dir.display()
                    )),
                    None => Ok(()),
                },
                None => Ok(()),
            }),
            super::SourceConfig::K8sAuditFile(_) => Ok(()),
            super::SourceConfig::Kafka(c) => c.validate(),
        };
        if let Err(message) = checked {
            return Err((
                locate(text, "sources", id, None),
                format!("[sources.{id}]: {message}"),
            ));
        }
    }
    for (id, sink) in &config.sinks {
        let checked = match sink {
            SinkConfig::Elasticsearch(c) => c.validate(),
            SinkConfig::SplunkHec(c) => c.validate(),
            SinkConfig::Kafka(c) => c.validate(),
            SinkConfig::Otlp(c) => c.validate(),
            SinkConfig::File(_) | SinkConfig::Console(_) => Ok(()),
        }
        .and_then(|()| sink.buffer().validate());
        if let Err(message) = checked {
            return Err((
                locate(text, "sinks", id, None),
                format!("[sinks.{id}]: {message}"),
            ));
        }
    }
    let check_inputs = |kind: &str,
                        id: &str,
                        inputs: &[String]|
     -> Result<(), (Position, String)> {
        if inputs.is_empty() {
            return Err((
                locate(text, kind, id, None),
                format!("[{kind}.{id}]: `inputs` is empty"),
            ));
        }
        for input in inputs {
            match kinds.get(input.as_str()) {
                None => {
                    let known: Vec<&str> = kinds
                        .iter()
                        .filter(|(_, k)| **k != "sinks")
                        .map(|(i, _)| *i)
                        .collect();
                    return Err((
                        locate(text, kind, id, Some(input)),
                        format!(
                            "[{kind}.{id}]: input `{input}` names no source or transform (known: {})",
                            known.join(", ")
                        ),
                    ));
                }
                Some(&"sinks") => {
                    return Err((
                        locate(text, kind, id, Some(input)),
                        format!("[{kind}.{id}]: input `{input}` is a sink; sinks have no outputs"),
                    ))
                }
                Some(_) if input == id => {
                    return Err((
                        locate(text, kind, id, Some(input)),
                        format!("[{kind}.{id}]: a component cannot read its own output"),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    };
    for (id, t) in &config.transforms {
        check_inputs("transforms", id, t.inputs())?;
    }
    for (id, s) in &config.sinks {
        check_inputs("sinks", id, s.inputs())?;
    }
    if let Err(cycle) = topo_order(config) {
        let first = cycle.first().copied().unwrap_or_default();
        return Err((
            locate(text, "transforms", first, None),
            format!("transforms form a cycle: {}", cycle.join(" -> ")),
        ));
    }
    Ok(())
}

/// Transforms in dependency order, or the ids of a cycle.
fn topo_order(config: &Config) -> Result<Vec<&str>, Vec<&str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        id: &'a str,
        config: &'a Config,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        order: &mut Vec<&'a str>,
    ) -> Result<(), Vec<&'a str>> {
        match marks.get(id) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let from = stack.iter().position(|s| *s == id).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(id);
                return Err(cycle);
            }
            None => {}
        }
        let Some(t) = config.transforms.get(id) else {
            return Ok(());
        };
        marks.insert(id, Mark::Visiting);
        stack.push(id);
        for input in t.inputs() {
            if let Some((key, _)) = config.transforms.get_key_value(input.as_str()) {
                visit(key, config, marks, stack, order)?;
            }
        }
        stack.pop();
        marks.insert(id, Mark::Done);
        order.push(id);
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut order = Vec::new();
    let mut stack = Vec::new();
    let ids: BTreeSet<&str> = config.transforms.keys().map(String::as_str).collect();
    for id in ids {
        visit(id, config, &mut marks, &mut stack, &mut order)?;
    }
    Ok(order)
}
