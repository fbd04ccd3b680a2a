//! Drift on any root file system: files a container's own processes wrote
//! or made executable since Lumen watched it, so an exec of one of them is
//! known as drift even where no overlayfs upper layer says so (a plain
//! directory root, a bind-mounted volume).
//!
//! Fed by the source's file events (opens with write intent, chmods that
//! set an execute bit, renames carrying a tracked file to its new name)
//! and asked at each exec. Keyed by (container id, path in the container's
//! root); bounded: past `capacity` entries the oldest is forgotten.

use lumen_schemas::event::{FileEvent, FileOperation, ProcessEvent};
use std::collections::{HashSet, VecDeque};

/// Files written or made executable inside containers.
#[derive(Debug)]
pub struct ContainerWrites {
    files: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

/// The set's key: container id and path, NUL-separated (neither holds one).
fn key(container: &str, path: &str) -> String {
    let mut k = String::with_capacity(container.len() + 1 + path.len());
    k.push_str(container);
    k.push('\0');
    k.push_str(path);
    k
}

impl ContainerWrites {
    pub fn new(capacity: usize) -> Self {
        ContainerWrites {
            files: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn insert(&mut self, k: String) {
        if self.files.contains(&k) {
            return;
        }
        if self.files.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.files.remove(&old);
            }
        }
        self.order.push_back(k.clone());
        self.files.insert(k);
    }

    /// Notes what a file event of a container did to its file.
    pub fn observe(&mut self, f: &FileEvent) {
        let p = &f.process;
        let container = p.s(p.attribution.container_id);
        if container.is_empty() {
            return;
        }
        let path = p.s(f.path);
        match f.op {
            FileOperation::Open if f.writes() => self.insert(key(container, path)),
            FileOperation::Chmod if f.mode.is_some_and(|m| m & 0o111 != 0) => {
                self.insert(key(container, path));
            }
            FileOperation::Rename => {
                let old = key(container, path);
                if self.files.contains(&old) {
                    self.insert(key(container, p.s(f.new_path)));
                }
            }
            _ => {}
        }
    }

    /// Marks an exec whose executable a process of its container wrote.
    pub fn mark(&self, ev: &mut ProcessEvent) {
        let p = &ev.process;
        let container = p.s(p.attribution.container_id);
        if container.is_empty() || ev.exe.path.is_empty() {
            return;
        }
        if self.files.contains(&key(container, &ev.exe.path)) {
            ev.exe.written_in_container = true;
        }
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_schemas::event::{push, Process, ProcessActivity};

    fn in_container(container: &str) -> Process {
        let mut p = Process::default().with_text("/bin/sh", "sh", &[]);
        p.attribution.container_id = push(&mut p.text, container);
        p
    }

    fn file(
        container: &str,
        op: FileOperation,
        path: &str,
        new: &str,
        flags: u32,
        mode: Option<u32>,
    ) -> FileEvent {
        let mut process = in_container(container);
        let path = push(&mut process.text, path);
        let new_path = push(&mut process.text, new);
        FileEvent {
            op,
            process,
            path,
            new_path,
            flags,
            mode,
            uid: None,
            gid: None,
            sensitive: false,
        }
    }

    fn exec(container: &str, path: &str) -> ProcessEvent {
        let mut ev = ProcessEvent {
            activity: ProcessActivity::Exec,
            process: in_container(container),
            exit: None,
            exe: Default::default(),
        };
        ev.exe.path = path.to_owned();
        ev
    }

    fn drift(w: &ContainerWrites, container: &str, path: &str) -> bool {
        let mut ev = exec(container, path);
        w.mark(&mut ev);
        ev.exe.written_in_container
    }

    #[test]
    fn writes_chmods_and_renames_in_a_container_make_its_execs_drift() {
        let mut w = ContainerWrites::new(100);
        w.observe(&file(
            "c1",
            FileOperation::Open,
            "/tmp/dropped",
            "",
            FileEvent::O_CREAT | 1,
            Some(0o644),
        ));
        w.observe(&file(
            "c1",
            FileOperation::Chmod,
            "/opt/tool",
            "",
            0,
            Some(0o755),
        ));
        w.observe(&file("c1", FileOperation::Open, "/tmp/staged", "", 1, None));
        w.observe(&file(
            "c1",
            FileOperation::Rename,
            "/tmp/staged",
            "/usr/local/bin/x",
            0,
            None,
        ));
        assert!(drift(&w, "c1", "/tmp/dropped"));
        assert!(drift(&w, "c1", "/opt/tool"));
        assert!(drift(&w, "c1", "/usr/local/bin/x"));
        // Another container, the image's files, a read-only open, a chmod
        // without x, the host: no drift.
        assert!(!drift(&w, "c2", "/tmp/dropped"));
        assert!(!drift(&w, "c1", "/bin/sh"));
        w.observe(&file("c1", FileOperation::Open, "/etc/passwd", "", 0, None));
        w.observe(&file(
            "c1",
            FileOperation::Chmod,
            "/srv/data",
            "",
            0,
            Some(0o600),
        ));
        assert!(!drift(&w, "c1", "/etc/passwd"));
        assert!(!drift(&w, "c1", "/srv/data"));
        w.observe(&file("", FileOperation::Open, "/tmp/host", "", 1, None));
        assert!(
            w.files.iter().all(|k| !k.starts_with('\0')),
            "host writes are not kept"
        );
        assert!(!drift(&w, "", "/tmp/host"));
    }

    #[test]
    fn the_oldest_file_is_forgotten_past_the_capacity() {
        let mut w = ContainerWrites::new(2);
        for path in ["/a", "/b", "/c"] {
            w.observe(&file("c", FileOperation::Open, path, "", 1, None));
        }
        assert_eq!(w.len(), 2);
        assert!(!drift(&w, "c", "/a"));
        assert!(drift(&w, "c", "/b") && drift(&w, "c", "/c"));
    }
}
