//! The canonical event: one typed struct per kind of activity, with shared
//! objects (process, user, host) that every encoder reads the same way.

use crate::time::Timestamp;
use std::sync::Arc;

/// One security event, as every source produces it.
#[derive(Clone, Debug)]
pub struct Event {
    /// When the activity happened (the kernel's clock, the audit stage time).
    pub time: Timestamp,
    /// When Lumen observed it.
    pub observed: Timestamp,
    /// The host that observed it.
    pub host: Arc<Host>,
    pub kind: EventKind,
}

/// The host Lumen runs on; shared by every event it produces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    /// `uname -m` (`x86_64`).
    pub architecture: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
}

#[derive(Clone, Debug)]
pub enum EventKind {
    /// A process started (exec) or ended (exit).
    Process(ProcessEvent),
    /// A call to the Kubernetes API server, from its audit log.
    ApiActivity(Box<ApiActivity>),
}

impl EventKind {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Process(p) => match p.activity {
                ProcessActivity::Exec => "process_exec",
                ProcessActivity::Exit => "process_exit",
            },
            EventKind::ApiActivity(_) => "k8s_audit",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessActivity {
    /// The process image was replaced by execve/execveat.
    Exec,
    /// The process (thread group) exited.
    Exit,
}

#[derive(Clone, Debug)]
pub struct ProcessEvent {
    pub activity: ProcessActivity,
    pub process: Process,
    /// For exits: how it ended.
    pub exit: Option<ExitStatus>,
}

/// How a process ended, decoded from the kernel's wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// `exit(code)` value, 0–255 (0 when killed by a signal).
    pub code: i32,
    /// Terminating signal, if one killed it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Decodes a wait(2) status (`code << 8 | signal`).
    pub fn from_wait_status(raw: u32) -> Self {
        let signal = (raw & 0x7f) as i32;
        Self {
            code: ((raw >> 8) & 0xff) as i32,
            signal: (signal != 0).then_some(signal),
        }
    }

    /// The value a shell would report: the code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match self.signal {
            Some(s) => 128 + s,
            None => self.code,
        }
    }
}

/// A process as the kernel described it.
#[derive(Clone, Debug, Default)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Absolute path of the executable, when known.
    pub executable: String,
    /// The task name (`comm`), or the executable's base name.
    pub name: String,
    /// argv, argv[0] first.
    pub args: Vec<String>,
    /// True when argv was longer than the kernel record could carry.
    pub args_truncated: bool,
    /// Cgroup v2 id of the process.
    pub cgroup_id: u64,
}

impl Process {
    /// argv joined with spaces (ECS `process.command_line`, OCSF `cmd_line`).
    pub fn command_line(&self) -> String {
        self.args.join(" ")
    }
}

/// A Kubernetes API request, from an `audit.k8s.io` Event.
#[derive(Clone, Debug, Default)]
pub struct ApiActivity {
    /// `apiVersion` of the audit event itself (`audit.k8s.io/v1`).
    pub audit_api_version: String,
    pub audit_id: String,
    /// `RequestReceived`, `ResponseStarted`, `ResponseComplete`, `Panic`.
    pub stage: String,
    /// `Metadata`, `Request`, `RequestResponse`, `None`.
    pub level: String,
    pub verb: String,
    pub request_uri: String,
    pub user: K8sUser,
    pub impersonated_user: Option<K8sUser>,
    pub source_ips: Vec<String>,
    pub user_agent: Option<String>,
    pub object_ref: Option<ObjectRef>,
    pub response_status: Option<ResponseStatus>,
    pub request_received: Option<Timestamp>,
    pub stage_time: Option<Timestamp>,
    /// `authorization.k8s.io/decision`: `allow` or `forbid`.
    pub authz_decision: Option<String>,
    /// `authorization.k8s.io/reason`.
    pub authz_reason: Option<String>,
    /// Every annotation, in the order the event lists them.
    pub annotations: Vec<(String, String)>,
    /// Images of the containers in a pod `requestObject`.
    pub container_images: Vec<String>,
    /// Where the event came from when it was wrapped (AKS diagnostic logs).
    pub wrapper: Option<Wrapper>,
    /// The event exactly as read (one JSON document).
    pub original: String,
}

impl ApiActivity {
    /// True when the API server answered with an error status.
    pub fn failed(&self) -> Option<bool> {
        self.response_status.as_ref().map(|s| s.code >= 400)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct K8sUser {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub resource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
    pub api_group: Option<String>,
    pub api_version: Option<String>,
    pub resource_version: Option<String>,
    pub subresource: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseStatus {
    pub code: u16,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// Metadata of a cloud log record that carried the audit event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wrapper {
    /// `aks`.
    pub provider: &'static str,
    pub category: Option<String>,
    pub operation_name: Option<String>,
    pub resource_id: Option<String>,
    pub pod: Option<String>,
    pub container_id: Option<String>,
    pub time: Option<String>,
}
