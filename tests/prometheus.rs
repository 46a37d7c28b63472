//! The monitoring side against real components: a real Prometheus scraping real sensors,
//! with the deploy/ configuration, alert rules and dashboard exactly as shipped.
//!
//! - `deploy_files_pass_promtool`: `promtool check config` on deploy/prometheus/prometheus.yml,
//!   `promtool check rules` on alerts.yml, `promtool test rules` on alerts_test.yml (which tests
//!   every alert firing and quiet, with its rendered annotations).
//! - `dashboard_json_is_well_formed`: deploy/grafana/dashboard.json parses, is a Grafana 10+
//!   dashboard (schemaVersion >= 38), every panel uses the `${DS_PROMETHEUS}` datasource (whose
//!   default is the provisioned uid "prometheus"), panel ids are unique, every query has a
//!   unique refId and uses only Grafana variables that exist. Needs no external tool.
//! - `prometheus_scrapes_sensors_and_every_dashboard_and_alert_query_returns_data`:
//!   1. starts `vendorwatch replay --metrics-addr 127.0.0.1:<free> --linger 40 -q` on
//!      pcaps/tls.pcap, dns.pcap and http-proxy.pcap, and, as root, `vendorwatch live -i lo`
//!      (the only way to get the live-only series: kernel/interface drops per source and
//!      worker queue depth; without root they are reported as not checked, loudly);
//!   2. derives a prometheus.yml from deploy/prometheus/prometheus.yml (targets -> the test
//!      sensors, scrape and evaluation interval 1s, scrape_timeout 1s, rule_files -> the
//!      deploy alerts.yml itself, unchanged: its `for:` durations are kept; the banned-vendor
//!      alert has `for: 0m` in the deploy file so it fires here), starts `prometheus` on a free
//!      127.0.0.1 port with storage in a temp dir, and waits until it has scraped every target
//!      at least three times;
//!   3. requires VendorwatchBannedVendorHost to be firing for vendor "kaspersky" on the replay
//!      sensor (/api/v1/alerts);
//!   4. pipes a scrape of each sensor's /metrics (the replay one after its replay finished)
//!      through `promtool check metrics`: any output fails the test (no lint is accepted: see
//!      ACCEPTED_LINT);
//!   5. evaluates every `expr` in the dashboard (Grafana variables replaced: $__rate_interval
//!      -> 1m, $__interval -> 15s, $__range -> 1h, $instance -> .+) through /api/v1/query:
//!      each must succeed and return data;
//!   6. evaluates every alert expression (as Prometheus loaded it, from /api/v1/rules; the set
//!      must be exactly the alerts in alerts.yml): each must succeed and return data, except the
//!      alert conditions in QUIET_BY_DESIGN, which are empty when all is well: for those the
//!      raw expression must still evaluate, and the expression with its comparisons against
//!      constants removed must return data;
//!   7. requires every metric name (`vendorwatch_[a-z_]+`) written anywhere in dashboard.json or
//!      alerts.yml to exist in the scraped /metrics (histogram suffixes allowed).
//!
//! Skipped, with a message, only when `prometheus` or `promtool` is not installed
//! (Debian: `apt-get install prometheus`). Every process started is killed on the way out,
//! also on failure (`Procs` guard). No timing is asserted; waits are bounded (60 s in all).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Alert conditions that are empty by design while all is well, with the reason. For these
/// the raw expression must evaluate without error (it may or may not return data) and the
/// expression with its comparisons removed must return data.
const QUIET_BY_DESIGN: &[(&str, &str)] = &[
    (
        "VendorwatchSensorDown",
        "both test sensors are up, and the job has targets, so `up == 0 or absent(up)` is empty",
    ),
    (
        "VendorwatchNotCapturing",
        "the live sensor captures (vendorwatch_up 1); the replay sensor reports 0 once its files \
         are read, so the raw result depends on timing: only the comparison-free form is required",
    ),
    (
        "VendorwatchNoPackets",
        "the sensors started seconds ago, so the `process running > 300 s` guard keeps it empty",
    ),
    (
        "VendorwatchHighDropRatio",
        "nothing is dropped: the ratio is 0 (live) or 0/0 = NaN (replay, whose counters are \
         flat), never > 1 %",
    ),
    (
        "VendorwatchRuleReloadFailed",
        "no rule reload happens in this test (tests/reload.rs reloads): the failure counter stays 0",
    ),
    (
        "VendorwatchAlertsNotDelivered",
        "the replay sensor writes its alerts file at once: nothing is held or dropped",
    ),
    (
        "VendorwatchInventoryNotSaved",
        "the replay sensor's inventory saves succeed: the failure counter stays 0",
    ),
    (
        "VendorwatchEvidenceShed",
        "neither sensor fills its host table or passive DNS: every dropped_total of those stages is 0",
    ),
    (
        "VendorwatchInventoryBacklogGrowing",
        "the replay sensor's agency inventory is unreachable, but its oldest snapshot is seconds \
         old, never the 15 minutes the alert waits for (tests/postgres.rs ships for real)",
    ),
    (
        "VendorwatchInventoryBacklogFull",
        "the replay sensor's spool holds its few hosts with room to spare: nothing is turned away",
    ),
];

