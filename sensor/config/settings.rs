//! The options of `replay` and `live`, declared once: each field is at the same time a
//! command-line option (clap, `--max-flows`) and a key of the configuration file (serde,
//! `max_flows`), as ripgrep keeps one declaration per flag. Every field is optional: a
//! setting is the command line's if given, else the file's, else the default of
//! [`Settings::defaults`] — the one place a default is written, and what `--help` shows
//! (see [`with_defaults_shown`]). Turning the merged settings into the configuration the
//! program runs on, with every check, is `config::RunConfig::build`.
//!
//! Adding an option: one field here (with its doc comment, the help text), its default in
//! `defaults` when it has one, a line in README.md and in deploy/vendorwatch.toml; the test
//! `settings_readme_and_deploy_file_agree` holds the three in step.

use crate::output::alertfile::FsyncPolicy;
use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The two commands that run the sensor; some defaults differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Replay,
    Live,
}

/// Where a live sensor keeps its inventory unless told otherwise (a replay keeps none).
pub const DEFAULT_LIVE_STATE: &str = "/var/lib/vendorwatch/inventory.db";
/// Where `live` serves metrics unless told otherwise: loopback only.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9717";
/// RFC 1918, carrier-grade NAT, IPv6 unique-local and link-local.
pub const DEFAULT_HOME_NET: &str =
    "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7,fe80::/10";

