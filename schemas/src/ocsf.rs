//! OCSF 1.8.0 encoder.
//!
//! - process exec/exit → Process Activity (1007), activity Launch (1) / Terminate (2);
//! - Kubernetes audit → API Activity (6003), activity from the verb:
//!   create → Create (1), get/list/watch → Read (2), update/patch → Update (3),
//!   delete/deletecollection → Delete (4), anything else → Other (99).
//!
//! `time` is milliseconds since the epoch, as OCSF's `timestamp_t` says.
//! The source record is kept in `raw_data`; source fields OCSF has no
//! attribute for go under `unmapped`.

use crate::event::{
    ApiActivity, Event, EventKind, FileEvent, FileOperation, LossCause, MarkerForm, NetworkEvent,
    NetworkOp, PrivilegeEvent, PrivilegeOp, Process, ProcessActivity, ProcessEvent, Redaction, Str,
};
use crate::json::JsonWriter;
use crate::{OCSF_VERSION, PRODUCT_NAME, PRODUCT_VERSION};

/// Appends `event` as one OCSF JSON document.
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
    w.end_object();
}

/// The class, category and activity members every OCSF event starts with.
struct Class {
    uid: u64,
    name: &'static str,
    category_uid: u64,
    category_name: &'static str,
}

const PROCESS_ACTIVITY: Class = Class {
    uid: 1007,
    name: "Process Activity",
    category_uid: 1,
    category_name: "System Activity",
};

const API_ACTIVITY: Class = Class {
    uid: 6003,
    name: "API Activity",
    category_uid: 6,
    category_name: "Application Activity",
};

/// OCSF `severity_id` and its caption.
type Severity = (u64, &'static str);
const INFORMATIONAL: Severity = (1, "Informational");
const MEDIUM: Severity = (3, "Medium");

fn head(
    w: &mut JsonWriter<'_>,
    class: &Class,
    activity_id: u64,
    activity_name: &'static str,
    event: &Event,
    severity: Severity,
) {
    w.u64("class_uid", class.uid);
    w.lit("class_name", class.name);
    w.u64("category_uid", class.category_uid);
    w.lit("category_name", class.category_name);
    w.u64("activity_id", activity_id);
    w.lit("activity_name", activity_name);
    w.u64("type_uid", class.uid * 100 + activity_id);
    w.lits("type_name", &[class.name, ": ", activity_name]);
    w.i64("time", event.time.as_millis());
    w.u64("severity_id", severity.0);
    w.lit("severity", severity.1);
}

fn metadata(
    w: &mut JsonWriter<'_>,
    event: &Event,
    uid: Option<&str>,
    log_name: &'static str,
    profiles: &[&str],
) {
    w.object("metadata");
    w.lit("version", OCSF_VERSION);
    if !profiles.is_empty() {
        w.str_array("profiles", profiles.iter().copied());
    }
    w.object("product");
    w.lit("name", PRODUCT_NAME);
    w.lit("vendor_name", PRODUCT_NAME);
    w.lit("version", PRODUCT_VERSION);
    w.end_object();
    w.opt_str("uid", uid);
    w.lit("log_name", log_name);
    w.i64("logged_time", event.observed.as_millis());
    let r = &event.redaction;
    if !r.is_empty() {
        // What a redact transform changed: `redacted:<field>`,
        // `redaction_rule:<rule>`; written once for the events that share it.
        match r.encoded(MarkerForm::OcsfLabels, |r| {
            let mut out = Vec::new();
            redaction_labels(&mut JsonWriter::new(&mut out), r);
            out
        }) {
            Some(labels) => w.raw("labels", labels),
            None => {
                w.array("labels");
                redaction_label_elems(w, r);
                w.end_array();
            }
        }
    }
    w.end_object();
}

/// `["redacted:<field>", …, "redaction_rule:<rule>", …]` on its own.
fn redaction_labels(w: &mut JsonWriter<'_>, r: &Redaction) {
    w.begin_array();
    redaction_label_elems(w, r);
    w.end_array();
}

fn redaction_label_elems(w: &mut JsonWriter<'_>, r: &Redaction) {
    let mut label = String::new();
    for (prefix, names) in [("redacted:", &r.fields), ("redaction_rule:", &r.rules)] {
        for n in names {
            label.clear();
            label.push_str(prefix);
            label.push_str(n);
            w.elem_str(&label);
        }
    }
}

fn device(w: &mut JsonWriter<'_>, event: &Event) {
    device_with(w, event, |_| {});
}

/// As [`device`]; `more` adds members to the object.
fn device_with(w: &mut JsonWriter<'_>, event: &Event, more: impl FnOnce(&mut JsonWriter<'_>)) {
    w.object("device");
    w.u64("type_id", 1);
    w.lit("type", "Server");
    w.nonempty_str("hostname", &event.host.name);
    w.nonempty_str("name", &event.host.name);
    w.object("os");
    w.lit("name", "Linux");
    w.u64("type_id", 200);
    w.lit("type", "Linux");
    w.nonempty_str("kernel_release", &event.host.kernel);
    w.end_object();
    more(w);
    w.end_object();
}

