//! Elastic Common Schema encoder.
//!
//! Field choices follow Elastic's own integrations so Kibana and Elastic
//! Security work unchanged: the Kubernetes audit mapping of Elastic's
//! `kubernetes.audit_logs` pipeline (see `docs/SCHEMAS.md` for the few
//! deliberate differences) and the `auditd` package's process fields.
//! Fields ECS has no place for live under `lumen.*` (and `kubernetes.audit.*`
//! for the audit event, as Elastic does).

use crate::event::{
    ApiActivity, Credentials, Event, EventKind, FileEvent, FileOperation, MarkerForm, NetworkEvent,
    NetworkOp, PrivilegeEvent, PrivilegeOp, Process, ProcessActivity, ProcessEvent, Redaction, Str,
    Wrapper,
};
use crate::json::JsonWriter;
use crate::time::Timestamp;
use crate::ECS_VERSION;

/// Appends `event` as one ECS JSON document.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    let mut w = JsonWriter::new(out);
    w.begin_object();
    match &event.kind {
        EventKind::Process(p) => process(&mut w, event, p),
        EventKind::ApiActivity(a) => api(&mut w, event, a),
        EventKind::Privilege(p) => privilege(&mut w, event, p),
        EventKind::Network(n) => network(&mut w, event, n),
        EventKind::Loss(l) => loss(&mut w, event, l),
        EventKind::File(f) => file(&mut w, event, f),
        EventKind::Finding(f) => finding(&mut w, event, f),
        EventKind::Resource(r) => resource(&mut w, event, r),
    }
    redaction(&mut w, event);
    w.end_object();
}

/// What a redact transform changed, as ECS custom `labels` (keyword
/// values): the field names and rule names, comma-separated.
/// Events a profile changed alike share what is written (made once).
fn redaction(w: &mut JsonWriter<'_>, event: &Event) {
    let r = &event.redaction;
    if r.is_empty() {
        return;
    }
    match r.encoded(MarkerForm::EcsLabels, |r| {
        let mut out = Vec::new();
        let mut labels = JsonWriter::new(&mut out);
        labels.begin_object();
        redaction_labels(&mut labels, r);
        labels.end_object();
        out
    }) {
        Some(labels) => w.raw("labels", labels),
        None => {
            w.object("labels");
            redaction_labels(w, r);
            w.end_object();
        }
    }
}

fn redaction_labels(w: &mut JsonWriter<'_>, r: &Redaction) {
    w.str_joined("lumen_redacted_fields", &r.fields, ',');
    w.str_joined("lumen_redaction_rules", &r.rules, ',');
}

fn ts(w: &mut JsonWriter<'_>, key: &str, t: Timestamp) {
    w.timestamp(key, t);
}

fn common_head(w: &mut JsonWriter<'_>, time: Timestamp) {
    ts(w, "@timestamp", time);
    w.object("ecs");
    w.lit("version", ECS_VERSION);
    w.end_object();
    w.object("agent");
    w.lit("type", "lumen");
    w.lit("version", crate::PRODUCT_VERSION);
    w.end_object();
}

fn host(w: &mut JsonWriter<'_>, event: &Event, key: &str) {
    host_with(w, event, key, |_| {});
}

/// As [`host`]; `more` adds members to the object.
fn host_with(
    w: &mut JsonWriter<'_>,
    event: &Event,
    key: &str,
    more: impl FnOnce(&mut JsonWriter<'_>),
) {
    w.object(key);
    w.nonempty_str("hostname", &event.host.name);
    if key == "host" {
        w.nonempty_str("name", &event.host.name);
        w.nonempty_str("architecture", &event.host.architecture);
        w.object("os");
        w.lit("type", "linux");
        w.nonempty_str("kernel", &event.host.kernel);
        w.end_object();
    }
    more(w);
    w.end_object();
}

/// The ECS `data_stream.dataset` (and `event.dataset`) of an event; the
/// Elasticsearch sink names data streams after it (`logs-<dataset>-default`).
pub fn dataset(event: &Event) -> &'static str {
    match &event.kind {
        EventKind::Process(_) => "lumen.process",
        EventKind::ApiActivity(_) => "lumen.k8s_audit",
        EventKind::Privilege(_) => "lumen.privilege",
        EventKind::Network(_) => "lumen.network",
        EventKind::Loss(_) => "lumen.loss",
        EventKind::File(_) => "lumen.file",
        EventKind::Finding(_) => "lumen.finding",
        EventKind::Resource(_) => "lumen.resources",
    }
}

fn data_stream(w: &mut JsonWriter<'_>, dataset: &'static str) {
    w.object("data_stream");
    w.lit("type", "logs");
    w.lit("dataset", dataset);
    w.lit("namespace", "default");
    w.end_object();
}

fn process(w: &mut JsonWriter<'_>, event: &Event, p: &ProcessEvent) {
    common_head(w, event.time);
    let (etype, action) = match p.activity {
        ProcessActivity::Exec => ("start", "exec"),
        ProcessActivity::Fork => ("start", "fork"),
        ProcessActivity::Exit => ("end", "exit"),
        ProcessActivity::OomKill => ("end", "oom_kill"),
    };
    event_object(w, event, "process", etype, action, None, "lumen.process");
    data_stream(w, dataset(event));
    host(w, event, "host");
    let pr = &p.process;
    process_object(w, event, pr, p.exit.as_ref());
    let mut id = itoa::Buffer::new();
    w.object("user");
    w.str("id", id.format(pr.uid));
    w.end_object();
    w.object("group");
    w.str("id", id.format(pr.gid));
    w.end_object();
    attribution(w, pr);
    w.object("lumen");
    lumen_process(w, pr, p.exit.and_then(|e| e.signal));
    exec_facts(w, &p.exe);
    w.end_object();
}

