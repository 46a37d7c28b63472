//! Encrypted Client Hello configurations (RFC 9849 §4, the `ech` SvcParam of RFC 9460
//! HTTPS/SVCB records): the public names a client will put in the outer ClientHello.
//!
//! A ClientHello with the ECH extension is either GREASE (Chromium, Firefox and Edge send it
//! on every TLS 1.3 and QUIC handshake when the server published no ECH configuration: random
//! bytes, the outer SNI is the real destination) or real ECH (the inner ClientHello, with the
//! real name, is encrypted; the outer SNI is the provider's *public name* from the
//! configuration). Seeing a configuration's public name in a DNS answer, or a provider's
//! well-known public name, is what tells the two apart on the wire.

/// ECHConfig version this parser reads (RFC 9849's `0xfe0d`); other versions are skipped by
/// their length.
const ECH_VERSION: u16 = 0xfe0d;
/// Public names read from one configuration list; more are ignored.
pub const MAX_PUBLIC_NAMES: usize = 4;

/// Public names of ECH providers known without a DNS answer: a client that fetched the
/// configuration over DNS-over-HTTPS left no HTTPS answer on the wire. Cloudflare serves
/// every ECH-enabled zone under this one public name (blog.cloudflare.com/encrypted-client-hello,
/// 2023-09-29).
pub const KNOWN_PUBLIC_NAMES: &[&str] = &["cloudflare-ech.com"];

/// The public names in an `ECHConfigList` (the value of the `ech` SvcParam), normalised like
/// every name. Configurations of other versions and anything malformed are skipped.
pub fn public_names(list: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let Some((len, mut rest)) = u16_prefixed(list) else {
        return names;
    };
    if len != rest.len() {
        rest = &rest[..len.min(rest.len())];
    }
    while rest.len() >= 4 && names.len() < MAX_PUBLIC_NAMES {
        let version = u16::from_be_bytes([rest[0], rest[1]]);
        let Some((config, after)) =
            u16_prefixed(&rest[2..]).and_then(|(n, r)| r.split_at_checked(n))
        else {
            break;
        };
        if version == ECH_VERSION {
            if let Some(name) = config_public_name(config).and_then(super::names::normalize) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        rest = after;
    }
    names
}

/// `ECHConfigContents`: key config (id, KEM, public key, cipher suites), maximum name
/// length, public name.
fn config_public_name(c: &[u8]) -> Option<&[u8]> {
    // config_id (1) and kem_id (2).
    let c = c.get(3..)?;
    let (key_len, c) = u16_prefixed(c)?;
    let c = c.get(key_len..)?;
    let (suites_len, c) = u16_prefixed(c)?;
    let c = c.get(suites_len..)?;
    // maximum_name_length (1), then public_name<1..255>.
    let (&name_len, c) = c.get(1..)?.split_first()?;
    let name = c.get(..usize::from(name_len))?;
    (!name.is_empty()).then_some(name)
}

fn u16_prefixed(b: &[u8]) -> Option<(usize, &[u8])> {
    let n = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
    Some((n, &b[2..]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An `ECHConfigList` laid out field by field as RFC 9849 §4 defines it: one `0xfe0d`
    /// configuration (X25519 KEM, a 32-byte key, HKDF-SHA256/AES-128-GCM) for `public_name`,
    /// preceded by a configuration of an unknown version that must be skipped.
    pub(crate) fn config_list(public_name: &str) -> Vec<u8> {
        let mut contents = vec![0x2a, 0x00, 0x20]; // config_id 42, kem_id 0x0020 (X25519)
        contents.extend_from_slice(&[0, 32]);
        contents.extend_from_slice(&[0x5a; 32]);
        contents.extend_from_slice(&[0, 4, 0, 1, 0, 1]); // HKDF-SHA256, AES-128-GCM
        contents.push(0); // maximum_name_length
        contents.push(public_name.len() as u8);
        contents.extend_from_slice(public_name.as_bytes());
        contents.extend_from_slice(&[0, 0]); // no extensions
        let mut configs = vec![0xfe, 0x0c, 0, 3, 1, 2, 3];
        configs.extend_from_slice(&ECH_VERSION.to_be_bytes());
        configs.extend_from_slice(&(contents.len() as u16).to_be_bytes());
        configs.extend_from_slice(&contents);
        let mut list = (configs.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&configs);
        list
    }

    #[test]
    fn reads_the_public_name_and_skips_other_versions() {
        assert_eq!(
            public_names(&config_list("Cloudflare-ECH.com")),
            ["cloudflare-ech.com"]
        );
    }

    #[test]
    fn broken_lists_give_no_name_and_never_panic() {
        let full = config_list("ech.example");
        for n in 0..full.len() {
            let _ = public_names(&full[..n]);
        }
        assert!(public_names(&full[..full.len() - 4]).is_empty());
        // Three bytes that are no list (what the dns parser's own test puts in an `ech` value).
        assert!(public_names(&[0xfe, 0x0d, 0]).is_empty());
    }
}
