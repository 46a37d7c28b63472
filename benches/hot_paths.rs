//! Criterion benchmarks of the per-packet and per-name hot paths: decoding, the TCP
//! checksum of a full-size segment, the DNS and TLS parsers, and the matcher with 10 and with 1,000,000 name rules (its cost must not
//! depend on the number of rules). Run: `cargo bench --bench hot_paths`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use vendorwatch::decode::{checksum, decode, LinkType, Transport};
use vendorwatch::detect::matcher::Matcher;
use vendorwatch::detect::rules::load_sources;
use vendorwatch::extract::{dns, tls};

fn dns_query_frame() -> Vec<u8> {
    let mut dns = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    dns.extend_from_slice(b"\x06dnl-01\x03geo\x09kaspersky\x03com\x00\x00\x01\x00\x01");
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + 8 + dns.len()) as u16;
    f.extend_from_slice(&[
        0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0xc3, 0x50, 0, 53]);
    f.extend_from_slice(&((8 + dns.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&dns);
    f
}

/// An Ethernet frame with a full-size TCP segment (1,460 bytes of data, as a bulk transfer
/// sends them) and right checksums.
fn tcp_bulk_frame() -> Vec<u8> {
    let payload: Vec<u8> = (0..1460u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut ip = vec![
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let total = (20 + 20 + payload.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let mut tcp = vec![
        0x01, 0xbb, 0xc3, 0x50, 0, 0, 0x10, 0, 0, 0, 0x20, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
    ];
    tcp.extend_from_slice(&payload);
    // The checksums, as RFC 1071 writes them: 16-bit words one at a time.
    let sum = |words: &mut dyn Iterator<Item = u16>| -> u16 {
        let mut s: u32 = words.map(u32::from).sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    };
    let be = |b: &[u8]| -> Vec<u16> {
        b.chunks(2)
            .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))
            .collect()
    };
    let ip_sum = sum(&mut be(&ip).into_iter());
    ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    let tcp_sum = sum(&mut be(&pseudo).into_iter().chain(be(&tcp)));
    tcp[16..18].copy_from_slice(&tcp_sum.to_be_bytes());
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f
}

fn client_hello() -> Vec<u8> {
    let name = b"s05.upd.kaspersky.com";
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    ext.extend_from_slice(&[0, 21, 1, 0]);
    ext.extend(std::iter::repeat_n(0u8, 256));
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 4, 0x13, 1, 0xc0, 0x2f, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// A pack with `n` generated exact names (1,000 per rule, as a threat-intel list would be
/// written), one suffix per rule and a glob in every tenth rule.
pub fn generated_pack(n: usize) -> String {
    let mut s =
        String::from("[pack]\nvendor = \"bench\"\nname = \"Bench\"\nenabled_by_default = true\nlegal_basis = [\"generated for benchmarks\"]\ndescription = \"generated\"\n");
    let per_rule = 1000.min(n.max(1));
    for r in 0..n.div_ceil(per_rule) {
        s.push_str(&format!(
            "[[rule]]\nid = \"bench.c.r{r}\"\ncategory = \"c\"\nseverity = \"high\"\nconfidence = \"high\"\ndescription = \"d\"\nsources = [{{ document = \"gen\", retrieved = \"2026-11-01\" }}]\nsuffixes = [\"zone{r}.example\"]\nnames = ["
        ));
        for i in r * per_rule..((r + 1) * per_rule).min(n) {
            s.push_str(&format!("\"host{i}.vendor{}.example\",", i % 1000));
        }
        s.push_str("]\n");
        if r % 10 == 0 {
            s.push_str(&format!("globs = [\"n*-{r}.glob{}.example\"]\n", r % 100));
        }
    }
    s
}

fn benches(c: &mut Criterion) {
    let frame = dns_query_frame();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ethernet_ipv4_udp", |b| {
        b.iter(|| decode(LinkType::Ethernet, black_box(&frame)).is_ok())
    });
    g.finish();

    let bulk = tcp_bulk_frame();
    let pkt = decode(LinkType::Ethernet, &bulk).expect("the bulk frame decodes");
    let Transport::Tcp(seg) = &pkt.transport else {
        panic!("the bulk frame is TCP");
    };
    assert_eq!(checksum::tcp(&pkt, seg), checksum::Validity::Good);
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(bulk.len() as u64 - 14));
    g.bench_function("tcp_1460", |b| {
        b.iter(|| checksum::tcp(black_box(&pkt), black_box(seg)))
    });
    g.finish();

    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Elements(1));
    let msg = &frame[42..];
    g.bench_function("dns_parse_query", |b| {
        b.iter(|| dns::parse(black_box(msg)).is_ok())
    });
    let hello = client_hello();
    g.bench_function("tls_client_hello_sni", |b| {
        b.iter(|| {
            matches!(
                tls::parse_client_hello(black_box(&hello)),
                tls::Parse::Hello(_)
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("match_name");
    g.throughput(Throughput::Elements(4));
    for n in [10usize, 1_000_000] {
        let loaded = load_sources(vec![("gen.toml".into(), generated_pack(n))])
            .expect("generated pack is valid");
        let m = Matcher::build(&loaded.rules, &loaded.excludes);
        let names = [
            "host7.vendor7.example",
            "a.b.zone9.example",
            "n1-0.glob0.example",
            "www.unrelated-site.example.org",
        ];
        g.bench_with_input(BenchmarkId::from_parameter(n), &m, |b, m| {
            b.iter(|| {
                names
                    .iter()
                    .map(|n| m.match_name(black_box(n)).len())
                    .sum::<usize>()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("load_rules");
    g.sample_size(10);
    let text = generated_pack(1_000_000);
    g.bench_function("1000000_names_parse_validate_index", |b| {
        b.iter(|| {
            let loaded = load_sources(vec![("gen.toml".into(), text.clone())]).expect("valid");
            Matcher::build(&loaded.rules, &loaded.excludes)
        })
    });
    g.finish();
}

criterion_group!(hot, benches);
criterion_main!(hot);
