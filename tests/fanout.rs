//! Fanout capture on a real interface: a veth pair made by the test, its capture end in a
//! network namespace of its own (nothing there sends a packet: no addresses, IPv6 off),
//! four `AF_PACKET` sockets in one fanout group on that end, and `tcpreplay` sending
//! captures from `pcaps/` into the other end. Checked against what libpcap reads from the
//! same files and what the interface counted (`rx_packets`), never against the sensor:
//! every frame arrives exactly once, byte for byte (VLAN and QinQ tags put back), nothing
//! is dropped, both directions of every flow reach the same socket, a BPF filter keeps
//! exactly what libpcap's own filter keeps, and a fragmented IPv4 answer is reassembled
//! and lands on the socket of its query. And the group rides out its link: down and up
//! again (reported once, then every frame once as before), and deleted (reported once,
//! then reads find nothing). On loopback every frame is read once, as libpcap reads it.
//! Needs root (CI runs as root); skipped, loudly, otherwise.
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
mod common;

use common::{root_or_skip, VethLab, VethSpec};
use vendorwatch::capture::fanout::{self, FanoutOptions, FanoutSocket, ReadError, SocketTotals};

/// How long anything in the lab may take on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// A network namespace holding the capture end (`inside`) of a veth pair; the sending
/// end (`outside`) stays here.
type Lab = VethLab;

/// This file's lab for the test tagged `tag`, its ends quiet: no addresses, IPv6 off, room
/// for the 1522-byte frames of the QinQ capture.
fn new_lab(tag: char) -> Lab {
    VethLab::new(VethSpec::quiet(["vwfo", "vfc", "vfs"], &tag.to_string()))
}

impl VethLab {
    /// Opens the fanout sockets from inside the namespace (a packet socket belongs to the
    /// namespace of the thread that creates it).
    fn open(&self, sockets: usize, bpf: Option<&str>) -> Vec<FanoutSocket> {
        self.open_cut(sockets, bpf, fanout::MAX_SNAPLEN)
    }

    fn open_cut(&self, sockets: usize, bpf: Option<&str>, snaplen: u32) -> Vec<FanoutSocket> {
        self.open_with(FanoutOptions {
            interface: self.inside.clone(),
            sockets,
            group: None,
            bpf: bpf.map(str::to_string),
            snaplen,
            buffer_bytes: 8 << 20,
            promiscuous: true,
            kernel_defrag: true,
        })
    }

    fn open_with(&self, opts: FanoutOptions) -> Vec<FanoutSocket> {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.ns)).expect("namespace file");
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            fanout::open(&opts)
        })
        .join()
        .expect("opening thread")
        .unwrap_or_else(|e| panic!("fanout open: {e} ({})", e.reason()))
    }
}

/// What one socket read: its frames (bytes, wire length) and its counters at the end.
struct Read {
    frames: Vec<(Vec<u8>, u32)>,
    totals: SocketTotals,
}

/// One thread per socket, reading until told to stop and then until a read finds nothing.
struct Readers {
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Read>>,
}

impl Readers {
    fn start(sockets: Vec<FanoutSocket>) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let threads = sockets
            .into_iter()
            .map(|mut s| {
                let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
                std::thread::spawn(move || {
                    let mut frames = Vec::new();
                    loop {
                        match s.next_packet(Duration::from_millis(50)) {
                            Ok(Some(p)) => {
                                assert!(p.ts.0 > 0, "a timestamp");
                                frames.push((p.data.to_vec(), p.wire_len));
                                seen.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(None) if stop.load(Ordering::Relaxed) => break,
                            Ok(None) => {}
                            Err(e) => panic!("read: {e}"),
                        }
                    }
                    let totals = s.stats().expect("PACKET_STATISTICS");
                    Read { frames, totals }
                })
            })
            .collect();
        Readers {
            stop,
            seen,
            threads,
        }
    }

    /// Waits until `want` frames were read (or patience runs out), then stops the readers.
    fn finish(self, want: usize) -> Vec<Read> {
        let start = Instant::now();
        while self.seen.load(Ordering::Relaxed) < want && start.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().expect("reader thread"))
            .collect()
    }
}

