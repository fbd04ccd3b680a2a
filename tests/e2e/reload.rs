//! SIGHUP through the binary: a good config is applied (what changed is
//! rebuilt, what did not keeps running, no event is lost on the way), a bad
//! one is refused and the running topology kept.

use crate::support::{
    append_audit, audit_line, free_port, read_ndjson, try_scrape_text, wait_for_events, Lumen,
};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

const SOURCE: &str = "data_dir = \"{dir}/data\"\n[api]\naddress = \"127.0.0.1:PORT\"\n\
     [sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{dir}/audit.log\"\npoll_interval_ms = 20\n";

fn config(port: u16, sinks: &str) -> String {
    format!("{}{sinks}", SOURCE.replace("PORT", &port.to_string()))
}

fn file_sink(id: &str, schema: &str) -> String {
    format!(
        "[sinks.{id}]\ntype = \"file\"\ninputs = [\"audit\"]\npath = \"{{dir}}/{id}.ndjson\"\nschema = \"{schema}\"\n"
    )
}

fn append(lumen: &Lumen, ids: std::ops::Range<usize>) {
    append_audit(&lumen.path("audit.log"), ids.map(|i| format!("id-{i:05}")));
}

/// The audit ids in a file sink's output, ECS or OCSF.
fn ids(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["event"]["id"]
                .as_str()
                .or(e["metadata"]["uid"].as_str())
                .unwrap_or_else(|| panic!("no audit id in {e}"))
                .to_owned()
        })
        .collect()
}

/// Lumen on `config`, once sink `sink` has written events `0..n`.
fn running_with(config: &str, sink: &str, n: usize) -> Lumen {
    let lumen = Lumen::start(config);
    append(&lumen, 0..n);
    wait_for_events(
        &lumen.path(&format!("{sink}.ndjson")),
        Duration::from_secs(20),
        |e| e.len() >= n,
    );
    lumen
}

fn rewrite(lumen: &Lumen, config: &str) {
    let text = config.replace("{dir}", &lumen.dir.path().display().to_string());
    std::fs::write(lumen.path("lumen.toml"), text).unwrap();
}

fn metric(port: u16, series: &str) -> Option<f64> {
    try_scrape_text(port)?
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn wait_metric(port: u16, series: &str, want: f64) {
    let start = Instant::now();
    while metric(port, series) != Some(want) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{series} never became {want}: {:?}",
            metric(port, series)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_applies_a_good_config_rebuilding_only_what_changed_without_losing_events() {
    let port = free_port();
    let before = config(port, &(file_sink("out", "ecs") + &file_sink("keep", "ecs")));
    let mut lumen = Lumen::start(&before);
    append(&lumen, 0..5);
    wait_for_events(&lumen.path("keep.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 5
    });
    wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 5
    });
    // `out` changes schema, `extra` is new, `keep` is untouched; events are
    // in flight while the reload runs.
    let after = config(
        port,
        &(file_sink("out", "ocsf") + &file_sink("keep", "ecs") + &file_sink("extra", "ocsf")),
    );
    rewrite(&lumen, &after);
    append(&lumen, 5..3005);
    lumen.signal(libc::SIGHUP);
    lumen.wait_for_log("reload applied", Duration::from_secs(20));
    append(&lumen, 3005..3010);
    let want: BTreeSet<String> = (0..3010).map(|i| format!("id-{i:05}")).collect();
    for sink in ["out", "keep"] {
        let events = wait_for_events(
            &lumen.path(&format!("{sink}.ndjson")),
            Duration::from_secs(30),
            |e| e.len() >= 3010,
        );
        let got = ids(&events);
        assert_eq!(got.len(), 3010, "{sink}: every event once");
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want, "{sink}");
    }
    // `out` wrote ECS before and OCSF after; the last events are OCSF.
    let out = read_ndjson(&lumen.path("out.ndjson"));
    assert!(out[0].get("ecs").is_some(), "{}", out[0]);
    assert!(out[3009].get("class_uid").is_some(), "{}", out[3009]);
    // `keep` was not rebuilt: ECS throughout, its counters not reset.
    let keep = read_ndjson(&lumen.path("keep.ndjson"));
    assert!(keep.iter().all(|e| e.get("ecs").is_some()));
    wait_metric(
        port,
        "lumen_component_sent_events_total{component_id=\"keep\",component_kind=\"sink\",component_type=\"file\"}",
        3010.0,
    );
    // The new sink reads from the reload on: the source was not rebuilt, so
    // nothing is read twice.
    let extra = wait_for_events(&lumen.path("extra.ndjson"), Duration::from_secs(20), |e| {
        ids(e).contains(&"id-03009".to_owned())
    });
    let extra_ids = ids(&extra);
    assert_eq!(
        extra_ids.iter().collect::<BTreeSet<_>>().len(),
        extra_ids.len(),
        "no duplicates"
    );
    assert!(
        !extra_ids.contains(&"id-00000".to_owned()),
        "not re-read from the start"
    );
    wait_metric(port, "lumen_config_reloads_total{outcome=\"applied\"}", 1.0);
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let applied = log
        .iter()
        .find(|l| l.contains("reload applied"))
        .unwrap_or_else(|| panic!("{}", log.join("\n")));
    assert!(
        applied.contains(r#"added=["extra"] changed=["out"] removed=[]"#),
        "only what changed is rebuilt: {applied}"
    );
}

