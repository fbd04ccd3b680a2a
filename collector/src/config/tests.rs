use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str_with_env(text, "test.toml", &|k| {
        (k == "SET").then(|| "/from/env".to_owned())
    })
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const BASE: &str = r#"
[sources.kernel]
type = "ebpf"

[sources.audit]
type = "k8s_audit_file"
path = "/var/log/audit/*.log"

[sinks.out]
type = "file"
inputs = ["kernel", "audit"]
path = "/tmp/x.ndjson"
"#;

#[test]
fn the_embedded_default_is_valid() {
    let c = Config::from_str_with_env(crate::DEFAULT_CONFIG, "default", &|_| None).unwrap();
    assert!(c.sources.contains_key("kernel") && c.sources.contains_key("audit"));
    assert_eq!(c.sinks.len(), 2);
}

#[test]
fn a_valid_config_builds_the_graph() {
    let c = parse(BASE).unwrap();
    assert_eq!(c.graph().outputs_of("kernel"), ["out"]);
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/lumen"));
    let SinkConfig::File(f) = &c.sinks["out"] else {
        panic!()
    };
    assert_eq!(f.schema, lumen_schemas::Schema::Ocsf);
}

#[test]
fn unknown_keys_are_rejected_with_their_position() {
    let e = err(&BASE.replace(
        "path = \"/tmp/x.ndjson\"",
        "path = \"/tmp/x.ndjson\"\ncolour = \"red\"",
    ));
    assert!(e.starts_with("test.toml:13:1:"), "{e}");
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = err(&format!("log_level = \"debug\"\n{BASE}"));
    assert!(
        e.starts_with("test.toml:1:1:") && e.contains("unknown field `log_level`"),
        "{e}"
    );
}

#[test]
fn unknown_types_are_rejected() {
    let e = err(&BASE.replace("type = \"ebpf\"", "type = \"kprobe\""));
    assert!(e.starts_with("test.toml:3:8:"), "{e}");
    assert!(
        e.contains("unknown variant `kprobe`") && e.contains("`ebpf`"),
        "{e}"
    );
    let e = err(&BASE.replace("type = \"file\"", "type = \"splunk\""));
    assert!(e.contains("unknown variant `splunk`"), "{e}");
}

#[test]
fn inputs_naming_nothing_point_at_the_name() {
    let e = err(&BASE.replace("[\"kernel\", \"audit\"]", "[\"kernel\", \"audti\"]"));
    assert_eq!(
        e,
        "test.toml:11:22: [sinks.out]: input `audti` names no source or transform (known: audit, kernel)"
    );
}

#[test]
fn cycles_and_self_references_are_rejected() {
    let cyclic = format!(
        "{BASE}\n[transforms.a]\ntype = \"filter\"\ninputs = [\"b\"]\n\n[transforms.b]\ntype = \"filter\"\ninputs = [\"a\"]\n"
    );
    let e = err(&cyclic);
    assert!(e.contains("transforms form a cycle: a -> b -> a"), "{e}");
    assert!(e.starts_with("test.toml:14:1:"), "{e}");
    let own = format!("{BASE}\n[transforms.a]\ntype = \"filter\"\ninputs = [\"a\"]\n");
    assert!(err(&own).contains("cannot read its own output"));
}

#[test]
fn sinks_cannot_be_inputs_and_ids_are_unique() {
    let e = err(&format!(
        "{BASE}\n[sinks.more]\ntype = \"console\"\ninputs = [\"out\"]\n"
    ));
    assert!(e.contains("input `out` is a sink"), "{e}");
    let e = err(&format!(
        "{BASE}\n[transforms.out]\ntype = \"filter\"\ninputs = [\"kernel\"]\n"
    ));
    assert!(e.contains("component id `out` is used twice"), "{e}");
    let e = err(&BASE.replace("inputs = [\"kernel\", \"audit\"]", "inputs = []"));
    assert!(e.contains("[sinks.out]: `inputs` is empty"), "{e}");
    assert!(err("[sources.k]\ntype = \"ebpf\"\n").contains("no sinks"));
}

#[test]
fn environment_variables_are_interpolated() {
    let c = parse(
        &BASE
            .replace("/var/log/audit/*.log", "${SET}/*.log")
            .replace("/tmp/x.ndjson", "${UNSET:-/tmp/d.ndjson}"),
    )
    .unwrap();
    let SourceConfig::K8sAuditFile(a) = &c.sources["audit"] else {
        panic!()
    };
    assert_eq!(a.path, "/from/env/*.log");
    let SinkConfig::File(f) = &c.sinks["out"] else {
        panic!()
    };
    assert_eq!(f.path, PathBuf::from("/tmp/d.ndjson"));
    let e = err(&BASE.replace("/tmp/x.ndjson", "${MISSING_VAR}"));
    assert!(
        e.starts_with("test.toml:12:9:") && e.contains("`MISSING_VAR` is not set"),
        "{e}"
    );
}

