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

use crate::event::{ApiActivity, Event, EventKind, ProcessActivity, ProcessEvent};
use crate::json::JsonWriter;
use crate::{OCSF_VERSION, PRODUCT_NAME, PRODUCT_VERSION};

/// Appends `event` as one OCSF JSON document.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    let mut w = JsonWriter::new(out);
    w.begin_object();
    match &event.kind {
        EventKind::Process(p) => process(&mut w, event, p),
        EventKind::ApiActivity(a) => api(&mut w, event, a),
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

fn head(
    w: &mut JsonWriter<'_>,
    class: &Class,
    activity_id: u64,
    activity_name: &str,
    event: &Event,
) {
    w.u64("class_uid", class.uid);
    w.str("class_name", class.name);
    w.u64("category_uid", class.category_uid);
    w.str("category_name", class.category_name);
    w.u64("activity_id", activity_id);
    w.str("activity_name", activity_name);
    w.u64("type_uid", class.uid * 100 + activity_id);
    let mut type_name = String::with_capacity(class.name.len() + 2 + activity_name.len());
    type_name.push_str(class.name);
    type_name.push_str(": ");
    type_name.push_str(activity_name);
    w.str("type_name", &type_name);
    w.i64("time", event.time.as_millis());
    w.u64("severity_id", 1);
    w.str("severity", "Informational");
}

fn metadata(w: &mut JsonWriter<'_>, event: &Event, uid: Option<&str>, log_name: &str) {
    w.object("metadata");
    w.str("version", OCSF_VERSION);
    w.object("product");
    w.str("name", PRODUCT_NAME);
    w.str("vendor_name", PRODUCT_NAME);
    w.str("version", PRODUCT_VERSION);
    w.end_object();
    w.opt_str("uid", uid);
    w.str("log_name", log_name);
    w.i64("logged_time", event.observed.as_millis());
    w.end_object();
}

fn device(w: &mut JsonWriter<'_>, event: &Event) {
    w.object("device");
    w.u64("type_id", 1);
    w.str("type", "Server");
    w.nonempty_str("hostname", &event.host.name);
    w.nonempty_str("name", &event.host.name);
    w.object("os");
    w.str("name", "Linux");
    w.u64("type_id", 200);
    w.str("type", "Linux");
    w.nonempty_str("kernel_release", &event.host.kernel);
    w.end_object();
    w.end_object();
}

fn process(w: &mut JsonWriter<'_>, event: &Event, p: &ProcessEvent) {
    let (activity_id, activity_name) = match p.activity {
        ProcessActivity::Exec => (1, "Launch"),
        ProcessActivity::Exit => (2, "Terminate"),
    };
    head(w, &PROCESS_ACTIVITY, activity_id, activity_name, event);
    w.u64("status_id", 1);
    w.str("status", "Success");
    metadata(w, event, None, "ebpf");
    device(w, event);

    let pr = &p.process;
    let mut uid = itoa::Buffer::new();
    // The actor of a launch is the parent that called exec's fork; of an
    // exit, the process itself.
    w.object("actor");
    w.object("process");
    match p.activity {
        ProcessActivity::Exec => w.u64("pid", u64::from(pr.ppid)),
        ProcessActivity::Exit => w.u64("pid", u64::from(pr.pid)),
    }
    w.end_object();
    w.end_object();

    w.object("process");
    w.u64("pid", u64::from(pr.pid));
    w.u64("tid", u64::from(pr.tid));
    w.nonempty_str("name", &pr.name);
    if !pr.args.is_empty() {
        w.str("cmd_line", &pr.command_line());
    }
    if !pr.executable.is_empty() {
        w.object("file");
        let name = pr.executable.rsplit('/').next().unwrap_or(&pr.executable);
        w.str("name", name);
        w.str("path", &pr.executable);
        w.u64("type_id", 1);
        w.str("type", "Regular File");
        w.end_object();
    }
    w.object("user");
    w.str("uid", uid.format(pr.uid));
    w.end_object();
    w.object("parent_process");
    w.u64("pid", u64::from(pr.ppid));
    w.end_object();
    if p.exit.is_some() {
        w.i64("terminated_time", event.time.as_millis());
    }
    w.end_object();
    if let Some(exit) = &p.exit {
        w.i64("exit_code", i64::from(exit.shell_code()));
    }

    w.object("unmapped");
    w.u64("cgroup_id", pr.cgroup_id);
    w.u64("gid", u64::from(pr.gid));
    if !pr.args.is_empty() {
        w.str_array("argv", pr.args.iter().map(String::as_str));
    }
    if pr.args_truncated {
        w.bool("args_truncated", true);
    }
    if let Some(sig) = p.exit.and_then(|e| e.signal) {
        w.i64("exit_signal", i64::from(sig));
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
    let (activity_id, activity_name) = api_activity_id(&a.verb);
    head(w, &API_ACTIVITY, activity_id, activity_name, event);
    if let Some(t) = a.request_received {
        w.i64("start_time", t.as_millis());
    }
    if let Some(t) = a.stage_time {
        w.i64("end_time", t.as_millis());
    }
    match a.failed() {
        Some(false) => {
            w.u64("status_id", 1);
            w.str("status", "Success");
        }
        Some(true) => {
            w.u64("status_id", 2);
            w.str("status", "Failure");
        }
        None => {
            w.u64("status_id", 0);
            w.str("status", "Unknown");
        }
    }
    if let Some(s) = &a.response_status {
        let mut code = itoa::Buffer::new();
        w.str("status_code", code.format(s.code));
        w.opt_str(
            "status_detail",
            s.message.as_deref().or(s.reason.as_deref()),
        );
    }
    metadata(w, event, Some(&a.audit_id), "kube-apiserver-audit");

    w.object("actor");
    w.object("user");
    w.nonempty_str("name", &a.user.username);
    w.opt_str("uid", a.user.uid.as_deref());
    if a.user.username.is_empty() && a.user.uid.is_none() {
        w.str("name", "unknown");
    }
    if !a.user.groups.is_empty() {
        w.array("groups");
        for g in &a.user.groups {
            w.begin_object();
            w.str("name", g);
            w.end_object();
        }
        w.end_array();
    }
    w.end_object();
    if let Some(d) = &a.authz_decision {
        w.array("authorizations");
        w.begin_object();
        w.str("decision", d);
        if let Some(reason) = &a.authz_reason {
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
    w.str("operation", &a.verb);
    w.object("service");
    w.str("name", "kube-apiserver");
    w.end_object();
    if let Some(o) = &a.object_ref {
        w.opt_str("version", o.api_version.as_deref());
        if let Some(g) = &o.api_group {
            w.object("group");
            w.str("name", g);
            w.end_object();
        }
    }
    w.object("request");
    w.str("uid", &a.audit_id);
    w.end_object();
    if let Some(s) = &a.response_status {
        w.object("response");
        w.i64("code", i64::from(s.code));
        w.opt_str("message", s.message.as_deref());
        w.opt_str("error", s.reason.as_deref());
        w.end_object();
    }
    w.end_object();

    w.object("src_endpoint");
    match a.source_ips.split_first() {
        Some((first, rest)) => {
            w.str("ip", first);
            if !rest.is_empty() {
                w.str_array("intermediate_ips", rest.iter().map(String::as_str));
            }
        }
        None => w.str("name", "unknown"),
    }
    w.end_object();

    if !a.request_uri.is_empty() || a.user_agent.is_some() {
        w.object("http_request");
        if !a.request_uri.is_empty() {
            w.object("url");
            w.str("url_string", &a.request_uri);
            let (path, query) = match a.request_uri.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (a.request_uri.as_str(), None),
            };
            w.str("path", path);
            w.opt_str("query_string", query);
            w.end_object();
        }
        w.opt_str("user_agent", a.user_agent.as_deref());
        w.end_object();
    }

    // OCSF requires a resource's name or uid; collection requests (list,
    // create with generateName) have neither and keep the objectRef in
    // `unmapped.object_ref` only.
    if let Some(o) = a
        .object_ref
        .as_ref()
        .filter(|o| o.name.is_some() || o.uid.is_some())
    {
        w.array("resources");
        w.begin_object();
        w.opt_str("type", o.resource.as_deref());
        w.opt_str("name", o.name.as_deref());
        w.opt_str("namespace", o.namespace.as_deref());
        w.opt_str("uid", o.uid.as_deref());
        w.opt_str("version", o.resource_version.as_deref());
        w.end_object();
        w.end_array();
    }

    w.str("raw_data", &a.original);

    w.object("unmapped");
    w.str("stage", &a.stage);
    w.nonempty_str("level", &a.level);
    w.nonempty_str("audit_api_version", &a.audit_api_version);
    if let Some(imp) = &a.impersonated_user {
        w.object("impersonated_user");
        w.nonempty_str("name", &imp.username);
        w.opt_str("uid", imp.uid.as_deref());
        w.end_object();
    }
    if let Some(o) = &a.object_ref {
        w.object("object_ref");
        w.opt_str("resource", o.resource.as_deref());
        w.opt_str("namespace", o.namespace.as_deref());
        w.opt_str("name", o.name.as_deref());
        w.opt_str("api_group", o.api_group.as_deref());
        w.opt_str("api_version", o.api_version.as_deref());
        w.opt_str("subresource", o.subresource.as_deref());
        w.end_object();
    }
    if !a.container_images.is_empty() {
        w.str_array(
            "container_images",
            a.container_images.iter().map(String::as_str),
        );
    }
    if !a.annotations.is_empty() {
        w.object("annotations");
        for (k, v) in &a.annotations {
            w.str(k, v);
        }
        w.end_object();
    }
    w.end_object();
}