/// `promtool check metrics` output lines that are acceptable. None: the metric names are a
/// contract (DESIGN.md: `vendorwatch_` prefix, `_total` counters, units in the name, HELP on
/// every family), and every lint promtool knows (missing HELP, counters without `_total`,
/// non-base units, `_count`/`_sum`/`_bucket` on a non-histogram, camelCase, …) would break it.
const ACCEPTED_LINT: &[&str] = &[];

/// Series only a live capture exports (`replay` has no kernel ring, no interface and does not
/// mirror its worker queues). Checked when the live sensor runs (as root).
const LIVE_ONLY_MARKERS: &[&str] = &[
    "vendorwatch_queue_depth_batches",
    "stage=~\"kernel|interface\"",
];

fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(path: &str) -> PathBuf {
    root_dir().join("deploy").join(path)
}

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn tools_missing() -> Option<String> {
    let missing: Vec<&str> = ["prometheus", "promtool"]
        .into_iter()
        .filter(|t| !installed(t))
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "SKIPPED: {} not installed (Debian package `prometheus`, which the \
             project's test dependencies install; CI has it)",
            missing.join(" and ")
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Every child process this test started; all are killed when it goes out of scope.
struct Procs {
    children: Vec<(String, Child)>,
}

impl Procs {
    fn spawn(&mut self, name: &str, cmd: &mut Command) -> usize {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name.to_string(), child));
        self.children.len() - 1
    }

    fn exited(&mut self, index: usize) -> Option<std::process::ExitStatus> {
        self.children[index].1.try_wait().ok().flatten()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// --- a minimal HTTP/1.0 client (no HTTP crate among the dependencies) ---------------------

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || rest.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[(eol + 4 + size).min(rest.len())..];
    }
    out
}

fn http_get(port: u16, target: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

/// A Prometheus API call; returns `data` of a `"status":"success"` answer, or the error.
fn api(port: u16, target: &str) -> Result<Value, String> {
    let (status, body) = http_get(port, target)?;
    let v: Value = serde_json::from_str(&body)
        .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
    if v["status"] == "success" {
        Ok(v["data"].clone())
    } else {
        Err(format!(
            "HTTP {status}: {} {}",
            v["errorType"].as_str().unwrap_or(""),
            v["error"].as_str().unwrap_or(&body)
        ))
    }
}

/// Evaluates `expr` at the current time; returns the number of result elements.
fn query(port: u16, expr: &str) -> Result<usize, String> {
    let data = api(
        port,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    )?;
    Ok(match data["resultType"].as_str() {
        Some("vector") | Some("matrix") => data["result"].as_array().map_or(0, Vec::len),
        Some("scalar") | Some("string") => 1,
        other => return Err(format!("unexpected resultType {other:?}")),
    })
}

// --- expressions ------------------------------------------------------------------------

/// Removes every comparison against a number literal (`> 0`, `== 0`, `> bool 0.01`) outside
/// label matchers and strings: what is left is the value the alert compares.
fn strip_comparisons(expr: &str) -> String {
    let b = expr.as_bytes();
    let mut out = String::new();
    let (mut i, mut braces, mut quote) = (0usize, 0i32, None::<u8>);
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            out.push(c as char);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' | b'\'' | b'`' => quote = Some(c),
            b'{' => braces += 1,
            b'}' => braces -= 1,
            _ => {}
        }
        if braces == 0 {
            let op_len = if i + 1 < b.len() && matches!(&b[i..i + 2], b"==" | b"!=" | b">=" | b"<=")
            {
                2
            } else if c == b'>' || c == b'<' {
                1
            } else {
                0
            };
            if op_len > 0 {
                let mut j = i + op_len;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if expr[j..].starts_with("bool") {
                    j += 4;
                    while j < b.len() && b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                }
                let start = j;
                if j < b.len() && (b[j] == b'-' || b[j] == b'+') {
                    j += 1;
                }
                while j < b.len()
                    && (b[j].is_ascii_digit()
                        || b[j] == b'.'
                        || ((b[j] == b'e' || b[j] == b'E') && j > start)
                        || ((b[j] == b'-' || b[j] == b'+')
                            && j > start
                            && matches!(b[j - 1], b'e' | b'E')))
                {
                    j += 1;
                }
                let number = &expr[start..j];
                if number.parse::<f64>().is_ok() {
                    i = j;
                    continue;
                }
            }
        }
        out.push(c as char);
        i += 1;
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every `"expr"` string in the dashboard, with the title of the panel it belongs to.
fn dashboard_exprs(v: &Value, panel: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            let title = map
                .get("title")
                .and_then(Value::as_str)
                .filter(|_| map.contains_key("type"))
                .unwrap_or(panel);
            for (k, child) in map {
                if k == "expr" {
                    if let Some(s) = child.as_str() {
                        out.push((title.to_string(), s.to_string()));
                    }
                } else {
                    dashboard_exprs(child, title, out);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                dashboard_exprs(item, panel, out);
            }
        }
        _ => {}
    }
}

