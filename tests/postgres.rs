//! The agency inventory against a real PostgreSQL that each test starts itself (Debian's
//! `postgresql`: `initdb` into a temporary folder as the `postgres` user, a free port on
//! 127.0.0.1, password authentication): many sensors into one inventory, the server stopped
//! mid-run, a sensor killed mid-batch, least-privilege roles, TLS.
//!
//! Expected values are the sensors' own single-sensor reports (`--report` of the same run,
//! or of a run without `--inventory`): the agency view must be exactly their union.
//! Skipped (with "SKIPPED" printed) only when the PostgreSQL server binaries are absent;
//! `scripts/deps.sh test` installs them, so CI runs every test.

mod common;

use common::{bin, pcap_path};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "vw_admin";
const ADMIN_PW: &str = "admin-pw-9f3";
/// Generous: a loaded 2-core machine builds and tests in parallel.
const PATIENCE: Duration = Duration::from_secs(120);

fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One PostgreSQL server of our own.
struct Pg {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c
}

impl Pg {
    /// Starts a server, or returns None (after printing SKIPPED) without the binaries.
    fn start(name: &str, tls: bool) -> Option<Pg> {
        let Some(bin) = pg_bin() else {
            println!("SKIPPED {name}: no PostgreSQL server binaries (apt-get install postgresql)");
            return None;
        };
        let dir = tempfile::tempdir().expect("tmp");
        let owner = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(owner.success());
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, ADMIN_PW).expect("pwfile");
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&pwfile)
            .status();
        let data = dir.path().join("data");
        let out = as_postgres(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                ADMIN,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if tls {
            // A self-signed certificate for 127.0.0.1, and TLS required of every client.
            let cert = dir.path().join("server.crt");
            let key = data.join("server.key");
            let ok = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=127.0.0.1",
                ])
                .args(["-addext", "subjectAltName=IP:127.0.0.1"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .expect("openssl");
            assert!(
                ok.status.success(),
                "{}",
                String::from_utf8_lossy(&ok.stderr)
            );
            std::fs::copy(&cert, data.join("server.crt")).expect("cert");
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status();
            let _ = Command::new("chmod").arg("600").arg(&key).status();
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))
                .expect("conf");
            writeln!(conf, "ssl = on").expect("conf");
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
            )
            .expect("hba");
        }
        let pg = Pg {
            bin,
            port: free_port(),
            dir,
        };
        pg.up();
        pg.admin("CREATE DATABASE inv");
        Some(pg)
    }

    fn up(&self) {
        let out = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.path().display()
            ))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "120", "start"])
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    fn down(&self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-t", "120", "-m", "fast", "stop"])
            .output();
    }

    fn url(&self, user: &str, password: Option<&str>) -> String {
        match password {
            Some(pw) => format!(
                "postgres://{user}:{pw}@127.0.0.1:{}/inv?sslmode=disable",
                self.port
            ),
            None => format!(
                "postgres://{user}@127.0.0.1:{}/inv?sslmode=disable",
                self.port
            ),
        }
    }

    fn admin_url(&self) -> String {
        self.url(ADMIN, Some(ADMIN_PW))
    }

    /// A connection as the administrator, over the Unix socket (trusted).
    fn client(&self, db: &str) -> postgres::Client {
        let mut cfg = postgres::Config::new();
        cfg.host_path(self.dir.path())
            .port(self.port)
            .user(ADMIN)
            .dbname(db);
        cfg.connect(postgres::NoTls).expect("connect as admin")
    }

    fn admin(&self, sql: &str) {
        self.client("postgres").batch_execute(sql).expect(sql);
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}

/// (site, ip, vendor, category) → (count, first_seen, last_seen, sensors).
type View = BTreeMap<(String, String, String, String), (u64, String, String, BTreeSet<String>)>;

