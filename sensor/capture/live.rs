//! Live capture through libpcap (the `pcap` crate): open an interface the way a span port
//! or tap wants it (promiscuous, full snap length, a kernel ring of the chosen size,
//! immediate mode off with a short timeout so a quiet link still hands batches over), apply
//! a BPF filter, and keep libpcap's counters as 64-bit totals across their 32-bit wraps.
//!
//! It also watches the interface's link (`LinkWatch`), because libpcap does not say when it
//! goes down. What libpcap 1.10 does on Linux, found on veth pairs: when the link goes
//! down (`ip link set DEV down`, or the peer's carrier goes) the packet socket stays bound,
//! reads just find nothing, and when the link is back packets flow again on the same handle
//! — no error at all. When the interface is deleted, the socket loses its binding for good
//! (the kernel sets its ifindex to -1) and the next read fails with "The interface
//! disappeared"; an interface re-created under the same name is a new ifindex the old handle
//! never sees. So a link that goes down and up needs nothing but patience, and a removed
//! interface needs a new handle — which a process that dropped CAP_NET_RAW and refuses new
//! packet sockets (seccomp) cannot open (`ReadFailure`, `LiveCapture::reopen`).

pub mod machine;

use crate::decode::LinkType;
use crate::time::Timestamp;

/// Full snap length: a truncated ClientHello hides its name.
pub const SNAPLEN: i32 = 262_144;
/// How long libpcap may hold packets before handing them over (and how often a quiet
/// capture thread gets to flush its batches and look at the stop flag).
pub const READ_TIMEOUT_MS: i32 = 100;

/// After a stop, how long the ring is read after it last looked empty: longer than the
/// read timeout, after which the kernel hands over a partly filled block.
pub const DRAIN_AFTER_STOP: std::time::Duration =
    std::time::Duration::from_millis(3 * READ_TIMEOUT_MS as u64);

/// Most capture threads (fanout sockets) per interface: `--capture-threads` is bounded by
/// this; the same as `fanout::MAX_SOCKETS` (a unit test holds them equal).
pub const MAX_CAPTURE_THREADS: usize = 64;

/// Pause after a read that found nothing (non-blocking reads; see `open`).
pub(crate) const IDLE_PAUSE_MS: u64 = 5;

/// What the user asked for, per interface.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub interface: String,
    pub bpf: Option<String>,
    pub buffer_mb: u32,
    pub promiscuous: bool,
}

/// Why an interface could not be opened, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("interface {interface:?} does not exist (interfaces here: {available})")]
    NoSuchInterface {
        interface: String,
        available: String,
    },
    #[error("no permission to capture on {interface:?}: run as root, or grant the binary CAP_NET_RAW and CAP_NET_ADMIN (`setcap cap_net_raw,cap_net_admin=eip $(command -v vendorwatch)`)")]
    Permission {
        interface: String,
        /// libpcap's own words (which call failed, and with what).
        reason: String,
    },
    #[error("the BPF filter {filter:?} does not compile: {reason}")]
    BadFilter { filter: String, reason: String },
    #[error("interface {interface:?} has link type {code}, which vendorwatch cannot read")]
    UnsupportedLink { interface: String, code: i32 },
    /// Administratively down: libpcap refuses to open it ("That device is not up"), and a
    /// plain packet socket bound to it would be told `ENETDOWN`.
    #[error("interface {interface:?} is down: bring it up (`ip link set {interface} up`)")]
    InterfaceDown { interface: String },
    #[error("cannot capture on {interface:?}: {reason}")]
    Other { interface: String, reason: String },
}

