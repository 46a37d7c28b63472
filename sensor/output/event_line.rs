//! Event lines (`--events`), written by hand from the extracted names.
//!
//! An event line is `schema::Event` as serde_json writes it, byte for byte (the tests hold
//! the two equal for every kind of detail, and for every character a string can hold). It is
//! written here rather than through serde: a replay writes one line per name (nearly a
//! million on the enterprise benchmark capture), and serde_json's generic path spent about
//! 5,700 instructions on each, half of them escaping field names and values a byte at a
//! time, when the names are constants and the values nearly never need an escape. The
//! rarely seen certificate and HTTP details still go through serde.

use super::schema;
use crate::extract::dns::{Answer, RData};
use crate::extract::{Detail, DnsDetail, FlowId, NameEvent, NameKind};
use crate::time::Timestamp;
use std::net::{IpAddr, Ipv6Addr};

/// Appends one event line, newline included, to `out`.
pub fn write_event_line(out: &mut Vec<u8>, ev: &NameEvent<'_>) {
    out.push(b'{');
    match &ev.detail {
        Detail::Dns(d) => {
            out.extend_from_slice(b"\"dns\":");
            dns(out, d);
            out.extend_from_slice(b",\"flow\":");
            flow(out, &ev.flow);
        }
        Detail::Tls { .. } => {
            out.extend_from_slice(b"\"flow\":");
            flow(out, &ev.flow);
        }
        Detail::Cert(c) => {
            out.extend_from_slice(b"\"cert\":");
            serialized(out, &super::cert_event(c));
            out.extend_from_slice(b",\"flow\":");
            flow(out, &ev.flow);
        }
        Detail::Http {
            method,
            target,
            user_agent,
        } => {
            out.extend_from_slice(b"\"flow\":");
            flow(out, &ev.flow);
            out.extend_from_slice(b",\"http\":");
            serialized(
                out,
                &super::http_event(method, target, user_agent.as_deref()),
            );
        }
    }
    kind_and_time(out, ev.kind, ev.ts);
    if let Detail::Tls { version, ech, ja4 } = &ev.detail {
        out.extend_from_slice(b",\"tls\":{\"ech\":");
        boolean(out, *ech);
        out.extend_from_slice(b",\"ja4\":");
        match ja4 {
            Some(j) => string(out, j),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"version\":");
        plain(out, crate::extract::tls::version_name(*version));
        out.push(b'}');
    }
    out.extend_from_slice(b",\"value\":");
    string(out, &ev.value);
    out.extend_from_slice(b"}\n");
}

/// Appends the event line of a ClientHello that named no server (its JA4 is the only name it
/// has), newline included, to `out`.
pub fn write_fingerprint_line(out: &mut Vec<u8>, ts: Timestamp, flow_id: &FlowId, ja4: &str) {
    out.extend_from_slice(b"{\"flow\":");
    flow(out, flow_id);
    kind_and_time(out, NameKind::Ja4, ts);
    out.extend_from_slice(b",\"value\":");
    string(out, ja4);
    out.extend_from_slice(b"}\n");
}

/// `,"kind":…,"timestamp":…`
fn kind_and_time(out: &mut Vec<u8>, kind: NameKind, ts: Timestamp) {
    out.extend_from_slice(b",\"kind\":");
    plain(out, kind.as_str());
    out.extend_from_slice(b",\"timestamp\":");
    match ts.rfc3339() {
        Some(text) => plain_bytes(out, text.as_bytes()),
        None => string(out, &ts.to_string()),
    }
}

/// `schema::Flow`.
fn flow(out: &mut Vec<u8>, f: &FlowId) {
    out.extend_from_slice(b"{\"dst_ip\":");
    address(out, f.server.ip());
    out.extend_from_slice(b",\"dst_port\":");
    number(out, f.server.port());
    out.extend_from_slice(b",\"src_ip\":");
    address(out, f.client.ip());
    out.extend_from_slice(b",\"src_port\":");
    number(out, f.client.port());
    out.extend_from_slice(b",\"transport\":");
    plain(out, f.proto.as_str());
    out.push(b'}');
}

