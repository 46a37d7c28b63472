//! Live capture through libpcap (the `pcap` crate): open an interface the way a span port
//! or tap wants it (promiscuous, full snap length, a kernel ring of the chosen size,
//! immediate mode off with a short timeout so a quiet link still hands batches over), apply
//! a BPF filter, and keep libpcap's counters as 64-bit totals across their 32-bit wraps.

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

/// Pause after a read that found nothing (non-blocking reads; see `open`).
const IDLE_PAUSE_MS: u64 = 5;

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
    Permission { interface: String },
    #[error("the BPF filter {filter:?} does not compile: {reason}")]
    BadFilter { filter: String, reason: String },
    #[error("interface {interface:?} has link type {code}, which vendorwatch cannot read")]
    UnsupportedLink { interface: String, code: i32 },
    #[error("cannot capture on {interface:?}: {reason}")]
    Other { interface: String, reason: String },
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
        let classify = |e: pcap::Error| {
            let reason = e.to_string();
            let lower = reason.to_ascii_lowercase();
            if lower.contains("permission") || lower.contains("operation not permitted") {
                OpenError::Permission {
                    interface: iface.clone(),
                }
            } else if lower.contains("no such device") {
                OpenError::NoSuchInterface {
                    interface: iface.clone(),
                    available: String::new(),
                }
            } else {
                OpenError::Other {
                    interface: iface.clone(),
                    reason,
                }
            }
        };
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
            cap,
            received: WrapCounter::default(),
            dropped: WrapCounter::default(),
            if_dropped: WrapCounter::default(),
        })
    }

    /// Reads the next packet, or reports that the timeout passed.
    pub fn read(&mut self) -> Result<Read<'_>, String> {
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
            Err(e) => Err(e.to_string()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
