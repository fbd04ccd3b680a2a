//! The built-in rule pack: `builtin.toml`, in the format users write their
//! own rules in, compiled like theirs. DETECTIONS.md describes each rule.

use super::rule::{self, Rule};

/// The rule file, as shipped.
pub const TEXT: &str = include_str!("builtin.toml");

/// The built-in rules, compiled.
pub fn rules() -> Result<Vec<Rule>, String> {
    rule::parse_file("built-in rules", TEXT, "builtin")
}
