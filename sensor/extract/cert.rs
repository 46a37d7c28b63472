//! Server certificates seen in clear (TLS 1.2 and earlier): what a rule or an analyst wants
//! from the leaf — subject, issuer, common name, subject alternative names, SHA-256.
//! Parsing is `x509-parser`'s; this module only picks the fields.

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Names kept per certificate (a CDN certificate can carry hundreds of SANs).
pub const MAX_SANS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    pub sans: Vec<String>,
    pub sha256: String,
}

/// Summarises a DER certificate; `None` when it does not parse.
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            if sans.len() >= MAX_SANS {
                break;
            }
            match name {
                GeneralName::DNSName(n) => sans.push(n.to_string()),
                GeneralName::IPAddress(ip) if ip.len() == 4 => {
                    sans.push(format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]))
                }
                _ => {}
            }
        }
    }
    let digest = Sha256::digest(der);
    let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_name,
        sans,
        sha256,
    })
}