#[test]
fn sighup_with_a_bad_config_keeps_the_running_topology() {
    let port = free_port();
    let good = config(port, &file_sink("out", "ecs"));
    let mut lumen = running_with(&good, "out", 3);
    // Invalid: an unknown key, named with its place.
    rewrite(
        &lumen,
        &good.replace("schema = \"ecs\"", "schema = \"ecs\"\ncolour = \"red\""),
    );
    lumen.signal(libc::SIGHUP);
    lumen.wait_for_log("reload refused", Duration::from_secs(20));
    let refused = lumen
        .log()
        .into_iter()
        .find(|l| l.contains("reload refused"))
        .unwrap();
    assert!(
        refused.contains("lumen.toml:") && refused.contains("unknown field `colour`"),
        "{refused}"
    );
    // Valid, but data_dir cannot move while Lumen runs.
    rewrite(&lumen, &good.replace("{dir}/data", "{dir}/elsewhere"));
    lumen.signal(libc::SIGHUP);
    wait_metric(
        port,
        "lumen_config_reloads_total{outcome=\"rejected\"}",
        2.0,
    );
    assert!(
        lumen
            .log()
            .iter()
            .any(|l| l.contains("data_dir cannot change while Lumen runs")),
        "{}",
        lumen.log().join("\n")
    );
    // The old topology still runs, ECS as before; nothing was rebuilt.
    append(&lumen, 3..6);
    let events = wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 6
    });
    assert!(events.iter().all(|e| e.get("ecs").is_some()));
    assert_eq!(ids(&events).len(), 6);
    assert_eq!(
        metric(port, "lumen_config_reloads_total{outcome=\"applied\"}"),
        Some(0.0)
    );
    assert!(!lumen.log().iter().any(|l| l.contains("reload applied")));
    // The same file, unchanged: nothing to do.
    rewrite(&lumen, &good);
    lumen.signal(libc::SIGHUP);
    wait_metric(
        port,
        "lumen_config_reloads_total{outcome=\"unchanged\"}",
        1.0,
    );
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
}

