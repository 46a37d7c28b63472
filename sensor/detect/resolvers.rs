//! Encrypted-DNS services (DoH, DoT) as data (`rules/resolvers/encrypted-dns.toml`): which
//! names and addresses hide a host's lookups from the sensor, and which addresses are
//! public resolvers a product might query directly.

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

pub const EMBEDDED: &str = include_str!("../../rules/resolvers/encrypted-dns.toml");

/// DNS over TLS (RFC 7858) and DNS over QUIC (RFC 9250) share this port.
pub const DOT_PORT: u16 = 853;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    resolver: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    names: Vec<String>,
    addresses: Vec<String>,
    #[allow(dead_code)]
    source: String,
}

#[derive(Debug, Default, Clone)]
pub struct EncryptedDns {
    names: HashSet<String>,
    addresses: HashMap<IpAddr, String>,
}

impl EncryptedDns {
    pub fn parse(text: &str) -> Result<EncryptedDns, String> {
        let file: File =
            toml::from_str(text).map_err(|e| format!("encrypted-dns resolver list: {e}"))?;
        let mut out = EncryptedDns::default();
        for r in file.resolver {
            out.names
                .extend(r.names.iter().map(|n| n.to_ascii_lowercase()));
            for a in &r.addresses {
                let ip: IpAddr = a.parse().map_err(|_| {
                    format!(
                        "encrypted-dns resolver list: {a:?} ({}) is not an address",
                        r.name
                    )
                })?;
                out.addresses.insert(ip, r.name.clone());
            }
        }
        Ok(out)
    }

    pub fn embedded() -> Result<EncryptedDns, String> {
        EncryptedDns::parse(EMBEDDED)
    }

    /// The service behind a public resolver address.
    pub fn service_at(&self, ip: IpAddr) -> Option<&str> {
        self.addresses.get(&ip).map(String::as_str)
    }

    pub fn is_doh_name(&self, name: &str) -> bool {
        self.names.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_list_parses_and_has_the_documented_fallbacks() {
        let e = EncryptedDns::embedded().expect("shipped list parses");
        for fallback in [
            "8.8.8.8",
            "1.1.1.1",
            "223.6.6.6",
            "9.9.9.9",
            "185.228.168.168",
        ] {
            assert!(
                e.service_at(fallback.parse().unwrap()).is_some(),
                "{fallback}"
            );
        }
        assert!(e.is_doh_name("dns.google"));
        assert!(!e.is_doh_name("www.google.com"));
    }
}
