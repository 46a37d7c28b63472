//! JA4 TLS client fingerprint from the fields of a ClientHello.
//!
//! Follows FoxIO's specification, `technical_details/JA4.md` in
//! <https://github.com/FoxIO-LLC/ja4> (JA4 itself is BSD-3-Clause; this module implements
//! only JA4, none of the JA4+ methods under the FoxIO License). Pure: fields in, string out.
//!
//! `t13d1516h2_8daaf6152771_e5627efa2ab1` reads: transport (`t` TCP, `q` QUIC), TLS version,
//! `d` when the server_name extension is present (else `i`), cipher and extension counts,
//! first and last character of the first ALPN value; then a truncated SHA-256 of the sorted
//! cipher list; then one of the sorted extension list (SNI and ALPN left out) followed by
//! the signature algorithms in wire order. GREASE values are ignored everywhere.

use sha2::{Digest, Sha256};
use smallvec::SmallVec;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;
/// The spec prints counts with two digits and caps them here.
const MAX_COUNT: usize = 99;
/// What the spec prints instead of hashing an empty list, so "nothing" is visible.
const EMPTY_HASH: &str = "000000000000";
/// Hex digits of the SHA-256 kept in the fingerprint.
const HASH_LEN: usize = 12;

/// What JA4 needs from a ClientHello. Lists are in wire order, GREASE included (the
/// function removes GREASE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloFields<'a> {
    /// The ClientHello came in QUIC CRYPTO frames rather than over TCP.
    pub quic: bool,
    /// `legacy_version` of the ClientHello body (not the record layer version).
    pub legacy_version: u16,
    /// Contents of the supported_versions extension; empty when the extension is absent.
    pub supported_versions: &'a [u16],
    pub ciphers: &'a [u16],
    /// Extension types, including server_name (0) and ALPN (16).
    pub extensions: &'a [u16],
    /// The server_name extension is present (the spec looks at the extension, not at
    /// whether it holds a usable host name).
    pub sni_present: bool,
    /// The first protocol name of the ALPN extension, raw; `None` without ALPN.
    pub alpn_first: Option<&'a [u8]>,
    /// Contents of the signature_algorithms extension (13); empty when absent.
    pub signature_algorithms: &'a [u16],
}

/// The JA4 fingerprint of a ClientHello, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
pub fn ja4(h: &HelloFields<'_>) -> String {
    let ciphers = without_grease(h.ciphers);
    let extensions = without_grease(h.extensions);
    let signature_algorithms = without_grease(h.signature_algorithms);

    let mut out = String::with_capacity(36);
    out.push(if h.quic { 'q' } else { 't' });
    out.push_str(version_code(version(h)));
    out.push(if h.sni_present { 'd' } else { 'i' });
    for count in [ciphers.len(), extensions.len()] {
        // Two decimal digits: the count is capped at 99.
        let count = count.min(MAX_COUNT) as u8;
        out.push(char::from(b'0' + count / 10));
        out.push(char::from(b'0' + count % 10));
    }
    let (first, last) = alpn_chars(h.alpn_first);
    out.push(first);
    out.push(last);

    // Each hashed part is looked up by what it is made of: the sorted lists, tagged with the
    // part and the length of the first list so that no two parts share a key.
    let mut cipher_part = Values::new();
    cipher_part.extend([PART_CIPHERS, ciphers.len() as u16]);
    cipher_part.extend_from_slice(&ciphers);
    cipher_part[2..].sort_unstable();
    out.push('_');
    MEMO.with_borrow_mut(|memo| {
        out.push_str(memo.hash(cipher_part, |text, values| {
            push_hex_list(text, &values[2..]);
        }))
    });

    // SNI and ALPN are already in the first part; leaving them out keeps this part the same
    // for one application whether it dials a name or an address, or changes ALPN.
    let mut extension_part = Values::new();
    extension_part.extend([PART_EXTENSIONS, 0]);
    extension_part.extend(
        extensions
            .iter()
            .copied()
            .filter(|e| *e != EXT_SERVER_NAME && *e != EXT_ALPN),
    );
    let sorted = extension_part.len() - 2;
    extension_part[1] = sorted as u16;
    extension_part[2..].sort_unstable();
    extension_part.extend_from_slice(&signature_algorithms);
    out.push('_');
    MEMO.with_borrow_mut(|memo| {
        out.push_str(memo.hash(extension_part, |text, values| {
            let (sorted_extensions, signature_algorithms) = values[2..].split_at(sorted);
            // Zeros when the sorted list is empty, as the spec says, even if signature
            // algorithms were given: a real hello cannot carry them without extension 13.
            if !sorted_extensions.is_empty() {
                push_hex_list(text, sorted_extensions);
                // Without signature algorithms the string ends without the underscore.
                if !signature_algorithms.is_empty() {
                    text.push(b'_');
                    push_hex_list(text, signature_algorithms);
                }
            }
        }))
    });
    out
}

