//! The output contracts as types: the alert line, the event line and the host report
//! (DESIGN.md, "Contracts the outside world relies on"). The writers build these and
//! serialize them (event lines are written by hand, `output/event_line.rs`, and tested
//! byte-equal to these); `/api/hosts`, the inventories' reports and the HTML page read the
//! same types back, so no stage pokes at untyped JSON.
//!
//! Byte-for-byte what the sensor always wrote: the object keys of every record are in
//! alphabetical order (the order the untyped `json!` maps of earlier builds printed them in),
//! so each struct declares its fields alphabetically — by their JSON names — and a test holds
//! every record's output against the sorted-map rendering. Optional members keep the
//! contract's absent-vs-null distinction: `skip_serializing_if` where the member is only
//! there when it applies, a plain `Option` where it is `null`.
//!
//! Reading is tolerant where the readers meet files the sensor did not write (a host report
//! from an older or newer build, or made by hand, for `report --html --from`): a report
//! member that is missing or of the wrong type reads as its default (`None`, empty, zero)
//! instead of failing the whole report, and the closed vocabularies (severity, indicator
//! kind, role, identity source) keep a value this build does not know as text ([`Label`]).

use crate::decode::Proto;
use crate::detect::resolvers::RoleSource;
use crate::detect::rules::{Confidence, Severity};
use crate::extract::{FlowId, IdentitySource, NameKind};
use crate::mac::MacAddr;
use crate::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A closed vocabulary whose members are written as fixed words.
pub trait Vocabulary: Copy {
    fn as_str(self) -> &'static str;
}

impl Vocabulary for Severity {
    fn as_str(self) -> &'static str {
        Severity::as_str(self)
    }
}

impl Vocabulary for NameKind {
    fn as_str(self) -> &'static str {
        NameKind::as_str(self)
    }
}

impl Vocabulary for IdentitySource {
    fn as_str(self) -> &'static str {
        IdentitySource::as_str(self)
    }
}

impl Vocabulary for Role {
    fn as_str(self) -> &'static str {
        Role::as_str(self)
    }
}

/// A member of a vocabulary, or, read from a report this build did not write, a word it does
/// not know (kept as text, so a page can still show it). Written as the word either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Label<T> {
    Known(T),
    Other(String),
}

impl<T> From<T> for Label<T> {
    fn from(v: T) -> Self {
        Label::Known(v)
    }
}

impl<T: Vocabulary> Label<T> {
    pub fn as_str(&self) -> &str {
        match self {
            Label::Known(v) => v.as_str(),
            Label::Other(s) => s,
        }
    }

    pub fn known(&self) -> Option<T> {
        match self {
            Label::Known(v) => Some(*v),
            Label::Other(_) => None,
        }
    }
}

/// A host's role in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    /// A home-net DNS resolver: its upstream lookups are its clients' (`forwarded`).
    Resolver,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Resolver => "resolver",
        }
    }
}

/// A member as its type, or its default when it is not (wrong type, unknown word): one bad
/// member of a hand-made report does not cost the rest.
fn tolerant<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(d: D) -> Result<T, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(v).unwrap_or_default())
}

