//! The book's chapters that show a user's `[dependencies]` build as a user's
//! crate would: each chapter's Rust examples go into a fresh crate (one
//! binary per example, hidden `# ` lines included, a bare snippet wrapped
//! in `fn main`, as rustdoc does) whose manifest has exactly the
//! dependencies the chapter lists, with `buttress` pointing at this
//! checkout. The doctests cannot catch a dependency or feature the page
//! forgets, because they build inside the workspace, where every feature
//! of every crate is on.
//!
//! The crates build under `target/fresh-crates` (their own target
//! directory, shared between chapters), with the workspace's `Cargo.lock`
//! so they get the same versions.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The code blocks of `text` whose info string starts with `lang`, with
/// that info string.
fn blocks<'t>(text: &'t str, lang: &str) -> Vec<(&'t str, String)> {
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut body = Vec::new();
        for inner in lines.by_ref() {
            if inner.starts_with("```") {
                break;
            }
            body.push(inner);
        }
        if info.split(',').next() == Some(lang) {
            found.push((info, body.join("\n")));
        }
    }
    found
}

/// A snippet as a program: hidden lines shown, wrapped in `fn main` when
/// it has none (in a function returning its `Result` when it ends in
/// `Ok::<…>(…)`, as rustdoc does).
fn program(snippet: &str) -> String {
    let code: Vec<&str> = snippet
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest.trim_start_matches(' '),
            _ => line,
        })
        .collect();
    let code = code.join("\n");
    let last = code
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    if code.contains("fn main") {
        code
    } else if last.trim_start().starts_with("Ok::<") || last.trim() == "Ok(())" {
        // Ends in a `Result`, so it may use `?`: rustdoc runs it as a
        // function returning that `Result` and unwraps it.
        format!(
            "fn main() {{\nfn run() -> Result<(), impl std::fmt::Debug> {{\n{code}\n}}\nrun().unwrap();\n}}\n"
        )
    } else {
        format!("fn main() {{\n{code}\n}}\n")
    }
}

/// The manifest of a user's crate with the chapter's dependencies, every
/// `buttress` crate taken from this checkout.
fn manifest(dependencies: &str, bins: usize) -> String {
    let runtime = root().join("runtime");
    let mut deps = String::new();
    for line in dependencies.lines() {
        let line = line.trim();
        if line.is_empty() || line == "[dependencies]" || line.starts_with('#') {
            continue;
        }
        match line.strip_prefix("buttress = ") {
            Some(spec) if spec.starts_with('"') => {
                deps += &format!("buttress = {{ path = {:?} }}\n", runtime.display());
            }
            Some(spec) => {
                let spec = spec.replacen(
                    "version = \"0.1\"",
                    &format!("path = {:?}", runtime.display()),
                    1,
                );
                deps += &format!("buttress = {spec}\n");
            }
            None => deps += &format!("{line}\n"),
        }
    }
    let mut bins_toml = String::new();
    for i in 0..bins {
        bins_toml += &format!("[[bin]]\nname = \"example{i}\"\npath = \"src/example{i}.rs\"\n\n");
    }
    format!(
        "[package]\nname = \"fresh\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n\n{bins_toml}[dependencies]\n{deps}"
    )
}

/// Build `chapter`'s examples as a fresh crate; the build's output on
/// failure.
fn build_chapter(chapter: &str) -> Result<(), String> {
    let text = fs::read_to_string(root().join("book/src").join(chapter)).unwrap();
    let toml = blocks(&text, "toml");
    let (_, dependencies) = toml
        .iter()
        .find(|(_, body)| body.trim_start().starts_with("[dependencies]"))
        .unwrap_or_else(|| panic!("{chapter} lists no [dependencies]"));
    let examples: Vec<String> = blocks(&text, "rust")
        .into_iter()
        .filter(|(info, _)| !info.contains("ignore") && !info.contains("compile_fail"))
        .map(|(_, body)| program(&body))
        .collect();
    assert!(!examples.is_empty(), "{chapter} has no Rust example");
    let dir = root()
        .join("target/fresh-crates")
        .join(chapter.trim_end_matches(".md"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        manifest(dependencies, examples.len()),
    )
    .unwrap();
    fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    for (i, example) in examples.iter().enumerate() {
        fs::write(dir.join(format!("src/example{i}.rs")), example).unwrap();
    }
    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--bins", "--message-format=short"])
        .env(
            "CARGO_TARGET_DIR",
            root().join("target/fresh-crates/target"),
        )
        .current_dir(&dir)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn getting_started_builds_as_a_fresh_crate() {
    if let Err(errors) = build_chapter("getting-started.md") {
        panic!("\"Getting started\" does not build with the dependencies it lists:\n{errors}");
    }
}

#[test]
fn configuration_builds_as_a_fresh_crate() {
    if let Err(errors) = build_chapter("configuration.md") {
        panic!("\"Configuration\" does not build with the dependencies it lists:\n{errors}");
    }
}

#[test]
fn http_clients_builds_as_a_fresh_crate() {
    if let Err(errors) = build_chapter("http-clients.md") {
        panic!("\"HTTP clients\" does not build with the dependencies it lists:\n{errors}");
    }
}

#[test]
fn webhooks_builds_as_a_fresh_crate() {
    if let Err(errors) = build_chapter("webhooks.md") {
        panic!("\"Receiving webhooks\" does not build with the dependencies it lists:\n{errors}");
    }
}

#[test]
fn middleware_builds_as_a_fresh_crate() {
    if let Err(errors) = build_chapter("middleware.md") {
        panic!("\"Middleware: reqwest\" does not build with the dependencies it lists:\n{errors}");
    }
}

/// The chapters built above: a chapter that starts listing its
/// `[dependencies]` must be added to them.
const BUILT: &[&str] = &[
    "getting-started.md",
    "configuration.md",
    "http-clients.md",
    "webhooks.md",
    "middleware.md",
];

#[test]
fn every_chapter_that_lists_dependencies_is_built() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the book's sources") {
        let path = entry.expect("a book file").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if name.ends_with(".md")
            && text.contains("[dependencies]")
            && !BUILT.contains(&name.as_str())
        {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "chapters listing [dependencies] with no fresh-crate test: {missing:?}"
    );
}

/// The extraction itself: hidden lines are code, a fragment gets a main.
#[test]
fn snippets_become_programs_as_rustdoc_makes_them() {
    let text = "intro\n```toml\n[dependencies]\nx = \"1\"\n```\n```rust\n# fn helper() {}\nlet a = 1;\n```\n```rust,ignore\nnope\n```\n";
    assert_eq!(blocks(text, "toml").len(), 1);
    let rust = blocks(text, "rust");
    assert_eq!(rust.len(), 2);
    assert_eq!(
        program(&rust[0].1),
        "fn main() {\nfn helper() {}\nlet a = 1;\n}\n"
    );
    assert!(rust[1].0.contains("ignore"));
    assert!(
        manifest("[dependencies]\nbuttress = \"0.1\"\ntokio = \"1\"\n", 1)
            .contains("tokio = \"1\"")
    );
}
