//! The detect transform: every built-in rule fires on the behaviour it is
//! about and stays quiet on normal workloads (real Kubernetes audit events
//! from Falco's, Elastic's and audit2rbac's fixtures, and kernel events of
//! ordinary containers); fields read what the ECS encoder writes; Lumen
//! rules compile with named errors; findings are suppressed and counted.

use super::*;
use field::Field;
use lumen_schemas::event::{
    push, ContainerEntry, Credentials, EntryLeader, ExecFacts, FileEvent, FileOperation, MountInfo,
    NetworkEvent, NetworkOp, PrivilegeEvent, PrivilegeOp, Process, ProcessActivity, ProcessEvent,
    Str,
};
use lumen_schemas::k8s_audit;

const CONTAINER: &str = "abababababababababababababababababababababababababababababababab";

fn event(kind: EventKind) -> Event {
    Event {
        time: Timestamp(1_700_000_000_000_000_000),
        observed: Timestamp(1_700_000_000_000_000_000),
        host: Arc::new(lumen_schemas::event::Host {
            name: "node-1".into(),
            ..Default::default()
        }),
        kind,
        redaction: Default::default(),
    }
}

/// A process of the test container (`container` empty: the host).
fn process(exe: &str, args: &[&str], parent: &str, container: &str) -> Process {
    let name = exe.rsplit('/').next().unwrap_or(exe);
    let mut p = Process::default().with_text(exe, &name[..name.len().min(15)], args);
    p.pid = 4242;
    p.ppid = 4000;
    p.uid = 1000;
    p.parent.name = push(&mut p.text, parent);
    p.parent.executable = push(&mut p.text, &format!("/usr/bin/{parent}"));
    if !container.is_empty() {
        p.attribution.container_id = push(&mut p.text, container);
    }
    p
}

fn exec(exe: &str, args: &[&str], parent: &str, facts: ExecFacts) -> Event {
    event(EventKind::Process(Box::new(ProcessEvent {
        activity: ProcessActivity::Exec,
        process: process(exe, args, parent, CONTAINER),
        exit: None,
        exe: facts,
    })))
}

fn file(op: FileOperation, path: &str, flags: u32, mode: Option<u32>, by: &str) -> Event {
    let mut p = process(by, &[by], "sh", CONTAINER);
    let path = push(&mut p.text, path);
    event(EventKind::File(Box::new(FileEvent {
        op,
        process: p,
        path,
        new_path: Str::EMPTY,
        flags,
        mode,
        uid: None,
        gid: None,
        sensitive: op == FileOperation::Open && flags == 0,
    })))
}

/// `e`'s process with a known lineage in its container: `Exec` for one
/// that came in by `kubectl exec` or the like.
fn lineage(mut e: Event, entry: ContainerEntry) -> Event {
    if let Some(p) = e.kind.process_mut() {
        p.entry_leader = Some(EntryLeader {
            pid: 4000,
            start_time_ns: 1,
            entry,
            runtime_setup: false,
        });
    }
    e
}

fn entered(e: Event) -> Event {
    lineage(e, ContainerEntry::Exec)
}

/// `e`'s process as the runtime's init setting its container up.
fn runtime_setup(e: Event) -> Event {
    let mut e = lineage(e, ContainerEntry::Entrypoint);
    if let Some(l) = e.kind.process_mut().and_then(|p| p.entry_leader.as_mut()) {
        l.runtime_setup = true;
    }
    e
}

/// `e`'s process renamed `name` (as a binary called `runc` would be).
fn named(mut e: Event, name: &str) -> Event {
    if let Some(p) = e.kind.process_mut() {
        p.name = push(&mut p.text, name);
    }
    e
}

fn connect(exe: &str, to: &str) -> Event {
    event(EventKind::Network(Box::new(NetworkEvent {
        op: NetworkOp::Connect,
        process: process(exe, &[exe], "sh", CONTAINER),
        result: 0,
        protocol: 6,
        local: "10.1.0.7:40000".parse().unwrap(),
        remote: Some(to.parse().unwrap()),
    })))
}

fn privilege(
    op: PrivilegeOp,
    exe: &str,
    old: Credentials,
    new: Credentials,
    container: &str,
) -> PrivilegeEvent {
    PrivilegeEvent {
        op,
        process: process(exe, &[exe], "sh", container),
        result: 0,
        old,
        new,
        requested: [u32::MAX; 3],
        target_pid: None,
        object_name: Str::EMPTY,
        bpf_prog_type: None,
        mount: None,
        namespace: None,
    }
}

/// A setns by `nsenter` in the test container into a mount namespace,
/// the host's or not, that succeeded (`result` 0) or not.
fn setns(host: bool, result: i64) -> Event {
    let mut p = privilege(
        PrivilegeOp::Setns,
        "/usr/bin/nsenter",
        user(0),
        user(0),
        CONTAINER,
    );
    p.result = result;
    p.namespace = Some(lumen_schemas::event::NamespaceJoin {
        nstype: 0x0002_0000,
        inode: 4026531841,
        kind: Some(lumen_schemas::event::NamespaceKind::Mnt),
        host,
    });
    event(EventKind::Privilege(Box::new(p)))
}

fn user(uid: u32) -> Credentials {
    Credentials {
        uid,
        euid: uid,
        suid: uid,
        fsuid: uid,
        ..Default::default()
    }
}

fn mount(source: &str, fstype: &str, by: &str) -> Event {
    mount_by(source, fstype, process(by, &[by], "sh", CONTAINER))
}