/// A list, keeping the elements that read as `T`; a single value is a list of one, and
/// `null` an empty list. Element by element: a report of many hosts is never copied whole.
fn tolerant_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    use serde::de::{MapAccess, SeqAccess, Visitor};
    use serde_json::Value;
    struct List<T>(std::marker::PhantomData<T>);
    impl<T> List<T> {
        fn one<E>(v: Value) -> Result<Vec<T>, E>
        where
            T: DeserializeOwned,
        {
            Ok(T::deserialize(v).into_iter().collect())
        }
    }
    impl<'de, T: DeserializeOwned> Visitor<'de> for List<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element::<Value>()? {
                if let Ok(t) = T::deserialize(v) {
                    out.push(t);
                }
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            let v = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            Self::one(v)
        }
        fn visit_unit<E>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_none<E>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Vec<T>, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_str<E>(self, v: &str) -> Result<Vec<T>, E> {
            Self::one(Value::from(v))
        }
        fn visit_bool<E>(self, v: bool) -> Result<Vec<T>, E> {
            Self::one(Value::from(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Vec<T>, E> {
            Self::one(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Vec<T>, E> {
            Self::one(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Vec<T>, E> {
            Self::one(Value::from(v))
        }
    }
    d.deserialize_any(List(std::marker::PhantomData))
}

fn tolerant_opt_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    tolerant_list(d).map(Some)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The two ends of a flow: `src` opened it (or asked the DNS question).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    #[serde(serialize_with = "address_text")]
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    #[serde(serialize_with = "address_text")]
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub transport: Proto,
}

/// An address as serde writes it (`Display`), an IPv4 one built by hand: every alert line
/// carries two, and the formatting machinery cost more than the rest of the line.
fn address_text<S: serde::Serializer>(ip: &IpAddr, s: S) -> Result<S::Ok, S::Error> {
    match ip {
        IpAddr::V4(v4) => s.serialize_str(ipv4_text(v4.octets()).as_str()),
        IpAddr::V6(_) => ip.serialize(s),
    }
}

/// Dotted-quad text, built in place (at most 15 bytes).
pub struct Ipv4Text([u8; 15], usize);

impl Ipv4Text {
    /// The text's bytes, for a writer of bytes (no UTF-8 check).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0[..self.1]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and dots are ever written.
        std::str::from_utf8(&self.0[..self.1]).unwrap_or_default()
    }
}

/// The decimal text of every octet value, at most three digits, and its length: an address's
/// text is four lookups (every event line has two or more, and the divisions were most of it).
const OCTET_TEXT: [([u8; 3], u8); 256] = octet_texts();

const fn octet_texts() -> [([u8; 3], u8); 256] {
    let mut table = [([0u8; 3], 0u8); 256];
    let mut n = 0;
    while n < 256 {
        let v = n as u8;
        table[n] = if v >= 100 {
            ([b'0' + v / 100, b'0' + v / 10 % 10, b'0' + v % 10], 3)
        } else if v >= 10 {
            ([b'0' + v / 10, b'0' + v % 10, 0], 2)
        } else {
            ([b'0' + v, 0, 0], 1)
        };
        n += 1;
    }
    table
}

/// The dotted-quad text of `octets`, as `Display` writes it.
pub fn ipv4_text(octets: [u8; 4]) -> Ipv4Text {
    let mut out = [0u8; 15];
    let mut len = 0;
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            out[len] = b'.';
            len += 1;
        }
        let (digits, n) = OCTET_TEXT[usize::from(octet)];
        // Three bytes always fit (the last octet starts at 12 at most); only `n` count.
        out[len..len + 3].copy_from_slice(&digits);
        len += usize::from(n);
    }
    Ipv4Text(out, len)
}

impl From<&FlowId> for Flow {
    fn from(f: &FlowId) -> Flow {
        Flow {
            dst_ip: f.server.ip(),
            dst_port: f.server.port(),
            src_ip: f.client.ip(),
            src_port: f.client.port(),
            transport: f.proto,
        }
    }
}

impl From<&crate::hosts::EvidenceFlow> for Flow {
    fn from(f: &crate::hosts::EvidenceFlow) -> Flow {
        Flow {
            dst_ip: f.dst_ip,
            dst_port: f.dst_port,
            src_ip: f.src_ip,
            src_port: f.src_port,
            transport: f.transport,
        }
    }
}

/// The evidence of a finding (`detect::Indicator`), with how often it was seen in a report's
/// detection (`count`; absent in alerts and evidence samples).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indicator {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub count: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "tolerant"
    )]
    pub ech: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "tolerant"
    )]
    pub ech_real: bool,
    #[serde(default, deserialize_with = "tolerant")]
    pub kind: Option<Label<NameKind>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub path: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub query: Option<String>,
    #[serde(default, deserialize_with = "tolerant")]
    pub value: String,
    /// Read only: members this build does not know (a newer report's), for a page to show.
    #[serde(flatten, skip_serializing)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Indicator {
    pub fn of(i: &crate::detect::Indicator, count: Option<u64>) -> Indicator {
        Indicator {
            count,
            ech: i.ech,
            ech_real: i.ech_real,
            kind: Some(i.kind.into()),
            name: i.name.clone(),
            path: i.path.clone(),
            query: i.query.clone(),
            value: i.value.clone(),
            other: BTreeMap::new(),
        }
    }
}

