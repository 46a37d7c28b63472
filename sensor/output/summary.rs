//! The human summary printed on stderr at the end of a replay: what was read, what went
//! wrong, what was seen, and the table of hosts × vendor × category.

use crate::hosts::Host;
use crate::metrics::Counters;
use crate::time::Timestamp;
use std::fmt::Write as _;
use std::net::IpAddr;

pub struct RunFacts<'a> {
    /// Captures read (replay) or interfaces captured (live: `interfaces`).
    pub inputs_read: usize,
    pub interfaces: bool,
    pub input_errors: &'a [String],
    pub skipped_inputs: usize,
    pub elapsed_secs: f64,
    pub first_packet: Option<Timestamp>,
    pub last_packet: Option<Timestamp>,
    pub resolvers: &'a [IpAddr],
    pub vendors: &'a [String],
    /// Live capture: each capture thread's counts.
    pub sources: Vec<SourceCounts>,
}

/// One live source's counts: an interface (`eth0`) or a member of its fanout group (`eth0#2`).
pub struct SourceCounts {
    pub name: String,
    /// Who counted: `libpcap` (a handle, or a member of a group of libpcap rings) or `fanout
    /// socket` (a plain packet socket: the kernel's PACKET_STATISTICS).
    pub counter: &'static str,
    pub received: u64,
    pub dropped: u64,
    pub if_dropped: u64,
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn render(c: &Counters, facts: &RunFacts<'_>, hosts: &[(IpAddr, Host)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "vendorwatch summary");
    input_lines(&mut s, c, facts);
    counted_line(
        &mut s,
        "names    ",
        c.names().iter().map(|(k, v)| (k.as_str(), *v)),
    );
    counted_line(&mut s, "tunnels  ", c.encaps().into_iter());
    counted_line(&mut s, "anomalies", c.anomalies_by_reason().into_iter());
    loss_lines(&mut s, c, facts);
    outcome_lines(&mut s, c, facts, hosts);
    if hosts.iter().all(|(_, h)| h.detections.is_empty()) {
        let _ = writeln!(s, "\nNo home-net host talked to an active vendor.");
        return s;
    }
    let _ = writeln!(s);
    s.push_str(&host_table(hosts));

    s
}

/// What was read: inputs, packets and rate, the packets' time span, the vendors watched,
/// and the inputs skipped or unreadable.
fn input_lines(s: &mut String, c: &Counters, facts: &RunFacts<'_>) {
    let packets = Counters::get(&c.packets);
    let bytes = Counters::get(&c.bytes);
    let secs = facts.elapsed_secs.max(1e-9);
    let _ = writeln!(
        s,
        "  read      {} {}, {} packets, {:.1} MB in {:.2} s ({} packets/s)",
        facts.inputs_read,
        if facts.interfaces {
            "interface(s)"
        } else {
            "input(s)"
        },
        thousands(packets),
        bytes as f64 / 1e6,
        facts.elapsed_secs,
        thousands((packets as f64 / secs) as u64)
    );
    if let (Some(a), Some(b)) = (facts.first_packet, facts.last_packet) {
        let _ = writeln!(s, "  span      {a} .. {b}");
    }
    let _ = writeln!(s, "  vendors   {}", facts.vendors.join(", "));
    if facts.skipped_inputs > 0 {
        let _ = writeln!(
            s,
            "  skipped   {} file(s) in input directories that are not captures",
            facts.skipped_inputs
        );
    }
    for e in facts.input_errors {
        let _ = writeln!(s, "  ERROR     {e}");
    }
}

/// One line `label` of "name count" pairs (names, tunnels, anomalies); none when empty.
fn counted_line<K: std::fmt::Display>(
    s: &mut String,
    label: &str,
    counts: impl Iterator<Item = (K, u64)>,
) {
    let list: Vec<String> = counts
        .map(|(k, v)| format!("{k} {}", thousands(v)))
        .collect();
    if !list.is_empty() {
        let _ = writeln!(s, "  {label} {}", list.join(", "));
    }
}

/// What was lost: libpcap's and the kernel's drops per live source, the workers' queue,
/// flow table evictions and packets on link types we cannot read.
fn loss_lines(s: &mut String, c: &Counters, facts: &RunFacts<'_>) {
    for src in &facts.sources {
        let _ = writeln!(
            s,
            "  capture   {}: {} received {}, dropped by the kernel {}, by the interface {}",
            src.name,
            src.counter,
            thousands(src.received),
            thousands(src.dropped),
            thousands(src.if_dropped)
        );
    }
    let queue = Counters::get(&c.queue_dropped);
    if queue > 0 || !facts.sources.is_empty() {
        let _ = writeln!(
            s,
            "  queue     {} packets dropped because a worker fell behind",
            thousands(queue)
        );
    }
    let evicted = Counters::get(&c.flows_evicted);
    let unsupported = Counters::get(&c.unsupported_link);
    if evicted > 0 || unsupported > 0 {
        let _ = writeln!(
            s,
            "  dropped   flow table evictions {}, packets on unsupported link types {}",
            thousands(evicted),
            thousands(unsupported)
        );
    }
}

/// What was found: the resolvers known, alerts and findings, and the hosts whose names
/// were hidden (ECH, encrypted DNS).
fn outcome_lines(s: &mut String, c: &Counters, facts: &RunFacts<'_>, hosts: &[(IpAddr, Host)]) {
    if !facts.resolvers.is_empty() {
        let list: Vec<String> = facts.resolvers.iter().map(|r| r.to_string()).collect();
        let _ = writeln!(
            s,
            "  resolvers {} (their upstream lookups are reported as forwarded)",
            list.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "  alerts    {} ({} findings)",
        thousands(Counters::get(&c.alerts)),
        thousands(Counters::get(&c.findings))
    );
    let ech = hosts.iter().filter(|(_, h)| h.ech_connections > 0).count();
    let hidden = hosts
        .iter()
        .filter(|(_, h)| h.encrypted_dns_connections > 0)
        .count();
    if ech + hidden > 0 {
        let _ = writeln!(s, "  hidden    {ech} host(s) used ECH, {hidden} host(s) used encrypted DNS (their names are invisible here; see the report)");
    }
}

/// What the bounded host table and passive DNS shed, for the end of the summary ("" when
/// nothing was).
pub fn shed_note(hosts: &crate::hosts::HostTable, detector: &crate::detect::Detector) -> String {
    use std::sync::atomic::Ordering;
    let shed = hosts.shed.load(Ordering::Relaxed);
    let evicted = hosts.identities_evicted.load(Ordering::Relaxed);
    let mut s = String::new();
    let pdns = detector.pdns_dropped.load(Ordering::Relaxed);
    if pdns > 0 {
        let _ = writeln!(
            s,
            "vendorwatch: passive DNS was full: {} older vendor answer(s) made room for newer ones, so later connections by address alone to those addresses may be missed (raise --pdns-max)",
            thousands(pdns)
        );
    }
    let roles = detector.resolver_roles();
    let resolvers_shed = roles.shed.load(Ordering::Relaxed);
    if resolvers_shed > 0 {
        let _ = writeln!(
            s,
            "vendorwatch: {} host(s) answered other hosts' queries after {} resolvers were known and were not given the role (their own lookups still alert)",
            thousands(resolvers_shed),
            crate::detect::resolvers::RESOLVERS_MAX
        );
    }
    let judged_early = roles.judged_early.load(Ordering::Relaxed);
    if judged_early > 0 {
        let _ = writeln!(
            s,
            "vendorwatch: {} judgement(s) of whether a lookup was made for a client could not wait for every earlier packet (a worker fell far behind, or live, a full queue dropped packets): a resolver's forwarded lookups among them may have alerted",
            thousands(judged_early)
        );
    }
    if shed > 0 {
        let _ = writeln!(
            s,
            "vendorwatch: the host table was full ({} hosts): {} finding(s) for new hosts were shed (raise --max-hosts)",
            thousands(hosts.len() as u64),
            thousands(shed)
        );
    }
    if evicted > 0 {
        let _ = writeln!(
            s,
            "vendorwatch: {} identities of addresses without a detection were evicted (oldest first)",
            thousands(evicted)
        );
    }
    s
}

/// The table of hosts × vendor × category (the summary's, and `vendorwatch hosts`'), with a
/// HOSTNAME column when any host has a name.
pub fn host_table(hosts: &[(IpAddr, Host)]) -> String {
    let named = hosts.iter().any(|(_, h)| h.identity.hostname.is_some());
    // A suppressed detection raised no alert: the table says so, and why, lest an analyst
    // go looking for the alert (the column is there only when one is).
    let suppressed = hosts
        .iter()
        .any(|(_, h)| h.detections.iter().any(|d| d.suppressed.is_some()));
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .flat_map(|(ip, h)| {
            h.detections
                .iter()
                .map(move |d| detection_row(ip, h, d, named, suppressed))
        })
        .collect();
    let mut header = vec!["HOST"];
    if named {
        header.push("HOSTNAME");
    }
    header.extend([
        "VENDOR",
        "CATEGORY",
        "SEVERITY",
        "FIRST SEEN",
        "LAST SEEN",
        "COUNT",
    ]);
    if suppressed {
        header.push("SUPPRESSED (NO ALERT)");
    }
    header.push("EVIDENCE");
    aligned(&header, &rows)
}

/// One row of the host table: a detection of host `h` at `ip`.
/// `suppressed`: whether the table has the column of suppression reasons.
fn detection_row(
    ip: &IpAddr,
    h: &Host,
    d: &crate::hosts::Detection,
    named: bool,
    suppressed: bool,
) -> Vec<String> {
    let evidence = d
        .indicators
        .iter()
        .max_by_key(|i| i.count)
        .map(|i| format!("{} {}", i.indicator.kind.as_str(), i.indicator.value))
        .unwrap_or_default();
    let role = if d.forwarded { " (forwarded)" } else { "" };
    let mut row = vec![format!(
        "{ip}{}",
        h.mac.map(|m| format!(" {m}")).unwrap_or_default()
    )];
    if named {
        // A name an address had under more than one MAC is flagged: it moved.
        let macs = h.identity.macs().len();
        let moved = if macs > 1 {
            format!(" ({macs} MACs)")
        } else {
            String::new()
        };
        row.push(format!(
            "{}{moved}",
            h.identity.hostname.as_deref().unwrap_or("-")
        ));
    }
    row.extend([
        d.vendor.clone(),
        format!("{}{role}", d.category),
        d.severity.as_str().to_string(),
        d.first_seen.to_string(),
        d.last_seen.to_string(),
        d.count.to_string(),
    ]);
    if suppressed {
        row.push(d.suppressed.as_deref().unwrap_or("-").to_string());
    }
    row.push(evidence);
    row
}

/// `header` and `rows` as text, each column as wide as its widest cell and two spaces
/// apart; the last column is not padded.
fn aligned(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::new();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        l
    };
    let _ = writeln!(s, "{}", line(header));
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        let _ = writeln!(s, "{}", line(&cells));
    }
    s
}
