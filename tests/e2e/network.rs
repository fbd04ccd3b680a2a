//! Socket syscalls against the real kernel: TCP over IPv4 and IPv6 (bind,
//! listen, connect, accept), a refused connect, UDP, and a Unix socket that
//! the kernel-side filter keeps out.

use crate::support::{is_root, read_ndjson, wait_for_events, Lumen};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

/// The kernel events into ECS (and OCSF, unread here) files.
const CONFIG: &str = crate::support::KERNEL_TO_FILES;

fn me() -> u64 {
    u64::from(std::process::id())
}

fn is(e: &Value, action: &str, key: &str, addr: SocketAddr) -> bool {
    e["event"]["action"] == action
        && e["process"]["pid"].as_u64() == Some(me())
        && e[key]["ip"] == addr.ip().to_string().as_str()
        && e[key]["port"].as_u64() == Some(u64::from(addr.port()))
}

#[test]
fn tcp_over_ipv4_and_ipv6_refused_connects_and_udp_are_reported_with_5_tuples() {
    assert!(is_root(), "the eBPF tests need root (CI runs as root)");
    let mut lumen = Lumen::start(CONFIG);
    lumen.wait_attached();

    let mut flows = Vec::new();
    for host in ["127.0.0.1:0", "[::1]:0"] {
        let listener = TcpListener::bind(host).unwrap();
        let server = listener.local_addr().unwrap();
        let client = TcpStream::connect(server).unwrap();
        let client_addr = client.local_addr().unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        assert_eq!(peer, client_addr);
        flows.push((server, client_addr));
    }
    // Nothing listens on port 1.
    let refused = TcpStream::connect("127.0.0.1:1").unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_local = udp.local_addr().unwrap();
    udp.connect("127.0.0.1:53").unwrap();
    let unix_dir = tempfile::tempdir().unwrap();
    let unix_path = unix_dir.path().join("s");
    let _unix_listener = std::os::unix::net::UnixListener::bind(&unix_path).unwrap();
    let _unix = std::os::unix::net::UnixStream::connect(&unix_path).unwrap();

    let udp_peer: SocketAddr = "127.0.0.1:53".parse().unwrap();
    let refused_peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let out = lumen.path("ecs.ndjson");
    let events = wait_for_events(&out, Duration::from_secs(20), |evs| {
        flows.iter().all(|(server, client)| {
            evs.iter().any(|e| is(e, "listen", "server", *server))
                && evs.iter().any(|e| {
                    is(e, "connect", "destination", *server) && is(e, "connect", "source", *client)
                })
                && evs.iter().any(|e| {
                    is(e, "accept", "source", *client) && is(e, "accept", "destination", *server)
                })
        }) && evs
            .iter()
            .any(|e| is(e, "connect", "destination", refused_peer))
            && evs.iter().any(|e| {
                is(e, "connect", "destination", udp_peer) && is(e, "connect", "source", udp_local)
            })
    });
    let find = |pred: &dyn Fn(&Value) -> bool| events.iter().find(|e| pred(e)).cloned().unwrap();

    for (server, client) in &flows {
        let v6 = server.is_ipv6();
        let connect = find(&|e| is(e, "connect", "destination", *server));
        assert_eq!(connect["network"]["direction"], "egress");
        assert_eq!(connect["network"]["transport"], "tcp");
        assert_eq!(connect["network"]["type"], if v6 { "ipv6" } else { "ipv4" });
        assert_eq!(connect["event"]["outcome"], "success");
        assert_eq!(
            connect["event"]["type"],
            serde_json::json!(["connection", "start"])
        );
        let accept = find(&|e| is(e, "accept", "source", *client));
        assert_eq!(accept["network"]["direction"], "ingress");
        assert_eq!(
            accept["destination"]["port"].as_u64(),
            Some(u64::from(server.port()))
        );
        let bind = find(&|e| {
            is(e, "bind", "server", *server)
                || (e["event"]["action"] == "bind" && e["server"]["port"] == 0)
        });
        assert_eq!(bind["event"]["outcome"], "success");
    }
    let refused = find(&|e| is(e, "connect", "destination", refused_peer));
    assert_eq!(refused["event"]["outcome"], "failure");
    assert_eq!(refused["lumen"]["network"]["result"], -111);
    let udp = find(&|e| is(e, "connect", "destination", udp_peer));
    assert_eq!(udp["network"]["transport"], "udp");

    // The Unix socket never crossed into user space.
    let all = read_ndjson(&out);
    assert!(all
        .iter()
        .filter(|e| e["network"].is_object())
        .all(|e| e["network"]["type"] == "ipv4" || e["network"]["type"] == "ipv6"));
    let (status, _) = lumen.stop();
    assert!(status.success());
}
