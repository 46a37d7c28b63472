//! Rule packs: the TOML format (documented in `rules/README.md`), loading and validation.
//!
//! A pack is one vendor: who it is, why it is banned, and its rules, each with the public
//! source of its facts. Every problem is reported with file, line and rule id, and all of
//! them at once, so `vendorwatch rules check` can be run until it is quiet.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The packs shipped in the binary (the `rules/` folder at build time).
pub const EMBEDDED: &[(&str, &str)] = &[
    ("kaspersky.toml", include_str!("../../rules/kaspersky.toml")),
    ("hikvision.toml", include_str!("../../rules/hikvision.toml")),
    ("dahua.toml", include_str!("../../rules/dahua.toml")),
    ("huawei.toml", include_str!("../../rules/huawei.toml")),
    ("zte.toml", include_str!("../../rules/zte.toml")),
    (
        "china-carriers.toml",
        include_str!("../../rules/china-carriers.toml"),
    ),
];

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    pack: PackHeader,
    #[serde(default)]
    rule: Vec<Spanned<RuleSpec>>,
    #[serde(default)]
    exclude: Vec<Spanned<ExcludeSpec>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackHeader {
    vendor: String,
    /// A supplement adds rules to the pack of the same vendor (learned fingerprints): it takes
    /// that pack's name, legal basis and activation, and gives none of its own.
    #[serde(default)]
    supplement: bool,
    #[serde(default)]
    name: String,
    #[serde(default)]
    legal_basis: Vec<String>,
    #[serde(default)]
    enabled_by_default: Option<bool>,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    pub retrieved: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum PortSpec {
    One(i64),
    Range(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    category: String,
    severity: Severity,
    confidence: Confidence,
    description: String,
    sources: Vec<Source>,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    suffixes: Vec<String>,
    #[serde(default)]
    globs: Vec<String>,
    #[serde(default)]
    cidrs: Vec<String>,
    #[serde(default)]
    tcp_ports: Vec<PortSpec>,
    #[serde(default)]
    udp_ports: Vec<PortSpec>,
    #[serde(default)]
    min_distinct_ports: Option<u32>,
    #[serde(default)]
    http_paths: Vec<String>,
    #[serde(default)]
    user_agents: Vec<String>,
    #[serde(default)]
    cert_issuers: Vec<String>,
    #[serde(default)]
    cert_subjects: Vec<String>,
    #[serde(default)]
    ja4: Vec<String>,
    #[serde(default)]
    test_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExcludeSpec {
    id: String,
    description: String,
    #[serde(default)]
    sources: Vec<Source>,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    suffixes: Vec<String>,
}

/// A vendor's pack, validated.
#[derive(Debug, Clone)]
pub struct Pack {
    pub vendor: String,
    pub name: String,
    pub legal_basis: Vec<String>,
    pub enabled_by_default: bool,
    pub description: String,
    pub file: String,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub vendor: String,
    pub category: String,
    pub severity: Severity,
    pub confidence: Confidence,
    pub description: String,
    pub sources: Vec<Source>,
    pub names: Vec<String>,
    pub suffixes: Vec<String>,
    pub globs: Vec<String>,
    pub cidrs: Vec<ipnet::IpNet>,
    pub tcp_ports: Vec<(u16, u16)>,
    pub udp_ports: Vec<(u16, u16)>,
    pub min_distinct_ports: u32,
    pub http_paths: Vec<String>,
    pub user_agents: Vec<String>,
    pub cert_issuers: Vec<String>,
    pub cert_subjects: Vec<String>,
    pub ja4: Vec<String>,
    pub test_names: Vec<String>,
    pub file: String,
    pub line: usize,
}

/// Names that must not raise an alert for a vendor even though a broader rule covers them.
#[derive(Debug, Clone)]
pub struct Exclude {
    pub id: String,
    pub vendor: String,
    pub description: String,
    pub sources: Vec<Source>,
    pub names: Vec<String>,
    pub suffixes: Vec<String>,
}

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub rule: Option<String>,
    pub problem: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(r) = &self.rule {
            write!(f, "rule {r}: ")?;
        }
        write!(f, "{}", self.problem)
    }
}

/// Everything loaded from a set of files.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub packs: Vec<Pack>,
    pub rules: Vec<Rule>,
    pub excludes: Vec<Exclude>,
}