fn process(w: &mut JsonWriter<'_>, event: &Event, p: &ProcessEvent) {
    // exec is the launch of a program; a fork without exec has no OCSF
    // activity of its own (Other, named "Fork").
    let (activity_id, activity_name) = match p.activity {
        ProcessActivity::Exec => (1, "Launch"),
        ProcessActivity::Fork => (99, "Fork"),
        ProcessActivity::Exit => (2, "Terminate"),
        ProcessActivity::OomKill => (99, "OOM Kill"),
    };
    head(
        w,
        &PROCESS_ACTIVITY,
        activity_id,
        activity_name,
        event,
        INFORMATIONAL,
    );
    w.u64("status_id", 1);
    w.lit("status", "Success");
    let pr = &p.process;
    metadata(w, event, None, "ebpf", profiles(pr));
    device(w, event);

    // The actor of a launch is the parent that called exec's fork; of an
    // exit, the process itself.
    w.object("actor");
    w.object("process");
    match p.activity {
        ProcessActivity::Exec | ProcessActivity::Fork => w.u64("pid", u64::from(pr.ppid)),
        ProcessActivity::Exit | ProcessActivity::OomKill => w.u64("pid", u64::from(pr.pid)),
    }
    w.end_object();
    w.end_object();

    let terminated = p.exit.is_some().then_some(event.time);
    process_object(w, "process", pr, terminated);
    if let Some(exit) = &p.exit {
        w.i64("exit_code", i64::from(exit.shell_code()));
    }
    w.object("unmapped");
    unmapped_process(w, pr);
    if let Some(sig) = p.exit.and_then(|e| e.signal) {
        w.i64("exit_signal", i64::from(sig));
    }
    // Drift and fileless execution: OCSF has no attribute for them.
    crate::ecs::exec_facts(w, &p.exe);
    w.end_object();
}

/// The profiles an event about `pr` uses.
fn profiles(pr: &Process) -> &'static [&'static str] {
    if pr.attribution.container_id.is_empty() {
        &[]
    } else {
        &["container"]
    }
}

fn file_object(w: &mut JsonWriter<'_>, path: &str, type_id: u64, type_name: &'static str) {
    w.object("file");
    w.str(
        "name",
        path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path),
    );
    w.str("path", path);
    w.u64("type_id", type_id);
    w.lit("type", type_name);
    w.end_object();
}

/// An OCSF `process` object (with parent, ancestry and container) as `key`.
fn process_object(
    w: &mut JsonWriter<'_>,
    key: &str,
    pr: &Process,
    terminated: Option<crate::time::Timestamp>,
) {
    let mut uid = itoa::Buffer::new();
    w.object(key);
    w.u64("pid", u64::from(pr.pid));
    w.u64("tid", u64::from(pr.tid));
    w.nonempty_str("name", pr.name());
    if !pr.argv.is_empty() {
        w.command_line("cmd_line", pr.s(pr.argv));
    }
    let exe = pr.executable();
    if !exe.is_empty() {
        file_object(w, exe, 1, "Regular File");
    }
    w.object("user");
    w.str("uid", uid.format(pr.uid));
    w.end_object();
    w.object("parent_process");
    w.u64("pid", u64::from(pr.ppid));
    let parent = &pr.parent;
    w.nonempty_str("name", pr.s(parent.name));
    if !parent.argv.is_empty() {
        w.command_line("cmd_line", pr.s(parent.argv));
    }
    let parent_exe = pr.s(parent.executable);
    if !parent_exe.is_empty() {
        file_object(w, parent_exe, 1, "Regular File");
    }
    w.end_object();
    if !pr.ancestry.is_empty() {
        w.array("ancestry");
        for pid in &pr.ancestry {
            w.begin_object();
            w.u64("pid", u64::from(*pid));
            w.end_object();
        }
        w.end_array();
    }
    if let Some(t) = terminated {
        w.i64("terminated_time", t.as_millis());
    }
    container_object(w, &pr.attribution, &pr.text);
    w.end_object();
}

