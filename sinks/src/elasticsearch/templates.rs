//! Lumen's component template (ECS mappings for the fields Lumen emits,
//! from `ecs_fields.txt`) and the index template that applies it to Lumen's
//! data streams or bulk indices, installed at start-up so Kibana and Elastic
//! Security see proper types (ip, date, long, wildcard, …).

use super::config::{ElasticsearchConfig, Mode};
use lumen_schemas::json::JsonWriter;
use lumen_schemas::ECS_VERSION;
use std::collections::BTreeMap;

/// `name type` lines, checked against ECS by schemas/tests/conformance.rs.
const ECS_FIELDS: &str = include_str!("ecs_fields.txt");

pub const COMPONENT_TEMPLATE: &str = "lumen-ecs@mappings";

/// The data streams Lumen writes in ECS (one per ECS dataset).
const DATASETS: [&str; 6] = [
    "lumen.process",
    "lumen.file",
    "lumen.network",
    "lumen.privilege",
    "lumen.k8s_audit",
    "lumen.loss",
];

/// A tree of field names, for nested `properties`.
#[derive(Default)]
struct Node<'a> {
    ty: Option<&'a str>,
    children: BTreeMap<&'a str, Node<'a>>,
}

fn write_properties(w: &mut JsonWriter<'_>, node: &Node<'_>) {
    w.object("properties");
    for (name, child) in &node.children {
        w.object(name);
        match child.ty {
            Some(ty) if child.children.is_empty() => {
                w.str("type", ty);
                if ty == "scaled_float" {
                    // ECS's factor for its 0-to-1 shares.
                    w.u64("scaling_factor", 1000);
                }
            }
            _ => write_properties(w, child),
        }
        w.end_object();
    }
    w.end_object();
}

/// `PUT _component_template/lumen-ecs@mappings`.
pub fn component_template() -> Vec<u8> {
    let mut root = Node::default();
    for line in ECS_FIELDS.lines() {
        let Some((name, ty)) = line.split_once(' ') else {
            continue;
        };
        if line.starts_with('#') {
            continue;
        }
        let mut node = &mut root;
        for part in name.split('.') {
            node = node.children.entry(part).or_default();
        }
        node.ty = Some(ty);
    }
    let mut out = Vec::with_capacity(8 * 1024);
    let mut w = JsonWriter::new(&mut out);
    w.begin_object();
    w.object("template");
    w.object("mappings");
    write_properties(&mut w, &root);
    w.end_object();
    w.end_object();
    meta(&mut w);
    w.end_object();
    out
}

fn meta(w: &mut JsonWriter<'_>) {
    w.object("_meta");
    w.str("managed_by", "lumen");
    w.str("lumen_version", lumen_schemas::PRODUCT_VERSION);
    w.str("ecs_version", ECS_VERSION);
    w.end_object();
}

/// The index template's name and body (`PUT _index_template/<name>`).
pub fn index_template(config: &ElasticsearchConfig) -> (&'static str, Vec<u8>) {
    let mut out = Vec::with_capacity(1024);
    let mut w = JsonWriter::new(&mut out);
    w.begin_object();
    let name = match config.mode {
        Mode::DataStream => {
            let patterns: Vec<String> = DATASETS.iter().map(|d| format!("logs-{d}-*")).collect();
            w.str_array("index_patterns", patterns.iter().map(String::as_str));
            w.object("data_stream");
            w.end_object();
            "lumen-ecs"
        }
        Mode::Bulk => {
            let pattern = bulk_pattern(&config.bulk.index);
            w.str_array("index_patterns", [pattern.as_str()]);
            "lumen-ecs-bulk"
        }
    };
    w.str_array("composed_of", [COMPONENT_TEMPLATE]);
    // Above Elasticsearch's built-in `logs` template (100).
    w.u64("priority", 200);
    meta(&mut w);
    w.end_object();
    (name, out)
}

/// The index pattern a bulk index name template covers: everything from
/// the first `%Y`-style field or date-math expression on becomes `*`.
fn bulk_pattern(index: &str) -> String {
    let index = index.trim_start_matches('<').trim_end_matches('>');
    match index.find(['%', '{']) {
        Some(at) => format!("{}*", &index[..at]),
        None => index.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_template_nests_the_ecs_fields() {
        let t: serde_json::Value = serde_json::from_slice(&component_template()).unwrap();
        let props = &t["template"]["mappings"]["properties"];
        assert_eq!(props["@timestamp"]["type"], "date");
        assert_eq!(props["source"]["properties"]["ip"]["type"], "ip");
        assert_eq!(props["process"]["properties"]["pid"]["type"], "long");
        assert_eq!(
            props["process"]["properties"]["parent"]["properties"]["pid"]["type"],
            "long"
        );
        assert_eq!(t["_meta"]["ecs_version"], ECS_VERSION);
    }

    #[test]
    fn bulk_index_patterns() {
        assert_eq!(bulk_pattern("lumen-%Y.%m.%d"), "lumen-*");
        assert_eq!(bulk_pattern("<lumen-{now/d}>"), "lumen-*");
        assert_eq!(bulk_pattern("security"), "security");
    }
}
