//! The default GDPR profile against a corpus of events seeded with personal
//! data in every kind of field: no seeded value may survive anywhere in the
//! output bytes (ECS, OCSF, and the disk buffer's encoding).

use super::*;
use lumen_schemas::event::{
    push, FileEvent, FileOperation, NetworkEvent, NetworkOp, ProcessActivity, ProcessEvent,
};
use lumen_schemas::time::Timestamp;
use lumen_schemas::Schema;

/// Every value below is personal data or a secret planted in the corpus.
const SEEDED: &[&str] = &[
    "jdoe-personal",
    "8f7e6d5c-uid-jdoe",
    "203.0.113.77",
    "jane@example.org",
    "tok3nVALUE123",
    "hunter2hunter2",
    "s3cretPass!",
    "adminpw",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "GB82 WEST 1234 5698 7654 32",
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlX3Rlc3Q",
    "dXNlcjpwYXNzd29yZDEyMw==",
    "AKIAIOSFODNN7EXAMPLE",
    "MIIEowIBAAKCAQEA",
    "2001:db8:85a3::8a2e:370:7334",
    "c2VjcmV0dmFsdWU=",
    "plainsecretvalue",
    "MyS3cretPw",
    "pa55word",
    "abcdefgh12345678",
    "jane.doe@corp.example",
    "198.51.100.23",
    "10.0.0.5",
    "mailme@example.net",
    "DE89 3704 0044 0532 0130 00",
    // kubectl exec argv in request URIs, and argv arrays in bodies.
    "ExecPw0rd1",
    "Pg1Secret9",
    "DashTok3n99",
    "UrlPw77",
    "tokEnc0ded99",
    "EscPw0rd42",
    "EphemPw55",
    "EphemKey777",
    "EphemInline8",
    "ProbeTok3n66",
];

fn redactor(key: &str) -> Redactor {
    let config: RedactConfig = toml::from_str("inputs = [\"x\"]").unwrap();
    Redactor::new(&config, key.as_bytes().to_vec()).unwrap()
}

fn audit(line: &str) -> Event {
    let a = k8s_audit::parse_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    Event::api_activity(a, Arc::default(), Timestamp(1))
}

const POD_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/pods?labelSelector=owner%3Djdoe-personal&token=tok3nVALUE123","verb":"create","user":{"username":"jdoe-personal","uid":"8f7e6d5c-uid-jdoe","groups":["dev"]},"sourceIPs":["203.0.113.77"],"userAgent":"kubectl/v1.30 (jane@example.org)","objectRef":{"resource":"pods","namespace":"prod","name":"web","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","metadata":{"name":"web","annotations":{"contact":"mailme@example.net","oncall":"+44 20 7946 0958","billing":"card 4111 1111 1111 1111, iban GB82 WEST 1234 5698 7654 32 or DE89 3704 0044 0532 0130 00","note":"Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==","aws":"AKIAIOSFODNN7EXAMPLE","peer":"2001:db8:85a3::8a2e:370:7334","sa":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlX3Rlc3Q","key":"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"}},"spec":{"containers":[{"name":"app","image":"app:1","args":["--password=s3cretPass!","mysql://admin:adminpw@db:3306/x"],"env":[{"name":"DB_PASSWORD","value":"hunter2hunter2"},{"name":"MODE","value":"prod"}]}]}},"requestReceivedTimestamp":"2026-11-29T10:00:00.000001Z","stageTimestamp":"2026-11-29T10:00:00.000002Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"dev\" of Role \"dev\" to User \"jdoe-personal\""}}"#;

fn pod_create() -> Event {
    audit(POD_CREATE)
}

const SECRET_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a-2","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets","verb":"create","user":{"username":"system:serviceaccount:ci:deployer","groups":[]},"sourceIPs":["10.1.2.3"],"objectRef":{"resource":"secrets","namespace":"prod","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Secret","metadata":{"name":"db","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"c2VjcmV0dmFsdWU=\"}}"}},"data":{"password":"c2VjcmV0dmFsdWU="},"stringData":{"x":"plainsecretvalue"}},"responseObject":{"kind":"Secret","metadata":{"name":"db"},"data":{"password":"c2VjcmV0dmFsdWU="}},"stageTimestamp":"2026-11-29T10:00:00.000002Z"}"#;

fn secret_create() -> Event {
    audit(SECRET_CREATE)
}

