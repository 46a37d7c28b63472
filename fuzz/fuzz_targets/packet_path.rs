//! The whole packet path of a replay: frames cut from the input are decoded, fragments
//! reassembled, and every packet handed to a flow `Extractor` (DNS, TLS, certificates,
//! HTTP, QUIC, flow table and its expiry); `finish` ends the flows. Every name is written as
//! an event line, as `--events` does, and checked against serde_json's writing of it.
//!
//! Record: length (u16), link (u8, an index into the link-type table), clock step (u8:
//! below 0x80 that many milliseconds forward, else `(step & 0x7f) × 10` seconds forward,
//! 0xff five minutes back), then the frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vendorwatch::decode::defrag::{DefragLimits, Defragmenter, Outcome};
use vendorwatch::decode::{decode, decode_full, Decoded, LinkType};
use vendorwatch::extract::{Detail, Extracted, Extractor, ExtractorLimits};
use vendorwatch::output;
use vendorwatch::time::Timestamp;
use vendorwatch_fuzz::{link_type, Cursor};

const MAX_FLOWS: usize = 64;

fuzz_target!(|d: &[u8]| {
    let mut c = Cursor::new(d);
    let mut extractor = Extractor::new(ExtractorLimits {
        max_flows: MAX_FLOWS,
        ..Default::default()
    });
    let mut defrag = Defragmenter::new(DefragLimits::default());
    let mut ts = Timestamp::from_parts(1_700_000_000, 0);
    let mut line = Vec::new();
    // Every event line is written by hand: it must be what serde_json writes of the contract's
    // `schema::Event`, byte for byte.
    let mut out = |e: Extracted<'_>| {
        let expected = match &e {
            Extracted::Name(ev) => {
                line.clear();
                output::write_event_line(&mut line, ev);
                output::event(ev)
            }
            Extracted::Fingerprint {
                ts,
                flow,
                detail: Detail::Tls { ja4: Some(j), .. },
            } => {
                line.clear();
                output::write_fingerprint_line(&mut line, *ts, flow, j);
                output::fingerprint_event(*ts, flow, j)
            }
            _ => return,
        };
        let mut reference = serde_json::to_vec(&expected).expect("the contract serializes");
        reference.push(b'\n');
        assert_eq!(line, reference);
    };
    while !c.is_empty() {
        let (Some(len), Some(link), Some(step)) = (c.u16(), c.u8(), c.u8()) else {
            break;
        };
        ts = match step {
            0xff => Timestamp(ts.0.saturating_sub(300_000_000_000)),
            0x80.. => ts.saturating_add_secs(u64::from(step & 0x7f) * 10),
            _ => Timestamp(ts.0.saturating_add(i64::from(step) * 1_000_000)),
        };
        let frame = c.take_up_to(usize::from(len));
        match decode_full(link_type(link), frame) {
            Ok(Decoded::Packet(pkt)) => extractor.process(ts, &pkt, &mut out),
            Ok(Decoded::Fragment(f)) => {
                if let Outcome::Complete(datagram) = defrag.add(ts, &f) {
                    if let Ok(pkt) = decode(LinkType::RawIp, &datagram) {
                        extractor.process(ts, &pkt, &mut out);
                    }
                }
            }
            Err(_) => {}
        }
        assert!(
            extractor.active_flows() <= MAX_FLOWS,
            "{} flows",
            extractor.active_flows()
        );
    }
    extractor.finish(&mut out);
    assert_eq!(extractor.active_flows(), 0);
});
