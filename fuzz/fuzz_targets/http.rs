#![no_main]
use libfuzzer_sys::fuzz_target;
use vendorwatch::extract::http::{
    parse_next_request, parse_request, parse_request_cut, BodySkip, Request,
};

fuzz_target!(|d: &[u8]| {
    let _ = parse_request(d);
    // The same bytes as all a capture kept of a head, and as the body that follows one.
    if let vendorwatch::extract::http::Parse::Request(Request { head_len, .. }) = parse_request_cut(d) {
        assert!(head_len <= d.len());
    }
    // A later request on a connection read as HTTP: any method, the line reader's fallback.
    for cut in [false, true] {
        if let vendorwatch::extract::http::Parse::Request(Request { head_len, .. }) = parse_next_request(d, cut) {
            assert!(head_len <= d.len());
        }
    }
    let mut chunked = BodySkip::Chunked(Default::default());
    if let Ok((n, _)) = chunked.skip(d) {
        assert!(n <= d.len());
    }
});