fn mount_by(source: &str, fstype: &str, by: Process) -> Event {
    let mut p = privilege(
        PrivilegeOp::Mount,
        "/bin/mount",
        user(0),
        user(0),
        CONTAINER,
    );
    p.process = by;
    let source = push(&mut p.process.text, source);
    let target = push(&mut p.process.text, "/mnt/x");
    let fstype = push(&mut p.process.text, fstype);
    p.mount = Some(MountInfo {
        source,
        target,
        fstype,
        flags: 0,
    });
    event(EventKind::Privilege(Box::new(p)))
}

fn audit(line: &str) -> Event {
    let a = k8s_audit::parse_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    Event::api_activity(a, Arc::default(), Timestamp(1))
}

/// A Falco fixture (one audit event per file).
macro_rules! falco {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/tests/reference/k8s-audit/falco/",
            $name
        ))
    };
}

/// `line` with `from` replaced by `to` (a fixture made to say something
/// else: another user, another verb).
fn edit(line: &str, edits: &[(&str, &str)]) -> String {
    let mut s = line.to_owned();
    for (from, to) in edits {
        assert!(s.contains(from), "{from} is not in the fixture");
        s = s.replacen(from, to, 1);
    }
    s
}

fn builtin() -> Detector {
    let config: DetectConfig = toml::from_str("inputs = [\"x\"]").unwrap();
    Detector::new(&config).unwrap()
}

/// The ids of the rules `e` matches (suppression aside).
fn fired(d: &mut Detector, e: &Event) -> Vec<String> {
    let mut out = Vec::new();
    // A fresh window per event: every match is a finding.
    d.seen.clear();
    d.inspect(&Arc::new(e.clone()), &mut out);
    out.iter()
        .map(|f| match &f.kind {
            EventKind::Finding(f) => f.rule.id.clone(),
            _ => unreachable!(),
        })
        .collect()
}

fn drift() -> ExecFacts {
    ExecFacts {
        upper_layer: true,
        ..Default::default()
    }
}

fn memfd() -> ExecFacts {
    ExecFacts {
        memfd: true,
        ..Default::default()
    }
}

