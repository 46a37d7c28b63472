#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|d: &[u8]| {
    let _ = vendorwatch::extract::http::parse_request(d);
});
