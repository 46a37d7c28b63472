//! `client_initials_keyed`: the first byte is the key DCID's length (0..=20), then the DCID,
//! then the datagram.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vendorwatch::extract::quic::{client_initials_keyed, MAX_CID_LEN};
use vendorwatch_fuzz::Cursor;

fuzz_target!(|d: &[u8]| {
    let mut c = Cursor::new(d);
    let Some(n) = c.u8() else { return };
    let Some(key_dcid) = c.take(usize::from(n) % (MAX_CID_LEN + 1)) else {
        return;
    };
    let _ = client_initials_keyed(c.rest(), key_dcid);
});