/// Each built-in rule and events it must fire on.
fn firing() -> Vec<(&'static str, Vec<Event>)> {
    let mut escalation = privilege(
        PrivilegeOp::Setuid,
        "/usr/bin/su",
        user(1000),
        user(0),
        CONTAINER,
    );
    escalation.new.uid = 1000;
    let capset = privilege(
        PrivilegeOp::Capset,
        "/tmp/exploit",
        user(1000),
        Credentials {
            cap_effective: 1 << 21,
            ..user(1000)
        },
        CONTAINER,
    );
    let mut ptrace = privilege(
        PrivilegeOp::PtraceAttach,
        "/usr/bin/gdb",
        user(0),
        user(0),
        CONTAINER,
    );
    ptrace.target_pid = Some(1);
    let module = privilege(
        PrivilegeOp::FinitModule,
        "/sbin/insmod",
        user(0),
        user(0),
        CONTAINER,
    );
    let bpf = privilege(
        PrivilegeOp::BpfProgLoad,
        "/tmp/loader",
        user(0),
        user(0),
        CONTAINER,
    );
    let secrets = edit(
        falco!("create_secret.json"),
        &[
            ("\"verb\":\"create\"", "\"verb\":\"list\""),
            ("\"namespace\":\"default\",", ""),
            (
                "\"username\":\"minikube-user\"",
                "\"username\":\"system:serviceaccount:shop:web\"",
            ),
        ],
    );
    let forbidden = edit(
        falco!("create_secret.json"),
        &[(
            "\"authorization.k8s.io/decision\":\"allow\"",
            "\"authorization.k8s.io/decision\":\"forbid\"",
        )],
    );
    vec![
        (
            "lumen.container.drift_exec",
            vec![exec("/tmp/x", &["/tmp/x"], "sh", drift())],
        ),
        (
            "lumen.process.fileless_exec",
            vec![
                exec("/proc/self/fd/3", &["payload"], "python3", memfd()),
                lineage(
                    named(exec("/proc/self/fd/3", &["runc"], "sh", memfd()), "runc"),
                    ContainerEntry::Exec,
                ),
                exec(
                    "/dev/shm/x",
                    &["x"],
                    "sh",
                    ExecFacts {
                        tmpfs: true,
                        ..Default::default()
                    },
                ),
            ],
        ),
        (
            "lumen.container.shell_by_non_shell_parent",
            vec![
                exec("/bin/sh", &["sh", "-c", "id"], "java", Default::default()),
                exec("/bin/bash", &["bash", "-i"], "nginx", Default::default()),
            ],
        ),
        (
            "lumen.container.package_manager",
            vec![exec("/usr/bin/apt-get", &["apt-get", "install", "nmap"], "sh", Default::default())],
        ),
        (
            "lumen.container.write_below_binary_dir",
            vec![
                file(FileOperation::Open, "/usr/bin/ls", 0o1101, Some(0o755), "/bin/cp"),
                file(FileOperation::Chmod, "/usr/local/bin/tool", 0, Some(0o755), "/bin/chmod"),
            ],
        ),
        (
            "lumen.container.credential_read",
            vec![
                file(FileOperation::Open, "/etc/shadow", 0, None, "/bin/cat"),
                file(
                    FileOperation::Open,
                    "/var/run/secrets/kubernetes.io/serviceaccount/token",
                    0,
                    None,
                    "/bin/sh",
                ),
                // Any program, when it came in by an exec.
                entered(file(
                    FileOperation::Open,
                    "/var/run/secrets/kubernetes.io/serviceaccount/token",
                    0,
                    None,
                    "/usr/bin/python3",
                )),
            ],
        ),
        (
            "lumen.miner.stratum_port_connect",
            vec![connect("/usr/bin/curl", "203.0.113.9:3333")],
        ),
        (
            "lumen.miner.command_line",
            vec![
                exec("/tmp/xmrig", &["xmrig"], "sh", Default::default()),
                exec(
                    "/tmp/.x/kworker",
                    &["kworker", "-o", "STRATUM+TCP://pool.example:443", "-u", "wallet"],
                    "sh",
                    Default::default(),
                ),
            ],
        ),
        (
            "lumen.escape.mount_host_device_or_cgroup",
            vec![
                mount("/dev/vda1", "ext4", "/bin/mount"),
                mount("cgroup", "cgroup", "/bin/mount"),
                // A workload's binary named like the runtime is no runtime.
                lineage(
                    named(mount("/dev/vda1", "ext4", "/tmp/runc"), "runc"),
                    ContainerEntry::Entrypoint,
                ),
            ],
        ),
        (
            "lumen.escape.nsenter",
            vec![exec(
                "/usr/bin/nsenter",
                &["nsenter", "-t", "1", "-m", "-u", "-n", "-i", "sh"],
                "sh",
                Default::default(),
            )],
        ),
        (
            "lumen.escape.host_namespace_join",
            vec![setns(true, 0), setns(true, -1)],
        ),
        ("lumen.escape.ptrace", vec![event(EventKind::Privilege(Box::new(ptrace)))]),
        (
            "lumen.escape.kernel_code_load",
            vec![
                event(EventKind::Privilege(Box::new(module))),
                event(EventKind::Privilege(Box::new(bpf))),
            ],
        ),
        (
            "lumen.container.setuid_escalation",
            vec![
                event(EventKind::Privilege(Box::new(escalation))),
                event(EventKind::Privilege(Box::new(capset))),
            ],
        ),
        (
            "lumen.k8s.exec_into_pod",
            vec![audit(falco!("exec_pod.json")), audit(falco!("attach_pod.json"))],
        ),
        (
            "lumen.k8s.port_forward",
            vec![audit(&edit(
                falco!("exec_pod.json"),
                &[("\"subresource\":\"exec\"", "\"subresource\":\"portforward\"")],
            ))],
        ),
        (
            "lumen.k8s.privileged_pod",
            ["create_nginx_pod_privileged.json", "create_nginx_pod_hostnetwork.json", "create_nginx_pod_sensitive_mount.json", "create_nginx_pod_privileged_2nd_container.json"]
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(format!(
                        "{}/../schemas/tests/reference/k8s-audit/falco/{f}",
                        env!("CARGO_MANIFEST_DIR")
                    ))
                    .unwrap();
                    // Created by a person, not from a template by a controller.
                    audit(&edit(
                        &text,
                        &[("system:serviceaccount:kube-system:replicaset-controller", "minikube-user")],
                    ))
                })
                .collect(),
        ),
        (
            "lumen.k8s.cluster_admin_binding",
            vec![audit(falco!("attach_cluster_admin_role.json"))],
        ),
        (
            "lumen.k8s.wildcard_role",
            vec![audit(falco!("create_cluster_role_wildcard_verbs.json"))],
        ),
        (
            "lumen.k8s.anonymous_allowed",
            vec![audit(falco!("anonymous_creates_namespace_foo.json"))],
        ),
        ("lumen.k8s.secrets_listed_cluster_wide", vec![audit(&secrets)]),
        (
            "lumen.k8s.token_for_other_service_account",
            vec![audit(&edit(
                falco!("create_serviceaccount.json"),
                &[
                    ("\"resource\":\"serviceaccounts\"", "\"resource\":\"serviceaccounts\",\"subresource\":\"token\""),
                    ("\"username\":\"minikube-user\"", "\"username\":\"system:serviceaccount:shop:web\""),
                ],
            ))],
        ),
        (
            "lumen.k8s.pod_security_violation",
            vec![audit(&edit(
                falco!("create_nginx_pod_unprivileged.json"),
                &[(
                    "\"authorization.k8s.io/decision\":\"allow\"",
                    "\"pod-security.kubernetes.io/audit-violations\":\"would violate PodSecurity \\\"restricted:latest\\\": allowPrivilegeEscalation != false\",\"authorization.k8s.io/decision\":\"allow\"",
                )],
            ))],
        ),
        ("lumen.k8s.forbidden_enumeration", vec![audit(&forbidden); 10]),
    ]
}

#[test]
fn every_builtin_rule_compiles_with_a_title_severity_and_attack() {
    let rules = builtin::rules().unwrap();
    assert_eq!(
        rules.len(),
        firing().len(),
        "a firing test per built-in rule"
    );
    for r in &rules {
        assert!(
            !r.info.title.is_empty() && !r.info.description.is_empty(),
            "{}",
            r.info.id
        );
        assert!(
            !r.info.attacks.is_empty(),
            "{} has no ATT&CK mapping",
            r.info.id
        );
        assert_eq!(r.info.ruleset, "builtin");
    }
}

