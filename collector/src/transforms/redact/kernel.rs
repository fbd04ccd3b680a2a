//! Kernel events: the strings a rule or a detector may concern (argv,
//! command lines, paths, the parent's), checked without a copy, and
//! rebuilt into a fresh text buffer when one changes — no redacted value
//! stays behind in memory.

use super::*;

impl Redactor {
    pub(super) fn kernel(&self, event: &mut Arc<Event>) -> bool {
        let Some(p) = event.kind.process() else {
            return false;
        };
        let mysql = is_mysql(p);
        let wants = |slot: Slot, value: &str| -> bool {
            self.rules
                .iter()
                .any(|r| slot.is(r.ecs.as_deref()) && !value.is_empty())
                || (slot.free_text()
                    && (self.detectors.may_match(value)
                        || (slot == Slot::Argv && mysql && argv::has_p_arg(value))))
        };
        let mut needed = false;
        visit_slots_ref(&event.kind, &mut |slot, s| needed |= wants(slot, s));
        let ip_rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| matches!(r.ecs.as_deref(), Some("source.ip" | "destination.ip")))
            .collect();
        if let EventKind::Network(n) = &event.kind {
            needed |= !ip_rules.is_empty()
                && (truncate_ip(n.local.ip()) != n.local.ip()
                    || n.remote.is_some_and(|r| truncate_ip(r.ip()) != r.ip()));
        }
        if !needed {
            return false;
        }
        let e = Arc::make_mut(event);
        let mut marker = Redaction::default();
        let mut fired = Vec::new();
        rebuild_slots(&mut e.kind, &mut |slot, value, out| {
            for rule in &self.rules {
                if slot.is(rule.ecs.as_deref()) && !value.is_empty() {
                    marker.record(rule.field.clone(), rule.name.clone());
                    if slot == Slot::Argv || slot == Slot::ParentArgv {
                        // Per argument, argv[0] kept.
                        for (i, arg) in lumen_schemas::event::split_argv(value).enumerate() {
                            if i > 0 {
                                out.push('\0');
                                self.apply(rule, arg, out);
                            } else {
                                out.push_str(arg);
                            }
                        }
                    } else {
                        self.apply(rule, value, out);
                    }
                    return true;
                }
            }
            if !slot.free_text() {
                return false;
            }
            let mut text = Cow::Borrowed(value);
            if slot == Slot::Argv && mysql && argv::has_p_arg(value) {
                text = Cow::Owned(argv::mask_p_args(value));
                marker.record(slot.field(), Detector::PasswordArg.rule());
            }
            let mut scrubbed = String::new();
            let before = fired.len();
            if self.detect(&text, &mut scrubbed, &mut fired) {
                for d in &fired[before..] {
                    marker.record(slot.field(), d.rule());
                }
                text = Cow::Owned(scrubbed);
            }
            match text {
                Cow::Owned(t) => {
                    out.push_str(&t);
                    true
                }
                Cow::Borrowed(_) => false,
            }
        });
        if let EventKind::Network(n) = &mut e.kind {
            for rule in &ip_rules {
                let (src_is_local, remote) = (
                    n.op != lumen_schemas::event::NetworkOp::Accept,
                    n.remote.as_mut(),
                );
                let local = &mut n.local;
                let target = match (rule.ecs.as_deref(), src_is_local) {
                    (Some("source.ip"), true) | (Some("destination.ip"), false) => Some(local),
                    _ => remote,
                };
                if let Some(addr) = target {
                    let ip = match rule.action {
                        Action::Drop => match addr.ip() {
                            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                        },
                        _ => truncate_ip(addr.ip()),
                    };
                    if ip != addr.ip() {
                        addr.set_ip(ip);
                        marker.record(rule.field.clone(), rule.name.clone());
                    }
                }
            }
        }
        if marker.is_empty() {
            return false;
        }
        self.metrics.count(&marker);
        e.redaction.merge(&self.marker(&marker));
        true
    }
}

/// The mysql family takes `-pSECRET` glued to the flag.
fn is_mysql(p: &Process) -> bool {
    argv::is_mysql(p.args().next().unwrap_or(""))
}

/// The string fields of a kernel event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Executable,
    Argv,
    ParentExecutable,
    ParentArgv,
    FilePath,
    FileNewPath,
    MountSource,
    MountTarget,
    /// Names, attribution: kept as they are.
    Other,
}

impl Slot {
    fn is(self, ecs: Option<&str>) -> bool {
        matches!(
            (self, ecs),
            (Slot::Executable, Some("process.executable"))
                | (Slot::Argv, Some("process.command_line"))
                | (Slot::ParentArgv, Some("process.parent.command_line"))
                | (Slot::FilePath | Slot::FileNewPath, Some("file.path"))
        )
    }

