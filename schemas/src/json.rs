//! A small streaming JSON writer over a `Vec<u8>`.
//!
//! The encoders call it field by field; it tracks commas with a bit per
//! nesting level (at most 64 levels, far more than any schema here needs) and
//! escapes strings per RFC 8259. No allocation beyond the output buffer.

/// Writes JSON tokens into `out`, inserting commas and colons.
#[derive(Debug)]
pub struct JsonWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Bit `d` set: the container at depth `d` already has a member.
    has_member: u64,
    depth: u32,
}

impl<'a> JsonWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            has_member: 0,
            depth: 0,
        }
    }

    #[inline]
    fn separator(&mut self) {
        let bit = 1u64 << (self.depth & 63);
        if self.has_member & bit != 0 {
            self.out.push(b',');
        } else {
            self.has_member |= bit;
        }
    }

    #[inline]
    fn open(&mut self, byte: u8) {
        self.out.push(byte);
        self.depth += 1;
        self.has_member &= !(1u64 << (self.depth & 63));
    }

    #[inline]
    fn close(&mut self, byte: u8) {
        self.out.push(byte);
        self.depth = self.depth.saturating_sub(1);
    }

    /// Starts an object as a value (top level or array element).
    pub fn begin_object(&mut self) {
        if self.depth > 0 {
            self.separator();
        }
        self.open(b'{');
    }

    pub fn end_object(&mut self) {
        self.close(b'}');
    }

    /// Starts an array as a value (array element).
    pub fn begin_array(&mut self) {
        if self.depth > 0 {
            self.separator();
        }
        self.open(b'[');
    }

    pub fn end_array(&mut self) {
        self.close(b']');
    }

    /// Starts an object member `"key":{`.
    pub fn object(&mut self, key: &str) {
        self.member_key(key);
        self.open(b'{');
    }

    /// Starts an array member `"key":[`.
    pub fn array(&mut self, key: &str) {
        self.member_key(key);
        self.open(b'[');
    }

    /// Keys are literals in the encoders' code, never input data, and need
    /// no escaping; [`JsonWriter::str_with_data_key`] is for keys that come
    /// from input.
    #[inline]
    fn member_key(&mut self, key: &str) {
        self.separator();
        self.out.push(b'"');
        put(self.out, key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string member whose key comes from input data (escaped).
    pub fn str_with_data_key(&mut self, key: &str, value: &str) {
        self.separator();
        write_escaped(self.out, key);
        self.out.push(b':');
        write_escaped(self.out, value);
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.member_key(key);
        write_escaped(self.out, value);
    }

    /// A string member joining literals of the encoder (`"<class>: <activity>"`):
    /// nothing in them to escape, so they are copied.
    pub fn lits(&mut self, key: &str, parts: &[&'static str]) {
        self.member_key(key);
        self.out.push(b'"');
        for part in parts {
            debug_assert!(
                part.bytes().all(|b| ESCAPE[b as usize] == 0),
                "{part:?} needs escaping"
            );
            put(self.out, part.as_bytes());
        }
        self.out.push(b'"');
    }

    /// `"key":"a b c"` for a NUL-separated argv `a\0b\0c`: the arguments
    /// joined with spaces, each escaped, without building the joined
    /// string first.
    pub fn command_line(&mut self, key: &str, argv: &str) {
        self.member_key(key);
        self.out.push(b'"');
        for (i, arg) in crate::event::split_argv(argv).enumerate() {
            if i > 0 {
                self.out.push(b' ');
            }
            escape_into(self.out, arg);
        }
        self.out.push(b'"');
    }

    /// A string member whose value is a literal of the encoder (a class
    /// name, a type caption): see [`JsonWriter::lits`].
    pub fn lit(&mut self, key: &str, value: &'static str) {
        self.lits(key, &[value]);
    }

    /// A timestamp member in RFC 3339 (nothing in it to escape).
    pub fn timestamp(&mut self, key: &str, t: crate::time::Timestamp) {
        self.member_key(key);
        self.out.push(b'"');
        t.write_rfc3339(self.out);
        self.out.push(b'"');
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    /// A string member unless `value` is empty.
    pub fn nonempty_str(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.str(key, value);
        }
    }

    pub fn u64(&mut self, key: &str, value: u64) {
        self.member_key(key);
        let mut b = itoa::Buffer::new();
        put(self.out, b.format(value).as_bytes());
    }

    pub fn i64(&mut self, key: &str, value: i64) {
        self.member_key(key);
        let mut b = itoa::Buffer::new();
        put(self.out, b.format(value).as_bytes());
    }

    /// A number with at most four decimals (a share, a ratio); a value
    /// that is not finite is written as `null`.
    pub fn f64(&mut self, key: &str, value: f64) {
        use std::io::Write;
        self.member_key(key);
        if value.is_finite() {
            let rounded = (value * 10_000.0).round() / 10_000.0;
            let _ = write!(self.out, "{rounded}");
        } else {
            self.out.extend_from_slice(b"null");
        }
    }

    pub fn bool(&mut self, key: &str, value: bool) {
        self.member_key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// A member whose value is already valid JSON (e.g. a cached literal).
    pub fn raw(&mut self, key: &str, json: &[u8]) {
        self.member_key(key);
        self.out.extend_from_slice(json);
    }

    /// A string element of an array.
    pub fn elem_str(&mut self, value: &str) {
        self.separator();
        write_escaped(self.out, value);
    }

    /// `"key":{"ip":"…","port":N}` — a socket address (ECS and OCSF both
    /// write endpoints this way).
    pub fn socket_addr(&mut self, key: &str, addr: std::net::SocketAddr) {
        let mut buf = [0u8; 48];
        self.object(key);
        self.str("ip", ip_str(addr.ip(), &mut buf));
        self.u64("port", u64::from(addr.port()));
        self.end_object();
    }

    /// A signed integer element of an array.
    pub fn elem_i64(&mut self, value: i64) {
        self.separator();
        let mut b = itoa::Buffer::new();
        put(self.out, b.format(value).as_bytes());
    }

    /// An integer element of an array.
    pub fn elem_u64(&mut self, value: u64) {
        self.separator();
        let mut b = itoa::Buffer::new();
        put(self.out, b.format(value).as_bytes());
    }

    /// `"key":"a,b"` — `values` joined by `sep`, without building the joined
    /// string first.
    pub fn str_joined<S: AsRef<str>>(&mut self, key: &str, values: &[S], sep: char) {
        let plain = sep.is_ascii()
            && EXTRA[sep as usize] == 0
            && values
                .iter()
                .all(|v| v.as_ref().bytes().all(|b| EXTRA[b as usize] == 0));
        if !plain {
            let joined: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
            self.str(key, &joined.join(sep.encode_utf8(&mut [0; 4])));
            return;
        }
        self.member_key(key);
        self.out.push(b'"');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(sep as u8);
            }
            self.out.extend_from_slice(v.as_ref().as_bytes());
        }
        self.out.push(b'"');
    }

    /// `"key":["a","b"]`.
    pub fn str_array<'s>(&mut self, key: &str, values: impl IntoIterator<Item = &'s str>) {
        self.array(key);
        for v in values {
            self.elem_str(v);
        }
        self.end_array();
    }
}

