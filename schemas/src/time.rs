//! Timestamps: nanoseconds since the Unix epoch, parsed from and written as
//! RFC 3339 (UTC, `Z`). Hand-written because the encoders format one or more
//! per event and a fixed format needs no general date library.

/// Nanoseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_nanos() as i64)
    }

    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// Parses RFC 3339 (`2025-03-04T06:22:18.819232Z`, offsets allowed).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let mut v = 0i64;
            for &c in &b[r] {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + i64::from(c - b'0');
            }
            Some(v)
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || min > 59
            || sec > 60
        {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let mut digits = 0;
            while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                if digits < 9 {
                    nanos = nanos * 10 + i64::from(c - b'0');
                    digits += 1;
                }
                i += 1;
            }
            if digits == 0 {
                return None;
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
        let offset_secs = match b.get(i)? {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
                let off = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
                if *sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
        Some(Timestamp(secs * 1_000_000_000 + nanos))
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds, as Kubernetes writes).
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.rfc3339().0);
    }

    /// The RFC 3339 text in a fixed-size stack buffer (27 bytes, no allocation).
    pub fn rfc3339(self) -> Rfc3339 {
        let secs = self.0.div_euclid(1_000_000_000);
        let micros = self.0.rem_euclid(1_000_000_000) / 1000;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        // Two digits at a time, from a table: no division per digit.
        let mut two = |at: usize, v: i64| {
            let i = 2 * v.clamp(0, 99) as usize;
            b[at..at + 2].copy_from_slice(&DIGIT_PAIRS[i..i + 2]);
        };
        let y = y.clamp(0, 9999);
        two(0, y / 100);
        two(2, y % 100);
        two(5, m);
        two(8, d);
        two(11, sod / 3600);
        two(14, sod / 60 % 60);
        two(17, sod % 60);
        two(20, micros / 10_000);
        two(22, micros / 100 % 100);
        two(24, micros % 100);
        Rfc3339(b)
    }
}

/// "00" to "99".
static DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// A formatted timestamp that derefs to `&str`.
#[derive(Clone, Copy, Debug)]
pub struct Rfc3339([u8; 27]);

impl std::ops::Deref for Rfc3339 {
    type Target = str;
    fn deref(&self) -> &str {
        // Only ASCII digits and punctuation are ever written.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000000Z")
    }
}

// Howard Hinnant's civil-date algorithms (public domain).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_kubernetes_timestamps() {
        let t = Timestamp::parse_rfc3339("2025-03-04T06:22:18.819232Z").unwrap();
        assert_eq!(&*t.rfc3339(), "2025-03-04T06:22:18.819232Z");
        assert_eq!(t.as_millis(), 1_741_069_338_819);
    }

    #[test]
    fn honours_offsets_and_missing_fraction() {
        let a = Timestamp::parse_rfc3339("2018-10-25T13:58:49+02:00").unwrap();
        let b = Timestamp::parse_rfc3339("2018-10-25T11:58:49Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(&*b.rfc3339(), "2018-10-25T11:58:49.000000Z");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2025-13-01T00:00:00Z",
            "2025-03-04 06:22",
            "2025-03-04T06:22:18.Z",
            "x025-03-04T06:22:18Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn every_digit_position_round_trips() {
        // Steps that are prime numbers of µs and days move every digit.
        let mut t = 0i64;
        while t < 7_258_118_400_000_000_000 {
            let text = Timestamp(t).rfc3339();
            assert_eq!(Timestamp::parse_rfc3339(&text), Some(Timestamp(t)), "{t}");
            t += 86_400_000_000_000 * 37 + 3_661_000_001_000 + 7_919_000;
        }
        assert_eq!(&*Timestamp(0).rfc3339(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            &*Timestamp(i64::MAX).rfc3339(),
            "2262-04-11T23:47:16.854775Z"
        );
    }
}