#[test]
fn syntax_errors_name_line_and_column() {
    let e = err("[sources.k]\ntype = \"ebpf\n");
    assert!(e.starts_with("test.toml:2:"), "{e}");
    let e = err(&BASE.replace("read_from", "x").replace(
        "path = \"/var/log/audit/*.log\"",
        "path = \"/a\"\nread_from = \"middle\"",
    ));
    assert!(e.contains("unknown variant `middle`"), "{e}");
}

#[test]
fn resource_sampling_settings_that_cannot_work_are_refused_with_the_source_named() {
    for (setting, want) in [
        (
            "resources.interval_secs = 0",
            "2:1: [sources.kernel]: resources.interval_secs must be at least 0.1, not 0",
        ),
        (
            "resources.findings.cpu_throttled_ratio = 2.0",
            "2:1: [sources.kernel]: resources.findings.cpu_throttled_ratio must be in (0, 1], not 2",
        ),
    ] {
        let text = BASE.replacen("type = \"ebpf\"", &format!("type = \"ebpf\"\n{setting}"), 1);
        let e = err(&text);
        assert!(e.ends_with(want), "{e}\nwanted: {want}");
    }
}

#[test]
fn pin_paths_that_cannot_work_are_refused_before_the_kernel_is_asked() {
    for (setting, want) in [
        (
            "pin_path = \"/sys/fs/bpf/lumen.kernel\"",
            "2:1: [sources.kernel]: pin_path /sys/fs/bpf/lumen.kernel: bpffs refuses names with a dot",
        ),
        (
            "pin_path = \"lumen/kernel\"",
            "2:1: [sources.kernel]: pin_path lumen/kernel: must be an absolute path below a directory",
        ),
    ] {
        let text = BASE.replacen("type = \"ebpf\"", &format!("type = \"ebpf\"\n{setting}"), 1);
        let e = err(&text);
        assert!(e.ends_with(want), "{e}\nwanted: {want}");
    }
    let two = BASE
        .replacen(
            "type = \"ebpf\"",
            "type = \"ebpf\"\npin_path = \"/sys/fs/bpf/lumen/k\"",
            1,
        )
        .replace(
            "[sources.audit]",
            "[sources.more]\ntype = \"ebpf\"\npin_path = \"/sys/fs/bpf/lumen/k\"\n\n[sources.audit]",
        );
    let e = err(&two);
    assert!(
        e.ends_with("[sources.more]: pin_path /sys/fs/bpf/lumen/k is source `kernel`'s too: one pin_path per source"),
        "{e}"
    );
    // Apart, they are fine.
    parse(&two.replacen("lumen/k\"", "lumen/other\"", 1)).unwrap();
}

#[test]
fn network_sink_settings_that_cannot_work_are_refused_with_the_sink_named() {
    let base = "[sources.a]\ntype = \"k8s_audit_file\"\npath = \"/x\"\n\n";
    for (sink, want) in [
        (
            "[sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"a\"]\nendpoints = []\n",
            "5:1: [sinks.es]: endpoints: at least one URL is needed",
        ),
        (
            "[sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"a\"]\nendpoints = [\"http://es:9200\"]\nauth.strategy = \"basic\"\nauth.user = \"u\"\n",
            "5:1: [sinks.es]: auth.strategy = Basic needs auth.password",
        ),
        (
            "[sinks.hec]\ntype = \"splunk_hec\"\ninputs = [\"a\"]\nendpoint = \"splunk:8088\"\ndefault_token = \"t\"\n",
            "5:1: [sinks.hec]: endpoint: `splunk:8088` is not http(s)",
        ),
        (
            "[sinks.hec]\ntype = \"splunk_hec\"\ninputs = [\"a\"]\nendpoint = \"https://splunk:8088\"\ndefault_token = \"t\"\nrequest.concurrency = 0\n",
            "5:1: [sinks.hec]: request.concurrency must be at least 1",
        ),
    ] {
        let e = Config::from_str_with_env(&format!("{base}{sink}"), "c.toml", &|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with(want), "{e}\nwanted: {want}");
    }
}

#[test]
fn a_buffer_without_a_type_is_in_memory_and_its_keys_are_checked() {
    let c = parse(&format!("{BASE}buffer.max_events = 100\n")).unwrap();
    assert_eq!(
        *c.sinks["out"].buffer(),
        lumen_sinks::buffer::BufferConfig::Memory(lumen_sinks::buffer::MemoryBufferConfig {
            max_events: 100,
            when_full: lumen_sinks::buffer::WhenFull::Block,
        })
    );
    let disk = parse(&format!(
        "{BASE}buffer.type = \"disk\"\nbuffer.max_size = 1048576\n"
    ))
    .unwrap();
    assert!(disk.sinks["out"].buffer().is_disk());
    let e = err(&format!("{BASE}buffer.max_event = 100\n"));
    assert!(e.contains("max_event") && e.contains("test.toml"), "{e}");
    let e = err(&format!("{BASE}buffer.type = \"tape\"\n"));
    assert!(e.contains("tape"), "{e}");
}
