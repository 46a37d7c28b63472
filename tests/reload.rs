//! Hot reload on a running sensor: `vendorwatch live` on the loopback interface, with `dig`
//! sending real DNS queries to 127.0.0.1, a rule directory and a configuration file the test
//! edits while the sensor runs.
//!
//! 1. The first rules find `s05.upd.kaspersky.com` (update) and `ksn.kaspersky-labs.com` (ksn).
//! 2. A broken pack (a syntax error on a known line) is written: `--watch` tries it, the error
//!    names the file and line, the failure is counted, and the old rules keep finding.
//! 3. A fixed pack with two more rules and a config with a suppression are written: both are
//!    in force without a restart (a new category alerts; the suppressed one is only recorded).
//! 4. SIGHUP reloads too, and does not end the process (its default action would).
//!
//! Then, each on a sensor of its own: a reload whose suppression names a category no pack has
//! fails with the file, line and closest category, and the suppression in force still
//! suppresses; and the "restart needed" notice compares the file with the settings in force
//! since start, reload after reload.
//!
//! Needs root for libpcap on `lo` (CI runs as root); skipped, loudly, otherwise.

mod common;

use common::{free_port, root_or_skip};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The value of an unlabelled-or-labelled sample line, e.g.
/// `vendorwatch_rule_reloads_total{result="failure"}`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

const SOURCE: &str =
    r#"sources = [{ document = "vendorwatch tests/reload.rs", retrieved = "2026-12-02" }]"#;

fn rule(id: &str, category: &str, severity: &str, name: &str) -> String {
    format!(
        "[[rule]]\nid = \"kaspersky.{category}.{id}\"\ncategory = \"{category}\"\nseverity = \"{severity}\"\n\
         confidence = \"high\"\ndescription = \"Test rule for {name}.\"\n{SOURCE}\nnames = [\"{name}\"]\n\n"
    )
}

fn pack(rules: &[String]) -> String {
    let mut s = String::from(
        "[pack]\nvendor = \"kaspersky\"\nname = \"Kaspersky\"\nlegal_basis = [\"DHS BOD 17-01\"]\n\
         enabled_by_default = true\ndescription = \"Reload test pack.\"\n\n",
    );
    for r in rules {
        s.push_str(r);
    }
    s
}