/// `schema::DnsEvent`.
fn dns(out: &mut Vec<u8>, d: &DnsDetail<'_>) {
    out.extend_from_slice(b"{\"answers\":[");
    for (i, a) in d.answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        answer(out, a);
    }
    out.extend_from_slice(b"],\"qtype\":");
    number(out, d.qtype);
    out.extend_from_slice(b",\"rcode\":");
    number(out, d.rcode);
    out.extend_from_slice(if d.is_response {
        b",\"type\":\"answer\"}"
    } else {
        b",\"type\":\"query\"}"
    });
}

/// `schema::DnsAnswer`.
fn answer(out: &mut Vec<u8>, a: &Answer) {
    out.extend_from_slice(b"{\"data\":");
    match &a.data {
        RData::A(ip) => address(out, IpAddr::V4(*ip)),
        RData::Aaaa(ip) => address(out, IpAddr::V6(*ip)),
        RData::Cname(n) | RData::Ptr(n) => string(out, n),
        RData::Svcb {
            priority,
            target,
            alpn,
            ech,
            ech_public_names,
        } => {
            out.extend_from_slice(b"{\"alpn\":");
            strings(out, alpn);
            out.extend_from_slice(b",\"ech\":");
            boolean(out, *ech);
            out.extend_from_slice(b",\"ech_public_names\":");
            strings(out, ech_public_names);
            out.extend_from_slice(b",\"priority\":");
            number(out, *priority);
            out.extend_from_slice(b",\"target\":");
            string(out, target);
            out.push(b'}');
        }
        RData::Other => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"name\":");
    string(out, &a.name);
    out.extend_from_slice(b",\"ttl\":");
    number(out, a.ttl);
    out.extend_from_slice(b",\"type\":");
    number(out, a.rtype);
    out.push(b'}');
}

/// An address as serde writes it: its `Display` text (IPv4 built by hand, see
/// `schema::ipv4_text`).
fn address(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => plain_bytes(out, schema::ipv4_text(v4.octets()).as_bytes()),
        IpAddr::V6(v6) => {
            out.push(b'"');
            ipv6_text(out, v6);
            out.push(b'"');
        }
    }
}

/// An IPv6 address as its `Display` writes it (RFC 5952: lower-case hex without leading
/// zeros, the first longest run of two or more zero groups as `::`, an IPv4-mapped address
/// as `::ffff:a.b.c.d`), without the formatting machinery, which cost more than the rest of
/// the line.
fn ipv6_text(out: &mut Vec<u8>, ip: Ipv6Addr) {
    if let Some(v4) = ip.to_ipv4_mapped() {
        out.extend_from_slice(b"::ffff:");
        out.extend_from_slice(schema::ipv4_text(v4.octets()).as_bytes());
        return;
    }
    let groups = ip.segments();
    // The first longest run of zero groups (`start`, `len`).
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, &g) in groups.iter().enumerate() {
        if g != 0 {
            run = (i + 1, 0);
            continue;
        }
        run.1 += 1;
        if run.1 > best.1 {
            best = run;
        }
    }
    let hex = |out: &mut Vec<u8>, groups: &[u16]| {
        for (i, &g) in groups.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let digits = [g >> 12, (g >> 8) & 0xf, (g >> 4) & 0xf, g & 0xf];
            let first = digits.iter().position(|&d| d != 0).unwrap_or(3);
            out.extend(digits[first..].iter().map(|&d| HEX[usize::from(d)]));
        }
    };
    if best.1 > 1 {
        hex(out, &groups[..best.0]);
        out.extend_from_slice(b"::");
        hex(out, &groups[best.0 + best.1..]);
    } else {
        hex(out, &groups);
    }
}

fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn strings(out: &mut Vec<u8>, list: &[String]) {
    out.push(b'[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// A string that needs no escape (digits, letters, `.:-_T`: addresses, times, labels).
fn plain(out: &mut Vec<u8>, s: &str) {
    plain_bytes(out, s.as_bytes());
}

/// `plain` of text held as bytes (digits and separators: an address, a time).
fn plain_bytes(out: &mut Vec<u8>, text: &[u8]) {
    debug_assert!(!needs_escape(text), "{text:?}");
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

/// Whether any byte of `bytes` is one a JSON string escapes: `"`, `\` or a control
/// character. Eight bytes at a time, since names are mostly longer than a word: nearly every
/// string written needs no escape, and is then copied in one piece.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether a byte of `x` is zero (the borrow can mark bytes above a zero one too, never
    // without one).
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // A control character is a byte whose top three bits are clear.
        if has_zero(x & 0xe0e0_e0e0_e0e0_e0e0)
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, the control characters as
/// `\b \t \n \f \r` or `\u00XX` (lower-case hex), everything else (DEL and all of UTF-8)
/// as it is. A string without any of those, nearly all of them, is copied whole.
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(escape);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// A rare part of a line, through serde. `schema` types hold strings and numbers only, so
/// this cannot fail; if it ever did, `null` (which the contract never writes for a present
/// part) keeps the line valid JSON rather than cut.
fn serialized<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Proto;

    fn name_event(kind: NameKind, value: &str, detail: Detail<'static>) -> NameEvent<'static> {
        NameEvent {
            ts: Timestamp::from_parts(1_764_000_000, 123_456_789),
            kind,
            value: value.to_string().into(),
            flow: FlowId {
                proto: Proto::Udp,
                client: "10.1.2.3:50000".parse().expect("address"),
                server: "[2001:db8::53]:53".parse().expect("address"),
            },
            client_mac: None,
            detail,
        }
    }

    fn answer(rtype: u16, data: RData) -> Answer {
        Answer {
            name: "w\\x01.example".into(),
            rtype,
            ttl: 300,
            data,
        }
    }

    #[test]
    fn event_lines_equal_the_schema_events() {
        let dns = |is_response, answers: Vec<Answer>| {
            Detail::Dns(DnsDetail {
                is_response,
                qtype: 65,
                rcode: 3,
                answers: answers.into(),
                query_seen: true,
            })
        };
        let mut events = vec![
            name_event(NameKind::Dns, "q.example", dns(false, vec![])),
            name_event(
                NameKind::Dns,
                "a \"quoted\" \\ name\u{7f}\u{e9}\u{1}\t",
                dns(
                    true,
                    vec![
                        answer(1, RData::A([192, 0, 2, 10].into())),
                        answer(28, RData::Aaaa("2001:db8::1".parse().expect("v6"))),
                        answer(28, RData::Aaaa("::ffff:192.0.2.1".parse().expect("v6"))),
                        answer(5, RData::Cname("cdn.example".into())),
                        answer(12, RData::Ptr("host.example".into())),
                        answer(
                            65,
                            RData::Svcb {
                                priority: 1,
                                target: ".".into(),
                                alpn: vec!["h2".into(), "h\"3".into()],
                                ech: true,
                                ech_public_names: vec!["public.example".into()],
                            },
                        ),
                        answer(
                            64,
                            RData::Svcb {
                                priority: 0,
                                target: "alias.example".into(),
                                alpn: vec![],
                                ech: false,
                                ech_public_names: vec![],
                            },
                        ),
                        answer(99, RData::Other),
                    ],
                ),
            ),
            name_event(
                NameKind::TlsSni,
                "tls.example",
                Detail::Tls {
                    version: 0x0304,
                    ech: true,
                    ja4: Some("t13d1516h2_8daaf6152771_e5627efa2ab1".into()),
                },
            ),
            name_event(
                NameKind::QuicSni,
                "quic.example",
                Detail::Tls {
                    version: 0x7f1c,
                    ech: false,
                    ja4: None,
                },
            ),
            name_event(
                NameKind::TlsCert,
                "cert.example",
                Detail::Cert(Box::new(crate::extract::cert::CertSummary {
                    subject: "CN=cert.example".into(),
                    issuer: "CN=Issuer".into(),
                    common_name: Some("cert.example".into()),
                    sans: vec!["cert.example".into(), "*.cert.example".into()],
                    sha256: "00ff".into(),
                })),
            ),
            name_event(
                NameKind::HttpHost,
                "http.example",
                Detail::Http {
                    method: "GET".into(),
                    target: "/update?x=\"1\"".into(),
                    user_agent: Some("agent/1.0".into()),
                },
            ),
            name_event(
                NameKind::UserAgent,
                "agent",
                Detail::Http {
                    method: "CONNECT".into(),
                    target: "host:443".into(),
                    user_agent: None,
                },
            ),
        ];
        // TCP, an IPv4 server, a time before 1970, and the last second a `Timestamp` holds.
        let mut tcp = events[2].clone();
        tcp.flow.proto = Proto::Tcp;
        tcp.flow.server = "192.0.2.80:443".parse().expect("address");
        tcp.ts = Timestamp::from_parts(-1, 5);
        events.push(tcp.clone());
        tcp.ts = Timestamp::from_parts(i64::MAX / 1_000_000_000, 0);
        events.push(tcp);
        for ev in &events {
            let mut line = Vec::new();
            write_event_line(&mut line, ev);
            let expected = serde_json::to_string(&super::super::event(ev)).expect("json") + "\n";
            assert_eq!(String::from_utf8_lossy(&line), expected);
        }
        let ev = &events[2];
        let mut line = Vec::new();
        write_fingerprint_line(&mut line, ev.ts, &ev.flow, "t13d1516h2_x_y");
        let expected = super::super::fingerprint_event(ev.ts, &ev.flow, "t13d1516h2_x_y");
        let expected = serde_json::to_string(&expected).expect("json") + "\n";
        assert_eq!(String::from_utf8_lossy(&line), expected);
    }

    #[test]
    fn labels_are_what_serde_writes() {
        // `plain` writes these labels as they are: each must be its serde name.
        for kind in NameKind::ALL {
            let mut out = Vec::new();
            plain(&mut out, kind.as_str());
            assert_eq!(out, serde_json::to_vec(&kind).expect("json"));
        }
        for proto in [Proto::Tcp, Proto::Udp] {
            let mut out = Vec::new();
            plain(&mut out, proto.as_str());
            assert_eq!(out, serde_json::to_vec(&proto).expect("json"));
        }
    }

    #[test]
    fn ipv6_text_is_what_display_writes() {
        // Zero groups in every pattern, mapped and compatible IPv4, and random groups.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut addresses: Vec<Ipv6Addr> = (0u32..256)
            .map(|zeros| {
                let mut g = [0u16; 8];
                for (i, slot) in g.iter_mut().enumerate() {
                    if zeros & (1 << i) == 0 {
                        // One to four hex digits, never zero.
                        *slot = (next() as u16 >> (next() % 16)).max(1);
                    }
                }
                Ipv6Addr::from(g)
            })
            .collect();
        addresses.extend(
            [
                "::",
                "::1",
                "1::",
                "::ffff:192.0.2.1",
                "::192.0.2.1",
                "64:ff9b::c000:201",
                "2001:db8::1:0:0:1",
                "2001:0:0:1::1",
                "fe80::1",
            ]
            .map(|a| a.parse::<Ipv6Addr>().expect("address")),
        );
        for a in addresses {
            let mut out = Vec::new();
            ipv6_text(&mut out, a);
            assert_eq!(String::from_utf8_lossy(&out), a.to_string());
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every: String = (0u8..0x80).map(char::from).collect();
        every.push_str("é漢字\u{10ffff}\u{80}\u{2028}");
        for s in [
            every.as_str(),
            "",
            "plain.example",
            "\"",
            "\\\\",
            "tail\u{1f}",
        ] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(
                String::from_utf8_lossy(&out),
                serde_json::to_string(s).expect("json")
            );
        }
        // Each escaped byte at each place of a word and of the tail, among plain ones.
        for len in 1..20 {
            for at in 0..len {
                for b in (0u8..0x20).chain([b'"', b'\\', 0x7f, b' ', b'~']) {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let s = String::from_utf8(bytes).expect("ASCII");
                    let mut out = Vec::new();
                    string(&mut out, &s);
                    assert_eq!(
                        String::from_utf8_lossy(&out),
                        serde_json::to_string(&s).expect("json"),
                        "{s:?}"
                    );
                }
            }
        }
    }
}