/// Tells from libpcap's words (`reason`) why opening `interface` failed; pure, so the tests
/// feed it libpcap's real messages.
pub fn classify_open_error(interface: &str, reason: String) -> OpenError {
    let lower = reason.to_ascii_lowercase();
    let interface = interface.to_string();
    if lower.contains("permission") || lower.contains("operation not permitted") {
        OpenError::Permission { interface, reason }
    } else if lower.contains("no such device") {
        OpenError::NoSuchInterface {
            interface,
            available: String::new(),
        }
    } else if lower.contains("not up") || lower.contains("network is down") {
        // PCAP_ERROR_IFACE_NOT_UP ("That device is not up"), or the ENETDOWN behind it.
        OpenError::InterfaceDown { interface }
    } else {
        OpenError::Other { interface, reason }
    }
}

/// What libpcap said, without the crate's "libpcap error: " in front.
pub fn libpcap_words(e: &pcap::Error) -> String {
    match e {
        pcap::Error::PcapError(reason) => reason.clone(),
        other => other.to_string(),
    }
}

/// Checks that `filter` compiles for an Ethernet link, without an interface: for one that
/// cannot be opened yet (down), so that a typo is said at once, not once the link is up (its
/// real link type may still refuse the filter then, in `LiveCapture::open`'s words).
pub fn check_filter(filter: &str) -> Result<(), OpenError> {
    let bad = |e: pcap::Error| OpenError::BadFilter {
        filter: filter.to_string(),
        reason: libpcap_words(&e),
    };
    pcap::Capture::dead(pcap::Linktype::ETHERNET)
        .map_err(bad)?
        .compile(filter, true)
        .map_err(bad)?;
    Ok(())
}

/// libpcap's counters for one interface, widened to 64 bits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PcapTotals {
    pub received: u64,
    pub dropped: u64,
    pub if_dropped: u64,
}

/// Accumulates libpcap's 32-bit counters, which wrap, into 64-bit totals.
#[derive(Debug, Default, Clone, Copy)]
pub struct WrapCounter {
    last: Option<u32>,
    total: u64,
}

impl WrapCounter {
    pub fn update(&mut self, now: u32) -> u64 {
        let delta = match self.last {
            Some(prev) => u64::from(now.wrapping_sub(prev)),
            None => u64::from(now),
        };
        self.last = Some(now);
        self.total += delta;
        self.total
    }
}

/// An open live capture.
pub struct LiveCapture {
    pub interface: String,
    pub link: LinkType,
    /// What it was opened with, to open it again after the interface is re-created.
    options: LiveOptions,
    cap: pcap::Capture<pcap::Active>,
    received: WrapCounter,
    dropped: WrapCounter,
    if_dropped: WrapCounter,
}

/// What one read found.
pub enum Read<'a> {
    Packet {
        ts: Timestamp,
        data: &'a [u8],
        wire_len: u32,
    },
    /// The read timeout passed with no packet: a moment to flush and check for a stop.
    Idle,
}

impl LiveCapture {
    pub fn open(opts: &LiveOptions) -> Result<LiveCapture, OpenError> {
        let iface = opts.interface.clone();
        let devices = pcap::Device::list().unwrap_or_default();
        if !devices.iter().any(|d| d.name == iface) {
            let mut names: Vec<String> = devices.into_iter().map(|d| d.name).collect();
            names.sort();
            return Err(OpenError::NoSuchInterface {
                interface: iface,
                available: names.join(", "),
            });
        }
        let classify = |e: pcap::Error| classify_open_error(&iface, e.to_string());
        let buffer = i32::try_from(u64::from(opts.buffer_mb) << 20).unwrap_or(i32::MAX);
        let mut cap = pcap::Capture::from_device(iface.as_str())
            .map_err(classify)?
            .promisc(opts.promiscuous)
            .snaplen(SNAPLEN)
            .buffer_size(buffer)
            .immediate_mode(false)
            .timeout(READ_TIMEOUT_MS)
            .open()
            .map_err(classify)?
            // With TPACKET_V3 a blocking read on a silent link can wait forever (an empty
            // ring block is never retired), so the stop flag would never be seen: read
            // without blocking and pause briefly when there is nothing.
            .setnonblock()
            .map_err(classify)?;
        if let Some(filter) = &opts.bpf {
            cap.filter(filter, true).map_err(|e| OpenError::BadFilter {
                filter: filter.clone(),
                reason: e.to_string(),
            })?;
        }
        let code = cap.get_datalink().0;
        let link = u32::try_from(code)
            .ok()
            .and_then(LinkType::from_code)
            .ok_or(OpenError::UnsupportedLink {
                interface: iface.clone(),
                code,
            })?;
        Ok(LiveCapture {
            interface: iface,
            link,
            options: opts.clone(),
            cap,
            received: WrapCounter::default(),
            dropped: WrapCounter::default(),
            if_dropped: WrapCounter::default(),
        })
    }