/// Writes `text` to `path` through a temporary file and a rename, as editors and
/// configuration management do, so the sensor never reads half a file.
fn write_whole(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn dig(name: &str) {
    // Nothing listens on 127.0.0.1:53: the query goes out once, is captured, and dig gives up.
    let st = Command::new("dig")
        .args(["+tries=1", "+time=1", "@127.0.0.1", name, "A"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("dig runs (bind9-dnsutils)");
    // dig exits 9 when no server answers: the query was sent, which is all we need.
    assert!(st.code().is_some(), "dig was killed: {st}");
}

struct Sensor {
    child: Child,
}

impl Drop for Sensor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, limit: Duration, stderr: &Path, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "timed out waiting for {what}; sensor stderr:\n{}",
        std::fs::read_to_string(stderr).unwrap_or_default()
    );
}

fn alert_names(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["category"].as_str().unwrap_or_default().to_string(),
                v["indicator"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn rules_and_suppressions_reload_without_a_restart_and_a_broken_file_changes_nothing() {
    if !root_or_skip("live capture on lo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("mkdir");
    let pack_path = rules_dir.join("kaspersky.toml");
    let config = dir.path().join("vendorwatch.toml");
    let (alerts, report, stderr) = (
        dir.path().join("alerts.jsonl"),
        dir.path().join("hosts.json"),
        dir.path().join("stderr.log"),
    );
    let update = rule("upd", "update", "high", "s05.upd.kaspersky.com");
    let ksn = rule("ksn", "ksn", "high", "ksn.kaspersky-labs.com");
    write_whole(&pack_path, &pack(&[update.clone(), ksn.clone()]));
    let base_config = format!(
        "rules = \"{}\"\nhome_net = [\"127.0.0.0/8\"]\nwatch = true\n",
        rules_dir.display()
    );
    write_whole(&config, &base_config);
    // The sensor drops to `nobody`: it must still be able to read what it reloads.
    for p in [dir.path(), rules_dir.as_path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    let port = free_port();
    let mut sensor = Sensor {
        child: Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .args(["live", "-i", "lo", "--workers", "1", "--user", "nobody"])
            .args(["--state", "none", "--bpf", "udp port 53"])
            .arg("--config")
            .arg(&config)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--alerts")
            .arg(&alerts)
            .arg("--report")
            .arg(&report)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("starts vendorwatch live"),
    };
    let metrics = || http_get(port, "/metrics").unwrap_or_default();
    let limit = Duration::from_secs(30);
    wait_until("/healthz", limit, &stderr, || {
        http_get(port, "/healthz")
            .is_some_and(|b| b.starts_with("HTTP/1.0 200") || b.starts_with("HTTP/1.1 200"))
    });

    // 1. The first rules.
    dig("s05.upd.kaspersky.com");
    wait_until("the update alert", limit, &stderr, || {
        alert_names(&alerts).contains(&("update".into(), "s05.upd.kaspersky.com".into()))
    });

    // 2. A broken pack: its last line has no closing quote.
    let broken =
        pack(std::slice::from_ref(&update)) + "[[rule]]\nid = \"kaspersky.activation.act\n";
    let bad_line = broken.lines().count();
    write_whole(&pack_path, &broken);
    wait_until("the failed reload", limit, &stderr, || {
        sample(
            &metrics(),
            "vendorwatch_rule_reloads_total{result=\"failure\"}",
        ) == Some(1.0)
    });
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    let failure = log
        .lines()
        .find(|l| l.contains("failed; the rules and suppressions in force stay"))
        .unwrap_or_else(|| panic!("no reload failure line in:\n{log}"));
    assert!(
        failure.contains(&format!("{}:{bad_line}", pack_path.display())),
        "the failure names the file and line: {failure}"
    );
    // The old rules are still in force: the ksn rule (not in the broken file) still finds.
    dig("ksn.kaspersky-labs.com");
    wait_until("the ksn alert under the old rules", limit, &stderr, || {
        alert_names(&alerts).contains(&("ksn".into(), "ksn.kaspersky-labs.com".into()))
    });

    // 3. Fixed rules with two more categories, and a suppression for one of them.
    let activation = rule("act", "activation", "high", "activation-v2.kaspersky.com");
    let portal = rule("www", "web-portal", "low", "www.kaspersky.com");
    write_whole(&pack_path, &pack(&[update, ksn, activation, portal]));
    write_whole(
        &config,
        &(base_config.clone()
            + "\n[[suppress]]\nreason = \"the comms team reads the vendor's pages\"\ncategories = [\"web-portal\"]\n"),
    );
    wait_until("the reload with the suppression", limit, &stderr, || {
        std::fs::read_to_string(&stderr)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.contains("reloaded after")
                    && l.contains("4 rule(s)")
                    && l.contains("1 suppression(s)")
            })
    });
    let ok_before_hup = sample(
        &metrics(),
        "vendorwatch_rule_reloads_total{result=\"success\"}",
    )
    .unwrap_or(0.0);
    assert!(ok_before_hup >= 1.0);
    dig("activation-v2.kaspersky.com");
    dig("www.kaspersky.com");
    wait_until(
        "the activation alert under the new rules",
        limit,
        &stderr,
        || {
            alert_names(&alerts)
                .contains(&("activation".into(), "activation-v2.kaspersky.com".into()))
        },
    );

    // 4. SIGHUP reloads (and must not end the process).
    let pid = sensor.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    wait_until("the SIGHUP reload", limit, &stderr, || {
        sample(
            &metrics(),
            "vendorwatch_rule_reloads_total{result=\"success\"}",
        ) == Some(ok_before_hup + 1.0)
    });
    assert!(
        sensor.child.try_wait().expect("wait").is_none(),
        "SIGHUP ended the sensor"
    );
    assert!(std::fs::read_to_string(&stderr)
        .unwrap_or_default()
        .contains("reloaded after SIGHUP"));

    // Stop and look at what was found.
    let log = stop(sensor, &stderr);
    let mut got = alert_names(&alerts);
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "activation".to_string(),
                "activation-v2.kaspersky.com".to_string()
            ),
            ("ksn".to_string(), "ksn.kaspersky-labs.com".to_string()),
            ("update".to_string(), "s05.upd.kaspersky.com".to_string()),
        ],
        "one alert per category, none for the suppressed one:\n{log}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let host = report["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["ip"] == "127.0.0.1"))
        .unwrap_or_else(|| panic!("127.0.0.1 in the report: {report:#}"));
    let portal = host["detections"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["category"] == "web-portal"))
        .unwrap_or_else(|| panic!("the suppressed finding is recorded: {host:#}"));
    assert_eq!(
        portal["suppressed"], "the comms team reads the vendor's pages",
        "{portal:#}"
    );
}