/// Options shared by `replay` and `live`, and the top-level keys of the configuration file.
/// A flag (`--quiet`) is `Some(true)` when given; a `--no-…` flag is `Some(false)` of the
/// file's positive key (`--no-seccomp` is `seccomp = false`).
#[derive(Args, Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Rule pack file or directory of *.toml packs [default: the packs embedded in the binary].
    #[arg(long, value_name = "PATH")]
    pub rules: Option<PathBuf>,
    /// Vendors whose packs are active, comma-separated [default: the packs enabled by default: kaspersky].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub vendors: Option<Vec<String>>,
    /// Write alerts as JSON Lines to PATH (- for stdout): one per host, vendor and category.
    #[arg(long, value_name = "PATH|-")]
    pub alerts: Option<PathBuf>,
    /// Rotate the alerts file before it grows past this many MiB (decimals allowed, 0: never):
    /// PATH becomes PATH.1 (PATH.1 becomes PATH.2, …) and a new PATH is started.
    #[arg(long, value_name = "MIB", value_parser = finite)]
    pub alerts_max_mb: Option<f64>,
    /// Rotated alerts files kept (PATH.1 … PATH.K); the oldest is removed.
    #[arg(long, value_name = "K")]
    pub alerts_keep: Option<usize>,
    /// When the alerts file is fsynced: always (after every alert), interval (at most once a
    /// second) or never (left to the OS).
    #[arg(long, value_name = "always|interval|never")]
    #[serde(with = "as_text", default)]
    pub alerts_fsync: Option<FsyncPolicy>,
    /// Alerts held in memory while the alerts file cannot be written (a full disk), written in
    /// order once it can; beyond this many they are dropped and counted.
    #[arg(long, value_name = "N")]
    pub alerts_backlog: Option<usize>,
    /// Write the host report (JSON) to PATH at the end (- for stdout).
    #[arg(long, value_name = "PATH|-")]
    pub report: Option<PathBuf>,
    /// Write every extracted name, matched or not, as JSON Lines to PATH (- for stdout).
    #[arg(long, value_name = "PATH|-")]
    pub events: Option<PathBuf>,
    /// Internal networks whose hosts are reported, comma-separated CIDRs (RFC 1918,
    /// carrier-grade NAT, IPv6 unique-local and link-local unless given).
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub home_net: Option<Vec<String>>,
    /// Home-net resolvers, comma-separated addresses: they hold the resolver role from the
    /// start (without it, a host earns the role by answering other home-net hosts' queries).
    #[arg(long, value_name = "IP,...", value_delimiter = ',')]
    pub resolvers: Option<Vec<String>>,
    /// The persistent host inventory (SQLite), or `none`.
    #[arg(long, value_name = "PATH|none", env = "VENDORWATCH_STATE")]
    pub state: Option<String>,
    /// Alert again for a host still talking to a vendor this many hours after its last alert
    /// (0: never).
    #[arg(long, value_name = "HOURS")]
    pub realert_hours: Option<u64>,
    /// Also reload rules and suppressions when the rule files or the configuration file change
    /// (SIGHUP always reloads them). A broken file keeps the rules in force.
    #[arg(long, num_args = 0, default_missing_value = "true")]
    pub watch: Option<bool>,
    /// Worker threads [default: cores - 1, at least 1].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Flows tracked per worker; beyond it the longest-idle are evicted (and counted).
    #[arg(long, value_name = "N")]
    pub max_flows: Option<usize>,
    /// MiB all TCP reassembly buffers and QUIC CRYPTO streams of one worker may hold; beyond
    /// it the flows that started buffering first give theirs up (counted, no longer inspected).
    #[arg(long, value_name = "MIB")]
    pub reassembly_mb: Option<usize>,
    /// HTTP requests read per connection (keep-alive and proxy connections, request bodies
    /// passed over); beyond it the connection is no longer inspected (counted).
    #[arg(long, value_name = "N")]
    pub http_max_requests: Option<u32>,
    /// Hosts in the inventory; findings for new hosts beyond it are shed and counted
    /// (known hosts keep being updated).
    #[arg(long, value_name = "N")]
    pub max_hosts: Option<usize>,
    /// Fingerprint learning: distinct hosts that must have used a client fingerprint on a
    /// vendor's visible flows before it is suspected on hidden-name flows.
    #[arg(long, value_name = "N")]
    pub learn_min_hosts: Option<usize>,
    /// Fingerprint learning: the share of a fingerprint's visible-name flows (and hosts)
    /// that must be the vendor's, between 0 and 1.
    #[arg(long, value_name = "FRACTION", value_parser = finite)]
    pub learn_min_specificity: Option<f64>,
    /// Fingerprint learning: packet time the vendor flows must span before the fingerprint
    /// is used.
    #[arg(long, value_name = "SECS")]
    pub learn_min_seconds: Option<u64>,
    /// Passive DNS: addresses remembered from answers to vendor names (when full, expired
    /// entries go first, then the oldest answers; counted).
    #[arg(long, value_name = "N")]
    pub pdns_max: Option<usize>,
    /// Passive DNS: keep an answer at least this long, whatever its TTL (clients cache longer
    /// than TTLs say).
    #[arg(long, value_name = "SECS")]
    pub pdns_ttl_floor: Option<u64>,
    /// Passive DNS: keep an answer at most this long.
    #[arg(long, value_name = "SECS")]
    pub pdns_ttl_cap: Option<u64>,
    /// Also send alerts to a syslog receiver, RFC 5424: udp://HOST:PORT, tcp://HOST:PORT
    /// (octet-counted) or unix:PATH. Never blocks capture: a bounded queue, reconnects, drops counted.
    #[arg(long, value_name = "TARGET")]
    pub syslog: Option<String>,
    /// Alerts queued for syslog while the receiver is unreachable.
    #[arg(long, value_name = "N")]
    pub syslog_queue: Option<usize>,
    /// UDP ports carrying VXLAN, comma-separated (add 8472 for Linux's legacy default).
    #[arg(long, value_name = "PORT,...", value_delimiter = ',')]
    pub vxlan_ports: Option<Vec<u16>>,
    /// Serve Prometheus metrics, /healthz and /api/hosts on ADDR, or `off`.
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_addr: Option<String>,
    /// Print no summary, progress bar, status line, start-up or reload notices (warnings and
    /// errors still show).
    #[arg(long, short, num_args = 0, default_missing_value = "true")]
    pub quiet: Option<bool>,
    /// Do not install the seccomp filter that, once start-up is over, refuses the system calls
    /// an exploit would need (exec, ptrace, mount, namespaces, kernel modules, bpf, new raw
    /// sockets, ...). Only for debugging under strace or gdb (they need ptrace of the sensor's
    /// own threads, or see EPERM where they expect success) or a libc that makes one of those
    /// calls in normal operation.
    #[arg(long = "no-seccomp", num_args = 0, default_missing_value = "false")]
    pub seccomp: Option<bool>,
    /// Read TCP segments whatever their IP and TCP checksums say. By default a segment with a
    /// wrong checksum, in a direction whose checksums were right so far, is not read (the
    /// receiver dropped it: an evader's insertion), and a direction whose checksums are never
    /// right (captured on a host with checksum offload) is read as it is.
    #[arg(long, num_args = 0, default_missing_value = "true")]
    pub ignore_checksums: Option<bool>,
    /// Also ship the inventory to the agency's PostgreSQL, a libpq-style URL
    /// (postgres://USER@HOST:PORT/DB?sslmode=require; the password from the URL,
    /// --inventory-password-file or PGPASSWORD). Detections land in the local inventory
    /// (--state) first and are shipped from there; replay without --state uses a temporary one.
    #[arg(long, value_name = "postgres://...", env = "VENDORWATCH_INVENTORY")]
    pub inventory: Option<String>,
    /// A file whose first line is the password of the --inventory role.
    #[arg(long, value_name = "PATH")]
    pub inventory_password_file: Option<PathBuf>,
    /// A PEM root certificate to trust for TLS to the inventory server (a private CA).
    #[arg(long, value_name = "PEM")]
    pub inventory_ca: Option<PathBuf>,
    /// This sensor's name in the agency inventory and its metrics [default: the host name].
    #[arg(long, value_name = "ID")]
    pub sensor_id: Option<String>,
    /// The site this sensor watches: hosts are keyed by site and address.
    #[arg(long, value_name = "NAME")]
    pub site: Option<String>,
    /// Host snapshots the spool holds while the server is unreachable; beyond, new hosts
    /// wait for a resync (counted).
    #[arg(long, value_name = "N")]
    pub inventory_backlog: Option<usize>,
    /// Host snapshots per shipped transaction.
    #[arg(long, value_name = "N")]
    pub inventory_batch: Option<usize>,
    /// Seconds replay waits at the end for the spool to drain.
    #[arg(long, value_name = "SECS")]
    pub inventory_wait: Option<u64>,
    /// How log lines (warnings and notices, not the summary) are written on stderr: text,
    /// or one JSON object per line (journald, a SIEM).
    #[arg(long, value_enum, value_name = "text|json")]
    pub log_format: Option<LogFormat>,
}

