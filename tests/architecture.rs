//! The map in docs/architecture.md, enforced: data flows one way, so no module of `src/` may
//! depend on a module that depends back on it; nothing but the crate root imports the command
//! line; no file holds more than about 800 lines of non-test code.
//!
//! Each file of `src/` is a module (`src/probe/imds/mod.rs` is `probe::imds`). Its dependencies
//! are the modules its non-test code names: `use` trees and paths that start with `crate::`,
//! `super::`, `self::` or a child module's name, resolved to the longest module that exists.
//! Declaring a child (`mod x;`) is not a dependency; using it is. `#[cfg(test)]` items are left
//! out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Non-test lines a file may hold (its code up to `#[cfg(test)]`, comments included).
const MAX_CODE_LINES: usize = 800;

type Module = Vec<String>;

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_string()),
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>().is_ok_and(|m| match m {
                syn::Meta::Path(p) => p.is_ident("test"),
                syn::Meta::List(l) => {
                    l.path.is_ident("all")
                        && l.tokens.to_string().split(',').any(|t| t.trim() == "test")
                }
                _ => false,
            })
    })
}

/// Every path a file's non-test code names, as written (segments).
#[derive(Default)]
struct Paths {
    found: Vec<Vec<String>>,
    children: BTreeSet<String>,
}

impl Paths {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                self.found.push(full);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                full.push(r.ident.to_string());
                self.found.push(full);
            }
            syn::UseTree::Glob(_) => self.found.push(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_test_only(attrs) {
            return;
        }
        match item {
            syn::Item::Mod(m) if m.content.is_none() => {
                self.children.insert(m.ident.to_string());
            }
            syn::Item::Use(u) => self.use_tree(&mut Vec::new(), &u.tree),
            _ => syn::visit::visit_item(self, item),
        }
    }

    /// `pub(super)` names a module but does not use it.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.found
            .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }
}

/// The crate's modules and, for each, the modules it depends on.
fn graph() -> (
    BTreeMap<Module, BTreeSet<Module>>,
    BTreeMap<Module, PathBuf>,
) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| !f.ends_with("src/main.rs"));
    let modules: BTreeMap<Module, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut paths = Paths::default();
        paths.visit_file(&ast);
        let mut deps = BTreeSet::new();
        for path in &paths.found {
            let Some(absolute) = resolve(module, &paths.children, path) else {
                continue;
            };
            // The longest module the path names.
            let target = (0..=absolute.len())
                .rev()
                .map(|n| absolute[..n].to_vec())
                .find(|m| modules.contains_key(m))
                .unwrap();
            if &target != module {
                deps.insert(target);
            }
        }
        edges.insert(module.clone(), deps);
    }
    (edges, modules)
}

/// A path as written in `module`, made absolute; `None` for paths outside the crate.
fn resolve(module: &Module, children: &BTreeSet<String>, path: &[String]) -> Option<Module> {
    let first = path.first()?;
    let mut base = module.clone();
    let mut rest = path;
    match first.as_str() {
        "crate" => {
            base.clear();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        child if children.contains(child) => {}
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.edges[v] {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_module_of_src_depends_on_a_module_that_depends_back_on_it() {
    let (edges, _) = graph();
    let found: Vec<String> = cycles(&edges)
        .iter()
        .map(|c| {
            let members: BTreeSet<&Module> = c.iter().collect();
            let detail: Vec<String> = c
                .iter()
                .map(|m| {
                    let uses: Vec<String> = edges[m]
                        .iter()
                        .filter(|d| members.contains(d))
                        .map(name)
                        .collect();
                    format!("{} -> {}", name(m), uses.join(", "))
                })
                .collect();
            detail.join("; ")
        })
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let m = |s: &str| -> Module { s.split("::").map(str::to_string).collect() };
    let edges: BTreeMap<Module, BTreeSet<Module>> = [
        (m("a"), [m("b")].into()),
        (m("b"), [m("c")].into()),
        (m("c"), [m("a")].into()),
        (m("d"), [m("a")].into()),
    ]
    .into();
    assert_eq!(cycles(&edges), vec![vec![m("a"), m("b"), m("c")]]);
    let acyclic: BTreeMap<Module, BTreeSet<Module>> =
        [(m("a"), [m("b")].into()), (m("b"), BTreeSet::new())].into();
    assert!(cycles(&acyclic).is_empty());
}

#[test]
fn paths_resolve_as_rust_resolves_them() {
    let module: Module = vec!["probe".into(), "imds".into()];
    let children: BTreeSet<String> = ["http".to_string()].into();
    let p = |s: &str| -> Vec<String> { s.split("::").map(str::to_string).collect() };
    assert_eq!(
        resolve(&module, &children, &p("super::Prober")),
        Some(p("probe::Prober"))
    );
    assert_eq!(
        resolve(&module, &children, &p("http::ImdsHttp")),
        Some(p("probe::imds::http::ImdsHttp"))
    );
    assert_eq!(
        resolve(&module, &children, &p("crate::labels::Phase")),
        Some(p("labels::Phase"))
    );
    assert_eq!(resolve(&module, &children, &p("std::time::Duration")), None);
}

#[test]
fn nothing_but_the_crate_root_imports_the_command_line() {
    let (edges, _) = graph();
    let cli: Module = vec!["cli".into()];
    let offenders: Vec<String> = edges
        .iter()
        .filter(|(m, _)| !m.is_empty() && !m.starts_with(&cli))
        .filter(|(_, deps)| deps.iter().any(|d| d.starts_with(&cli)))
        .map(|(m, _)| name(m))
        .collect();
    assert!(
        offenders.is_empty(),
        "modules that import cli: {offenders:?}"
    );
}

#[test]
fn no_file_holds_more_than_about_800_lines_of_non_test_code() {
    let (_, modules) = graph();
    let mut long = Vec::new();
    for file in modules.values() {
        let text = std::fs::read_to_string(file).unwrap();
        let code = text
            .lines()
            .take_while(|l| l.trim_end() != "#[cfg(test)]")
            .count();
        if code > MAX_CODE_LINES {
            long.push(format!("{}: {code} lines", file.display()));
        }
    }
    assert!(long.is_empty(), "split these files: {long:?}");
}
