//! The tunnel header parsers one by one (the first byte picks which), so each is reached
//! without the IP and UDP headers in front of it that `decode_link` needs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vendorwatch::decode::tunnel;

fuzz_target!(|d: &[u8]| {
    let Some((&selector, b)) = d.split_first() else {
        return;
    };
    match selector % 10 {
        0 => drop(tunnel::gre(b)),
        1 => drop(tunnel::vxlan(b)),
        2 => drop(tunnel::geneve(b)),
        3 => drop(tunnel::teredo(b)),
        4 => drop(tunnel::teredo_by_content(b)),
        5 => drop(tunnel::ayiya(b)),
        6 => drop(tunnel::gtpu(b)),
        7 => drop(tunnel::mpls(b)),
        8 => drop(tunnel::pppoe(b)),
        _ => drop(tunnel::ppp(b)),
    }
});
