//! The dependency direction ARCHITECTURE.md promises, held by a test: the crate's top-level
//! modules import each other without cycles, and each imports only modules of lower layers.
//!
//! Imports are read from the source (`crate::NAME` paths, grouped `use crate::{…}` lists and
//! `super::` paths that leave a top-level module are all spelled `crate::` here), leaving out
//! `#[cfg(test)] mod tests` blocks: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Top-level modules from the bottom of the stack up; a module may import only those before it.
/// Modules on one line are peers and import neither each other nor anything after them.
const LAYERS: &[&[&str]] = &[
    &["time", "mac", "operator_input"],
    &["decode"],
    &["extract"],
    &["detect"],
    &["suppress", "hosts"],
    &["metrics"],
    &["output"],
    &["capture"],
    &["pipeline"],
    &["config"],
    &["reload", "serve"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The non-test source of one file: everything before its `#[cfg(test)] mod tests` block.
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// Top-level modules named by `crate::` paths in `text`, including inside `crate::{…}` groups.
fn imported_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Each top-level module of `sensor/` and the top-level modules its non-test code imports.
fn module_imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sensor");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("sensor/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).expect("under sensor/");
            let first = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .expect("a file name");
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = fs::read_to_string(&path).expect("a source file is readable");
            let imports = imported_modules(without_tests(&text));
            let entry = graph.entry(module.clone()).or_default();
            entry.extend(imports.into_iter().filter(|m| *m != module));
        }
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for imports in graph.values_mut() {
        imports.retain(|m| known.contains(m));
    }
    graph
}

#[test]
fn every_top_level_module_has_a_layer() {
    let graph = module_imports();
    let missing: Vec<&String> = graph.keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules missing from LAYERS (add them, and to ARCHITECTURE.md): {missing:?}"
    );
}

#[test]
fn modules_import_only_lower_layers() {
    let graph = module_imports();
    let mut upward = Vec::new();
    for (module, imports) in &graph {
        let Some(own) = layer_of(module) else {
            continue;
        };
        for imported in imports {
            if layer_of(imported).is_some_and(|l| l >= own) {
                upward.push(format!("{module} -> {imported}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up or sideways (ARCHITECTURE.md says which way they go): {upward:?}"
    );
}

#[test]
fn the_reader_sees_imports_in_paths_and_groups_but_not_in_tests() {
    let text = "use crate::decode::Packet;\nuse crate::{time::Timestamp, mac};\n\
                fn f() { crate::hosts::x(); }\n#[cfg(test)]\nmod tests { use crate::cli; }\n";
    let found = imported_modules(without_tests(text));
    let expected: BTreeSet<String> = ["decode", "time", "mac", "hosts"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, expected);
}