/// An OCSF `container` object, when the attribution names a container
/// (its strings in `text`).
fn container_object(w: &mut JsonWriter<'_>, at: &crate::event::Attribution, text: &str) {
    if at.container_id.is_empty() {
        return;
    }
    let s = |v: crate::event::Str| v.get(text);
    w.object("container");
    w.str("uid", s(at.container_id));
    if let Some(rt) = at.runtime {
        w.lit("runtime", rt.as_str());
    }
    if !at.pod_uid.is_empty() {
        w.str("pod_uuid", s(at.pod_uid));
        w.lit("orchestrator", "kubernetes");
    }
    w.nonempty_str("name", s(at.container_name));
    if !at.image.is_empty() {
        w.object("image");
        w.str("name", s(at.image));
        w.str("uid", s(at.image));
        w.end_object();
    }
    if !at.labels.is_empty() {
        w.array("labels");
        let mut label = String::new();
        for (k, v) in &at.labels {
            label.clear();
            label.push_str(s(*k));
            label.push('=');
            label.push_str(s(*v));
            w.elem_str(&label);
        }
        w.end_array();
    }
    w.end_object();
}

/// Process details OCSF has no attribute for (inside an open `unmapped`).
fn unmapped_process(w: &mut JsonWriter<'_>, pr: &Process) {
    let at = &pr.attribution;
    w.u64("cgroup_id", pr.cgroup_id);
    w.nonempty_str("cgroup", pr.s(at.cgroup));
    if !at.pod_uid.is_empty() {
        w.str("pod_uid", pr.s(at.pod_uid));
    }
    w.nonempty_str("pod_name", pr.s(at.pod_name));
    w.nonempty_str("namespace", pr.s(at.namespace));
    if let Some(q) = at.qos_class {
        w.lit("pod_qos_class", q.as_str());
    }
    if at.pid_ns != 0 || at.mnt_ns != 0 || at.net_ns != 0 {
        w.object("namespaces");
        w.u64("pid", u64::from(at.pid_ns));
        w.u64("mnt", u64::from(at.mnt_ns));
        w.u64("net", u64::from(at.net_ns));
        w.end_object();
    }
    w.u64("gid", u64::from(pr.gid));
    if let Some(leader) = pr.entry_leader {
        w.lit("container_entry", leader.entry.as_str());
        w.u64("entry_leader_pid", u64::from(leader.pid));
        if leader.runtime_setup {
            w.bool("runtime_setup", true);
        }
    }
    if !pr.argv.is_empty() {
        w.str_array("argv", pr.args());
    }
    if pr.args_truncated {
        w.bool("args_truncated", true);
    }
}

const NETWORK_ACTIVITY: Class = Class {
    uid: 4001,
    name: "Network Activity",
    category_uid: 4,
    category_name: "Network Activity",
};

/// Network Activity (4001): connect → Open (1), or Refuse (5) on
/// ECONNREFUSED, Fail (4) on other errors; accept → Open; listen → Listen
/// (7); bind → Other (99) "Bind". `actor` and `device` come with the `host`
/// profile in this class.
fn network(w: &mut JsonWriter<'_>, event: &Event, n: &NetworkEvent) {
    let (activity_id, activity_name) = match n.op {
        NetworkOp::Connect if n.result == -NetworkEvent::ECONNREFUSED => (5, "Refuse"),
        NetworkOp::Connect if !n.succeeded() => (4, "Fail"),
        NetworkOp::Connect | NetworkOp::Accept => (1, "Open"),
        NetworkOp::Listen => (7, "Listen"),
        NetworkOp::Bind => (99, "Bind"),
    };
    head(
        w,
        &NETWORK_ACTIVITY,
        activity_id,
        activity_name,
        event,
        INFORMATIONAL,
    );
    syscall_status(w, n.succeeded(), n.result);
    let pr = &n.process;
    let in_container = !pr.attribution.container_id.is_empty();
    let profiles: &[&str] = if in_container {
        &["host", "container"]
    } else {
        &["host"]
    };
    metadata(w, event, None, "ebpf", profiles);
    device(w, event);
    w.object("actor");
    process_object(w, "process", pr, None);
    w.end_object();
    match (n.op, n.remote) {
        (NetworkOp::Connect, Some(remote)) => {
            w.socket_addr("src_endpoint", n.local);
            w.socket_addr("dst_endpoint", remote);
        }
        (NetworkOp::Accept, Some(remote)) => {
            w.socket_addr("src_endpoint", remote);
            w.socket_addr("dst_endpoint", n.local);
        }
        _ => w.socket_addr("dst_endpoint", n.local),
    }
    w.object("connection_info");
    match n.op {
        NetworkOp::Connect => {
            w.u64("direction_id", 2);
            w.lit("direction", "Outbound");
        }
        NetworkOp::Accept => {
            w.u64("direction_id", 1);
            w.lit("direction", "Inbound");
        }
        _ => {
            w.u64("direction_id", 0);
            w.lit("direction", "Unknown");
        }
    }
    w.u64("protocol_num", u64::from(n.protocol));
    if let Some(t) = n.transport() {
        w.str("protocol_name", t);
    }
    w.u64("protocol_ver_id", if n.is_ipv6() { 6 } else { 4 });
    w.end_object();
    w.object("unmapped");
    unmapped_process(w, pr);
    w.i64("result", n.result);
    w.end_object();
}