/// How log lines are written.
#[derive(
    clap::ValueEnum,
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `vendorwatch: message key=value`, one line each.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

/// `live`'s own options, and the `[live]` table of the configuration file.
#[derive(Args, Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSettings {
    /// Interface to capture on (a span port or tap); repeat for several, each with its own
    /// capture thread(s) (or `interfaces` in the [live] table of --config).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interfaces: Option<Vec<String>>,
    /// BPF filter, compiled by libpcap (e.g. "not port 22").
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    /// Kernel capture buffer per interface, in MiB, shared out equally among its fanout
    /// members (at least 8 MiB each); raise it if the kernel drops packets.
    #[arg(long, value_name = "MIB")]
    pub buffer_mb: Option<u32>,
    /// Do not put the interface in promiscuous mode.
    #[arg(long = "no-promisc", num_args = 0, default_missing_value = "false")]
    pub promiscuous: Option<bool>,
    /// After the interfaces and outputs are open, run as this user and keep no capabilities
    /// [default when started as root: vendorwatch, if that user exists].
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Seconds between status lines on a terminal (packets, drops per stage, alerts).
    #[arg(long, value_name = "SECS")]
    pub status_every: Option<u64>,
    /// Capture threads per interface (Linux): more than 1 opens the interface as that many
    /// libpcap handles joined in one AF_PACKET fanout group, 1 captures through libpcap
    /// alone; 0 = as many as workers where the interface allows fanout, else libpcap.
    #[arg(long, value_name = "N")]
    pub capture_threads: Option<usize>,
}

