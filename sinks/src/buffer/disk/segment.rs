//! The on-disk format of a disk buffer: segments of zstd blocks of framed
//! records.
//!
//! ```text
//! segment  = header block*
//! header   = "LUMENBUF" u32:framing-version u32:codec-version      (16 bytes)
//! block    = u32:MAGIC u32:stored-len u32:raw-len u32:records u32:crc payload
//!            crc = CRC32C(stored-len raw-len records payload)
//!            payload = zstd(record*) (raw-len bytes once decompressed)
//! record   = u32:len u32:CRC32C(bytes) bytes                        (the encoded event)
//! ```
//!
//! All integers little-endian. The block CRC tells a torn or corrupted block
//! from a good one; the magic lets a reader find the next good block after a
//! corrupted one; the record CRC catches what the block CRC cannot (a bug or
//! a bad decompression). Segments are append-only and read in order.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub const SEGMENT_MAGIC: &[u8; 8] = b"LUMENBUF";
pub const FRAMING_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: u64 = 16;
pub const BLOCK_MAGIC: u32 = 0x314B_424C; // "LBK1"
pub const BLOCK_HEADER_LEN: usize = 20;
const RECORD_HEADER_LEN: usize = 8;
/// Larger blocks are taken for corruption (a writer never makes them).
pub const MAX_BLOCK_BYTES: u32 = 256 << 20;

/// The segment header for the running build.
pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FRAMING_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&lumen_schemas::codec::FORMAT_VERSION.to_le_bytes());
    h
}

/// Why a segment's header is not usable by this build.
pub fn check_segment_header(h: &[u8]) -> Result<(), String> {
    if h.len() < SEGMENT_HEADER_LEN as usize || &h[..8] != SEGMENT_MAGIC {
        return Err("not a Lumen buffer segment (bad magic)".into());
    }
    let framing = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let codec = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if framing != FRAMING_VERSION || codec != lumen_schemas::codec::FORMAT_VERSION {
        return Err(format!(
            "written by another Lumen version (framing {framing}, event codec {codec}; this build reads {FRAMING_VERSION}, {})",
            lumen_schemas::codec::FORMAT_VERSION
        ));
    }
    Ok(())
}

/// Records being gathered into one block.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    raw: Vec<u8>,
    records: u32,
}