/// File System Activity (1001): open → Open (14), unlink → Delete (4),
/// rename → Rename (5) with `file_result` the new path, chmod/chown → Set
/// Security (7) (permissions and ownership are the file's security).
fn file(w: &mut JsonWriter<'_>, event: &Event, f: &FileEvent) {
    let (activity_id, activity_name) = match f.op {
        FileOperation::Open => (14, "Open"),
        FileOperation::Unlink => (4, "Delete"),
        FileOperation::Rename => (5, "Rename"),
        FileOperation::Chmod | FileOperation::Chown => (7, "Set Security"),
    };
    head(
        w,
        &FILE_SYSTEM_ACTIVITY,
        activity_id,
        activity_name,
        event,
        INFORMATIONAL,
    );
    w.u64("status_id", 1);
    w.lit("status", "Success");
    let pr = &f.process;
    metadata(w, event, None, "ebpf", profiles(pr));
    device(w, event);
    w.object("actor");
    process_object(w, "process", pr, None);
    w.end_object();
    let mut id = itoa::Buffer::new();
    let path = pr.s(f.path);
    w.object("file");
    w.str(
        "name",
        path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("/"),
    );
    w.str("path", path);
    w.u64("type_id", 1);
    w.lit("type", "Regular File");
    if let Some(uid) = f.uid {
        w.object("owner");
        w.str("uid", id.format(uid));
        w.end_object();
    }
    w.end_object();
    if f.op == FileOperation::Rename {
        file_object_as(w, "file_result", pr.s(f.new_path));
    }
    w.object("unmapped");
    unmapped_process(w, pr);
    if f.op == FileOperation::Open {
        w.u64("open_flags", u64::from(f.flags));
        w.bool("write", f.writes());
    }
    if let Some(mode) = f.mode {
        w.u64("mode", u64::from(mode));
    }
    if let Some(gid) = f.gid {
        w.u64("gid", u64::from(gid));
    }
    if f.sensitive {
        w.bool("sensitive", true);
    }
    w.end_object();
}

fn file_object_as(w: &mut JsonWriter<'_>, key: &str, path: &str) {
    w.object(key);
    w.str(
        "name",
        path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("/"),
    );
    w.str("path", path);
    w.u64("type_id", 1);
    w.lit("type", "Regular File");
    w.end_object();
}

const DETECTION_FINDING: Class = Class {
    uid: 2004,
    name: "Detection Finding",
    category_uid: 2,
    category_name: "Findings",
};

/// Lost kernel records, and events a rate limit suppressed: a Detection
/// Finding (2004), Create (1), severity Medium. A sensor that goes blind is itself a finding: an attacker who
/// floods the kernel can hide in the gap.
fn loss(w: &mut JsonWriter<'_>, event: &Event, l: &crate::event::LossReport) {
    head(w, &DETECTION_FINDING, 1, "Create", event, MEDIUM);
    w.u64("count", l.total());
    w.str("message", &l.message());
    metadata(w, event, None, "ebpf", &[]);
    w.object("finding_info");
    let (prefix, title, kind) = match l.cause {
        LossCause::KernelRingBuffer => ("lumen-loss-", "Kernel events lost", "Sensor Data Loss"),
        LossCause::KernelUnwatched { .. } => (
            "lumen-unwatched-",
            "Kernel events not recorded",
            "Sensor Data Loss",
        ),
        LossCause::RateLimit { .. } => (
            "lumen-rate-limit-",
            "Events suppressed by a rate limit",
            "Event Suppression",
        ),
    };
    let mut uid = String::from(prefix);
    uid.push_str(itoa::Buffer::new().format(l.until.0));
    if let LossCause::RateLimit { key, .. } = &l.cause {
        uid.push('-');
        uid.push_str(key);
    }
    w.str("uid", &uid);
    w.str("title", title);
    w.str("desc", &l.message());
    w.str_array("types", [kind]);
    w.i64("first_seen_time", l.since.as_millis());
    w.i64("last_seen_time", l.until.as_millis());
    w.end_object();
    w.object("unmapped");
    w.object("lost_by_kind");
    for (kind, n) in &l.by_kind {
        w.u64(kind, *n);
    }
    w.end_object();
    match &l.cause {
        LossCause::RateLimit { transform, key } => {
            w.str("rate_limit", transform);
            w.str("rate_limit_key", key);
        }
        LossCause::KernelUnwatched { reason } => w.str("unwatched_reason", reason),
        LossCause::KernelRingBuffer => {}
    }
    w.end_object();
}