/// Which sensor and site saw it (`--sensor-id`, `--site`), when the sensor ships to an agency
/// inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorId {
    pub id: String,
    pub site: String,
}

impl SensorId {
    /// This sensor's, when it has one (`output::SENSOR_IDENTITY`).
    pub fn current() -> Option<SensorId> {
        super::SENSOR_IDENTITY.get().map(|(id, site)| SensorId {
            id: id.clone(),
            site: site.clone(),
        })
    }
}

/// `event_type` of an alert line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Alert,
}

/// One alert line: the first finding of a host, vendor and category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub category: String,
    pub confidence: Confidence,
    pub count: u64,
    pub description: String,
    /// The DNS server asked, when it is a well-known public resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_server: Option<DnsServer>,
    pub event_type: EventType,
    /// What the ClientHello's Encrypted Client Hello means for this finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    pub first_seen: Timestamp,
    pub flow: Flow,
    pub host: AlertHost,
    pub indicator: Indicator,
    pub last_seen: Timestamp,
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<SensorId>,
    pub severity: Severity,
    pub timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<AlertTls>,
    pub vendor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertHost {
    /// What DHCP or a PTR answer named the host, when the wire did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub ip: IpAddr,
    pub mac: Option<MacAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsServer {
    pub ip: IpAddr,
    pub public: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertTls {
    pub ja4: String,
}

/// One event line: an extracted name or fingerprint, matched or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsEvent>,
    pub flow: Flow,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpEvent>,
    pub kind: NameKind,
    pub timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsEvent>,
    pub value: String,
}

/// Whether a DNS event is the question or the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsMessage {
    Query,
    Answer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsEvent {
    pub answers: Vec<DnsAnswer>,
    pub qtype: u16,
    pub rcode: u8,
    #[serde(rename = "type")]
    pub message: DnsMessage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAnswer {
    /// `null` for a record type the sensor does not read.
    pub data: Option<AnswerData>,
    pub name: String,
    pub ttl: u32,
    #[serde(rename = "type")]
    pub rtype: u16,
}

/// An answer's data: an address or a name as text, or an SVCB / HTTPS record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AnswerData {
    Text(String),
    Svcb(SvcbData),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvcbData {
    pub alpn: Vec<String>,
    pub ech: bool,
    pub ech_public_names: Vec<String>,
    pub priority: u16,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsEvent {
    pub ech: bool,
    pub ja4: Option<String>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertEvent {
    pub common_name: Option<String>,
    pub issuer: String,
    pub sans: Vec<String>,
    pub sha256: String,
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpEvent {
    pub method: String,
    pub uri: String,
    pub user_agent: Option<String>,
}

/// The host report (`--report`, `vendorwatch hosts --format json`, `/api/hosts`, the agency
/// report), and what `report --html` renders.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(default, deserialize_with = "tolerant")]
    pub first_packet: Option<Timestamp>,
    #[serde(default, deserialize_with = "tolerant")]
    pub generated_by: String,
    /// `None` where the hosts are written apart (`/api/hosts` streams them one by one).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant_opt_list"
    )]
    pub hosts: Option<Vec<ReportHost>>,
    #[serde(default, deserialize_with = "tolerant")]
    pub last_packet: Option<Timestamp>,
    /// `/api/hosts?limit=`: the address to continue after (`null`: the last page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<Option<IpAddr>>,
    /// The packs in force, with the legal basis of each vendor.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant_opt_list"
    )]
    pub packs: Option<Vec<VendorEntry>>,
    #[serde(default, deserialize_with = "tolerant_list")]
    pub resolvers: Vec<IpAddr>,
    /// Read only: what reports of older builds called `packs`.
    #[serde(default, skip_serializing, deserialize_with = "tolerant_opt_list")]
    pub rule_packs: Option<Vec<VendorEntry>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub sensor: Option<SensorId>,
    /// The agency report: the sites it covers.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub sites: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant_opt_list"
    )]
    pub vendors: Option<Vec<VendorEntry>>,
    /// Read only: a hand-made report's legal basis per vendor (text or list).
    #[serde(default, skip_serializing, deserialize_with = "tolerant")]
    pub legal_basis: Option<BTreeMap<String, Texts>>,
}