/// The union of single-sensor reports: (report, site, sensor).
fn union(reports: &[(Value, &str, String)]) -> View {
    let mut v = View::new();
    for (r, site, sensor) in reports {
        for h in r["hosts"].as_array().expect("hosts") {
            for d in h["detections"].as_array().expect("detections") {
                let key = (
                    site.to_string(),
                    h["ip"].as_str().expect("ip").to_string(),
                    d["vendor"].as_str().expect("vendor").to_string(),
                    d["category"].as_str().expect("category").to_string(),
                );
                let first = d["first_seen"].as_str().expect("first").to_string();
                let last = d["last_seen"].as_str().expect("last").to_string();
                let e = v
                    .entry(key)
                    .or_insert((0, first.clone(), last.clone(), BTreeSet::new()));
                e.0 += d["count"].as_u64().expect("count");
                e.1 = e.1.clone().min(first);
                e.2 = e.2.clone().max(last);
                e.3.insert(sensor.clone());
            }
        }
    }
    v
}

/// The agency view as `vendorwatch hosts --inventory URL --format json` prints it.
fn agency(url: &str, extra: &[&str]) -> (View, Value) {
    let out = bin()
        .args(["hosts", "--format", "json", "--inventory", url])
        .args(extra)
        .output()
        .expect("hosts");
    assert!(
        out.status.success(),
        "hosts --inventory: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut v = View::new();
    for h in r["hosts"].as_array().expect("hosts") {
        let sensors: BTreeSet<String> = h["sensors"]
            .as_array()
            .expect("sensors")
            .iter()
            .map(|s| s.as_str().expect("sensor").to_string())
            .collect();
        for d in h["detections"].as_array().expect("detections") {
            let key = (
                h["site"].as_str().expect("site").to_string(),
                h["ip"].as_str().expect("ip").to_string(),
                d["vendor"].as_str().expect("vendor").to_string(),
                d["category"].as_str().expect("category").to_string(),
            );
            let prev = v.insert(
                key.clone(),
                (
                    d["count"].as_u64().expect("count"),
                    d["first_seen"].as_str().expect("first").to_string(),
                    d["last_seen"].as_str().expect("last").to_string(),
                    sensors.clone(),
                ),
            );
            assert!(prev.is_none(), "{key:?} listed twice");
        }
    }
    (v, r)
}

/// Witnesses and detections held by the hosts-level union (the same host seen by two
/// sensors of one site has both as witnesses, whatever detections each saw).
fn witnesses(reports: &[(Value, &str, String)]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut w: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (r, site, sensor) in reports {
        for h in r["hosts"].as_array().expect("hosts") {
            w.entry((site.to_string(), h["ip"].as_str().expect("ip").to_string()))
                .or_default()
                .insert(sensor.clone());
        }
    }
    w
}

fn fix_sensors(mut v: View, w: &BTreeMap<(String, String), BTreeSet<String>>) -> View {
    for (k, e) in v.iter_mut() {
        e.3 = w[&(k.0.clone(), k.1.clone())].clone();
    }
    v
}

/// Runs `n` sensors at once, each replaying its capture into the inventory; returns their
/// single-sensor reports.
fn sensors_into(
    pg: &Pg,
    captures: &[(&str, &'static str)],
    tag: &str,
) -> Vec<(Value, &'static str, String)> {
    let dir = tempfile::tempdir().expect("tmp");
    let url = pg.admin_url();
    let mut children = Vec::new();
    for (i, (capture, site)) in captures.iter().enumerate() {
        let sensor = format!("{tag}-{i}");
        let state = dir.path().join(format!("{sensor}.db"));
        let report = dir.path().join(format!("{sensor}.json"));
        let child = bin()
            .args([
                "replay",
                "-q",
                "--inventory",
                &url,
                "--sensor-id",
                &sensor,
                "--site",
                site,
            ])
            .arg("--state")
            .arg(&state)
            .arg("--report")
            .arg(&report)
            .arg(pcap_path(capture))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        children.push((child, report, *site, sensor));
    }
    let mut out = Vec::new();
    for (child, report, site, sensor) in children {
        let o = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{sensor}: {stderr}");
        assert!(
            !stderr.contains(ADMIN_PW),
            "the password was printed: {stderr}"
        );
        let r: Value =
            serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
        assert_eq!(r["sensor"], serde_json::json!({"id": sensor, "site": site}));
        out.push((r, site, sensor));
    }
    out
}

#[test]
fn two_and_eight_sensors_give_exactly_the_union_of_their_reports() {
    let Some(pg) = Pg::start("two_and_eight_sensors", false) else {
        return;
    };
    let url = pg.admin_url();
    // Two sensors of one site, overlapping hosts (the same scenario's addresses).
    let two = sensors_into(&pg, &[("dns.pcap", "hq"), ("tls.pcap", "hq")], "two");
    let (got, _) = agency(&url, &[]);
    let want = fix_sensors(union(&two), &witnesses(&two));
    assert_eq!(got, want);
    assert!(
        got.values().any(|e| e.3.len() == 2),
        "some host is seen by both sensors"
    );

    // Eight more, at once, two of them at another site with the same private addresses.
    let eight = sensors_into(
        &pg,
        &[
            ("dns.pcap", "hq"),
            ("tls.pcap", "hq"),
            ("quic.pcap", "hq"),
            ("http-proxy.pcap", "hq"),
            ("dns-forwarder.pcap", "hq"),
            ("dhcp-ptr.pcap", "hq"),
            ("tls12-certs.pcap", "branch"),
            ("multi-link.pcapng", "branch"),
        ],
        "eight",
    );
    let all: Vec<_> = two.iter().cloned().chain(eight.iter().cloned()).collect();
    let (got, report) = agency(&url, &[]);
    assert_eq!(got, fix_sensors(union(&all), &witnesses(&all)));
    // One host per (site, address): 10.10.1.11 is a host at each site.
    let hosts: Vec<(String, String)> = report["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            (
                h["site"].as_str().expect("site").into(),
                h["ip"].as_str().expect("ip").into(),
            )
        })
        .collect();
    let distinct: BTreeSet<_> = hosts.iter().cloned().collect();
    assert_eq!(hosts.len(), distinct.len(), "every host once");
    assert!(distinct.contains(&("hq".into(), "10.10.1.11".into())));
    assert!(distinct.contains(&("branch".into(), "10.10.1.11".into())));

    // Filters: a site, a sensor.
    let (branch, _) = agency(&url, &["--site", "branch"]);
    let only_branch: Vec<_> = all.iter().filter(|r| r.1 == "branch").cloned().collect();
    assert_eq!(
        branch,
        fix_sensors(union(&only_branch), &witnesses(&only_branch))
    );
    let (one, _) = agency(&url, &["--sensor", "eight-2"]);
    let only_one: Vec<_> = all.iter().filter(|r| r.2 == "eight-2").cloned().collect();
    assert_eq!(one, fix_sensors(union(&only_one), &witnesses(&only_one)));

    // The agency's alert decision: one per (site, host, vendor, category), all of them.
    let mut c = pg.client("inv");
    let decided: i64 = c
        .query_one("SELECT count(*) FROM vw_alerts", &[])
        .expect("alerts")
        .get(0);
    let alerted: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT DISTINCT site, ip, vendor, category FROM vw_witness_detections WHERE alerted_at IS NOT NULL) d",
            &[],
        )
        .expect("alerted")
        .get(0);
    assert_eq!(decided, alerted);
    assert!(decided > 0);

    // Every query of the Grafana agency dashboard runs and returns rows (macros as Grafana
    // expands them: $__timeFilter(col) to a BETWEEN, $site to the quoted list of sites).
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/agency.json"),
        )
        .expect("agency.json"),
    )
    .expect("agency.json is JSON");
    let mut sql: Vec<String> = dash["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| v["query"].as_str().expect("query").to_string())
        .collect();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            sql.push(t["rawSql"].as_str().expect("rawSql").to_string());
        }
    }
    assert!(sql.len() >= 6);
    for q in &sql {
        let mut expanded = q.replace("$site", "'hq','branch'");
        while let Some(start) = expanded.find("$__timeFilter(") {
            let end = start + expanded[start..].find(')').expect("closing parenthesis");
            let col = expanded[start + "$__timeFilter(".len()..end].to_string();
            expanded.replace_range(
                start..=end,
                &format!("{col} BETWEEN '2000-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z'"),
            );
        }
        assert!(!expanded.contains('$'), "unexpanded macro in {q}");
        let rows = c
            .query(expanded.as_str(), &[])
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        assert!(!rows.is_empty(), "no rows: {q}");
    }

    // The HTML report of the agency names the sites and the witnesses.
    let html = tempfile::NamedTempFile::new().expect("tmp");
    let out = bin()
        .args(["report", "--inventory", &url, "--html"])
        .arg(html.path())
        .output()
        .expect("report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(html.path()).expect("html");
    assert!(
        page.contains("eight-6") && page.contains("branch"),
        "sites and sensors in the report"
    );
}

