//! The fields rules test, by their ECS names (the names SIEM users know),
//! read straight from the typed event: no JSON is built to evaluate a rule.
//! A name is resolved once, when the rule is compiled, into a [`Field`];
//! reading one is a match on the event's kind and a field access.
//!
//! Audit request and response bodies (`kubernetes.audit.requestObject.*`,
//! `…responseObject.*`) are the exception: they are parsed, once per event,
//! only when a rule gets that far (their conditions are tested last).

use lumen_schemas::event::{
    ApiActivity, EventKind, FileOperation, NetworkOp, PrivilegeOp, Process, ProcessActivity,
};
use lumen_schemas::Event;
use std::net::IpAddr;

/// A field's value in one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    /// A string made for this read (numbers as ECS writes ids, joined argv).
    Owned(String),
    Int(i64),
    Bool(bool),
    Ip(IpAddr),
    /// Several values: a test matches when one does.
    List(Vec<Value<'a>>),
}

impl Value<'_> {
    /// The value as text, when it is one (numbers and addresses as ECS
    /// writes them).
    pub fn text(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Value::Str(s) => Some((*s).into()),
            Value::Owned(s) => Some(s.as_str().into()),
            Value::Int(i) => Some(i.to_string().into()),
            Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
            Value::Ip(ip) => Some(ip.to_string().into()),
            Value::List(_) => None,
        }
    }
}

/// A field a rule can test.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    EventAction,
    EventCategory,
    EventOutcome,
    EventDataset,
    HostName,
    ProcessPid,
    ProcessName,
    ProcessExecutable,
    ProcessArgs,
    ProcessArgsCount,
    ProcessCommandLine,
    ProcessExitCode,
    ParentPid,
    ParentName,
    ParentExecutable,
    ParentArgs,
    ParentCommandLine,
    UserId,
    GroupId,
    UserName,
    UserRoles,
    UserEffectiveId,
    UserEffectiveName,
    ContainerId,
    ContainerRuntime,
    ContainerName,
    ContainerImageName,
    PodUid,
    PodName,
    Namespace,
    /// `lumen.process.container_entry`: `entrypoint` or `exec`.
    ContainerEntry,
    EntryLeaderPid,
    /// `lumen.process.runtime_setup`: the runtime's init setting up.
    RuntimeSetup,
    ExeDrift,
    ExeFileless,
    ExeDriftReasons,
    ExeFilelessReasons,
    FilePath,
    FileName,
    FileExtension,
    FileWrite,
    FileSensitive,
    FileMode,
    FileOriginalPath,
    DestinationIp,
    DestinationPort,
    SourceIp,
    SourcePort,
    NetworkTransport,
    NetworkDirection,
    PrivResult,
    PrivOldUid,
    PrivOldEuid,
    PrivNewUid,
    PrivNewEuid,
    PrivNewCapEffective,
    PrivOldCapEffective,
    PrivTargetPid,
    PrivObjectName,
    MountSource,
    MountFstype,
    NamespaceType,
    NamespaceInode,
    NamespaceHost,
    AuditVerb,
    AuditResource,
    AuditSubresource,
    AuditObjectNamespace,
    AuditObjectName,
    AuditApiGroup,
    AuditUsername,
    AuditGroups,
    AuditImpersonatedUser,
    AuditSourceIps,
    AuditUserAgent,
    AuditRequestUri,
    AuditStatusCode,
    AuditStatusMessage,
    AuditDecision,
    /// A service account asking for a token of another service account
    /// (computed: the requester's `system:serviceaccount:<ns>:<name>`
    /// against the TokenRequest's object).
    TokenForOtherServiceAccount,
    AuditStage,
    /// `kubernetes.audit.annotations.<key>` (dots or underscores in the key).
    AuditAnnotation(String),
    /// `kubernetes.audit.requestObject.<path>`: through arrays.
    RequestObject(Vec<String>),
    /// `kubernetes.audit.responseObject.<path>`.
    ResponseObject(Vec<String>),
}