    fn free_text(self) -> bool {
        matches!(
            self,
            Slot::Argv
                | Slot::ParentArgv
                | Slot::FilePath
                | Slot::FileNewPath
                | Slot::MountSource
                | Slot::MountTarget
        )
    }

    fn field(self) -> &'static str {
        match self {
            Slot::Executable => "process.executable",
            Slot::Argv => "process.command_line",
            Slot::ParentExecutable => "process.parent.executable",
            Slot::ParentArgv => "process.parent.command_line",
            Slot::FilePath => "file.path",
            Slot::FileNewPath => "file.target_path",
            Slot::MountSource => "lumen.mount.source",
            Slot::MountTarget => "lumen.mount.target",
            Slot::Other => "",
        }
    }
}

/// Every string of a kernel event and its slot, in a fixed order.
fn slots_mut(kind: &mut EventKind) -> Option<(&mut String, Vec<(Slot, &mut Str)>)> {
    let (process, extra): (&mut Process, Vec<(Slot, &mut Str)>) = match kind {
        EventKind::Process(p) => (&mut p.process, vec![]),
        EventKind::Network(n) => (&mut n.process, vec![]),
        EventKind::File(f) => {
            let lumen_schemas::event::FileEvent {
                process,
                path,
                new_path,
                ..
            } = &mut **f;
            (
                process,
                vec![(Slot::FilePath, path), (Slot::FileNewPath, new_path)],
            )
        }
        EventKind::Privilege(p) => {
            let lumen_schemas::event::PrivilegeEvent {
                process,
                object_name,
                mount,
                ..
            } = &mut **p;
            let mut extra = vec![(Slot::Other, object_name)];
            if let Some(m) = mount {
                extra.push((Slot::MountSource, &mut m.source));
                extra.push((Slot::MountTarget, &mut m.target));
                extra.push((Slot::Other, &mut m.fstype));
            }
            (process, extra)
        }
        EventKind::ApiActivity(_)
        | EventKind::Loss(_)
        | EventKind::Finding(_)
        | EventKind::Resource(_) => return None,
    };
    let Process {
        text,
        executable,
        name,
        argv,
        attribution,
        parent,
        ..
    } = process;
    let mut v: Vec<(Slot, &mut Str)> = vec![
        (Slot::Executable, executable),
        (Slot::Other, name),
        (Slot::Argv, argv),
        (Slot::ParentExecutable, &mut parent.executable),
        (Slot::Other, &mut parent.name),
        (Slot::ParentArgv, &mut parent.argv),
        (Slot::Other, &mut attribution.cgroup),
        (Slot::Other, &mut attribution.container_id),
        (Slot::Other, &mut attribution.pod_uid),
        (Slot::Other, &mut attribution.pod_name),
        (Slot::Other, &mut attribution.namespace),
        (Slot::Other, &mut attribution.container_name),
        (Slot::Other, &mut attribution.image),
    ];
    for (k, val) in attribution.labels.iter_mut() {
        v.push((Slot::Other, k));
        v.push((Slot::Other, val));
    }
    v.extend(extra);
    Some((text, v))
}

fn visit_slots_ref(kind: &EventKind, f: &mut dyn FnMut(Slot, &str)) {
    // Read-only walk: clone-free by borrowing through a shared reference.
    let p = match kind.process() {
        Some(p) => p,
        None => return,
    };
    f(Slot::Executable, p.executable());
    f(Slot::Argv, p.s(p.argv));
    f(Slot::ParentArgv, p.s(p.parent.argv));
    match kind {
        EventKind::File(fe) => {
            f(Slot::FilePath, p.s(fe.path));
            f(Slot::FileNewPath, p.s(fe.new_path));
        }
        EventKind::Privilege(pe) => {
            if let Some(m) = &pe.mount {
                f(Slot::MountSource, p.s(m.source));
                f(Slot::MountTarget, p.s(m.target));
            }
        }
        _ => {}
    }
}

/// Rebuilds the event's text: each string is copied, or replaced by what
/// `f` writes when it returns `true`. Old values do not survive.
fn rebuild_slots(kind: &mut EventKind, f: &mut dyn FnMut(Slot, &str, &mut String) -> bool) {
    let Some((text, slots)) = slots_mut(kind) else {
        return;
    };
    let old = std::mem::take(text);
    text.reserve(old.len());
    let mut replacement = String::new();
    for (slot, s) in slots {
        let value = s.get(&old);
        replacement.clear();
        let start = text.len();
        if f(slot, value, &mut replacement) {
            text.push_str(&replacement);
        } else {
            text.push_str(value);
        }
        *s = Str::range(start, text.len());
    }
}