/// Grafana variables the dashboard may use, and what they become in this test.
fn substitute_grafana_vars(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("${instance}", ".+")
        .replace("$instance", ".+")
}

/// `vendorwatch_[a-z_]+` names in a text (not preceded by a name character).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find("vendorwatch_") {
        let start = from + pos;
        let mut end = start + "vendorwatch_".len();
        while end < b.len() && (b[end].is_ascii_lowercase() || b[end] == b'_') {
            end += 1;
        }
        let preceded = start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        if !preceded && end > start + "vendorwatch_".len() {
            names.insert(text[start..end].trim_end_matches('_').to_string());
        }
        from = end;
    }
    names
}

/// Sample and family names in a Prometheus text exposition.
fn exposed_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(n) = rest.split_whitespace().next() {
                names.insert(n.to_string());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

fn promtool_check_metrics(scrape: &str) -> Vec<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool check metrics");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("write the scrape to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut problems: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !ACCEPTED_LINT.iter().any(|a| l.contains(a)))
        .map(str::to_string)
        .collect();
    if !out.status.success() && problems.is_empty() {
        problems.push(format!("promtool check metrics exited with {}", out.status));
    }
    problems
}

// --- the tests --------------------------------------------------------------------------

#[test]
fn deploy_files_pass_promtool() {
    if let Some(why) = tools_missing() {
        eprintln!("{why}");
        return;
    }
    let checks: [(&str, Vec<String>); 3] = [
        (
            "promtool check config",
            vec![
                "check".into(),
                "config".into(),
                path_str(&deploy("prometheus/prometheus.yml")),
            ],
        ),
        (
            "promtool check rules",
            vec![
                "check".into(),
                "rules".into(),
                path_str(&deploy("prometheus/alerts.yml")),
            ],
        ),
        (
            "promtool test rules",
            vec![
                "test".into(),
                "rules".into(),
                path_str(&deploy("prometheus/alerts_test.yml")),
            ],
        ),
    ];
    for (what, args) in checks {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, text) = run("promtool", &args);
        assert!(ok, "{what} failed:\n{text}");
        eprintln!("{what}: ok");
    }
    // Every alert has a unit test (promtool only tests what the file names).
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).expect("alerts.yml");
    let tests = std::fs::read_to_string(deploy("prometheus/alerts_test.yml")).expect("tests");
    for name in alert_names(&rules) {
        let firing = tests
            .split("alertname: ")
            .skip(1)
            .filter(|chunk| chunk.starts_with(&format!("{name}\n")))
            .collect::<Vec<_>>();
        assert!(
            firing.iter().any(|c| c.contains("exp_labels")),
            "alerts_test.yml has no firing case for {name}"
        );
        assert!(
            firing.iter().any(|c| c.contains("exp_alerts: []")),
            "alerts_test.yml has no quiet case for {name}"
        );
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

fn alert_names(rules_yaml: &str) -> Vec<String> {
    rules_yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn dashboard_json_is_well_formed() {
    let text = std::fs::read_to_string(deploy("grafana/dashboard.json")).expect("dashboard.json");
    let dash: Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    assert!(
        dash["schemaVersion"].as_u64().unwrap_or(0) >= 38,
        "schemaVersion must be 38 or later (Grafana 10+)"
    );
    assert_eq!(dash["uid"], "vendorwatch", "a stable dashboard uid");
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));

    // The datasource variable defaults to the provisioned datasource uid.
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let var_names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    let ds_var = vars
        .iter()
        .find(|v| v["name"] == "DS_PROMETHEUS")
        .expect("a DS_PROMETHEUS datasource variable");
    assert_eq!(ds_var["type"], "datasource");
    assert_eq!(ds_var["query"], "prometheus");
    assert_eq!(ds_var["current"]["value"], "prometheus");
    let provisioned =
        std::fs::read_to_string(deploy("grafana/provisioning/datasources/prometheus.yml"))
            .expect("datasource provisioning");
    assert!(
        provisioned.contains("uid: prometheus"),
        "the provisioned datasource must have uid \"prometheus\""
    );
    let provider =
        std::fs::read_to_string(deploy("grafana/provisioning/dashboards/vendorwatch.yml"))
            .expect("dashboard provisioning");
    assert!(provider.contains("type: file") && provider.contains("path:"));

    // Panels: unique ids, inside the 24-column grid, Prometheus queries with unique refIds.
    let mut panels: Vec<&Value> = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        panels.push(p);
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
    }
    let mut ids = BTreeSet::new();
    let known_types = [
        "row",
        "stat",
        "timeseries",
        "table",
        "bargauge",
        "gauge",
        "piechart",
        "text",
    ];
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title} has no id"));
        assert!(ids.insert(id), "panel id {id} used twice");
        let kind = p["type"].as_str().unwrap_or("");
        assert!(known_types.contains(&kind), "panel {title}: type {kind:?}");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap_or(99), g["w"].as_u64().unwrap_or(99));
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap_or(0) > 0,
            "panel {title}: gridPos {g}"
        );
        if kind == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {title} must use the ${{DS_PROMETHEUS}} datasource"
        );
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: targets"));
        assert!(!targets.is_empty(), "panel {title} has no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                refs.insert(t["refId"].as_str().unwrap_or("")),
                "{title}: refId twice"
            );
            assert_eq!(
                t["datasource"]["uid"], "${DS_PROMETHEUS}",
                "{title}: target datasource"
            );
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: no expr"));
            // Only Grafana's own variables and the dashboard's are used.
            for (i, _) in expr.match_indices('$') {
                let name: String = expr[i + 1..]
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || var_names.contains(name.as_str()),
                    "panel {title}: unknown variable ${name} in {expr}"
                );
            }
        }
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    // The alerts' descriptions send the SOC to these panels by name.
    for needed in [
        "Detected hosts",
        "Drops by stage and reason",
        "Last rule load",
    ] {
        assert!(titles.contains(&needed), "no panel titled {needed:?}");
    }
}