#[test]
fn every_builtin_rule_fires_on_what_it_is_about() {
    let mut d = builtin();
    for (rule, events) in firing() {
        assert!(d.rules.iter().any(|r| r.info.id == rule), "no rule {rule}");
        if rule == "lumen.k8s.forbidden_enumeration" {
            // A threshold rule: nine are not enough, the tenth is.
            let mut out = Vec::new();
            for (i, e) in events.iter().enumerate() {
                let before = out.len();
                d.inspect(&Arc::new(e.clone()), &mut out);
                assert_eq!(out.len() > before, i == 9, "forbidden request {}", i + 1);
            }
            continue;
        }
        for e in &events {
            let ids = fired(&mut d, e);
            assert!(
                ids.iter().any(|id| id == rule),
                "{rule} did not fire on {}: fired {ids:?}",
                lumen_sinks::console::text_line(e)
            );
        }
    }
}

/// Normal workloads: the kernel events of an ordinary container, and every
/// fixture audit event that is no attack.
fn quiet_kernel_events() -> Vec<Event> {
    let mut runc = process("/usr/bin/runc", &["runc", "init"], "runc", CONTAINER);
    runc.name = push(&mut runc.text, "runc:[2:INIT]");
    let runc_mount = mount_by("cgroup", "cgroup", runc);
    let mut entrypoint = exec(
        "/bin/sh",
        &["sh", "-c", "nginx -g 'daemon off;'"],
        "containerd-shim",
        Default::default(),
    );
    if let EventKind::Process(p) = &mut entrypoint.kind {
        p.process.parent.name = push(&mut p.process.text, "containerd-shim-runc-v2");
    }
    // runc's init gives the container's user (1000) its capabilities.
    let mut runc_capset = privilege(
        PrivilegeOp::Capset,
        "/dev/fd/6",
        user(1000),
        Credentials {
            cap_effective: 536_871_968,
            ..user(1000)
        },
        CONTAINER,
    );
    runc_capset.process.name = push(&mut runc_capset.process.text, "runc:[2:INIT]");
    let mut sudo_on_host = privilege(
        PrivilegeOp::Setuid,
        "/usr/bin/sudo",
        user(1000),
        user(0),
        "",
    );
    sudo_on_host.new.uid = 0;
    vec![
        entrypoint,
        exec(
            "/usr/sbin/nginx",
            &["nginx", "-g", "daemon off;"],
            "sh",
            Default::default(),
        ),
        exec(
            "/bin/sh",
            &["sh", "-c", "echo hi"],
            "bash",
            Default::default(),
        ),
        exec(
            "/usr/bin/python3",
            &["python3", "app.py", "--port", "8080"],
            "sh",
            Default::default(),
        ),
        exec(
            "/usr/bin/java",
            &["java", "-jar", "app.jar"],
            "tini",
            Default::default(),
        ),
        file(
            FileOperation::Open,
            "/tmp/cache/x.json",
            0o1101,
            Some(0o644),
            "/usr/bin/python3",
        ),
        file(
            FileOperation::Open,
            "/var/log/nginx/access.log",
            0o2101,
            None,
            "/usr/sbin/nginx",
        ),
        file(
            FileOperation::Open,
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            0,
            None,
            "/usr/local/bin/controller",
        ),
        // An entrypoint script reading its token with cat.
        lineage(
            file(
                FileOperation::Open,
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
                0,
                None,
                "/bin/cat",
            ),
            ContainerEntry::Entrypoint,
        ),
        connect("/usr/bin/curl", "203.0.113.9:443"),
        connect("/usr/bin/psql", "10.1.0.9:5432"),
        runc_mount,
        event(EventKind::Privilege(Box::new(sudo_on_host))),
        event(EventKind::Privilege(Box::new(runc_capset))),
        // The same with the lineage known: the runtime setting up, whatever
        // its name.
        runtime_setup(mount("proc", "proc", "/proc/self/exe")),
        // Joining a sibling's namespace (a pod's shared network); the
        // runtime joining namespaces as it sets up.
        setns(false, 0),
        runtime_setup(setns(true, 0)),
        runtime_setup(mount("cgroup", "cgroup", "/proc/self/exe")),
        runtime_setup(exec(
            "/memfd:runc_cloned:/proc/self/exe (deleted)",
            &["runc", "init"],
            "runc",
            memfd(),
        )),
        event(EventKind::Privilege(Box::new(privilege(
            PrivilegeOp::Setuid,
            "/usr/sbin/nginx",
            user(0),
            user(101),
            CONTAINER,
        )))),
    ]
}

