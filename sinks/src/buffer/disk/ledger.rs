//! Where the sink's acknowledgements have reached: the first record of the
//! buffer not yet acknowledged, kept in `<dir>/acked` (24 bytes, overwritten
//! in place, CRC-checked) so a restart neither resends what the sink has nor
//! skips what it has not.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The first unacknowledged record: the block at `offset` of segment
/// `segment`, after its first `skip` records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
    pub skip: u32,
}

#[derive(Debug)]
pub struct Ledger {
    file: File,
}

impl Ledger {
    /// Opens (or creates) the ledger in `dir`; the position it holds, if it
    /// holds a valid one.
    pub fn open(dir: &Path) -> io::Result<(Ledger, Option<Position>)> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("acked"))?;
        let mut b = [0u8; 24];
        let position = match file.read_exact_at(&mut b, 0) {
            Ok(()) => decode(&b),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
            Err(e) => return Err(e),
        };
        Ok((Ledger { file }, position))
    }

    pub fn save(&self, p: Position) -> io::Result<()> {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&p.segment.to_le_bytes());
        b[8..16].copy_from_slice(&p.offset.to_le_bytes());
        b[16..20].copy_from_slice(&p.skip.to_le_bytes());
        let crc = crc32c::crc32c(&b[..20]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all_at(&b, 0)
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

fn decode(b: &[u8; 24]) -> Option<Position> {
    let crc = u32::from_le_bytes([b[20], b[21], b[22], b[23]]);
    if crc32c::crc32c(&b[..20]) != crc {
        return None;
    }
    let u64_at = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    Some(Position {
        segment: u64_at(0),
        offset: u64_at(8),
        skip: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_position_is_read_back_and_a_damaged_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (l, p) = Ledger::open(dir.path()).unwrap();
        assert_eq!(p, None, "a new ledger holds no position");
        let pos = Position {
            segment: 3,
            offset: 4096,
            skip: 7,
        };
        l.save(pos).unwrap();
        drop(l);
        let (l, p) = Ledger::open(dir.path()).unwrap();
        assert_eq!(p, Some(pos));
        l.file.write_all_at(&[0xff], 9).unwrap();
        assert_eq!(Ledger::open(dir.path()).unwrap().1, None);
    }
}