fn token_request() -> Event {
    audit(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a-3","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/serviceaccounts/app/token","verb":"create","user":{"username":"system:node:n1","groups":[]},"sourceIPs":["10.1.2.4"],"objectRef":{"resource":"serviceaccounts","subresource":"token","namespace":"prod","name":"app","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"responseObject":{"kind":"TokenRequest","status":{"token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlX3Rlc3Q","expirationTimestamp":"2026-11-29T11:00:00Z"}},"stageTimestamp":"2026-11-29T10:00:00.000002Z"}"#,
    )
}

/// `kubectl exec` requests: the command's argv as URL-encoded `command`
/// parameters (`%2D` for `-`, `%3D` for `=`, `+` for a space, `%40` …).
const EXEC_MYSQL: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"x-1","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/db/pods/mysql-0/exec?command=mysql\u0026command=-uroot\u0026command=%2DpExecPw0rd1\u0026container=mysql\u0026stdin=true\u0026stdout=true\u0026tty=true","verb":"create","user":{"username":"ops","groups":[]},"sourceIPs":["10.1.2.5"],"objectRef":{"resource":"pods","subresource":"exec","namespace":"db","name":"mysql-0","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":101},"stageTimestamp":"2026-11-29T10:00:00.000002Z"}"#;

const EXEC_FLAGS: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"x-2","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/db/pods/pg-0/exec?command=psql\u0026command=--password\u0026command=Pg1Secret9\u0026command=--token%3DDashTok3n99\u0026command=postgres%3A%2F%2Fadmin%3AUrlPw77%40db%3A5432%2Fx\u0026command=env\u0026command=API_TOKEN%3DtokEnc0ded99\u0026command=sh+-c\u0026stdout=true","verb":"create","user":{"username":"ops","groups":[]},"sourceIPs":["10.1.2.5"],"objectRef":{"resource":"pods","subresource":"exec","namespace":"db","name":"pg-0","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":101},"stageTimestamp":"2026-11-29T10:00:00.000002Z"}"#;

/// `&` unescaped (as some audit backends write it) and an attach.
const ATTACH_PLAIN: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x-3","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/db/pods/app-0/attach?command=app&command=--secret&command=EscPw0rd42&stdin=true","verb":"create","user":{"username":"ops","groups":[]},"sourceIPs":["10.1.2.5"],"objectRef":{"resource":"pods","subresource":"attach","namespace":"db","name":"app-0","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":101},"stageTimestamp":"2026-11-29T10:00:00.000002Z"}"#;

