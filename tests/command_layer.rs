//! The command layer as a user meets it: log lines in the chosen format (`--log-format`,
//! `log_format`), and option defaults shown by `--help` from the one table that holds them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary, kept away from any shared inventory and from the caller's log filter.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vendorwatch"));
    c.env("VENDORWATCH_STATE", "none")
        .env_remove("VENDORWATCH_LOG")
        .env_remove("VENDORWATCH_CONFIG");
    c
}

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
}

/// A replay that warns (an agency label without an agency inventory) and prints nothing else.
fn warning_replay(extra: &[&str]) -> Output {
    bin()
        .args(["replay", "-q", "--sensor-id", "lab-1"])
        .args(extra)
        .arg(pcap("tls.pcap"))
        .output()
        .expect("runs")
}

/// Every line of stderr is one JSON object; returns them.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("stderr line is not one JSON object ({e}): {l:?}"))
        })
        .collect()
}

fn has_sensor_id_warning(lines: &[serde_json::Value]) -> bool {
    lines.iter().any(|l| {
        l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("--sensor-id and --site label the agency inventory"))
    })
}

#[test]
fn log_format_json_writes_each_warning_as_one_json_object_per_line() {
    let out = warning_replay(&["--log-format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines = json_lines(&out);
    assert!(has_sensor_id_warning(&lines), "{lines:?}");
    assert!(lines
        .iter()
        .all(|l| l["timestamp"].is_string() && l["target"].is_string()));
}

#[test]
fn log_format_is_a_configuration_key_too_and_the_command_line_wins() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("vendorwatch.toml");
    std::fs::write(&config, "log_format = \"json\"\n").expect("write");
    let out = warning_replay(&["--config", config.to_str().expect("utf-8")]);
    assert!(has_sensor_id_warning(&json_lines(&out)), "{out:?}");
    let out = warning_replay(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--log-format",
        "text",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "vendorwatch: --sensor-id and --site label the agency inventory; without --inventory they are not used",
    );
}

#[test]
fn log_lines_are_plain_text_by_default() {
    let out = warning_replay(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "vendorwatch: --sensor-id and --site label the agency inventory; without --inventory they are not used",
    );
    let out = bin()
        .args(["replay", "-q", "--log-format", "xml"])
        .arg(pcap("tls.pcap"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
}

/// Each default is written once (`Settings::defaults`) and `--help` shows it, per command
/// where they differ.
#[test]
fn help_shows_each_commands_own_defaults() {
    let help = |cmd: &str| {
        let out = bin().args([cmd, "--help"]).output().expect("runs");
        // Unwrapped, so a default that the terminal width split still reads as one.
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let replay = help("replay");
    let live = help("live");
    for text in [&replay, &live] {
        assert!(text.contains("[default: 8192]"), "max-flows: {text}");
        assert!(text.contains("[default: always]"), "alerts-fsync: {text}");
        assert!(text.contains("[default: 4789]"), "vxlan-ports: {text}");
        assert!(text.contains("[default: text]"), "log-format: {text}");
    }
    assert!(replay.contains("or `none` [default: none]"), "{replay}");
    assert!(replay.contains("or `off` [default: off]"), "{replay}");
    assert!(
        live.contains("or `none` [default: /var/lib/vendorwatch/inventory.db]"),
        "{live}"
    );
    assert!(
        live.contains("or `off` [default: 127.0.0.1:9717]"),
        "{live}"
    );
    assert!(live.contains("[default: 64]"), "buffer-mb: {live}");
}

/// The merge of command line, file and defaults carries numbers as JSON, which has no NaN or
/// infinity: such a value is refused on the command line, never dropped for the default.
#[test]
fn a_number_that_is_not_finite_is_refused_not_replaced_by_the_default() {
    for (flag, value) in [
        ("--alerts-max-mb", "NaN"),
        ("--alerts-max-mb", "inf"),
        ("--learn-min-specificity", "NaN"),
    ] {
        let out = bin()
            .args(["replay", "-q", flag, value])
            .arg(pcap("tls.pcap"))
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(flag),
            "{flag} {value}: {out:?}"
        );
    }
}

#[test]
fn log_format_json_writes_fatal_errors_as_json_lines_too() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("missing.pcap");
    let broken = tmp.path().join("broken.toml");
    std::fs::write(&broken, "max_flows = \"many\"\n").expect("write");
    let cases: [(&str, Vec<std::ffi::OsString>, &str); 3] = [
        (
            "a missing capture",
            vec!["replay".into(), missing.clone().into_os_string()],
            "no capture to read",
        ),
        (
            "an inventory path that is a directory",
            vec![
                "replay".into(),
                "--state".into(),
                tmp.path().as_os_str().to_owned(),
                pcap("dns.pcap").into_os_string(),
            ],
            "is a directory",
        ),
        (
            "a broken configuration file",
            vec![
                "replay".into(),
                "--config".into(),
                broken.clone().into_os_string(),
                pcap("dns.pcap").into_os_string(),
            ],
            "max_flows",
        ),
    ];
    for (what, args, says) in cases {
        let out = bin()
            .args(&args)
            .args(["--log-format", "json"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
        let lines = json_lines(&out);
        assert!(
            lines.iter().any(|l| l["level"] == "ERROR"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(says))),
            "{what}: {lines:?}"
        );
    }
}
