//! The broker's layers (ARCHITECTURE.md) as the imports must obey them: a module may use its
//! own layer and the layers below, never one above. The test reads every `crate::` and
//! `super::` path in `broker/src` and fails on a path that climbs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers from the ground up, each with the top-level modules (or `module::submodule`
/// prefixes) it holds.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "ground",
        &[
            "subject", "protocol", "options", "log", "signal", "clock", "raft",
        ],
    ),
    ("routing", &["sublist", "transform"]),
    ("config", &["config"]),
    ("core", &["accounts", "auth", "server"]),
    ("services", &["jetstream", "cluster"]),
    ("monitor", &["monitor"]),
    ("system", &["system"]),
    ("node", &["node"]),
    ("binary", &["cli", "main", "lib"]),
];

/// The layer of a module path (`jetstream::stream::source`), by its longest listed prefix.
fn layer_of(module: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, (_, mods)) in LAYERS.iter().enumerate() {
        for m in *mods {
            let hit = module == *m || module.starts_with(&format!("{m}::"));
            if hit && best.is_none_or(|(_, len)| m.len() > len) {
                best = Some((i, m.len()));
            }
        }
    }
    best.map(|(i, _)| i)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read broker/src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `jetstream/stream/source.rs` → `["jetstream", "stream", "source"]`; `mod.rs` is its folder.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The source without comments (doc comments included), so prose naming a path is not read
/// as an import.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path the code names: `crate::a::b` as `a::b`, `super::x` resolved from
/// `module` (the file's own module path).
fn named_paths(code: &str, module: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    // The module `super` names from this file (a `mod.rs` included: its module's parent).
    let parent = &module[..module.len().saturating_sub(1)];
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start).map(|i| i + from) {
            from = i + start.len();
            if i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b':') {
                continue;
            }
            let mut base: Vec<String> = if start == "crate::" {
                Vec::new()
            } else {
                parent.to_vec()
            };
            let mut j = from;
            // `super::super::`…
            while start == "super::" && code[j..].starts_with("super::") {
                base.pop();
                j += "super::".len();
            }
            // Up to two more segments name the module (`a::b`); a brace group stops there.
            for _ in 0..2 {
                let end = code[j..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(code.len(), |k| k + j);
                if end == j {
                    break;
                }
                base.push(code[j..end].to_string());
                if !code[end..].starts_with("::") {
                    break;
                }
                j = end + 2;
            }
            if !base.is_empty() {
                out.insert(base.join("::"));
            }
        }
    }
    out
}

#[test]
fn imports_never_climb_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut unplaced = Vec::new();
    let mut climbs = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let name = module.join("::");
        let name = if name.is_empty() {
            "lib".to_string()
        } else {
            name
        };
        let Some(own) = layer_of(&name) else {
            unplaced.push(name);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for path in named_paths(&code_only(&text), &module) {
            // A name in the crate root (a macro, `crate::Foo`) has no layer of its own.
            let Some(to) = layer_of(&path) else { continue };
            if to > own {
                climbs.push(format!(
                    "{} ({}) uses {path} ({})",
                    file.strip_prefix(&src).unwrap().display(),
                    LAYERS[own].0,
                    LAYERS[to].0
                ));
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add them to LAYERS and ARCHITECTURE.md): {unplaced:?}"
    );
    assert!(
        climbs.is_empty(),
        "imports from a lower layer to a higher one:\n{}",
        climbs.join("\n")
    );
}

#[test]
fn the_reader_sees_climbing_paths() {
    // The parser itself: a `crate::` path, a nested `super::`, and prose that is not code.
    let code = code_only(
        "use crate::monitor::util::Params;\nlet x = super::super::super::cluster::Cluster::of(s);\n// crate::node::start\n",
    );
    let module: Vec<String> = ["jetstream", "stream", "source"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let paths = named_paths(&code, &module);
    assert!(paths.contains("monitor::util"), "{paths:?}");
    assert!(paths.contains("cluster::Cluster"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("node")), "{paths:?}");
    assert_eq!(layer_of("cluster::Cluster"), Some(4));
    assert_eq!(layer_of("monitor::util"), Some(5));
}

/// Lines of a file before its `#[cfg(test)]` module: what a reader of the code itself meets.
fn code_lines(text: &str) -> usize {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .count()
}

/// The `#[path]` attribute, spelt so that this file does not contain it.
const PATH_ATTR: &str = concat!("#[", "path");

/// The limit on a source file's size (without its tests), so a concern gets a file of its own.
const MAX_LINES: usize = 900;

#[test]
fn files_are_easy_to_find() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut seen = std::collections::BTreeMap::<String, Vec<String>>::new();
    let mut faults = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if !["mod.rs", "lib.rs", "main.rs", "tests.rs"].contains(&name.as_str()) {
            seen.entry(name).or_default().push(rel.clone());
        }
        let text = std::fs::read_to_string(file).expect("read source");
        let lines = code_lines(&text);
        if lines > MAX_LINES {
            faults.push(format!(
                "{rel}: {lines} lines before its tests (limit {MAX_LINES})"
            ));
        }
        let code = code_only(&text);
        if code.contains(PATH_ATTR) {
            faults.push(format!("{rel}: mounts a module with {PATH_ATTR}]"));
        }
        let before_tests = &code[..code.find("#[cfg(test)]").unwrap_or(code.len())];
        if before_tests.contains("use super::*") {
            faults.push(format!("{rel}: `use super::*` outside its tests"));
        }
    }
    // The tests reach their shared fixtures through `mod common;`, not `#[path]` includes.
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut test_files = Vec::new();
    rust_files(&tests, &mut test_files);
    for file in &test_files {
        let text = std::fs::read_to_string(file).expect("read test source");
        if code_only(&text).contains(PATH_ATTR) {
            let rel = file.strip_prefix(&tests).unwrap().display();
            faults.push(format!("tests/{rel}: mounts a module with {PATH_ATTR}]"));
        }
    }
    for (name, paths) in seen {
        if paths.len() > 1 {
            faults.push(format!("{name} names two modules: {paths:?}"));
        }
    }
    assert!(
        faults.is_empty(),
        "house rules broken:\n{}",
        faults.join("\n")
    );
}