/// Tags of the two hashed parts in a memo key.
const PART_CIPHERS: u16 = 0;
const PART_EXTENSIONS: u16 = 1;

/// Parts a thread's memo holds before it starts over: 64 KiB or so, far more than the TLS
/// stacks of an office (a few dozen), and a hello crafted to miss it costs no more than
/// hashing without one.
const MEMO_PARTS: usize = 256;

thread_local! {
    /// Each worker's own memo: no lock, and a thread's hellos are its flows'.
    static MEMO: std::cell::RefCell<PartMemo> = std::cell::RefCell::default();
}

/// The hashed parts of recent fingerprints by what they were made of. An office's hellos come
/// from a few TLS stacks, so the same sorted lists recur hello after hello, and their text and
/// SHA-256 cost more than the rest of a fingerprint together.
#[derive(Default)]
struct PartMemo {
    parts: std::collections::HashMap<Values, [u8; HASH_LEN], foldhash::fast::RandomState>,
}

impl PartMemo {
    /// The hash of the part `key` stands for; `write_text` writes its text (from `key`) when
    /// it is not remembered.
    fn hash(&mut self, key: Values, write_text: impl FnOnce(&mut HexText, &[u16])) -> &str {
        if self.parts.len() >= MEMO_PARTS && !self.parts.contains_key(&key) {
            self.parts.clear();
        }
        let digits = self.parts.entry(key).or_insert_with_key(|key| {
            let mut text = HexText::new();
            write_text(&mut text, key);
            hash12(&text)
        });
        // Hex digits are ASCII: this cannot fail.
        std::str::from_utf8(digits).unwrap_or(EMPTY_HASH)
    }
}

/// Values of one list of a hello: on the stack for any real one (browsers send fewer than 64).
type Values = SmallVec<[u16; 64]>;

/// A GREASE value (RFC 8701): both bytes equal and of the form `0x?A`.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn without_grease(values: &[u16]) -> Values {
    values.iter().copied().filter(|&v| !is_grease(v)).collect()
}

/// The highest non-GREASE supported_versions entry; the legacy version when there is none.
fn version(h: &HelloFields<'_>) -> u16 {
    h.supported_versions
        .iter()
        .copied()
        .filter(|&v| !is_grease(v))
        .max()
        .unwrap_or(h.legacy_version)
}

fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        _ => "00",
    }
}