/// A list of texts that reads a single text as a list of one (and drops what is not text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Texts(#[serde(deserialize_with = "tolerant_list")] pub Vec<String>);

/// A vendor of the report: its id (`vendors`), or its pack (`packs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VendorEntry {
    Id(String),
    Pack(PackEntry),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Read only: a hand-made report's name for `vendor`.
    #[serde(default, skip_serializing, deserialize_with = "tolerant")]
    pub id: Option<String>,
    /// Text or a list of texts.
    #[serde(default, deserialize_with = "tolerant_list")]
    pub legal_basis: Vec<String>,
    #[serde(default, deserialize_with = "tolerant")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "tolerant")]
    pub vendor: Option<String>,
}

/// One host of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportHost {
    /// A replay that kept an inventory: whether the inventory held the host before.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub already_known: Option<bool>,
    #[serde(default, deserialize_with = "tolerant_list")]
    pub detections: Vec<ReportDetection>,
    #[serde(default, deserialize_with = "tolerant")]
    pub hostname: Option<String>,
    #[serde(default, deserialize_with = "tolerant_list")]
    pub identities: Vec<ReportIdentity>,
    #[serde(default, deserialize_with = "tolerant")]
    pub ip: Option<IpAddr>,
    #[serde(default, deserialize_with = "tolerant")]
    pub mac: Option<MacAddr>,
    #[serde(default, deserialize_with = "tolerant")]
    pub multiple_macs: bool,
    #[serde(default, deserialize_with = "tolerant")]
    pub names_hidden: NamesHidden,
    /// Why a resolver holds the role.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub resolver: Option<ResolverRole>,
    #[serde(default, deserialize_with = "tolerant")]
    pub role: Option<Label<Role>>,
    /// The agency report: the sensors that saw the host.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant_opt_list"
    )]
    pub sensors: Option<Vec<String>>,
    /// The agency report: the site the address belongs to.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub site: Option<String>,
}

/// Names the sensor could not see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesHidden {
    #[serde(default, deserialize_with = "tolerant")]
    pub ech_connections: u64,
    #[serde(default, deserialize_with = "tolerant")]
    pub encrypted_dns_connections: u64,
    #[serde(default, deserialize_with = "tolerant_list")]
    pub encrypted_dns_via: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolverRole {
    pub answered: u64,
    pub source: RoleSource,
}

impl From<&crate::detect::resolvers::ResolverInfo> for ResolverRole {
    fn from(info: &crate::detect::resolvers::ResolverInfo) -> Self {
        ResolverRole {
            answered: info.answered,
            source: info.source,
        }
    }
}

/// One identity the address had, as DHCP or a PTR answer said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportIdentity {
    #[serde(default, deserialize_with = "tolerant")]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "tolerant")]
    pub count: u64,
    #[serde(default, deserialize_with = "tolerant")]
    pub first_seen: Option<Timestamp>,
    #[serde(default, deserialize_with = "tolerant")]
    pub hostname: Option<String>,
    #[serde(default, deserialize_with = "tolerant")]
    pub last_seen: Option<Timestamp>,
    #[serde(default, deserialize_with = "tolerant")]
    pub mac: Option<MacAddr>,
    #[serde(default, deserialize_with = "tolerant")]
    pub source: Option<Label<IdentitySource>>,
}

/// One detection: a host, a vendor and a category.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDetection {
    #[serde(default, deserialize_with = "tolerant")]
    pub category: String,
    #[serde(default, deserialize_with = "tolerant")]
    pub count: u64,
    /// The first findings, then the latest (`hosts::EVIDENCE_FIRST`, `EVIDENCE_RECENT`).
    #[serde(default, deserialize_with = "tolerant_list")]
    pub evidence: Vec<ReportEvidence>,
    #[serde(default, deserialize_with = "tolerant")]
    pub first_seen: Option<Timestamp>,
    /// Every finding was a resolver's upstream lookup for some client.
    #[serde(default, deserialize_with = "tolerant")]
    pub forwarded: bool,
    #[serde(default, deserialize_with = "tolerant_list")]
    pub indicators: Vec<Indicator>,
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "tolerant"
    )]
    pub indicators_omitted: u64,
    #[serde(default, deserialize_with = "tolerant")]
    pub last_seen: Option<Timestamp>,
    #[serde(default, deserialize_with = "tolerant_list")]
    pub rules: Vec<String>,
    #[serde(default, deserialize_with = "tolerant")]
    pub severity: Option<Label<Severity>>,
    /// Every finding so far was covered by a suppression: its reason.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub suppressed: Option<String>,
    #[serde(default, deserialize_with = "tolerant")]
    pub vendor: String,
}