/// A network sink rebuilt while its receiver is down: the old instance
/// keeps what it held and delivers it when the receiver is back, beside the
/// new instance; every event arrives, once.
#[test]
fn a_rebuilt_sink_still_delivers_what_it_held_when_its_receiver_was_down() {
    use crate::network_sinks::peers::elasticsearch_peer::{EsPeer, Fault};
    let rt = crate::network_sinks::runtime();
    let es = rt.block_on(EsPeer::start(None));
    let port = free_port();
    let sink = |max_events: usize| {
        format!(
            "[sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"audit\"]\nendpoints = [\"{}\"]\n\
             healthcheck = false\ninstall_templates = false\nbatch.timeout_secs = 0.05\n\
             batch.max_events = {max_events}\nrequest.retry_initial_backoff_secs = 0.05\n\
             request.retry_max_duration_secs = 0.1\n",
            es.url()
        )
    };
    let mut lumen = Lumen::start(&config(port, &sink(100)));
    append(&lumen, 0..3);
    let arrived = |n: usize, lumen: &Lumen| {
        let start = Instant::now();
        while es.arrivals().len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} of {n} arrived: {:?}",
                es.arrivals().len(),
                lumen.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    arrived(3, &lumen);
    // Down: the sink holds what comes now.
    es.with(|s| {
        s.faults.clear();
        s.faults
            .extend(std::iter::repeat_n(Fault::Status(503, None), 1_000_000));
    });
    append(&lumen, 3..8);
    let held = Instant::now();
    while metric(port, "lumen_component_healthy{component_id=\"es\",component_kind=\"sink\",component_type=\"elasticsearch\"}") != Some(0.0) {
        assert!(held.elapsed() < Duration::from_secs(20), "the sink never failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Rebuilt (another batch size) while it holds them; the reload does not
    // wait for the receiver.
    rewrite(&lumen, &config(port, &sink(7)));
    lumen.signal(libc::SIGHUP);
    lumen.wait_for_log("reload applied", Duration::from_secs(10));
    append(&lumen, 8..12);
    es.with(|s| s.faults.clear());
    arrived(12, &lumen);
    std::thread::sleep(Duration::from_millis(300));
    let arrivals = es.arrivals();
    for i in 0..12 {
        assert_eq!(
            arrivals.get(&format!("id-{i:05}")),
            Some(&1),
            "{arrivals:?}"
        );
    }
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
}

/// Source, transform and a disk-buffered sink all rebuilt at once, with
/// events in flight: the file source goes on from its checkpoint, the new
/// redaction key applies from the reload on, the disk buffer is handed
/// over; every event arrives once.
#[test]
fn a_source_a_transform_and_a_disk_buffered_sink_rebuilt_together_lose_and_repeat_nothing() {
    let port = free_port();
    let topology = |poll: u32, key: &str, schema: &str| {
        format!(
            "data_dir = \"{{dir}}/data\"\n[api]\naddress = \"127.0.0.1:{port}\"\n\
             [sources.audit]\ntype = \"k8s_audit_file\"\npath = \"{{dir}}/audit.log\"\npoll_interval_ms = {poll}\n\
             [transforms.gdpr]\ntype = \"redact\"\ninputs = [\"audit\"]\nhmac_key = \"{key}\"\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"gdpr\"]\npath = \"{{dir}}/out.ndjson\"\nschema = \"{schema}\"\n\
             buffer.type = \"disk\"\nbuffer.max_size = 268435488\n"
        )
    };
    let mut lumen = Lumen::start(&topology(20, "first-key", "ecs"));
    append(&lumen, 0..5);
    let before = wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 5
    });
    let first = before[0]["user"]["name"].as_str().unwrap().to_owned();
    rewrite(&lumen, &topology(30, "second-key", "ocsf"));
    append(&lumen, 5..2005);
    lumen.signal(libc::SIGHUP);
    lumen.wait_for_log("reload applied", Duration::from_secs(20));
    append(&lumen, 2005..2010);
    let events = wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(30), |e| {
        ids(e).contains(&"id-02009".to_owned())
    });
    let got = ids(&events);
    let want: BTreeSet<String> = (0..2010).map(|i| format!("id-{i:05}")).collect();
    assert_eq!(got.len(), 2010, "every event once");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
    // The last event went through the new redactor, in the new schema.
    let last = &events[2009];
    let second = last["actor"]["user"]["name"].as_str().unwrap();
    assert!(
        second.len() == 32 && second != first && second != "alice",
        "{last}"
    );
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let applied = log.iter().find(|l| l.contains("reload applied")).unwrap();
    assert!(
        applied.contains(r#"changed=["audit", "gdpr", "out"]"#),
        "{applied}"
    );
}