/// Loads the embedded packs.
pub fn load_embedded() -> Result<Loaded, Vec<RuleError>> {
    load_sources(
        EMBEDDED
            .iter()
            .map(|(n, t)| (format!("<embedded>/{n}"), (*t).to_string()))
            .collect(),
    )
}

/// Loads a file or every `*.toml` in a directory.
pub fn load_path(path: &Path) -> Result<Loaded, Vec<RuleError>> {
    use crate::operator_input::{self, InputFileError};
    let io_error = |p: &Path, e: InputFileError| RuleError {
        file: operator_input::shown(p),
        line: e.line().unwrap_or(0),
        rule: None,
        problem: e.to_string(),
    };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| vec![io_error(path, e.into())])?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        v.sort();
        if v.is_empty() {
            return Err(vec![RuleError {
                file: operator_input::shown(path),
                line: 0,
                rule: None,
                problem: "no *.toml rule packs in this directory".into(),
            }]);
        }
        v
    } else {
        vec![path.to_path_buf()]
    };
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match operator_input::read_text(&f, operator_input::MAX_RULE_FILE, "a rule pack") {
            Ok(text) => sources.push((operator_input::shown(&f), text)),
            Err(e) => errors.push(io_error(&f, e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    load_sources(sources)
}

/// Parses and validates `(file name, text)` pairs; all errors are returned together.
pub fn load_sources(sources: Vec<(String, String)>) -> Result<Loaded, Vec<RuleError>> {
    let mut loader = PackLoader::default();
    for (file, text) in sources {
        loader.add_file(&file, &text);
    }
    loader.finish()
}

/// What `load_sources` has gathered so far: the packs, rules and excludes, every problem
/// found, and what can only be checked once all files are read.
#[derive(Default)]
struct PackLoader {
    loaded: Loaded,
    errors: Vec<RuleError>,
    /// Rule id → where it was first defined (file, line).
    seen_ids: std::collections::HashMap<String, (String, usize)>,
    /// Supplement packs (file, line, vendor): their vendor's own pack may come later.
    supplements: Vec<(String, usize, String)>,
}

impl PackLoader {
    fn error(&mut self, file: &str, line: usize, rule: Option<String>, problem: String) {
        self.errors.push(RuleError {
            file: file.to_string(),
            line,
            rule,
            problem,
        });
    }

    /// One file: its `[pack]`, then its rules, then its excludes.
    fn add_file(&mut self, file: &str, text: &str) {
        let parsed: PackFile = match toml::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                let line = e.span().map_or(0, |s| line_of(text, s.start));
                self.error(file, line, None, e.message().trim().to_string());
                return;
            }
        };
        let lines = Lines::new(text);
        let vendor = parsed.pack.vendor.clone();
        self.add_pack(file, text, parsed.pack);
        for spanned in parsed.rule {
            let line = lines.of(spanned.span().start);
            self.add_rule(file, line, &vendor, spanned.into_inner());
        }
        for spanned in parsed.exclude {
            let line = lines.of(spanned.span().start);
            self.add_exclude(file, line, &vendor, spanned.into_inner());
        }
    }

    /// Checks a `[pack]` header and records the pack (a supplement only for `finish`).
    fn add_pack(&mut self, file: &str, text: &str, pack: PackHeader) {
        let vendor_line = line_of_key(text, "vendor");
        let vendor = pack.vendor;
        if !is_id(&vendor, false) {
            self.error(
                file,
                vendor_line,
                None,
                format!("vendor id {vendor:?} must be lower-case letters, digits and '-'"),
            );
        }
        if pack.supplement {
            self.supplements
                .push((file.to_string(), vendor_line, vendor));
            return;
        }
        if self.loaded.packs.iter().any(|p| p.vendor == vendor) {
            self.error(
                file,
                vendor_line,
                None,
                format!("vendor {vendor:?} is defined by more than one pack"),
            );
        }
        for (key, missing) in [
            ("name", pack.name.is_empty()),
            ("legal_basis", pack.legal_basis.is_empty()),
            ("description", pack.description.is_empty()),
            ("enabled_by_default", pack.enabled_by_default.is_none()),
        ] {
            if missing {
                self.error(
                    file,
                    vendor_line,
                    None,
                    format!("[pack] needs `{key}` (only a supplement pack may leave it out)"),
                );
            }
        }
        self.loaded.packs.push(Pack {
            vendor,
            name: pack.name,
            legal_basis: pack.legal_basis,
            enabled_by_default: pack.enabled_by_default.unwrap_or(false),
            description: pack.description,
            file: file.to_string(),
        });
    }

    fn add_rule(&mut self, file: &str, line: usize, vendor: &str, spec: RuleSpec) {
        let mut problems = Vec::new();
        let rule = validate_rule(spec, vendor, file, line, &mut problems);
        if let Some((f, l)) = self.seen_ids.get(&rule.id) {
            problems.push(format!("duplicate rule id (first defined at {f}:{l})"));
        } else {
            self.seen_ids
                .insert(rule.id.clone(), (file.to_string(), line));
        }
        for problem in problems {
            self.error(file, line, Some(rule.id.clone()), problem);
        }
        self.loaded.rules.push(rule);
    }

    fn add_exclude(&mut self, file: &str, line: usize, vendor: &str, spec: ExcludeSpec) {
        let mut problems = Vec::new();
        let names = check_names(&spec.names, "names", &mut problems);
        let suffixes = check_names(&spec.suffixes, "suffixes", &mut problems);
        if spec.names.is_empty() && spec.suffixes.is_empty() {
            problems.push("an exclude needs names or suffixes".into());
        }
        for problem in problems {
            self.error(file, line, Some(spec.id.clone()), problem);
        }
        self.loaded.excludes.push(Exclude {
            id: spec.id,
            vendor: vendor.to_string(),
            description: spec.description,
            sources: spec.sources,
            names,
            suffixes,
        });
    }

    /// The checks that need every file read: each supplement's vendor has its own pack.
    fn finish(mut self) -> Result<Loaded, Vec<RuleError>> {
        for (file, line, vendor) in std::mem::take(&mut self.supplements) {
            if !self.loaded.packs.iter().any(|p| p.vendor == vendor) {
                self.error(
                    &file,
                    line,
                    None,
                    format!(
                        "supplement for vendor {vendor:?}, but no pack defines that vendor (load it with its pack: --rules DIR holding both)"
                    ),
                );
            }
        }
        if self.errors.is_empty() {
            Ok(self.loaded)
        } else {
            Err(self.errors)
        }
    }
}

