//! The host Lumen runs on, read once at start-up.

use lumen_schemas::event::Host;

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Host name (`LUMEN_HOSTNAME` overrides, for containers that see another
/// name), architecture and kernel release.
pub fn detect() -> Host {
    let name = std::env::var("LUMEN_HOSTNAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| read_trimmed("/proc/sys/kernel/hostname"))
        .unwrap_or_else(|| "localhost".to_owned());
    Host {
        name,
        architecture: std::env::consts::ARCH.to_owned(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
    }
}