/// Ephemeral containers and an exec probe: argv as `command`/`args`
/// arrays. The second container is not mysql: its `-pKeepMe` stays.
const EPHEMERAL: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"x-4","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/db/pods/mysql-0/ephemeralcontainers","verb":"patch","user":{"username":"ops","groups":[]},"sourceIPs":["10.1.2.5"],"objectRef":{"resource":"pods","subresource":"ephemeralcontainers","namespace":"db","name":"mysql-0","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"Pod","spec":{"ephemeralContainers":[{"name":"debugger","image":"mysql:8","command":["mysql","-h","db"],"args":["-uroot","-pEphemPw55"]},{"name":"tool","image":"busybox","command":["app","--api-key","EphemKey777","--password=EphemInline8","-pKeepMe","-p","8080"],"livenessProbe":{"exec":{"command":["check","--token","ProbeTok3n66"]}}}]}},"stageTimestamp":"2026-11-29T10:00:00.000002Z"}"#;

fn process(exe: &str, args: &[&str], parent: &str) -> Process {
    let mut p = Process::default().with_text(exe, exe.rsplit('/').next().unwrap(), args);
    p.parent.argv = push(&mut p.text, parent);
    p.pid = 42;
    p
}

fn kernel(kind: EventKind) -> Event {
    Event {
        time: Timestamp(1),
        observed: Timestamp(1),
        host: Arc::default(),
        kind,
        redaction: Default::default(),
    }
}

fn mysql_exec() -> Event {
    kernel(EventKind::Process(Box::new(ProcessEvent {
        activity: ProcessActivity::Exec,
        process: process(
            "/usr/bin/mysql",
            &["mysql", "-uroot", "-pMyS3cretPw", "--host", "db"],
            "bash\0-c\0curl https://user:pa55word@api.example.com/x -H 'Authorization: Bearer abcdefgh12345678'",
        ),
        exit: None,
        exe: Default::default(),
    })))
}

fn file_write() -> Event {
    let mut p = process("/usr/bin/vi", &["vi"], "bash");
    let path = push(&mut p.text, "/home/jane.doe@corp.example/notes.txt");
    kernel(EventKind::File(Box::new(FileEvent {
        op: FileOperation::Open,
        process: p,
        path,
        new_path: Str::EMPTY,
        flags: 1,
        mode: None,
        uid: None,
        gid: None,
        sensitive: false,
    })))
}

fn connect() -> Event {
    kernel(EventKind::Network(Box::new(NetworkEvent {
        op: NetworkOp::Connect,
        process: process("/usr/bin/curl", &["curl", "https://example.com"], "bash"),
        result: 0,
        protocol: 6,
        local: "10.0.0.5:40000".parse().unwrap(),
        remote: Some("198.51.100.23:443".parse().unwrap()),
    })))
}

/// `line` inside an AKS diagnostic record: its `properties.log` an escaped
/// string or the object itself.
fn aks(line: &str, as_string: bool) -> Event {
    let log = if as_string {
        serde_json::to_string(line).unwrap()
    } else {
        line.to_owned()
    };
    audit(&format!(
        r#"{{"category":"kube-audit","operationName":"Microsoft.ContainerService/managedClusters/diagnosticLogs/Read","properties":{{"log":{log},"pod":"kube-apiserver-7f9c"}},"time":"2026-11-29T10:00:00Z"}}"#
    ))
}

/// A GKE Cloud Audit Logs entry carrying personal data where GKE puts it:
/// the principal, the caller's address and agent, the request body.
const GKE_POD_CREATE: &str = r#"{"insertId":"g-1","logName":"projects/shop/logs/cloudaudit.googleapis.com%2Factivity","operation":{"first":true,"id":"g-1","last":true,"producer":"k8s.io"},"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"jane.doe@corp.example"},"authorizationInfo":[{"granted":true,"permission":"io.k8s.core.v1.pods.create","resource":"core/v1/namespaces/prod/pods/web"}],"methodName":"io.k8s.core.v1.pods.create","request":{"@type":"core.k8s.io/v1.Pod","kind":"Pod","metadata":{"name":"web","annotations":{"contact":"mailme@example.net"}},"spec":{"containers":[{"name":"app","image":"app:1","env":[{"name":"DB_PASSWORD","value":"hunter2hunter2"}]}]}},"requestMetadata":{"callerIp":"198.51.100.23","callerSuppliedUserAgent":"kubectl/v1.30 (jane@example.org)"},"resourceName":"core/v1/namespaces/prod/pods/web","serviceName":"k8s.io","status":{}},"resource":{"labels":{"cluster_name":"c1","location":"europe-west1-b","project_id":"shop"},"type":"k8s_cluster"},"timestamp":"2026-11-29T10:00:00Z"}"#;

fn gke() -> Event {
    audit(GKE_POD_CREATE)
}

/// `line` as one log event of a CloudWatch subscription payload (EKS).
fn eks(line: &str) -> Event {
    let payload = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/eks/prod/cluster","logStream":"kube-apiserver-audit-1","logEvents":[{{"id":"1","timestamp":1790848800000,"message":{}}}]}}"#,
        serde_json::to_string(line).unwrap()
    );
    let mut out = Vec::new();
    k8s_audit::parse_record(&payload, k8s_audit::Format::Auto, &mut out);
    let a = out.pop().unwrap().unwrap();
    Event::api_activity(a, Arc::default(), Timestamp(1))
}

/// A finding whose evidence is `e`: redaction must reach into it.
fn finding_about(e: Event) -> Event {
    use lumen_schemas::event::{Finding, RuleInfo};
    Event {
        time: e.time,
        observed: e.observed,
        host: e.host.clone(),
        kind: EventKind::Finding(Box::new(Finding {
            rule: Arc::new(RuleInfo {
                id: "test.rule".into(),
                title: "a test rule".into(),
                ..RuleInfo::default()
            }),
            count: 1,
            first_seen: e.time,
            last_seen: e.time,
            evidence: Box::new(e),
        })),
        redaction: Default::default(),
    }
}

fn corpus() -> Vec<Event> {
    let events = events();
    let findings: Vec<Event> = events.iter().cloned().map(finding_about).collect();
    events.into_iter().chain(findings).collect()
}

