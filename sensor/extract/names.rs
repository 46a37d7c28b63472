//! Name normalisation shared by every extractor: lower case, one trailing dot removed,
//! bytes outside printable ASCII escaped as `\xNN` (as Zeek does) so a log line can never
//! be broken by a hostile name.

/// Longest name we keep (RFC 1035 limits a DNS name to 255 octets on the wire).
pub const MAX_NAME_LEN: usize = 255;

/// Bytes of a name kept on the stack while it is built: a name of `MAX_NAME_LEN` octets
/// fits unless it needs escapes (four bytes each); what does not fit goes to the heap.
const NAME_BUF_INLINE: usize = 256;

/// What each byte becomes in a name: itself lower-cased when it is printable ASCII other
/// than the backslash, 0 when it must be escaped.
const PLAIN: [u8; 256] = plain_table(false);
/// `PLAIN` for a DNS label, where a dot is escaped too.
const PLAIN_IN_LABEL: [u8; 256] = plain_table(true);

const fn plain_table(escape_dot: bool) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0x21;
    while b <= 0x7e {
        if b != b'\\' as usize && !(escape_dot && b == b'.' as usize) {
            t[b] = (b as u8).to_ascii_lowercase();
        }
        b += 1;
    }
    t
}

/// A name being built on the stack: printable ASCII only, by construction. Turned into a
/// string of exactly its length once (`finish`): at most one allocation per name, none to
/// grow it.
pub struct NameBuf {
    head: [u8; NAME_BUF_INLINE],
    len: usize,
    /// What follows `head` once it is full (a name with many escapes).
    tail: Vec<u8>,
}

impl Default for NameBuf {
    fn default() -> Self {
        NameBuf {
            head: [0; NAME_BUF_INLINE],
            len: 0,
            tail: Vec::new(),
        }
    }
}

impl NameBuf {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, b: u8) {
        match self.head.get_mut(self.len) {
            Some(slot) => {
                *slot = b;
                self.len += 1;
            }
            None => self.tail.push(b),
        }
    }

    /// Appends `raw`, lower-cased, escaping what is not printable ASCII as `\xNN` (and the
    /// dot too when `escape_dot`: a dot inside a DNS label). Returns whether a dot was
    /// escaped.
    pub fn escape(&mut self, raw: &[u8], escape_dot: bool) -> bool {
        // Nearly every name is plain: lower-cased in one pass straight into the inline
        // buffer, up to the first byte that needs an escape (if any), from which the rest
        // goes byte by byte.
        let table = if escape_dot { &PLAIN_IN_LABEL } else { &PLAIN };
        let mut plain = 0;
        if self.tail.is_empty() {
            if let Some(out) = self.head.get_mut(self.len..self.len + raw.len()) {
                for (o, &b) in out.iter_mut().zip(raw) {
                    let lower = table[usize::from(b)];
                    if lower == 0 {
                        break;
                    }
                    *o = lower;
                    plain += 1;
                }
                self.len += plain;
            }
        }
        match raw.get(plain..) {
            Some(rest) if !rest.is_empty() => self.escape_each(rest, table),
            _ => false,
        }
    }

    fn escape_each(&mut self, raw: &[u8], table: &[u8; 256]) -> bool {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut dot = false;
        for &b in raw {
            let lower = table[usize::from(b)];
            if lower != 0 {
                self.push(lower);
            } else {
                dot |= b == b'.';
                self.push(b'\\');
                self.push(b'x');
                self.push(HEX[usize::from(b >> 4)]);
                self.push(HEX[usize::from(b & 0xf)]);
            }
        }
        dot
    }

    /// The finished name, as a `String` or a `CompactString` (the DNS parser's: names up to
    /// 24 bytes, most of them, are kept inline without an allocation). Only printable ASCII
    /// was written, so the conversion never fails; the lossy fallback only spares an `unwrap`.
    pub fn finish<T: for<'a> From<&'a str>>(&self) -> T {
        let head = &self.head[..self.len];
        let whole;
        let bytes = if self.tail.is_empty() {
            head
        } else {
            whole = [head, &self.tail[..]].concat();
            &whole[..]
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => T::from(text),
            Err(_) => T::from(&String::from_utf8_lossy(bytes)),
        }
    }
}

/// Normalises a name from the wire. `None` for an empty name.
pub fn normalize(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() {
        return None;
    }
    let raw = &raw[..raw.len().min(MAX_NAME_LEN)];
    let mut out = NameBuf::default();
    out.escape(raw, false);
    Some(out.finish::<String>())
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

    /// The run-at-a-time escaping gives, byte for byte, what escaping one byte at a time
    /// (`push_escaped`, the reference) gives, for every byte value and with dots escaped or not.
    #[test]
    fn escaping_runs_equals_escaping_each_byte() {
        let mut all: Vec<u8> = (0..=255u8).collect();
        all.extend_from_slice(b"Www.EXAMPLE.org\\x.");
        for window in [1, 3, 7, 64, all.len()] {
            for chunk in all.chunks(window) {
                for escape_dot in [false, true] {
                    let mut reference = String::new();
                    for &b in chunk {
                        if escape_dot && b == b'.' {
                            reference.push_str("\\x2e");
                        } else {
                            push_escaped(&mut reference, b);
                        }
                    }
                    let mut buf = NameBuf::default();
                    buf.escape(chunk, escape_dot);
                    assert_eq!(buf.finish::<String>(), reference);
                }
            }
        }
    }

    #[test]
    fn ports_and_brackets() {
        assert_eq!(strip_port(b"example.org:8080"), b"example.org");
        assert_eq!(strip_port(b"[2001:db8::1]:80"), b"2001:db8::1");
        assert_eq!(strip_port(b"2001:db8::1"), b"2001:db8::1");
        assert_eq!(strip_port(b"example.org"), b"example.org");
    }
}