/// Formats an IP address on the stack (no allocation).
pub fn ip_str(ip: std::net::IpAddr, buf: &mut [u8; 48]) -> &str {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let n = cursor.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

/// Appends `s` as a JSON string literal.
///
/// The embedded original events are long and have a quote every few bytes
/// (one in 8 in an audit event's JSON), so this is the encoders' hot loop.
/// The string is taken in segments of up to 2 KiB. One pass over a segment
/// finds the bytes to escape, 64 at a time, into one bit mask per 64-byte
/// block (SSE2 compares on x86-64, word arithmetic elsewhere) and adds up
/// what their escapes add; a segment without escapes is copied whole.
/// Otherwise it is written into space of its final size (and slack) from the
/// masks alone: each escape in turn — the run before it copied 16 bytes at
/// a time (past its end into the slack, overwritten next), then the escape
/// written. What comes next depends on the mask only, not on a byte just
/// loaded, so escapes follow each other without waiting.
pub fn write_escaped(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

/// [`write_escaped`] without the quotes.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    let src = s.as_bytes();
    if src.len() < BLOCK {
        // Most values: names, ids, paths.
        let (special, control) = short_masks(src);
        let extra = added(src, special, control);
        write_masked(out, src, &[special], extra);
    } else {
        let mut masks = [0u64; SEGMENT / BLOCK];
        for segment in src.chunks(SEGMENT) {
            let extra = segment_masks(segment, &mut masks);
            write_masked(out, segment, &masks, extra);
        }
    }
}

const SEGMENT: usize = 2048;
const BLOCK: usize = 64;
const LANE: usize = 16;
const RUN: usize = 16;

/// Fills `masks` with the escape masks of `src`'s 64-byte blocks; what the
/// escapes add.
fn segment_masks(src: &[u8], masks: &mut [u64; SEGMENT / BLOCK]) -> usize {
    let mut extra = 0;
    for (k, block) in src.chunks(BLOCK).enumerate() {
        let (special, control) = match block.try_into() {
            Ok(full) => masks_of(full),
            Err(_) => match src.last_chunk::<BLOCK>() {
                // The last, short block: the segment's last 64 bytes, shifted
                // past what the blocks before saw.
                Some(last) => {
                    let (special, control) = masks_of(last);
                    let seen = BLOCK - block.len();
                    (special >> seen, control >> seen)
                }
                None => short_masks(block),
            },
        };
        masks[k] = special;
        extra += added(block, special, control);
    }
    extra
}

/// The bytes the escapes marked in `special` add to `block`: 1 for `\"`,
/// `\\` and the short control escapes, 5 for `\u00XX`.
#[inline(always)]
fn added(block: &[u8], special: u64, control: u64) -> usize {
    let mut extra = special.count_ones() as usize;
    if control != 0 {
        extra += unicode_escapes(block, control) * 4;
    }
    extra
}

/// Appends `src` with the escapes its blocks' `masks` mark, which add
/// `extra` bytes.
#[inline(always)]
fn write_masked(out: &mut Vec<u8>, src: &[u8], masks: &[u64], extra: usize) {
    if extra == 0 {
        put(out, src);
        return;
    }
    let start = out.len();
    let len = src.len() + extra;
    // Slack: runs are copied 16 bytes at a time, the last past the end.
    out.resize(start + len + RUN, 0);
    let dst = &mut out[start..];
    // Source bytes before `i` are written, up to `j` in `dst`.
    let (mut i, mut j) = (0, 0);
    for (k, &block) in masks[..src.len().div_ceil(BLOCK)].iter().enumerate() {
        let mut mask = block;
        while mask != 0 {
            let at = k * BLOCK + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            j = copy_run(dst, j, src, i, at);
            j += escape_byte(&mut dst[j..], src[at]);
            i = at + 1;
        }
    }
    copy_run(dst, j, src, i, src.len());
    out.truncate(start + len);
}

/// Of the control characters of `block` marked in `control`, how many have
/// no short escape and are written `\u00XX`.
#[cold]
fn unicode_escapes(block: &[u8], mut control: u64) -> usize {
    let mut n = 0;
    while control != 0 {
        let at = control.trailing_zeros() as usize;
        control &= control - 1;
        n += usize::from(ESCAPE[block[at] as usize] == b'u');
    }
    n
}

/// The masks of a string shorter than a block: by 16-byte lanes, the last
/// read as the string's last 16 bytes, shifted; under 16 bytes, see
/// [`tiny_masks`].
fn short_masks(src: &[u8]) -> (u64, u64) {
    let (mut special, mut control) = (0u64, 0u64);
    let Some(last) = src.last_chunk::<LANE>() else {
        return tiny_masks(src);
    };
    let mut lanes = src.chunks_exact(LANE);
    let mut at = 0;
    for lane in &mut lanes {
        let (s, c) = lane_masks_of(lane);
        special |= s << at;
        control |= c << at;
        at += LANE;
    }
    let rest = lanes.remainder().len();
    if rest > 0 {
        let (s, c) = lane_masks_of(last);
        let seen = LANE - rest;
        special |= (s >> seen) << at;
        control |= (c >> seen) << at;
    }
    (special, control)
}

/// [`short_masks`] under 16 bytes: one lane made of the string's first and
/// last 8 bytes (or 4, from 4 to 7 bytes), which overlap in the middle;
/// under 4 bytes, a byte at a time. The lane is built from two word stores
/// and read back by the same two word loads, which the CPU forwards (a
/// lane padded byte by byte would stall them).
#[inline(always)]
fn tiny_masks(src: &[u8]) -> (u64, u64) {
    let n = src.len();
    let half = if n >= WORD { WORD } else { 4 };
    if n < 4 {
        let (mut special, mut control) = (0u64, 0u64);
        for (k, &b) in src.iter().enumerate() {
            special |= u64::from(ESCAPE[b as usize] != 0) << k;
            control |= u64::from(b < 0x20) << k;
        }
        return (special, control);
    }
    let (head, tail) = if half == WORD {
        (word(&src[..WORD]), word(&src[n - WORD..]))
    } else {
        (
            u64::from(half_word(&src[..4])),
            u64::from(half_word(&src[n - 4..])),
        )
    };
    let mut lane = [0u8; LANE];
    lane[..WORD].copy_from_slice(&head.to_le_bytes());
    lane[WORD..].copy_from_slice(&tail.to_le_bytes());
    let (s, c) = lane_masks_of(&lane);
    // The head's bytes are the lane's low `half` bits; the tail's sit at
    // bit 8 and stand for the string's last `half` bytes.
    let keep = (1u64 << half) - 1;
    let join = |m: u64| (m & keep) | (((m >> WORD) & keep) << (n - half));
    (join(s), join(c))
}

/// Four bytes as a little-endian word.
#[inline(always)]
fn half_word(bytes: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(bytes);
    u32::from_le_bytes(w)
}

/// Bit `k` set for each byte `k` of `block` JSON must escape, and for each
/// that is a control character.
#[inline(always)]
fn masks_of(block: &[u8; BLOCK]) -> (u64, u64) {
    let (mut special, mut control) = (0u64, 0u64);
    for (k, lane) in block.chunks_exact(LANE).enumerate() {
        let (s, c) = lane_masks_of(lane);
        special |= s << (LANE * k);
        control |= c << (LANE * k);
    }
    (special, control)
}

/// [`masks_of`] for one 16-byte lane (the low 16 bits).
#[inline(always)]
fn lane_masks_of(lane: &[u8]) -> (u64, u64) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: the build enables SSE2 (always, for x86-64: it is part of the
    // baseline), the only feature `lane_masks` requires.
    let masks = unsafe { lane_masks(lane) };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let masks = lane_masks(lane);
    masks
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn lane_masks(lane: &[u8]) -> (u64, u64) {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x,
    };
    let (lo, hi) = lane.split_at(WORD);
    let x = _mm_set_epi64x(word(hi) as i64, word(lo) as i64);
    // x <= 0x1f, unsigned: the smaller of the two is x.
    let ctl = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
    let any = _mm_or_si128(
        _mm_or_si128(
            _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8)),
            _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8)),
        ),
        ctl,
    );
    (
        u64::from(_mm_movemask_epi8(any) as u16),
        u64::from(_mm_movemask_epi8(ctl) as u16),
    )
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn lane_masks(lane: &[u8]) -> (u64, u64) {
    let (mut special, mut control) = (0u64, 0u64);
    for (w, chunk) in lane.chunks_exact(WORD).enumerate() {
        let x = word(chunk);
        // The high bit of each byte, gathered into the top byte.
        let ctl = control_bytes(x);
        let any = bytes_equal(x, b'"') | bytes_equal(x, b'\\') | ctl;
        special |= (any.wrapping_mul(GATHER) >> 56) << (WORD * w);
        control |= (ctl.wrapping_mul(GATHER) >> 56) << (WORD * w);
    }
    (special, control)
}