#[test]
fn prometheus_scrapes_sensors_and_every_dashboard_and_alert_query_returns_data() {
    if let Some(why) = tools_missing() {
        eprintln!("{why}");
        return;
    }
    let root = root_dir();
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut procs = Procs {
        children: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = |name: &str| {
        std::fs::File::create(tmp.path().join(format!("{name}.log"))).expect("log file")
    };
    let read_log = |name: &str| {
        std::fs::read_to_string(tmp.path().join(format!("{name}.log"))).unwrap_or_default()
    };

    // 1. The sensors.
    let replay_port = free_port();
    let replay = procs.spawn(
        "vendorwatch replay",
        Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .env("VENDORWATCH_STATE", "none")
            .current_dir(&root)
            .args(["replay", "--metrics-addr"])
            .arg(format!("127.0.0.1:{replay_port}"))
            // An alerts file and an inventory, so that their output and save series exist.
            .arg("--alerts")
            .arg(tmp.path().join("replay-alerts.jsonl"))
            .arg("--state")
            .arg(tmp.path().join("replay-inventory.db"))
            // An agency inventory nobody answers for (port 9, closed), so that the shipping
            // series exist: failures, pending, oldest pending age.
            .args([
                "--inventory",
                "postgres://vendorwatch@127.0.0.1:9/agency?sslmode=disable",
            ])
            .args([
                "--inventory-wait",
                "0",
                "--sensor-id",
                "replay",
                "--site",
                "test",
            ])
            .args(["--linger", "40", "-q"])
            .args(["pcaps/tls.pcap", "pcaps/dns.pcap", "pcaps/http-proxy.pcap"])
            .stdout(log("replay"))
            .stderr(log("replay-err")),
    );
    let live_port = free_port();
    let want_live = is_root();
    let live = want_live.then(|| {
        procs.spawn(
            "vendorwatch live",
            Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
                .env("VENDORWATCH_STATE", "none")
                .args(["live", "-i", "lo", "--workers", "1", "-q", "--metrics-addr"])
                .arg(format!("127.0.0.1:{live_port}"))
                .stdout(log("live"))
                .stderr(log("live-err")),
        )
    });
    let scrape = |port: u16| -> Option<String> {
        match http_get(port, "/metrics") {
            Ok((200, body)) if body.contains("vendorwatch_build_info") => Some(body),
            _ => None,
        }
    };
    let mut scrapes: BTreeMap<&str, String> = BTreeMap::new();
    let sensors: Vec<(&str, u16, usize)> = std::iter::once(("replay", replay_port, replay))
        .chain(live.map(|i| ("live", live_port, i)))
        .collect();
    for &(name, port, index) in &sensors {
        loop {
            if let Some(body) = scrape(port) {
                scrapes.insert(name, body);
                break;
            }
            if let Some(st) = procs.exited(index) {
                panic!(
                    "vendorwatch {name} exited ({st}) before serving /metrics:\n{}",
                    read_log(&format!("{name}-err"))
                );
            }
            assert!(
                Instant::now() < deadline,
                "vendorwatch {name} did not serve /metrics on 127.0.0.1:{port}:\n{}",
                read_log(&format!("{name}-err"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if !want_live {
        eprintln!(
            "NOT CHECKED: live-only series ({}) need `vendorwatch live -i lo`, which needs root; \
             CI runs as root",
            LIVE_ONLY_MARKERS.join(", ")
        );
    }

    // 2. Prometheus with a config derived from the deploy one.
    let prom_port = free_port();
    let deploy_config =
        std::fs::read_to_string(deploy("prometheus/prometheus.yml")).expect("prometheus.yml");
    let targets: Vec<String> = sensors
        .iter()
        .map(|(_, port, _)| format!("\"127.0.0.1:{port}\""))
        .collect();
    let alerts_path = deploy("prometheus/alerts.yml");
    let mut config = deploy_config.clone();
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s".to_string()),
        (
            "evaluation_interval: 15s",
            "evaluation_interval: 1s".to_string(),
        ),
        ("scrape_timeout: 10s", "scrape_timeout: 1s".to_string()),
        (
            "targets: [\"127.0.0.1:9717\"]",
            format!("targets: [{}]", targets.join(", ")),
        ),
        (
            "  - alerts.yml",
            format!("  - \"{}\"", alerts_path.to_string_lossy()),
        ),
    ] {
        assert!(
            config.contains(from),
            "deploy/prometheus/prometheus.yml no longer contains `{from}`; update this test"
        );
        config = config.replace(from, &to);
    }
    let config_path = tmp.path().join("prometheus.yml");
    std::fs::write(&config_path, &config).expect("write the test prometheus.yml");
    let (ok, text) = run("promtool", &["check", "config", &path_str(&config_path)]);
    assert!(ok, "the derived config does not check:\n{text}\n{config}");
    let prom = procs.spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--log.level=warn")
            .stdout(log("prometheus"))
            .stderr(log("prometheus-err")),
    );
    let wait = |what: &str, procs: &mut Procs, check: &dyn Fn() -> Result<(), String>| loop {
        let last = match check() {
            Ok(()) => return,
            Err(e) => e,
        };
        if let Some(st) = procs.exited(prom) {
            panic!(
                "prometheus exited ({st}) while waiting for {what}:\n{}",
                read_log("prometheus-err")
            );
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {last}\nprometheus log:\n{}",
            read_log("prometheus-err")
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let instances: Vec<String> = sensors
        .iter()
        .map(|(_, port, _)| format!("127.0.0.1:{port}"))
        .collect();
    wait("three scrapes of every sensor", &mut procs, &|| {
        let data = api(
            prom_port,
            &format!(
                "/api/v1/query?query={}",
                percent_encode("count_over_time(up{job=\"vendorwatch\"}[1m]) >= 3 and up == 1")
            ),
        )?;
        let seen: BTreeSet<String> = data["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let missing: Vec<&String> = instances.iter().filter(|i| !seen.contains(*i)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not yet scraped 3 times: {missing:?}"))
        }
    });

    // 3. The banned-vendor alert fires for the replay sensor (for: 0m in the deploy file).
    let replay_instance = format!("127.0.0.1:{replay_port}");
    wait("VendorwatchBannedVendorHost to fire", &mut procs, &|| {
        let data = api(prom_port, "/api/v1/alerts")?;
        let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
        let firing = alerts.iter().any(|a| {
            a["labels"]["alertname"] == "VendorwatchBannedVendorHost"
                && a["labels"]["vendor"] == "kaspersky"
                && a["labels"]["instance"] == replay_instance.as_str()
                && a["labels"]["severity"] == "critical"
                && a["state"] == "firing"
        });
        if firing {
            Ok(())
        } else {
            Err(format!("alerts now: {}", Value::Array(alerts)))
        }
    });
    eprintln!("VendorwatchBannedVendorHost: firing for kaspersky on {replay_instance}");

    // 4. promtool check metrics, on scrapes taken now that the replay has finished (its
    //    detections exported) and the live sensor has run for seconds (queue depths mirrored).
    let (status, health) = http_get(replay_port, "/healthz").expect("replay /healthz");
    assert!(
        status == 503 && health.contains("replay finished"),
        "the replay sensor should be lingering after its replay: HTTP {status} {health}"
    );
    for &(name, port, _) in &sensors {
        let body = scrape(port).unwrap_or_else(|| panic!("cannot scrape the {name} sensor"));
        scrapes.insert(name, body);
    }
    for (name, body) in &scrapes {
        let problems = promtool_check_metrics(body);
        assert!(
            problems.is_empty(),
            "promtool check metrics on the {name} sensor's /metrics:\n  {}",
            problems.join("\n  ")
        );
        eprintln!("promtool check metrics ({name}): no problems");
    }

    // 5. Every dashboard expression returns data.
    let dash_text =
        std::fs::read_to_string(deploy("grafana/dashboard.json")).expect("dashboard.json");
    let dash: Value = serde_json::from_str(&dash_text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dash, "dashboard", &mut exprs);
    assert!(!exprs.is_empty(), "no expression found in the dashboard");
    let mut failures = Vec::new();
    for (panel, raw) in &exprs {
        let expr = substitute_grafana_vars(raw);
        if expr.contains('$') {
            failures.push(format!("[{panel}] unsubstituted variable in {raw}"));
            continue;
        }
        let live_only = LIVE_ONLY_MARKERS.iter().any(|m| expr.contains(m));
        match query(prom_port, &expr) {
            Ok(n) if n > 0 => eprintln!("  ok  {n:>3} series  [{panel}] {expr}"),
            Ok(_) if live_only && !want_live => {
                eprintln!("  --  not checked (needs the live sensor)  [{panel}] {expr}")
            }
            Ok(_) => failures.push(format!("[{panel}] no data: {expr}")),
            Err(e) => failures.push(format!("[{panel}] {e}: {expr}")),
        }
    }

    // 6. Every alert expression, as Prometheus loaded it.
    let rules = api(prom_port, "/api/v1/rules").expect("/api/v1/rules");
    let mut loaded: BTreeMap<String, String> = BTreeMap::new();
    for group in rules["groups"].as_array().cloned().unwrap_or_default() {
        for rule in group["rules"].as_array().cloned().unwrap_or_default() {
            if rule["type"] == "alerting" {
                assert_eq!(
                    rule["health"], "ok",
                    "rule {} is unhealthy: {}",
                    rule["name"], rule["lastError"]
                );
                loaded.insert(
                    rule["name"].as_str().unwrap_or("").to_string(),
                    rule["query"].as_str().unwrap_or("").to_string(),
                );
            }
        }
    }
    let alerts_text = std::fs::read_to_string(&alerts_path).expect("alerts.yml");
    let declared = alert_names(&alerts_text);
    assert_eq!(
        loaded.keys().cloned().collect::<BTreeSet<_>>(),
        declared.iter().cloned().collect::<BTreeSet<_>>(),
        "Prometheus must have loaded exactly the alerts of deploy/prometheus/alerts.yml"
    );
    for (name, _) in QUIET_BY_DESIGN {
        assert!(
            loaded.contains_key(*name),
            "QUIET_BY_DESIGN names {name}, which alerts.yml does not have"
        );
    }
    for (name, expr) in &loaded {
        let quiet = QUIET_BY_DESIGN.iter().find(|(n, _)| n == name);
        match (quiet, query(prom_port, expr)) {
            (_, Err(e)) => failures.push(format!("[alert {name}] {e}: {expr}")),
            (None, Ok(0)) => failures.push(format!("[alert {name}] no data: {expr}")),
            (None, Ok(n)) => eprintln!("  ok  {n:>3} series  [alert {name}] {expr}"),
            (Some((_, why)), Ok(n)) => {
                let stripped = strip_comparisons(expr);
                if stripped == expr.split_whitespace().collect::<Vec<_>>().join(" ") {
                    failures.push(format!(
                        "[alert {name}] listed as quiet by design but has no comparison to remove: {expr}"
                    ));
                    continue;
                }
                match query(prom_port, &stripped) {
                    Ok(m) if m > 0 => eprintln!(
                        "  ok  {n:>3} series raw, {m} without comparisons  [alert {name}] ({why}) {stripped}"
                    ),
                    Ok(_) => failures.push(format!(
                        "[alert {name}] no data even without its comparisons: {stripped}"
                    )),
                    Err(e) => failures.push(format!("[alert {name}] {e}: {stripped}")),
                }
            }
        }
    }

    // 7. Every metric the dashboard and the alerts name is exported.
    let exported: BTreeSet<String> = scrapes.values().flat_map(|s| exposed_names(s)).collect();
    let mut used = metric_names(&dash_text);
    used.extend(metric_names(&alerts_text));
    for name in &used {
        let known = exported.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| exported.contains(base))
            });
        let excused = !want_live && LIVE_ONLY_MARKERS.iter().any(|m| m == name);
        if !known && !excused {
            failures.push(format!(
                "metric {name} is used but not exported by the sensor"
            ));
        }
    }
    eprintln!(
        "{} dashboard expressions, {} alert expressions, {} metric names checked",
        exprs.len(),
        loaded.len(),
        used.len()
    );
    assert!(
        failures.is_empty(),
        "{} problem(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    // The replay sensor must still have been lingering (not a stale last scrape).
    assert!(
        procs.exited(replay).is_none(),
        "the replay sensor ended before the checks finished"
    );
}

#[test]
fn strip_comparisons_removes_only_comparisons_with_constants() {
    assert_eq!(strip_comparisons("a{job=\"x\"} > 0"), "a{job=\"x\"}");
    assert_eq!(
        strip_comparisons("up{job=\"v\"} == 0 or absent(up{job=\"v\"})"),
        "up{job=\"v\"} or absent(up{job=\"v\"})"
    );
    assert_eq!(
        strip_comparisons("(sum(rate(d{stage=~\"k|i\"}[5m])) / sum(rate(p[5m]))) > 0.01"),
        "(sum(rate(d{stage=~\"k|i\"}[5m])) / sum(rate(p[5m])))"
    );
    assert_eq!(
        strip_comparisons("rate(p[5m]) == 0 and on (instance) (time() - s) > 300"),
        "rate(p[5m]) and on (instance) (time() - s)"
    );
    assert_eq!(strip_comparisons("a > bool 1e-3"), "a");
    assert_eq!(strip_comparisons("a{l!=\"1\"} > b"), "a{l!=\"1\"} > b");
}

#[test]
fn metric_names_are_found_in_text() {
    let names = metric_names(
        "sum(rate(vendorwatch_dropped_total{x=\"1\"}[1m])) / vendorwatch_up; \
         myvendorwatch_x /var/lib/vendorwatch/a vendorwatch_stage_duration_seconds_bucket",
    );
    let got: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        got,
        [
            "vendorwatch_dropped_total",
            "vendorwatch_stage_duration_seconds_bucket",
            "vendorwatch_up"
        ]
    );
}
