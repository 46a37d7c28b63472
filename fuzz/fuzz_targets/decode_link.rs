//! Whole-frame decoding for every link type: the first byte picks the link type, the rest is
//! the frame (through VLAN, MPLS, PPPoE and every tunnel).
#![no_main]
use libfuzzer_sys::fuzz_target;
use vendorwatch::decode::decode_full;
use vendorwatch_fuzz::link_type;

fuzz_target!(|d: &[u8]| {
    if let Some((&selector, frame)) = d.split_first() {
        let _ = decode_full(link_type(selector), frame);
    }
});
