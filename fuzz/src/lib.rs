//! Helpers shared by the fuzz targets: a cursor that cuts structured records out of the
//! fuzzer's bytes, and the link-type table the decode targets pick from.
//!
//! Every record format here is also what `make_seeds.py` writes, so the seeds start the
//! fuzzer on real traffic.

use vendorwatch::decode::LinkType;

/// Every link type the decoder reads, indexed by a byte (`byte % LINK_TYPES.len()`).
pub const LINK_TYPES: [LinkType; 11] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::Loop,
    LinkType::Nflog,
    LinkType::CiscoHdlc,
    LinkType::Ppp,
];

pub fn link_type(selector: u8) -> LinkType {
    LINK_TYPES[usize::from(selector) % LINK_TYPES.len()]
}

/// Reads fixed-size fields and length-prefixed slices off the front of the input; every
/// read past the end returns `None`, which ends the target's loop.
pub struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { rest: data }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    /// Up to `n` bytes: the last record of an input may be short.
    pub fn take_up_to(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.rest.len());
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        head
    }

    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}
