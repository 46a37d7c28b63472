//! Name normalisation shared by every extractor: lower case, one trailing dot removed,
//! bytes outside printable ASCII escaped as `\xNN` (as Zeek does) so a log line can never
//! be broken by a hostile name.

/// Longest name we keep (RFC 1035 limits a DNS name to 255 octets on the wire).
pub const MAX_NAME_LEN: usize = 255;

/// Normalises a name from the wire. `None` for an empty name.
pub fn normalize(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() {
        return None;
    }
    let raw = &raw[..raw.len().min(MAX_NAME_LEN)];
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        push_escaped(&mut out, b);
    }
    Some(out)
}

/// Appends one byte of a name, lower-cased, escaping what is not printable ASCII.
pub fn push_escaped(out: &mut String, b: u8) {
    match b {
        b'A'..=b'Z' => out.push(char::from(b.to_ascii_lowercase())),
        0x21..=0x7e if b != b'\\' => out.push(char::from(b)),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push('\\');
            out.push('x');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Strips a `:port` (and the brackets of `[v6]:port`) from an HTTP authority.
pub fn strip_port(authority: &[u8]) -> &[u8] {
    if let Some(rest) = authority.strip_prefix(b"[") {
        return match rest.iter().position(|&c| c == b']') {
            Some(end) => &rest[..end],
            None => rest,
        };
    }
    // More than one colon without brackets is a bare IPv6 address: leave it.
    let colons = authority.iter().filter(|&&c| c == b':').count();
    match (colons, authority.iter().rposition(|&c| c == b':')) {
        (1, Some(i)) => &authority[..i],
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_cases_and_strips_one_dot() {
        assert_eq!(
            normalize(b"DNL-01.Geo.Kaspersky.COM.").as_deref(),
            Some("dnl-01.geo.kaspersky.com")
        );
        assert_eq!(normalize(b"."), None);
        assert_eq!(normalize(b"a b\\").as_deref(), Some("a\\x20b\\x5c"));
    }

    #[test]
    fn ports_and_brackets() {
        assert_eq!(strip_port(b"example.org:8080"), b"example.org");
        assert_eq!(strip_port(b"[2001:db8::1]:80"), b"2001:db8::1");
        assert_eq!(strip_port(b"2001:db8::1"), b"2001:db8::1");
        assert_eq!(strip_port(b"example.org"), b"example.org");
    }
}
