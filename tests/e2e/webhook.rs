//! The `k8s_audit_webhook` source through the binary: HTTPS with a test CA,
//! bearer-token and client-certificate authentication, the API server's
//! EventList bodies, every refusal with its status, and the promise that a
//! 200 means "in every sink's buffer" — tested against a sink that is down.

use crate::network_sinks::peers::elasticsearch_peer::{EsPeer, Fault};
use crate::network_sinks::peers::test_ca;
use crate::support::{audit_line, free_port, wait_for_events, Lumen};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "webhook-secret-7c1f";

/// The test CA's files in `dir`.
struct Certs {
    ca: PathBuf,
    server_crt: PathBuf,
    server_key: PathBuf,
    client_crt: PathBuf,
    client_key: PathBuf,
}

fn certs(dir: &Path) -> Certs {
    let ca = test_ca();
    let write = |name: &str, pem: &str| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    Certs {
        ca: write("ca.pem", &ca.ca_pem),
        server_crt: write("server.pem", &ca.server_cert_pem),
        server_key: write("server.key", &ca.server_key_pem),
        client_crt: write("client.pem", &ca.client_cert_pem),
        client_key: write("client.key", &ca.client_key_pem),
    }
}

fn client(certs: &Certs, with_client_cert: bool) -> reqwest::blocking::Client {
    let tls = lumen_sinks::tls::TlsConfig {
        ca_file: Some(certs.ca.clone()),
        crt_file: with_client_cert.then(|| certs.client_crt.clone()),
        key_file: with_client_cert.then(|| certs.client_key.clone()),
        ..Default::default()
    }
    .client_config()
    .unwrap();
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// An `audit.k8s.io/v1` EventList as the API server's webhook backend posts it.
fn event_list(items: &[String]) -> String {
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
}

fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:04}")).collect()
}

fn lines(ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| audit_line(id, "get")).collect()
}

struct Post {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

fn post(
    c: &reqwest::blocking::Client,
    url: &str,
    token: Option<&str>,
    body: impl Into<reqwest::blocking::Body>,
) -> Post {
    let mut req = c
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().unwrap();
    Post {
        status: r.status().as_u16(),
        retry_after: r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: r.text().unwrap(),
    }
}

fn webhook_source(port: u16, certs: &Certs, auth: &str) -> String {
    format!(
        r#"
[sources.apiserver]
type = "k8s_audit_webhook"
address = "127.0.0.1:{port}"
path = "/audit"
max_body_bytes = 65536
ack_timeout_secs = 1
{auth}
[sources.apiserver.tls]
crt_file = "{crt}"
key_file = "{key}"
"#,
        crt = certs.server_crt.display(),
        key = certs.server_key.display(),
    )
}

/// A config of `source` into an ECS file sink `out.ndjson` (with `sink_extra`).
fn to_file(source: &str, sink_extra: &str) -> String {
    format!(
        r#"data_dir = "{{dir}}/data"
{source}
[sinks.out]
type = "file"
inputs = ["apiserver"]
path = "{{dir}}/out.ndjson"
schema = "ecs"
{sink_extra}
"#
    )
}

#[test]
fn webhook_takes_event_lists_with_a_bearer_token_and_refuses_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let port = free_port();
    let config = to_file(
        &webhook_source(port, &certs, &format!("auth.token = \"{TOKEN}\"")),
        "buffer.type = \"disk\"",
    );
    let mut lumen = Lumen::start_in(dir, &config);
    lumen.wait_for_log("k8s_audit_webhook: listening", Duration::from_secs(20));
    let c = client(&certs, false);
    let url = format!("https://127.0.0.1:{port}/audit");

    let first = ids("hook", 0..3);
    let r = post(&c, &url, Some(TOKEN), event_list(&lines(&first)));
    assert_eq!(r.status, 200, "{}", r.body);
    let out = lumen.path("out.ndjson");
    let got = wait_for_events(&out, Duration::from_secs(10), |e| e.len() >= 3);
    let seen: Vec<&str> = got
        .iter()
        .map(|e| e["kubernetes"]["audit"]["auditID"].as_str().unwrap())
        .collect();
    assert_eq!(seen, first);