    /// Reads the next packet, or reports that the timeout passed; an error is libpcap's own
    /// (`classify_read_error` tells from its words what it means for the capture).
    pub fn read(&mut self) -> Result<Read<'_>, pcap::Error> {
        match self.cap.next_packet() {
            Ok(p) => {
                let ts = Timestamp::from_parts(
                    p.header.ts.tv_sec,
                    u32::try_from(p.header.ts.tv_usec)
                        .unwrap_or(0)
                        .saturating_mul(1000),
                );
                Ok(Read::Packet {
                    ts,
                    data: p.data,
                    wire_len: p.header.len,
                })
            }
            Err(pcap::Error::TimeoutExpired) => {
                std::thread::sleep(std::time::Duration::from_millis(IDLE_PAUSE_MS));
                Ok(Read::Idle)
            }
            Err(e) => Err(e),
        }
    }

    /// The packet socket under the handle (to join it to a fanout group).
    #[cfg(target_os = "linux")]
    pub fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.cap.as_fd()
    }

    /// Replaces the handle's filter (`None`: keep every frame). Frames already in the ring
    /// are judged by the filter in place when they are read, not by the one they came in by.
    pub fn set_filter(&mut self, bpf: Option<&str>) -> Result<(), OpenError> {
        let text = bpf.unwrap_or("");
        // A filter that does not compile is the user's to fix; one the kernel refuses is not.
        self.cap
            .compile(text, true)
            .map_err(|e| OpenError::BadFilter {
                filter: text.to_string(),
                reason: e.to_string(),
            })?;
        self.cap.filter(text, true).map_err(|e| OpenError::Other {
            interface: self.interface.clone(),
            reason: format!("setting the filter {text:?}: {e}"),
        })?;
        self.options.bpf = bpf.map(str::to_string);
        Ok(())
    }

    /// Reads one frame and throws it away; whether there was one.
    pub fn discard_one(&mut self) -> bool {
        self.cap.next_packet().is_ok()
    }

    /// Opens the interface again (after it was removed and re-created), with the same
    /// options; the totals carry on from this handle's.
    pub fn reopen(&self) -> Result<LiveCapture, OpenError> {
        let mut fresh = LiveCapture::open(&self.options)?;
        // The new handle's counters start from zero: keep the totals, forget the last raw value.
        for (new, old) in [
            (&mut fresh.received, &self.received),
            (&mut fresh.dropped, &self.dropped),
            (&mut fresh.if_dropped, &self.if_dropped),
        ] {
            *new = WrapCounter {
                last: None,
                total: old.total,
            };
        }
        Ok(fresh)
    }

    /// libpcap's received / dropped / interface-dropped counters as 64-bit totals.
    pub fn totals(&mut self) -> Option<PcapTotals> {
        let s = self.cap.stats().ok()?;
        Some(PcapTotals {
            received: self.received.update(s.received),
            dropped: self.dropped.update(s.dropped),
            if_dropped: self.if_dropped.update(s.if_dropped),
        })
    }
}