/// ECS name → field, for the names with a fixed meaning.
const NAMES: &[(&str, Field)] = &[
    ("event.action", Field::EventAction),
    ("event.category", Field::EventCategory),
    ("event.outcome", Field::EventOutcome),
    ("event.dataset", Field::EventDataset),
    ("host.name", Field::HostName),
    ("process.pid", Field::ProcessPid),
    ("process.name", Field::ProcessName),
    ("process.executable", Field::ProcessExecutable),
    ("process.args", Field::ProcessArgs),
    ("process.args_count", Field::ProcessArgsCount),
    ("process.command_line", Field::ProcessCommandLine),
    ("process.exit_code", Field::ProcessExitCode),
    ("process.parent.pid", Field::ParentPid),
    ("process.parent.name", Field::ParentName),
    ("process.parent.executable", Field::ParentExecutable),
    ("process.parent.args", Field::ParentArgs),
    ("process.parent.command_line", Field::ParentCommandLine),
    ("user.id", Field::UserId),
    ("process.user.id", Field::UserId),
    ("group.id", Field::GroupId),
    ("process.group.id", Field::GroupId),
    ("user.name", Field::UserName),
    ("user.roles", Field::UserRoles),
    ("user.effective.id", Field::UserEffectiveId),
    ("user.effective.name", Field::UserEffectiveName),
    ("container.id", Field::ContainerId),
    ("container.runtime", Field::ContainerRuntime),
    ("container.name", Field::ContainerName),
    ("container.image.name", Field::ContainerImageName),
    ("kubernetes.pod.uid", Field::PodUid),
    ("kubernetes.pod.name", Field::PodName),
    ("kubernetes.namespace", Field::Namespace),
    ("orchestrator.namespace", Field::Namespace),
    ("lumen.process.container_entry", Field::ContainerEntry),
    ("process.entry_leader.pid", Field::EntryLeaderPid),
    ("lumen.process.runtime_setup", Field::RuntimeSetup),
    ("lumen.exe.drift", Field::ExeDrift),
    ("lumen.exe.fileless", Field::ExeFileless),
    ("lumen.exe.drift_reasons", Field::ExeDriftReasons),
    ("lumen.exe.fileless_reasons", Field::ExeFilelessReasons),
    ("file.path", Field::FilePath),
    ("file.name", Field::FileName),
    ("file.extension", Field::FileExtension),
    ("lumen.file.write", Field::FileWrite),
    ("lumen.file.sensitive", Field::FileSensitive),
    ("file.mode", Field::FileMode),
    ("lumen.file.original_path", Field::FileOriginalPath),
    ("destination.ip", Field::DestinationIp),
    ("destination.port", Field::DestinationPort),
    ("source.ip", Field::SourceIp),
    ("source.port", Field::SourcePort),
    ("network.transport", Field::NetworkTransport),
    ("network.direction", Field::NetworkDirection),
    ("lumen.privilege.result", Field::PrivResult),
    ("lumen.privilege.old.uid", Field::PrivOldUid),
    ("lumen.privilege.old.euid", Field::PrivOldEuid),
    ("lumen.privilege.new.uid", Field::PrivNewUid),
    ("lumen.privilege.new.euid", Field::PrivNewEuid),
    (
        "lumen.privilege.new.cap_effective",
        Field::PrivNewCapEffective,
    ),
    (
        "lumen.privilege.old.cap_effective",
        Field::PrivOldCapEffective,
    ),
    ("lumen.privilege.target_pid", Field::PrivTargetPid),
    ("lumen.privilege.object_name", Field::PrivObjectName),
    ("lumen.privilege.mount_source", Field::MountSource),
    ("lumen.privilege.mount_fstype", Field::MountFstype),
    ("lumen.privilege.namespace.type", Field::NamespaceType),
    ("lumen.privilege.namespace.inode", Field::NamespaceInode),
    ("lumen.privilege.namespace.host", Field::NamespaceHost),
    ("kubernetes.audit.verb", Field::AuditVerb),
    ("kubernetes.audit.objectRef.resource", Field::AuditResource),
    (
        "kubernetes.audit.objectRef.subresource",
        Field::AuditSubresource,
    ),
    (
        "kubernetes.audit.objectRef.namespace",
        Field::AuditObjectNamespace,
    ),
    ("kubernetes.audit.objectRef.name", Field::AuditObjectName),
    ("kubernetes.audit.objectRef.apiGroup", Field::AuditApiGroup),
    ("kubernetes.audit.user.username", Field::AuditUsername),
    ("kubernetes.audit.user.groups", Field::AuditGroups),
    (
        "kubernetes.audit.impersonatedUser.username",
        Field::AuditImpersonatedUser,
    ),
    ("kubernetes.audit.sourceIPs", Field::AuditSourceIps),
    ("kubernetes.audit.userAgent", Field::AuditUserAgent),
    ("user_agent.original", Field::AuditUserAgent),
    ("kubernetes.audit.requestURI", Field::AuditRequestUri),
    ("url.original", Field::AuditRequestUri),
    (
        "kubernetes.audit.responseStatus.code",
        Field::AuditStatusCode,
    ),
    ("http.response.status_code", Field::AuditStatusCode),
    (
        "kubernetes.audit.responseStatus.message",
        Field::AuditStatusMessage,
    ),
    (
        "lumen.k8s.token_for_other_service_account",
        Field::TokenForOtherServiceAccount,
    ),
    ("kubernetes.audit.stage", Field::AuditStage),
];

