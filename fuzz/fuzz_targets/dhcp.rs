#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|d: &[u8]| {
    // The parse, and what the extractor asks of the view (binding, names, client id).
    if let Ok(m) = vendorwatch::extract::dhcp::parse(d) {
        let _ = (m.binding(), m.hostname(), m.client_id_hex(), m.client_mac());
    }
});
