//! `StreamBuf` (one direction of a TCP flow) driven by a sequence of operations, with the
//! bounds its documentation promises checked after each.
//!
//! Input: cap (u16), then records: op (u8) and its arguments —
//! push: seq (u32), length (u16), payload; start_at: seq (u32); consume: n (u16); settle;
//! release.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vendorwatch::extract::stream::StreamBuf;
use vendorwatch_fuzz::Cursor;

fuzz_target!(|d: &[u8]| {
    let mut c = Cursor::new(d);
    let Some(cap) = c.u16() else { return };
    let cap = usize::from(cap);
    let mut s = StreamBuf::new(cap);
    while let Some(op) = c.u8() {
        match op % 9 {
            // Pushes are the common case: most op values are pushes.
            0..=4 => {
                let (Some(seq), Some(len)) = (c.u32(), c.u16()) else {
                    break;
                };
                let payload = c.take_up_to(usize::from(len));
                let _ = s.push(seq, payload);
            }
            5 => match c.u32() {
                Some(seq) => {
                    let _ = s.start_at(seq);
                }
                None => break,
            },
            6 => match c.u16() {
                Some(n) => s.consume(usize::from(n)),
                None => break,
            },
            7 => {
                let _ = s.settle();
            }
            _ => s.release(),
        }
        assert!(
            s.data().len() <= cap,
            "{} bytes over a cap of {cap}",
            s.data().len()
        );
        let starts = s.segment_starts();
        assert!(
            starts.windows(2).all(|w| w[0] < w[1]),
            "segment starts not increasing: {starts:?}"
        );
        assert!(
            starts.iter().all(|&x| x < s.data().len()),
            "segment start past the data ({} bytes): {starts:?}",
            s.data().len()
        );
    }
});
