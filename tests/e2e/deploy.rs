//! The deployment files: `docker-compose.yml` against the Compose Specification's JSON Schema
//! (`tests/reference/compose/compose-spec.json`; there is no Docker engine here), and the
//! Kubernetes manifests parsed and cross-checked — what one names, another defines.

use crate::support::LUMEN;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The strings of a list (`["a", "b"]`), or the `name` of each element
/// (`[{name: a}, …]`) with `key = Some("name")`.
fn strings<'a>(list: &'a Value, key: Option<&str>) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .filter_map(|v| key.map_or(v, |k| &v[k]).as_str())
        .collect()
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn docker_compose_follows_the_compose_specification_with_the_measured_privileges() {
    let spec: Value =
        serde_json::from_str(&read(&repo("tests/reference/compose/compose-spec.json"))).unwrap();
    let v = jsonschema::draft7::new(&spec).unwrap();
    let compose: Value = serde_saphyr::from_str(&read(&repo("docker-compose.yml"))).unwrap();
    let found = errors(&v, &compose);
    assert!(found.is_empty(), "{found:#?}");
    // The schema is not vacuous: a malformed service is refused.
    let mut broken = compose.clone();
    broken["services"]["lumen"]["cap_add"] = Value::from(7);
    broken["services"]["lumen"]["unknown_key"] = Value::from(true);
    assert!(errors(&v, &broken).len() >= 2);
    // What it promises: exactly the eBPF source's capabilities, not privileged, the host's
    // pid namespace, BTF and the cgroup tree read-only, Elasticsearch + Kibana with security
    // on, passwords from the environment, the optional profiles.
    let s = &compose["services"];
    let lumen = &s["lumen"];
    assert_eq!(lumen["cap_drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        lumen["cap_add"],
        serde_json::json!(["BPF", "PERFMON", "SYS_PTRACE"])
    );
    assert_eq!(lumen["pid"], "host");
    assert!(lumen.get("privileged").is_none_or(|p| p == false));
    let volumes = strings(&lumen["volumes"], None);
    for mount in [
        "/sys/kernel/btf:/sys/kernel/btf:ro",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
    ] {
        assert!(volumes.contains(&mount), "{mount} in {volumes:?}");
    }
    let es_env = strings(&s["elasticsearch"]["environment"], None);
    assert!(es_env.contains(&"xpack.security.enabled=true"));
    assert!(es_env.contains(&"ELASTIC_PASSWORD=${ELASTIC_PASSWORD}"));
    assert!(s["kibana"]["image"]
        .as_str()
        .unwrap()
        .starts_with("docker.elastic.co/kibana/"));
    assert_eq!(s["kafka"]["profiles"], serde_json::json!(["kafka"]));
    assert_eq!(s["otel-collector"]["profiles"], serde_json::json!(["otel"]));
    // The config it runs ships in the image, and the files it mounts exist.
    let command = lumen["command"].as_array().unwrap();
    assert!(command
        .iter()
        .any(|c| c.as_str().is_some_and(|c| c.contains("elk-sidecar.toml"))));
    assert!(repo("config/elk-sidecar.toml").exists());
    assert!(repo("deploy/otel-collector.yaml").exists());
    assert!(repo("Dockerfile").exists() && repo(".env.example").exists());
}

#[test]
fn kubernetes_manifests_parse_and_reference_what_exists() {
    let mut objects: Vec<Value> = Vec::new();
    let dir = repo("deploy/kubernetes");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&read(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for d in docs {
            assert!(
                d["apiVersion"].is_string() && d["kind"].is_string(),
                "{}: {d}",
                path.display()
            );
            objects.push(d);
        }
    }
    let find = |kind: &str| -> &Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let ds = find("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let sa = find("ServiceAccount");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(pod["hostPID"], true);
    // RBAC: the binding gives the service account the role that reads pods.
    let role = find("ClusterRole");
    let binding = find("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["namespace"],
        sa["metadata"]["namespace"]
    );
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["pods"]));
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list", "watch"])
    );
    // The container: measured capabilities only, probes on the API.
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["BPF", "PERFMON", "SYS_PTRACE"])
    );
    assert_eq!(sc["privileged"], false);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    let port_names = strings(&c["ports"], Some("name"));
    // Volumes named by mounts exist; the ConfigMap has the key the mount reads.
    let volumes = pod["volumes"].as_array().unwrap();
    for m in c["volumeMounts"].as_array().unwrap() {
        assert!(volumes.iter().any(|v| v["name"] == m["name"]), "volume {m}");
    }
    let cm_volume = volumes
        .iter()
        .find(|v| v.get("configMap").is_some())
        .unwrap();
    let cm = objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap" && o["metadata"]["name"] == cm_volume["configMap"]["name"]
        })
        .unwrap_or_else(|| panic!("no ConfigMap {}", cm_volume["configMap"]["name"]));
    let key = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == cm_volume["name"])
        .and_then(|m| m["subPath"].as_str())
        .unwrap();
    let config = cm["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap key {key}"));
    // The programs are handed to the next pod through the node's bpffs.
    assert!(config.contains("pin_path = \"/sys/fs/bpf/lumen/kernel\""));
    let bpffs = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/sys/fs/bpf")
        .expect("bpffs mounted");
    assert_ne!(bpffs["readOnly"], true);
    let host = volumes.iter().find(|v| v["name"] == bpffs["name"]).unwrap();
    assert_eq!(host["hostPath"]["path"], "/sys/fs/bpf");
    // The Service selects the DaemonSet's pods and targets its named ports.
    let svc = find("Service");
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "selector {k}");
    }
    for p in svc["spec"]["ports"].as_array().unwrap() {
        let target = p["targetPort"].as_str().unwrap();
        assert!(port_names.contains(&target), "targetPort {target}");
    }
    // The env the config interpolates is set by the DaemonSet.
    let env = strings(&c["env"], Some("name"));
    for var in [
        "NODE_NAME",
        "ES_URL",
        "ES_API_KEY",
        "LUMEN_REDACT_KEY",
        "AUDIT_WEBHOOK_TOKEN",
    ] {
        assert!(config.contains(&format!("${{{var}}}")), "{var} used");
        assert!(env.contains(&var), "{var} set");
    }
    // The config validates (the TLS files and secrets as placeholders).
    let tmp = tempfile::tempdir().unwrap();
    let tls = tmp.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["lumen.lumen.svc".into()]).unwrap();
    std::fs::write(tls.join("tls.crt"), ca.cert.pem()).unwrap();
    std::fs::write(tls.join("tls.key"), ca.signing_key.serialize_pem()).unwrap();
    let path = tmp.path().join("lumen.toml");
    std::fs::write(
        &path,
        config.replace("/etc/lumen/tls", &tls.display().to_string()),
    )
    .unwrap();
    let mut cmd = Command::new(LUMEN);
    cmd.args(["validate", "--config"]).arg(&path);
    for var in [
        "NODE_NAME",
        "ES_API_KEY",
        "LUMEN_REDACT_KEY",
        "AUDIT_WEBHOOK_TOKEN",
    ] {
        cmd.env(var, "placeholder");
    }
    cmd.env("ES_URL", "https://elasticsearch:9200");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The API server side: the audit policy, and the webhook kubeconfig pointing at the
    // Service, on the port and path the webhook source listens on.
    let policy = find("Policy");
    assert_eq!(policy["apiVersion"], "audit.k8s.io/v1");
    let kubeconfig = find("Config");
    let server = kubeconfig["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap();
    let want = format!(
        "https://{}.{}.svc:8443/audit",
        svc["metadata"]["name"].as_str().unwrap(),
        svc["metadata"]["namespace"].as_str().unwrap()
    );
    assert_eq!(server, want);
    assert!(config.contains("address = \"0.0.0.0:8443\"") && config.contains("path = \"/audit\""));
}

