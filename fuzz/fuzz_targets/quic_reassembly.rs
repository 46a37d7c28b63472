//! `CryptoStream::add` with (offset, data) pairs, checked against a naive reference: a byte
//! map where the first copy of each byte wins, capped at `MAX_CRYPTO_BYTES`, and for a frame
//! that starts past the received prefix at `MAX_CRYPTO_AHEAD` past it.
//!
//! Record: kind (u8), length (u16), offset (u16, or u64 when `kind & 1`), then the data.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vendorwatch::extract::quic::{CryptoStream, MAX_CRYPTO_AHEAD, MAX_CRYPTO_BYTES};
use vendorwatch_fuzz::Cursor;

fuzz_target!(|d: &[u8]| {
    let mut c = Cursor::new(d);
    let mut stream = CryptoStream::new();
    let mut reference: Vec<Option<u8>> = vec![None; MAX_CRYPTO_BYTES];
    let mut dropped = 0u64;
    let mut prefix: Vec<u8> = Vec::new();
    while !c.is_empty() {
        let (Some(kind), Some(len)) = (c.u8(), c.u16()) else {
            break;
        };
        let offset = if kind & 1 == 1 {
            match c.take(8) {
                Some(b) => u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                None => break,
            }
        } else {
            match c.u16() {
                Some(o) => u64::from(o),
                None => break,
            }
        };
        let data = c.take_up_to(usize::from(len));
        stream.add(offset, data);

        let received = prefix.len();
        let limit = if offset <= received as u64 {
            MAX_CRYPTO_BYTES
        } else {
            MAX_CRYPTO_BYTES.min(received + MAX_CRYPTO_AHEAD)
        };
        for (i, &byte) in data.iter().enumerate() {
            let pos = offset.checked_add(i as u64);
            let slot = pos
                .and_then(|p| usize::try_from(p).ok())
                .filter(|&p| p < limit)
                .and_then(|p| reference.get_mut(p));
            match slot {
                Some(slot) => {
                    slot.get_or_insert(byte);
                }
                None => dropped += 1,
            }
        }
        let expected: Vec<u8> = reference.iter().map_while(|b| *b).collect();
        assert_eq!(
            stream.contiguous(),
            expected.as_slice(),
            "contiguous prefix"
        );
        assert_eq!(stream.dropped(), dropped, "dropped byte count");
        assert!(
            stream.contiguous().starts_with(&prefix),
            "a returned prefix changed"
        );
        prefix = stream.contiguous().to_vec();
    }
});