    // Refusals, each with its status and reason.
    let r = post(&c, &url, None, event_list(&lines(&ids("nope", 0..1))));
    assert_eq!(r.status, 401);
    let r = post(
        &c,
        &url,
        Some("wrong-token"),
        event_list(&lines(&ids("nope", 0..1))),
    );
    assert_eq!(r.status, 401);
    let r = post(
        &c,
        &format!("https://127.0.0.1:{port}/other"),
        Some(TOKEN),
        event_list(&[]),
    );
    assert_eq!(r.status, 404);
    let r = c.get(&url).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = post(
        &c,
        &url,
        Some(TOKEN),
        r#"{"kind":"EventList","items":["#.to_owned(),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("EventList"), "{}", r.body);
    let r = post(
        &c,
        &url,
        Some(TOKEN),
        r#"{"kind":"Pod","items":[]}"#.to_owned(),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Pod"), "{}", r.body);
    let big = lines(&ids("big", 0..150)); // between max_body_bytes and twice it
    let r = post(&c, &url, Some(TOKEN), event_list(&big));
    assert_eq!(r.status, 413, "{}", r.body);

    // One bad item does not cost the others.
    let mut mixed = lines(&ids("mixed", 0..2));
    mixed.insert(1, r#"{"not":"an audit event"}"#.into());
    let r = post(&c, &url, Some(TOKEN), event_list(&mixed));
    assert_eq!(r.status, 200, "{}", r.body);
    let got = wait_for_events(&out, Duration::from_secs(10), |e| e.len() >= 5);
    let seen: Vec<&str> = got
        .iter()
        .map(|e| e["kubernetes"]["audit"]["auditID"].as_str().unwrap())
        .collect();
    assert_eq!(seen[3..], ["mixed-0000", "mixed-0001"]);
    assert!(
        !got.iter().any(|e| {
            let id = e["kubernetes"]["audit"]["auditID"].as_str().unwrap();
            id.starts_with("nope") || id.starts_with("big")
        }),
        "refused requests must not leak events"
    );

    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let log = log.join("\n");
    assert!(
        log.contains("without a valid bearer token refused"),
        "{log}"
    );
    assert!(log.contains("item is not an audit event"), "{log}");
    assert!(!log.contains(TOKEN), "the token must never be logged");
}

#[test]
fn webhook_with_client_certificates_refuses_a_client_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let port = free_port();
    let config = format!(
        r#"data_dir = "{{dir}}/data"
{source}client_ca_file = "{ca}"

[sinks.out]
type = "file"
inputs = ["apiserver"]
path = "{{dir}}/out.ndjson"
"#,
        source = webhook_source(port, &certs, ""),
        ca = certs.ca.display()
    );
    let mut lumen = Lumen::start_in(dir, &config);
    lumen.wait_for_log("k8s_audit_webhook: listening", Duration::from_secs(20));
    let url = format!("https://127.0.0.1:{port}/audit");
    let body = event_list(&lines(&ids("mtls", 0..2)));
    let refused = client(&certs, false).post(&url).body(body.clone()).send();
    assert!(
        refused.is_err(),
        "a client without a certificate must fail the handshake"
    );
    let r = post(&client(&certs, true), &url, None, body);
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for_events(&lumen.path("out.ndjson"), Duration::from_secs(10), |e| {
        e.len() >= 2
    });
    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    assert!(log.join("\n").contains("TLS handshake failed"));
}

/// Lumen with the webhook in front of an Elasticsearch peer that answers
/// 503 to every bulk request until `es_up`.
struct EsDown {
    _rt: tokio::runtime::Runtime,
    es: EsPeer,
    lumen: Lumen,
    client: reqwest::blocking::Client,
    url: String,
}

impl EsDown {
    fn start(extra_sink: &str) -> EsDown {
        let rt = crate::network_sinks::runtime();
        let es = rt.block_on(EsPeer::start(None));
        es.with(|s| {
            s.faults
                .extend(std::iter::repeat_n(Fault::Status(503, None), 100_000))
        });
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        let port = free_port();
        let config = format!(
            r#"data_dir = "{{dir}}/data"
shutdown_timeout_secs = 2
{source}
[sinks.es]
type = "elasticsearch"
inputs = ["apiserver"]
endpoints = ["{es}"]
healthcheck = false
install_templates = false
batch.timeout_secs = 0.05
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.2
{extra_sink}
"#,
            source = webhook_source(port, &certs, &format!("auth.token = \"{TOKEN}\""))
                .replace("max_body_bytes = 65536", "max_body_bytes = 1048576"),
            es = es.url()
        );
        let client = client(&certs, false);
        let mut lumen = Lumen::start_in(dir, &config);
        lumen.wait_for_log("k8s_audit_webhook: listening", Duration::from_secs(20));
        EsDown {
            _rt: rt,
            es,
            lumen,
            client,
            url: format!("https://127.0.0.1:{port}/audit"),
        }
    }

    fn post(&self, lines: &[String]) -> Post {
        post(&self.client, &self.url, Some(TOKEN), event_list(lines))
    }

    fn es_up(&self) {
        self.es.with(|s| s.faults.clear());
    }
}

#[test]
fn a_sink_down_behind_a_memory_buffer_gets_503_not_200() {
    let mut t = EsDown::start("");
    let r = t.post(&lines(&ids("down", 0..5)));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("5"));
    // Once Elasticsearch is back, the API server's resend gets its 200.
    t.es_up();
    let r = t.post(&lines(&ids("down", 0..5)));
    assert_eq!(r.status, 200, "{}", r.body);
    let arrivals = t.es.arrivals();
    for id in ids("down", 0..5) {
        assert!(arrivals.contains_key(&id), "{id} missing");
    }
    let _ = t.lumen.stop();
}

/// Events of ~2 KiB that zstd cannot shrink much: a disk buffer fills fast.
fn bulky_lines(ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            let mut rng = fastrand::Rng::with_seed(u64::from(crc32c::crc32c(id.as_bytes())));
            let noise: String = (0..2048).map(|_| rng.alphanumeric()).collect();
            audit_line(id, "get").replace("kubectl/v1.30", &format!("kubectl/{noise}"))
        })
        .collect()
}

