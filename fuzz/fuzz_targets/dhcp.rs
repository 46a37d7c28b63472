#![no_main]
use libfuzzer_sys::fuzz_target;
use vendorwatch::extract::dhcp;

fuzz_target!(|d: &[u8]| {
    // Both parsers on the same bytes, and what the extractor asks of their views.
    if let Ok(m) = dhcp::parse(d) {
        let _ = (m.binding(), m.hostname(), m.client_id_hex(), m.client_mac());
    }
    if let Ok(m) = dhcp::parse_v6(d) {
        let _ = (m.bindings().count(), m.hostname(), m.client_id_hex(), m.client_mac());
    }
});
