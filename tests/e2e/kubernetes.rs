//! Optional Kubernetes API enrichment against a local API peer: the peer
//! answers like the API server for a node-scoped pod LIST (PodList JSON) and
//! WATCH (a chunked stream held open), and demands the bearer token.

use crate::support::{is_root, random_container_id, wait_for_events, Container, Lumen};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct ApiPeer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

fn serve(mut stream: TcpStream, token: &str, pods: &str, requests: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut authorized = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
            if header.to_ascii_lowercase().starts_with("authorization:")
                && header.trim_end().ends_with(&format!("Bearer {token}"))
            {
                authorized = true;
            }
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        requests
            .lock()
            .unwrap()
            .push(format!("{} auth={authorized}", target));
        if !authorized {
            let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;
            let _ = write!(stream, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            continue;
        }
        if target.contains("watch=true") || target.contains("watch=1") {
            // A watch: stream headers, then hold the connection open.
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
            let _ = stream.flush();
            let mut sink = [0u8; 64];
            while std::io::Read::read(&mut stream, &mut sink).unwrap_or(0) > 0 {}
            return;
        }
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{pods}",
            pods.len()
        );
    }
}

impl ApiPeer {
    fn start(token: &str, pods: String) -> ApiPeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (token, log) = (token.to_owned(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (token, pods, log) = (token.clone(), pods.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &token, &pods, &log));
            }
        });
        ApiPeer { port, requests }
    }
}

#[test]
fn pods_of_this_node_enrich_container_events_with_name_namespace_labels_and_image() {
    assert!(is_root(), "runc and eBPF need root (CI runs as root)");
    let container_id = random_container_id();
    let pod_uid = "3f0b2c1d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
    let pods = serde_json::json!({
        "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "100"},
        "items": [{
            "metadata": {"name": "web-7d9f", "namespace": "shop", "uid": pod_uid, "resourceVersion": "99",
                          "labels": {"app.kubernetes.io/name": "web", "tier": "front"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "nginx", "image": "nginx:1.27"}]},
            "status": {"containerStatuses": [{"name": "nginx", "image": "nginx:1.27", "imageID": "",
                "containerID": format!("containerd://{container_id}"), "ready": true, "restartCount": 0}]}
        }]
    })
    .to_string();
    let token = "lumen-e2e-token";
    let peer = ApiPeer::start(token, pods);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), token).unwrap();
    let config = format!(
        "[sources.kernel]\ntype = \"ebpf\"\n\n[sources.kernel.kubernetes]\nenabled = true\nendpoint = \"http://127.0.0.1:{}\"\nnode_name = \"node-1\"\ntoken_file = \"{{dir}}/token\"\n\n[sinks.ecs]\ntype = \"file\"\ninputs = [\"kernel\"]\nschema = \"ecs\"\npath = \"{{dir}}/ecs.ndjson\"\n",
        peer.port
    );
    let mut lumen = Lumen::start_in(dir, &config);
    lumen.wait_for_log("pods of this node listed", Duration::from_secs(60));

    let marker = format!("k8s-marker-{}", &container_id[..12]);
    let container = Container::new(
        &format!("lumen-k8s-{}", &container_id[..12]),
        &format!("/kubepods/burstable/pod{pod_uid}/{container_id}"),
        &["/bin/sh", "-c", &format!("/bin/true {marker}")],
    );
    assert!(container.run().success());
    let has_marker = |e: &serde_json::Value| {
        e["event"]["action"] == "exec"
            && e["process"]["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == marker.as_str()))
    };
    let events = wait_for_events(&lumen.path("ecs.ndjson"), Duration::from_secs(20), |evs| {
        evs.iter().any(has_marker)
    });
    let exec = events.iter().find(|e| has_marker(e)).unwrap();
    assert_eq!(exec["kubernetes"]["pod"]["name"], "web-7d9f", "{exec:#}");
    assert_eq!(exec["kubernetes"]["namespace"], "shop");
    assert_eq!(exec["orchestrator"]["namespace"], "shop");
    assert_eq!(
        exec["kubernetes"]["labels"]["app_kubernetes_io/name"],
        "web"
    );
    assert_eq!(exec["kubernetes"]["labels"]["tier"], "front");
    assert_eq!(exec["kubernetes"]["container"]["name"], "nginx");
    assert_eq!(exec["container"]["name"], "nginx");
    assert_eq!(exec["container"]["image"]["name"], "nginx:1.27");

    // Node-scoped and authenticated.
    let requests = peer.requests.lock().unwrap().clone();
    assert!(
        requests.iter().any(|r| r.starts_with("/api/v1/pods?")
            && r.contains("fieldSelector=spec.nodeName%3Dnode-1")
            && r.ends_with("auth=true")),
        "{requests:#?}"
    );
    assert!(
        requests.iter().all(|r| r.ends_with("auth=true")),
        "{requests:#?}"
    );
    let (status, _) = lumen.stop();
    assert!(status.success());
}