const ANNOTATIONS: &str = "kubernetes.audit.annotations.";
const REQUEST_OBJECT: &str = "kubernetes.audit.requestObject.";
const RESPONSE_OBJECT: &str = "kubernetes.audit.responseObject.";

impl Field {
    /// The field an ECS name stands for, or why there is none.
    pub fn parse(name: &str) -> Result<Field, String> {
        if let Some((_, f)) = NAMES.iter().find(|(n, _)| *n == name) {
            return Ok(f.clone());
        }
        if let Some(key) = name.strip_prefix(ANNOTATIONS) {
            if key == "authorization_k8s_io/decision" || key == "authorization.k8s.io/decision" {
                return Ok(Field::AuditDecision);
            }
            return Ok(Field::AuditAnnotation(key.replace('.', "_")));
        }
        for (prefix, make) in [
            (
                REQUEST_OBJECT,
                Field::RequestObject as fn(Vec<String>) -> Field,
            ),
            (RESPONSE_OBJECT, Field::ResponseObject),
        ] {
            if let Some(path) = name.strip_prefix(prefix) {
                if path.split('.').any(str::is_empty) {
                    return Err(format!("`{name}`: an empty step in the path"));
                }
                return Ok(make(path.split('.').map(str::to_owned).collect()));
            }
        }
        Err(format!(
            "`{name}` is not a field Lumen rules can test (see DETECTIONS.md for the list)"
        ))
    }

    /// Whether reading it may parse an audit body (tested last).
    pub fn costly(&self) -> bool {
        matches!(self, Field::RequestObject(_) | Field::ResponseObject(_))
    }
}

/// What reading fields of one event may need made once: the joined
/// command lines, the parsed audit bodies.
#[derive(Debug, Default)]
pub struct Scratch {
    request: Option<Option<serde_json::Value>>,
    response: Option<Option<serde_json::Value>>,
    /// The joined argv of the process and of its parent, made once per
    /// event (whether made yet, the buffer).
    command_line: (bool, String),
    parent_command_line: (bool, String),
}

impl Scratch {
    /// Forgets the previous event's bodies and command lines.
    pub fn clear(&mut self) {
        self.request = None;
        self.response = None;
        self.command_line.0 = false;
        self.parent_command_line.0 = false;
    }
}

/// `args` joined by spaces into `slot` once per event.
fn command_line<'s, 'a>(
    slot: &'s mut (bool, String),
    args: impl Iterator<Item = &'a str>,
) -> Option<Value<'s>> {
    let (made, s) = slot;
    if !*made {
        s.clear();
        for (i, a) in args.enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(a);
        }
        *made = true;
    }
    nonempty(s)
}

