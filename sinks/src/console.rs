//! The `console` sink: one short human line per event on standard output, or
//! NDJSON in the chosen schema with `encoding = "json"`.

use crate::ack::Status;
use crate::{ComponentMetrics, Envelope};
use lumen_schemas::event::{
    ApiActivity, NetworkEvent, PrivilegeEvent, ProcessActivity, ProcessEvent,
};
use lumen_schemas::{Event, EventKind, Schema};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// `[sinks.<id>] type = "console"`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    pub inputs: Vec<String>,
    /// The buffer in front of the sink (`memory` by default).
    #[serde(default)]
    pub buffer: crate::buffer::BufferConfig,
    /// Schema of the JSON lines (`encoding = "json"`).
    #[serde(default = "default_schema")]
    pub schema: Schema,
    #[serde(default)]
    pub encoding: ConsoleEncoding,
}

fn default_schema() -> Schema {
    Schema::Ocsf
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleEncoding {
    /// `2026-11-28T10:00:00.000000Z exec pid=… /usr/bin/ls ls -la`
    #[default]
    Text,
    /// The event in `schema`, one JSON document per line.
    Json,
}

#[derive(Debug)]
pub struct ConsoleSink {
    config: ConsoleSinkConfig,
    metrics: Arc<ComponentMetrics>,
}

impl ConsoleSink {
    pub fn new(config: ConsoleSinkConfig, metrics: Arc<ComponentMetrics>) -> Self {
        ConsoleSink { config, metrics }
    }

    pub async fn run(self, mut rx: mpsc::Receiver<Envelope>) {
        let mut out = tokio::io::stdout();
        let mut batch = Vec::with_capacity(256);
        let mut buf = Vec::with_capacity(64 * 1024);
        while rx.recv_many(&mut batch, 256).await > 0 {
            self.metrics.add_received(batch.len() as u64);
            if let Some(last) = batch.last() {
                self.metrics.took(last.event.observed);
            }
            buf.clear();
            for env in &batch {
                match self.config.encoding {
                    ConsoleEncoding::Json => self.config.schema.encode(&env.event, &mut buf),
                    ConsoleEncoding::Text => {
                        buf.extend_from_slice(text_line(&env.event).as_bytes())
                    }
                }
                buf.push(b'\n');
            }
            let status = match out.write_all(&buf).await {
                Ok(()) => {
                    let _ = out.flush().await;
                    self.metrics.add_sent(batch.len() as u64);
                    self.metrics.add_sent_bytes(buf.len());
                    Status::Delivered
                }
                Err(e) => {
                    // A closed terminal or pipe: nothing to retry into.
                    self.metrics.add_errors(1);
                    self.metrics.add_dropped(batch.len() as u64);
                    tracing::error!(error = %e, "console sink: cannot write to stdout");
                    Status::Dropped
                }
            };
            for env in batch.drain(..) {
                env.ack.complete(status);
            }
        }
    }
}

/// The one-line human summary of an event.
pub fn text_line(event: &Event) -> String {
    let mut s = String::with_capacity(160);
    s.push_str(&event.time.rfc3339());
    match &event.kind {
        EventKind::Process(p) => process_line(&mut s, p),
        EventKind::ApiActivity(a) => api_line(&mut s, a),
        EventKind::Privilege(p) => privilege_line(&mut s, p),
        EventKind::Network(n) => network_line(&mut s, n),
        EventKind::File(f) => {
            let pr = &f.process;
            let _ = write!(
                s,
                " {} pid={} {} {}",
                f.op.action(),
                pr.pid,
                pr.executable(),
                pr.s(f.path)
            );
            if !f.new_path.is_empty() {
                let _ = write!(s, " -> {}", pr.s(f.new_path));
            }
            if let Some(m) = f.mode {
                let _ = write!(s, " mode={m:04o}");
            }
            if f.sensitive {
                s.push_str(" SENSITIVE");
            }
        }
        EventKind::Loss(l) => {
            s.push_str(" LOSS ");
            s.push_str(&l.message());
        }
        EventKind::Finding(f) => {
            let _ = write!(
                s,
                " FINDING {} [{}] {}",
                f.rule.severity.name().to_uppercase(),
                f.rule.id,
                f.rule.title
            );
            if f.count > 1 {
                let _ = write!(s, " (x{})", f.count);
            }
            s.push_str(" <-");
            let evidence = text_line(&f.evidence);
            // The evidence's line without its timestamp (the finding's).
            s.push_str(evidence.split_once(' ').map_or("", |(_, rest)| rest));
        }
        EventKind::Resource(r) => {
            let what = match r.scope {
                Some(lumen_schemas::event::ResourceScope::Host) | None => "host",
                Some(_) => r.s(r.cgroup),
            };
            let _ = write!(s, " resources {what}");
            if let Some(cpu) = r.cpu_share() {
                let _ = write!(s, " cpu={:.1}%", cpu * 100.0);
            }
            if let Some(t) = r.usage.cpu_throttled_periods.filter(|t| *t > 0) {
                let _ = write!(s, " throttled={t}");
            }
            if let Some(m) = r.usage.memory_usage {
                let _ = write!(s, " mem={}MiB", m >> 20);
            }
            if let Some(p) = r.usage.pids_current {
                let _ = write!(s, " pids={p}");
            }
        }
    }
    s
}

fn process_line(s: &mut String, p: &ProcessEvent) {
    let pr = &p.process;
    match p.activity {
        ProcessActivity::Exec => {
            let _ = write!(
                s,
                " exec pid={} ppid={} uid={} {}",
                pr.pid,
                pr.ppid,
                pr.uid,
                pr.executable()
            );
            for a in pr.args() {
                s.push(' ');
                s.push_str(a);
            }
            if pr.args_truncated {
                s.push_str(" …");
            }
        }
        ProcessActivity::Fork => {
            let _ = write!(
                s,
                " fork pid={} ppid={} {}",
                pr.pid,
                pr.ppid,
                pr.executable()
            );
        }
        ProcessActivity::Exit => {
            let _ = write!(s, " exit pid={} ppid={} {}", pr.pid, pr.ppid, pr.name());
            if let Some(e) = p.exit {
                match e.signal {
                    Some(sig) => {
                        let _ = write!(s, " signal={sig}");
                    }
                    None => {
                        let _ = write!(s, " code={}", e.code);
                    }
                }
            }
        }
        ProcessActivity::OomKill => {
            let _ = write!(s, " OOM-KILLED pid={} {}", pr.pid, pr.name());
        }
    }
}

fn network_line(s: &mut String, n: &NetworkEvent) {
    let pr = &n.process;
    let _ = write!(
        s,
        " {} pid={} {} {}",
        n.op.action(),
        pr.pid,
        pr.executable(),
        n.transport().unwrap_or("ip")
    );
    match n.remote {
        Some(r) if n.op == lumen_schemas::event::NetworkOp::Accept => {
            let _ = write!(s, " {r} -> {}", n.local);
        }
        Some(r) => {
            let _ = write!(s, " {} -> {r}", n.local);
        }
        None => {
            let _ = write!(s, " {}", n.local);
        }
    }
    if !n.succeeded() {
        let _ = write!(s, " FAILED errno={}", -n.result);
    }
}

fn privilege_line(s: &mut String, p: &PrivilegeEvent) {
    let pr = &p.process;
    let _ = write!(
        s,
        " {} pid={} uid={} {}",
        p.op.action(),
        pr.pid,
        p.old.uid,
        pr.executable()
    );
    if p.op.changes_uid() || p.op.changes_gid() {
        let _ = write!(
            s,
            " uid {}->{} gid {}->{}",
            p.old.uid, p.new.uid, p.old.gid, p.new.gid
        );
    }
    if p.op == lumen_schemas::event::PrivilegeOp::Capset {
        let _ = write!(
            s,
            " caps {:#x}->{:#x}",
            p.old.cap_effective, p.new.cap_effective
        );
    }
    if let Some(t) = p.target_pid {
        let _ = write!(s, " target={t}");
    }
    let name = pr.s(p.object_name);
    if !name.is_empty() {
        let _ = write!(s, " name={name}");
    }
    if let Some(m) = &p.mount {
        let _ = write!(
            s,
            " {} on {} type {}",
            pr.s(m.source),
            pr.s(m.target),
            pr.s(m.fstype)
        );
    }
    if p.result < 0 {
        let _ = write!(s, " FAILED errno={}", -p.result);
    }
}

fn api_line(out: &mut String, a: &ApiActivity) {
    let _ = write!(out, " k8s {} ", a.s(a.verb));
    match &a.object_ref {
        Some(o) => {
            out.push_str(a.opt(o.resource).unwrap_or("-"));
            if let Some(sub) = a.opt(o.subresource) {
                let _ = write!(out, "/{sub}");
            }
            match a.opt(o.namespace) {
                Some(ns) => {
                    let _ = write!(out, " {ns}/");
                }
                None => out.push(' '),
            }
            out.push_str(a.opt(o.name).unwrap_or("*"));
        }
        None => out.push_str(a.s(a.request_uri)),
    }
    let _ = write!(out, " user={}", a.s(a.user.username));
    if let Some(imp) = &a.impersonated_user {
        let _ = write!(out, " as={}", a.s(imp.username));
    }
    if let Some(r) = &a.response_status {
        let _ = write!(out, " code={}", r.code);
    }
    if let Some(d) = a.opt(a.authz_decision) {
        let _ = write!(out, " decision={d}");
    }
    if let Some(ip) = a.source_ips.first() {
        let _ = write!(out, " from={}", a.s(*ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_schemas::event::{ExitStatus, Host, Process};
    use lumen_schemas::time::Timestamp;

    fn event(kind: EventKind) -> Event {
        Event {
            time: Timestamp(1_700_000_000_000_000_000),
            observed: Timestamp(0),
            host: Arc::new(Host::default()),
            kind,
            redaction: Default::default(),
        }
    }

    #[test]
    fn text_lines_say_what_happened_in_one_line() {
        let p = Process {
            pid: 5,
            ppid: 1,
            uid: 0,
            ..Process::default()
        }
        .with_text("/bin/ls", "ls", &["ls", "-la"]);
        let exec = event(EventKind::Process(Box::new(ProcessEvent {
            activity: ProcessActivity::Exec,
            process: p.clone(),
            exit: None,
            exe: Default::default(),
        })));
        assert_eq!(
            text_line(&exec),
            "2023-11-14T22:13:20.000000Z exec pid=5 ppid=1 uid=0 /bin/ls ls -la"
        );
        let exit = event(EventKind::Process(Box::new(ProcessEvent {
            activity: ProcessActivity::Exit,
            process: p,
            exit: Some(ExitStatus::from_wait_status(9)),
            exe: Default::default(),
        })));
        assert_eq!(
            text_line(&exit),
            "2023-11-14T22:13:20.000000Z exit pid=5 ppid=1 ls signal=9"
        );
        let line = r#"{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"bob"},"impersonatedUser":{"username":"eve"},"sourceIPs":["::1"],"objectRef":{"resource":"secrets","namespace":"ns","name":"s"},"responseStatus":{"code":403},"annotations":{"authorization.k8s.io/decision":"forbid"}}"#;
        let api = event(EventKind::ApiActivity(Box::new(
            lumen_schemas::k8s_audit::parse_line(line).unwrap(),
        )));
        assert_eq!(
            text_line(&api),
            "2023-11-14T22:13:20.000000Z k8s get secrets ns/s user=bob as=eve code=403 decision=forbid from=::1"
        );
    }
}
