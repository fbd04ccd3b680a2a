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

    #[inline]
    fn member_key(&mut self, key: &str) {
        self.separator();
        write_escaped(self.out, key);
        self.out.push(b':');
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

    pub fn bool(&mut self, key: &str, value: bool) {
        self.member_key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// A member whose value is already valid JSON (e.g. a raw sub-document).
    pub fn raw(&mut self, key: &str, json: &str) {
        self.member_key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    /// A string element of an array.
    pub fn elem_str(&mut self, value: &str) {
        self.separator();
        write_escaped(self.out, value);
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

/// Appends `s` as a JSON string literal.
pub fn write_escaped(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_objects_and_arrays_are_valid_json() {
        let mut buf = Vec::new();
        let mut w = JsonWriter::new(&mut buf);
        w.begin_object();
        w.str("a", "x\"y\n\u{1}");
        w.object("o");
        w.u64("n", 7);
        w.str_array("arr", ["p", "q"]);
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
        assert_eq!(v["neg"], -3);
        assert_eq!(v["objs"][0]["t"], true);
        assert_eq!(v["objs"].as_array().unwrap().len(), 2);
    }
}