/// Checks one rule field group after another, in the order its problems are reported, and
/// builds the rule (with what failed left out) for the checks that need it whole.
fn validate_rule(
    spec: RuleSpec,
    vendor: &str,
    file: &str,
    line: usize,
    problems: &mut Vec<String>,
) -> Rule {
    check_identity(&spec, vendor, problems);
    check_sources(&spec.sources, problems);
    let names = check_names(&spec.names, "names", problems);
    let suffixes = check_names(&spec.suffixes, "suffixes", problems);
    let globs = spec
        .globs
        .iter()
        .filter_map(|g| check_glob(g, problems))
        .collect();
    let test_names = check_names(&spec.test_names, "test_names", problems);
    let cidrs = parse_cidrs(&spec.cidrs, problems);
    let tcp_ports = parse_ports(&spec.tcp_ports, "tcp_ports", problems);
    let udp_ports = parse_ports(&spec.udp_ports, "udp_ports", problems);
    let min_distinct_ports = check_min_distinct_ports(&spec, problems);
    check_http_and_tls_values(&spec, problems);
    if match_forms(&spec) == 0 {
        problems.push("a rule needs at least one match form (names, suffixes, globs, cidrs, ports, http_paths, user_agents, cert_issuers, cert_subjects, ja4)".into());
    }
    Rule {
        id: spec.id,
        vendor: vendor.to_string(),
        category: spec.category,
        severity: spec.severity,
        confidence: spec.confidence,
        description: spec.description,
        sources: spec.sources,
        names,
        suffixes,
        globs,
        cidrs,
        tcp_ports,
        udp_ports,
        min_distinct_ports,
        http_paths: spec.http_paths,
        user_agents: lower_case(&spec.user_agents),
        cert_issuers: lower_case(&spec.cert_issuers),
        cert_subjects: lower_case(&spec.cert_subjects),
        ja4: spec.ja4,
        test_names,
        file: file.to_string(),
        line,
    }
}

/// The rule's id (under its pack's vendor), category and description.
fn check_identity(spec: &RuleSpec, vendor: &str, problems: &mut Vec<String>) {
    if !is_id(&spec.id, true) {
        problems.push(format!(
            "id {:?} must be lower-case letters, digits, '-' and '.'",
            spec.id
        ));
    }
    if !spec.id.starts_with(&format!("{vendor}.")) {
        problems.push(format!(
            "id must start with the pack's vendor id ({vendor}.)"
        ));
    }
    if !is_id(&spec.category, false) {
        problems.push(format!(
            "category {:?} must be lower-case letters, digits and '-'",
            spec.category
        ));
    }
    if spec.description.trim().is_empty() {
        problems.push("description is empty".into());
    }
}