/// The audit event's original JSON member `key` (`requestObject`), parsed
/// once per event; the rest of the event is only scanned.
fn body<'s>(
    slot: &'s mut Option<Option<serde_json::Value>>,
    a: &ApiActivity,
    key: &str,
) -> Option<&'s serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct Bodies<'r> {
        #[serde(rename = "requestObject", borrow)]
        request: Option<&'r serde_json::value::RawValue>,
        #[serde(rename = "responseObject", borrow)]
        response: Option<&'r serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Wrapper<'r> {
        #[serde(borrow)]
        properties: Props<'r>,
    }
    #[derive(serde::Deserialize)]
    struct Props<'r> {
        #[serde(borrow)]
        log: &'r serde_json::value::RawValue,
    }
    let member = |json: &str| -> Option<serde_json::Value> {
        let bodies: Bodies<'_> = serde_json::from_str(json).ok()?;
        let raw = if key == "requestObject" {
            bodies.request
        } else {
            bodies.response
        }?;
        serde_json::from_str(raw.get()).ok()
    };
    slot.get_or_insert_with(|| {
        let original = a.text.get(..a.original_len as usize)?;
        if a.wrapper.is_none() {
            return member(original);
        }
        // An AKS diagnostic record: the event is `properties.log`, an
        // object or a string holding one.
        let w: Wrapper<'_> = serde_json::from_str(original).ok()?;
        match serde_json::from_str::<String>(w.properties.log.get()) {
            Ok(inner) => member(&inner),
            Err(_) => member(w.properties.log.get()),
        }
    })
    .as_ref()
}

/// Every value at `path` under `v`, through arrays (each element).
fn walk<'v>(v: &'v serde_json::Value, path: &[String], out: &mut Vec<Value<'v>>) {
    let Some((step, rest)) = path.split_first() else {
        match v {
            serde_json::Value::String(s) => out.push(Value::Str(s)),
            serde_json::Value::Bool(b) => out.push(Value::Bool(*b)),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    out.push(Value::Int(i));
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, path, out);
                }
            }
            _ => {}
        }
        return;
    };
    match v {
        serde_json::Value::Object(map) => {
            if let Some(next) = map.get(step.as_str()) {
                walk(next, rest, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                walk(item, path, out);
            }
        }
        _ => {}
    }
}

/// A user or group id: a number (ECS writes it as a string; tests compare
/// it either way, without making the string).
fn id(n: u32) -> Value<'static> {
    Value::Int(i64::from(n))
}

fn nonempty(s: &str) -> Option<Value<'_>> {
    (!s.is_empty()).then_some(Value::Str(s))
}

fn strs<'a>(it: impl Iterator<Item = &'a str>) -> Option<Value<'a>> {
    let list: Vec<Value<'a>> = it.map(Value::Str).collect();
    (!list.is_empty()).then_some(Value::List(list))
}

/// The event's ECS `event.action`.
pub fn action(event: &Event) -> &str {
    match &event.kind {
        EventKind::Process(p) => match p.activity {
            ProcessActivity::Exec => "exec",
            ProcessActivity::Fork => "fork",
            ProcessActivity::Exit => "exit",
            ProcessActivity::OomKill => "oom_kill",
        },
        EventKind::File(f) => f.op.action(),
        EventKind::Network(n) => n.op.action(),
        EventKind::Privilege(p) => p.op.action(),
        EventKind::ApiActivity(a) => a.s(a.verb),
        EventKind::Loss(_) => "loss",
        EventKind::Finding(_) => "finding",
        EventKind::Resource(_) => "resource_sample",
    }
}

