//! Packet timestamps: the capture's clock, never the wall clock, so a replay dates its findings right.

use std::fmt;

/// A packet timestamp in nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_parts(secs: i64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(i64::from(nanos)),
        )
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    pub fn nanos(self) -> u32 {
        // rem_euclid of a positive divisor is in 0..1e9, which fits u32.
        self.0.rem_euclid(1_000_000_000) as u32
    }

    pub fn saturating_add_secs(self, secs: u64) -> Self {
        let add = i64::try_from(secs).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(add.saturating_mul(1_000_000_000)))
    }
}

/// RFC 3339 in UTC with microseconds, as the alert contract shows: `2026-11-27T10:00:00.123456Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ::time::OffsetDateTime::from_unix_timestamp(self.secs()) {
            Ok(dt) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                self.nanos() / 1000
            ),
            Err(_) => write!(f, "invalid-time({})", self.0),
        }
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_rfc3339_micros() {
        let ts = Timestamp::from_parts(1_795_773_600, 123_456_789);
        assert_eq!(ts.to_string(), "2026-11-27T10:00:00.123456Z");
    }

    #[test]
    fn pre_1970_is_still_formatted() {
        let ts = Timestamp::from_parts(-1, 0);
        assert_eq!(ts.to_string(), "1969-12-31T23:59:59.000000Z");
    }
}
