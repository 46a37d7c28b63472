//! What `replay`, `live` and `vendorwatch config check` hold a configuration file against
//! beyond its own text: the names its suppressions give (each vendor, category and rule id
//! must be one of the rule source's packs, selected or not, or the suppression would
//! silently suppress nothing), and, for `config check`, the `[live]` table's BPF filter
//! (compiled by libpcap) and the `user` the sensor drops to (looked up).
//!
//! Reload with a mistyped suppression is in tests/reload.rs (it needs a running sensor).

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// The binary, kept away from any shared inventory.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vendorwatch"));
    c.env("VENDORWATCH_STATE", "none");
    c
}

fn replay(config: &Path, extra: &[&str]) -> Output {
    bin()
        .args(["replay", "-q", "--config"])
        .arg(config)
        .args(extra)
        .arg(common::pcap_path("dns.pcap"))
        .output()
        .expect("runs")
}

fn config_check(config: &Path) -> Output {
    bin()
        .args(["config", "check"])
        .arg(config)
        .output()
        .expect("runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Line 5 has a vendor's typo, line 8 a category's (in a list over lines), line 10 a rule
/// id's; line 7's category is right.
const MISTYPED: &str = "home_net = [\"10.0.0.0/8\"]\n\n[[suppress]]\nreason = \"lab\"\nvendors = [\"kasperksy\"]\ncategories = [\n  \"update\",\n  \"updates\",\n]\nrules = [\"kaspersky.update.upd-server\"]\n";

#[test]
fn a_mistyped_suppression_is_refused_at_start_and_by_config_check_with_its_line_and_the_closest_name(
) {
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = tmp.path().join("c.toml");
    std::fs::write(&conf, MISTYPED).expect("write");
    let name = conf.display().to_string();
    let expected = [
        format!("{name}:5: suppress: vendors: \"kasperksy\" is not a vendor of the embedded rule packs, so it would suppress nothing; did you mean \"kaspersky\"? (vendors: china-carriers, dahua, hikvision, huawei, kaspersky, zte)"),
        format!("{name}:8: suppress: categories: \"updates\" is not a category of the embedded rule packs, so it would suppress nothing; did you mean \"update\"?"),
        format!("{name}:10: suppress: rules: \"kaspersky.update.upd-server\" is not a rule id of the embedded rule packs, so it would suppress nothing; did you mean \"kaspersky.update.upd-servers\"?"),
    ];

    let out = replay(&conf, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for line in &expected {
        assert!(err.contains(line.as_str()), "missing {line:?} in:\n{err}");
    }
    assert!(
        !err.contains(":7:"),
        "the right category is not a problem:\n{err}"
    );
    assert!(
        err.contains(&format!("vendorwatch config check {name}")),
        "says how to check it again:\n{err}"
    );

    let check = config_check(&conf);
    let err = stderr(&check);
    assert_eq!(check.status.code(), Some(1), "{err}");
    for line in &expected {
        assert!(err.contains(line.as_str()), "missing {line:?} in:\n{err}");
    }
    assert!(err.contains("3 problem(s)"), "{err}");
}

#[test]
fn a_suppression_for_a_vendor_not_watched_today_is_accepted_but_not_one_the_rules_lack() {
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = tmp.path().join("c.toml");
    std::fs::write(
        &conf,
        "[[suppress]]\nreason = \"the camera lab\"\nvendors = [\"hikvision\"]\ncategories = [\"device-cloud\", \"suspected\"]\nrules = [\"hikvision.suspected.learned-fingerprint\"]\n",
    )
    .expect("write");
    // Only kaspersky is watched; the hikvision pack is in the embedded packs all the same.
    let out = replay(&conf, &["--vendors", "kaspersky"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let check = config_check(&conf);
    assert!(check.status.success(), "{}", stderr(&check));

    // With --rules naming a directory of the kaspersky pack alone, hikvision is no vendor.
    let rules = tmp.path().join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    let kaspersky = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/kaspersky.toml");
    std::fs::copy(&kaspersky, rules.join("kaspersky.toml")).expect("copy");
    let out = replay(&conf, &["--rules", rules.to_str().expect("utf-8 path")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let says = format!(
        "{}:3: suppress: vendors: \"hikvision\" is not a vendor of {}",
        conf.display(),
        rules.display()
    );
    assert!(err.contains(&says), "{err}");
    // `config check --rules` checks against the packs the sensor will be given, as it does.
    let check = bin()
        .args(["config", "check", "--rules"])
        .arg(&rules)
        .arg(&conf)
        .output()
        .expect("runs");
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert!(stderr(&check).contains(&says), "{}", stderr(&check));
}

#[test]
fn config_check_compiles_the_live_filter_and_looks_up_the_user() {
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = tmp.path().join("c.toml");
    std::fs::write(
        &conf,
        "workers = 1\n\n[live]\ninterfaces = [\"eth1\"]\nbpf = \"udp prot 53\"\nuser = \"vendorwatch-no-such-user\"\n",
    )
    .expect("write");
    let check = config_check(&conf);
    let err = stderr(&check);
    assert_eq!(check.status.code(), Some(1), "{err}");
    let name = conf.display().to_string();
    assert!(
        err.contains(&format!(
            "{name}:5: bpf: the BPF filter \"udp prot 53\" does not compile: "
        )),
        "{err}"
    );
    // libpcap's own reason follows.
    assert!(err.contains("syntax error"), "{err}");
    assert!(
        err.contains(&format!(
            "{name}:6: user: \"vendorwatch-no-such-user\" does not exist on this machine: create it (`useradd --system --no-create-home vendorwatch-no-such-user`) or change `user`"
        )),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");

    std::fs::write(
        &conf,
        "[live]\ninterfaces = [\"eth1\"]\nbpf = \"udp port 53 or tcp port 443\"\nuser = \"nobody\"\n",
    )
    .expect("write");
    let check = config_check(&conf);
    assert!(check.status.success(), "{}", stderr(&check));
}