fn events() -> Vec<Event> {
    vec![
        pod_create(),
        secret_create(),
        aks(POD_CREATE, true),
        aks(POD_CREATE, false),
        aks(SECRET_CREATE, true),
        token_request(),
        mysql_exec(),
        file_write(),
        connect(),
        audit(EXEC_MYSQL),
        audit(EXEC_FLAGS),
        audit(ATTACH_PLAIN),
        audit(EPHEMERAL),
        aks(EXEC_FLAGS, true),
        gke(),
        eks(POD_CREATE),
        eks(EXEC_FLAGS),
    ]
}

fn output_bytes(e: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    Schema::Ecs.encode(e, &mut out);
    out.push(b'\n');
    Schema::Ocsf.encode(e, &mut out);
    out.push(b'\n');
    lumen_schemas::codec::encode(e, &mut out);
    out
}

#[test]
fn the_seeded_corpus_really_carries_the_seeds() {
    let all: Vec<u8> = corpus().iter().flat_map(output_bytes).collect();
    for seed in SEEDED {
        assert!(
            memchr::memmem::find(&all, seed.as_bytes()).is_some(),
            "seed {seed:?} is not in the unredacted corpus: the test would prove nothing"
        );
    }
}

#[test]
fn the_default_profile_removes_every_seeded_value_from_every_output() {
    let r = redactor("test-key");
    for event in corpus() {
        let red = r
            .redacted(&event)
            .unwrap_or_else(|| panic!("{} unchanged", event.kind.name()));
        let bytes = output_bytes(&red);
        for seed in SEEDED {
            assert!(
                memchr::memmem::find(&bytes, seed.as_bytes()).is_none(),
                "{seed:?} survived in {}: {}",
                event.kind.name(),
                String::from_utf8_lossy(&bytes)
            );
        }
        // Still valid, still the same event.
        let mut ecs = Vec::new();
        Schema::Ecs.encode(&red, &mut ecs);
        let v: serde_json::Value = serde_json::from_slice(&ecs).unwrap();
        assert!(
            !red.redaction.is_empty(),
            "the event records what was redacted"
        );
        assert!(v["labels"]["lumen_redaction_rules"].is_string(), "{v}");
        assert_eq!(red.kind.name(), event.kind.name());
    }
}

#[test]
fn what_was_redacted_is_recorded_by_name_never_by_value() {
    let r = redactor("k");
    let red = r.redacted(&pod_create()).unwrap();
    let rules: Vec<&str> = red.redaction.rules.iter().map(|s| s.as_ref()).collect();
    for want in [
        "hash:user.name",
        "hash:user.id",
        "truncate_ip:source.ip",
        "detector:email",
        "detector:payment_card",
        "detector:jwt",
        "known_value",
    ] {
        assert!(rules.contains(&want), "{want} missing from {rules:?}");
    }
    let fields: Vec<&str> = red.redaction.fields.iter().map(|s| s.as_ref()).collect();
    assert!(
        fields.contains(&"user.name") && fields.contains(&"kubernetes.audit.requestObject"),
        "{fields:?}"
    );
    let secret = r.redacted(&secret_create()).unwrap();
    assert!(secret
        .redaction
        .rules
        .iter()
        .any(|r| r == "k8s:secret_data"));
    let mut ocsf = Vec::new();
    Schema::Ocsf.encode(&secret, &mut ocsf);
    let v: serde_json::Value = serde_json::from_slice(&ocsf).unwrap();
    let labels = v["metadata"]["labels"].as_array().unwrap();
    assert!(
        labels.iter().any(|l| l == "redaction_rule:k8s:secret_data"),
        "{labels:?}"
    );
    // The metrics count per rule.
    let by_rule = r.metrics.by_rule();
    assert_eq!(by_rule.get("k8s:secret_data"), Some(&1));
    // A second redact transform counts what it did, not what the first did.
    let again = redactor("other");
    let twice = again.redacted(&red).unwrap();
    assert!(twice.redaction.rules.iter().any(|r| r == "detector:email"));
    let by_rule = again.metrics.by_rule();
    assert_eq!(by_rule.get("hash:user.name"), Some(&1), "{by_rule:?}");
    assert_eq!(by_rule.get("detector:email"), None, "{by_rule:?}");
}

