//! Evasion cases on captures of real Linux servers (`pcaps/gen-evasion.sh`): a real ClientHello
//! cut into crafted TCP segments (the first segment sent last; every segment in reverse order;
//! overlapping out-of-order copies that Linux resolves by letting the later, longer one win) and
//! HTTP requests after an empty line (the first of a connection, and one after a POST body on a
//! keep-alive connection), and DPI-evasion "fakes": a decoy ClientHello at the real one's
//! sequence number, sent first, that Linux does not take (TTL 1 through a router, no ACK flag, an
//! MD5 signature the SYN lacked). A second round from the clients' own sockets: ClientHello
//! records of version 0x03ff and 0x0300, a ClientHello padded to 30,000 bytes, a decoy name in
//! one of the two ClientHellos around a HelloRetryRequest, a request smuggled in the body of a
//! POST with both Transfer-Encoding and Content-Length (and its control), and QUIC decoys: an
//! Initial with a wrong UDP checksum before the real one, the hello before a Retry, and a hello
//! padded over 27 Initials. A third
//! round, `sni-malformed`: server_name extensions no TLS library sends (two extensions, two names
//! in one list, a NUL inside a name, bytes past the list), each refused by `openssl s_server`
//! with a fatal alert, whose every name must be reported. A fourth round, `round4`, of
//! DPI-circumvention techniques the server's kernel sees through: a RST in the window but not at
//! the next sequence number, with a wrong checksum, or with TTL 1 through a router; a decoy
//! ClientHello far outside the window; a segment that starts before the next expected byte; the
//! ClientHello in IPv4 fragments (in order, in reverse, and a datagram with a partial overlap
//! that Linux drops before the client sends it again); the ClientHello in several TLS records.
//! Its second set, `round4b`, where Linux reads the segments otherwise than their plain bytes say:
//! an urgent byte inside the SNI (read out of band) and its reverse, a decoy that PAWS drops, a
//! fragment lying wholly inside an earlier one (dropped as a duplicate) on the real datagram and
//! on a decoy datagram sent before the real ClientHello. And three of those on a tap that
//! carries only the client's side (`pcaps/gen-oneway.sh`): the PAWS decoy and both
//! HelloRetryRequest cases, whose server's answer is in the two-way capture. A fifth set, `dup`:
//! fakes sent as the real packet's twin (its bytes up to past the headers, IP ID and transport
//! checksum field included, so that a SPAN duplicate filter would take the real packet for the
//! fake's copy): a TCP fake with the real segment's checksum (wrong for it), one with TTL 1
//! through a router, and a QUIC decoy Initial with the real datagram's checksum. A sixth,
//! `dnsport`: TLS and QUIC clients bound to a DNS port (53, 5353) as their own. A seventh, `ack`:
//! a fake whose acknowledgment number the server refuses (bytes it never sent; less than its
//! SYN-ACK), a decoy as data on the SYN that the SYN-ACK does not acknowledge, a client that
//! raised its SYN's TTL alone (its hello looks like a decoy that expires), and a bare ACK of bytes never sent carrying a timestamp far ahead, which would make
//! the real hello look PAWS-old if it were believed, and a fake sent ahead of the SYN-ACK (on
//! a tap of both sides, and of the client's side only). Each server's answer is in its capture. Expectations are `pcaps/expected-evasion.json`, derived by
//! `pcaps/expected_evasion.py` from tshark and, where tshark is fooled, from the server's answer
//! or from the part of the capture the server took (one test re-derives them), never from
//! vendorwatch.
//!
//! `VW_EVASION_BIN=/path/to/vendorwatch` replays with another build (an older one, to see these
//! cases fail where it had the defects) instead of this crate's binary.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> PathBuf {
    std::env::var_os("VW_EVASION_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vendorwatch")))
}

fn expected(capture: &str) -> Value {
    let text = std::fs::read_to_string(root().join("pcaps/expected-evasion.json"))
        .expect("pcaps/expected-evasion.json");
    let all: Value = serde_json::from_str(&text).expect("JSON");
    assert!(
        all[capture].is_object(),
        "{capture} is not in the expectations"
    );
    all[capture].clone()
}

struct Run {
    summary: String,
    events: Vec<Value>,
    alerts: Vec<Value>,
}

fn replay(capture: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, alerts) = (
        dir.path().join("events.jsonl"),
        dir.path().join("alerts.jsonl"),
    );
    let out = Command::new(binary())
        .env("VENDORWATCH_STATE", "none")
        .args(["replay", "--workers", "2", "--events"])
        .arg(&events)
        .arg("--alerts")
        .arg(&alerts)
        .arg(root().join("pcaps").join(capture))
        .output()
        .expect("runs vendorwatch");
    assert!(out.status.success(), "{capture}: {out:?}");
    let lines = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    };
    Run {
        summary: String::from_utf8_lossy(&out.stderr).into_owned(),
        events: lines(&events),
        alerts: lines(&alerts),
    }
}