/// The frames of capture files as libpcap reads them, through an optional filter.
fn frames_of(files: &[&str], filter: Option<&str>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in files {
        let mut cap = pcap::Capture::from_file(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        if let Some(filter) = filter {
            cap.filter(filter, true).expect("filter compiles");
        }
        while let Ok(p) = cap.next_packet() {
            out.push(p.data.to_vec());
        }
    }
    out
}

/// Sends `files` into the lab and waits until the capture end has received all `sent`
/// frames.
fn send_all(lab: &Lab, files: &[&str], sent: usize) {
    let before = lab.rx_packets();
    lab.replay(files);
    assert_eq!(wait_rx(lab, before, sent as u64), sent as u64);
}

/// Every frame the sockets read, in no particular order.
fn frames(reads: &[Read]) -> Vec<Vec<u8>> {
    reads
        .iter()
        .flat_map(|r| r.frames.iter().map(|(f, _)| f.clone()))
        .collect()
}

/// Waits until the interface counted `want` more frames than `before`.
fn wait_rx(lab: &Lab, before: u64, want: u64) -> u64 {
    let start = Instant::now();
    loop {
        let delta = lab.rx_packets() - before;
        if delta >= want || start.elapsed() >= PATIENCE {
            return delta;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An address and a port.
type Endpoint = (Vec<u8>, u16);
/// VLAN ids, IP protocol, the two endpoints in order.
type FlowKey = (Vec<u16>, u8, [Endpoint; 2]);

/// The flow a frame belongs to, the same for both directions: its VLAN tags, the IP
/// protocol, and its two endpoints in order. `None` for what is not TCP or UDP over IP
/// (ARP, ICMP, fragments). A few lines of its own, so the check does not lean on the
/// decoders under test elsewhere.
fn flow(frame: &[u8]) -> Option<FlowKey> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
    };
    let mut at = 12;
    let mut tags = Vec::new();
    let mut etype = be16(at)?;
    while etype == 0x8100 || etype == 0x88a8 {
        tags.push(be16(at + 2)? & 0x0fff);
        at += 4;
        etype = be16(at)?;
    }
    let ip = at + 2;
    let (proto, src, dst, l4) = match etype {
        0x0800 => {
            let ihl = usize::from(frame.get(ip)? & 0x0f) * 4;
            let frag = be16(ip + 6)?;
            if frag & 0x3fff != 0 {
                return None;
            }
            (
                *frame.get(ip + 9)?,
                frame.get(ip + 12..ip + 16)?.to_vec(),
                frame.get(ip + 16..ip + 20)?.to_vec(),
                ip + ihl,
            )
        }
        0x86dd => (
            *frame.get(ip + 6)?,
            frame.get(ip + 8..ip + 24)?.to_vec(),
            frame.get(ip + 24..ip + 40)?.to_vec(),
            ip + 40,
        ),
        _ => return None,
    };
    if proto != 6 && proto != 17 {
        return None;
    }
    let a = (src, be16(l4)?);
    let b = (dst, be16(l4 + 2)?);
    let ends = if a <= b { [a, b] } else { [b, a] };
    Some((tags, proto, ends))
}

/// Reads `socket` until it reports its link down (reading nothing before that).
fn wait_link_down(socket: &mut FanoutSocket) {
    let index = socket.index();
    let start = Instant::now();
    loop {
        match socket.next_packet(Duration::from_millis(100)) {
            Err(ReadError::LinkDown) => break,
            Ok(None) if start.elapsed() < PATIENCE => {}
            other => panic!("socket {index}: {other:?} instead of the link down"),
        }
    }
}

/// A DNS query, its answer in three IPv4 fragments, the same over IPv6 (not reassembled by
/// the kernel), neighbour discovery and ARP: the files, all their frames, and the IPv4
/// fragments among them.
fn fragmented() -> ([&'static str; 1], Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let files = ["pcaps/dns-fragmented.pcap"];
    let all = frames_of(&files, None);
    let fragments = frames_of(&files, Some("ip[6:2] & 0x3fff != 0"));
    (files, all, fragments)
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[test]
fn four_sockets_share_the_traffic_exactly_once_and_keep_flows_together() {
    if !root_or_skip("fanout capture") {
        return;
    }
    let files = [
        "pcaps/tls.pcap",
        "pcaps/parsers-full.pcap",
        "pcaps/http-proxy.pcap",
        "pcaps/dns.pcap",
        "pcaps/dns-vlan.pcap",
        "pcaps/tls-qinq.pcap",
        "pcaps/quic.pcap",
        "pcaps/vendor-domains.pcap",
        "pcaps/port-reuse.pcap",
    ];
    let want = frames_of(&files, None);
    let lab = new_lab('a');
    let sockets = lab.open(4, None);
    assert_eq!(sockets.len(), 4);
    let group = sockets[0].group();
    assert!(sockets.iter().all(|s| s.group() == group));
    let readers = Readers::start(sockets);
    let before = lab.rx_packets();
    lab.replay(&files);
    let delivered = wait_rx(&lab, before, want.len() as u64);
    let reads = readers.finish(want.len());

    // What the interface delivered, the sockets counted, and nothing was dropped.
    assert_eq!(delivered, want.len() as u64, "rx_packets delta");
    let counted: u64 = reads.iter().map(|r| r.totals.received).sum();
    assert_eq!(
        counted, delivered,
        "the sockets' counters add up to rx_packets"
    );
    for (i, r) in reads.iter().enumerate() {
        assert_eq!(r.totals.dropped, 0, "socket {i} dropped");
        assert_eq!(r.totals.received, r.frames.len() as u64, "socket {i}");
    }
    // Every frame exactly once, byte for byte (tags put back), none cut.
    let got: Vec<Vec<u8>> = reads
        .iter()
        .flat_map(|r| r.frames.iter())
        .map(|(f, wire)| {
            assert_eq!(*wire as usize, f.len());
            f.clone()
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(
        sorted(got) == sorted(want),
        "the frames differ from the files'"
    );

    // Both directions of every flow on one socket, and the flows spread over sockets.
    let mut sockets_of: BTreeMap<_, BTreeSet<usize>> = BTreeMap::new();
    let mut directions: BTreeMap<_, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for (i, r) in reads.iter().enumerate() {
        for (f, _) in &r.frames {
            if let Some(key) = flow(f) {
                sockets_of.entry(key.clone()).or_default().insert(i);
                directions.entry(key).or_default().insert(f[6..12].to_vec());
            }
        }
    }
    let split: Vec<_> = sockets_of.iter().filter(|(_, s)| s.len() > 1).collect();
    assert!(
        split.is_empty(),
        "{} of {} flows split across sockets, such as {:?}",
        split.len(),
        sockets_of.len(),
        &split[..split.len().min(3)]
    );
    let two_way_tcp = directions
        .iter()
        .filter(|((_, proto, _), macs)| *proto == 6 && macs.len() == 2)
        .count();
    assert!(two_way_tcp >= 20, "only {two_way_tcp} two-way TCP flows");
    let busy = reads.iter().filter(|r| !r.frames.is_empty()).count();
    assert!(busy >= 2, "all {} flows on one socket", sockets_of.len());
}

#[test]
fn a_bpf_filter_keeps_what_libpcap_keeps_on_every_socket() {
    if !root_or_skip("fanout capture") {
        return;
    }
    let files = ["pcaps/tls.pcap", "pcaps/dns.pcap", "pcaps/quic.pcap"];
    let filter = "tcp or (udp and not port 53)";
    let all = frames_of(&files, None);
    let want = frames_of(&files, Some(filter));
    assert!(want.len() < all.len() && !want.is_empty());
    let lab = new_lab('b');
    let readers = Readers::start(lab.open(4, Some(filter)));
    send_all(&lab, &files, all.len());
    let reads = readers.finish(want.len());
    let counted: u64 = reads.iter().map(|r| r.totals.received).sum();
    assert_eq!(
        counted,
        want.len() as u64,
        "filtered frames are not counted"
    );
    assert!(reads.iter().all(|r| r.totals.dropped == 0));
    let got: Vec<Vec<u8>> = reads
        .into_iter()
        .flat_map(|r| r.frames)
        .map(|(f, _)| f)
        .collect();
    assert!(sorted(got) == sorted(want), "the filter kept other frames");
}

#[test]
fn a_fragmented_ipv4_answer_is_reassembled_onto_the_socket_of_its_query() {
    if !root_or_skip("fanout capture") {
        return;
    }
    let (files, all, fragments) = fragmented();
    assert_eq!(fragments.len(), 3);
    let lab = new_lab('c');
    let readers = Readers::start(lab.open(4, None));
    send_all(&lab, &files, all.len());
    let want = all.len() - fragments.len() + 1;
    let reads = readers.finish(want);
    let counted: u64 = reads.iter().map(|r| r.totals.received).sum();
    assert_eq!(counted, want as u64, "three fragments read as one datagram");

    // The reassembled answer: the IP payloads of the fragments, in order, behind one header.
    let payload: Vec<u8> = fragments
        .iter()
        .flat_map(|f| {
            let ihl = usize::from(f[14] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            f[14 + ihl..14 + total].to_vec()
        })
        .collect();
    let mut query_on = None;
    let mut answer_on = None;
    for (i, r) in reads.iter().enumerate() {
        for (f, wire) in &r.frames {
            let Some((_, 17, ends)) = flow(f) else {
                continue;
            };
            if f.get(12..14) != Some(&[0x08, 0x00]) || !ends.iter().any(|(_, p)| *p == 53) {
                continue;
            }
            if f.len() > 1514 {
                assert_eq!(&f[34..], &payload[..], "reassembled payload");
                assert_eq!(*wire as usize, f.len());
                answer_on = Some(i);
            } else {
                query_on = Some(i);
            }
        }
    }
    assert!(answer_on.is_some(), "no reassembled answer");
    assert_eq!(answer_on, query_on, "answer and query on different sockets");
}

#[test]
fn the_group_survives_its_link_going_down_and_up() {
    if !root_or_skip("fanout capture") {
        return;
    }
    let files = ["pcaps/dns.pcap", "pcaps/tls.pcap"];
    let want = frames_of(&files, None);
    let lab = new_lab('d');
    let mut sockets = lab.open(3, None);
    lab.set_inside_link(false);
    // Each socket says so once (the kernel reports ENETDOWN), and then just waits.
    for s in &mut sockets {
        wait_link_down(s);
        assert!(matches!(s.next_packet(Duration::from_millis(10)), Ok(None)));
    }
    lab.set_inside_link(true);
    let readers = Readers::start(sockets);
    send_all(&lab, &files, want.len());
    let reads = readers.finish(want.len());
    let got = frames(&reads);
    let got_len = got.len();
    assert!(
        sorted(got) == sorted(want),
        "after the link came back, the group does not deliver every frame once"
    );
    let counted: u64 = reads.iter().map(|r| r.totals.received).sum();
    assert_eq!(counted, got_len as u64);
}

#[test]
fn a_deleted_interface_is_reported_once_and_then_reads_find_nothing() {
    if !root_or_skip("fanout capture") {
        return;
    }
    let lab = new_lab('e');
    let mut sockets = lab.open(2, None);
    lab.in_ns(&["ip", "link", "del", &lab.inside]);
    // The kernel reports the link down once; after that the sockets are unbound for good:
    // reads wait and find nothing (the caller's link watch sees the removal), no error loop.
    for s in &mut sockets {
        wait_link_down(s);
        for _ in 0..3 {
            assert!(matches!(s.next_packet(Duration::from_millis(20)), Ok(None)));
        }
        assert_eq!(s.stats().expect("counters still readable").dropped, 0);
    }
}

#[test]
fn the_snap_length_cuts_frames_and_keeps_their_wire_length() {
    if !root_or_skip("fanout capture") {
        return;
    }
    // With and without a filter (the filter's accepting returns are what cut then), and
    // with the QinQ capture, whose outer tag is put back in front of the cut bytes.
    const SNAP: usize = 128;
    let files = ["pcaps/tls.pcap", "pcaps/tls-qinq.pcap"];
    let full = frames_of(&files, None);
    assert!(full.iter().any(|f| f.len() > SNAP));
    for filter in [None, Some("ip or ip6")] {
        let want: Vec<Vec<u8>> = frames_of(&files, filter)
            .into_iter()
            .map(|f| {
                let mut cut = f[..f.len().min(SNAP)].to_vec();
                cut.extend_from_slice(&(f.len() as u32).to_be_bytes());
                cut
            })
            .collect();
        let lab = new_lab(if filter.is_some() { 'g' } else { 'f' });
        let readers = Readers::start(lab.open_cut(2, filter, SNAP as u32));
        send_all(&lab, &files, full.len());
        let got: Vec<Vec<u8>> = readers
            .finish(want.len())
            .into_iter()
            .flat_map(|r| r.frames)
            .map(|(mut f, wire)| {
                f.extend_from_slice(&wire.to_be_bytes());
                f
            })
            .collect();
        assert_eq!(got.len(), want.len(), "filter {filter:?}");
        assert!(
            sorted(got) == sorted(want),
            "filter {filter:?}: cut frames differ"
        );
    }
}

#[test]
fn without_kernel_defrag_fragments_arrive_as_they_were_and_together() {
    if !root_or_skip("fanout capture") {
        return;
    }
    let (files, all, fragments) = fragmented();
    let lab = new_lab('h');
    let readers = Readers::start(lab.open_with(FanoutOptions {
        interface: lab.inside.clone(),
        sockets: 4,
        group: None,
        bpf: None,
        snaplen: fanout::MAX_SNAPLEN,
        buffer_bytes: 8 << 20,
        promiscuous: true,
        kernel_defrag: false,
    }));
    send_all(&lab, &files, all.len());
    let reads = readers.finish(all.len());
    let got = frames(&reads);
    assert!(sorted(got) == sorted(all), "every frame once, as sent");
    // The three fragments of the IPv4 answer share a socket (they hash by addresses).
    let holders: BTreeSet<usize> = reads
        .iter()
        .enumerate()
        .filter(|(_, r)| r.frames.iter().any(|(f, _)| fragments.contains(f)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(holders.len(), 1, "fragments on sockets {holders:?}");
}

#[test]
fn on_loopback_every_frame_is_read_once_as_libpcap_reads_it() {
    if !root_or_skip("fanout capture") {
        return;
    }
    // A frame sent on lo passes a packet socket twice (outgoing, then incoming); libpcap
    // reads it once. Ten datagrams to a bound socket (no ICMP answer): ten frames, with
    // and without a filter.
    const DATAGRAMS: usize = 10;
    for (tag, filter) in [('l', None), ('m', Some("udp"))] {
        let lab = new_lab(tag);
        lab.in_ns(&["ip", "link", "set", "lo", "up"]);
        let readers = Readers::start(lab.open_with(FanoutOptions {
            interface: "lo".into(),
            sockets: 2,
            group: None,
            bpf: filter.map(str::to_string),
            snaplen: fanout::MAX_SNAPLEN,
            buffer_bytes: 8 << 20,
            promiscuous: false,
            kernel_defrag: false,
        }));
        lab.in_ns(&[
            "python3",
            "-c",
            &format!(
                "import socket\n\
                 r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 r.bind(('127.0.0.1', 0))\n\
                 s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 for i in range({DATAGRAMS}): s.sendto(b'vendorwatch', r.getsockname())\n"
            ),
        ]);
        // Both copies of every frame are queued by the time the send returns (loopback
        // delivers synchronously), so reading until a read finds nothing reads them all.
        let reads = readers.finish(DATAGRAMS);
        let frames: usize = reads.iter().map(|r| r.frames.len()).sum();
        assert_eq!(frames, DATAGRAMS, "filter {filter:?}");
    }
}