#[test]
fn events_without_personal_data_pass_through_untouched() {
    let r = redactor("k");
    let ls = kernel(EventKind::Process(Box::new(ProcessEvent {
        activity: ProcessActivity::Exec,
        process: process("/bin/ls", &["ls", "-la", "/tmp"], "bash"),
        exit: None,
        exe: Default::default(),
    })));
    assert!(r.redacted(&ls).is_none());
    let mut hosts = file_write();
    if let EventKind::File(f) = &mut hosts.kind {
        f.path = push(&mut f.process.text, "/etc/hosts");
    }
    assert!(r.redacted(&hosts).is_none());
}

#[test]
fn pseudonyms_are_stable_for_a_key_and_differ_across_keys() {
    let user = |r: &Redactor| -> String {
        let red = r.redacted(&pod_create()).unwrap();
        match &red.kind {
            EventKind::ApiActivity(a) => a.s(a.user.username).to_owned(),
            _ => unreachable!(),
        }
    };
    let a1 = user(&redactor("key-one"));
    let a2 = user(&redactor("key-one"));
    let b = user(&redactor("key-two"));
    assert_eq!(a1, a2, "same key, same pseudonym (correlation survives)");
    assert_ne!(a1, b, "another key, another pseudonym");
    assert_eq!(a1.len(), 32);
    // The pseudonym replaces the name wherever it appeared in the event.
    let red = redactor("key-one").redacted(&pod_create()).unwrap();
    let EventKind::ApiActivity(a) = &red.kind else {
        unreachable!()
    };
    assert!(
        a.original().contains(&format!("to User \\\"{a1}\\\"")),
        "{}",
        a.original()
    );
}

#[test]
fn aks_records_are_redacted_like_the_events_they_carry() {
    let r = redactor("k");
    let bare = r.redacted(&pod_create()).unwrap();
    let fields = |e: &Event| -> (String, String, Vec<String>) {
        let EventKind::ApiActivity(a) = &e.kind else {
            unreachable!()
        };
        let ips = a.strs(&a.source_ips).map(str::to_owned).collect();
        (
            a.s(a.user.username).to_owned(),
            a.s(a.user.uid).to_owned(),
            ips,
        )
    };
    for as_string in [true, false] {
        let red = r.redacted(&aks(POD_CREATE, as_string)).unwrap();
        assert_eq!(fields(&red), fields(&bare), "as_string: {as_string}");
        let EventKind::ApiActivity(a) = &red.kind else {
            unreachable!()
        };
        let w = a.wrapper.as_ref().expect("still an AKS record");
        assert_eq!(a.s(w.pod), "kube-apiserver-7f9c");
        assert_eq!(a.s(w.time), "2026-11-29T10:00:00Z");
        // The record is still one, its event inside.
        let v: serde_json::Value = serde_json::from_str(a.original()).unwrap();
        let log = &v["properties"]["log"];
        let inner: serde_json::Value = match log.as_str() {
            Some(text) => serde_json::from_str(text).unwrap(),
            None => log.clone(),
        };
        assert_eq!(inner["user"]["username"], fields(&bare).0.as_str());
        assert_eq!(log.is_string(), as_string);
        let rules: Vec<&str> = red.redaction.rules.iter().map(|s| s.as_ref()).collect();
        assert!(rules.contains(&"hash:user.name"), "{rules:?}");
        assert!(
            red.redaction
                .fields
                .iter()
                .any(|f| f == "kubernetes.audit.requestObject"),
            "paths are the event's, not the record's: {:?}",
            red.redaction.fields
        );
    }
}

#[test]
fn an_event_another_component_holds_is_copied_not_changed() {
    let r = redactor("k");
    let mut mine = Arc::new(pod_create());
    let theirs = mine.clone();
    assert!(r.redact(&mut mine));
    assert!(!Arc::ptr_eq(&mine, &theirs));
    let EventKind::ApiActivity(a) = &theirs.kind else {
        unreachable!()
    };
    assert_eq!(a.s(a.user.username), "jdoe-personal");
    assert!(theirs.redaction.is_empty());
    // Held alone, the event is changed where it is.
    let mut alone = Arc::new(pod_create());
    let before = Arc::as_ptr(&alone);
    assert!(r.redact(&mut alone));
    assert_eq!(Arc::as_ptr(&alone), before);
    assert!(!alone.redaction.is_empty());
}

