//! The pcap / pcapng reader over an in-memory file: every packet is read until the end or
//! the first error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vendorwatch::capture::file::CaptureReader;

fuzz_target!(|d: &[u8]| {
    let source = Box::new(std::io::Cursor::new(d.to_vec()));
    let Ok(mut reader) = CaptureReader::new("fuzz".into(), source) else {
        return;
    };
    let mut bytes = 0usize;
    while let Ok(vendorwatch::capture::file::Step::Packet) = reader.next_packet(|p| bytes += p.data.len()) {}
    // Whatever the reader handed out came from the input.
    assert!(
        bytes <= d.len(),
        "{bytes} packet bytes out of a {}-byte file",
        d.len()
    );
});