/// `vendorwatch live` on `lo` with `config` (DNS only, one worker, no inventory, metrics on
/// `port`), dropping to `nobody`, its log in `stderr`; `extra` goes on the command line.
fn start_live(
    config: &Path,
    port: u16,
    (alerts, report, stderr): (&Path, &Path, &Path),
    extra: &[&str],
) -> Sensor {
    // SIGHUP reopens the alerts file (for logrotate) once the sensor runs as `nobody`: as
    // logrotate's `create` would, leave it a file `nobody` can write.
    std::fs::write(alerts, "").expect("alerts file");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(alerts, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    }
    let sensor = Sensor {
        child: Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .args(["live", "-i", "lo", "--workers", "1", "--user", "nobody"])
            .args(["--state", "none", "--bpf", "udp port 53"])
            .args(extra)
            .arg("--config")
            .arg(config)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--alerts")
            .arg(alerts)
            .arg("--report")
            .arg(report)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).expect("stderr file"))
            .spawn()
            .expect("starts vendorwatch live"),
    };
    wait_until("/healthz", Duration::from_secs(30), stderr, || {
        http_get(port, "/healthz")
            .is_some_and(|b| b.starts_with("HTTP/1.0 200") || b.starts_with("HTTP/1.1 200"))
    });
    sensor
}

/// Makes `dir` and what it holds readable by the sensor once it runs as `nobody`.
fn readable_by_nobody(dirs: &[&Path]) {
    use std::os::unix::fs::PermissionsExt;
    for p in dirs {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// Sends SIGHUP and waits for the reload's outcome: the `n`-th log line of a reload after
/// SIGHUP, ok or failed.
fn hup_and_wait(sensor: &Sensor, n: usize, stderr: &Path) -> String {
    let pid = sensor.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    let outcomes = || -> Vec<String> {
        std::fs::read_to_string(stderr)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("reloaded after SIGHUP") || l.contains("reload after SIGHUP failed")
            })
            .map(str::to_string)
            .collect()
    };
    wait_until("the SIGHUP reload", Duration::from_secs(30), stderr, || {
        outcomes().len() >= n
    });
    outcomes()[n - 1].clone()
}

