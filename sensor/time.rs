//! Packet timestamps: the capture's clock, never the wall clock, so a replay dates its findings right.

use std::cell::Cell;
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
        match self.rfc3339() {
            Some(text) => f.write_str(text.as_str()),
            // Never, in fact: nanoseconds in an i64 span the years 1677 to 2262.
            None => write!(f, "invalid-time({})", self.0),
        }
    }
}

/// The 27 bytes of `YYYY-MM-DDTHH:MM:SS.ffffffZ`: a timestamp's text built without the
/// formatting machinery, since every event and alert line carries one.
pub struct Rfc3339([u8; 27]);

impl Rfc3339 {
    /// The text's bytes, for a writer of bytes (no UTF-8 check).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("invalid-time")
    }
}

thread_local! {
    /// The second last written by `rfc3339` on this thread and its text up to the fraction:
    /// lines come in time order, many to a second, and the calendar arithmetic was most of
    /// the cost of a timestamp's text.
    static LAST_SECOND: Cell<Option<(i64, [u8; 20])>> = const { Cell::new(None) };
}

impl Timestamp {
    /// The timestamp as RFC 3339 text; `None` outside the years 0 to 9999.
    pub fn rfc3339(self) -> Option<Rfc3339> {
        let secs = self.secs();
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let put = |out: &mut [u8; 27], at: usize, width: usize, mut value: u32| {
            for slot in out[at..at + width].iter_mut().rev() {
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        match LAST_SECOND.get() {
            Some((last, head)) if last == secs => out[..20].copy_from_slice(&head),
            _ => {
                let dt = ::time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
                let year = u32::try_from(dt.year()).ok().filter(|y| *y <= 9999)?;
                put(&mut out, 0, 4, year);
                put(&mut out, 5, 2, u32::from(u8::from(dt.month())));
                put(&mut out, 8, 2, u32::from(dt.day()));
                put(&mut out, 11, 2, u32::from(dt.hour()));
                put(&mut out, 14, 2, u32::from(dt.minute()));
                put(&mut out, 17, 2, u32::from(dt.second()));
                let mut head = [0u8; 20];
                head.copy_from_slice(&out[..20]);
                LAST_SECOND.set(Some((secs, head)));
            }
        }
        put(&mut out, 20, 6, self.nanos() / 1000);
        Some(Rfc3339(out))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339() {
            Some(text) => s.serialize_str(text.as_str()),
            None => s.collect_str(self),
        }
    }
}

/// A text that is not an RFC 3339 time within the range a `Timestamp` holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 time such as 2026-11-27T10:00:00Z")]
pub struct NotRfc3339 {
    pub text: String,
}

impl NotRfc3339 {
    /// Short, fixed: a metric label.
    pub fn reason(&self) -> &'static str {
        "not_rfc3339"
    }
}

impl Timestamp {
    /// Reads RFC 3339 (`2026-11-27T10:00:00.123456Z`, any offset, converted to UTC): what
    /// `Display` writes, and what operators type (`--now`, suppression expiries). The one
    /// RFC 3339 reader of the crate.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, NotRfc3339> {
        let bad = || NotRfc3339 { text: text.into() };
        let dt =
            ::time::OffsetDateTime::parse(text, &::time::format_description::well_known::Rfc3339)
                .map_err(|_| bad())?;
        i64::try_from(dt.unix_timestamp_nanos())
            .map(Timestamp)
            .map_err(|_| bad())
    }

    /// Reads RFC 3339 or a bare day (`2026-12-31`, taken as its midnight UTC): what operators
    /// type for a moment that needs no time of day (`hosts --since`, suppression expiries).
    pub fn parse_day_or_rfc3339(text: &str) -> Option<Timestamp> {
        if let Ok(t) = Timestamp::parse_rfc3339(text) {
            return Some(t);
        }
        let day = ::time::Date::parse(
            text,
            ::time::macros::format_description!("[year]-[month]-[day]"),
        )
        .ok()?;
        Some(Timestamp::from_parts(
            day.midnight().assume_utc().unix_timestamp(),
            0,
        ))
    }
}

impl std::str::FromStr for Timestamp {
    type Err = NotRfc3339;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse_rfc3339(s)
    }
}

/// The same text `Serialize` writes (RFC 3339, any offset accepted).
impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
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
    fn reads_back_what_it_writes_and_converts_offsets_to_utc() {
        let ts = Timestamp::from_parts(1_795_773_600, 123_456_000);
        assert_eq!(Timestamp::parse_rfc3339(&ts.to_string()), Ok(ts));
        assert_eq!(
            "2026-11-27T12:00:00.123456+02:00".parse::<Timestamp>(),
            Ok(ts)
        );
        let json = serde_json::to_string(&ts).expect("serializes");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).ok(), Some(ts));
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for bad in [
            "",
            "2026-11-27",
            "2026-11-27T10:00:00",
            "yesterday",
            "9999-99-99T00:00:00Z",
        ] {
            let e = Timestamp::parse_rfc3339(bad).expect_err(bad);
            assert_eq!(e.reason(), "not_rfc3339");
        }
    }

    #[test]
    fn the_hand_built_text_is_what_the_formatter_writes() {
        let reference = |ts: Timestamp| {
            let dt = ::time::OffsetDateTime::from_unix_timestamp(ts.secs()).expect("in range");
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                ts.nanos() / 1000
            )
        };
        // The ends of what an i64 of nanoseconds holds (1677 and 2262), before the epoch, the
        // epoch, a leap day, the u32 end of classic pcap, and years in between.
        let mut secs = vec![
            i64::MIN / 1_000_000_000 + 1,
            -1_000_000_000,
            0,
            951_782_400,
            4_294_967_295,
            i64::MAX / 1_000_000_000 - 1,
        ];
        secs.extend((-1_000..1_000).map(|i: i64| i * 9_123_457 + 12_345));
        for s in secs {
            for nanos in [0, 999, 1_000, 123_456_789, 999_999_999] {
                let ts = Timestamp::from_parts(s, nanos);
                assert_eq!(ts.secs(), s, "in range");
                assert_eq!(ts.to_string(), reference(ts));
                assert_eq!(
                    serde_json::to_string(&ts).ok(),
                    Some(format!("\"{}\"", reference(ts)))
                );
            }
        }
    }

    #[test]
    fn pre_1970_is_still_formatted() {
        let ts = Timestamp::from_parts(-1, 0);
        assert_eq!(ts.to_string(), "1969-12-31T23:59:59.000000Z");
    }

    #[test]
    fn a_bare_day_is_its_midnight_utc_and_a_full_time_reads_as_rfc3339() {
        assert_eq!(
            Timestamp::parse_day_or_rfc3339("2026-11-27"),
            Some(Timestamp::from_parts(1_795_737_600, 0))
        );
        assert_eq!(
            Timestamp::parse_day_or_rfc3339("2026-11-27T10:00:00Z"),
            Some(Timestamp::from_parts(1_795_773_600, 0))
        );
        assert_eq!(Timestamp::parse_day_or_rfc3339("2026-13-01"), None);
        assert_eq!(Timestamp::parse_day_or_rfc3339("tomorrow"), None);
    }
}
