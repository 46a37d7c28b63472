//! A rule pack as text: loaded and validated, then (when valid) compiled into the matcher
//! and asked about a few names, so the glob and suffix tables built from fuzzed patterns
//! are exercised too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vendorwatch::detect::rules::load_sources;
use vendorwatch::detect::RuleSet;

fuzz_target!(|d: &[u8]| {
    let text = String::from_utf8_lossy(d).into_owned();
    let Ok(loaded) = load_sources(vec![("fuzz.toml".into(), text)]) else {
        return;
    };
    let Ok(set) = RuleSet::compile(loaded, None) else {
        return;
    };
    for name in [
        "kaspersky.com",
        "dnl-01.geo.kaspersky.com",
        "a.b.c.example",
        "",
    ] {
        let _ = set.matcher.match_name(name);
    }
});