/// Stops the sensor with SIGTERM and waits for a clean exit; returns its log.
fn stop(mut sensor: Sensor, stderr: &Path) -> String {
    let pid = sensor.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let start = Instant::now();
    let status = loop {
        if let Some(st) = sensor.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "vendorwatch did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(stderr).unwrap_or_default();
    assert!(status.success(), "exit {status}:\n{log}");
    log
}

#[test]
fn a_reload_with_a_mistyped_suppression_fails_and_the_suppressions_in_force_stay() {
    if !root_or_skip("live capture on lo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("mkdir");
    readable_by_nobody(&[dir.path(), &rules_dir]);
    write_whole(
        &rules_dir.join("kaspersky.toml"),
        &pack(&[
            rule("upd", "update", "high", "s05.upd.kaspersky.com"),
            rule("ksn", "ksn", "high", "ksn.kaspersky-labs.com"),
        ]),
    );
    let config = dir.path().join("vendorwatch.toml");
    let head = format!(
        "rules = \"{}\"\nhome_net = [\"127.0.0.0/8\"]\n\n[[suppress]]\nreason = \"our own update mirror\"\n",
        rules_dir.display()
    );
    write_whole(&config, &(head.clone() + "categories = [\"update\"]\n"));
    let (alerts, report, stderr) = (
        dir.path().join("alerts.jsonl"),
        dir.path().join("hosts.json"),
        dir.path().join("stderr.log"),
    );
    let port = free_port();
    let sensor = start_live(&config, port, (&alerts, &report, &stderr), &[]);

    // Line 6: a category no pack has.
    write_whole(&config, &(head + "categories = [\"updaet\"]\n"));
    let failed = hup_and_wait(&sensor, 1, &stderr);
    assert!(
        failed.contains("failed; the rules and suppressions in force stay"),
        "{failed}"
    );
    assert!(
        failed.contains(&format!(
            "{}:6: suppress: categories: \"updaet\" is not a category of {}",
            config.display(),
            rules_dir.display()
        )) && failed.contains("did you mean \"update\"?"),
        "the failure names the file, line, value and closest category: {failed}"
    );
    assert_eq!(
        sample(
            &http_get(port, "/metrics").unwrap_or_default(),
            "vendorwatch_rule_reloads_total{result=\"failure\"}"
        ),
        Some(1.0)
    );

    // The suppression in force still suppresses the update finding; the ksn one alerts.
    dig("s05.upd.kaspersky.com");
    dig("ksn.kaspersky-labs.com");
    wait_until("the ksn alert", Duration::from_secs(30), &stderr, || {
        alert_names(&alerts).contains(&("ksn".into(), "ksn.kaspersky-labs.com".into()))
    });
    let log = stop(sensor, &stderr);
    assert_eq!(
        alert_names(&alerts),
        vec![("ksn".to_string(), "ksn.kaspersky-labs.com".to_string())],
        "no alert for the suppressed category:\n{log}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let update = report["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["ip"] == "127.0.0.1"))
        .and_then(|h| h["detections"].as_array())
        .and_then(|d| d.iter().find(|d| d["category"] == "update"))
        .unwrap_or_else(|| panic!("the suppressed finding is recorded: {report:#}"));
    assert_eq!(update["suppressed"], "our own update mirror", "{update:#}");
}

#[test]
fn the_restart_notice_compares_with_the_settings_in_force_since_start() {
    if !root_or_skip("live capture on lo") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    readable_by_nobody(&[dir.path()]);
    let config = dir.path().join("vendorwatch.toml");
    // `workers` is given on the command line too: the file's value is never in force.
    let file = |pdns_max: u32, workers: u32, comment: &str| {
        format!(
            "home_net = [\"127.0.0.0/8\"]\n{comment}\npdns_max = {pdns_max}\nworkers = {workers}\n"
        )
    };
    write_whole(&config, &file(1000, 2, ""));
    let (alerts, report, stderr) = (
        dir.path().join("alerts.jsonl"),
        dir.path().join("hosts.json"),
        dir.path().join("stderr.log"),
    );
    let sensor = start_live(&config, free_port(), (&alerts, &report, &stderr), &[]);
    let notice = "changed settings that only a restart applies";

    // 1. pdns_max changed: a restart is needed for it (not for workers: the command line's
    //    --workers wins, before and after a restart).
    write_whole(&config, &file(2000, 3, ""));
    let first = hup_and_wait(&sensor, 1, &stderr);
    assert!(first.contains(&format!("{notice}: pdns_max")), "{first}");
    assert!(!first.contains("workers"), "{first}");
    // 2. The file changed otherwise: pdns_max is still not in force.
    write_whole(&config, &file(2000, 3, "# touched"));
    let second = hup_and_wait(&sensor, 2, &stderr);
    assert!(second.contains(&format!("{notice}: pdns_max")), "{second}");
    // 3. pdns_max back to the value in force: nothing needs a restart.
    write_whole(&config, &file(1000, 3, "# touched"));
    let third = hup_and_wait(&sensor, 3, &stderr);
    assert!(third.contains("reloaded after SIGHUP"), "{third}");
    assert!(!third.contains(notice), "{third}");
    stop(sensor, &stderr);
}