impl Field {
    /// Calls `f` with the field's value in `event` as text, once per item
    /// of a list — the lists of an audit event without building one.
    pub fn each_text(&self, event: &Event, scratch: &mut Scratch, mut f: impl FnMut(&str)) {
        if let EventKind::ApiActivity(a) = &event.kind {
            let list = match self {
                Field::UserRoles | Field::AuditGroups => Some(&a.user.groups),
                Field::SourceIp | Field::AuditSourceIps => Some(&a.source_ips),
                Field::ContainerImageName => Some(&a.container_images),
                _ => None,
            };
            if let Some(list) = list {
                a.strs(list).for_each(f);
                return;
            }
        }
        let mut text = |v: &Value<'_>| match v {
            Value::Int(i) => f(itoa::Buffer::new().format(*i)),
            v => {
                if let Some(t) = v.text() {
                    f(&t);
                }
            }
        };
        match self.get(event, scratch) {
            Some(Value::List(items)) => items.iter().for_each(&mut text),
            Some(v) => text(&v),
            None => {}
        }
    }

    /// The field's value in `event`, `None` when it has none.
    pub fn get<'e>(&self, event: &'e Event, scratch: &'e mut Scratch) -> Option<Value<'e>> {
        let kind = &event.kind;
        if let EventKind::ApiActivity(a) = kind {
            return self.audit(a, scratch);
        }
        let process = kind.process();
        let pr = |f: fn(&'e Process) -> Option<Value<'e>>| process.and_then(f);
        match self {
            Field::EventAction => Some(Value::Str(action(event))),
            Field::EventCategory => Some(Value::Str(lumen_schemas::ecs::category(event))),
            Field::EventDataset => Some(Value::Str(lumen_schemas::ecs::dataset(event))),
            Field::EventOutcome => match kind {
                EventKind::Network(n) => Some(Value::Str(outcome(n.succeeded()))),
                EventKind::Privilege(p) => Some(Value::Str(outcome(p.succeeded()))),
                // Only successful file calls are reported.
                EventKind::File(_) => Some(Value::Str("success")),
                _ => None,
            },
            Field::HostName => nonempty(&event.host.name),
            Field::ProcessPid => pr(|p| Some(Value::Int(i64::from(p.pid)))),
            Field::ProcessName => pr(|p| nonempty(p.name())),
            Field::ProcessExecutable => pr(|p| nonempty(p.executable())),
            Field::ProcessArgs => pr(|p| strs(p.args())),
            Field::ProcessArgsCount => pr(|p| Some(Value::Int(p.args().count() as i64))),
            Field::ProcessCommandLine => command_line(&mut scratch.command_line, process?.args()),
            Field::ProcessExitCode => match kind {
                EventKind::Process(p) => p.exit.map(|e| Value::Int(i64::from(e.shell_code()))),
                _ => None,
            },
            Field::ParentPid => pr(|p| Some(Value::Int(i64::from(p.ppid)))),
            Field::ParentName => pr(|p| nonempty(p.s(p.parent.name))),
            Field::ParentExecutable => pr(|p| nonempty(p.s(p.parent.executable))),
            Field::ParentArgs => pr(|p| strs(p.parent_args())),
            Field::ParentCommandLine => {
                command_line(&mut scratch.parent_command_line, process?.parent_args())
            }
            Field::UserId => match kind {
                EventKind::Privilege(p) => Some(id(p.old.uid)),
                _ => pr(|p| Some(id(p.uid))),
            },
            Field::GroupId => match kind {
                EventKind::Privilege(p) => Some(id(p.old.gid)),
                _ => pr(|p| Some(id(p.gid))),
            },
            Field::UserEffectiveId => match kind {
                EventKind::Privilege(p) => Some(id(p.new.euid)),
                _ => None,
            },
            Field::ContainerId => pr(|p| nonempty(p.s(p.attribution.container_id))),
            Field::ContainerRuntime => {
                pr(|p| p.attribution.runtime.map(|r| Value::Str(r.as_str())))
            }
            Field::ContainerName => pr(|p| nonempty(p.s(p.attribution.container_name))),
            Field::ContainerImageName => pr(|p| nonempty(p.s(p.attribution.image))),
            Field::PodUid => pr(|p| nonempty(p.s(p.attribution.pod_uid))),
            Field::PodName => pr(|p| nonempty(p.s(p.attribution.pod_name))),
            Field::Namespace => pr(|p| nonempty(p.s(p.attribution.namespace))),
            Field::ContainerEntry => pr(|p| p.entry_leader.map(|l| Value::Str(l.entry.as_str()))),
            Field::EntryLeaderPid => pr(|p| p.entry_leader.map(|l| Value::Int(i64::from(l.pid)))),
            Field::RuntimeSetup => pr(|p| p.entry_leader.map(|l| Value::Bool(l.runtime_setup))),
            Field::ExeDrift
            | Field::ExeFileless
            | Field::ExeDriftReasons
            | Field::ExeFilelessReasons => {
                let EventKind::Process(p) = kind else {
                    return None;
                };
                match self {
                    Field::ExeDrift => Some(Value::Bool(p.exe.drift())),
                    Field::ExeFileless => Some(Value::Bool(p.exe.fileless())),
                    Field::ExeDriftReasons => strs(p.exe.drift_reasons()),
                    _ => strs(p.exe.fileless_reasons()),
                }
            }
            Field::FilePath
            | Field::FileName
            | Field::FileExtension
            | Field::FileWrite
            | Field::FileSensitive
            | Field::FileMode
            | Field::FileOriginalPath => self.file(event),
            Field::DestinationIp
            | Field::DestinationPort
            | Field::SourceIp
            | Field::SourcePort
            | Field::NetworkTransport
            | Field::NetworkDirection => self.network(event),
            Field::PrivResult
            | Field::PrivOldUid
            | Field::PrivOldEuid
            | Field::PrivNewUid
            | Field::PrivNewEuid
            | Field::PrivNewCapEffective
            | Field::PrivOldCapEffective
            | Field::PrivTargetPid
            | Field::PrivObjectName
            | Field::MountSource
            | Field::MountFstype
            | Field::NamespaceType
            | Field::NamespaceInode
            | Field::NamespaceHost => self.privilege(event),
            _ => None,
        }
    }

    fn file<'e>(&self, event: &'e Event) -> Option<Value<'e>> {
        let f = match &event.kind {
            EventKind::File(f) => f,
            // As ECS: a mount's target is `file.path`, a module's `file.name`.
            EventKind::Privilege(p) => {
                let pr = &p.process;
                return match (self, p.op, &p.mount) {
                    (Field::FilePath, PrivilegeOp::Mount, Some(m)) => nonempty(pr.s(m.target)),
                    (Field::FileName, PrivilegeOp::FinitModule, _) => nonempty(pr.s(p.object_name)),
                    _ => None,
                };
            }
            _ => return None,
        };
        let p = &f.process;
        // A rename's `file.path` is where the file went (as in ECS).
        let path = if f.op == FileOperation::Rename {
            p.s(f.new_path)
        } else {
            p.s(f.path)
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        match self {
            Field::FilePath => nonempty(path),
            Field::FileName => nonempty(name),
            Field::FileExtension => name
                .rsplit_once('.')
                .filter(|(stem, _)| !stem.is_empty())
                .and_then(|(_, ext)| nonempty(ext)),
            Field::FileWrite => Some(Value::Bool(f.op == FileOperation::Open && f.writes())),
            Field::FileSensitive => Some(Value::Bool(f.sensitive)),
            Field::FileMode => f.mode.map(|m| Value::Owned(format!("{:o}", m & 0o7777))),
            Field::FileOriginalPath => (f.op == FileOperation::Rename)
                .then(|| nonempty(p.s(f.path)))
                .flatten(),
            _ => None,
        }
    }

    fn network<'e>(&self, event: &'e Event) -> Option<Value<'e>> {
        let EventKind::Network(n) = &event.kind else {
            return None;
        };
        // connect: the peer is the destination; accept: the source.
        let (src, dst) = match (n.op, n.remote) {
            (NetworkOp::Connect, Some(r)) => (Some(n.local), Some(r)),
            (NetworkOp::Accept, Some(r)) => (Some(r), Some(n.local)),
            _ => (None, None),
        };
        match self {
            Field::DestinationIp => dst.map(|a| Value::Ip(a.ip())),
            Field::DestinationPort => dst.map(|a| Value::Int(i64::from(a.port()))),
            Field::SourceIp => src.map(|a| Value::Ip(a.ip())),
            Field::SourcePort => src.map(|a| Value::Int(i64::from(a.port()))),
            Field::NetworkTransport => n.transport().map(Value::Str),
            Field::NetworkDirection => match n.op {
                NetworkOp::Connect => Some(Value::Str("egress")),
                NetworkOp::Accept => Some(Value::Str("ingress")),
                _ => None,
            },
            _ => None,
        }
    }

    fn privilege<'e>(&self, event: &'e Event) -> Option<Value<'e>> {
        let EventKind::Privilege(p) = &event.kind else {
            return None;
        };
        let pr = &p.process;
        match self {
            Field::PrivResult => Some(Value::Int(p.result)),
            Field::PrivOldUid => Some(Value::Int(i64::from(p.old.uid))),
            Field::PrivOldEuid => Some(Value::Int(i64::from(p.old.euid))),
            Field::PrivNewUid => Some(Value::Int(i64::from(p.new.uid))),
            Field::PrivNewEuid => Some(Value::Int(i64::from(p.new.euid))),
            Field::PrivNewCapEffective => Some(Value::Int(
                i64::try_from(p.new.cap_effective).unwrap_or(i64::MAX),
            )),
            Field::PrivOldCapEffective => Some(Value::Int(
                i64::try_from(p.old.cap_effective).unwrap_or(i64::MAX),
            )),
            Field::PrivTargetPid => p.target_pid.map(|t| Value::Int(i64::from(t))),
            Field::PrivObjectName => nonempty(pr.s(p.object_name)),
            Field::MountSource => p.mount.as_ref().and_then(|m| nonempty(pr.s(m.source))),
            Field::MountFstype => p.mount.as_ref().and_then(|m| nonempty(pr.s(m.fstype))),
            Field::NamespaceType => p
                .namespace
                .and_then(|n| n.kind)
                .map(|k| Value::Str(k.as_str())),
            Field::NamespaceInode => p
                .namespace
                .filter(|n| n.inode != 0)
                .map(|n| Value::Int(i64::try_from(n.inode).unwrap_or(i64::MAX))),
            Field::NamespaceHost => p.namespace.map(|n| Value::Bool(n.host)),
            _ => None,
        }
    }

    fn audit<'e>(&self, a: &'e ApiActivity, scratch: &'e mut Scratch) -> Option<Value<'e>> {
        let s = |v| nonempty(a.s(v));
        let object = a.object_ref.as_ref();
        match self {
            Field::EventAction | Field::AuditVerb => s(a.verb),
            Field::EventCategory => Some(Value::Str("api")),
            Field::EventDataset => Some(Value::Str("lumen.k8s_audit")),
            Field::EventOutcome => Some(Value::Str(match a.failed() {
                Some(false) => "success",
                Some(true) => "failure",
                None => "unknown",
            })),
            Field::UserName | Field::AuditUsername => s(a.user.username),
            Field::UserId => s(a.user.uid),
            Field::UserRoles | Field::AuditGroups => strs(a.strs(&a.user.groups)),
            Field::UserEffectiveName | Field::AuditImpersonatedUser => {
                a.impersonated_user.as_ref().and_then(|u| s(u.username))
            }
            Field::UserEffectiveId => a.impersonated_user.as_ref().and_then(|u| s(u.uid)),
            Field::SourceIp | Field::AuditSourceIps => strs(a.strs(&a.source_ips)),
            Field::AuditUserAgent => s(a.user_agent),
            Field::AuditRequestUri => s(a.request_uri),
            Field::AuditStage => s(a.stage),
            Field::AuditDecision => s(a.authz_decision),
            Field::AuditStatusCode => a
                .response_status
                .as_ref()
                .map(|r| Value::Int(i64::from(r.code))),
            Field::AuditStatusMessage => a.response_status.as_ref().and_then(|r| s(r.message)),
            Field::TokenForOtherServiceAccount => {
                let o = object?;
                if a.s(o.resource) != "serviceaccounts" || a.s(o.subresource) != "token" {
                    return None;
                }
                let requester = a
                    .s(a.user.username)
                    .strip_prefix("system:serviceaccount:")?;
                let (ns, name) = requester.split_once(':')?;
                Some(Value::Bool(ns != a.s(o.namespace) || name != a.s(o.name)))
            }
            Field::AuditResource => object.and_then(|o| s(o.resource)),
            Field::AuditSubresource => object.and_then(|o| s(o.subresource)),
            Field::AuditObjectNamespace | Field::Namespace => object.and_then(|o| s(o.namespace)),
            Field::AuditObjectName => object.and_then(|o| s(o.name)),
            Field::AuditApiGroup => object.and_then(|o| s(o.api_group)),
            Field::ContainerImageName => strs(a.strs(&a.container_images)),
            Field::AuditAnnotation(key) => a
                .annotations
                .iter()
                .find(|(k, _)| {
                    let k = a.s(*k);
                    k.len() == key.len()
                        && k.bytes()
                            .zip(key.bytes())
                            .all(|(x, y)| x == y || (x == b'.' && y == b'_'))
                })
                .and_then(|(_, v)| s(*v)),
            Field::RequestObject(path) => {
                let v = body(&mut scratch.request, a, "requestObject")?;
                let mut out = Vec::new();
                walk(v, path, &mut out);
                (!out.is_empty()).then_some(Value::List(out))
            }
            Field::ResponseObject(path) => {
                let v = body(&mut scratch.response, a, "responseObject")?;
                let mut out = Vec::new();
                walk(v, path, &mut out);
                (!out.is_empty()).then_some(Value::List(out))
            }
            _ => None,
        }
    }
}

fn outcome(ok: bool) -> &'static str {
    if ok {
        "success"
    } else {
        "failure"
    }
}