/// Eight bytes as a little-endian word.
#[inline(always)]
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

/// Gathers the high bits of a word's bytes into its top byte (bit `k` for
/// byte `k`) when multiplied with a word holding only those bits.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
const GATHER: u64 = 0x0002_0408_1020_4081;

/// The longest bytes [`put`] moves inline.
const SHORT: usize = 2 * LANE;

/// Appends `bytes`. Keys, numbers and most values are short: they are
/// moved inline (two overlapping loads and stores) instead of through a
/// call to `memcpy`, which cost more than the copy.
#[inline(always)]
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > SHORT {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(bytes.len());
    let len = out.len();
    // SAFETY: `bytes.len()` bytes are reserved past `len` and written.
    unsafe {
        copy_short(bytes.as_ptr(), out.as_mut_ptr().add(len), bytes.len());
        out.set_len(len + bytes.len());
    }
}

/// Copies `n` (at most [`SHORT`]) bytes from `src` to `dst`: the first and
/// the last 16, 8, 4 or 1–3 bytes, overlapping in the middle.
///
/// # Safety
/// `src` must be valid for `n` reads, `dst` for `n` writes; no overlap.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    debug_assert!(n <= SHORT);
    // SAFETY: every access is within the first `n` bytes of each side.
    unsafe {
        if n >= 16 {
            let head = (src as *const u128).read_unaligned();
            let tail = (src.add(n - 16) as *const u128).read_unaligned();
            (dst as *mut u128).write_unaligned(head);
            (dst.add(n - 16) as *mut u128).write_unaligned(tail);
        } else if n >= 8 {
            let head = (src as *const u64).read_unaligned();
            let tail = (src.add(n - 8) as *const u64).read_unaligned();
            (dst as *mut u64).write_unaligned(head);
            (dst.add(n - 8) as *mut u64).write_unaligned(tail);
        } else if n >= 4 {
            let head = (src as *const u32).read_unaligned();
            let tail = (src.add(n - 4) as *const u32).read_unaligned();
            (dst as *mut u32).write_unaligned(head);
            (dst.add(n - 4) as *mut u32).write_unaligned(tail);
        } else if n > 0 {
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
    }
}

