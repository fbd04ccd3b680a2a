//! SIGTERM drains: every event a source has read reaches the sinks before
//! lumen exits 0.

use crate::support::{audit_line, read_ndjson, Lumen};
use std::io::Write;
use std::time::Duration;

#[test]
fn sigterm_drains_every_in_flight_event_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    const N: usize = 200_000;
    for i in 0..N {
        writeln!(f, "{}", audit_line(&format!("e{i}"), "get")).unwrap();
    }
    drop(f);
    let config = r#"
data_dir = "{dir}/data"
[sources.audit]
type = "k8s_audit_file"
path = "{dir}/audit.log"

[sinks.a]
type = "file"
inputs = ["audit"]
schema = "ocsf"
path = "{dir}/a.ndjson"

[sinks.b]
type = "file"
inputs = ["audit"]
schema = "ecs"
path = "{dir}/b.ndjson"
"#;
    let mut lumen = Lumen::start_in(dir, config);
    lumen.wait_for_log("k8s_audit_file: reading", Duration::from_secs(20));
    // Stop while events are in flight.
    std::thread::sleep(Duration::from_millis(300));
    let a = lumen.path("a.ndjson");
    let b = lumen.path("b.ndjson");
    let (status, log) = lumen.stop();
    assert!(status.success(), "exit {status}:\n{}", log.join("\n"));
    let stopped = log
        .iter()
        .find(|l| l.contains("k8s_audit_file: stopped"))
        .unwrap_or_else(|| panic!("no stop report:\n{}", log.join("\n")));
    let field = |name: &str| -> usize {
        let at = stopped.find(&format!("{name}=")).unwrap() + name.len() + 1;
        stopped[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let sent = field("events");
    assert!(sent > 0);
    assert_eq!(field("acknowledged"), sent, "{stopped}");
    assert_eq!(field("not_delivered"), 0);
    // Both sinks hold exactly what the source sent, in order.
    for path in [&a, &b] {
        let events = read_ndjson(path);
        assert_eq!(events.len(), sent, "{}", path.display());
    }
    assert!(log
        .iter()
        .any(|l| l.contains("every in-flight event was drained")));
}
