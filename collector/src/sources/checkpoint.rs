//! Where file sources resume: per file its identity — device, inode, and a
//! CRC32C of its first bytes, so a reused inode is not mistaken for the
//! old file — and the offset up to which every event has been
//! acknowledged. Saved atomically (temporary file, fsync, rename, fsync of
//! the directory) under `data_dir/checkpoints/<source id>.json`.

use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Bytes at the start of a file its fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 256;

/// Where one file was acknowledged up to.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
pub struct FileCheckpoint {
    /// The path when last seen (informative: files are matched by identity).
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// CRC32C of the first `fingerprint_len` bytes.
    pub fingerprint: u32,
    pub fingerprint_len: u32,
    /// Every line before this offset was acknowledged.
    pub offset: u64,
    /// The number of the line at `offset` (1-based), for messages.
    pub line_no: u64,
}

/// The fingerprint of `head` (the file's first bytes).
pub fn fingerprint(head: &[u8]) -> (u32, u32) {
    let head = &head[..head.len().min(FINGERPRINT_BYTES)];
    (crc32c::crc32c(head), head.len() as u32)
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct Saved {
    version: u32,
    files: Vec<FileCheckpoint>,
}

/// Why checkpoints could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoints {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoints {path} are unreadable ({reason}); starting without them")]
    Corrupt { path: PathBuf, reason: String },
}

/// One source's checkpoint file.
#[derive(Debug)]
pub struct CheckpointStore {
    path: PathBuf,
}

impl CheckpointStore {
    pub fn new(data_dir: &Path, source_id: &str) -> Self {
        CheckpointStore {
            path: data_dir
                .join("checkpoints")
                .join(format!("{source_id}.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved checkpoints (none when the file does not exist yet).
    pub fn load(&self) -> Result<Vec<FileCheckpoint>, CheckpointError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        serde_json::from_slice::<Saved>(&text)
            .map(|s| s.files)
            .map_err(|e| CheckpointError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    /// Replaces the saved checkpoints with `files`, atomically.
    pub fn save(&self, files: &[FileCheckpoint]) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(&Saved {
            version: 1,
            files: files.to_vec(),
        })
        .map_err(|e| io(std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically_and_reports_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path(), "audit");
        assert_eq!(store.load().unwrap(), Vec::new());
        let cp = FileCheckpoint {
            path: "/var/log/a.log".into(),
            dev: 1,
            ino: 2,
            fingerprint: 3,
            fingerprint_len: 256,
            offset: 4096,
            line_no: 11,
        };
        store.save(std::slice::from_ref(&cp)).unwrap();
        assert_eq!(store.load().unwrap(), vec![cp]);
        assert!(!store.path().with_extension("json.tmp").exists());
        std::fs::write(store.path(), b"{not json").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("audit.json") && e.contains("unreadable"), "{e}");
    }

    #[test]
    fn fingerprints_cover_the_first_bytes_only() {
        let a = vec![b'a'; 1000];
        let mut b = a.clone();
        b[500] = b'b';
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b[10] = b'b';
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(b"short").1, 5);
    }
}