/// How often a capture thread looks at its interface's link. A flap shorter than this is
/// still seen, through the kernel's carrier-down counter.
pub const LINK_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// What a failed libpcap read means for the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFailure {
    /// The link went down under a handle that is still bound (older libpcap versions and
    /// non-mmap reads say "The interface went down", ENETDOWN): wait for it.
    LinkDown,
    /// The interface was deleted: this handle will never deliver again.
    Removed,
    /// Anything else: the capture cannot go on.
    Fatal,
}

/// Classifies libpcap's error text (libpcap returns PCAP_ERROR with a message; the
/// distinction is only in the words).
pub fn classify_read_error(message: &str) -> ReadFailure {
    let m = message.to_ascii_lowercase();
    if m.contains("disappeared") || m.contains("no such device") {
        ReadFailure::Removed
    } else if m.contains("went down") || m.contains("network is down") {
        ReadFailure::LinkDown
    } else {
        ReadFailure::Fatal
    }
}

/// An interface's link as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Up,
    /// Administratively down (`ip link set DEV down`).
    AdminDown,
    /// Up, but without carrier (cable or tap unplugged, a veth's peer down).
    NoCarrier,
    /// No interface of that name any more.
    Removed,
    /// An interface of that name, but not the one opened (deleted and created again).
    Replaced,
    /// sysfs cannot tell (not mounted, unreadable).
    Unknown,
}

impl LinkState {
    pub fn is_up(self) -> bool {
        matches!(self, LinkState::Up | LinkState::Unknown)
    }

    /// For the log and /healthz.
    pub fn describe(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::AdminDown => "administratively down",
            LinkState::NoCarrier => "without carrier",
            LinkState::Removed => "removed",
            LinkState::Replaced => "removed and created again",
            LinkState::Unknown => "in an unknown state",
        }
    }

    /// What the operator can do about a link in this state, for the warnings that name it.
    pub fn advice(self, interface: &str) -> String {
        match self {
            LinkState::AdminDown => format!(
                "bring it up with `ip link set {interface} up` (and have the system's network \
                 configuration do so at boot)"
            ),
            LinkState::NoCarrier => {
                "check the cable or the tap, and that the switch's span session is on".into()
            }
            LinkState::Removed | LinkState::Replaced => {
                "check its name (`ip link` lists the interfaces)".into()
            }
            LinkState::Up | LinkState::Unknown => String::new(),
        }
    }
}

/// Reads the link from sysfs files' contents: `ifindex`, `flags` (hex, IFF_UP = 0x1) and
/// `operstate` (RFC 2863 words; `unknown` is what loopback and tun devices report while
/// working). `None` means the file was missing. Pure, so the tests feed it real sysfs text.
pub fn parse_link(
    opened_ifindex: Option<u32>,
    ifindex: Option<&str>,
    flags: Option<&str>,
    operstate: Option<&str>,
) -> LinkState {
    let Some(ifindex) = ifindex else {
        return LinkState::Removed;
    };
    if let (Some(opened), Ok(now)) = (opened_ifindex, ifindex.trim().parse::<u32>()) {
        if opened != now {
            return LinkState::Replaced;
        }
    }
    const IFF_UP: u32 = 0x1;
    let flags = flags.and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok());
    match flags {
        Some(f) if f & IFF_UP == 0 => return LinkState::AdminDown,
        Some(_) => {}
        None => return LinkState::Unknown,
    }
    match operstate.map(str::trim) {
        Some("up" | "unknown") => LinkState::Up,
        Some(_) => LinkState::NoCarrier,
        None => LinkState::Unknown,
    }
}

/// A change in an interface's link worth telling the operator about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// It went down, removed or replaced (`LinkState` says which).
    Lost(LinkState),
    /// Up again after this long.
    Back(std::time::Duration),
    /// Down and up again between two checks, this many times.
    Flapped(u64),
}

/// Watches one interface's link through sysfs (`/sys/class/net/IFACE/`): plain file reads,
/// which still work after the privilege drop and under the seccomp filter.
#[derive(Debug)]
pub struct LinkWatch {
    dir: Option<std::path::PathBuf>,
    opened_ifindex: Option<u32>,
    carrier_downs: Option<u64>,
    state: LinkState,
    lost_at: Option<std::time::Instant>,
}

