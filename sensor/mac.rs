//! MAC addresses: one type from the link layer that reads them off the wire to the alerts,
//! reports and inventories that write them, so every stage says them the same way
//! (`0a:85:ab:f4:09:8c`, lower-case hex, colon-separated) and none formats them for another.
//!
//! Like `time`, a vocabulary type below every stage: `decode` produces it, `hosts` stores it,
//! `output` writes it; none of them imports another for it.

use std::fmt;

/// An EUI-48 hardware address, as Ethernet, Linux cooked captures and DHCP carry it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

/// A hardware-address field of exactly six octets (any other length is not a MAC).
impl TryFrom<&[u8]> for MacAddr {
    type Error = std::array::TryFromSliceError;
    fn try_from(b: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 6]>::try_from(b).map(MacAddr)
    }
}

impl MacAddr {
    pub fn octets(self) -> [u8; 6] {
        self.0
    }
}

/// `aa:bb:cc:dd:ee:ff`: what alerts, reports, the inventories and the summary show.
impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A text that is not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a MAC address such as 00:11:22:33:44:55")]
pub struct NotMac {
    pub text: String,
}

impl NotMac {
    /// Short, fixed: a metric label.
    pub fn reason(&self) -> &'static str {
        "not_mac"
    }
}

/// Reads what `Display` writes; upper case and one-digit octets are accepted too (an
/// inventory row edited by hand).
impl std::str::FromStr for MacAddr {
    type Err = NotMac;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NotMac { text: s.into() };
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            // from_str_radix takes a sign; a MAC octet has none.
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *b = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            None => Ok(MacAddr(out)),
            Some(_) => Err(bad()),
        }
    }
}

/// As the same string `Display` writes.
impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
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
    fn displays_lower_case_colon_separated() {
        let m = MacAddr([0x0a, 0x85, 0xab, 0xf4, 0x09, 0x8c]);
        assert_eq!(m.to_string(), "0a:85:ab:f4:09:8c");
        assert_eq!(
            serde_json::to_string(&Some(m)).ok().as_deref(),
            Some("\"0a:85:ab:f4:09:8c\"")
        );
        assert_eq!(
            serde_json::to_string(&None::<MacAddr>).ok().as_deref(),
            Some("null")
        );
    }

    #[test]
    fn parses_what_it_displays_and_hand_edited_forms() {
        let m = MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!("00:11:22:33:44:55".parse(), Ok(m));
        assert_eq!("0:11:22:33:44:55".parse(), Ok(m));
        assert_eq!(
            "0A:85:AB:F4:09:8C"
                .parse::<MacAddr>()
                .map(|m| m.to_string()),
            Ok("0a:85:ab:f4:09:8c".to_string())
        );
        assert_eq!(
            serde_json::from_str::<MacAddr>("\"00:11:22:33:44:55\"").ok(),
            Some(m)
        );
    }

    #[test]
    fn refuses_what_is_not_six_octets() {
        for bad in [
            "",
            "00:11:22:33:44",
            "00:11:22:33:44:55:66",
            "00:11:22:33:44:5g",
            "00:11:22:33:44:+5",
            "000:11:22:33:44:55",
            "00-11-22-33-44-55",
            "00:11::33:44:55",
        ] {
            let e = bad.parse::<MacAddr>().expect_err(bad);
            assert_eq!(e.reason(), "not_mac");
        }
        assert!(serde_json::from_str::<MacAddr>("\"evil\"").is_err());
    }

    #[test]
    fn a_field_of_exactly_six_octets_is_a_mac() {
        let six: &[u8] = &[1, 2, 3, 4, 5, 6];
        assert_eq!(
            MacAddr::try_from(six).ok(),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
        let seven: &[u8] = &[1, 2, 3, 4, 5, 6, 7];
        assert!(MacAddr::try_from(seven).is_err());
        let three: &[u8] = &[1, 2, 3];
        assert!(MacAddr::try_from(three).is_err());
    }
}