/// `event.*` for kernel events.
fn event_object(
    w: &mut JsonWriter<'_>,
    event: &Event,
    category: &str,
    etype: &str,
    action: &'static str,
    outcome: Option<bool>,
    dataset: &'static str,
) {
    w.object("event");
    w.lit("kind", "event");
    w.str_array("category", [category]);
    w.str_array("type", [etype]);
    w.lit("action", action);
    match outcome {
        Some(true) => w.lit("outcome", "success"),
        Some(false) => w.lit("outcome", "failure"),
        None => {}
    }
    w.lit("module", "lumen");
    w.lit("dataset", dataset);
    ts(w, "created", event.observed);
    w.end_object();
}

/// `process.*`: the process with its parent.
fn process_object(
    w: &mut JsonWriter<'_>,
    event: &Event,
    pr: &Process,
    exit: Option<&crate::event::ExitStatus>,
) {
    let mut id = itoa::Buffer::new();
    w.object("process");
    w.u64("pid", u64::from(pr.pid));
    w.object("thread");
    w.u64("id", u64::from(pr.tid));
    w.end_object();
    w.object("parent");
    w.u64("pid", u64::from(pr.ppid));
    let parent = &pr.parent;
    w.nonempty_str("executable", pr.s(parent.executable));
    w.nonempty_str("name", pr.s(parent.name));
    if !parent.argv.is_empty() {
        w.str_array("args", pr.parent_args());
        w.u64("args_count", pr.parent_args().count() as u64);
        w.command_line("command_line", pr.s(parent.argv));
    }
    w.end_object();
    w.nonempty_str("name", pr.name());
    w.nonempty_str("executable", pr.executable());
    if !pr.argv.is_empty() {
        w.str_array("args", pr.args());
        w.u64("args_count", pr.args_count() as u64);
        w.command_line("command_line", pr.s(pr.argv));
    }
    if let Some(exit) = exit {
        w.i64("exit_code", i64::from(exit.shell_code()));
        ts(w, "end", event.time);
    }
    w.object("user");
    w.str("id", id.format(pr.uid));
    w.end_object();
    w.object("group");
    w.str("id", id.format(pr.gid));
    w.end_object();
    if let Some(leader) = pr.entry_leader {
        w.object("entry_leader");
        w.u64("pid", u64::from(leader.pid));
        w.end_object();
    }
    w.end_object();
}

/// `process.*`, `user.id` and the container/pod of the process that acted.
fn acting_process(w: &mut JsonWriter<'_>, event: &Event, pr: &Process) {
    process_object(w, event, pr, None);
    w.object("user");
    w.str("id", itoa::Buffer::new().format(pr.uid));
    w.end_object();
    attribution(w, pr);
}

/// `exe.*` (inside the open `lumen` object of ECS, OCSF's `unmapped`):
/// what an exec's executable is, when it is drift or fileless.
pub(crate) fn exec_facts(w: &mut JsonWriter<'_>, exe: &crate::event::ExecFacts) {
    if !exe.drift() && !exe.fileless() {
        return;
    }
    w.object("exe");
    if exe.drift() {
        w.bool("drift", true);
        w.str_array("drift_reasons", exe.drift_reasons());
    }
    if exe.fileless() {
        w.bool("fileless", true);
        w.str_array("fileless_reasons", exe.fileless_reasons());
    }
    w.end_object();
}

/// `lumen.process.*` (inside an open `lumen` object).
fn lumen_process(w: &mut JsonWriter<'_>, pr: &Process, exit_signal: Option<i32>) {
    w.object("process");
    w.u64("cgroup_id", pr.cgroup_id);
    w.nonempty_str("cgroup", pr.s(pr.attribution.cgroup));
    let at = &pr.attribution;
    if at.pid_ns != 0 || at.mnt_ns != 0 || at.net_ns != 0 {
        w.object("namespaces");
        w.u64("pid", u64::from(at.pid_ns));
        w.u64("mnt", u64::from(at.mnt_ns));
        w.u64("net", u64::from(at.net_ns));
        w.end_object();
    }
    if pr.args_truncated {
        w.bool("args_truncated", true);
    }
    if let Some(leader) = pr.entry_leader {
        w.lit("container_entry", leader.entry.as_str());
        if leader.runtime_setup {
            w.bool("runtime_setup", true);
        }
    }
    if !pr.ancestry.is_empty() {
        w.array("ancestry");
        for pid in &pr.ancestry {
            w.elem_u64(u64::from(*pid));
        }
        w.end_array();
    }
    if let Some(sig) = exit_signal {
        w.i64("exit_signal", i64::from(sig));
    }
    w.end_object();
}

