//! The `redact` transform through the binary: the embedded default config
//! redacts out of the box; two profiles on two sinks' paths give one sink
//! pseudonyms and another masks, while a third sink without a redact
//! transform is untouched; pseudonyms are the same from one run to the next;
//! passwords in `kubectl exec` command lines do not leave.

use crate::support::{is_root, read_ndjson, wait_for_events, wait_timeout, Lumen, LUMEN};
use std::process::{Command, Stdio};
use std::time::Duration;

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../config/samples/k8s-audit.log"
);

fn audit_events(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|e| e["class_uid"] == 6003 || e["event"]["dataset"] == "lumen.k8s_audit")
        .collect()
}

#[test]
fn the_default_config_redacts_out_of_the_box() {
    assert!(
        is_root(),
        "the default config loads eBPF programs (CI runs as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.ndjson");
    let mut child = Command::new(LUMEN)
        .arg("run")
        .env("LUMEN_DATA_DIR", dir.path().join("data"))
        .env("LUMEN_OUTPUT", &out)
        .env("LUMEN_AUDIT_LOG", SAMPLE)
        .env("LUMEN_REDACT_KEY", "")
        .env("LUMEN_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sample_events = std::fs::read_to_string(SAMPLE).unwrap().lines().count();
    let events = wait_for_events(&out, Duration::from_secs(60), |e| {
        audit_events(e).len() >= sample_events - 1
    });
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_timeout(&mut child, Duration::from_secs(30));
    let audit = audit_events(&events);
    let text: String = audit.iter().map(|e| e.to_string()).collect();
    for personal in [
        "minikube-user",
        "\"bob\"",
        "192.168.64.1",
        "10.244.1.17",
        "system:serviceaccount:payments:web",
    ] {
        assert!(!text.contains(personal), "{personal} left Lumen unredacted");
    }
    assert!(
        audit.iter().all(|e| e["metadata"]["labels"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x == "redaction_rule:hash:user.name"))),
        "every audit event records its redaction"
    );
    let key = std::fs::read_to_string(dir.path().join("data/redact/gdpr.key")).unwrap();
    assert_eq!(key.len(), 64, "a generated 256-bit key, hex");
}

/// `kubectl exec` with passwords in its argv, as the API server logs it:
/// `command` parameters, URL-encoded, `&` written as `\u0026`.
fn exec_line(id: &str, query: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"{id}","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/db/pods/mysql-0/exec?{query}","verb":"create","user":{{"username":"ops","groups":["system:authenticated"]}},"sourceIPs":["10.1.2.5"],"objectRef":{{"resource":"pods","subresource":"exec","namespace":"db","name":"mysql-0","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":101}},"requestReceivedTimestamp":"2026-11-29T10:00:00.000001Z","stageTimestamp":"2026-11-29T10:00:00.000002Z"}}"#
    )
}