/// First and last character of the first ALPN value.
///
/// Printable as is when both end bytes are ASCII letters or digits; otherwise the first and
/// last digit of the value's hex form, so a binary ALPN still gives two stable characters.
fn alpn_chars(alpn: Option<&[u8]>) -> (char, char) {
    let Some((&first, rest)) = alpn.and_then(<[u8]>::split_first) else {
        return ('0', '0');
    };
    // A one-byte value is its own first and last character.
    let last = rest.last().copied().unwrap_or(first);
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        (char::from(first), char::from(last))
    } else {
        (hex_digit(first >> 4), hex_digit(last & 0x0f))
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The text a JA4 hash is taken of (`0a0a,1301,…`), on the stack for any real hello.
type HexText = SmallVec<[u8; 512]>;

/// Appends `values` to `text`: four lower-case hex digits per value, comma separated. Written
/// digit by digit, not through `format!`: a ClientHello carries dozens of values and this runs
/// for every one.
fn push_hex_list(text: &mut HexText, values: &[u16]) {
    for (i, &v) in values.iter().enumerate() {
        let digits = [12, 8, 4, 0].map(|shift| HEX[usize::from((v >> shift) & 0xf)]);
        let item = [b',', digits[0], digits[1], digits[2], digits[3]];
        text.extend_from_slice(&item[usize::from(i == 0)..]);
    }
}

/// The first 12 hex digits of the SHA-256 of `text`, or twelve zeros for an empty text.
fn hash12(text: &[u8]) -> [u8; HASH_LEN] {
    if text.is_empty() {
        let mut zeros = [0; HASH_LEN];
        zeros.copy_from_slice(EMPTY_HASH.as_bytes());
        return zeros;
    }
    let digest = Sha256::digest(text);
    let mut digits = [0; HASH_LEN];
    for (pair, &b) in digits.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_list(values: &[u16]) -> String {
        let mut text = HexText::new();
        push_hex_list(&mut text, values);
        String::from_utf8(text.to_vec()).unwrap()
    }

    fn hash12(text: &str) -> String {
        String::from_utf8(super::hash12(text.as_bytes()).to_vec()).unwrap()
    }

    /// A hello with everything empty, to be filled by each test.
    fn hello() -> HelloFields<'static> {
        HelloFields {
            quic: false,
            legacy_version: 0x0303,
            supported_versions: &[],
            ciphers: &[],
            extensions: &[],
            sni_present: false,
            alpn_first: None,
            signature_algorithms: &[],
        }
    }

    // The lists of the worked example in JA4.md ("Cipher hash", "Extension hash", "Example").
    const SPEC_CIPHERS: [u16; 15] = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
        0x009c, 0x009d, 0x002f, 0x0035,
    ];
    const SPEC_EXTENSIONS: [u16; 16] = [
        0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
        0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
    ];
    const SPEC_SIGNATURE_ALGORITHMS: [u16; 8] = [
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];

    fn spec_hello() -> HelloFields<'static> {
        HelloFields {
            supported_versions: &[0x0304, 0x0303],
            ciphers: &SPEC_CIPHERS,
            extensions: &SPEC_EXTENSIONS,
            sni_present: true,
            alpn_first: Some(b"h2"),
            signature_algorithms: &SPEC_SIGNATURE_ALGORITHMS,
            ..hello()
        }
    }

    #[test]
    fn spec_worked_example() {
        assert_eq!(ja4(&spec_hello()), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn memo_keeps_parts_apart() {
        // The same values as ciphers, as extensions with signature algorithms, and split
        // differently between the two: four different texts, so four different hashes, in
        // whatever order the memo meets them.
        let (a, b) = ([0x1301u16, 0x1302], [0x1302u16]);
        let as_ciphers = HelloFields {
            ciphers: &a,
            ..hello()
        };
        let one_and_one = HelloFields {
            extensions: &[0x1301],
            signature_algorithms: &b,
            ..hello()
        };
        let two_and_none = HelloFields {
            extensions: &a,
            ..hello()
        };
        let two_and_one = HelloFields {
            extensions: &a,
            signature_algorithms: &b,
            ..hello()
        };
        let expected = [
            format!("t12i020000_{}_{EMPTY_HASH}", hash12("1301,1302")),
            format!("t12i000100_{EMPTY_HASH}_{}", hash12("1301_1302")),
            format!("t12i000200_{EMPTY_HASH}_{}", hash12("1301,1302")),
            format!("t12i000200_{EMPTY_HASH}_{}", hash12("1301,1302_1302")),
        ];
        let hellos = [as_ciphers, one_and_one, two_and_none, two_and_one];
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
            for i in order {
                assert_eq!(ja4(&hellos[i]), expected[i], "hello {i}");
            }
        }
    }

    #[test]
    fn memo_starts_over_when_full_and_stays_right() {
        let expected = "t13d1516h2_8daaf6152771_e5627efa2ab1";
        assert_eq!(ja4(&spec_hello()), expected);
        // Far more distinct cipher lists than the memo holds, as a client varying its hello
        // on purpose would send.
        for n in 0..(3 * MEMO_PARTS as u16) {
            let ciphers = [0x0100 + n, 0x1301];
            let h = HelloFields {
                ciphers: &ciphers,
                ..hello()
            };
            let mut sorted = ciphers;
            sorted.sort_unstable();
            let fresh = hash12(&hex_list(&sorted));
            assert_eq!(ja4(&h), format!("t12i020000_{fresh}_{EMPTY_HASH}"));
            MEMO.with_borrow(|memo| assert!(memo.parts.len() <= MEMO_PARTS));
        }
        assert_eq!(ja4(&spec_hello()), expected);
    }

    #[test]
    fn spec_intermediate_strings_and_hashes() {
        let mut sorted = SPEC_CIPHERS;
        sorted.sort_unstable();
        let ciphers = hex_list(&sorted);
        assert_eq!(
            ciphers,
            "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
        );
        assert_eq!(hash12(&ciphers), "8daaf6152771");
        let extensions = "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01";
        assert_eq!(
            hash12(&format!(
                "{extensions}_{}",
                hex_list(&SPEC_SIGNATURE_ALGORITHMS)
            )),
            "e5627efa2ab1"
        );
        // "If there are no signature algorithms … the string ends without an underscore."
        assert_eq!(hash12(extensions), "6d807ffa2a79");
        let no_sigalgs = HelloFields {
            signature_algorithms: &[],
            ..spec_hello()
        };
        assert_eq!(ja4(&no_sigalgs), "t13d1516h2_8daaf6152771_6d807ffa2a79");
    }

    #[test]
    fn extension_order_does_not_matter() {
        // chrome-cloudflare-quic-with-secrets.pcapng, TCP stream 0: the spec's client with
        // its extensions shuffled (python/test/testdata, JA4_ro.1), same fingerprint.
        let extensions = [
            0x0000, 0x0017, 0xff01, 0x000a, 0x000b, 0x0023, 0x0010, 0x0005, 0x000d, 0x0012, 0x0033,
            0x002d, 0x002b, 0x001b, 0x4469, 0x0015,
        ];
        let h = HelloFields {
            extensions: &extensions,
            ..spec_hello()
        };
        assert_eq!(ja4(&h), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn reference_pcap_sigalg_grease() {
        // FoxIO pcap/sigalg-grease.pcapng; lists from python/test/testdata JA4_ro.1 (GREASE
        // already removed there, put back here), JA4 from that file and the Rust snapshot.
        let ciphers = [
            0x3a3a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let extensions = [
            0x8a8a, 0xfe0d, 0x0010, 0x0017, 0x0033, 0x44cd, 0xff01, 0x000a, 0x000d, 0x0023, 0x002b,
            0x000b, 0xca34, 0x002d, 0x0000, 0x0005, 0x001b, 0x0012, 0x4a4a,
        ];
        let signature_algorithms = [
            0x1a1a, 0x0904, 0x0905, 0x0906, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806,
            0x0601,
        ];
        let h = HelloFields {
            supported_versions: &[0x2a2a, 0x0304, 0x0303],
            ciphers: &ciphers,
            extensions: &extensions,
            sni_present: true,
            alpn_first: Some(b"h2"),
            signature_algorithms: &signature_algorithms,
            ..hello()
        };
        assert_eq!(ja4(&h), "t13d1517h2_8daaf6152771_cb7bf5808d99");
    }

    #[test]
    fn reference_pcap_tls3_pre_shared_key() {
        // FoxIO pcap/tls3.pcapng stream 9 (a resumption: pre_shared_key 0x0029, no padding);
        // lists and JA4 from python/test/testdata/tls3.pcapng.json.
        let extensions = [
            0x0033, 0x000a, 0x0005, 0x000d, 0x0012, 0x0000, 0x0010, 0x002b, 0x0023, 0x001b, 0x0017,
            0x002d, 0xff01, 0x4469, 0x000b, 0x0029,
        ];
        let h = HelloFields {
            extensions: &extensions,
            ..spec_hello()
        };
        assert_eq!(ja4(&h), "t13d1516h2_8daaf6152771_9b887d9acb53");
    }

    #[test]
    fn reference_pcap_quic() {
        // FoxIO pcap chrome-cloudflare-quic-with-secrets.pcapng, UDP stream: JA4 from the
        // Rust snapshot (ja4__insta@chrome-cloudflare-quic-with-secrets.pcapng.snap). FoxIO
        // publishes no raw form for it; the lists are a sorted raw form published elsewhere
        // for the same capture, which these hashes confirm.
        let extensions = [
            0x0000, 0x000a, 0x000d, 0x0010, 0x001b, 0x002b, 0x002d, 0x0033, 0x0039, 0x4469,
        ];
        let signature_algorithms = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201,
        ];
        let h = HelloFields {
            quic: true,
            supported_versions: &[0x0304],
            ciphers: &[0x1301, 0x1302, 0x1303],
            extensions: &extensions,
            sni_present: true,
            alpn_first: Some(b"h3"),
            signature_algorithms: &signature_algorithms,
            ..hello()
        };
        assert_eq!(ja4(&h), "q13d0310h3_55b375c5d22e_cd85d2d88918");
    }

    #[test]
    fn alpn_absent_or_empty_is_00() {
        let none = HelloFields {
            alpn_first: None,
            ..spec_hello()
        };
        assert_eq!(&ja4(&none)[..10], "t13d151600");
        let empty = HelloFields {
            alpn_first: Some(b""),
            ..spec_hello()
        };
        assert_eq!(&ja4(&empty)[..10], "t13d151600");
    }

    #[test]
    fn alpn_first_and_last_characters() {
        assert_eq!(alpn_chars(Some(b"h2")), ('h', '2'));
        assert_eq!(alpn_chars(Some(b"http/1.1")), ('h', '1'));
        assert_eq!(alpn_chars(Some(b"h3-29")), ('h', '9'));
        // "If the first ALPN value is only a single character, then that character is
        // treated as both the first and last character."
        assert_eq!(alpn_chars(Some(b"x")), ('x', 'x'));
    }

    #[test]
    fn alpn_non_alphanumeric_uses_hex() {
        // The five examples of JA4.md, "ALPN Extension Value".
        assert_eq!(alpn_chars(Some(&[0xab])), ('a', 'b'));
        assert_eq!(alpn_chars(Some(&[0xab, 0xcd])), ('a', 'd'));
        assert_eq!(alpn_chars(Some(&[0x30, 0xab])), ('3', 'b'));
        assert_eq!(alpn_chars(Some(&[0x30, 0x31, 0xab, 0xcd])), ('3', 'd'));
        assert_eq!(alpn_chars(Some(&[0x30, 0xab, 0xcd, 0x31])), ('0', '1'));
        // Printable but not alphanumeric counts as non-alphanumeric too.
        assert_eq!(alpn_chars(Some(b"h2-")), ('6', 'd'));
        let h = HelloFields {
            alpn_first: Some(&[0xc3, 0xa9]),
            ..spec_hello()
        };
        assert_eq!(&ja4(&h)[..10], "t13d1516c9");
    }

    #[test]
    fn grease_is_ignored_in_every_list() {
        let mut ciphers = vec![0x0a0a];
        ciphers.extend_from_slice(&SPEC_CIPHERS);
        ciphers.push(0xfafa);
        let mut extensions = vec![0xdada];
        extensions.extend_from_slice(&SPEC_EXTENSIONS);
        extensions.push(0x1a1a);
        let mut signature_algorithms = vec![0x6a6a];
        signature_algorithms.extend_from_slice(&SPEC_SIGNATURE_ALGORITHMS);
        let h = HelloFields {
            // A GREASE version above 0x0304 must not win the maximum.
            supported_versions: &[0xeaea, 0x0304, 0x0303],
            ciphers: &ciphers,
            extensions: &extensions,
            signature_algorithms: &signature_algorithms,
            ..spec_hello()
        };
        assert_eq!(ja4(&h), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn grease_values() {
        let all: Vec<u16> = (0..=0xffff).filter(|&v| is_grease(v)).collect();
        let expected: Vec<u16> = (0..16).map(|i| 0x0a0a + 0x1010 * i).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn version_from_supported_versions_else_legacy() {
        let code = |legacy, supported: &'static [u16]| {
            let h = HelloFields {
                legacy_version: legacy,
                supported_versions: supported,
                ..hello()
            };
            ja4(&h)[1..3].to_owned()
        };
        assert_eq!(code(0x0303, &[0x0303, 0x0304]), "13");
        assert_eq!(code(0x0303, &[]), "12");
        // Only GREASE in the extension: nothing usable there.
        assert_eq!(code(0x0301, &[0x7a7a]), "10");
        assert_eq!(code(0x0302, &[]), "11");
        assert_eq!(code(0x0300, &[]), "s3");
        assert_eq!(code(0x0002, &[]), "s2");
        assert_eq!(code(0x0305, &[]), "00");
    }

    #[test]
    fn counts_are_capped_at_99() {
        let ciphers: Vec<u16> = (1..=150).collect();
        let extensions: Vec<u16> = (0x0100..0x0100 + 120).collect();
        let h = HelloFields {
            ciphers: &ciphers,
            extensions: &extensions,
            ..hello()
        };
        let fp = ja4(&h);
        assert_eq!(&fp[..10], "t12i999900");
        // The hashes still cover every value.
        assert_eq!(&fp[11..23], hash12(&hex_list(&ciphers)));
        assert_eq!(&fp[24..], hash12(&hex_list(&extensions)));
    }

    #[test]
    fn no_ciphers_and_no_extensions_hash_to_zeros() {
        assert_eq!(ja4(&hello()), "t12i000000_000000000000_000000000000");
        // SNI and ALPN alone: counted, but the sorted list is empty.
        let h = HelloFields {
            ciphers: &[0x1301],
            extensions: &[0x0000, 0x0010],
            sni_present: true,
            alpn_first: Some(b"h2"),
            ..hello()
        };
        assert_eq!(
            ja4(&h),
            format!("t12d0102h2_{}_000000000000", hash12("1301"))
        );
    }

    #[test]
    fn quic_prefix() {
        let h = HelloFields {
            quic: true,
            ..spec_hello()
        };
        assert_eq!(ja4(&h), "q13d1516h2_8daaf6152771_e5627efa2ab1");
    }
}