impl BlockBuilder {
    /// Appends one record; `encode` writes its bytes.
    pub fn push(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let at = self.raw.len();
        self.raw.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
        encode(&mut self.raw);
        let body = &self.raw[at + RECORD_HEADER_LEN..];
        let len = body.len() as u32;
        let crc = crc32c::crc32c(body);
        self.raw[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.raw[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        self.records += 1;
    }

    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    pub fn records(&self) -> u32 {
        self.records
    }

    /// Compresses the records into `out` (cleared first) as one block, and
    /// empties the builder.
    pub fn finish(
        &mut self,
        compressor: &mut zstd::bulk::Compressor<'_>,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        out.clear();
        out.resize(BLOCK_HEADER_LEN, 0);
        let bound = zstd::zstd_safe::compress_bound(self.raw.len());
        out.reserve(bound);
        let mut payload = std::mem::take(out);
        let header = payload.len();
        payload.resize(header + bound, 0);
        let n = compressor.compress_to_buffer(&self.raw, &mut payload[header..])?;
        payload.truncate(header + n);
        let stored = n as u32;
        let raw = self.raw.len() as u32;
        payload[0..4].copy_from_slice(&BLOCK_MAGIC.to_le_bytes());
        payload[4..8].copy_from_slice(&stored.to_le_bytes());
        payload[8..12].copy_from_slice(&raw.to_le_bytes());
        payload[12..16].copy_from_slice(&self.records.to_le_bytes());
        let crc = block_crc(&payload[4..16], &payload[BLOCK_HEADER_LEN..]);
        payload[16..20].copy_from_slice(&crc.to_le_bytes());
        *out = payload;
        self.raw.clear();
        self.records = 0;
        Ok(())
    }
}

fn block_crc(lens: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(lens), payload)
}

/// What reading a block at an offset found.
#[derive(Debug)]
pub enum BlockRead {
    /// A good block: its decompressed records and where the next block starts.
    Good {
        raw: Vec<u8>,
        records: u32,
        next: u64,
    },
    /// The block runs past `end`: a write that did not finish.
    Torn,
    /// Not a good block (bad magic, lengths or CRC): why.
    Corrupt(String),
}

/// Reads and checks the block at `offset`; `end` is where valid data may end.
pub fn read_block(
    file: &File,
    offset: u64,
    end: u64,
    decompressor: &mut zstd::bulk::Decompressor<'_>,
) -> io::Result<BlockRead> {
    if offset + BLOCK_HEADER_LEN as u64 > end {
        return Ok(BlockRead::Torn);
    }
    let mut h = [0u8; BLOCK_HEADER_LEN];
    file.read_exact_at(&mut h, offset)?;
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let (magic, stored, raw_len, records, crc) = (word(0), word(4), word(8), word(12), word(16));
    if magic != BLOCK_MAGIC {
        return Ok(BlockRead::Corrupt("bad block magic".into()));
    }
    if stored > MAX_BLOCK_BYTES || raw_len > MAX_BLOCK_BYTES {
        return Ok(BlockRead::Corrupt(format!(
            "implausible block lengths ({stored} stored, {raw_len} raw)"
        )));
    }
    let next = offset + BLOCK_HEADER_LEN as u64 + u64::from(stored);
    if next > end {
        return Ok(BlockRead::Torn);
    }
    let mut payload = vec![0u8; stored as usize];
    file.read_exact_at(&mut payload, offset + BLOCK_HEADER_LEN as u64)?;
    if block_crc(&h[4..16], &payload) != crc {
        return Ok(BlockRead::Corrupt("block CRC32C mismatch".into()));
    }
    let mut raw = Vec::with_capacity(raw_len as usize);
    match decompressor.decompress_to_buffer(&payload, &mut raw) {
        Ok(n) if n == raw_len as usize => Ok(BlockRead::Good { raw, records, next }),
        Ok(n) => Ok(BlockRead::Corrupt(format!(
            "block decompressed to {n} bytes, header says {raw_len}"
        ))),
        Err(e) => Ok(BlockRead::Corrupt(format!("zstd: {e}"))),
    }
}

/// The offset of the first good block after `from` (exclusive) and before
/// `end`, found by its magic and checked whole.
pub fn resync(
    file: &File,
    from: u64,
    end: u64,
    decompressor: &mut zstd::bulk::Decompressor<'_>,
) -> io::Result<Option<u64>> {
    let magic = BLOCK_MAGIC.to_le_bytes();
    let mut chunk = vec![0u8; 1 << 20];
    let mut at = from + 1;
    while at < end {
        let n = ((end - at) as usize).min(chunk.len());
        file.read_exact_at(&mut chunk[..n], at)?;
        let mut search = 0;
        while let Some(i) = memchr::memmem::find(&chunk[search..n], &magic) {
            let candidate = at + (search + i) as u64;
            if let BlockRead::Good { .. } = read_block(file, candidate, end, decompressor)? {
                return Ok(Some(candidate));
            }
            search += i + 1;
        }
        // Overlap by the magic's length so a magic across chunks is found.
        if n < magic.len() {
            break;
        }
        at += (n - magic.len() + 1) as u64;
    }
    Ok(None)
}

/// Records of a decompressed block, each checked against its CRC.
pub fn records(raw: &[u8]) -> impl Iterator<Item = Result<&[u8], String>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= raw.len() {
            return None;
        }
        let Some(h) = raw.get(at..at + RECORD_HEADER_LEN) else {
            at = raw.len();
            return Some(Err("record header cut short".into()));
        };
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let start = at + RECORD_HEADER_LEN;
        let Some(body) = raw.get(start..start + len) else {
            at = raw.len();
            return Some(Err(format!("record of {len} bytes runs past its block")));
        };
        at = start + len;
        if crc32c::crc32c(body) != crc {
            return Some(Err("record CRC32C mismatch".into()));
        }
        Some(Ok(body))
    })
}

/// What is wrong with the end of a segment, if anything.
#[derive(Debug, PartialEq, Eq)]
pub enum Tail {
    /// Every block is whole.
    Clean,
    /// The last block runs past the end of the file: a write a crash cut
    /// short. Its events were never acknowledged upstream.
    Torn,
    /// The last block(s) are whole but fail their checks: data damaged on
    /// disk, lost.
    Corrupt(String),
}