/// `replay`'s own options, and the `[replay]` table of the configuration file.
#[derive(Args, Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySettings {
    /// Keep serving metrics (--metrics-addr) this many seconds after the replay ends, for
    /// dashboards and tests (a signal or a failed endpoint ends it early) [default: 0].
    #[arg(long, value_name = "SECS")]
    pub linger: Option<u64>,
}

impl ReplaySettings {
    /// The defaults of `replay`'s own options.
    pub fn defaults() -> ReplaySettings {
        ReplaySettings { linger: Some(0) }
    }
}

impl Settings {
    /// Every default of an option, in one place (`None`: no default value, the option is
    /// off or its default is computed, as its help says).
    pub fn defaults(mode: Mode) -> Settings {
        let learn = crate::detect::fingerprints::LearnSettings::default();
        let detect = crate::detect::DetectLimits::default();
        let extract = crate::extract::ExtractorLimits::default();
        let (state, metrics_addr) = match mode {
            Mode::Replay => ("none", "off"),
            Mode::Live => (DEFAULT_LIVE_STATE, DEFAULT_METRICS_ADDR),
        };
        Settings {
            alerts_max_mb: Some(0.0),
            alerts_keep: Some(crate::output::alertfile::DEFAULT_KEEP),
            alerts_fsync: Some(FsyncPolicy::default()),
            alerts_backlog: Some(crate::output::alertfile::DEFAULT_BACKLOG),
            home_net: Some(DEFAULT_HOME_NET.split(',').map(str::to_string).collect()),
            state: Some(state.into()),
            realert_hours: Some(24),
            watch: Some(false),
            max_flows: Some(extract.max_flows),
            reassembly_mb: Some(extract.reassembly_budget >> 20),
            http_max_requests: Some(extract.http_max_requests),
            max_hosts: Some(crate::hosts::DEFAULT_MAX_HOSTS),
            learn_min_hosts: Some(learn.min_hosts),
            learn_min_specificity: Some(learn.min_specificity),
            learn_min_seconds: Some(learn.min_observe_secs),
            pdns_max: Some(detect.pdns_max_entries),
            pdns_ttl_floor: Some(detect.pdns_ttl_floor_secs),
            pdns_ttl_cap: Some(detect.pdns_ttl_cap_secs),
            syslog_queue: Some(crate::output::syslog::DEFAULT_CAPACITY),
            vxlan_ports: Some(crate::decode::DecodeOptions::default().vxlan_ports),
            metrics_addr: Some(metrics_addr.into()),
            quiet: Some(false),
            seccomp: Some(true),
            ignore_checksums: Some(false),
            site: Some("default".into()),
            inventory_backlog: Some(crate::hosts::agency::DEFAULT_BACKLOG),
            inventory_batch: Some(crate::hosts::agency::DEFAULT_BATCH),
            inventory_wait: Some(crate::hosts::agency::DEFAULT_REPLAY_WAIT_SECS),
            log_format: Some(LogFormat::default()),
            ..Settings::default()
        }
    }
}

impl LiveSettings {
    /// The defaults of `live`'s own options.
    pub fn defaults() -> LiveSettings {
        LiveSettings {
            buffer_mb: Some(64),
            promiscuous: Some(true),
            status_every: Some(10),
            capture_threads: Some(0),
            ..LiveSettings::default()
        }
    }
}

/// The one merge: each field from the first layer that has it (command line, then file,
/// then defaults). Field by field through serde, so a new field needs no code here. Fails
/// only on a value serde cannot carry: a path that is not UTF-8.
pub fn layered<T: Serialize + DeserializeOwned>(layers: &[&T]) -> Result<T, MergeError> {
    let mut merged = serde_json::Map::new();
    for layer in layers.iter().rev() {
        match serde_json::to_value(layer) {
            Ok(serde_json::Value::Object(fields)) => {
                merged.extend(fields.into_iter().filter(|(_, v)| !v.is_null()))
            }
            Ok(_) => {}
            Err(e) => return Err(MergeError::Encode(e)),
        }
    }
    serde_json::from_value(serde_json::Value::Object(merged)).map_err(MergeError::Decode)
}

