//! Bounds-checked reads of big-endian integers from wire bytes: every parser's field reads,
//! which return `None` past the end instead of panicking.

/// The big-endian `u16` at `at`, or `None` when fewer than two bytes are left there.
#[inline]
pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at.checked_add(1)?)?,
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_bounds_and_refuses_past_the_end() {
        let b = [0x12, 0x34, 0x56];
        assert_eq!(be16(&b, 0), Some(0x1234));
        assert_eq!(be16(&b, 1), Some(0x3456));
        assert_eq!(be16(&b, 2), None);
        assert_eq!(be16(&b, usize::MAX), None);
    }
}
