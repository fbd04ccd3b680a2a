//! What the benches that run `lumen run` share: its CPU time and peak
//! memory, and counting the lines a file sink writes.

#![allow(dead_code)] // each bench uses what it needs

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// (utime + stime in seconds, peak RSS in MiB) of a process.
pub fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (ticks / 100.0, hwm_kib / 1024.0)
}

/// The newlines in `body`.
pub fn memchr_count(body: &[u8]) -> usize {
    body.iter().filter(|b| **b == b'\n').count()
}

/// Counts the lines appended to `path` (read incrementally) into `count`,
/// until `until` of them.
pub fn line_counter(path: std::path::PathBuf, count: Arc<AtomicU64>, until: usize) {
    std::thread::spawn(move || {
        use std::io::{Read, Seek};
        let mut offset = 0u64;
        let mut lines = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            if let Ok(mut f) = std::fs::File::open(&path) {
                let _ = f.seek(std::io::SeekFrom::Start(offset));
                while let Ok(n) = f.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    offset += n as u64;
                    lines += memchr_count(&buf[..n]) as u64;
                }
            }
            count.store(lines, Ordering::Relaxed);
            if lines as usize >= until {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

/// Starts `lumen run --config <config>` quietly (warnings only, no stdout).
pub fn spawn_lumen(config: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_lumen"))
        .args(["run", "--config"])
        .arg(config)
        .env("LUMEN_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("lumen: {e}"))
}