/// Why the layers of settings cannot be merged (`layered`).
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A layer's value serde cannot carry (a path that is not UTF-8).
    #[error("{0} (paths must be UTF-8)")]
    Encode(serde_json::Error),
    /// The merged fields do not make the settings again.
    #[error("{0}")]
    Decode(serde_json::Error),
}

impl MergeError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            MergeError::Encode(_) => "encode",
            MergeError::Decode(_) => "decode",
        }
    }
}

/// Why a command-line number is refused (`finite`; clap prints the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("not a finite number")]
    NotFinite,
    #[error("{0}")]
    Malformed(std::num::ParseFloatError),
}

impl NumberError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            NumberError::NotFinite => "not_finite",
            NumberError::Malformed(_) => "malformed",
        }
    }
}

/// A number that is finite (JSON, which carries the merge, has no NaN or infinity).
fn finite(text: &str) -> Result<f64, NumberError> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(NumberError::NotFinite),
        Err(e) => Err(NumberError::Malformed(e)),
    }
}

/// The keys a `T` has in the configuration file, as serde names them.
pub fn keys<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Appends `[default: …]` to the help of every option that has a default value in
/// `defaults` (a flag's default is its absence, not shown).
pub fn with_defaults_shown<T: Serialize>(mut cmd: clap::Command, defaults: &T) -> clap::Command {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(defaults) else {
        return cmd;
    };
    for (key, value) in fields {
        let shown = match &value {
            serde_json::Value::Null | serde_json::Value::Bool(_) => continue,
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => f.to_string(),
                _ => n.to_string(),
            },
            serde_json::Value::Object(_) => continue,
        };
        if cmd.get_arguments().any(|a| a.get_id() == key.as_str()) {
            cmd = cmd.mut_arg(key.as_str(), |a| {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                a.help(format!("{help} [default: {shown}]"))
            });
        }
    }
    cmd
}

/// A value written as text in the file and on the command line (`"always"`), read with
/// its `FromStr` and written with its `Display`.
mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: std::fmt::Display>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match Option::<String>::deserialize(d)? {
            Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_errors_have_unique_reasons_and_keep_their_words() {
        use std::os::unix::ffi::OsStringExt;
        let cli = Settings {
            rules: Some(std::ffi::OsString::from_vec(vec![0xff, b'x']).into()),
            ..Settings::default()
        };
        let encode = layered(&[&cli]).unwrap_err();
        assert_eq!(
            encode.to_string(),
            "path contains invalid UTF-8 characters (paths must be UTF-8)"
        );
        let decode = MergeError::Decode(serde_json::from_str::<u8>("x").unwrap_err());
        assert_eq!(decode.to_string(), "expected value at line 1 column 1");
        assert_ne!(encode.reason(), decode.reason());
    }

    #[test]
    fn number_errors_have_unique_reasons_and_keep_their_words() {
        let infinite = finite("inf").unwrap_err();
        assert_eq!(infinite.to_string(), "not a finite number");
        let malformed = finite("many").unwrap_err();
        assert_eq!(malformed.to_string(), "invalid float literal");
        assert_ne!(infinite.reason(), malformed.reason());
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_the_file_over_the_defaults() {
        let cli = Settings {
            workers: Some(2),
            ..Settings::default()
        };
        let file = Settings {
            workers: Some(7),
            max_flows: Some(10),
            ..Settings::default()
        };
        let merged = layered(&[&cli, &file, &Settings::defaults(Mode::Replay)]).expect("merges");
        assert_eq!(merged.workers, Some(2));
        assert_eq!(merged.max_flows, Some(10));
        assert_eq!(merged.max_hosts, Some(crate::hosts::DEFAULT_MAX_HOSTS));
        assert_eq!(merged.state.as_deref(), Some("none"));
        assert_eq!(merged.alerts_fsync, Some(FsyncPolicy::Always));
        assert_eq!(merged.alerts, None);
    }
}