#[test]
fn behind_a_full_disk_buffer_the_webhook_answers_429_and_every_200_was_buffered() {
    let mut t = EsDown::start("buffer.type = \"disk\"\nbuffer.max_size = 262144");
    let mut accepted = Vec::new();
    let mut refused = 0;
    for batch in 0..60 {
        let batch_ids = ids(&format!("full{batch:02}"), 0..20);
        let r = t.post(&bulky_lines(&batch_ids));
        match r.status {
            200 => accepted.extend(batch_ids),
            429 | 503 => {
                assert!(r.retry_after.is_some(), "{} without Retry-After", r.status);
                refused += 1;
                if refused >= 3 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert!(
        !accepted.is_empty(),
        "the disk buffer takes events while Elasticsearch is down"
    );
    assert!(refused > 0, "a full buffer must push back");
    assert!(
        accepted.len() < 60 * 20,
        "a 256 KiB buffer cannot hold all {} events",
        60 * 20
    );
    // Elasticsearch comes back: every event that got a 200 arrives.
    t.es_up();
    let start = Instant::now();
    loop {
        let arrivals = t.es.arrivals();
        let missing: Vec<_> = accepted
            .iter()
            .filter(|id| !arrivals.contains_key(*id))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} events answered 200 never arrived, e.g. {}",
            missing.len(),
            missing[0]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = t.lumen.stop();
}

/// What a CloudWatch Logs subscription (through Firehose or a Lambda) and a
/// GKE log export post: a gzip-compressed CloudWatch payload of EKS audit
/// events, GKE entries one per line, AWS's documented sample payload (its
/// messages are not audit events: counted and skipped, 200).
#[test]
fn cloudwatch_gzip_payloads_and_gke_entries_arrive_through_the_webhook() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path());
    let port = free_port();
    let config = to_file(
        &webhook_source(port, &certs, &format!("auth.token = \"{TOKEN}\"")),
        "",
    );
    let mut lumen = Lumen::start_in(dir, &config);
    lumen.wait_for_log("k8s_audit_webhook: listening", Duration::from_secs(20));
    let c = client(&certs, false);
    let url = format!("https://127.0.0.1:{port}/audit");
    let fixture = |p: &str| std::fs::read(crate::audit_file::reference(p)).unwrap();

    let gz = fixture("cloudwatch/eks-subscription-payload.json.gz");
    assert_eq!(&gz[..2], [0x1f, 0x8b]);
    let r = post(&c, &url, Some(TOKEN), gz);
    assert_eq!(r.status, 200, "{}", r.body);
    let out = lumen.path("out.ndjson");
    let got = wait_for_events(&out, Duration::from_secs(10), |e| e.len() >= 4);
    for e in &got {
        assert_eq!(e["cloud"]["provider"], "aws");
        assert_eq!(e["orchestrator"]["cluster"]["name"], "demo");
        assert_eq!(e["aws"]["cloudwatch"]["log_group"], "/aws/eks/demo/cluster");
    }

    let gke = fixture("elastic-gcp/test-audit-k8s-lines.log");
    let r = post(&c, &url, Some(TOKEN), gke);
    assert_eq!(r.status, 200, "{}", r.body);
    let got = wait_for_events(&out, Duration::from_secs(10), |e| e.len() >= 8);
    assert_eq!(got.len(), 8);
    assert!(got[4..].iter().all(|e| e["cloud"]["provider"] == "gcp"
        && e["orchestrator"]["cluster"]["name"] == "analysis-cluster"));

    let documented = base64::engine::general_purpose::STANDARD
        .decode(
            String::from_utf8(fixture("cloudwatch/aws-documented-payload.gz.b64"))
                .unwrap()
                .trim(),
        )
        .unwrap();
    let r = post(&c, &url, Some(TOKEN), documented);
    assert_eq!(r.status, 200, "{}", r.body);
    // A gzip body that does not inflate is refused with the reason.
    let r = post(&c, &url, Some(TOKEN), vec![0x1f, 0x8b, 8, 0, 1, 2, 3]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("gzip"), "{}", r.body);

    let (status, log) = lumen.stop();
    assert!(status.success(), "{}", log.join("\n"));
    let skipped = log
        .iter()
        .filter(|l| l.contains("item is not an audit event"))
        .count();
    assert_eq!(skipped, 2, "{}", log.join("\n"));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        8,
        "nothing else was written"
    );
}