/// One kept finding: when, what, on which flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportEvidence {
    #[serde(default, deserialize_with = "tolerant")]
    pub flow: Option<Flow>,
    #[serde(default, deserialize_with = "tolerant")]
    pub indicator: Option<Indicator>,
    #[serde(default, deserialize_with = "tolerant")]
    pub time: Option<Timestamp>,
}

impl From<&crate::hosts::Evidence> for ReportEvidence {
    fn from(e: &crate::hosts::Evidence) -> Self {
        ReportEvidence {
            flow: Some((&e.flow).into()),
            indicator: Some(Indicator::of(&e.indicator, None)),
            time: Some(e.time),
        }
    }
}

impl From<&crate::hosts::Detection> for ReportDetection {
    fn from(d: &crate::hosts::Detection) -> Self {
        ReportDetection {
            category: d.category.clone(),
            count: d.count,
            evidence: d.evidence.iter().map(ReportEvidence::from).collect(),
            first_seen: Some(d.first_seen),
            forwarded: d.forwarded,
            indicators: d
                .indicators
                .iter()
                .map(|i| Indicator::of(&i.indicator, Some(i.count)))
                .collect(),
            indicators_omitted: d.indicators_omitted,
            last_seen: Some(d.last_seen),
            rules: d.rules.clone(),
            severity: Some(d.severity.into()),
            suppressed: d.suppressed.clone(),
            vendor: d.vendor.clone(),
        }
    }
}

impl From<&crate::hosts::IdentityRecord> for ReportIdentity {
    fn from(r: &crate::hosts::IdentityRecord) -> Self {
        ReportIdentity {
            client_id: r.client_id.clone(),
            count: r.count,
            first_seen: Some(r.first_seen),
            hostname: r.hostname.clone(),
            last_seen: Some(r.last_seen),
            mac: r.mac,
            source: Some(r.source.into()),
        }
    }
}

