//! The docs match the code: the crate list in README.md and the dependency list in
//! docs/ARCHITECTURE.md against `crates/` and each crate's Cargo.toml (issue 12, finding 12: the
//! README left out lepton-llm and the diagram drew a train → photon → serve chain that no
//! Cargo.toml had).

use std::collections::BTreeMap;

use crate::support::repo;

/// Each crate under `crates/` and the lepton crates in its `[dependencies]`.
fn real_dependencies() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let manifest: toml::Table = toml::from_str(&text).unwrap();
        let name = manifest["package"]["name"].as_str().unwrap().to_string();
        assert_eq!(dir.file_name().unwrap().to_str(), Some(name.as_str()));
        let mut deps: Vec<String> = manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
            .into_iter()
            .flat_map(|t| t.keys())
            .filter(|k| k.starts_with("lepton-"))
            .cloned()
            .collect();
        deps.sort();
        out.insert(name, deps);
    }
    out
}

#[test]
fn architecture_dependency_list_matches_the_manifests() {
    let doc = std::fs::read_to_string(repo().join("docs/ARCHITECTURE.md")).unwrap();
    let start = doc
        .find("<!-- dependencies:")
        .expect("the dependency list marker");
    let end = doc.find("<!-- end dependencies -->").unwrap();
    let mut documented = BTreeMap::new();
    for line in doc[start..end].lines().filter(|l| l.starts_with("- `")) {
        let (name, deps) = line[3..].split_once("`: ").unwrap();
        let mut deps: Vec<String> = if deps == "(none)" {
            Vec::new()
        } else {
            deps.split(", ").map(str::to_string).collect()
        };
        deps.sort();
        documented.insert(name.to_string(), deps);
    }
    assert_eq!(documented, real_dependencies());
}

#[test]
fn readme_crate_list_matches_the_workspace() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `crates/` |"))
        .expect("the crates/ row of the layout table");
    let mut listed: Vec<&str> = row
        .split('`')
        .filter(|w| w.starts_with("lepton-"))
        .collect();
    listed.sort();
    let real: Vec<String> = real_dependencies().into_keys().collect();
    assert_eq!(listed, real);
}
