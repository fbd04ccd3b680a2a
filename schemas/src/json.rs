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
        self.out.extend_from_slice(key.as_bytes());
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
        self.out.extend_from_slice(b.format(value).as_bytes());
    }

    pub fn i64(&mut self, key: &str, value: i64) {
        self.member_key(key);
        let mut b = itoa::Buffer::new();
        self.out.extend_from_slice(b.format(value).as_bytes());
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
        self.out.extend_from_slice(b.format(value).as_bytes());
    }

    /// An integer element of an array.
    pub fn elem_u64(&mut self, value: u64) {
        self.separator();
        let mut b = itoa::Buffer::new();
        self.out.extend_from_slice(b.format(value).as_bytes());
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
/// The embedded original events are long and have a quote every few bytes,
/// so this is the encoders' hot loop. A first pass adds up how many bytes
/// the escapes need (a table lookup per byte, no branches); a string without
/// escapes is then copied whole, any other is written into a slice of
/// exactly the final size, one lookup per byte, with no per-run copies.
pub fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let extra: usize = bytes.iter().map(|&b| usize::from(EXTRA[b as usize])).sum();
    if extra == 0 {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let start = out.len();
    out.resize(start + bytes.len() + extra + 2, 0);
    let dst = &mut out[start..];
    dst[0] = b'"';
    let mut j = 1;
    for &b in bytes {
        match ESCAPE[b as usize] {
            0 => {
                dst[j] = b;
                j += 1;
            }
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                dst[j..j + 6].copy_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
                j += 6;
            }
            short => {
                dst[j] = b'\\';
                dst[j + 1] = short;
                j += 2;
            }
        }
    }
    dst[j] = b'"';
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
    fn escaping_matches_serde_json_for_every_byte_position() {
        // Each special character at every offset of a 20-byte string, so the
        // word-at-a-time scan and the tail loop both see it.
        let specials = [
            '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é', '€',
        ];
        for c in specials {
            for pos in 0..20 {
                let mut s: String = "abcdefghijklmnopqrst".to_owned();
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
}