#[test]
fn remembered_pseudonyms_are_the_computed_ones() {
    let r = redactor("key-one");
    let fresh = |v: &str| {
        let mut out = String::new();
        redactor("key-one").pseudonym(v, &mut out);
        out
    };
    let mut first = String::new();
    r.pseudonym("jdoe-personal", &mut first);
    assert_eq!(first, fresh("jdoe-personal"));
    // Past the cache's size (it starts over), and from it.
    for i in 0..PSEUDONYM_CACHE + 10 {
        let mut out = String::new();
        r.pseudonym(&format!("user-{i}"), &mut out);
        if i % 1000 == 0 {
            assert_eq!(out, fresh(&format!("user-{i}")));
        }
    }
    for _ in 0..2 {
        let mut again = String::new();
        r.pseudonym("jdoe-personal", &mut again);
        assert_eq!(again, first);
    }
    // A long value is not kept, and still right.
    let long = "x".repeat(PSEUDONYM_CACHE_VALUE + 1);
    let mut out = String::new();
    r.pseudonym(&long, &mut out);
    assert_eq!(out, fresh(&long));
    assert!(!r.pseudonyms.borrow().contains_key(long.as_str()));
}

#[test]
fn rules_by_path_and_actions_do_what_they_say() {
    let config: RedactConfig = toml::from_str(
        r#"inputs = ["x"]
detectors = []
[[rules]]
path = "requestObject.spec.containers[*].image"
action = "replace"
value = "redacted-image"
[[rules]]
field = "user.name"
action = "mask"
keep = 3
[[rules]]
path = "requestObject.metadata.annotations"
action = "drop"
"#,
    )
    .unwrap();
    let r = Redactor::new(&config, b"k".to_vec()).unwrap();
    let red = r.redacted(&pod_create()).unwrap();
    let EventKind::ApiActivity(a) = &red.kind else {
        unreachable!()
    };
    let v: serde_json::Value = serde_json::from_str(a.original()).unwrap();
    assert_eq!(
        v["requestObject"]["spec"]["containers"][0]["image"],
        "redacted-image"
    );
    assert_eq!(v["user"]["username"], "jdo****");
    assert!(v["requestObject"]["metadata"].get("annotations").is_none());
    assert_eq!(
        v["sourceIPs"][0], "203.0.113.77",
        "no rule for it in this profile"
    );
    assert_eq!(
        a.s(a.user.username),
        "jdo****",
        "typed fields agree with the original"
    );
}

#[test]
fn bad_rules_are_refused_with_the_reason() {
    let bad = |t: &str| {
        toml::from_str::<RedactConfig>(t)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate())
            .unwrap_err()
    };
    assert!(
        bad("inputs=[]\n[[rules]]\nfield = \"user.nam\"\naction = \"hash\"\n")
            .contains("unknown field `user.nam`")
    );
    assert!(
        bad("inputs=[]\n[[rules]]\nfield = \"source.ip\"\naction = \"hash\"\n")
            .contains("truncate_ip")
    );
    assert!(bad("inputs=[]\n[[rules]]\npath = \"a\"\naction = \"replace\"\n").contains("value"));
    assert!(bad("inputs=[]\n[[rules]]\naction = \"drop\"\n").contains("exactly one"));
}

#[test]
fn ip_truncation_keeps_the_network() {
    assert_eq!(
        truncate_ip("203.0.113.77".parse().unwrap()).to_string(),
        "203.0.113.0"
    );
    assert_eq!(
        truncate_ip("2001:db8:85a3:1:2:3:4:5".parse().unwrap()).to_string(),
        "2001:db8:85a3::"
    );
}