/// Where the good data of a segment ends — the end of its last good block —
/// and what follows it. Corrupt blocks followed by good ones are left for
/// the reader (it skips and reports them).
pub fn valid_end(
    file: &File,
    len: u64,
    decompressor: &mut zstd::bulk::Decompressor<'_>,
) -> io::Result<(u64, Tail)> {
    let mut at = SEGMENT_HEADER_LEN;
    let mut good_end = SEGMENT_HEADER_LEN.min(len);
    while at < len {
        match read_block(file, at, len, decompressor)? {
            BlockRead::Good { next, .. } => {
                at = next;
                good_end = next;
            }
            BlockRead::Torn => return Ok((good_end, Tail::Torn)),
            BlockRead::Corrupt(why) => match resync(file, at, len, decompressor)? {
                Some(next_good) => at = next_good,
                None => return Ok((good_end, Tail::Corrupt(why))),
            },
        }
    }
    Ok((good_end, Tail::Clean))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(records: &[&[u8]]) -> Vec<u8> {
        let mut b = BlockBuilder::default();
        for r in records {
            b.push(|out| out.extend_from_slice(r));
        }
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        let mut out = Vec::new();
        b.finish(&mut c, &mut out).unwrap();
        out
    }

    fn segment(blocks: &[Vec<u8>]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        use std::io::Write;
        f.write_all(&segment_header()).unwrap();
        for b in blocks {
            f.write_all(b).unwrap();
        }
        f
    }

    fn all_records(f: &File, len: u64) -> (Vec<Vec<u8>>, usize) {
        let mut d = zstd::bulk::Decompressor::new().unwrap();
        let (mut out, mut corrupt) = (Vec::new(), 0);
        let mut at = SEGMENT_HEADER_LEN;
        while at < len {
            match read_block(f, at, len, &mut d).unwrap() {
                BlockRead::Good { raw, next, .. } => {
                    out.extend(records(&raw).map(|r| r.unwrap().to_vec()));
                    at = next;
                }
                _ => {
                    corrupt += 1;
                    match resync(f, at, len, &mut d).unwrap() {
                        Some(n) => at = n,
                        None => break,
                    }
                }
            }
        }
        (out, corrupt)
    }

    #[test]
    fn blocks_round_trip_their_records() {
        let f = segment(&[block(&[b"one", b"two"]), block(&[b"three"])]);
        let len = f.as_file().metadata().unwrap().len();
        let (recs, corrupt) = all_records(f.as_file(), len);
        assert_eq!(
            recs,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(corrupt, 0);
        assert_eq!(check(f.as_file(), len), (len, Tail::Clean));
    }

    #[test]
    fn a_flipped_byte_loses_only_its_block_and_is_detected() {
        let (a, b, c) = (block(&[b"a1", b"a2"]), block(&[b"b1"]), block(&[b"c1"]));
        let f = segment(&[a.clone(), b.clone(), c]);
        let len = f.as_file().metadata().unwrap().len();
        // Flip a byte inside block b's payload.
        let at = SEGMENT_HEADER_LEN as usize + a.len() + BLOCK_HEADER_LEN + 1;
        let mut byte = [0u8];
        f.as_file().read_exact_at(&mut byte, at as u64).unwrap();
        f.as_file()
            .write_all_at(&[byte[0] ^ 0x10], at as u64)
            .unwrap();
        let (recs, corrupt) = all_records(f.as_file(), len);
        assert_eq!(corrupt, 1);
        assert_eq!(recs, vec![b"a1".to_vec(), b"a2".to_vec(), b"c1".to_vec()]);
        // A corrupt block followed by good ones is not a torn tail.
        assert_eq!(check(f.as_file(), len), (len, Tail::Clean));
    }

    fn check(f: &File, len: u64) -> (u64, Tail) {
        valid_end(f, len, &mut zstd::bulk::Decompressor::new().unwrap()).unwrap()
    }

    #[test]
    fn a_torn_tail_ends_the_valid_data_at_the_last_whole_block() {
        let (a, b) = (block(&[b"a"]), block(&[b"b", b"bb"]));
        let f = segment(&[a.clone(), b.clone()]);
        let full = f.as_file().metadata().unwrap().len();
        let cut = full - 3;
        f.as_file().set_len(cut).unwrap();
        let a_end = SEGMENT_HEADER_LEN + a.len() as u64;
        assert_eq!(check(f.as_file(), cut), (a_end, Tail::Torn));
        // Half a block header after the last block is a torn tail too.
        f.as_file().set_len(a_end).unwrap();
        f.as_file().write_all_at(&[0xAB; 7], a_end).unwrap();
        assert_eq!(check(f.as_file(), a_end + 7), (a_end, Tail::Torn));
    }

    #[test]
    fn a_whole_last_block_that_fails_its_crc_is_corruption_not_a_torn_write() {
        let (a, b) = (block(&[b"a"]), block(&[b"b", b"bb"]));
        let f = segment(&[a.clone(), b.clone()]);
        let full = f.as_file().metadata().unwrap().len();
        let at = full - 2;
        f.as_file().write_all_at(&[0x00, 0x00], at).unwrap();
        let (end, tail) = check(f.as_file(), full);
        assert_eq!(end, SEGMENT_HEADER_LEN + a.len() as u64);
        assert!(
            matches!(tail, Tail::Corrupt(ref why) if why.contains("CRC32C")),
            "{tail:?}"
        );
    }

    #[test]
    fn a_bad_record_crc_is_reported_and_the_others_read() {
        let mut b = BlockBuilder::default();
        b.push(|o| o.extend_from_slice(b"good"));
        b.push(|o| o.extend_from_slice(b"bad!"));
        let mut raw = b.raw.clone();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let got: Vec<_> = records(&raw).collect();
        assert_eq!(got[0].as_deref(), Ok(&b"good"[..]));
        assert!(got[1].is_err());
    }

    #[test]
    fn headers_of_other_versions_are_refused_with_the_reason() {
        assert!(check_segment_header(&segment_header()).is_ok());
        let mut h = segment_header();
        h[12] = h[12].wrapping_add(1);
        assert!(check_segment_header(&h)
            .unwrap_err()
            .contains("another Lumen version"));
        assert!(check_segment_header(b"garbage!garbage!")
            .unwrap_err()
            .contains("bad magic"));
    }
}