/// A detection rule's finding: Detection Finding (2004), Create (1), with
/// the rule as `finding_info` (uid = rule id, title, desc, types, analytic
/// of type Rule) and `attacks` (MITRE ATT&CK), and the matching event as
/// the evidence: its actor, process, file, API call and endpoints as
/// evidence artifacts, and its whole OCSF document as the artifact's
/// `data`. Findings are rare: the evidence goes through a JSON value.
fn finding(w: &mut JsonWriter<'_>, event: &Event, f: &crate::event::Finding) {
    use serde_json::Value;
    let rule = &f.rule;
    let severity = (rule.severity.id(), rule.severity.name());
    head(w, &DETECTION_FINDING, 1, "Create", event, severity);
    w.bool("is_alert", true);
    w.u64("count", f.count);
    w.str("message", &rule.title);
    // `attacks` is an attribute of the Security Control profile.
    metadata(w, event, None, "detect", &["security_control"]);
    device(w, event);
    w.object("finding_info");
    w.str("uid", &rule.id);
    w.str("title", &rule.title);
    w.nonempty_str("desc", &rule.description);
    if !rule.types.is_empty() {
        w.str_array("types", rule.types.iter().map(String::as_str));
    }
    w.object("analytic");
    w.str("uid", &rule.id);
    w.str("name", &rule.title);
    w.u64("type_id", 1);
    w.lit("type", "Rule");
    w.str("category", &rule.ruleset);
    w.end_object();
    w.i64("first_seen_time", f.first_seen.as_millis());
    w.i64("last_seen_time", f.last_seen.as_millis());
    w.end_object();
    if !rule.attacks.is_empty() {
        w.array("attacks");
        for a in &rule.attacks {
            w.begin_object();
            w.object("tactic");
            w.str("uid", &a.tactic_id);
            w.str("name", &a.tactic);
            w.end_object();
            w.object("technique");
            w.str("uid", &a.technique_id);
            w.str("name", &a.technique);
            w.end_object();
            w.end_object();
        }
        w.end_array();
    }
    let mut doc = Vec::new();
    encode(&f.evidence, &mut doc);
    let evidence = match serde_json::from_slice::<Value>(&doc) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    w.array("evidences");
    w.begin_object();
    for key in [
        "actor",
        "process",
        "file",
        "api",
        "src_endpoint",
        "dst_endpoint",
        "connection_info",
    ] {
        if let Some(v) = evidence.get(key) {
            w.raw(key, &serde_json::to_vec(v).unwrap_or_default());
        }
    }
    w.raw("data", &doc);
    w.end_object();
    w.end_array();
}

/// `status_id` Success, or Failure with the errno in `status_detail`.
fn syscall_status(w: &mut JsonWriter<'_>, succeeded: bool, result: i64) {
    if succeeded {
        w.u64("status_id", 1);
        w.lit("status", "Success");
    } else {
        w.u64("status_id", 2);
        w.lit("status", "Failure");
        let mut detail = String::from("errno ");
        detail.push_str(itoa::Buffer::new().format(-result));
        w.str("status_detail", &detail);
    }
}

const KERNEL_EXTENSION_ACTIVITY: Class = Class {
    uid: 1002,
    name: "Kernel Extension Activity",
    category_uid: 1,
    category_name: "System Activity",
};

const KERNEL_ACTIVITY: Class = Class {
    uid: 1003,
    name: "Kernel Activity",
    category_uid: 1,
    category_name: "System Activity",
};

const FILE_SYSTEM_ACTIVITY: Class = Class {
    uid: 1001,
    name: "File System Activity",
    category_uid: 1,
    category_name: "System Activity",
};