/// (client address, kind, value) of a server name.
type Named = (String, String, String);
/// (host address, vendor, category) of an alert.
type Alerted = (String, String, String);

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn named(list: &Value) -> Vec<Named> {
    let mut v: Vec<Named> = list
        .as_array()
        .expect("a list of names")
        .iter()
        .map(|n| (text(&n["host"]), text(&n["kind"]), text(&n["value"])))
        .collect();
    v.sort();
    v
}

/// The server names (TLS, QUIC, HTTP) of the run's events, with repetition.
fn server_names(run: &Run) -> Vec<Named> {
    let mut v: Vec<Named> = run
        .events
        .iter()
        .filter(|e| {
            matches!(
                e["kind"].as_str(),
                Some("tls_sni" | "quic_sni" | "http_host")
            )
        })
        .map(|e| {
            (
                text(&e["flow"]["src_ip"]),
                text(&e["kind"]),
                text(&e["value"]),
            )
        })
        .collect();
    v.sort();
    v
}

fn alerted(run: &Run) -> Vec<Alerted> {
    let mut v: Vec<Alerted> = run
        .alerts
        .iter()
        .map(|a| {
            (
                text(&a["host"]["ip"]),
                text(&a["vendor"]),
                text(&a["category"]),
            )
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn alerts_expected(exp: &Value) -> Vec<Alerted> {
    let mut v: Vec<Alerted> = exp["alerts"]
        .as_array()
        .expect("a list of alerts")
        .iter()
        .map(|a| (text(&a["host"]), text(&a["vendor"]), text(&a["category"])))
        .collect();
    v.sort();
    v
}

/// Replays the capture and checks its names and alerts against the expectations, and that no
/// name the server did not receive is reported (as an event of any kind or in an alert).
fn check(capture: &str) -> Run {
    let exp = expected(capture);
    let run = replay(capture);
    let want = named(&exp["names"]);
    assert!(!want.is_empty(), "{capture}: no names expected");
    assert_eq!(server_names(&run), want, "{capture}: {}", run.summary);
    assert_eq!(
        alerted(&run),
        alerts_expected(&exp),
        "{capture}: {:?}",
        run.alerts
    );
    for (_, _, value) in named(&exp["not_received"]) {
        assert!(
            !run.events.iter().any(|e| e["value"] == value.as_str()),
            "{capture}: {value} is reported, but the server did not receive it: {:?}",
            run.events
        );
        assert!(
            !run.alerts
                .iter()
                .any(|a| a["indicator"]["value"] == value.as_str()),
            "{capture}: an alert names {value}: {:?}",
            run.alerts
        );
    }
    run
}

#[test]
fn a_client_hello_in_20_segments_whose_first_comes_last_is_read() {
    check("evasion-first-last.pcap");
}

#[test]
fn a_client_hello_in_8_byte_segments_in_reverse_order_is_read() {
    check("evasion-reverse.pcap");
}

#[test]
fn an_out_of_order_overlap_is_read_as_linux_resolved_it_not_as_the_decoy() {
    // Decoy bytes first, then a longer copy from the same sequence number with the real name:
    // the server answered with its handshake, so it received dnl-01.geo.kaspersky.com.
    let exp = expected("evasion-overlap-replace.pcap");
    assert_eq!(
        named(&exp["not_received"]),
        [(
            "10.40.1.12".into(),
            "tls_sni".into(),
            "updates.example-corp.com".into()
        )]
    );
    check("evasion-overlap-replace.pcap");
}

#[test]
fn the_overlap_control_reports_the_decoy_the_server_received_and_no_alert() {
    // The other way round: the server received the decoy and refused it with a fatal alert, so
    // the vendor name, although its bytes are in the capture, must not be reported.
    let exp = expected("evasion-overlap-replace-control.pcap");
    assert_eq!(
        named(&exp["not_received"]),
        [(
            "10.40.1.12".into(),
            "tls_sni".into(),
            "dnl-01.geo.kaspersky.com".into()
        )]
    );
    let run = check("evasion-overlap-replace-control.pcap");
    assert!(run.alerts.is_empty(), "{:?}", run.alerts);
}

/// The count of an anomaly in the run's summary (its `anomalies` line; 0 when absent).
fn anomaly(summary: &str, reason: &str) -> u64 {
    summary
        .lines()
        .find(|l| l.trim_start().starts_with("anomalies"))
        .and_then(|l| {
            l.split(", ")
                .find_map(|part| {
                    part.trim()
                        .rsplit_once(' ')
                        .filter(|(k, _)| k.ends_with(reason))
                })
                .and_then(|(_, n)| n.replace(',', "").parse().ok())
        })
        .unwrap_or(0)
}

/// A capture with a fake in front of the real ClientHello: the server answered with its
/// handshake, so it received dnl-01.geo.kaspersky.com from `client`; the decoy of the fake (which
/// tshark, keeping the first copy, reads) is reported nowhere, and the fake is counted as
/// `anomaly`.
fn check_fake(capture: &str, client: &str, anomaly_name: &str) {
    let exp = expected(capture);
    let name = |value: &str| (client.to_string(), "tls_sni".to_string(), value.to_string());
    assert_eq!(named(&exp["names"]), [name("dnl-01.geo.kaspersky.com")]);
    assert_eq!(
        named(&exp["not_received"]),
        [name("updates.example-corp.com")]
    );
    let run = check(capture);
    assert!(
        run.alerts
            .iter()
            .any(|a| a["vendor"] == "kaspersky"
                && a["indicator"]["value"] == "dnl-01.geo.kaspersky.com"),
        "{capture}: no kaspersky alert for dnl-01.geo.kaspersky.com: {:?}",
        run.alerts
    );
    assert!(
        anomaly(&run.summary, anomaly_name) >= 1,
        "{capture}: {anomaly_name} is not counted: {}",
        run.summary
    );
}

#[test]
fn a_fake_client_hello_that_expires_at_a_router_is_not_read() {
    // TTL 1 (the SYN had 64): the router in front of the server dropped it; the tap is on the
    // router's client-facing side, where the fake still passes.
    check_fake("evasion-fake-ttl.pcap", "10.41.1.12", "transport_ttl_short");
}

#[test]
fn a_fake_client_hello_without_ack_is_not_read() {
    // Flags PSH only after the handshake: Linux discards it.
    check_fake(
        "evasion-fake-noack.pcap",
        "10.40.1.12",
        "transport_ack_missing",
    );
}

#[test]
fn a_fake_client_hello_with_an_unexpected_md5_signature_is_not_read() {
    // A TCP-MD5 option on a connection whose SYN had none: Linux drops it (TCPMD5Unexpected).
    check_fake(
        "evasion-fake-md5.pcap",
        "10.40.1.12",
        "transport_signature_unexpected",
    );
}

/// A fake capture where the decoy may be reported as well as the real name (a stack other than
/// the server's may have taken it): the real name, dnl-01.geo.kaspersky.com from 10.40.1.12, is
/// read and the alerts are the expected ones.
fn check_real_read(capture: &str) -> Run {
    let exp = expected(capture);
    let real = (
        "10.40.1.12".to_string(),
        "tls_sni".to_string(),
        "dnl-01.geo.kaspersky.com".to_string(),
    );
    assert_eq!(named(&exp["names"]), std::slice::from_ref(&real));
    let run = replay(capture);
    assert!(server_names(&run).contains(&real), "{:?}", run.events);
    assert_eq!(alerted(&run), alerts_expected(&exp), "{:?}", run.alerts);
    run
}

#[test]
fn a_fake_client_hello_acknowledging_bytes_the_server_never_sent_is_not_read() {
    // Every TCP discards a segment that acknowledges bytes not sent (RFC 9293 §3.10.7.4).
    check_fake(
        "evasion-fake-ack-unsent.pcap",
        "10.40.1.12",
        "transport_ack_unsent",
    );
}

#[test]
fn a_fake_client_hello_acknowledging_less_than_the_syn_ack_is_not_read() {
    // Linux discards it (RFC 5961 §5.2, a challenge ACK). Another stack may take it: the
    // sensor holds it back until the server's answer tells (here the real hello's copy came).
    check_fake(
        "evasion-fake-ack-old.pcap",
        "10.40.1.12",
        "transport_ack_old",
    );
}

#[test]
fn a_decoy_on_the_syn_that_the_syn_ack_does_not_acknowledge_is_not_read() {
    // No Fast Open cookie: Linux acknowledges the SYN alone and drops its data; the real
    // hello at the first byte is what s_server answered (tshark reads the SYN's decoy). The
    // decoy may be reported too: a hello on a SYN is named when it arrives, for a tap that
    // never shows the SYN-ACK.
    let exp = expected("evasion-syn-data.pcap");
    assert_eq!(
        named(&exp["tshark_reads"]),
        named(&exp["not_received"]),
        "the capture does not fool tshark"
    );
    check_real_read("evasion-syn-data.pcap");
}

#[test]
fn a_fake_client_hello_sent_ahead_of_the_syn_ack_is_not_read() {
    // Sent right after the SYN, it acknowledges a guess (the server's ISN is not known yet):
    // the server, in SYN-RECEIVED, refuses it with a RST at that number, and the real hello
    // follows the handshake at the same sequence number. The tap shows the fake before the
    // SYN-ACK (whose first copy was lost on the server's side; tshark reads the fake).
    check_fake(
        "evasion-pre-synack.pcap",
        "10.40.1.12",
        "transport_ack_unsent",
    );
}

#[test]
fn a_fake_read_unanswered_is_read_again_when_the_late_syn_ack_refuses_it() {
    // The first SYN and the fake expire at a router past the tap (TTL 1): the server sees
    // neither and says nothing, so after 9 s of silence the sensor has read the fake as a tap
    // of the client's side only would. Then the SYN again (same ISN), whose SYN-ACK the fake
    // did not acknowledge, and the real hello at the fake's sequence number: read too. The
    // fake's name, read before anything could tell, stays reported (no vendor's: no alert).
    let capture = "evasion-pre-synack-late.pcap";
    let exp = expected(capture);
    let run = replay(capture);
    let mut both = named(&exp["names"]);
    both.extend(named(&exp["not_received"]));
    both.sort();
    assert_eq!(server_names(&run), both, "{capture}: {}", run.summary);
    assert_eq!(
        alerted(&run),
        alerts_expected(&exp),
        "{capture}: {:?}",
        run.alerts
    );
    assert!(
        run.alerts
            .iter()
            .all(|a| a["indicator"]["value"] == "dnl-01.geo.kaspersky.com"),
        "{capture}: {:?}",
        run.alerts
    );
    assert_eq!(
        anomaly(&run.summary, "transport_ack_unsent"),
        1,
        "{capture}: {}",
        run.summary
    );
}

#[test]
fn on_a_tap_of_the_client_side_only_a_fake_ahead_of_the_syn_ack_does_not_hide_the_real_hello() {
    // evasion-pre-synack.pcap without the server's packets: no SYN-ACK judges either copy of
    // the connection's first bytes, so neither may hide the other; both names are reported
    // (the fake's is no vendor's: no alert for it).
    check_both_copies_reported("evasion-pre-synack-oneway.pcap");
}

/// On a tap of the client's side only: the names the server received and those it did not
/// are all reported (the tap cannot tell which copy the server took), and the alerts are the
/// expected ones.
fn check_both_copies_reported(capture: &str) -> Run {
    let exp = expected(capture);
    let run = replay(capture);
    let got = server_names(&run);
    for name in named(&exp["names"])
        .iter()
        .chain(&named(&exp["not_received"]))
    {
        assert!(
            got.contains(name),
            "{capture}: {name:?} not reported: {got:?}"
        );
    }
    assert_eq!(alerted(&run), alerts_expected(&exp), "{:?}", run.alerts);
    run
}

#[test]
fn a_client_that_raised_its_syns_ttl_is_read_once_the_server_acknowledges_it() {
    // The client's own socket: IP_TTL 255 for the SYN, 64 for the ClientHello, which then looks
    // like a decoy that expires on the way; it reached s_server, which acknowledged it.
    let run = check_round4("evasion-ttl-raised-syn.pcap", 1);
    assert!(
        anomaly(&run.summary, "transport_ttl_short") >= 1,
        "{}",
        run.summary
    );
}

#[test]
fn a_bare_ack_the_server_discards_does_not_make_the_real_hello_look_old() {
    // Its timestamp is far ahead; Linux discards it for its acknowledgment number before it
    // takes the timestamp, and reads the real hello (PAWSEstab +0). (A bare ACK changes
    // nothing read but the latest timestamp, and is not counted.)
    let run = check_round4("evasion-paws-ack.pcap", 1);
    assert_eq!(
        anomaly(&run.summary, "transport_timestamp_old"),
        0,
        "{}",
        run.summary
    );
}

/// A `dup` capture's fake and real packet: the expectations record the pair (found by the
/// deriver in the capture's bytes, so the capture does test a duplicate filter), and the real
/// packet is not counted as a copy of the fake.
fn check_twin(capture: &str) -> Run {
    let exp = expected(capture);
    let twins = exp["twins"].as_array().map_or(0, Vec::len);
    assert_eq!(twins, 1, "{capture}: {exp}");
    let run = replay(capture);
    assert_eq!(
        anomaly(&run.summary, "duplicates"),
        0,
        "{capture}: the real packet was dropped as the fake's copy: {}",
        run.summary
    );
    run
}

#[test]
fn a_fake_with_the_real_segments_checksum_does_not_have_it_dropped_as_its_copy() {
    // The server's kernel dropped the fake for its checksum (it was computed for the real bytes).
    check_twin("evasion-dup-fake-csum.pcap");
    check_fake(
        "evasion-dup-fake-csum.pcap",
        "10.40.1.12",
        "transport_checksum_bad",
    );
}

#[test]
fn a_ttl_fake_twin_of_the_real_segment_does_not_have_it_dropped_as_its_copy() {
    // Its checksum is right (two bytes of its key share balance the name), TTL 1: the router in
    // front of the server dropped it.
    check_twin("evasion-dup-fake-ttl.pcap");
    check_fake(
        "evasion-dup-fake-ttl.pcap",
        "10.41.1.12",
        "transport_ttl_short",
    );
}

#[test]
fn a_quic_decoy_twin_of_the_real_initial_does_not_have_it_dropped_as_its_copy() {
    check_twin("evasion-dup-quic-decoy.pcap");
    check_quic("evasion-dup-quic-decoy.pcap");
}

#[test]
fn client_hellos_from_a_dns_port_are_read_as_tls() {
    // curl bound port 53, then 5353, as its own and asked nginx on 443 for two vendor names.
    let run = check("evasion-dnsport-tls.pcap");
    assert_eq!(
        anomaly(&run.summary, "dns_implausible"),
        0,
        "{}",
        run.summary
    );
}

#[test]
fn a_quic_hello_from_a_dns_port_is_read_as_quic() {
    // aioquic from port 5353 (mDNS's) to the server's 443: its Initials are no DNS messages.
    let run = check("evasion-dnsport-quic.pcap");
    assert_eq!(
        anomaly(&run.summary, "dns_implausible"),
        0,
        "{}",
        run.summary
    );
}

#[test]
fn http_requests_after_an_empty_line_are_read() {
    // The first request of one connection, and the request after a POST body on a keep-alive
    // connection, both preceded by CRLF.
    check("evasion-http-empty-line.pcap");
}

#[test]
fn client_hellos_in_records_of_version_0x03ff_and_0x0300_are_read() {
    // Two connections; the strict s_server answered both with its handshake. tshark does not
    // read the 0x03ff record.
    let exp = expected("evasion-record-version.pcap");
    assert_eq!(named(&exp["names"]).len(), 2);
    check("evasion-record-version.pcap");
}

#[test]
fn a_client_hello_padded_to_30000_bytes_in_two_records_is_read() {
    check("evasion-big-hello.pcap");
}

/// Both ClientHellos of a HelloRetryRequest exchange, `first` in the one before it: each is
/// read, so the name the server goes on with (the second's) is reported, and so is the
/// first's.
fn check_hrr(capture: &str, first: &str, second: &str) {
    let exp = expected(capture);
    let name = |value: &str| {
        (
            "10.40.1.11".to_string(),
            "tls_sni".to_string(),
            value.to_string(),
        )
    };
    let mut want = vec![name(first), name(second)];
    want.sort();
    assert_eq!(named(&exp["names"]), want);
    let run = check(capture);
    assert!(
        run.alerts
            .iter()
            .any(|a| a["indicator"]["value"] == "dnl-01.geo.kaspersky.com"),
        "{capture}: no alert for dnl-01.geo.kaspersky.com: {:?}",
        run.alerts
    );
}

#[test]
fn the_second_client_hello_after_a_hello_retry_request_is_read() {
    // A decoy first, then the real name after the server's HelloRetryRequest: s_server logged
    // both and went on with the second.
    check_hrr(
        "evasion-hrr-decoy-real.pcap",
        "updates.example-corp.com",
        "dnl-01.geo.kaspersky.com",
    );
}

#[test]
fn a_decoy_in_the_second_client_hello_does_not_hide_the_first() {
    check_hrr(
        "evasion-hrr-real-decoy.pcap",
        "dnl-01.geo.kaspersky.com",
        "updates.example-corp.com",
    );
}

#[test]
fn a_request_smuggled_after_a_post_with_transfer_encoding_and_content_length_is_not_read() {
    // nginx refused the POST (400) and closed: the GET with the vendor Host in its body (which
    // tshark reads) was never served.
    let exp = expected("evasion-http-te-cl.pcap");
    assert_eq!(
        named(&exp["not_received"]),
        [(
            "10.40.1.11".into(),
            "http_host".into(),
            "activation-v2.kaspersky.com".into()
        )]
    );
    let run = check("evasion-http-te-cl.pcap");
    assert!(run.alerts.is_empty(), "{:?}", run.alerts);
    assert!(
        anomaly(&run.summary, "http_framing_ambiguous") >= 1,
        "http_framing_ambiguous is not counted: {}",
        run.summary
    );
}

#[test]
fn the_te_cl_control_a_request_after_a_chunked_post_is_read() {
    // The same bytes without Content-Length: nginx served both requests.
    let run = check("evasion-http-te-cl-control.pcap");
    assert!(
        run.alerts
            .iter()
            .any(|a| a["indicator"]["value"] == "activation-v2.kaspersky.com"),
        "no alert for activation-v2.kaspersky.com: {:?}",
        run.alerts
    );
}

/// A QUIC capture with a decoy hello the server did not take (`not_received`, which tshark
/// reads instead): the names the server took are read, each once, and alerted on. The decoy may
/// be reported as well: a passive sensor reads every hello of a connection that differs from
/// the one it read, since it cannot always tell which one the server took. No other name is.
fn check_quic(capture: &str) -> Run {
    let exp = expected(capture);
    let run = replay(capture);
    let want = named(&exp["names"]);
    let decoys = named(&exp["not_received"]);
    assert!(!want.is_empty() && !decoys.is_empty(), "{capture}: {exp}");
    let got: Vec<Named> = server_names(&run)
        .into_iter()
        .filter(|n| !decoys.contains(n))
        .collect();
    assert_eq!(got, want, "{capture}: {:?}", run.events);
    assert_eq!(
        alerted(&run),
        alerts_expected(&exp),
        "{capture}: {:?}",
        run.alerts
    );
    run
}

#[test]
fn a_quic_decoy_initial_with_a_wrong_udp_checksum_does_not_hide_the_real_one() {
    check_quic("evasion-quic-decoy.pcap");
}

#[test]
fn the_quic_initial_after_a_retry_is_read() {
    // The hello before the server's Retry names a decoy; the server parsed only the one after
    // it (new DCID, the Retry's token), which names dnl-01.geo.kaspersky.com.
    check_quic("evasion-quic-retry.pcap");
}

#[test]
fn a_quic_hello_padded_over_27_initials_is_read() {
    // 150 more ALPN protocols make the hello ~31 KB, far past 16 datagrams or 16 KiB; the
    // server logged its name.
    let run = check("evasion-quic-big-hello.pcap");
    assert_eq!(
        anomaly(&run.summary, "quic_client_hello_incomplete"),
        0,
        "{}",
        run.summary
    );
}

/// A capture of ClientHellos whose server_name extension no TLS library sends, each refused by
/// the server with a fatal alert (OpenSSL's; a server on another library may take any of its
/// names): every name tshark lists is reported for the client, and every name of `names` (those,
/// and each name with a NUL whole) and no other; the kaspersky alert is raised; the extension is
/// counted as `tls_server_name_malformed`, once a hello at least.
fn check_sni_malformed(capture: &str) -> Run {
    let exp = expected(capture);
    let answers = exp["server_answers"]
        .as_array()
        .expect("the server's answers");
    let hellos = exp["malformed"]
        .as_array()
        .expect("the hellos' shapes")
        .len();
    assert!(
        hellos >= 1 && answers.len() == hellos && answers.iter().all(|a| a["level"] == 2),
        "{capture}: the server did not refuse each hello with a fatal alert: {exp}"
    );
    let run = check(capture);
    let reported = server_names(&run);
    let tshark_lists = if exp["tshark_reads"].is_array() {
        named(&exp["tshark_reads"])
    } else {
        named(&exp["names"])
    };
    for name in &tshark_lists {
        assert!(
            reported.contains(name),
            "{capture}: {name:?}, which tshark lists, is not reported: {reported:?}"
        );
    }
    assert!(
        run.alerts.iter().any(|a| a["vendor"] == "kaspersky"
            && tshark_lists
                .iter()
                .any(|(host, _, _)| a["host"]["ip"] == host.as_str())),
        "{capture}: no kaspersky alert for the client: {:?}",
        run.alerts
    );
    assert!(
        anomaly(&run.summary, "tls_server_name_malformed") >= hellos as u64,
        "{capture}: tls_server_name_malformed is not counted for each of its {hellos} hello(s): {}",
        run.summary
    );
    run
}

#[test]
fn a_decoy_in_a_first_server_name_extension_does_not_hide_a_second_one() {
    // www.example.org in the first server_name extension, dnl-01.geo.kaspersky.com in a second:
    // s_server refused the duplicate extension (illegal_parameter).
    check_sni_malformed("evasion-sni-two-extensions.pcap");
}

#[test]
fn a_decoy_first_in_a_server_name_list_does_not_hide_the_second_host_name() {
    // One extension, two host_name entries: www.example.org, then dnl-01.geo.kaspersky.com.
    check_sni_malformed("evasion-sni-two-names.pcap");
}

#[test]
fn a_server_name_with_a_nul_is_reported_whole_and_up_to_the_nul() {
    // `www.example.org\0dnl-01.geo.kaspersky.com` (a server in C reads the decoy; tshark shows
    // it) and `dnl-01.geo.kaspersky.com\0.x`: each whole, the NUL escaped, and up to the NUL.
    let run = check_sni_malformed("evasion-sni-nul.pcap");
    let reported = server_names(&run);
    for value in [
        "www.example.org\\x00dnl-01.geo.kaspersky.com",
        "www.example.org",
        "dnl-01.geo.kaspersky.com\\x00.x",
        "dnl-01.geo.kaspersky.com",
    ] {
        let name = (
            "10.40.1.11".to_string(),
            "tls_sni".to_string(),
            value.to_string(),
        );
        assert!(
            reported.contains(&name),
            "{value} is not reported: {reported:?}"
        );
    }
}

#[test]
fn bytes_past_the_server_name_list_do_not_hide_its_name() {
    // dnl-01.geo.kaspersky.com, then 2 bytes in the extension after the list: s_server refused
    // it (decode_error); the name is reported and the extension counted.
    check_sni_malformed("evasion-sni-trailing.pcap");
}

/// A fourth-round capture: `connections` connections, on each of which the strict s_server
/// answered with its handshake (it received dnl-01.geo.kaspersky.com): the name is reported once
/// a connection, with the kaspersky alert, and the decoy (where a fake carried it) nowhere.
fn check_round4(capture: &str, connections: usize) -> Run {
    let exp = expected(capture);
    assert_eq!(named(&exp["names"]).len(), connections, "{capture}: {exp}");
    let run = check(capture);
    assert!(
        run.alerts
            .iter()
            .any(|a| a["vendor"] == "kaspersky"
                && a["indicator"]["value"] == "dnl-01.geo.kaspersky.com"),
        "{capture}: no kaspersky alert for dnl-01.geo.kaspersky.com: {:?}",
        run.alerts
    );
    run
}

#[test]
fn a_client_rst_out_of_sequence_or_with_a_bad_checksum_does_not_end_the_flow() {
    // A RST 1000 bytes past the next expected sequence number (Linux: a challenge ACK, RFC 5961)
    // and a RST at it with a wrong TCP checksum; each followed by the real ClientHello.
    let run = check_round4("evasion-rst.pcap", 2);
    assert!(
        anomaly(&run.summary, "transport_checksum_bad") >= 1,
        "the bad checksum is not counted: {}",
        run.summary
    );
}

#[test]
fn a_stray_rst_or_fin_then_a_syn_with_another_isn_does_not_replace_the_live_flow() {
    // A RST, then (second connection) a FIN, 1000 bytes past the next expected byte, each
    // followed by a SYN with another ISN: Linux answers with challenge ACKs and goes on, and
    // the real ClientHello on the live connection is read; the stray RST and FIN are counted.
    let run = check_round4("evasion-rst-syn.pcap", 2);
    assert_eq!(
        anomaly(&run.summary, "transport_close_ignored"),
        2,
        "{}",
        run.summary
    );
}

#[test]
fn a_decoy_sent_before_the_syn_is_not_taken_for_the_connections_first_bytes() {
    // The decoy hello at the sequence number of the connection's first byte, before the SYN,
    // with a wrong checksum (the server dropped it silently), then the handshake and the real
    // hello. The real name is read and alerted on. The decoy may be reported too: on a tap of
    // the client's side only, data before a SYN is what a capture that began mid-connection
    // shows, and it is read when the SYN ends that flow.
    check_real_read("evasion-presyn.pcap");
}

#[test]
fn a_client_rst_that_expires_at_a_router_does_not_end_the_flow() {
    let run = check_round4("evasion-rst-ttl.pcap", 1);
    assert!(
        anomaly(&run.summary, "transport_ttl_short") >= 1,
        "the short TTL is not counted: {}",
        run.summary
    );
}

#[test]
fn a_decoy_client_hello_far_outside_the_window_is_not_read() {
    // 100,000 bytes before the next expected sequence number, and 1,000,000 past it.
    check_round4("evasion-badseq.pcap", 2);
}

#[test]
fn a_segment_that_starts_before_the_next_expected_byte_is_trimmed() {
    // The whole decoy ClientHello, then the real one, from 517 bytes before the next expected
    // byte; and one byte (0x16) before it, at the SYN's sequence number.
    check_round4("evasion-seqovl.pcap", 2);
}

#[test]
fn a_client_hello_in_ip_fragments_is_read_and_an_overlapping_datagram_is_not() {
    // 8 fragments in order, the same in reverse, and a datagram whose second fragment (the
    // decoy's bytes) partially overlaps its first: Linux dropped it whole (ReasmOverlaps) and took
    // the client's unfragmented retransmission.
    check_round4("evasion-ip-fragments.pcap", 3);
}

#[test]
fn a_client_hello_in_several_tls_records_is_read() {
    // Two records cut inside the SNI, and records of 5 bytes of handshake each.
    check_round4("evasion-tls-records.pcap", 2);
}

/// A capture of the fourth round's second set (one connection from 10.40.1.12 to the strict
/// s_server): the server received `received` (its handshake for dnl-01.geo.kaspersky.com, the
/// fatal unrecognized_name alert for any other name), which is reported, with the kaspersky alert
/// only for the vendor's name; `other` (on the wire, or what tshark reads) is reported nowhere.
/// `counted`: an anomaly the run must count at least once.
fn check_round4b(capture: &str, received: &str, other: &str, counted: Option<&str>) -> Run {
    let exp = expected(capture);
    let name = |value: &str| {
        (
            "10.40.1.12".to_string(),
            "tls_sni".to_string(),
            value.to_string(),
        )
    };
    assert_eq!(named(&exp["names"]), [name(received)], "{capture}: {exp}");
    assert!(
        named(&exp["not_received"]).contains(&name(other)),
        "{capture}: {exp}"
    );
    let run = check(capture);
    let vendor = received == "dnl-01.geo.kaspersky.com";
    assert_eq!(
        run.alerts
            .iter()
            .any(|a| a["vendor"] == "kaspersky"
                && a["indicator"]["value"] == "dnl-01.geo.kaspersky.com"),
        vendor,
        "{capture}: {:?}",
        run.alerts
    );
    if !vendor {
        assert!(run.alerts.is_empty(), "{capture}: {:?}", run.alerts);
    }
    if let Some(reason) = counted {
        assert!(
            anomaly(&run.summary, reason) >= 1,
            "{capture}: {reason} is not counted: {}",
            run.summary
        );
    }
    run
}

#[test]
fn an_urgent_byte_inside_the_server_name_is_left_out_as_the_servers_socket_does() {
    // `dnl-01.geo.kaspersky.cXom` on the wire, the `X` pointed at by the urgent pointer (BSD
    // semantics): Linux reads it out of band, s_server received dnl-01.geo.kaspersky.com.
    check_round4b(
        "evasion-urgent.pcap",
        "dnl-01.geo.kaspersky.com",
        "dnl-01.geo.kaspersky.cxo",
        Some("transport_urgent_data"),
    );
}

#[test]
fn a_vendor_name_made_by_keeping_an_urgent_byte_in_the_stream_is_not_reported() {
    // The wire reads dnl-01.geo.kaspersky.com only with the urgent `d` in band; the server read
    // nl-01.geo.kaspersky.comz and refused it (unrecognized_name).
    check_round4b(
        "evasion-urgent-reverse.pcap",
        "nl-01.geo.kaspersky.comz",
        "dnl-01.geo.kaspersky.com",
        Some("transport_urgent_data"),
    );
}

#[test]
fn a_fake_client_hello_that_paws_drops_is_not_read() {
    // Timestamps on every segment; the decoy at the next expected sequence number with a TSval
    // 1000 below the last one (the server's PAWSEstab went up), then the real ClientHello.
    check_round4b(
        "evasion-paws.pcap",
        "dnl-01.geo.kaspersky.com",
        "updates.example-corp.com",
        Some("transport_timestamp_old"),
    );
}

#[test]
fn a_fragment_wholly_inside_an_earlier_one_does_not_replace_its_bytes() {
    // [0,200) real, [168,200) with the decoy's bytes at the SNI, [200,400), [400,537) real:
    // Linux dropped the inner fragment as a duplicate and reassembled the real ClientHello.
    check_round4b(
        "evasion-frag-inside-real.pcap",
        "dnl-01.geo.kaspersky.com",
        "updates.example-corp.com",
        Some("defrag_duplicate_differs"),
    );
}

#[test]
fn a_decoy_datagram_with_a_fragment_inside_another_is_read_and_the_hello_after_it_is_not() {
    // The decoy's datagram with a duplicate fragment wholly inside two others: Linux reassembled
    // it and s_server refused the decoy; the real ClientHello sent after it at the same sequence
    // number is a retransmission of bytes the server had.
    // The inner fragment repeats the bytes it lies on (a retransmission's shape): neither an
    // overlap nor a duplicate that differs.
    let run = check_round4b(
        "evasion-frag-inside-decoy.pcap",
        "updates.example-corp.com",
        "dnl-01.geo.kaspersky.com",
        None,
    );
    for reason in ["defrag_overlap", "defrag_duplicate_differs"] {
        assert_eq!(anomaly(&run.summary, reason), 0, "{}", run.summary);
    }
}

#[test]
fn on_a_tap_of_the_client_side_only_a_decoy_that_paws_drops_does_not_hide_the_real_hello() {
    // evasion-paws.pcap without the server's packets: no SYN-ACK says timestamps were agreed,
    // but the client's SYN offered them and its later segments carry them, so the stream is read
    // without the decoy. A server that refused timestamps would have taken the decoy, which a
    // one-direction tap cannot tell: its name is reported as well (not a vendor's: no alert).
    let capture = "evasion-paws-oneway.pcap";
    let run = check_both_copies_reported(capture);
    assert_eq!(
        anomaly(&run.summary, "transport_timestamp_old"),
        1,
        "{}",
        run.summary
    );
}

#[test]
fn on_a_tap_of_the_client_side_only_the_hello_after_a_retry_request_is_read() {
    // The HelloRetryRequest is not on the tap; the client's second hello is the answer to one.
    check_hrr(
        "evasion-hrr-decoy-real-oneway.pcap",
        "updates.example-corp.com",
        "dnl-01.geo.kaspersky.com",
    );
    check_hrr(
        "evasion-hrr-real-decoy-oneway.pcap",
        "dnl-01.geo.kaspersky.com",
        "updates.example-corp.com",
    );
}

#[test]
fn committed_expectations_are_what_tshark_and_the_servers_say() {
    if Command::new("tshark").arg("--version").output().is_err() {
        panic!("tshark is not installed: run `bash scripts/deps.sh test`");
    }
    let out = Command::new("python3")
        .arg(root().join("pcaps/expected_evasion.py"))
        .arg("--check")
        .output()
        .expect("runs the deriver");
    assert!(
        out.status.success(),
        "pcaps/expected-evasion.json is not what pcaps/expected_evasion.py derives:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