/// connect: `source` is this host, `destination` the peer (egress);
/// accept: `source` is the peer, `destination` this host (ingress);
/// bind/listen: `server` is the local address.
fn network(w: &mut JsonWriter<'_>, event: &Event, n: &NetworkEvent) {
    common_head(w, event.time);
    let etype = match n.op {
        NetworkOp::Connect | NetworkOp::Accept => "connection",
        NetworkOp::Listen => "start",
        NetworkOp::Bind => "info",
    };
    w.object("event");
    w.lit("kind", "event");
    w.str_array("category", ["network"]);
    if etype == "connection" {
        w.str_array("type", ["connection", "start"]);
    } else {
        w.str_array("type", [etype]);
    }
    w.lit("action", n.op.action());
    w.lit("outcome", if n.succeeded() { "success" } else { "failure" });
    w.lit("module", "lumen");
    w.lit("dataset", dataset(event));
    ts(w, "created", event.observed);
    w.end_object();
    data_stream(w, dataset(event));
    host(w, event, "host");
    let pr = &n.process;
    acting_process(w, event, pr);
    let mut id = itoa::Buffer::new();
    match (n.op, n.remote) {
        (NetworkOp::Connect, Some(remote)) => {
            w.socket_addr("source", n.local);
            w.socket_addr("destination", remote);
        }
        (NetworkOp::Accept, Some(remote)) => {
            w.socket_addr("source", remote);
            w.socket_addr("destination", n.local);
        }
        _ => w.socket_addr("server", n.local),
    }
    w.object("network");
    w.lit("type", if n.is_ipv6() { "ipv6" } else { "ipv4" });
    if let Some(t) = n.transport() {
        w.str("transport", t);
    }
    w.str("iana_number", id.format(n.protocol));
    match n.op {
        NetworkOp::Connect => w.lit("direction", "egress"),
        NetworkOp::Accept => w.lit("direction", "ingress"),
        _ => {}
    }
    w.end_object();
    let mut a = [0u8; 48];
    let mut b = [0u8; 48];
    w.object("related");
    w.array("ip");
    w.elem_str(crate::json::ip_str(n.local.ip(), &mut a));
    if let Some(r) = n.remote {
        w.elem_str(crate::json::ip_str(r.ip(), &mut b));
    }
    w.end_array();
    w.end_object();
    w.object("lumen");
    lumen_process(w, pr, None);
    w.object("network");
    w.i64("result", n.result);
    w.end_object();
    w.end_object();
}

/// `file.*` for a path.
fn file_fields(w: &mut JsonWriter<'_>, path: &str) {
    w.str("path", path);
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    w.str("name", if name.is_empty() { "/" } else { name });
    w.str("directory", if dir.is_empty() { "/" } else { dir });
    if let Some((_, ext)) = name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty()) {
        w.str("extension", ext);
    }
}

/// File events: `event.type` creation (open with O_CREAT), change (writes,
/// rename, chmod, chown), deletion (unlink), access (sensitive reads).
/// rename: `file.path` is the new path, `lumen.file.original_path` the old.
fn file(w: &mut JsonWriter<'_>, event: &Event, f: &FileEvent) {
    common_head(w, event.time);
    let etype = match f.op {
        FileOperation::Open if f.flags & FileEvent::O_CREAT != 0 => "creation",
        FileOperation::Open if f.writes() => "change",
        FileOperation::Open => "access",
        FileOperation::Unlink => "deletion",
        FileOperation::Rename | FileOperation::Chmod | FileOperation::Chown => "change",
    };
    event_object(
        w,
        event,
        "file",
        etype,
        f.op.action(),
        Some(true),
        "lumen.file",
    );
    data_stream(w, dataset(event));
    host(w, event, "host");
    let pr = &f.process;
    acting_process(w, event, pr);
    let mut id = itoa::Buffer::new();
    w.object("file");
    let path = pr.s(f.path);
    let new_path = pr.s(f.new_path);
    file_fields(
        w,
        if f.op == FileOperation::Rename && !new_path.is_empty() {
            new_path
        } else {
            path
        },
    );
    if let Some(mode) = f.mode {
        let mut m = String::with_capacity(4);
        use std::fmt::Write as _;
        let _ = write!(m, "{mode:04o}");
        w.str("mode", &m);
    }
    if let Some(uid) = f.uid {
        w.str("uid", id.format(uid));
    }
    if let Some(gid) = f.gid {
        w.str("gid", id.format(gid));
    }
    w.end_object();
    w.object("lumen");
    lumen_process(w, pr, None);
    w.object("file");
    if f.op == FileOperation::Open {
        w.u64("flags", u64::from(f.flags));
        w.bool("write", f.writes());
    }
    if f.sensitive {
        w.bool("sensitive", true);
    }
    if f.op == FileOperation::Rename {
        w.str("original_path", path);
    }
    w.end_object();
    w.end_object();
}

/// Lost kernel records and rate-limit summaries: ECS's `pipeline_error` kind.
fn loss(w: &mut JsonWriter<'_>, event: &Event, l: &crate::event::LossReport) {
    common_head(w, event.time);
    w.str("message", &l.message());
    w.object("event");
    w.lit("kind", "pipeline_error");
    w.str_array("category", ["host"]);
    w.str_array("type", ["info"]);
    w.lit("action", l.action());
    w.lit("module", "lumen");
    w.lit("dataset", "lumen.loss");
    ts(w, "start", l.since);
    ts(w, "end", l.until);
    ts(w, "created", event.observed);
    w.end_object();
    data_stream(w, dataset(event));
    host(w, event, "host");
    w.object("lumen");
    w.object("loss");
    w.u64("total", l.total());
    match &l.cause {
        crate::event::LossCause::RateLimit { transform, key } => {
            w.str("rate_limit", transform);
            w.str("key", key);
        }
        crate::event::LossCause::KernelUnwatched { reason } => w.str("unwatched_reason", reason),
        crate::event::LossCause::KernelRingBuffer => {}
    }
    w.object("by_kind");
    for (kind, n) in &l.by_kind {
        w.u64(kind, *n);
    }
    w.end_object();
    w.end_object();
    w.end_object();
}