/// The pcap records of a capture without its 24-byte file header (to feed one stream).
fn records(capture: &str) -> Vec<u8> {
    let bytes = std::fs::read(pcap_path(capture)).expect("capture");
    bytes[24..].to_vec()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn spool_rows(state: &Path) -> i64 {
    rusqlite::Connection::open(state)
        .and_then(|c| c.query_row("SELECT count(*) FROM agency_spool", [], |r| r.get(0)))
        .unwrap_or(-1)
}

fn witness_rows(pg: &Pg, sensor: &str) -> i64 {
    let mut cfg = postgres::Config::new();
    cfg.host_path(pg.dir.path())
        .port(pg.port)
        .user(ADMIN)
        .dbname("inv")
        .connect_timeout(Duration::from_secs(5));
    cfg.connect(postgres::NoTls)
        .and_then(|mut c| {
            c.query_one(
                "SELECT count(*) FROM vw_witness_hosts WHERE sensor_id = $1",
                &[&sensor],
            )
        })
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

#[test]
fn the_server_stopped_mid_run_loses_and_duplicates_nothing() {
    let Some(pg) = Pg::start("server_stopped", false) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("s.db");
    let report = dir.path().join("s.json");
    let metrics_port = free_port();
    // One replay from a pipe, fed in three parts: before, during and after the outage.
    let mut child = bin()
        .args([
            "replay",
            "-q",
            "--inventory",
            &pg.admin_url(),
            "--sensor-id",
            "pipe",
            "--site",
            "hq",
        ])
        .arg("--alerts")
        .arg(dir.path().join("alerts.jsonl"))
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .arg("--state")
        .arg(&state)
        .arg("--report")
        .arg(&report)
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let dns = std::fs::read(pcap_path("dns.pcap")).expect("dns");
    stdin.write_all(&dns).expect("write");
    stdin.flush().expect("flush");
    wait_for("the first hosts on the server", || {
        witness_rows(&pg, "pipe") > 0
    });
    pg.down();
    stdin.write_all(&records("tls.pcap")).expect("write");
    stdin.flush().expect("flush");
    // Saved locally and waiting in the spool while the server is down.
    wait_for("snapshots waiting in the spool", || spool_rows(&state) > 0);
    // … and the shipper has tried and failed (counted, by reason).
    wait_for("a failed connect counted", || {
        common::http_get(metrics_port, "/metrics").is_some_and(|(_, body)| {
            body.lines().any(|l| {
                l.starts_with("vendorwatch_inventory_ship_failures_total{")
                    && l.contains("reason=\"connect\"")
                    && !l.ends_with(" 0")
            })
        })
    });
    pg.up();
    stdin.write_all(&records("http-proxy.pcap")).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("reachable again"),
        "the outage and the recovery are said: {stderr}"
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let mine = vec![(r, "hq", "pipe".to_string())];
    let (got, _) = agency(&pg.admin_url(), &[]);
    assert_eq!(got, fix_sensors(union(&mine), &witnesses(&mine)));
    assert_eq!(
        witness_rows(&pg, "pipe"),
        mine[0].0["hosts"].as_array().expect("hosts").len() as i64,
        "one row per host, none twice"
    );
    assert_eq!(spool_rows(&state), 0, "the spool drained");
    // Its alerts say which sensor and site raised them.
    let alerts = std::fs::read_to_string(dir.path().join("alerts.jsonl")).expect("alerts");
    assert!(alerts.lines().count() > 0);
    for line in alerts.lines() {
        let a: Value = serde_json::from_str(line).expect("alert");
        assert_eq!(a["sensor"], serde_json::json!({"id": "pipe", "site": "hq"}));
    }
}

#[test]
fn a_sensor_killed_mid_batch_resumes_without_loss_or_duplicates() {
    let Some(pg) = Pg::start("killed_mid_batch", false) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    // What a single sensor reports for the capture.
    let alone = dir.path().join("alone.json");
    let ok = bin()
        .args(["replay", "-q", "--state", "none", "--report"])
        .arg(&alone)
        .arg(pcap_path("dns.pcap"))
        .status()
        .expect("replay");
    assert!(ok.success());
    let alone: Value =
        serde_json::from_slice(&std::fs::read(&alone).expect("report")).expect("json");
    // The schema first, then hold one alert decision's row in an open transaction: the
    // sensor's batch holding that host blocks half-way, inside its transaction.
    let mut admin = pg.client("inv");
    let cfg: postgres::Config = pg.admin_url().parse().expect("url");
    vendorwatch::hosts::postgres::migrate(&cfg, &mut admin).expect("migrate");
    let host = &alone["hosts"][3];
    let ip: std::net::IpAddr = host["ip"].as_str().expect("ip").parse().expect("ip");
    let (vendor, category) = (
        host["detections"][0]["vendor"]
            .as_str()
            .expect("vendor")
            .to_string(),
        host["detections"][0]["category"]
            .as_str()
            .expect("category")
            .to_string(),
    );
    let mut blocker = pg.client("inv");
    let mut tx = blocker.transaction().expect("tx");
    tx.execute(
        "INSERT INTO vw_alerts (site, ip, vendor, category, sensor_id, alerted_at) VALUES ('hq', $1, $2, $3, 'blocker', now())",
        &[&ip, &vendor, &category],
    )
    .expect("insert");
    let state = dir.path().join("k.db");
    let mut child = bin()
        .args([
            "replay",
            "-q",
            "--inventory",
            &pg.admin_url(),
            "--sensor-id",
            "k",
            "--site",
            "hq",
            "--inventory-batch",
            "1",
        ])
        .arg("--state")
        .arg(&state)
        .arg(pcap_path("dns.pcap"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for("the shipper blocked mid-batch", || {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vendorwatch' AND wait_event_type = 'Lock'",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) > 0)
            .unwrap_or(false)
    });
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    tx.rollback().expect("rollback");
    let before = witness_rows(&pg, "k");
    assert!(
        before < alone["hosts"].as_array().expect("hosts").len() as i64,
        "killed before everything was shipped ({before})"
    );
    // Started again on the same inventory, with nothing new to read: it ships the rest.
    let empty = dir.path().join("empty.pcap");
    std::fs::write(
        &empty,
        &std::fs::read(pcap_path("dns.pcap")).expect("dns")[..24],
    )
    .expect("empty");
    let out = bin()
        .args([
            "replay",
            "-q",
            "--inventory",
            &pg.admin_url(),
            "--sensor-id",
            "k",
            "--site",
            "hq",
        ])
        .arg("--state")
        .arg(&state)
        .arg(&empty)
        .output()
        .expect("again");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mine = vec![(alone, "hq", "k".to_string())];
    let (got, _) = agency(&pg.admin_url(), &[]);
    assert_eq!(got, fix_sensors(union(&mine), &witnesses(&mine)));
    assert_eq!(
        witness_rows(&pg, "k"),
        mine[0].0["hosts"].as_array().expect("hosts").len() as i64
    );
}

#[test]
fn a_full_spool_is_bounded_counted_and_resynced_when_the_server_returns() {
    let Some(pg) = Pg::start("full_spool", false) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("f.db");
    let report = dir.path().join("f.json");
    // The server is down for the whole first run: at most 2 of the 6 hosts wait.
    pg.down();
    let out = bin()
        .args([
            "replay",
            "-q",
            "--inventory",
            &pg.admin_url(),
            "--sensor-id",
            "f",
            "--site",
            "hq",
        ])
        .args(["--inventory-backlog", "2", "--inventory-wait", "2"])
        .arg("--state")
        .arg(&state)
        .arg("--report")
        .arg(&report)
        .arg(pcap_path("dns.pcap"))
        .output()
        .expect("replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("turned 4 host snapshot(s) away"),
        "{stderr}"
    );
    assert!(stderr.contains("2 still waiting"), "{stderr}");
    assert_eq!(spool_rows(&state), 2, "the spool holds its bound, no more");
    // Back up: the next run on the same inventory ships the two, then the four others.
    pg.up();
    let empty = dir.path().join("empty.pcap");
    std::fs::write(
        &empty,
        &std::fs::read(pcap_path("dns.pcap")).expect("dns")[..24],
    )
    .expect("empty");
    let out = bin()
        .args([
            "replay",
            "-q",
            "--inventory",
            &pg.admin_url(),
            "--sensor-id",
            "f",
            "--site",
            "hq",
        ])
        .args(["--inventory-backlog", "2"])
        .arg("--state")
        .arg(&state)
        .arg(&empty)
        .output()
        .expect("again");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let mine = vec![(r, "hq", "f".to_string())];
    let (got, _) = agency(&pg.admin_url(), &[]);
    assert_eq!(got, fix_sensors(union(&mine), &witnesses(&mine)));
    assert_eq!(spool_rows(&state), 0);
}

/// Everything the server holds about the agency, as text (update times left out).
fn server_state(c: &mut postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for q in [
        "SELECT site, host(ip), sensor_id, inventory_id, seq::TEXT, host::TEXT FROM vw_witness_hosts ORDER BY 1, 2, 3, 4",
        "SELECT site, host(ip), sensor_id, vendor, category, count::TEXT, first_seen::TEXT, last_seen::TEXT, alerted_at::TEXT FROM vw_witness_detections ORDER BY 1, 2, 3, 4, 5",
        "SELECT site, host(ip), vendor, category, sensor_id, alerted_at::TEXT FROM vw_alerts ORDER BY 1, 2, 3, 4",
        "SELECT sensor_id, inventory_id, high_water::TEXT FROM vw_ship_marks ORDER BY 1, 2",
    ] {
        for r in c.query(q, &[]).expect(q) {
            out.push(
                (0..r.len())
                    .map(|i| r.get::<_, Option<String>>(i).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out
}

#[test]
fn a_batch_applied_twice_changes_nothing() {
    let Some(pg) = Pg::start("batch_twice", false) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("t.db");
    // A spool of real snapshots: a replay while the server is down keeps them all.
    pg.down();
    let out = bin()
        .args([
            "replay",
            "-q",
            "--inventory",
            &pg.admin_url(),
            "--sensor-id",
            "t",
            "--site",
            "hq",
            "--inventory-wait",
            "0",
        ])
        .arg("--state")
        .arg(&state)
        .arg(pcap_path("tls.pcap"))
        .output()
        .expect("replay");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg.up();
    let reader = vendorwatch::hosts::spool::SpoolReader::open(&state).expect("spool");
    let (batch, _) = reader.batch(100).expect("batch");
    assert_eq!(batch.len(), 6);
    let cfg: postgres::Config = pg.admin_url().parse().expect("url");
    let mut c = pg.client("inv");
    vendorwatch::hosts::postgres::migrate(&cfg, &mut c).expect("migrate");
    let first =
        vendorwatch::hosts::postgres::apply_batch(&cfg, &mut c, "inv-1", &batch).expect("apply");
    assert_eq!(first.applied, 6);
    assert!(first.alerts_first > 0);
    let once = server_state(&mut c);
    // Again (a sensor killed after the commit, before it forgot its rows), and half of it.
    let again =
        vendorwatch::hosts::postgres::apply_batch(&cfg, &mut c, "inv-1", &batch).expect("again");
    assert_eq!((again.applied, again.skipped), (0, 6));
    vendorwatch::hosts::postgres::apply_batch(&cfg, &mut c, "inv-1", &batch[..3]).expect("half");
    assert_eq!(server_state(&mut c), once);
    // The same snapshots from another sensor of the site: new witnesses, no new agency alert.
    let other: Vec<_> = batch
        .iter()
        .cloned()
        .map(|mut s| {
            s.sensor_id = "u".into();
            s
        })
        .collect();
    let second =
        vendorwatch::hosts::postgres::apply_batch(&cfg, &mut c, "inv-2", &other).expect("other");
    assert_eq!(second.alerts_first, 0);
    assert_eq!(second.alerts_duplicate, first.alerts_first);
}

#[test]
fn an_inventory_kept_before_joining_the_agency_is_shipped_whole() {
    let Some(pg) = Pg::start("joining", false) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("old.db");
    let report = dir.path().join("old.json");
    // A sensor that kept its own inventory for a while, without --inventory …
    let out = bin()
        .args(["replay", "-q", "--state"])
        .arg(&state)
        .arg("--report")
        .arg(&report)
        .arg(pcap_path("tls.pcap"))
        .output()
        .expect("replay");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // … joins the agency with nothing new to read: every host it knows is shipped.
    let empty = dir.path().join("empty.pcap");
    std::fs::write(
        &empty,
        &std::fs::read(pcap_path("tls.pcap")).expect("tls")[..24],
    )
    .expect("empty");
    let out = bin()
        .args([
            "replay",
            "-q",
            "--inventory",
            &pg.admin_url(),
            "--sensor-id",
            "old",
            "--site",
            "hq",
        ])
        .arg("--state")
        .arg(&state)
        .arg(&empty)
        .output()
        .expect("join");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let mine = vec![(r, "hq", "old".to_string())];
    let (got, _) = agency(&pg.admin_url(), &[]);
    assert_eq!(got, fix_sensors(union(&mine), &witnesses(&mine)));
}

#[test]
fn sensor_and_analyst_roles_have_least_privilege_and_passwords_stay_secret() {
    let Some(pg) = Pg::start("roles", false) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    // The owner creates the schema once, then the roles.
    let made = bin()
        .args(["hosts", "--create-schema", "--inventory", &pg.admin_url()])
        .output()
        .expect("create schema");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&made.stdout), "no host matches\n");
    let mut admin = pg.client("inv");
    let roles = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/postgres/roles.sql"),
    )
    .expect("roles.sql");
    admin.batch_execute(&roles).expect("roles.sql");
    admin
        .batch_execute("ALTER ROLE vendorwatch_sensor PASSWORD 'sensor-pw-1'; ALTER ROLE vendorwatch_analyst PASSWORD 'analyst-pw-2'")
        .expect("passwords");
    // A sensor with the password in a file ships.
    let pwfile = dir.path().join("sensor.pw");
    std::fs::write(&pwfile, "sensor-pw-1\n").expect("pw");
    let report = dir.path().join("r.json");
    let out = bin()
        .args([
            "replay",
            "--inventory",
            &pg.url("vendorwatch_sensor", None),
            "--sensor-id",
            "s",
            "--site",
            "hq",
        ])
        .arg("--inventory-password-file")
        .arg(&pwfile)
        .arg("--state")
        .arg(dir.path().join("s.db"))
        .arg("--report")
        .arg(&report)
        .arg(pcap_path("tls.pcap"))
        .output()
        .expect("sensor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("sensor-pw-1"));
    // The analyst (password from PGPASSWORD) reads hosts and the report.
    let analyst = pg.url("vendorwatch_analyst", None);
    let hosts = bin()
        .args(["hosts", "--inventory", &analyst, "--format", "csv"])
        .env("PGPASSWORD", "analyst-pw-2")
        .output()
        .expect("hosts");
    assert!(
        hosts.status.success(),
        "{}",
        String::from_utf8_lossy(&hosts.stderr)
    );
    assert!(String::from_utf8_lossy(&hosts.stdout).contains("10.10.1.11"));
    let html = dir.path().join("r.html");
    let rep = bin()
        .args(["report", "--inventory", &analyst, "--html"])
        .arg(&html)
        .env("PGPASSWORD", "analyst-pw-2")
        .output()
        .expect("report");
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    // … but cannot write: a sensor with the analyst's role keeps its spool and says why.
    let out = bin()
        .args([
            "replay",
            "--inventory",
            &analyst,
            "--sensor-id",
            "a",
            "--site",
            "hq",
            "--inventory-wait",
            "3",
        ])
        .arg("--state")
        .arg(dir.path().join("a.db"))
        .arg(pcap_path("dns.pcap"))
        .env("PGPASSWORD", "analyst-pw-2")
        .output()
        .expect("analyst sensor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains("still waiting"), "{stderr}");
    assert!(!stderr.contains("analyst-pw-2"));
    assert!(spool_rows(&dir.path().join("a.db")) > 0);
    let mut c = postgres::Config::new();
    c.host("127.0.0.1")
        .port(pg.port)
        .user("vendorwatch_analyst")
        .password("analyst-pw-2")
        .dbname("inv");
    let mut analyst_conn = c.connect(postgres::NoTls).expect("analyst");
    let denied = analyst_conn
        .execute("DELETE FROM vw_witness_hosts", &[])
        .expect_err("analyst cannot write");
    assert_eq!(
        denied.code(),
        Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    // A wrong password is refused, and not printed either.
    let out = bin()
        .args([
            "hosts",
            "--inventory",
            &pg.url("vendorwatch_analyst", Some("wrong-pw-3")),
        ])
        .output()
        .expect("hosts");
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("wrong-pw-3"));
}

#[test]
fn tls_to_the_server_is_verified_against_the_given_ca() {
    let Some(pg) = Pg::start("tls", true) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let ca = pg.dir.path().join("server.crt");
    let url = format!(
        "postgres://{ADMIN}:{ADMIN_PW}@127.0.0.1:{}/inv?sslmode=require",
        pg.port
    );
    // Without the CA the self-signed certificate is not trusted: nothing is shipped.
    let out = bin()
        .args([
            "replay",
            "-q",
            "--inventory",
            &url,
            "--sensor-id",
            "t",
            "--inventory-wait",
            "3",
        ])
        .arg("--state")
        .arg(dir.path().join("untrusted.db"))
        .arg(pcap_path("tls.pcap"))
        .output()
        .expect("replay");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With it, the sensor ships over TLS (the server accepts nothing else: hostssl only).
    let out = bin()
        .args([
            "replay",
            "-q",
            "--inventory",
            &url,
            "--sensor-id",
            "t",
            "--site",
            "hq",
        ])
        .arg("--inventory-ca")
        .arg(&ca)
        .arg("--state")
        .arg(dir.path().join("trusted.db"))
        .arg(pcap_path("tls.pcap"))
        .output()
        .expect("replay");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hosts = bin()
        .args(["hosts", "--inventory", &url, "--format", "csv"])
        .arg("--inventory-ca")
        .arg(&ca)
        .output()
        .expect("hosts");
    assert!(
        hosts.status.success(),
        "{}",
        String::from_utf8_lossy(&hosts.stderr)
    );
    assert!(String::from_utf8_lossy(&hosts.stdout).contains("hq,10.10.1.11"));
}
