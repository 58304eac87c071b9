//! The core depends one way: no module of `buttress-core` imports a module
//! that, directly or through others, imports it back. This test reads the
//! core's sources, builds the graph of its top-level modules (a `use
//! crate::x` or a `crate::x::…` path outside comments and unit tests is an
//! edge; an item the crate root re-exports counts as its module), and fails
//! on the first cycle it finds, naming it. It prints the layers, lowest
//! first, with `--nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn core_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/core/src")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            all.push(path);
        }
    }
    all
}

/// The code of a file without its comments and its unit tests.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers that follow `crate::` in `code`, and those inside
/// `use crate::{…}` groups.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find("};").unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = ident(part.trim().trim_start_matches('{'));
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

/// The core's top-level modules and what each imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = core_src();
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" {
            continue;
        }
        let owned = if path.is_dir() {
            files(&path)
        } else {
            vec![path]
        };
        modules.entry(name).or_default().extend(owned);
    }
    // Items the root re-exports: `pub use module::{A, B};`.
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut reexported = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        if !modules.contains_key(module) {
            continue;
        }
        for item in items
            .trim_end_matches(';')
            .trim_matches(['{', '}'])
            .split(',')
        {
            let item = item.split(" as ").last().unwrap().trim();
            if !item.is_empty() {
                reexported.insert(item.to_owned(), module.to_owned());
            }
        }
    }
    let mut edges = BTreeMap::new();
    for (name, owned) in &modules {
        let mut to = BTreeSet::new();
        for file in owned {
            for path in crate_paths(&code(file)) {
                let target = if modules.contains_key(&path) {
                    Some(path)
                } else {
                    reexported.get(&path).cloned()
                };
                if let Some(target) = target.filter(|t| t != name) {
                    to.insert(target);
                }
            }
        }
        edges.insert(name.clone(), to);
    }
    edges
}

/// A cycle through `start`, if there is one.
fn cycle_from(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in &edges[&at] {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn the_core_modules_depend_one_way() {
    let edges = graph();
    assert!(
        edges.len() > 20 && edges["call"].contains("bound"),
        "the graph was not read: {edges:?}"
    );
    for module in edges.keys() {
        if let Some(cycle) = cycle_from(&edges, module) {
            panic!(
                "the core's modules import in a loop: {} (break it by moving what both need to a lower module)",
                cycle.join(" → ")
            );
        }
    }
    // The layers, lowest first: each module sits one above the highest
    // module it imports.
    let mut layer: BTreeMap<&str, usize> = BTreeMap::new();
    while layer.len() < edges.len() {
        for (module, to) in &edges {
            if layer.contains_key(module.as_str()) {
                continue;
            }
            if let Some(level) = to
                .iter()
                .map(|t| layer.get(t.as_str()).copied())
                .try_fold(0, |high, l| l.map(|l| high.max(l + 1)))
            {
                layer.insert(module, level);
            }
        }
    }
    let top = layer.values().max().copied().unwrap_or(0);
    for level in 0..=top {
        let at: Vec<&str> = layer
            .iter()
            .filter(|(_, l)| **l == level)
            .map(|(m, _)| *m)
            .collect();
        println!("layer {level}: {}", at.join(", "));
    }
}

/// The check itself finds a loop when there is one.
#[test]
fn a_loop_is_found() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    edges.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycle_from(&edges, "a").unwrap(),
        ["a", "b", "c", "a"].map(String::from)
    );
    edges.get_mut("c").unwrap().clear();
    assert!(cycle_from(&edges, "a").is_none());
    assert_eq!(
        crate_paths("use crate::{error::Error, sync::RwLock};\nlet x = crate::call::Call::new();"),
        BTreeSet::from(["call", "error", "sync"].map(String::from))
    );
}