/// Key rotation through a secret file: the config's text stays the same,
/// the key file gets a new key, SIGHUP: the redact transform (and only it)
/// is rebuilt, and pseudonyms change from then on.
#[test]
fn a_secret_file_with_new_content_rebuilds_its_component_on_sighup() {
    let port = free_port();
    let config = format!(
        "{}[transforms.gdpr]\ntype = \"redact\"\ninputs = [\"audit\"]\nhmac_key = {{ file = \"{{dir}}/hmac.key\" }}\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"gdpr\"]\npath = \"{{dir}}/out.ndjson\"\nschema = \"ecs\"\n",
        SOURCE.replace("PORT", &port.to_string())
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hmac.key"), "the-first-key\n").unwrap();
    let mut lumen = Lumen::start_in(dir, &config);
    append(&lumen, 0..3);
    let before = wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 3
    });
    let first = before[0]["user"]["name"].as_str().unwrap().to_owned();
    assert_eq!(first.len(), 32, "a pseudonym: {}", before[0]);
    std::fs::write(lumen.path("hmac.key"), "the-second-key\n").unwrap();
    lumen.signal(libc::SIGHUP);
    lumen.wait_for_log("reload applied", Duration::from_secs(20));
    append(&lumen, 3..6);
    let events = wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 6
    });
    assert_eq!(ids(&events).len(), 6, "every event once");
    let after = events[5]["user"]["name"].as_str().unwrap();
    assert!(after.len() == 32 && after != first, "{}", events[5]);
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let applied = log.iter().find(|l| l.contains("reload applied")).unwrap();
    assert!(applied.contains(r#"changed=["gdpr"]"#), "{applied}");
    assert!(
        !log.iter()
            .any(|l| l.contains("the-first-key") || l.contains("the-second-key")),
        "a key never appears in the log"
    );
}

/// A changed sink whose new config cannot start (its file would be inside
/// a file) runs its old config again; the reload is reported
/// as failed and the events keep coming, to the old file.
#[test]
fn a_component_whose_new_config_does_not_start_runs_its_old_one() {
    let port = free_port();
    let good = config(port, &file_sink("out", "ecs"));
    let mut lumen = running_with(&good, "out", 3);
    rewrite(
        &lumen,
        &good.replace("{dir}/out.ndjson", "{dir}/audit.log/out.ndjson"),
    );
    lumen.signal(libc::SIGHUP);
    wait_metric(port, "lumen_config_reloads_total{outcome=\"failed\"}", 1.0);
    let log = lumen.log().join("\n");
    assert!(
        log.contains("reload failed") && log.contains("starting sink `out` (file)"),
        "{log}"
    );
    assert!(log.contains("running with its old config"), "{log}");
    append(&lumen, 3..6);
    let events = wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 6
    });
    assert_eq!(ids(&events).len(), 6, "each once, in the old file");
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
}

/// An id that was a transform becomes a sink while the transform holds
/// events (its downstream, an Elasticsearch sink whose receiver answers
/// 503, holds the pipeline back): the old transform drains what it held
/// into its downstream's new instance; every event arrives once.
#[test]
fn a_transform_that_becomes_a_sink_drains_what_it_held_downstream() {
    use crate::network_sinks::peers::elasticsearch_peer::{EsPeer, Fault};
    let rt = crate::network_sinks::runtime();
    let es = rt.block_on(EsPeer::start(None));
    let port = free_port();
    let es_sink = |input: &str| {
        format!(
            "[sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"{input}\"]\nendpoints = [\"{}\"]\n\
             healthcheck = false\ninstall_templates = false\nbatch.timeout_secs = 0.05\n\
             batch.max_events = 10\nbuffer.type = \"memory\"\nbuffer.max_events = 10\n\
             request.retry_initial_backoff_secs = 0.05\nrequest.retry_max_duration_secs = 0.1\n",
            es.url()
        )
    };
    let transform = "[transforms.x]\ntype = \"redact\"\ninputs = [\"audit\"]\nhmac_key = \"k\"\n";
    let mut lumen = Lumen::start(&config(port, &(transform.to_owned() + &es_sink("x"))));
    es.with(|s| {
        s.faults
            .extend(std::iter::repeat_n(Fault::Status(503, None), 1_000_000));
    });
    append(&lumen, 0..1500);
    // Held back: the sink's buffer and the transform's channel fill up.
    let start = Instant::now();
    let series = "lumen_component_received_events_total{component_id=\"x\",component_kind=\"transform\",component_type=\"redact\"}";
    while metric(port, series).unwrap_or(0.0) < 50.0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?} {}",
            metric(port, series),
            lumen.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A burst in hand, blocked; more in its channel.
    std::thread::sleep(Duration::from_millis(200));
    // `x` is a file sink now; `es` reads the source itself.
    rewrite(
        &lumen,
        &config(port, &(es_sink("audit") + &file_sink("x", "ecs"))),
    );
    lumen.signal(libc::SIGHUP);
    lumen.wait_for_log("reload applied", Duration::from_secs(20));
    append(&lumen, 1500..1510);
    es.with(|s| s.faults.clear());
    let start = Instant::now();
    while es.arrivals().len() < 1510 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of 1510 arrived: {}",
            es.arrivals().len(),
            lumen.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let arrivals = es.arrivals();
    for i in 0..1510 {
        assert_eq!(arrivals.get(&format!("id-{i:05}")), Some(&1), "id-{i:05}");
    }
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    assert!(
        !log.iter().any(|l| l.contains("no longer sending")),
        "{}",
        log.join("\n")
    );
    let applied = log.iter().find(|l| l.contains("reload applied")).unwrap();
    assert!(applied.contains(r#"changed=["es", "x"]"#), "{applied}");
}

/// A sink and a source removed, a source added: the removed sink stops
/// receiving (its metrics go), the new source's events flow, the rest runs on.
#[test]
fn components_removed_and_added_by_a_reload() {
    let port = free_port();
    let second = "[sources.more]\ntype = \"k8s_audit_file\"\npath = \"{dir}/more.log\"\npoll_interval_ms = 20\n";
    let before = config(port, &(file_sink("out", "ecs") + &file_sink("gone", "ecs")));
    let mut lumen = running_with(&before, "gone", 3);
    wait_metric(
        port,
        "lumen_component_sent_events_total{component_id=\"gone\",component_kind=\"sink\",component_type=\"file\"}",
        3.0,
    );
    // `gone` removed; `more` added, read by `out` too.
    let after = config(port, &(second.to_owned() + &file_sink("out", "ecs")))
        .replace("inputs = [\"audit\"]", "inputs = [\"audit\", \"more\"]");
    rewrite(&lumen, &after);
    lumen.signal(libc::SIGHUP);
    lumen.wait_for_log("reload applied", Duration::from_secs(20));
    append(&lumen, 3..6);
    let mut f = std::fs::File::create(lumen.path("more.log")).unwrap();
    writeln!(f, "{}", audit_line("more-0", "get")).unwrap();
    drop(f);
    let events = wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        ids(e).contains(&"more-0".to_owned()) && e.len() >= 7
    });
    assert_eq!(ids(&events).len(), 7, "each once");
    assert_eq!(
        read_ndjson(&lumen.path("gone.ndjson")).len(),
        3,
        "gone gets nothing more"
    );
    assert_eq!(
        metric(port, "lumen_component_sent_events_total{component_id=\"gone\",component_kind=\"sink\",component_type=\"file\"}"),
        None,
        "a removed component's counters go"
    );
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let applied = log.iter().find(|l| l.contains("reload applied")).unwrap();
    assert!(
        applied.contains(r#"added=["more"] changed=["out"] removed=["gone"]"#),
        "{applied}"
    );
}