/// The fields of a redacted audit event, moved without a parse, are what a
/// parse of its redacted original gives: byte for byte in both schemas.
#[test]
fn moved_fields_agree_with_a_parse_of_the_redacted_original() {
    let sample = include_str!("../../../../config/samples/k8s-audit.log");
    let mut events: Vec<Event> = sample
        .lines()
        .filter_map(|l| k8s_audit::parse_line(l).ok())
        .map(|a| Event::api_activity(a, Arc::default(), Timestamp(1)))
        .collect();
    events.extend([pod_create(), secret_create(), token_request()]);
    events.extend([EXEC_MYSQL, EXEC_FLAGS, ATTACH_PLAIN, EPHEMERAL].map(audit));
    let r = redactor("k");
    let mut checked = 0;
    for e in &events {
        let Some(red) = r.redacted(e) else { continue };
        let EventKind::ApiActivity(a) = &red.kind else {
            unreachable!()
        };
        let parsed = k8s_audit::parse_line(a.original()).unwrap();
        let mut again = Event::api_activity(parsed, red.host.clone(), red.observed);
        again.time = red.time;
        again.redaction = red.redaction.clone();
        for schema in [Schema::Ecs, Schema::Ocsf] {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            schema.encode(&red, &mut x);
            schema.encode(&again, &mut y);
            assert_eq!(
                String::from_utf8_lossy(&x),
                String::from_utf8_lossy(&y),
                "{schema:?}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} events were redacted");
}

#[test]
fn token_reviews_lose_their_token_and_configmap_data_goes_when_asked() {
    let review = audit(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"a-4","stage":"ResponseComplete","requestURI":"/apis/authentication.k8s.io/v1/tokenreviews","verb":"create","user":{"username":"system:kube-proxy","groups":[]},"sourceIPs":["10.1.2.5"],"objectRef":{"resource":"tokenreviews","apiGroup":"authentication.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"TokenReview","spec":{"token":"opaque-token-value-123"}},"stageTimestamp":"2026-11-29T10:00:00.000002Z"}"#,
    );
    let red = redactor("k").redacted(&review).unwrap();
    assert!(!output_bytes(&red)
        .windows(22)
        .any(|w| w == b"opaque-token-value-123"));
    assert!(red
        .redaction
        .rules
        .iter()
        .any(|r| r == "k8s:serviceaccount_token"));

    let cm = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"a-5","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/configmaps","verb":"create","user":{"username":"system:admin","groups":[]},"sourceIPs":["10.1.2.6"],"objectRef":{"resource":"configmaps","namespace":"prod","name":"app","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ConfigMap","data":{"greeting":"internal-config-value"}},"stageTimestamp":"2026-11-29T10:00:00.000002Z"}"#;
    let kept = redactor("k").redacted(&audit(cm)).unwrap();
    assert!(
        output_bytes(&kept)
            .windows(21)
            .any(|w| w == b"internal-config-value"),
        "kept by default"
    );
    let config: RedactConfig =
        toml::from_str("inputs = [\"x\"]\nkubernetes.drop_configmap_data = true").unwrap();
    let dropped = Redactor::new(&config, b"k".to_vec())
        .unwrap()
        .redacted(&audit(cm))
        .unwrap();
    assert!(!output_bytes(&dropped)
        .windows(21)
        .any(|w| w == b"internal-config-value"));
    assert!(dropped
        .redaction
        .rules
        .iter()
        .any(|r| r == "k8s:configmap_data"));
}

/// The argv of `kubectl exec` URIs and of body arrays: each secret is gone
/// in every form it could take (as written, URL-encoded, with `+`), what is
/// not a secret is kept, and the URI still says what was run.
#[test]
fn exec_command_lines_lose_their_secrets_in_every_encoding() {
    let r = redactor("k");
    let encoded = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for (line, secrets, kept) in [
        (
            EXEC_MYSQL,
            &["ExecPw0rd1"][..],
            &[
                "command=mysql",
                "command=-uroot",
                "command=-p%5Bpassword_arg%5D",
                "container=mysql",
                "tty=true",
            ][..],
        ),
        (
            EXEC_FLAGS,
            &["Pg1Secret9", "DashTok3n99", "UrlPw77", "tokEnc0ded99"],
            &[
                "command=psql",
                "command=--password",
                "command=env",
                "command=sh+-c",
                "stdout=true",
            ],
        ),
        (
            ATTACH_PLAIN,
            &["EscPw0rd42"],
            &["command=app&command=--secret&command=%5Bpassword_arg%5D&stdin=true"],
        ),
        (
            EPHEMERAL,
            &["EphemPw55", "EphemKey777", "EphemInline8", "ProbeTok3n66"],
            &[
                r#""-p[password_arg]""#,
                r#""--api-key","[password_arg]""#,
                r#""-pKeepMe","-p","8080""#,
                r#""--token","[password_arg]""#,
            ],
        ),
    ] {
        let event = audit(line);
        let before = output_bytes(&event);
        for secret in secrets {
            assert!(
                memchr::memmem::find(&before, secret.as_bytes()).is_some(),
                "{secret} is not in the unredacted event"
            );
        }
        let red = r
            .redacted(&event)
            .unwrap_or_else(|| panic!("unchanged: {line}"));
        let after = output_bytes(&red);
        for secret in secrets {
            for form in [secret.to_string(), encoded(secret)] {
                assert!(
                    memchr::memmem::find(&after, form.as_bytes()).is_none(),
                    "{form} survived: {}",
                    String::from_utf8_lossy(&after)
                );
            }
        }
        let EventKind::ApiActivity(a) = &red.kind else {
            unreachable!()
        };
        let original = a.original();
        for k in kept {
            assert!(original.contains(k), "{k} not kept in {original}");
        }
        // url.original (ECS) follows the redacted URI.
        let mut ecs = Vec::new();
        Schema::Ecs.encode(&red, &mut ecs);
        let v: serde_json::Value = serde_json::from_slice(&ecs).unwrap();
        let url = v["url"]["original"].as_str().unwrap_or("");
        if line != EPHEMERAL {
            assert!(
                url.contains("[password_arg]") || url.contains("%5Bpassword_arg%5D"),
                "{url}"
            );
        }
        assert!(
            red.redaction
                .rules
                .iter()
                .any(|r| r == "detector:password_arg"),
            "{:?}",
            red.redaction
        );
    }
}

/// What looks like argv but is not a secret stays: a URI without
/// `command`, a non-mysql `-p`, `-p` alone, a flag's ordinary value.
#[test]
fn exec_uris_and_argv_arrays_without_secrets_pass_untouched() {
    let r = redactor("k");
    for line in [
        EXEC_MYSQL.replace("%2DpExecPw0rd1", "-p"),
        EXEC_MYSQL
            .replace("command=mysql", "command=iperf")
            .replace("%2DpExecPw0rd1", "-p5201"),
        EXEC_FLAGS
            .replace("command=--password\\u0026command=Pg1Secret9\\u0026command=--token%3DDashTok3n99\\u0026command=postgres%3A%2F%2Fadmin%3AUrlPw77%40db%3A5432%2Fx\\u0026command=env\\u0026command=API_TOKEN%3DtokEnc0ded99\\u0026", "command=--port\\u0026command=5432\\u0026"),
        POD_CREATE
            .replace("?labelSelector=owner%3Djdoe-personal&token=tok3nVALUE123", "?limit=500&labelSelector=app%3Dweb")
            .replace("jdoe-personal", "x")
            .replace(r#""requestObject""#, r#""requestObjectX""#),
    ] {
        let event = audit(&line);
        let EventKind::ApiActivity(before) = &event.kind else { unreachable!() };
        let uri = before.s(before.request_uri).to_owned();
        let red = r.redacted(&event);
        let after = red
            .as_ref()
            .map(|e| match &e.kind {
                EventKind::ApiActivity(a) => a.s(a.request_uri).to_owned(),
                _ => unreachable!(),
            })
            .unwrap_or_else(|| uri.clone());
        assert_eq!(after, uri, "{line}");
    }
}

#[test]
fn gke_entries_and_cloudwatch_events_are_redacted_like_native_events_and_keep_their_cloud() {
    let r = redactor("k");
    let native = r.redacted(&pod_create()).unwrap();
    let EventKind::ApiActivity(n) = &native.kind else {
        unreachable!()
    };
    let red = r.redacted(&eks(POD_CREATE)).unwrap();
    let EventKind::ApiActivity(a) = &red.kind else {
        unreachable!()
    };
    assert_eq!(
        a.original(),
        n.original(),
        "the message is redacted as the event it is"
    );
    let w = a.wrapper.as_ref().expect("still a CloudWatch event");
    assert_eq!((a.s(w.cluster), a.s(w.account)), ("prod", "123456789012"));
    // The pseudonym is the native event's; the principal's address in the
    // GKE entry is the user name.
    let red = r.redacted(&gke()).unwrap();
    let EventKind::ApiActivity(g) = &red.kind else {
        unreachable!()
    };
    let original: serde_json::Value = serde_json::from_str(g.original()).unwrap();
    let proto = &original["protoPayload"];
    assert_eq!(
        proto["authenticationInfo"]["principalEmail"],
        g.s(g.user.username),
        "{original}"
    );
    assert_ne!(g.s(g.user.username), "jane.doe@corp.example");
    assert_eq!(
        proto["request"]["spec"]["containers"][0]["env"][0]["value"],
        "[secret_assignment]"
    );
    assert_eq!(g.wrapper.as_ref().unwrap().provider, "gke");
    let rules: Vec<&str> = red.redaction.rules.iter().map(|s| s.as_ref()).collect();
    assert!(rules.contains(&"hash:user.name"), "{rules:?}");
}