fn credentials(w: &mut JsonWriter<'_>, key: &str, c: &Credentials) {
    w.object(key);
    for (k, v) in c.ids() {
        w.u64(k, u64::from(v));
    }
    for (k, v) in c.caps() {
        w.u64(k, v);
    }
    w.end_object();
}

/// ECS `event.category` and `event.type` of a privilege operation.
fn privilege_category(op: PrivilegeOp) -> (&'static str, &'static str) {
    match op {
        PrivilegeOp::PtraceAttach => ("process", "access"),
        PrivilegeOp::InitModule | PrivilegeOp::FinitModule | PrivilegeOp::BpfProgLoad => {
            ("driver", "start")
        }
        PrivilegeOp::Mount => ("file", "change"),
        _ => ("process", "change"),
    }
}

/// The (first) ECS `event.category` of an event, for routing (Kafka topics).
pub fn category(event: &Event) -> &'static str {
    match &event.kind {
        EventKind::Process(_) => "process",
        EventKind::ApiActivity(_) => "api",
        EventKind::Privilege(p) => privilege_category(p.op).0,
        EventKind::Network(_) => "network",
        EventKind::Loss(_) => "host",
        EventKind::File(_) => "file",
        EventKind::Finding(f) => category(&f.evidence),
        EventKind::Resource(_) => "host",
    }
}

fn privilege(w: &mut JsonWriter<'_>, event: &Event, p: &PrivilegeEvent) {
    common_head(w, event.time);
    let (category, etype) = privilege_category(p.op);
    event_object(
        w,
        event,
        category,
        etype,
        p.op.action(),
        Some(p.succeeded()),
        "lumen.privilege",
    );
    data_stream(w, dataset(event));
    host(w, event, "host");
    let pr = &p.process;
    process_object(w, event, pr, None);
    // The caller's identity before the call, and the effective one after.
    let mut id = itoa::Buffer::new();
    w.object("user");
    w.str("id", id.format(p.old.uid));
    w.object("effective");
    w.str("id", id.format(p.new.euid));
    w.object("group");
    w.str("id", id.format(p.new.egid));
    w.end_object();
    w.end_object();
    w.end_object();
    w.object("group");
    w.str("id", id.format(p.old.gid));
    w.end_object();
    attribution(w, pr);
    match p.op {
        PrivilegeOp::FinitModule => {
            if let Some(name) = Some(pr.s(p.object_name)).filter(|n| !n.is_empty()) {
                w.object("file");
                w.str("name", name);
                w.end_object();
            }
        }
        PrivilegeOp::Mount => {
            if let Some(m) = &p.mount {
                let target = pr.s(m.target);
                if !target.is_empty() {
                    w.object("file");
                    w.str("path", target);
                    w.lit("type", "dir");
                    w.end_object();
                }
            }
        }
        _ => {}
    }
    w.object("lumen");
    lumen_process(w, pr, None);
    w.object("privilege");
    w.i64("result", p.result);
    credentials(w, "old", &p.old);
    credentials(w, "new", &p.new);
    if p.op.changes_uid() || p.op.changes_gid() {
        w.array("requested");
        for id in &p.requested {
            if *id == u32::MAX {
                w.elem_i64(-1);
            } else {
                w.elem_u64(u64::from(*id));
            }
        }
        w.end_array();
    }
    if let Some(t) = p.target_pid {
        w.u64("target_pid", u64::from(t));
    }
    if let Some(t) = p.bpf_prog_type {
        w.u64("bpf_prog_type", u64::from(t));
        w.nonempty_str("bpf_prog_name", pr.s(p.object_name));
    }
    if let Some(m) = &p.mount {
        w.nonempty_str("mount_source", pr.s(m.source));
        w.nonempty_str("mount_fstype", pr.s(m.fstype));
        w.u64("mount_flags", m.flags);
    }
    if let Some(ns) = &p.namespace {
        namespace_join(w, ns);
    }
    w.end_object();
    w.end_object();
}

/// `namespace.*` of a setns (inside ECS's `lumen.privilege`, OCSF's
/// `unmapped`).
pub(crate) fn namespace_join(w: &mut JsonWriter<'_>, ns: &crate::event::NamespaceJoin) {
    w.object("namespace");
    if let Some(k) = ns.kind {
        w.lit("type", k.as_str());
    }
    if ns.inode != 0 {
        w.u64("inode", ns.inode);
    }
    w.u64("nstype", u64::from(ns.nstype));
    w.bool("host", ns.host);
    w.end_object();
}

/// `container.*` (ECS) and `kubernetes.pod.*` (the namespace Elastic's
/// Kubernetes integrations use) for a process in a container or pod.
fn attribution(w: &mut JsonWriter<'_>, pr: &crate::event::Process) {
    attribution_of(w, &pr.attribution, &pr.text, |_| {});
}

