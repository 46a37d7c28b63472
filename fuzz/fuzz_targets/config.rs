//! A configuration file as text: parsed and validated (TOML, every key's value checks,
//! suppressions with their expiry dates and CIDRs). Only errors may come out, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|d: &[u8]| {
    let text = String::from_utf8_lossy(d);
    if let Ok(c) = vendorwatch::config::parse_config("fuzz.toml", &text) {
        let _ = c.restart_needed_for(&c);
    }
});