/// Privilege events:
/// - setuid family → Process Activity, Set User ID (5);
/// - setgid family, capset → Process Activity, Other (99) "Set Group ID" /
///   "Set Capabilities";
/// - ptrace attach → Process Activity, Inject (4): `process` is the target;
/// - init_module/finit_module → Kernel Extension Activity (1002), Load (1);
/// - bpf(BPF_PROG_LOAD) → Kernel Activity (1003), Create (1), a kernel
///   resource of type "BPF program";
/// - mount → File System Activity (1001), Mount (12).
///
/// `actor.process` is always the caller; failed calls are reported with
/// `status_id` 2 and the errno in `status_detail`.
/// The OCSF class an event is written as: (`class_uid`, `class_name`).
pub fn class_of(event: &Event) -> (u64, &'static str) {
    let class = match &event.kind {
        EventKind::Process(_) => &PROCESS_ACTIVITY,
        EventKind::ApiActivity(_) => &API_ACTIVITY,
        EventKind::Network(_) => &NETWORK_ACTIVITY,
        EventKind::File(_) => &FILE_SYSTEM_ACTIVITY,
        EventKind::Loss(_) | EventKind::Finding(_) => &DETECTION_FINDING,
        EventKind::Resource(_) => &DEVICE_INVENTORY_INFO,
        EventKind::Privilege(p) => privilege_class(p.op).0,
    };
    (class.uid, class.name)
}

fn privilege_class(op: PrivilegeOp) -> (&'static Class, u64, &'static str) {
    match op {
        PrivilegeOp::Setuid | PrivilegeOp::Setreuid | PrivilegeOp::Setresuid => {
            (&PROCESS_ACTIVITY, 5, "Set User ID")
        }
        PrivilegeOp::Setgid | PrivilegeOp::Setregid | PrivilegeOp::Setresgid => {
            (&PROCESS_ACTIVITY, 99, "Set Group ID")
        }
        PrivilegeOp::Capset => (&PROCESS_ACTIVITY, 99, "Set Capabilities"),
        PrivilegeOp::PtraceAttach => (&PROCESS_ACTIVITY, 4, "Inject"),
        PrivilegeOp::InitModule | PrivilegeOp::FinitModule => {
            (&KERNEL_EXTENSION_ACTIVITY, 1, "Load")
        }
        PrivilegeOp::BpfProgLoad => (&KERNEL_ACTIVITY, 1, "Create"),
        PrivilegeOp::Mount => (&FILE_SYSTEM_ACTIVITY, 12, "Mount"),
        PrivilegeOp::Setns => (&PROCESS_ACTIVITY, 99, "Join Namespace"),
    }
}

fn privilege(w: &mut JsonWriter<'_>, event: &Event, p: &PrivilegeEvent) {
    let (class, activity_id, activity_name) = privilege_class(p.op);
    head(w, class, activity_id, activity_name, event, INFORMATIONAL);
    syscall_status(w, p.succeeded(), p.result);
    let pr = &p.process;
    metadata(w, event, None, "ebpf", profiles(pr));
    device(w, event);
    w.object("actor");
    process_object(w, "process", pr, None);
    w.end_object();
    let mut id = itoa::Buffer::new();
    match p.op {
        PrivilegeOp::InitModule | PrivilegeOp::FinitModule => {
            w.object("driver");
            let name = pr.s(p.object_name);
            file_object(
                w,
                if name.is_empty() {
                    "(from memory)"
                } else {
                    name
                },
                1,
                "Regular File",
            );
            w.end_object();
        }
        PrivilegeOp::BpfProgLoad => {
            w.object("kernel");
            let name = pr.s(p.object_name);
            w.str("name", if name.is_empty() { "(unnamed)" } else { name });
            w.u64("type_id", 99);
            w.lit("type", "BPF program");
            w.lit("system_call", "bpf");
            w.end_object();
        }
        PrivilegeOp::Mount => {
            let target = p.mount.as_ref().map(|m| pr.s(m.target)).unwrap_or("");
            file_object(
                w,
                if target.is_empty() {
                    "(unknown)"
                } else {
                    target
                },
                2,
                "Folder",
            );
        }
        PrivilegeOp::PtraceAttach => {
            w.object("process");
            w.u64("pid", u64::from(p.target_pid.unwrap_or(0)));
            w.end_object();
        }
        _ => {
            // The caller with its new identity.
            w.object("process");
            w.u64("pid", u64::from(pr.pid));
            w.object("user");
            w.str("uid", id.format(p.new.uid));
            w.end_object();
            w.end_object();
        }
    }
    w.object("unmapped");
    unmapped_process(w, pr);
    w.i64("result", p.result);
    for (key, c) in [("old_credentials", &p.old), ("new_credentials", &p.new)] {
        w.object(key);
        for (k, v) in c.ids() {
            w.u64(k, u64::from(v));
        }
        for (k, v) in c.caps() {
            w.u64(k, v);
        }
        w.end_object();
    }
    if let Some(t) = p.bpf_prog_type {
        w.u64("bpf_prog_type", u64::from(t));
    }
    if let Some(m) = &p.mount {
        w.nonempty_str("mount_source", pr.s(m.source));
        w.nonempty_str("mount_fstype", pr.s(m.fstype));
        w.u64("mount_flags", m.flags);
    }
    if let Some(ns) = &p.namespace {
        crate::ecs::namespace_join(w, ns);
    }
    w.end_object();
}