/// Every rule names at least one source, each a URL or a document, with its retrieval date.
fn check_sources(sources: &[Source], problems: &mut Vec<String>) {
    if sources.is_empty() {
        problems.push("every rule needs at least one source".into());
    }
    for s in sources {
        if s.url.is_none() == s.document.is_none() {
            problems.push("a source has exactly one of `url` or `document`".into());
        }
        if ::time::Date::parse(
            &s.retrieved,
            ::time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_err()
        {
            problems.push(format!(
                "source retrieval date {:?} is not YYYY-MM-DD",
                s.retrieved
            ));
        }
    }
}

/// An address/prefix, or a bare address taken as its own /32 or /128: how rule files, the
/// home net and every other operator-given network are written.
pub fn address_or_prefix(text: &str) -> Result<ipnet::IpNet, std::net::AddrParseError> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
}

/// Networks or single addresses; a network with host bits set is refused (the problem
/// names the network it probably meant).
fn parse_cidrs(cidrs: &[String], problems: &mut Vec<String>) -> Vec<ipnet::IpNet> {
    cidrs
        .iter()
        .filter_map(|c| match address_or_prefix(c) {
            Ok(net) if net.trunc() == net => Some(net),
            Ok(net) => {
                problems.push(format!(
                    "cidr {c:?} has host bits set (did you mean {}?)",
                    net.trunc()
                ));
                None
            }
            Err(_) => {
                problems.push(format!("cidr {c:?} is not an address or address/prefix"));
                None
            }
        })
        .collect()
}

/// `min_distinct_ports` (1 when left out) only qualifies port forms.
fn check_min_distinct_ports(spec: &RuleSpec, problems: &mut Vec<String>) -> u32 {
    let has_ports = !spec.tcp_ports.is_empty() || !spec.udp_ports.is_empty();
    let min_distinct_ports = spec.min_distinct_ports.unwrap_or(1);
    if spec.min_distinct_ports.is_some() && !has_ports {
        problems.push("min_distinct_ports needs tcp_ports or udp_ports".into());
    }
    if min_distinct_ports == 0 {
        problems.push("min_distinct_ports must be at least 1".into());
    }
    min_distinct_ports
}

/// HTTP paths are absolute; user agents, certificate names and JA4s are never blank.
fn check_http_and_tls_values(spec: &RuleSpec, problems: &mut Vec<String>) {
    for p in &spec.http_paths {
        if !p.starts_with('/') {
            problems.push(format!("http path {p:?} must start with '/'"));
        }
    }
    for (key, list) in [
        ("user_agents", &spec.user_agents),
        ("cert_issuers", &spec.cert_issuers),
        ("cert_subjects", &spec.cert_subjects),
        ("ja4", &spec.ja4),
    ] {
        if list.iter().any(|v| v.trim().is_empty()) {
            problems.push(format!("{key} has an empty entry"));
        }
    }
}

/// How many match forms a rule writes (`test_names` are examples, not a form).
fn match_forms(spec: &RuleSpec) -> usize {
    spec.names.len()
        + spec.suffixes.len()
        + spec.globs.len()
        + spec.cidrs.len()
        + spec.tcp_ports.len()
        + spec.udp_ports.len()
        + spec.http_paths.len()
        + spec.user_agents.len()
        + spec.cert_issuers.len()
        + spec.cert_subjects.len()
        + spec.ja4.len()
}

/// The matcher compares user agents and certificate names case-insensitively.
fn lower_case(values: &[String]) -> Vec<String> {
    values.iter().map(|v| v.to_ascii_lowercase()).collect()
}

fn is_id(s: &str, dots: bool) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || (dots && c == b'.')
        })
}

/// A DNS name as rules write it: lower case, labels of 1..=63 letters, digits, '-' or '_'.
fn check_name(n: &str, key: &str, problems: &mut Vec<String>) -> Option<String> {
    let trimmed = n.strip_suffix('.').unwrap_or(n);
    let ok = !trimmed.is_empty()
        && trimmed.len() <= 253
        && trimmed.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
        });
    if ok {
        Some(trimmed.to_string())
    } else {
        problems.push(format!("{key}: {n:?} is not a lower-case DNS name"));
        None
    }
}

