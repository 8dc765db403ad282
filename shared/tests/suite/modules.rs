//! The import graph of shared/src's modules has no cycle: read from the source, every `crate::`
//! path outside comments and test modules is an edge from the module that writes it to the
//! module it names (its longest prefix that is a module; a module's own children and ancestors
//! do not count). A cycle names its modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `rules/rates/counting.rs` → `rules::rates::counting`; `rules/mod.rs` → `rules`; lib.rs → "".
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

/// Every `crate::a::b::c` path of `text` (code only), with `use crate::a::{b, c::d}` expanded.
fn crate_paths(text: &str) -> Vec<String> {
    let code: String = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while let Some(found) = code[at..].find("crate::") {
        let start = at + found + "crate::".len();
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':') {
            end += 1;
        }
        let path = code[start..end].trim_end_matches(':').to_string();
        if code[end..].starts_with('{') {
            let close = code[end..].find('}').map_or(code.len(), |c| end + c);
            for item in code[end + 1..close].split(',') {
                let item = item.split_whitespace().next().unwrap_or("");
                out.push(format!("{path}::{item}"));
            }
        }
        out.push(path);
        at = end;
    }
    out
}

#[test]
fn the_module_graph_has_no_cycle() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&root, &mut all);
    let modules: BTreeMap<String, PathBuf> = all.iter().map(|f| (module_of(&root, f), f.clone())).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        for path in crate_paths(&text) {
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let Some(target) = (1..=segments.len())
                .rev()
                .map(|n| segments[..n].join("::"))
                .find(|m| modules.contains_key(m))
            else {
                continue;
            };
            let related = target == *module
                || module.starts_with(&format!("{target}::"))
                || target.starts_with(&format!("{module}::"));
            if !related {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    // Depth-first search; a back edge is a cycle.
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, bool>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(m, false);
        stack.push(m);
        for next in edges.get(m).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(false) => {
                    let from = stack.iter().position(|s| *s == next).unwrap();
                    return Some(
                        stack[from..]
                            .iter()
                            .map(|s| s.to_string())
                            .chain([next.clone()])
                            .collect(),
                    );
                }
                Some(true) => {}
                None => {
                    if let Some(cycle) = visit(next, edges, state, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(m, true);
        None
    }
    let mut state = BTreeMap::new();
    for m in modules.keys() {
        if !state.contains_key(m.as_str()) {
            let cycle = visit(m, &edges, &mut state, &mut Vec::new());
            assert!(cycle.is_none(), "import cycle: {}", cycle.unwrap().join(" -> "));
        }
    }
    assert!(
        edges.len() > 20,
        "the graph was read: {} modules with imports",
        edges.len()
    );
}

/// A newcomer finds their room: no file of the library or the CLI is over 700 lines, and the
/// CLI's main.rs (the clap tree and the dispatch) is under 400.
#[test]
fn every_file_is_a_room_not_a_hall() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    files(&manifest.join("src"), &mut all);
    files(&manifest.join("../cli/src"), &mut all);
    let mut big: Vec<(usize, String)> = all
        .iter()
        .map(|f| {
            (
                std::fs::read_to_string(f).unwrap().lines().count(),
                f.display().to_string(),
            )
        })
        .filter(|(lines, _)| *lines > 700)
        .collect();
    big.sort();
    assert!(big.is_empty(), "files over 700 lines: {big:?}");
    let main = std::fs::read_to_string(manifest.join("../cli/src/main.rs")).unwrap();
    assert!(
        main.lines().count() < 400,
        "cli/src/main.rs has {} lines",
        main.lines().count()
    );
    assert!(all.len() > 60, "the tree was read: {} files", all.len());
}
