//! MITRE ATT&CK (Enterprise and Containers matrices): the tactics, and the
//! techniques Lumen's rules name, so a rule can say `attack = ["T1610"]`
//! and its findings carry names and tactics. A technique that is not here
//! is given with its tactic (`{ technique = "…", tactic = "TA…" }`).

use lumen_schemas::event::Attack;

/// (id, name).
const TACTICS: &[(&str, &str)] = &[
    ("TA0001", "Initial Access"),
    ("TA0002", "Execution"),
    ("TA0003", "Persistence"),
    ("TA0004", "Privilege Escalation"),
    ("TA0005", "Defense Evasion"),
    ("TA0006", "Credential Access"),
    ("TA0007", "Discovery"),
    ("TA0008", "Lateral Movement"),
    ("TA0009", "Collection"),
    ("TA0010", "Exfiltration"),
    ("TA0011", "Command and Control"),
    ("TA0040", "Impact"),
    ("TA0042", "Resource Development"),
    ("TA0043", "Reconnaissance"),
];

/// (id, name, the tactic it is listed under first).
const TECHNIQUES: &[(&str, &str, &str)] = &[
    ("T1003.008", "/etc/passwd and /etc/shadow", "TA0006"),
    ("T1036", "Masquerading", "TA0005"),
    ("T1046", "Network Service Discovery", "TA0007"),
    ("T1055.008", "Ptrace System Calls", "TA0004"),
    ("T1059", "Command and Scripting Interpreter", "TA0002"),
    ("T1059.004", "Unix Shell", "TA0002"),
    ("T1068", "Exploitation for Privilege Escalation", "TA0004"),
    ("T1078", "Valid Accounts", "TA0001"),
    ("T1078.001", "Default Accounts", "TA0001"),
    ("T1098.006", "Additional Container Cluster Roles", "TA0003"),
    ("T1105", "Ingress Tool Transfer", "TA0011"),
    ("T1190", "Exploit Public-Facing Application", "TA0001"),
    ("T1496", "Resource Hijacking", "TA0040"),
    ("T1499", "Endpoint Denial of Service", "TA0040"),
    ("T1528", "Steal Application Access Token", "TA0006"),
    ("T1543", "Create or Modify System Process", "TA0003"),
    ("T1547.006", "Kernel Modules and Extensions", "TA0003"),
    ("T1548.001", "Setuid and Setgid", "TA0004"),
    ("T1552.001", "Credentials In Files", "TA0006"),
    ("T1552.007", "Container API", "TA0006"),
    ("T1572", "Protocol Tunneling", "TA0011"),
    ("T1574", "Hijack Execution Flow", "TA0003"),
    ("T1609", "Container Administration Command", "TA0002"),
    ("T1610", "Deploy Container", "TA0002"),
    ("T1611", "Escape to Host", "TA0004"),
    ("T1613", "Container and Resource Discovery", "TA0007"),
    ("T1620", "Reflective Code Loading", "TA0005"),
];

pub fn tactic_name(id: &str) -> Option<&'static str> {
    TACTICS.iter().find(|(t, _)| *t == id).map(|(_, n)| *n)
}

/// The tactic id for a Sigma tag's tactic name (`attack.privilege_escalation`).
pub fn tactic_by_tag(tag: &str) -> Option<&'static str> {
    TACTICS
        .iter()
        .find(|(_, n)| n.to_ascii_lowercase().replace(' ', "_") == tag)
        .map(|(id, _)| *id)
}

/// A technique by id, under `tactic` or its first one.
pub fn attack(technique: &str, tactic: Option<&str>) -> Result<Attack, String> {
    let known = TECHNIQUES
        .iter()
        .find(|(t, _, _)| t.eq_ignore_ascii_case(technique));
    let tactic_id = match (tactic, known) {
        (Some(t), _) => t.to_ascii_uppercase(),
        (None, Some((_, _, t))) => (*t).to_owned(),
        (None, None) => {
            return Err(format!(
                "ATT&CK technique `{technique}` is not in Lumen's table: give it as {{ technique = \"{technique}\", tactic = \"TA….\" }}"
            ))
        }
    };
    let tactic = tactic_name(&tactic_id)
        .ok_or_else(|| format!("`{tactic_id}` is not an ATT&CK tactic id (TA0001 … TA0043)"))?;
    Ok(Attack {
        tactic_id,
        tactic: tactic.to_owned(),
        technique_id: technique.to_ascii_uppercase(),
        technique: known.map_or_else(
            || technique.to_ascii_uppercase(),
            |(_, n, _)| (*n).to_owned(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn techniques_resolve_with_names_and_tactics() {
        let a = attack("t1610", None).unwrap();
        assert_eq!(
            (
                a.technique_id.as_str(),
                a.technique.as_str(),
                a.tactic.as_str()
            ),
            ("T1610", "Deploy Container", "Execution")
        );
        let b = attack("T1610", Some("TA0005")).unwrap();
        assert_eq!(b.tactic, "Defense Evasion");
        assert!(attack("T9999", None).unwrap_err().contains("tactic = "));
        assert!(attack("T9999", Some("TA0002")).is_ok());
        assert!(attack("T1610", Some("TA9999")).is_err());
        assert_eq!(tactic_by_tag("privilege_escalation"), Some("TA0004"));
        // Every technique's tactic exists.
        for (_, _, t) in TECHNIQUES {
            assert!(tactic_name(t).is_some(), "{t}");
        }
    }
}