fn quiet_audit_events() -> Vec<Event> {
    let base = format!(
        "{}/../schemas/tests/reference/k8s-audit",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut out = Vec::new();
    for sub in ["elastic", "audit2rbac", "falco"] {
        let mut files: Vec<_> = std::fs::read_dir(format!("{base}/{sub}"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().ends_with("-expected.json"))
            .collect();
        files.sort();
        for f in files {
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                if let Ok(a) = k8s_audit::parse_line(line) {
                    out.push((
                        f.clone(),
                        Event::api_activity(a, Arc::default(), Timestamp(1)),
                    ));
                }
            }
        }
    }
    // The fixtures that show an attack the rules are about.
    let attacks = [
        "exec_pod.json",
        "attach_pod.json",
        "attach_cluster_admin_role.json",
        "create_cluster_role_wildcard_verbs.json",
        "anonymous_creates_namespace_foo.json",
    ];
    out.into_iter()
        .filter(|(f, _)| !attacks.iter().any(|a| f.ends_with(a)))
        .map(|(_, e)| e)
        .collect()
}

#[test]
fn normal_workloads_and_audit_logs_raise_no_finding() {
    let mut d = builtin();
    let audit = quiet_audit_events();
    assert!(audit.len() > 40, "{} audit events", audit.len());
    for e in quiet_kernel_events().iter().chain(&audit) {
        let ids = fired(&mut d, e);
        assert!(
            ids.is_empty(),
            "{ids:?} fired on {}",
            lumen_sinks::console::text_line(e)
        );
    }
}

#[test]
fn findings_are_suppressed_per_rule_and_key_and_counted() {
    let mut d = builtin();
    let dropped = Arc::new(exec("/tmp/x", &["/tmp/x"], "sh", drift()));
    let mut out = Vec::new();
    for _ in 0..3 {
        d.inspect(&dropped, &mut out);
    }
    assert_eq!(out.len(), 1, "one finding per window");
    // Another container is another key.
    let mut other = exec("/tmp/x", &["/tmp/x"], "sh", drift());
    if let EventKind::Process(p) = &mut other.kind {
        p.process.attribution.container_id = push(&mut p.process.text, "cd".repeat(32).as_str());
    }
    d.inspect(&Arc::new(other), &mut out);
    assert_eq!(out.len(), 2);
    // The window ends: the two suppressed matches are reported together.
    d.flush(Timestamp(dropped.time.0 + 61_000_000_000), &mut out);
    assert_eq!(out.len(), 3);
    let EventKind::Finding(f) = &out[2].kind else {
        panic!()
    };
    assert_eq!(
        (f.count, f.rule.id.as_str()),
        (2, "lumen.container.drift_exec")
    );
    assert_eq!(f.evidence.kind.name(), "process_exec");
    // A match after the window is a finding at once.
    let later = Arc::new(Event {
        time: Timestamp(dropped.time.0 + 120_000_000_000),
        ..(*dropped).clone()
    });
    d.inspect(&later, &mut out);
    assert_eq!(out.len(), 4);
}

#[test]
fn fields_read_what_the_ecs_encoder_writes() {
    let events: Vec<Event> = quiet_kernel_events()
        .into_iter()
        .chain(firing().into_iter().flat_map(|(_, e)| e))
        .collect();
    let checked = [
        "event.action",
        "event.category",
        "event.outcome",
        "process.pid",
        "process.name",
        "process.executable",
        "process.args",
        "process.parent.name",
        "process.parent.executable",
        "container.id",
        "file.path",
        "file.name",
        "destination.ip",
        "destination.port",
        "source.port",
        "network.transport",
        "network.direction",
        "user.name",
        "user.id",
        "user.effective.id",
        "kubernetes.audit.verb",
        "kubernetes.audit.objectRef.resource",
        "kubernetes.audit.objectRef.subresource",
        "kubernetes.audit.objectRef.namespace",
        "kubernetes.audit.stage",
        "kubernetes.audit.user.groups",
        "kubernetes.audit.requestURI",
        "kubernetes.audit.responseStatus.code",
    ];
    let mut scratch = Scratch::default();
    let mut compared = 0;
    for e in &events {
        let mut doc = Vec::new();
        lumen_schemas::Schema::Ecs.encode(e, &mut doc);
        let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        for name in checked {
            let field = Field::parse(name).unwrap();
            let at = name.split('.').fold(&doc, |v, k| &v[k]);
            let want: Vec<String> = match at {
                serde_json::Value::Null => continue,
                serde_json::Value::Array(a) => a.iter().map(json_text).collect(),
                v => vec![json_text(v)],
            };
            scratch.clear();
            let got: Vec<String> = match field.get(e, &mut scratch) {
                Some(field::Value::List(items)) => items
                    .iter()
                    .map(|v| v.text().unwrap().into_owned())
                    .collect(),
                Some(v) => vec![v.text().unwrap().into_owned()],
                None => vec![],
            };
            // ECS writes the first category only as an array.
            if name == "event.category" {
                assert_eq!(got.first(), want.first(), "{name} in {doc}");
            } else {
                assert_eq!(got, want, "{name} in {doc}");
            }
            compared += 1;
        }
    }
    assert!(compared > 200, "{compared} values compared");
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rules_of(text: &str) -> Result<Vec<Rule>, String> {
    rule::parse_file("acme.toml", text, "lumen")
}

#[test]
fn lumen_rules_use_every_operation_and_exceptions_silence_them() {
    let rules = rules_of(
        r#"
[[rule]]
id = "acme.curl_in_prod"
title = "curl in prod"
severity = "low"
kinds = ["process_exec"]
attack = [{ technique = "T1105", tactic = "TA0011" }]
key = ["container.id"]
when = { all = [
  { field = "process.name", in = ["curl", "wget"] },
  { field = "process.args", contains = "EXAMPLE.COM", nocase = true },
  { field = "process.executable", glob = "/usr/*/curl" },
  { field = "process.command_line", regex = "https?://" },
  { field = "process.pid", gte = 4000, lt = 5000 },
  { field = "process.parent.name", suffix = "sh" },
  { not = { field = "kubernetes.pod.name", exists = true } },
] }
exceptions = [{ field = "process.args", equals = "--version" }]

[[rule]]
id = "acme.egress"
title = "egress outside the office"
kinds = ["network_connect"]
attack = ["T1105"]
when = { not = { field = "destination.ip", cidr = ["10.0.0.0/8", "192.0.2.1"] } }
"#,
    )
    .unwrap();
    let mut d = Detector::with_rules(rules, 60, 100);
    let curl = exec(
        "/usr/bin/curl",
        &["curl", "https://example.com/x"],
        "bash",
        Default::default(),
    );
    assert_eq!(fired(&mut d, &curl), ["acme.curl_in_prod"]);
    let version = exec(
        "/usr/bin/curl",
        &["curl", "--version", "https://example.com"],
        "bash",
        Default::default(),
    );
    assert!(fired(&mut d, &version).is_empty(), "the exception holds");
    let wget = exec(
        "/usr/bin/wget",
        &["wget", "https://example.com"],
        "bash",
        Default::default(),
    );
    assert!(fired(&mut d, &wget).is_empty(), "the glob wants curl");
    assert_eq!(
        fired(&mut d, &connect("/usr/bin/curl", "203.0.113.9:443")),
        ["acme.egress"]
    );
    assert!(fired(&mut d, &connect("/usr/bin/curl", "10.1.2.3:443")).is_empty());
    assert!(fired(&mut d, &connect("/usr/bin/curl", "192.0.2.1:443")).is_empty());
}

#[test]
fn bad_rules_are_refused_with_the_file_line_and_reason() {
    let cases: [(&str, &str); 8] = [
        (
            "[[rule]]\nid = \"a\"\ntitle = \"t\"\nkinds = [\"process_exec\"]\nwhen = { field = \"process.nam\", equals = \"x\" }\n",
            "acme.toml:2: rule `a`: `process.nam` is not a field",
        ),
        (
            "[[rule]]\nid = \"a\"\ntitle = \"t\"\nkinds = [\"proc_exec\"]\nwhen = { field = \"process.name\", equals = \"x\" }\n",
            "`proc_exec` is not an event kind",
        ),
        (
            "[[rule]]\nid = \"a\"\ntitle = \"t\"\nkinds = [\"process_exec\"]\nwhen = { field = \"process.name\" }\n",
            "`process.name` has no operation",
        ),
        (
            "[[rule]]\nid = \"a\"\ntitle = \"t\"\nkinds = [\"process_exec\"]\nwhen = { field = \"process.name\", regex = \"(\" }\n",
            "regex:",
        ),
        (
            "[[rule]]\nid = \"a\"\ntitle = \"t\"\nkinds = [\"process_exec\"]\nattack = [\"T9999\"]\nwhen = { field = \"process.name\", equals = \"x\" }\n",
            "give it as { technique",
        ),
        (
            "\n\n[[rule]]\nid = \"a\"\ntitle = \"t\"\nkinds = [\"process_exec\"]\nwhen = { field = \"process.name\", equalz = \"x\" }\n",
            "acme.toml:7:",
        ),
        (
            "[[rule]]\nid = \"a\"\ntitle = \"t\"\nkinds = [\"process_exec\"]\nwhen = { field = \"process.name\", equals = \"x\" }\n[[rule]]\nid = \"a\"\ntitle = \"t\"\nkinds = [\"process_exec\"]\nwhen = { field = \"process.name\", equals = \"x\" }\n",
            "defined twice",
        ),
        (
            "[[rule]]\nid = \"a\"\ntitle = \"t\"\nkinds = [\"process_exec\"]\nwhen = { any = [], field = \"process.name\", equals = \"x\" }\n",
            "either a group",
        ),
    ];
    for (text, says) in cases {
        let err = rules_of(text).unwrap_err();
        assert!(err.contains(says), "{err}\n--- for ---\n{text}");
    }
}

#[test]
fn disabled_and_unknown_rules_and_rule_files_from_globs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "[[rule]]\nid = \"acme.a\"\ntitle = \"t\"\nkinds = [\"process_exec\"]\nattack = [\"T1105\"]\nwhen = { field = \"process.name\", equals = \"curl\" }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a rule file").unwrap();
    let config = |extra: &str| -> DetectConfig {
        toml::from_str(&format!(
            "inputs = [\"x\"]\nrule_files = [\"{}/*.toml\"]\n{extra}",
            dir.path().display()
        ))
        .unwrap()
    };
    let d = Detector::new(&config("")).unwrap();
    assert_eq!(d.len(), builtin::rules().unwrap().len() + 1);
    let d = Detector::new(&config(
        "builtin_rules = false\ndisable_rules = [\"acme.a\"]",
    ))
    .unwrap();
    assert!(d.is_empty());
    let err = Detector::new(&config("disable_rules = [\"acme.b\"]")).unwrap_err();
    assert!(err.contains("no rule has the id `acme.b`"), "{err}");
    let err = config("")
        .validate()
        .map(|()| "ok".to_owned())
        .unwrap_or_else(|e| e);
    assert_eq!(err, "ok");
    let listed: DetectConfig = toml::from_str(&format!(
        "inputs = [\"x\"]\nrule_files = [\"{}/notes.txt\"]",
        dir.path().display()
    ))
    .unwrap();
    let err = listed.validate().unwrap_err();
    assert!(err.contains("notes.txt: a rule file ends in"), "{err}");
}

