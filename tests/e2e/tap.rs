//! `lumen tap` against a running Lumen: live events of a component, as
//! they pass it, in the schema asked for.

use crate::support::{append_audit, free_port, http_client, Lumen, LUMEN};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tap(port: u16, args: &[&str]) -> std::process::Child {
    Command::new(LUMEN)
        .arg("tap")
        .args(args)
        .args(["--address", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn output(child: std::process::Child) -> (i32, Vec<serde_json::Value>, String) {
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tap_shows_live_events_of_a_component_before_and_after_redaction() {
    let port = free_port();
    let mut lumen = Lumen::start(&format!(
        "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n\
         [sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{{dir}}/audit.log\"\npoll_interval_ms = 20\n\
         [transforms.gdpr]\ntype = \"redact\"\ninputs = [\"audit\"]\nhmac_key = \"k\"\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"gdpr\"]\npath = \"{{dir}}/out.ndjson\"\n"
    ));
    lumen.wait_for_log("api: serving", Duration::from_secs(20));
    // An unknown component: the running ones are named, exit 2 (they are
    // known once the topology has started).
    let start = Instant::now();
    loop {
        let (code, lines, err) = output(tap(port, &["nope"]));
        assert_eq!(code, 2, "{err}");
        assert!(lines.is_empty());
        assert!(err.contains("no running component `nope`"), "{err}");
        if err.contains("audit, gdpr, out") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{err}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The redact transform's output (ECS) and the source's (OCSF), at once.
    let after = tap(port, &["gdpr", "--limit", "3"]);
    let before = tap(port, &["audit", "--limit", "3", "--schema", "ocsf"]);
    let sink = tap(port, &["out", "--limit", "3"]);
    std::thread::sleep(Duration::from_millis(500));
    append_audit(&lumen.path("audit.log"), (0..3).map(|i| format!("tap-{i}")));
    let (code, redacted, err) = output(after);
    assert_eq!(code, 0, "{err}");
    assert_eq!(redacted.len(), 3, "{err}");
    for (i, e) in redacted.iter().enumerate() {
        assert_eq!(e["event"]["id"], format!("tap-{i}"));
        let user = e["user"]["name"].as_str().unwrap();
        assert!(user != "alice" && user.len() == 32, "pseudonymized: {user}");
    }
    let (code, raw, err) = output(before);
    assert_eq!(code, 0, "{err}");
    assert_eq!(raw.len(), 3);
    assert!(raw
        .iter()
        .all(|e| e["class_uid"] == 6003 && e["actor"]["user"]["name"] == "alice"));
    let (code, at_sink, err) = output(sink);
    assert_eq!(code, 0, "{err}");
    assert_eq!(at_sink.len(), 3);
    assert_eq!(at_sink[0]["user"]["name"], redacted[0]["user"]["name"]);
    // The API itself: a bad query and a wrong method, refused with the reason.
    let http = http_client();
    let r = http
        .get(format!("http://127.0.0.1:{port}/tap/gdpr?limit=0"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("bad query parameter `limit=0`"));
    let r = http
        .post(format!("http://127.0.0.1:{port}/tap/gdpr"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    // Bad query: refused with the reason.
    let r = Command::new(LUMEN)
        .args([
            "tap",
            "gdpr",
            "--schema",
            "xml",
            "--address",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    assert!(log
        .iter()
        .any(|l| l.contains("tap opened") && l.contains("gdpr")));
}

#[test]
fn tap_without_a_running_lumen_says_where_it_looked() {
    let port = free_port();
    let (code, _, err) = output(tap(port, &["audit"]));
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("cannot reach Lumen's API at 127.0.0.1:{port}")),
        "{err}"
    );
}

/// This host's address on its default route (not loopback).
fn outward_ip() -> std::net::IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.1:9").unwrap();
    let ip = s.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

/// Beyond loopback a tap is refused unless `allow_remote_tap`; the rest of
/// the API answers as before.
#[test]
fn tap_is_refused_to_other_hosts_unless_allowed() {
    let ip = outward_ip();
    let http = http_client();
    for allow in [false, true] {
        let port = free_port();
        let mut lumen = Lumen::start(&format!(
            "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"0.0.0.0:{port}\"\nallow_remote_tap = {allow}\n\
             [sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{{dir}}/audit.log\"\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"audit\"]\npath = \"{{dir}}/out.ndjson\"\n"
        ));
        lumen.wait_for_log("api: serving", Duration::from_secs(20));
        let url = |p: &str| format!("http://{ip}:{port}{p}");
        let start = Instant::now();
        while http
            .get(url("/ready"))
            .send()
            .map(|r| r.status().as_u16())
            .ok()
            != Some(200)
        {
            assert!(start.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            http.get(url("/metrics")).send().unwrap().status().as_u16(),
            200
        );
        let r = http.get(url("/tap/audit")).send().unwrap();
        if allow {
            assert_eq!(r.status().as_u16(), 200);
        } else {
            assert_eq!(r.status().as_u16(), 403);
            assert!(r.text().unwrap().contains("allow_remote_tap"));
        }
        let (status, _) = lumen.stop();
        assert!(status.success());
    }
}