/// The valid names of a list (see `check_name`); a problem for each of the others.
fn check_names(list: &[String], key: &str, problems: &mut Vec<String>) -> Vec<String> {
    list.iter()
        .filter_map(|n| check_name(n, key, problems))
        .collect()
}

fn check_glob(g: &str, problems: &mut Vec<String>) -> Option<String> {
    let labels: Vec<&str> = g.split('.').collect();
    let wild = |l: &&str| l.contains('*') || l.contains('?');
    let literal_tail = labels.iter().rev().take_while(|l| !wild(l)).count();
    let ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_*?".contains(&c))
    });
    if !ok {
        problems.push(format!("globs: {g:?} is not a lower-case name pattern"));
        return None;
    }
    if !labels.iter().any(wild) {
        problems.push(format!(
            "globs: {g:?} has no '*' or '?' (put it in `names`)"
        ));
        return None;
    }
    if literal_tail < 2 {
        problems.push(format!(
            "globs: {g:?} needs at least its last two labels literal"
        ));
        return None;
    }
    Some(g.to_string())
}

fn parse_ports(specs: &[PortSpec], key: &str, problems: &mut Vec<String>) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for s in specs {
        let parsed = match s {
            PortSpec::One(p) => u16::try_from(*p).ok().filter(|p| *p > 0).map(|p| (p, p)),
            PortSpec::Range(r) => r.split_once('-').and_then(|(a, b)| {
                let a: u16 = a.trim().parse().ok()?;
                let b: u16 = b.trim().parse().ok()?;
                (a > 0 && a <= b).then_some((a, b))
            }),
        };
        match parsed {
            Some(p) => out.push(p),
            None => problems.push(format!(
                "{key}: {s:?} is not a port (1-65535) or a range \"lo-hi\""
            )),
        }
    }
    out
}

/// Offsets of the newlines of a file, to turn byte offsets into line numbers quickly (a
/// pack can hold a million names: counting newlines per rule would be quadratic).
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Lines {
        Lines(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// 1-based line of a byte offset.
    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

/// 1-based line of a byte offset (for one-off lookups).
fn line_of(text: &str, offset: usize) -> usize {
    Lines::new(text).of(offset)
}

fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(key))
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[pack]
vendor = "acme"
name = "Acme"
enabled_by_default = true
legal_basis = ["test"]
description = "test pack"

[[rule]]
id = "acme.update.servers"
category = "update"
severity = "high"
confidence = "high"
description = "Acme's update servers."
sources = [{ url = "https://acme.example/doc", retrieved = "2026-11-01" }]
globs = ["u??.acme.example"]
tcp_ports = [13000, "23100-23199"]
"#;

    #[test]
    fn good_pack_loads() {
        let l = load_sources(vec![("acme.toml".into(), GOOD.into())]).expect("loads");
        assert_eq!(l.rules.len(), 1);
        assert_eq!(l.rules[0].tcp_ports, vec![(13000, 13000), (23100, 23199)]);
        assert_eq!(l.rules[0].line, 9);
    }

    #[test]
    fn errors_name_file_line_and_rule() {
        let bad = GOOD.replace(
            "globs = [\"u??.acme.example\"]",
            "globs = [\"u??.*.example\"]\ncidrs = [\"10.0.0.1/8\"]",
        );
        let errs = load_sources(vec![("acme.toml".into(), bad)]).expect_err("rejects");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.file == "acme.toml"
            && e.line == 9
            && e.rule.as_deref() == Some("acme.update.servers")));
        let text = errs[1].to_string();
        assert!(
            text.contains("acme.toml:9: rule acme.update.servers: cidr"),
            "{text}"
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_a_line() {
        let bad = GOOD.replace(
            "severity = \"high\"",
            "severity = \"high\"\nseverty = \"low\"",
        );
        let errs = load_sources(vec![("acme.toml".into(), bad)]).expect_err("rejects");
        assert_eq!(errs[0].line, 13, "{errs:?}");
        assert!(errs[0].problem.contains("severty"), "{errs:?}");
    }

    #[test]
    fn embedded_packs_are_valid() {
        let l = load_embedded().unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(l
            .packs
            .iter()
            .any(|p| p.vendor == "kaspersky" && p.enabled_by_default));
        assert!(l.rules.len() > 10);
    }
}