#[test]
fn detections_md_describes_every_builtin_rule() {
    let doc = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/DETECTIONS.md"
    ));
    for r in builtin::rules().unwrap() {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", r.info.id)))
            .unwrap_or_else(|| panic!("DETECTIONS.md has no row for {}", r.info.id));
        assert!(
            row.contains(&format!("{:?}", r.info.severity).to_lowercase()),
            "{row}"
        );
        for a in &r.info.attacks {
            assert!(
                row.contains(&a.technique_id),
                "{row} lacks {}",
                a.technique_id
            );
        }
    }
}

/// A SigmaHQ rule kept in `sigmahq/`, compiled.
fn sigma(name: &str) -> Result<Vec<Rule>, String> {
    let path = format!(
        "{}/src/transforms/detect/sigmahq/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    sigma::parse_file(name, &std::fs::read_to_string(&path).unwrap())
}

fn sigma_detector(names: &[&str]) -> Detector {
    let rules = names.iter().flat_map(|n| sigma(n).unwrap()).collect();
    Detector::with_rules(rules, 60, 1000)
}

#[test]
fn sigmahq_rules_for_linux_fire_on_their_behaviour_and_not_on_normal_workloads() {
    let mut d = sigma_detector(&[
        "proc_creation_lnx_crypto_mining.yml",
        "proc_creation_lnx_susp_exec_from_dev_shm.yml",
        "proc_creation_lnx_local_account.yml",
        "file_event_lnx_wget_download_file_in_tmp_dir.yml",
    ]);
    let id = |name: &str| {
        format!(
            "sigma.{}",
            sigma(name).unwrap()[0].info.id.trim_start_matches("sigma.")
        )
    };
    let miner = exec(
        "/tmp/kworker",
        &[
            "kworker",
            "-o",
            "STRATUM+TCP://pool.example:443",
            "--donate-level=0",
        ],
        "sh",
        Default::default(),
    );
    assert_eq!(
        fired(&mut d, &miner),
        [id("proc_creation_lnx_crypto_mining.yml")]
    );
    let shm = exec("/dev/shm/.x", &["/dev/shm/.x"], "sh", Default::default());
    assert_eq!(
        fired(&mut d, &shm),
        [id("proc_creation_lnx_susp_exec_from_dev_shm.yml")]
    );
    // `1 of selection*`: cat of /etc/passwd is selection_3.
    let cat = exec(
        "/bin/cat",
        &["cat", "/etc/passwd"],
        "bash",
        Default::default(),
    );
    assert_eq!(
        fired(&mut d, &cat),
        [id("proc_creation_lnx_local_account.yml")]
    );
    let id_cmd = exec("/usr/bin/id", &["id"], "bash", Default::default());
    assert_eq!(
        fired(&mut d, &id_cmd),
        [id("proc_creation_lnx_local_account.yml")]
    );
    let wget = file(
        FileOperation::Open,
        "/tmp/payload",
        0o1101,
        Some(0o644),
        "/usr/bin/wget",
    );
    assert_eq!(
        fired(&mut d, &wget),
        [id("file_event_lnx_wget_download_file_in_tmp_dir.yml")]
    );
    // The same rules on ordinary events: quiet. Sigma matches without
    // case: `/BIN/CAT /ETC/PASSWD` would match, `cat /etc/hosts` does not.
    for e in quiet_kernel_events().iter().chain([
        &exec(
            "/bin/cat",
            &["cat", "/etc/hosts"],
            "bash",
            Default::default(),
        ),
        &file(
            FileOperation::Open,
            "/var/tmp/x",
            0o1101,
            None,
            "/usr/bin/curl",
        ),
    ]) {
        assert!(
            fired(&mut d, e).is_empty(),
            "{}",
            lumen_sinks::console::text_line(e)
        );
    }
}

#[test]
fn sigmahq_rules_for_kubernetes_audit_fire_on_the_fixtures() {
    let mut d = sigma_detector(&[
        "kubernetes_audit_exec_into_container.yml",
        "kubernetes_audit_hostpath_mount.yml",
        "kubernetes_audit_secrets_enumeration.yml",
        "kubernetes_audit_unauthorized_unauthenticated_actions.yml",
        "kubernetes_audit_potential_enumeration_activity.yml",
        "kubernetes_audit_privileged_pod_creation.yml",
    ]);
    let title = |e: &Event, d: &mut Detector| -> Vec<String> {
        let mut out = Vec::new();
        d.seen.clear();
        d.inspect(&Arc::new(e.clone()), &mut out);
        out.iter()
            .map(|f| match &f.kind {
                EventKind::Finding(f) => f.rule.title.clone(),
                _ => unreachable!(),
            })
            .collect()
    };
    assert_eq!(
        title(&audit(falco!("exec_pod.json")), &mut d),
        ["Potential Remote Command Execution In Pod Container"]
    );
    // `hostPath: '*'`: a pod with a hostPath volume (the Sigma taxonomy's
    // field over the pod spec).
    assert_eq!(
        title(
            &audit(falco!("create_nginx_pod_sensitive_mount.json")),
            &mut d
        ),
        ["Container With A hostPath Mount Created"]
    );
    assert!(title(
        &audit(falco!("create_nginx_pod_unsensitive_mount.json")),
        &mut d
    )
    .is_empty());
    assert!(title(&audit(falco!("create_nginx_pod_unprivileged.json")), &mut d).is_empty());
    let forbidden = edit(
        falco!("create_secret.json"),
        &[("\"code\":201", "\"code\":403")],
    );
    assert_eq!(
        title(&audit(&forbidden), &mut d),
        ["Kubernetes Unauthorized or Unauthenticated Access"]
    );
    for quiet in [
        falco!("create_configmap.json"),
        falco!("create_deployment.json"),
    ] {
        assert!(title(&audit(quiet), &mut d).is_empty(), "{quiet}");
    }
}

#[test]
fn sigma_rules_lumen_cannot_evaluate_are_refused_with_the_reason() {
    for (name, says) in [
        (
            "net_connection_lnx_crypto_mining_indicators.yml",
            "field `DestinationHostname` is not one Lumen has",
        ),
        (
            "proc_creation_lnx_omigod_scx_runasprovider_executescript.yml",
            "is not one Lumen has for this log source",
        ),
        ("lnx_auditd_binary_padding.yml", "is not one Lumen produces"),
    ] {
        let err = sigma(name).map(|_| ()).unwrap_err();
        assert!(
            err.starts_with(&format!("{name}:")) && err.contains(says),
            "{err}"
        );
    }
    let rule = |detection: &str| {
        sigma::parse_file(
            "r.yml",
            &format!("title: t\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n{detection}"),
        )
        .map(|_| ())
        .unwrap_err()
    };
    let cases = [
        (
            "  selection:\n    CommandLine|base64offset|contains: x\n  condition: selection\n",
            "modifier `base64offset` is not supported",
        ),
        (
            "  keywords:\n    - evil\n  condition: keywords\n",
            "keyword searches",
        ),
        (
            "  selection:\n    Image: /x\n  condition: selection | count() > 5\n",
            "aggregations",
        ),
        (
            "  selection:\n    Image: /x\n  condition: selectoin\n",
            "no search is named `selectoin`",
        ),
        (
            "  selection:\n    Image: /x\n  condition: (selection\n",
            "not closed",
        ),
    ];
    for (detection, says) in cases {
        let err = rule(detection);
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn sigma_conditions_and_modifiers_mean_what_sigma_says() {
    let rules = sigma::parse_file(
        "r.yml",
        r"title: conditions
id: 6a1c5e4e-0000-4000-8000-000000000001
level: high
tags:
  - attack.execution
  - attack.t1059.004
logsource:
  product: linux
  category: process_creation
detection:
  selection_img:
    Image|endswith:
      - /bash
      - /sh
  selection_cli:
    CommandLine|contains|all:
      - ' -c '
      - 'curl'
  filter_parent:
    ParentImage|startswith: '/usr/lib/systemd/'
  filter_wild:
    CommandLine: '*health\*check*'
  condition: all of selection_* and not 1 of filter_*
",
    )
    .unwrap();
    assert_eq!(
        rules[0].info.id,
        "sigma.6a1c5e4e-0000-4000-8000-000000000001"
    );
    assert_eq!(rules[0].info.severity, lumen_schemas::event::Severity::High);
    assert_eq!(rules[0].info.attacks[0].technique_id, "T1059.004");
    assert_eq!(rules[0].info.ruleset, "sigma");
    let mut d = Detector::with_rules(rules, 60, 100);
    let run = |args: &[&str], parent: &str| {
        exec(
            &format!("/bin/{}", args[0]),
            args,
            parent,
            Default::default(),
        )
    };
    assert_eq!(
        fired(&mut d, &run(&["bash", "-c", "curl x | sh"], "python3")).len(),
        1
    );
    assert!(
        fired(&mut d, &run(&["bash", "-c", "wget x"], "python3")).is_empty(),
        "all of the strings"
    );
    assert!(
        fired(&mut d, &run(&["zsh", "-c", "curl x"], "python3")).is_empty(),
        "endswith /bash or /sh"
    );
    let mut systemd = run(&["sh", "-c", "curl x"], "python3");
    if let EventKind::Process(p) = &mut systemd.kind {
        p.process.parent.executable = push(&mut p.process.text, "/usr/lib/systemd/systemd");
    }
    assert!(fired(&mut d, &systemd).is_empty(), "the parent filter");
    // `\*` is a literal star, `*` a wildcard.
    assert!(fired(&mut d, &run(&["sh", "-c", "curl /health*check"], "python3")).is_empty());
    assert_eq!(
        fired(&mut d, &run(&["sh", "-c", "curl /healthcheck"], "python3")).len(),
        1
    );
}

/// What the index finds is what testing every rule of the event's kind
/// finds: over the built-in pack and the SigmaHQ rules, on every event the
/// other tests use (each field of a rule's exact-string parts read once,
/// `any` parts, lists such as the groups, fields skipped once no rule
/// needs them).
#[test]
fn the_index_finds_what_testing_every_rule_finds() {
    let mut rules = builtin::rules().unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/transforms/detect/sigmahq");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yml") {
            // Some are refused on purpose (a log source Lumen lacks).
            rules.extend(sigma(&name).unwrap_or_default());
        }
    }
    assert!(rules.len() > 30, "{}", rules.len());
    let mut d = Detector::with_rules(rules, 60, 100);
    let mut events: Vec<Event> = firing().into_iter().flat_map(|(_, evs)| evs).collect();
    events.extend(quiet_kernel_events());
    events.extend(quiet_audit_events());
    let log = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/samples/k8s-audit.log"
    ))
    .unwrap();
    events.extend(log.lines().map(audit));
    let mut matched_some = 0;
    for e in &events {
        let slot = rule::kind_slot(e.kind.name()).unwrap();
        d.scratch.clear();
        let mut candidates = Vec::new();
        d.by_kind[slot].candidates(
            e,
            &mut d.scratch,
            &mut d.bits,
            &mut d.found,
            &mut candidates,
        );
        assert!(d.bits.iter().all(|b| *b == 0), "bits left set");
        let by_index: Vec<usize> = candidates
            .into_iter()
            .filter(|&r| {
                let when = d.rest[r].as_ref().unwrap_or(&d.rules[r].when);
                d.rules[r].matches_given(when, e, &mut d.scratch)
            })
            .collect();
        let every: Vec<usize> = (0..d.rules.len())
            .filter(|&r| d.rules[r].kinds.contains(&slot) && d.rules[r].matches(e, &mut d.scratch))
            .collect();
        assert_eq!(by_index, every, "{:?}", e.kind.name());
        matched_some += usize::from(!every.is_empty());
    }
    assert!(matched_some > 20, "{matched_some} events matched");
}