/// As [`attribution`], for attribution whose strings are in `text`;
/// `more` adds members to the `container` object.
fn attribution_of(
    w: &mut JsonWriter<'_>,
    at: &crate::event::Attribution,
    text: &str,
    more: impl FnOnce(&mut JsonWriter<'_>),
) {
    struct Text<'a>(&'a str);
    impl Text<'_> {
        fn s(&self, s: Str) -> &str {
            s.get(self.0)
        }
    }
    let pr = Text(text);
    if !at.container_id.is_empty() {
        w.object("container");
        w.str("id", pr.s(at.container_id));
        if let Some(rt) = at.runtime {
            w.lit("runtime", rt.as_str());
        }
        w.nonempty_str("name", pr.s(at.container_name));
        if !at.image.is_empty() {
            w.object("image");
            w.str("name", pr.s(at.image));
            w.end_object();
        }
        more(w);
        w.end_object();
    }
    if !at.pod_uid.is_empty() {
        w.object("orchestrator");
        w.lit("type", "kubernetes");
        w.nonempty_str("namespace", pr.s(at.namespace));
        w.object("resource");
        w.lit("type", "pod");
        w.nonempty_str("name", pr.s(at.pod_name));
        w.end_object();
        w.end_object();
        w.object("kubernetes");
        w.nonempty_str("namespace", pr.s(at.namespace));
        w.object("pod");
        w.str("uid", pr.s(at.pod_uid));
        w.nonempty_str("name", pr.s(at.pod_name));
        if let Some(q) = at.qos_class {
            w.lit("qos_class", q.as_str());
        }
        w.end_object();
        if !at.container_name.is_empty() {
            w.object("container");
            w.str("name", pr.s(at.container_name));
            w.end_object();
        }
        if !at.labels.is_empty() {
            // As Elastic's Kubernetes metadata does: dots in keys become `_`.
            w.object("labels");
            let mut key = String::new();
            for (k, v) in &at.labels {
                key.clear();
                key.extend(pr.s(*k).chars().map(|c| if c == '.' { '_' } else { c }));
                w.str_with_data_key(&key, pr.s(*v));
            }
            w.end_object();
        }
        w.end_object();
    }
}

/// ECS `event.type` for a Kubernetes verb.
fn verb_event_type(verb: &str) -> &'static str {
    match verb {
        "create" => "creation",
        "update" | "patch" => "change",
        "delete" | "deletecollection" => "deletion",
        _ => "access",
    }
}

fn api(w: &mut JsonWriter<'_>, event: &Event, a: &ApiActivity) {
    let s = |v: Str| a.s(v);
    common_head(w, event.time);
    w.object("event");
    w.lit("kind", "event");
    w.str_array("category", ["api"]);
    w.array("type");
    w.elem_str(verb_event_type(s(a.verb)));
    match s(a.authz_decision) {
        "allow" => w.elem_str("allowed"),
        "forbid" => w.elem_str("denied"),
        _ => {}
    }
    w.end_array();
    let gke = a.wrapper.as_ref().filter(|w| w.provider == "gke");
    // Elastic's GCP audit mapping: the method (`io.k8s.core.v1.pods.create`).
    w.str("action", s(gke.map_or(a.verb, |g| g.method)));
    if let Some(kind) = gke.and_then(|g| log_kind(s(g.log_name))) {
        w.str("provider", kind);
    }
    match a.failed() {
        Some(false) => w.lit("outcome", "success"),
        Some(true) => w.lit("outcome", "failure"),
        None => w.lit("outcome", "unknown"),
    }
    w.str("id", s(a.audit_id));
    w.lit("module", "kubernetes");
    w.lit("dataset", "lumen.k8s_audit");
    if let Some(t) = a.request_received {
        ts(w, "start", t);
    }
    if let Some(t) = a.stage_time {
        ts(w, "end", t);
    }
    ts(w, "created", event.observed);
    w.raw("original", a.original_literal());
    w.end_object();
    data_stream(w, dataset(event));
    host(w, event, "observer");

    w.object("user");
    w.nonempty_str("id", s(a.user.uid));
    w.nonempty_str("name", s(a.user.username));
    // A GKE principal is an email address, or a Kubernetes user name.
    if let Some(email) = gke
        .and_then(|_| a.opt(a.user.username))
        .filter(|u| u.contains('@'))
    {
        w.str("email", email);
    }
    if !a.user.groups.is_empty() {
        w.str_array("roles", a.strs(&a.user.groups));
    }
    if let Some(imp) = &a.impersonated_user {
        w.object("effective");
        w.nonempty_str("id", s(imp.uid));
        w.nonempty_str("name", s(imp.username));
        w.end_object();
    }
    w.end_object();

    if !a.source_ips.is_empty() {
        w.object("source");
        match (gke, &a.source_ips[..]) {
            // Elastic's GCP mapping: the one `callerIp`, not a list.
            (Some(_), [ip]) => w.str("ip", s(*ip)),
            _ => w.str_array("ip", a.strs(&a.source_ips)),
        }
        w.end_object();
        w.object("client");
        w.str_array("ip", a.strs(&a.source_ips));
        w.end_object();
    }
    if let Some(ua) = a.opt(a.user_agent) {
        w.object("user_agent");
        w.str("original", ua);
        w.end_object();
    }

    w.object("related");
    if !a.source_ips.is_empty() {
        w.str_array("ip", a.strs(&a.source_ips));
    }
    w.array("user");
    for u in std::iter::once(&a.user).chain(a.impersonated_user.iter()) {
        for v in [u.uid, u.username] {
            if !v.is_empty() {
                w.elem_str(s(v));
            }
        }
    }
    w.end_array();
    w.end_object();

    w.object("orchestrator");
    w.lit("type", "kubernetes");
    if let Some(wr) = &a.wrapper {
        if let Some(cluster) = a.opt(wr.cluster) {
            w.object("cluster");
            w.str("name", cluster);
            w.end_object();
        }
    }
    w.nonempty_str("api_version", s(a.audit_api_version));
    if let Some(o) = &a.object_ref {
        w.nonempty_str("namespace", s(o.namespace));
        if !o.resource.is_empty() || !o.name.is_empty() {
            w.object("resource");
            w.nonempty_str("type", s(o.resource));
            w.nonempty_str("name", s(o.name));
            w.end_object();
        }
    }
    w.end_object();

    if let Some(uri) = a.opt(a.request_uri) {
        w.object("url");
        w.str("original", uri);
        match uri.split_once('?') {
            Some((path, query)) => {
                w.str("path", path);
                w.str("query", query);
            }
            None => w.str("path", uri),
        }
        w.end_object();
    }
    if let Some(st) = &a.response_status {
        w.object("http");
        w.object("response");
        w.u64("status_code", u64::from(st.code));
        w.end_object();
        w.end_object();
    }
    if !a.container_images.is_empty() {
        w.object("container");
        w.object("image");
        w.str_array("name", a.strs(&a.container_images));
        w.end_object();
        w.end_object();
    }
    if let Some(wr) = &a.wrapper {
        cloud(w, a, wr);
    }
    kubernetes_audit(w, a);
}