/// Rules reloaded: the config's text stays the same, a rule file gets a new
/// rule, SIGHUP: the detect transform (and only it) is rebuilt and findings
/// follow the new rule from then on.
#[test]
fn a_changed_rule_file_rebuilds_its_detect_transform_on_sighup() {
    let port = free_port();
    let rule = |id: &str, verb: &str| {
        format!(
            "[[rule]]\nid = \"{id}\"\ntitle = \"{verb} by alice\"\nkinds = [\"k8s_audit\"]\nattack = [\"T1613\"]\n\
             when = {{ all = [{{ field = \"user.name\", equals = \"alice\" }}, {{ field = \"kubernetes.audit.verb\", equals = \"{verb}\" }}] }}\n"
        )
    };
    let config = format!(
        "{}[transforms.detect]\ntype = \"detect\"\ninputs = [\"audit\"]\nbuiltin_rules = false\nsuppress_secs = 0\n\
         rule_files = [\"{{dir}}/rules/*.toml\"]\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"detect\"]\npath = \"{{dir}}/out.ndjson\"\nschema = \"ecs\"\n",
        SOURCE.replace("PORT", &port.to_string())
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/acme.toml"),
        rule("acme.first", "get"),
    )
    .unwrap();
    let mut lumen = Lumen::start_in(dir, &config);
    append(&lumen, 0..2);
    wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 4
    });
    std::fs::write(lumen.path("rules/acme.toml"), rule("acme.second", "get")).unwrap();
    lumen.signal(libc::SIGHUP);
    lumen.wait_for_log("reload applied", Duration::from_secs(20));
    append(&lumen, 2..4);
    let events = wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(20), |e| {
        e.len() >= 8
    });
    let rules: Vec<&str> = events
        .iter()
        .filter_map(|e| e["rule"]["id"].as_str())
        .collect();
    assert_eq!(
        rules,
        ["acme.first", "acme.first", "acme.second", "acme.second"],
        "each event's finding by the rules of its time"
    );
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let applied = log.iter().find(|l| l.contains("reload applied")).unwrap();
    assert!(applied.contains(r#"changed=["detect"]"#), "{applied}");
}