fn api_activity_id(verb: &str) -> (u64, &'static str) {
    match verb {
        "create" => (1, "Create"),
        "get" | "list" | "watch" => (2, "Read"),
        "update" | "patch" => (3, "Update"),
        "delete" | "deletecollection" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

fn api(w: &mut JsonWriter<'_>, event: &Event, a: &ApiActivity) {
    let s = |v: Str| a.s(v);
    let (activity_id, activity_name) = api_activity_id(s(a.verb));
    head(
        w,
        &API_ACTIVITY,
        activity_id,
        activity_name,
        event,
        INFORMATIONAL,
    );
    if let Some(t) = a.request_received {
        w.i64("start_time", t.as_millis());
    }
    if let Some(t) = a.stage_time {
        w.i64("end_time", t.as_millis());
    }
    match a.failed() {
        Some(false) => {
            w.u64("status_id", 1);
            w.lit("status", "Success");
        }
        Some(true) => {
            w.u64("status_id", 2);
            w.lit("status", "Failure");
        }
        None => {
            w.u64("status_id", 0);
            w.lit("status", "Unknown");
        }
    }
    if let Some(st) = &a.response_status {
        let mut code = itoa::Buffer::new();
        w.str("status_code", code.format(st.code));
        w.opt_str("status_detail", a.opt(st.message).or(a.opt(st.reason)));
    }
    let profiles: &[&str] = if a.wrapper.is_some() { &["cloud"] } else { &[] };
    metadata(
        w,
        event,
        Some(s(a.audit_id)),
        "kube-apiserver-audit",
        profiles,
    );

    w.object("actor");
    w.object("user");
    w.nonempty_str("name", s(a.user.username));
    w.nonempty_str("uid", s(a.user.uid));
    if a.user.username.is_empty() && a.user.uid.is_empty() {
        w.lit("name", "unknown");
    }
    if !a.user.groups.is_empty() {
        w.array("groups");
        for g in &a.user.groups {
            w.begin_object();
            w.str("name", s(*g));
            w.end_object();
        }
        w.end_array();
    }
    w.end_object();
    if let Some(d) = a.opt(a.authz_decision) {
        w.array("authorizations");
        w.begin_object();
        w.str("decision", d);
        if let Some(reason) = a.opt(a.authz_reason) {
            // "RBAC: allowed by ..." names the authorizer before the colon.
            let authorizer = reason.split_once(':').map_or("authorizer", |(a, _)| a);
            w.object("policy");
            w.str("name", authorizer);
            w.str("desc", reason);
            w.end_object();
        }
        w.end_object();
        w.end_array();
    }
    w.end_object();

    w.object("api");
    w.str("operation", s(a.verb));
    w.object("service");
    w.lit("name", "kube-apiserver");
    w.end_object();
    if let Some(o) = &a.object_ref {
        w.nonempty_str("version", s(o.api_version));
        if let Some(g) = a.opt(o.api_group) {
            w.object("group");
            w.str("name", g);
            w.end_object();
        }
    }
    w.object("request");
    w.str("uid", s(a.audit_id));
    w.end_object();
    if let Some(st) = &a.response_status {
        w.object("response");
        w.i64("code", i64::from(st.code));
        w.nonempty_str("message", s(st.message));
        w.nonempty_str("error", s(st.reason));
        w.end_object();
    }
    w.end_object();

    if let Some(wr) = &a.wrapper {
        cloud(w, a, wr);
    }

    w.object("src_endpoint");
    match a.source_ips.split_first() {
        Some((first, rest)) => {
            w.str("ip", s(*first));
            if !rest.is_empty() {
                w.str_array("intermediate_ips", a.strs(rest));
            }
        }
        None => w.lit("name", "unknown"),
    }
    w.end_object();

    let uri = a.opt(a.request_uri);
    if uri.is_some() || !a.user_agent.is_empty() {
        w.object("http_request");
        if let Some(uri) = uri {
            w.object("url");
            w.str("url_string", uri);
            let (path, query) = match uri.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (uri, None),
            };
            w.str("path", path);
            w.opt_str("query_string", query);
            w.end_object();
        }
        w.nonempty_str("user_agent", s(a.user_agent));
        w.end_object();
    }

    // OCSF requires a resource's name or uid; collection requests (list,
    // create with generateName) have neither and keep the objectRef in
    // `unmapped.object_ref` only.
    if let Some(o) = a
        .object_ref
        .as_ref()
        .filter(|o| !o.name.is_empty() || !o.uid.is_empty())
    {
        w.array("resources");
        w.begin_object();
        w.nonempty_str("type", s(o.resource));
        w.nonempty_str("name", s(o.name));
        w.nonempty_str("namespace", s(o.namespace));
        w.nonempty_str("uid", s(o.uid));
        w.nonempty_str("version", s(o.resource_version));
        w.end_object();
        w.end_array();
    }

    w.raw("raw_data", a.original_literal());

    w.object("unmapped");
    w.str("stage", s(a.stage));
    w.nonempty_str("level", s(a.level));
    w.nonempty_str("audit_api_version", s(a.audit_api_version));
    if let Some(imp) = &a.impersonated_user {
        w.object("impersonated_user");
        w.nonempty_str("name", s(imp.username));
        w.nonempty_str("uid", s(imp.uid));
        w.end_object();
    }
    if let Some(o) = &a.object_ref {
        w.object("object_ref");
        w.nonempty_str("resource", s(o.resource));
        w.nonempty_str("namespace", s(o.namespace));
        w.nonempty_str("name", s(o.name));
        w.nonempty_str("api_group", s(o.api_group));
        w.nonempty_str("api_version", s(o.api_version));
        w.nonempty_str("subresource", s(o.subresource));
        w.end_object();
    }
    if !a.container_images.is_empty() {
        w.str_array("container_images", a.strs(&a.container_images));
    }
    if !a.annotations.is_empty() {
        w.object("annotations");
        for (k, v) in &a.annotations {
            w.str_with_data_key(s(*k), s(*v));
        }
        w.end_object();
    }
    if let Some(wr) = &a.wrapper {
        // OCSF has no place for the cluster or the cloud log record.
        w.nonempty_str("cluster_name", s(wr.cluster));
        w.object("cloud_log");
        w.str("provider", &wr.provider);
        w.nonempty_str("name", s(wr.log_name));
        w.nonempty_str("stream", s(wr.log_stream));
        w.nonempty_str("record_id", s(wr.record_id));
        w.nonempty_str("method", s(wr.method));
        w.nonempty_str("resource_name", s(wr.resource_name));
        if let Some(code) = wr.rpc_code {
            w.i64("rpc_code", i64::from(code));
        }
        w.end_object();
    }
    w.end_object();
}

/// `cloud` (the `cloud` profile): provider, region and zone, the GCP
/// project or the AWS account or Azure subscription.
fn cloud(w: &mut JsonWriter<'_>, a: &ApiActivity, wr: &crate::event::Wrapper) {
    w.object("cloud");
    w.str("provider", wr.cloud_provider());
    if let Some(location) = a.opt(wr.location) {
        let (region, zone) = crate::ecs::region_and_zone(location);
        w.str("region", region);
        w.opt_str("zone", zone);
    }
    if let Some(account) = a.opt(wr.account) {
        if wr.provider == "gke" {
            w.str("project_uid", account);
        }
        let (type_id, type_name) = match &*wr.provider {
            "gke" => (11, "GCP Project"),
            "eks" => (10, "AWS Account"),
            _ => (13, "Azure Subscription"),
        };
        w.object("account");
        w.str("uid", account);
        w.u64("type_id", type_id);
        w.lit("type", type_name);
        w.end_object();
    }
    w.end_object();
}

const DEVICE_INVENTORY_INFO: Class = Class {
    uid: 5001,
    name: "Device Inventory Info",
    category_uid: 5,
    category_name: "Discovery",
};

/// A resource sample: Device Inventory Info (5001), Collect (2). OCSF has
/// no class for measurements; this one reports what was collected about a
/// device, and the cgroup's container goes in `device.container`. The
/// counters are in `unmapped.resources`, named as in ECS's
/// `lumen.resources`.
fn resource(w: &mut JsonWriter<'_>, event: &Event, r: &crate::event::ResourceSample) {
    head(
        w,
        &DEVICE_INVENTORY_INFO,
        2,
        "Collect",
        event,
        INFORMATIONAL,
    );
    let at = &r.attribution;
    let container = !at.container_id.is_empty();
    metadata(
        w,
        event,
        None,
        "cgroups",
        if container { &["container"] } else { &[] },
    );
    device_with(w, event, |w| container_object(w, at, &r.text));
    w.object("unmapped");
    if !at.pod_uid.is_empty() {
        w.str("pod_uid", r.s(at.pod_uid));
    }
    w.object("resources");
    crate::ecs::resource_counters(w, r);
    w.end_object();
    w.end_object();
}