/// Copies `src[from..to]` to `dst` at `j`, 16 bytes at a time (the last copy
/// may write past the run: the caller's slack); where it ends in `dst`.
#[inline(always)]
fn copy_run(dst: &mut [u8], mut j: usize, src: &[u8], mut from: usize, to: usize) -> usize {
    while from < to {
        let n = (to - from).min(RUN);
        match src.get(from..from + RUN) {
            Some(chunk) => dst[j..j + RUN].copy_from_slice(chunk),
            None => dst[j..j + n].copy_from_slice(&src[from..from + n]),
        }
        from += n;
        j += n;
    }
    j
}

const WORD: usize = 8;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
const ONES: u64 = 0x0101_0101_0101_0101;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
const HIGH: u64 = 0x8080_8080_8080_8080;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of each byte of `x` that equals `c`, exactly (no carry
/// crosses bytes: the sums are of 7-bit values).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn bytes_equal(x: u64, c: u8) -> u64 {
    let t = x ^ (ONES * u64::from(c));
    !(((t & LOW7) + LOW7) | t | LOW7)
}

/// The high bit of each byte of `x` below 0x20 (a control character).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn control_bytes(x: u64) -> u64 {
    !((x & LOW7) + ONES * 0x60) & !x & HIGH
}

/// Writes byte `b` at the start of `dst`, escaped if it must be; the bytes
/// written.
#[inline(always)]
fn escape_byte(dst: &mut [u8], b: u8) -> usize {
    match ESCAPE[b as usize] {
        0 => {
            dst[0] = b;
            1
        }
        b'u' => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            dst[..6].copy_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
            6
        }
        short => {
            dst[0] = b'\\';
            dst[1] = short;
            2
        }
    }
}