/// `cloud.*`, and what Elastic's GCP and AWS integrations keep of the record
/// that carried the event (`service.name`, `log.logger`, `gcp.audit.*`;; `aws.cloudwatch.*`).
fn cloud(w: &mut JsonWriter<'_>, a: &ApiActivity, wr: &Wrapper) {
    let s = |v: Str| a.s(v);
    w.object("cloud");
    w.str("provider", wr.cloud_provider());
    if let Some(account) = a.opt(wr.account) {
        w.object(if wr.provider == "gke" {
            "project"
        } else {
            "account"
        });
        w.str("id", account);
        w.end_object();
    }
    if let Some(location) = a.opt(wr.location) {
        let (region, zone) = region_and_zone(location);
        w.str("region", region);
        w.opt_str("availability_zone", zone);
    }
    w.end_object();
    match &*wr.provider {
        "gke" => {
            if let Some(service) = a.opt(wr.service) {
                w.object("service");
                w.str("name", service);
                w.end_object();
            }
            if let Some(log) = a.opt(wr.log_name) {
                w.object("log");
                w.str("logger", log);
                w.end_object();
            }
            w.object("gcp");
            w.object("audit");
            w.lit("type", "type.googleapis.com/google.cloud.audit.AuditLog");
            w.nonempty_str("method_name", s(wr.method));
            w.nonempty_str("resource_name", s(wr.resource_name));
            w.nonempty_str("service_name", s(wr.service));
            if let Some(code) = wr.rpc_code {
                w.object("status");
                w.i64("code", i64::from(code));
                w.end_object();
            }
            if !wr.authorizations.is_empty() {
                w.array("authorization_info");
                for z in &wr.authorizations {
                    w.begin_object();
                    w.nonempty_str("permission", s(z.permission));
                    w.nonempty_str("resource", s(z.resource));
                    if let Some(granted) = z.granted {
                        w.bool("granted", granted);
                    }
                    w.end_object();
                }
                w.end_array();
            }
            w.end_object();
            w.end_object();
        }
        "eks" => {
            w.object("aws");
            w.object("cloudwatch");
            w.nonempty_str("log_group", s(wr.log_name));
            w.nonempty_str("log_stream", s(wr.log_stream));
            w.nonempty_str("message_id", s(wr.record_id));
            w.end_object();
            w.end_object();
        }
        _ => {}
    }
}

/// A GCP location as region and zone: `us-central1-a` is a zone of
/// `us-central1`; `us-central1` a region.
pub(crate) fn region_and_zone(location: &str) -> (&str, Option<&str>) {
    match location.rsplit_once('-') {
        Some((region, z)) if z.len() == 1 && z.bytes().all(|b| b.is_ascii_lowercase()) => {
            (region, Some(location))
        }
        _ => (location, None),
    }
}

/// The kind of a Cloud Audit Logs log (`activity`, `data_access`,
/// `system_event`, `policy`), from its name
/// (`projects/p/logs/cloudaudit.googleapis.com%2Fdata_access`).
fn log_kind(log_name: &str) -> Option<&str> {
    log_name
        .rsplit_once("cloudaudit.googleapis.com%2F")
        .map(|(_, kind)| kind)
        .filter(|k| !k.is_empty())
}