/// The shipped GDPR profile, through the binary: a password in a `kubectl
/// exec` command line is gone from the output in every form it was sent
/// in; the command stays readable.
#[test]
fn kubectl_exec_passwords_do_not_leave_lumen() {
    assert!(
        is_root(),
        "the default config loads eBPF programs (CI runs as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let lines = [
        exec_line(
            "e-1",
            r"command=mysql\u0026command=-uroot\u0026command=%2DpMysqlPw0rd\u0026container=mysql\u0026stdin=true",
        ),
        exec_line(
            "e-2",
            r"command=psql\u0026command=--password\u0026command=SplitPw0rd\u0026command=--token%3DEqTok3nVal\u0026stdin=true",
        ),
        exec_line(
            "e-3",
            r"command=sh\u0026command=-c\u0026command=DB_PASSWORD%3DShellPw0rd+psql+postgres%3A%2F%2Fu%3AUrlPw0rd%40db\u0026tty=true",
        ),
    ];
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("events.ndjson");
    let mut child = Command::new(LUMEN)
        .arg("run")
        .env("LUMEN_DATA_DIR", dir.path().join("data"))
        .env("LUMEN_OUTPUT", &out)
        .env("LUMEN_AUDIT_LOG", &log)
        .env("LUMEN_REDACT_KEY", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_events(&out, Duration::from_secs(60), |e| {
        audit_events(e).len() >= 3
    });
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_timeout(&mut child, Duration::from_secs(30));
    let text = std::fs::read_to_string(&out).unwrap();
    for secret in [
        "MysqlPw0rd",
        "SplitPw0rd",
        "EqTok3nVal",
        "ShellPw0rd",
        "UrlPw0rd",
    ] {
        assert!(!text.contains(secret), "{secret} left Lumen:\n{text}");
    }
    let events = read_ndjson(&out);
    let originals: String = audit_events(&events)
        .iter()
        .map(|e| e["raw_data"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        originals.contains("command=mysql&command=-uroot&command=-p%5Bpassword_arg%5D"),
        "{originals}"
    );
    assert!(
        originals.contains("command=--password&command=%5Bpassword_arg%5D"),
        "{originals}"
    );
}

fn profiles_config() -> String {
    format!(
        r#"data_dir = "{{dir}}/data"
[sources.audit]
type = "k8s_audit_file"
path = "{SAMPLE}"

[transforms.pseudonymized]
type = "redact"
inputs = ["audit"]
hmac_key = "e2e-shared-key"

[transforms.masked]
type = "redact"
inputs = ["audit"]
rules = [
  {{ field = "user.name", action = "replace", value = "[user]" }},
  {{ field = "user.id", action = "drop" }},
  {{ field = "source.ip", action = "drop" }},
  {{ field = "user_agent.original", action = "mask", keep = 7 }},
]

[sinks.siem]
type = "file"
inputs = ["pseudonymized"]
schema = "ecs"
path = "{{dir}}/siem.ndjson"

[sinks.archive]
type = "file"
inputs = ["masked"]
schema = "ecs"
path = "{{dir}}/archive.ndjson"

[sinks.raw]
type = "file"
inputs = ["audit"]
schema = "ecs"
path = "{{dir}}/raw.ndjson"
"#
    )
}

fn user_names(path: &std::path::Path) -> Vec<String> {
    read_ndjson(path)
        .iter()
        .map(|e| e["user"]["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn each_sink_path_gets_its_own_profile_and_pseudonyms_are_stable_across_runs() {
    let sample_events = std::fs::read_to_string(SAMPLE).unwrap().lines().count() - 1;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut lumen = Lumen::start(&profiles_config());
        for sink in ["siem", "archive", "raw"] {
            wait_for_events(
                &lumen.path(&format!("{sink}.ndjson")),
                Duration::from_secs(20),
                |e| e.len() >= sample_events,
            );
        }
        let (status, log) = lumen.stop();
        assert!(status.success(), "{}", log.join("\n"));
        runs.push((
            user_names(&lumen.path("siem.ndjson")),
            std::fs::read_to_string(lumen.path("siem.ndjson")).unwrap(),
            std::fs::read_to_string(lumen.path("archive.ndjson")).unwrap(),
            std::fs::read_to_string(lumen.path("raw.ndjson")).unwrap(),
        ));
    }
    let (names, siem, archive, raw) = &runs[0];
    assert!(
        raw.contains("minikube-user"),
        "a sink without redact gets the events as they are"
    );
    for redacted in [siem, archive] {
        assert!(!redacted.contains("minikube-user"));
        assert!(!redacted.contains("192.168.64.1"));
    }
    // Pseudonyms: the same user gets the same one (correlation survives)…
    let minikube: Vec<&String> = names.iter().filter(|n| n.len() == 32).collect();
    assert!(minikube.len() >= 3, "{names:?}");
    // …and the next run, with the same key, gives the same ones.
    assert_eq!(
        names, &runs[1].0,
        "pseudonyms differ between runs with one key"
    );
    // The masked profile: constants and masks, no pseudonyms.
    let archive_events: Vec<serde_json::Value> = archive
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(archive_events.iter().any(|e| e["user"]["name"] == "[user]"));
    assert!(archive_events
        .iter()
        .all(|e| e["user"]["name"].as_str().is_none_or(|n| n.len() != 32)));
    assert!(archive_events.iter().any(|e| e["user_agent"]["original"]
        .as_str()
        .is_some_and(|u| u == "kubectl****")));
}