/// Bytes an escape adds: 1 for `\"`-style, 5 for `\u00XX`.
static EXTRA: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match ESCAPE[i] {
            0 => 0,
            b'u' => 5,
            _ => 1,
        };
        i += 1;
    }
    t
};

/// For each byte: 0 when it is written as is, else the letter after the
/// backslash (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_four_decimals_and_non_finite_ones_are_null() {
        let mut buf = Vec::new();
        let mut w = JsonWriter::new(&mut buf);
        w.begin_object();
        w.f64("share", 0.123_456);
        w.f64("whole", 1.0);
        w.f64("nan", f64::NAN);
        w.f64("inf", f64::INFINITY);
        w.end_object();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            r#"{"share":0.1235,"whole":1,"nan":null,"inf":null}"#
        );
    }

    #[test]
    fn joined_strings_are_escaped_only_when_they_need_it() {
        let mut buf = Vec::new();
        let mut w = JsonWriter::new(&mut buf);
        w.begin_object();
        w.str_joined("plain", &["a.b", "c:d"], ',');
        w.str_joined("quoted", &["x\"y", "z"], ',');
        w.str_joined("none", &[] as &[&str], ',');
        w.end_object();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            r#"{"plain":"a.b,c:d","quoted":"x\"y,z","none":""}"#
        );
    }

    #[test]
    fn nested_objects_and_arrays_are_valid_json() {
        let mut buf = Vec::new();
        let mut w = JsonWriter::new(&mut buf);
        w.begin_object();
        w.str("a", "x\"y\n\u{1}");
        w.object("o");
        w.u64("n", 7);
        w.str_array("arr", ["p", "q"]);
        w.str_with_data_key("k\"ey", "v");
        w.end_object();
        w.i64("neg", -3);
        w.array("objs");
        w.begin_object();
        w.bool("t", true);
        w.end_object();
        w.begin_object();
        w.end_object();
        w.end_array();
        w.end_object();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["a"], "x\"y\n\u{1}");
        assert_eq!(v["o"]["n"], 7);
        assert_eq!(v["o"]["arr"][1], "q");
        assert_eq!(v["o"]["k\"ey"], "v");
        assert_eq!(v["neg"], -3);
        assert_eq!(v["objs"][0]["t"], true);
        assert_eq!(v["objs"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn short_keys_values_and_numbers_of_every_length_match_serde_json() {
        // Keys and values from empty to past two lanes, plain and with each
        // special character at each position: the inline moves and the
        // sub-lane masks see every length and overlap.
        let alphabet = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(2);
        for len in 0..=70 {
            let base = &alphabet[..len];
            let mut values = vec![base.to_owned()];
            for c in ['"', '\\', '\n', '\u{1}', '\u{1f}', 'é'] {
                for pos in 0..=len {
                    let mut v = base.to_owned();
                    v.insert(pos, c);
                    values.push(v);
                }
            }
            let n = (len as u64).wrapping_mul(1_000_000_007);
            for v in values {
                let mut buf = Vec::new();
                let mut w = JsonWriter::new(&mut buf);
                w.begin_object();
                w.str(base, &v);
                w.u64("n", n);
                w.i64("m", -(n as i64));
                w.end_object();
                let expected = format!(
                    "{{{}:{},\"n\":{n},\"m\":{}}}",
                    serde_json::to_string(base).unwrap(),
                    serde_json::to_string(&v).unwrap(),
                    -(n as i64)
                );
                assert_eq!(String::from_utf8(buf).unwrap(), expected, "{v:?}");
            }
        }
    }

    #[test]
    fn command_lines_are_argv_joined_with_spaces_and_escaped() {
        for argv in [
            "",
            "curl",
            "curl\0-s\0https://example.com/?q=\"x\"",
            "sh\0-c\0echo \\ done\n\u{1}",
            "a\0\0b",
        ] {
            let mut out = Vec::new();
            let mut w = JsonWriter::new(&mut out);
            w.begin_object();
            w.command_line("cmd", argv);
            w.end_object();
            let joined = argv.replace('\0', " ");
            let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(back["cmd"], joined.as_str(), "{argv:?}");
        }
    }

    #[test]
    fn literals_are_written_like_strings() {
        let members = [
            ("type", "Regular File"),
            ("empty", ""),
            ("class_name", "File System Activity: Open"),
        ];
        let write = |literal: bool| {
            let mut out = Vec::new();
            let mut w = JsonWriter::new(&mut out);
            w.begin_object();
            for (k, v) in members {
                if literal {
                    w.lit(k, v);
                } else {
                    w.str(k, v);
                }
            }
            w.lits("type_name", &["File System Activity", ": ", "Open"]);
            w.end_object();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(write(true), write(false));
        assert_eq!(
            write(true),
            r#"{"type":"Regular File","empty":"","class_name":"File System Activity: Open","type_name":"File System Activity: Open"}"#
        );
    }

    #[test]
    fn escaping_matches_serde_json_for_every_byte_position() {
        // Each special character at every offset of a 150-byte string, so
        // the block and word scans and the tail loop all see it.
        let specials = [
            '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é', '€', ' ', '!', '#', '[',
            ']', '\u{5b}', '\u{5d}', '\u{20}', '\u{80}', '\u{ff}',
        ];
        for c in specials {
            for pos in 0..150 {
                let mut s: String = "abcdefghijklmnopqrst".repeat(8)[..150].to_owned();
                s.insert(pos, c);
                s.push(c);
                let mut ours = Vec::new();
                write_escaped(&mut ours, &s);
                let back: String = serde_json::from_slice(&ours).unwrap();
                assert_eq!(back, s);
                assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
            }
        }
    }

    #[test]
    fn escaping_matches_serde_json_on_random_strings() {
        // Every ASCII byte, and multi-byte characters, in random mixes.
        let alphabet: Vec<char> = (0u8..0x80)
            .map(char::from)
            .chain(['é', '€', '😀', '\u{80}', '\u{2028}'])
            .collect();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        // Up to several 64-byte blocks, and sparse and dense mixes; every
        // tenth string spans segments (2 KiB).
        for round in 0..5000 {
            let len = if round % 10 == 9 {
                next(5000)
            } else {
                next(300)
            };
            let plain = round % 2 == 0;
            let s: String = (0..len)
                .map(|_| {
                    if plain && next(16) != 0 {
                        'a'
                    } else {
                        alphabet[next(alphabet.len())]
                    }
                })
                .collect();
            let mut ours = b"prefix".to_vec();
            write_escaped(&mut ours, &s);
            let mut expected = b"prefix".to_vec();
            expected.extend(serde_json::to_vec(&s).unwrap());
            assert_eq!(ours, expected, "{s:?}");
        }
    }
}