/// `kubernetes.audit.*`: the event's own fields under their audit names, as
/// Elastic's integration keeps them (request and response bodies stay in
/// `event.original`).
fn kubernetes_audit(w: &mut JsonWriter<'_>, a: &ApiActivity) {
    let s = |v: Str| a.s(v);
    w.object("kubernetes");
    w.object("audit");
    w.nonempty_str("apiVersion", s(a.audit_api_version));
    w.lit("kind", "Event");
    w.str("auditID", s(a.audit_id));
    w.str("stage", s(a.stage));
    w.nonempty_str("level", s(a.level));
    w.str("verb", s(a.verb));
    w.nonempty_str("requestURI", s(a.request_uri));
    if !a.source_ips.is_empty() {
        w.str_array("sourceIPs", a.strs(&a.source_ips));
    }
    w.nonempty_str("userAgent", s(a.user_agent));
    for (key, user) in [
        ("user", Some(&a.user)),
        ("impersonatedUser", a.impersonated_user.as_ref()),
    ] {
        let Some(u) = user else { continue };
        w.object(key);
        w.nonempty_str("username", s(u.username));
        w.nonempty_str("uid", s(u.uid));
        if !u.groups.is_empty() {
            w.str_array("groups", a.strs(&u.groups));
        }
        w.end_object();
    }
    if let Some(o) = &a.object_ref {
        w.object("objectRef");
        w.nonempty_str("resource", s(o.resource));
        w.nonempty_str("namespace", s(o.namespace));
        w.nonempty_str("name", s(o.name));
        w.nonempty_str("uid", s(o.uid));
        w.nonempty_str("apiGroup", s(o.api_group));
        w.nonempty_str("apiVersion", s(o.api_version));
        w.nonempty_str("resourceVersion", s(o.resource_version));
        w.nonempty_str("subresource", s(o.subresource));
        w.end_object();
    }
    if let Some(st) = &a.response_status {
        w.object("responseStatus");
        w.u64("code", u64::from(st.code));
        w.nonempty_str("status", s(st.status));
        w.nonempty_str("reason", s(st.reason));
        w.nonempty_str("message", s(st.message));
        w.end_object();
    }
    if let Some(t) = a.request_received {
        ts(w, "requestReceivedTimestamp", t);
    }
    if let Some(t) = a.stage_time {
        ts(w, "stageTimestamp", t);
    }
    if a.annotations.iter().any(|(_, v)| !v.is_empty()) {
        w.object("annotations");
        let mut key = String::new();
        for (k, v) in a.annotations.iter().filter(|(_, v)| !v.is_empty()) {
            key.clear();
            key.extend(s(*k).chars().map(|c| if c == '.' { '_' } else { c }));
            w.str_with_data_key(&key, s(*v));
        }
        w.end_object();
    }
    if let Some(wr) = a.wrapper.as_ref().filter(|w| w.provider == "aks") {
        w.object("aks_metadata");
        w.nonempty_str("category", s(wr.category));
        w.nonempty_str("operation_name", s(wr.operation_name));
        w.nonempty_str("resource_id", s(wr.resource_id));
        w.nonempty_str("pod", s(wr.pod));
        w.nonempty_str("container_id", s(wr.container_id));
        w.nonempty_str("time", s(wr.time));
        w.end_object();
    }
    w.end_object();
    w.end_object();
}

/// A finding: the evidence's own document, made an alert (`event.kind:
/// alert`, `event.severity`, `event.risk_score`, `event.reason`), in the
/// `lumen.finding` dataset, with `rule.*`, `threat.*` (MITRE ATT&CK) and
/// `lumen.finding.*` (how many matches it stands for, when). Findings are
/// rare: the evidence goes through a JSON value to be reshaped.
fn finding(w: &mut JsonWriter<'_>, event: &Event, f: &crate::event::Finding) {
    use serde_json::{json, Value};
    let mut doc = Vec::new();
    encode(&f.evidence, &mut doc);
    let mut map = match serde_json::from_slice::<Value>(&doc) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let rule = &f.rule;
    if let Some(Value::Object(e)) = map.get_mut("event") {
        e.insert("kind".into(), "alert".into());
        e.insert("severity".into(), rule.severity.id().into());
        e.insert("risk_score".into(), risk_score(rule.severity).into());
        e.insert("reason".into(), rule.title.clone().into());
        e.insert("dataset".into(), "lumen.finding".into());
        e.insert("created".into(), (*event.observed.rfc3339()).into());
    }
    if let Some(Value::Object(d)) = map.get_mut("data_stream") {
        d.insert("dataset".into(), "lumen.finding".into());
    }
    let mut rule_obj = json!({
        "id": rule.id,
        "uuid": rule.id,
        "name": rule.title,
        "description": rule.description,
        "ruleset": rule.ruleset,
        "category": rule.types.join(", "),
        "author": ["Lumen"],
    });
    if let Some(reference) = rule.references.first() {
        rule_obj["reference"] = reference.as_str().into();
    }
    map.insert("rule".into(), rule_obj);
    if !rule.attacks.is_empty() {
        let ids = |f: fn(&crate::event::Attack) -> &str| -> Vec<&str> {
            let mut out: Vec<&str> = rule.attacks.iter().map(f).collect();
            out.dedup();
            out
        };
        map.insert(
            "threat".into(),
            json!({
                "framework": "MITRE ATT&CK",
                "tactic": {"id": ids(|a| &a.tactic_id), "name": ids(|a| &a.tactic)},
                "technique": {"id": ids(|a| &a.technique_id), "name": ids(|a| &a.technique)},
            }),
        );
    }
    let lumen = map
        .entry("lumen")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(l) = lumen {
        l.insert(
            "finding".into(),
            json!({
                "count": f.count,
                "first_seen": &*f.first_seen.rfc3339(),
                "last_seen": &*f.last_seen.rfc3339(),
            }),
        );
    }
    // The finding's own marker is written after the body.
    if !event.redaction.is_empty() {
        map.remove("labels");
    }
    for (key, value) in &map {
        w.raw(key, &serde_json::to_vec(value).unwrap_or_default());
    }
}

/// Elastic's risk scores per severity (low 21, medium 47, high 73,
/// critical 99).
pub fn risk_score(severity: crate::event::Severity) -> u64 {
    use crate::event::Severity as S;
    match severity {
        S::Informational => 0,
        S::Low => 21,
        S::Medium => 47,
        S::High => 73,
        S::Critical => 99,
    }
}