impl Report {
    /// Reads a host report leniently (see the module doc): anything that is not an object
    /// reads as an empty report.
    pub fn read(v: &serde_json::Value) -> Report {
        Report::deserialize(v).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for octets in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 0, 9, 100],
            [1, 22, 199, 7],
        ] {
            let ip = std::net::Ipv4Addr::from(octets);
            assert_eq!(ipv4_text(octets).as_str(), ip.to_string());
        }
        for a in 0..=255u8 {
            let text = ipv4_text([a, 255 - a, a / 3, a.wrapping_mul(7)]);
            let ip = std::net::Ipv4Addr::new(a, 255 - a, a / 3, a.wrapping_mul(7));
            assert_eq!(text.as_str(), ip.to_string());
        }
        let flow = Flow {
            dst_ip: "fd00::53".parse().expect("v6"),
            dst_port: 53,
            src_ip: "10.1.2.3".parse().expect("v4"),
            src_port: 5353,
            transport: Proto::Udp,
        };
        let json = serde_json::to_string(&flow).expect("serializes");
        assert_eq!(
            json,
            r#"{"dst_ip":"fd00::53","dst_port":53,"src_ip":"10.1.2.3","src_port":5353,"transport":"udp"}"#
        );
        assert_eq!(serde_json::from_str::<Flow>(&json).ok(), Some(flow));
    }
    use serde_json::json;

    /// The record's own output is the sorted-map rendering earlier builds printed, and it
    /// reads back as itself.
    fn holds_the_contract<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        record: &T,
    ) {
        let direct = serde_json::to_string(record).expect("serializes");
        let sorted = serde_json::to_value(record)
            .expect("to a value")
            .to_string();
        assert_eq!(direct, sorted, "fields out of alphabetical order");
        let back: T = serde_json::from_str(&direct).expect("reads back");
        assert_eq!(&back, record);
        assert_eq!(serde_json::to_string(&back).expect("serializes"), direct);
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).expect("timestamp")
    }

    fn flow() -> Flow {
        Flow {
            dst_ip: "203.0.113.5".parse().expect("ip"),
            dst_port: 443,
            src_ip: "10.1.2.3".parse().expect("ip"),
            src_port: 51234,
            transport: Proto::Tcp,
        }
    }

    fn indicator(count: Option<u64>) -> Indicator {
        Indicator {
            count,
            ech: true,
            ech_real: true,
            kind: Some(NameKind::TlsSni.into()),
            name: Some("n".into()),
            path: Some("/p".into()),
            query: Some("q".into()),
            value: "dnl-01.geo.kaspersky.com".into(),
            other: BTreeMap::new(),
        }
    }

    #[test]
    fn an_alert_with_every_member_is_in_contract_order() {
        let mut alert = Alert {
            category: "update".into(),
            confidence: Confidence::High,
            count: 1,
            description: "d".into(),
            dns_server: Some(DnsServer {
                ip: "8.8.8.8".parse().expect("ip"),
                public: true,
            }),
            event_type: EventType::Alert,
            explanation: Some("e".into()),
            first_seen: ts("2026-11-27T10:00:00.123456Z"),
            flow: flow(),
            host: AlertHost {
                hostname: Some("ws-1".into()),
                ip: "10.1.2.3".parse().expect("ip"),
                mac: Some(MacAddr([0, 0x11, 0x22, 0x33, 0x44, 0x55])),
            },
            indicator: indicator(None),
            last_seen: ts("2026-11-27T10:00:00.123456Z"),
            rule: "kaspersky.update.dnl".into(),
            sensor: Some(SensorId {
                id: "s1".into(),
                site: "hq".into(),
            }),
            severity: Severity::High,
            timestamp: ts("2026-11-27T10:00:00.123456Z"),
            tls: Some(AlertTls { ja4: "t13".into() }),
            vendor: "kaspersky".into(),
        };
        holds_the_contract(&alert);
        alert.host.mac = None;
        alert.host.hostname = None;
        let line = serde_json::to_string(&alert).expect("serializes");
        assert!(
            line.contains(r#""host":{"ip":"10.1.2.3","mac":null}"#),
            "{line}"
        );
    }

    #[test]
    fn events_of_every_kind_are_in_contract_order() {
        let base = Event {
            cert: None,
            dns: None,
            flow: flow(),
            http: None,
            kind: NameKind::Dns,
            timestamp: ts("2026-11-27T10:00:00Z"),
            tls: None,
            value: "x.example".into(),
        };
        holds_the_contract(&base);
        holds_the_contract(&Event {
            dns: Some(DnsEvent {
                answers: vec![
                    DnsAnswer {
                        data: Some(AnswerData::Text("192.0.2.1".into())),
                        name: "x.example".into(),
                        ttl: 60,
                        rtype: 1,
                    },
                    DnsAnswer {
                        data: Some(AnswerData::Svcb(SvcbData {
                            alpn: vec!["h2".into()],
                            ech: true,
                            ech_public_names: vec!["p.example".into()],
                            priority: 1,
                            target: ".".into(),
                        })),
                        name: "x.example".into(),
                        ttl: 60,
                        rtype: 65,
                    },
                    DnsAnswer {
                        data: None,
                        name: "x.example".into(),
                        ttl: 60,
                        rtype: 99,
                    },
                ],
                qtype: 1,
                rcode: 0,
                message: DnsMessage::Answer,
            }),
            ..base.clone()
        });
        holds_the_contract(&Event {
            tls: Some(TlsEvent {
                ech: false,
                ja4: None,
                version: "TLS 1.3".into(),
            }),
            ..base.clone()
        });
        holds_the_contract(&Event {
            cert: Some(CertEvent {
                common_name: None,
                issuer: "i".into(),
                sans: vec!["a".into()],
                sha256: "00".into(),
                subject: "s".into(),
            }),
            ..base.clone()
        });
        holds_the_contract(&Event {
            http: Some(HttpEvent {
                method: "GET".into(),
                uri: "/".into(),
                user_agent: None,
            }),
            ..base
        });
    }

    #[test]
    fn a_report_with_every_member_is_in_contract_order() {
        let host = ReportHost {
            already_known: Some(true),
            detections: vec![ReportDetection {
                category: "update".into(),
                count: 3,
                evidence: vec![ReportEvidence {
                    flow: Some(flow()),
                    indicator: Some(indicator(None)),
                    time: Some(ts("2026-11-27T10:00:00Z")),
                }],
                first_seen: Some(ts("2026-11-27T10:00:00Z")),
                forwarded: false,
                indicators: vec![indicator(Some(3))],
                indicators_omitted: 2,
                last_seen: Some(ts("2026-11-27T11:00:00Z")),
                rules: vec!["r".into()],
                severity: Some(Severity::High.into()),
                suppressed: Some("lab".into()),
                vendor: "kaspersky".into(),
            }],
            hostname: None,
            identities: vec![ReportIdentity {
                client_id: Some("01:02".into()),
                count: 1,
                first_seen: Some(ts("2026-11-27T09:00:00Z")),
                hostname: Some("ws".into()),
                last_seen: Some(ts("2026-11-27T09:00:00Z")),
                mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
                source: Some(IdentitySource::DhcpAck.into()),
            }],
            ip: Some("10.1.2.3".parse().expect("ip")),
            mac: None,
            multiple_macs: false,
            names_hidden: NamesHidden {
                ech_connections: 1,
                encrypted_dns_connections: 2,
                encrypted_dns_via: vec!["dns.google".into()],
            },
            resolver: Some(ResolverRole {
                answered: 4,
                source: RoleSource::Answered,
            }),
            role: Some(Role::Resolver.into()),
            sensors: Some(vec!["s1".into()]),
            site: Some("hq".into()),
        };
        let report = Report {
            first_packet: Some(ts("2026-11-27T09:00:00Z")),
            generated_by: "vendorwatch 0.1.0".into(),
            hosts: Some(vec![host]),
            last_packet: None,
            next_after: Some(Some("10.1.2.3".parse().expect("ip"))),
            packs: Some(vec![VendorEntry::Pack(PackEntry {
                id: None,
                legal_basis: vec!["BOD 17-01".into()],
                name: Some("Kaspersky".into()),
                vendor: Some("kaspersky".into()),
            })]),
            resolvers: vec!["10.0.0.53".parse().expect("ip")],
            rule_packs: None,
            sensor: Some(SensorId {
                id: "s1".into(),
                site: "hq".into(),
            }),
            sites: Some(vec!["hq".into()]),
            vendors: Some(vec![VendorEntry::Id("kaspersky".into())]),
            legal_basis: None,
        };
        holds_the_contract(&report);
    }

    #[test]
    fn a_hand_made_report_reads_member_by_member() {
        let r = Report::read(&json!({
            "first_packet": "yesterday",
            "hosts": [{"ip": "10.0.0.1", "mac": "evil", "role": "gateway",
                       "detections": [{"vendor": "v", "severity": "severe", "count": "3",
                                       "first_seen": "2026-11-27T10:00:00+01:00",
                                       "rules": "one rule",
                                       "indicators": [{"kind": "smb_name", "value": "x",
                                                       "count": 2, "seen_by": "s9"}, 7]}]},
                      "not a host"],
            "resolvers": ["10.0.0.53", "evil"],
            "legal_basis": {"v": "a law"}
        }));
        assert_eq!(r.first_packet, None);
        let hosts = r.hosts.expect("hosts");
        assert_eq!(hosts.len(), 1, "the string is not a host");
        let h = &hosts[0];
        assert_eq!((h.ip, h.mac), (Some("10.0.0.1".parse().expect("ip")), None));
        assert_eq!(h.role, Some(Label::Other("gateway".into())));
        let d = &h.detections[0];
        assert_eq!(d.severity, Some(Label::Other("severe".into())));
        assert_eq!(d.count, 0);
        assert_eq!(d.first_seen, Some(ts("2026-11-27T09:00:00Z")));
        assert_eq!(d.rules, vec!["one rule".to_string()]);
        assert_eq!(d.indicators.len(), 1);
        assert_eq!(d.indicators[0].kind, Some(Label::Other("smb_name".into())));
        assert_eq!(d.indicators[0].other.get("seen_by"), Some(&json!("s9")));
        assert_eq!(r.resolvers.len(), 1);
        assert!(r.legal_basis.is_some());
        assert_eq!(Report::read(&json!(null)), Report::default());
    }
}