impl LinkWatch {
    pub fn new(interface: &str) -> LinkWatch {
        // An interface name never holds a slash; refuse to build a path from one that does.
        // A device libpcap captures on that is no network interface (`any`, `nflog`,
        // `usbmon0`) has no link to watch: it is never taken for a removed one.
        let dir = (!interface.contains('/') && !matches!(interface, "" | "." | ".."))
            .then(|| std::path::Path::new("/sys/class/net").join(interface))
            .filter(|dir| dir.is_dir());
        let mut w = LinkWatch {
            dir,
            opened_ifindex: None,
            carrier_downs: None,
            state: LinkState::Unknown,
            lost_at: None,
        };
        w.opened_ifindex = w.read("ifindex").and_then(|t| t.trim().parse().ok());
        w.carrier_downs = w.read_carrier_downs();
        w.state = w.sample();
        // Down from the start: "up again after" then counts from the start, not from nothing.
        if !w.state.is_up() {
            w.lost_at = Some(std::time::Instant::now());
        }
        w
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.as_ref()?.join(file)).ok()
    }

    fn read_carrier_downs(&self) -> Option<u64> {
        self.read("carrier_down_count")
            .and_then(|t| t.trim().parse().ok())
    }

    fn sample(&self) -> LinkState {
        if self.dir.is_none() {
            return LinkState::Unknown;
        }
        parse_link(
            self.opened_ifindex,
            self.read("ifindex").as_deref(),
            self.read("flags").as_deref(),
            self.read("operstate").as_deref(),
        )
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    /// When the link was lost, if it is down now.
    pub fn lost_at(&self) -> Option<std::time::Instant> {
        self.lost_at
    }

    /// Looks at the link again and says what changed.
    pub fn check(&mut self) -> Option<LinkEvent> {
        let now = self.sample();
        let downs = self.read_carrier_downs();
        let flaps = match (self.carrier_downs, downs) {
            (Some(a), Some(b)) if now.is_up() && self.state.is_up() => b.saturating_sub(a),
            _ => 0,
        };
        if downs.is_some() {
            self.carrier_downs = downs;
        }
        let before = std::mem::replace(&mut self.state, now);
        match (before.is_up(), now.is_up()) {
            (true, false) => {
                self.lost_at = Some(std::time::Instant::now());
                Some(LinkEvent::Lost(now))
            }
            (false, true) => {
                let after = self.lost_at.take().map(|t| t.elapsed()).unwrap_or_default();
                Some(LinkEvent::Back(after))
            }
            (false, false) if before != now => Some(LinkEvent::Lost(now)),
            (true, true) if flaps > 0 => Some(LinkEvent::Flapped(flaps)),
            _ => None,
        }
    }

    /// The interface the handle was opened on no longer exists (deleted, or re-created).
    pub fn removed(&self) -> bool {
        matches!(self.state, LinkState::Removed | LinkState::Replaced)
    }

    /// After a new handle was opened on a re-created interface: watch the new one.
    pub fn rebind(&mut self) {
        *self = LinkWatch::new(
            self.dir
                .as_ref()
                .and_then(|d| d.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or_default(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_state_from_sysfs_text() {
        // Text as /sys/class/net/<veth>/{ifindex,flags,operstate} give it.
        let up = parse_link(Some(7), Some("7\n"), Some("0x1003\n"), Some("up\n"));
        assert_eq!(up, LinkState::Up);
        assert_eq!(
            parse_link(Some(7), Some("7\n"), Some("0x1002\n"), Some("down\n")),
            LinkState::AdminDown
        );
        assert_eq!(
            parse_link(
                Some(7),
                Some("7\n"),
                Some("0x1003\n"),
                Some("lowerlayerdown\n")
            ),
            LinkState::NoCarrier
        );
        // Loopback: operstate "unknown" while working.
        assert_eq!(
            parse_link(Some(1), Some("1\n"), Some("0x9\n"), Some("unknown\n")),
            LinkState::Up
        );
        assert_eq!(parse_link(Some(7), None, None, None), LinkState::Removed);
        assert_eq!(
            parse_link(Some(7), Some("9\n"), Some("0x1003\n"), Some("up\n")),
            LinkState::Replaced
        );
        assert_eq!(
            parse_link(Some(7), Some("7\n"), Some("garbage"), Some("up\n")),
            LinkState::Unknown
        );
    }

    #[test]
    fn libpcap_errors_are_classified_by_their_words() {
        assert_eq!(
            classify_read_error("libpcap error: The interface disappeared"),
            ReadFailure::Removed
        );
        assert_eq!(
            classify_read_error("libpcap error: The interface went down"),
            ReadFailure::LinkDown
        );
        assert_eq!(
            classify_read_error("libpcap error: Error condition on packet socket: Bad address"),
            ReadFailure::Fatal
        );
    }

    #[test]
    fn libpcaps_word_for_a_down_interface_is_interface_down() {
        // libpcap 1.10 on a veth left down: pcap_activate returns PCAP_ERROR_IFACE_NOT_UP.
        let e = classify_open_error("vwdn0", "libpcap error: That device is not up".into());
        assert!(
            matches!(&e, OpenError::InterfaceDown { interface } if interface == "vwdn0"),
            "{e:?}"
        );
        assert!(e.to_string().contains("ip link set vwdn0 up"), "{e}");
        assert!(matches!(
            classify_open_error("eth0", "socket: Operation not permitted".into()),
            OpenError::Permission { .. }
        ));
        assert!(matches!(
            classify_open_error("eth0", "libpcap error: something else".into()),
            OpenError::Other { .. }
        ));
    }

    #[test]
    fn a_filter_is_checked_without_an_interface() {
        assert!(check_filter("udp port 53 or tcp port 443").is_ok());
        let e = check_filter("port and").err();
        assert!(matches!(e, Some(OpenError::BadFilter { .. })), "{e:?}");
    }

    #[test]
    fn every_down_state_says_what_to_do() {
        assert!(LinkState::AdminDown
            .advice("eth1")
            .contains("ip link set eth1 up"));
        assert!(LinkState::NoCarrier.advice("eth1").contains("span"));
        assert!(LinkState::Up.advice("eth1").is_empty());
    }

    #[test]
    fn a_name_with_a_slash_is_never_a_path() {
        let w = LinkWatch::new("../../etc");
        assert_eq!(w.state(), LinkState::Unknown);
    }

    #[test]
    fn loopback_is_up() {
        // Every Linux machine has lo; where sysfs is mounted it reads as up.
        let w = LinkWatch::new("lo");
        assert!(w.state().is_up(), "{:?}", w.state());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_capture_thread_bound_is_the_fanout_bound() {
        assert_eq!(MAX_CAPTURE_THREADS, crate::capture::fanout::MAX_SOCKETS);
    }

    #[test]
    fn counters_survive_32_bit_wraps() {
        let mut c = WrapCounter::default();
        assert_eq!(c.update(u32::MAX - 5), u64::from(u32::MAX - 5));
        assert_eq!(c.update(4), u64::from(u32::MAX) + 5);
        assert_eq!(c.update(10), u64::from(u32::MAX) + 11);
    }

    #[test]
    fn missing_interface_is_named_with_the_alternatives() {
        let err = LiveCapture::open(&LiveOptions {
            interface: "vw-no-such-if0".into(),
            bpf: None,
            buffer_mb: 4,
            promiscuous: true,
        })
        .err()
        .expect("no such interface");
        let text = err.to_string();
        assert!(
            text.contains("does not exist") && text.contains("lo"),
            "{text}"
        );
    }
}