/// A resource sample: `event.kind: metric`; a container's shares in ECS's
/// `container.cpu.usage`, `container.memory.usage` and
/// `container.disk.{read,write}.bytes` (the host's in `host.*`); every
/// counter in `lumen.resources`.
fn resource(w: &mut JsonWriter<'_>, event: &Event, r: &crate::event::ResourceSample) {
    let u = &r.usage;
    common_head(w, event.time);
    w.object("event");
    w.lit("kind", "metric");
    w.str_array("category", ["host"]);
    w.str_array("type", ["info"]);
    w.lit("action", "resource_sample");
    w.lit("module", "lumen");
    w.lit("dataset", dataset(event));
    ts(w, "created", event.observed);
    w.u64("duration", r.interval_ns);
    w.end_object();
    data_stream(w, dataset(event));
    let disk = |w: &mut JsonWriter<'_>| {
        if u.io_read_bytes.is_some() || u.io_write_bytes.is_some() {
            w.object("disk");
            for (key, v) in [("read", u.io_read_bytes), ("write", u.io_write_bytes)] {
                if let Some(v) = v {
                    w.object(key);
                    w.u64("bytes", v);
                    w.end_object();
                }
            }
            w.end_object();
        }
    };
    let shares = |w: &mut JsonWriter<'_>, memory: bool| {
        if let Some(cpu) = r.cpu_share() {
            w.object("cpu");
            w.f64("usage", cpu);
            w.end_object();
        }
        if let Some(m) = r.memory_share().filter(|_| memory) {
            w.object("memory");
            w.f64("usage", m);
            w.end_object();
        }
    };
    host_with(w, event, "host", |w| {
        if r.scope == Some(crate::event::ResourceScope::Host) {
            shares(w, false);
            disk(w);
        }
    });
    attribution_of(w, &r.attribution, &r.text, |w| {
        shares(w, true);
        disk(w);
    });
    w.object("lumen");
    w.object("resources");
    resource_counters(w, r);
    w.end_object();
    w.end_object();
}

/// A resource sample's scope, cgroup and counters, grouped (inside ECS's
/// `lumen.resources`, OCSF's `unmapped.resources`).
pub(crate) fn resource_counters(w: &mut JsonWriter<'_>, r: &crate::event::ResourceSample) {
    if let Some(scope) = r.scope {
        w.lit("scope", scope.as_str());
    }
    w.str("cgroup", r.s(r.cgroup));
    w.u64("interval_ns", r.interval_ns);
    w.u64("online_cpus", u64::from(r.online_cpus));
    let u = &r.usage;
    let group = |w: &mut JsonWriter<'_>, key: &str, members: &[(&str, Option<u64>)]| {
        if members.iter().any(|(_, v)| v.is_some()) {
            w.object(key);
            for (k, v) in members {
                if let Some(v) = v {
                    w.u64(k, *v);
                }
            }
            w.end_object();
        }
    };
    group(
        w,
        "cpu",
        &[
            ("usage_ns", u.cpu_usage_ns),
            ("periods", u.cpu_periods),
            ("throttled_periods", u.cpu_throttled_periods),
            ("throttled_ns", u.cpu_throttled_ns),
            ("quota_us", u.cpu_quota.map(|q| q.0)),
            ("period_us", u.cpu_quota.map(|q| q.1)),
        ],
    );
    group(
        w,
        "memory",
        &[
            ("usage_bytes", u.memory_usage),
            ("limit_bytes", u.memory_limit),
            ("high_events", u.memory_high_events),
            ("max_events", u.memory_max_events),
            ("oom_events", u.memory_oom_events),
            ("oom_kills", u.memory_oom_kills),
        ],
    );
    group(
        w,
        "io",
        &[
            ("read_bytes", u.io_read_bytes),
            ("write_bytes", u.io_write_bytes),
            ("read_ops", u.io_read_ops),
            ("write_ops", u.io_write_ops),
        ],
    );
    group(
        w,
        "pids",
        &[
            ("current", u.pids_current),
            ("limit", u.pids_limit),
            ("max_events", u.pids_max_events),
        ],
    );
    if u.pressure_us.iter().any(Option::is_some) {
        w.object("pressure");
        for (i, name) in crate::event::ResourceUse::PSI {
            if let Some(v) = u.pressure_us[i] {
                w.u64(name, v);
            }
        }
        w.end_object();
    }
    if let Some(s) = &r.sched {
        w.object("sched");
        w.u64("waits", s.waits);
        w.u64("wait_ns", s.wait_ns);
        w.u64("wait_avg_ns", s.wait_avg_ns());
        w.u64("wait_p99_ns", s.wait_p99_ns);
        w.array("wait_hist");
        for n in &s.wait_hist {
            w.elem_u64(*n);
        }
        w.end_array();
        w.u64("delays", s.delays);
        w.u64("delay_ns", s.delay_ns);
        w.u64("preempted", s.preempted);
        if !s.neighbours.is_empty() {
            w.array("neighbours");
            for n in &s.neighbours {
                w.begin_object();
                w.str("cgroup", r.s(n.cgroup));
                w.nonempty_str("container_id", r.s(n.container_id));
                w.nonempty_str("pod_uid", r.s(n.pod_uid));
                w.u64("waits", n.waits);
                w.u64("wait_ns", n.wait_ns);
                w.u64("delays", n.delays);
                w.u64("delay_ns", n.delay_ns);
                w.u64("preemptions", n.preemptions);
                w.end_object();
            }
            w.end_array();
        }
        w.end_object();
    }
}
