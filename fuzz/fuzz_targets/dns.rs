#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|d: &[u8]| {
    let _ = vendorwatch::extract::dns::parse(d);
    // As a message the capture cut short: no name it yields may run past the bytes.
    if let Ok(m) = vendorwatch::extract::dns::parse_cut(d) {
        assert!(m.questions.iter().all(|q| q.name.len() <= 4 * 255));
    }
});
