//! `[transforms.<id>] type = "redact"`: a profile's settings (rules,
//! detectors, Kubernetes removals, the key) and their checks.

use super::detect::{Detector, Detectors};
use super::json::Pattern;
use lumen_sinks::secret::Secret;
use serde::Deserialize;

/// `[transforms.<id>] type = "redact"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    pub inputs: Vec<String>,
    /// The HMAC key of `hash` (a secret: `${ENV}` or `{ file = … }`).
    /// Without one (or empty), a random key is made once and kept in
    /// `<data_dir>/redact/<id>.key`.
    pub hmac_key: Option<Secret>,
    /// Rules on fields and paths; default: the GDPR profile
    /// (`user.name`, `user.id` hashed; `source.ip`, `destination.ip`
    /// truncated).
    #[serde(default = "default_rules")]
    pub rules: Vec<RuleConfig>,
    /// Detectors run over free text; default: all.
    #[serde(default = "all_detectors")]
    pub detectors: Vec<Detector>,
    /// What a detector's find becomes: `mask` (`[email]`) or `hash`
    /// (`[email:<pseudonym>]`).
    #[serde(default)]
    pub detector_action: DetectorAction,
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Recorded on the events it changes; default `<action>:<field or path>`.
    pub name: Option<String>,
    /// An ECS field name (see [`FIELDS`]).
    pub field: Option<String>,
    /// A JSON path into the raw audit event.
    pub path: Option<String>,
    pub action: Action,
    /// `mask`: characters kept.
    #[serde(default)]
    pub keep: usize,
    /// `replace`: the constant.
    pub value: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Drop,
    Mask,
    Hash,
    TruncateIp,
    Replace,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DetectorAction {
    #[default]
    Mask,
    Hash,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Remove ConfigMap `data`/`binaryData` too.
    #[serde(default)]
    pub drop_configmap_data: bool,
}

fn all_detectors() -> Vec<Detector> {
    Detector::ALL.to_vec()
}

fn default_rules() -> Vec<RuleConfig> {
    let rule = |field: &str, action| RuleConfig {
        name: None,
        field: Some(field.to_owned()),
        path: None,
        action,
        keep: 0,
        value: None,
    };
    vec![
        rule("user.name", Action::Hash),
        rule("user.id", Action::Hash),
        rule("source.ip", Action::TruncateIp),
        rule("destination.ip", Action::TruncateIp),
    ]
}

/// The ECS fields rules can name.
pub const FIELDS: &[&str] = &[
    "user.name",
    "user.id",
    "source.ip",
    "destination.ip",
    "user_agent.original",
    "url.original",
    "process.command_line",
    "process.parent.command_line",
    "process.executable",
    "file.path",
];

/// Where an ECS field is in the raw audit event.
pub(super) fn audit_paths(field: &str) -> Vec<Pattern> {
    let p = |s: &str| Pattern::parse(s).ok();
    match field {
        "user.name" => vec![p("user.username"), p("impersonatedUser.username")],
        "user.id" => vec![p("user.uid"), p("impersonatedUser.uid")],
        "source.ip" => vec![p("sourceIPs[*]")],
        "user_agent.original" => vec![p("userAgent")],
        "url.original" => vec![p("requestURI")],
        _ => vec![],
    }
    .into_iter()
    .flatten()
    .collect()
}

impl RedactConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (i, r) in self.rules.iter().enumerate() {
            let which = format!("rules[{i}]");
            match (&r.field, &r.path) {
                (Some(f), None) => {
                    if !FIELDS.contains(&f.as_str()) {
                        return Err(format!(
                            "{which}: unknown field `{f}` (known: {}; or use `path` into the audit event)",
                            FIELDS.join(", ")
                        ));
                    }
                    if f.ends_with(".ip") && !matches!(r.action, Action::TruncateIp | Action::Drop)
                    {
                        return Err(format!(
                            "{which}: `{f}` takes `truncate_ip` or `drop` (kernel events carry addresses, not text)"
                        ));
                    }
                }
                (None, Some(p)) => {
                    Pattern::parse(p).map_err(|e| format!("{which}: {e}"))?;
                }
                _ => return Err(format!("{which}: give exactly one of `field` and `path`")),
            }
            if r.action == Action::Replace && r.value.is_none() {
                return Err(format!("{which}: `replace` needs a `value`"));
            }
        }
        Detectors::new(&self.detectors)?;
        Ok(())
    }
}