/// The aggregator tier's Deployment: an unprivileged workload (no host
/// namespaces, no capabilities, no API token) whose ConfigMap holds a
/// config that validates, with every variable it reads set.
#[test]
fn the_aggregator_deployment_is_unprivileged_and_its_config_validates() {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&read(&repo("deploy/kubernetes/aggregator.yaml"))).unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(pod.get("hostPID").is_none() && pod.get("hostNetwork").is_none());
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert!(c["securityContext"]["capabilities"].get("add").is_none());
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v.get("configMap").is_some())
        .unwrap();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == volume["configMap"]["name"])
        .unwrap();
    let config = cm["data"]["aggregator.toml"].as_str().unwrap();
    assert!(config.contains("type = \"kafka\""));
    let env = strings(&c["env"], Some("name"));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("aggregator.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(LUMEN);
    cmd.args(["validate", "--config"]).arg(&path);
    for var in [
        "KAFKA_BOOTSTRAP_SERVERS",
        "ES_URL",
        "ES_API_KEY",
        "SPLUNK_HEC_URL",
        "SPLUNK_HEC_TOKEN",
        "LUMEN_REDACT_KEY",
    ] {
        assert!(config.contains(&format!("${{{var}}}")), "{var} used");
        assert!(env.contains(&var), "{var} set");
        cmd.env(var, "placeholder");
    }
    cmd.env("ES_URL", "https://elasticsearch:9200");
    cmd.env("SPLUNK_HEC_URL", "https://splunk:8088");
    cmd.env("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
