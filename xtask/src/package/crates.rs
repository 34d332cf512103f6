//! What else is in the binary: the third-party crates statically linked into
//! /usr/bin/sluice, with their declared licenses, for the package's copyright file.
//!
//! Read from `cargo metadata --filter-platform x86_64-unknown-linux-gnu`: everything the
//! `sluice` package reaches through normal (not build or dev) dependencies, minus
//! proc-macro crates (they run in the compiler and are not linked; nor are their own
//! dependencies, unless reached another way) and minus the workspace's own crates. Features
//! are unified across the workspace, so the list may name a crate the binary does not
//! link in the end; it never leaves out one that it does.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context as _;
use serde_json::Value;

/// One linked crate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkedCrate {
    pub name: String,
    pub version: String,
    /// The SPDX expression of its Cargo.toml (`license-file` crates: "see its sources").
    pub license: String,
}

/// The crates from registries or git that `root` links, sorted by name and version.
///
/// # Errors
/// When the metadata lacks `packages` or `resolve`, or has no package named `root`.
pub fn linked_crates(metadata: &Value, root: &str) -> anyhow::Result<Vec<LinkedCrate>> {
    let packages: HashMap<&str, &Value> = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?
        .iter()
        .filter_map(|package| Some((package["id"].as_str()?, package)))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .context("cargo metadata has no resolve graph (was --no-deps given?)")?
        .iter()
        .filter_map(|node| Some((node["id"].as_str()?, node)))
        .collect();
    let root_id = packages
        .iter()
        .find(|(_, package)| package["name"] == root)
        .map(|(id, _)| *id)
        .with_context(|| format!("cargo metadata has no package {root}"))?;

    let mut seen = BTreeSet::new();
    let mut stack = vec![root_id];
    let mut linked = BTreeSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(package) = packages.get(id) else {
            continue;
        };
        if id != root_id && is_proc_macro(package) {
            continue;
        }
        if !package["source"].is_null() {
            linked.insert(LinkedCrate {
                name: text(&package["name"]),
                version: text(&package["version"]),
                license: package["license"]
                    .as_str()
                    .map_or_else(|| "see its sources".to_owned(), str::to_owned),
            });
        }
        let deps = nodes.get(id).and_then(|node| node["deps"].as_array());
        for dep in deps.into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|kind| kind["kind"].is_null());
            if let (true, Some(dep_id)) = (normal, dep["pkg"].as_str()) {
                stack.push(dep_id);
            }
        }
    }
    Ok(linked.into_iter().collect())
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// True when every target of `package` is a proc-macro.
fn is_proc_macro(package: &Value) -> bool {
    let targets = package["targets"].as_array();
    targets.is_some_and(|targets| {
        !targets.is_empty()
            && targets.iter().all(|target| {
                target["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().all(|kind| kind == "proc-macro"))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(id: &str, source: Option<&str>, license: Option<&str>, kind: &str) -> Value {
        serde_json::json!({
            "id": id, "name": id, "version": "1.0.0", "source": source, "license": license,
            "targets": [{"kind": [kind]}],
        })
    }

    fn dep(pkg: &str, kind: Option<&str>) -> Value {
        serde_json::json!({"pkg": pkg, "dep_kinds": [{"kind": kind, "target": null}]})
    }

    #[test]
    fn normal_dependencies_are_followed_and_proc_macros_build_and_own_crates_left_out() {
        let registry = Some("registry+https://github.com/rust-lang/crates.io-index");
        let metadata = serde_json::json!({
            "packages": [
                package("sluice", None, Some("Apache-2.0"), "bin"),
                package("sluice-xsk", None, Some("Apache-2.0"), "lib"),
                package("zstd", registry, Some("MIT"), "lib"),
                package("libc", registry, Some("MIT OR Apache-2.0"), "lib"),
                package("serde_derive", registry, Some("MIT"), "proc-macro"),
                package("syn", registry, Some("MIT"), "lib"),
                package("cc", registry, Some("MIT"), "lib"),
                package("tempfile", registry, Some("MIT"), "lib"),
                package("odd", registry, None, "lib"),
            ],
            "resolve": {"nodes": [
                {"id": "sluice", "deps": [
                    dep("sluice-xsk", None), dep("serde_derive", None),
                    dep("cc", Some("build")), dep("tempfile", Some("dev")),
                ]},
                {"id": "sluice-xsk", "deps": [dep("zstd", None), dep("odd", None)]},
                {"id": "zstd", "deps": [dep("libc", None), dep("cc", Some("build"))]},
                {"id": "serde_derive", "deps": [dep("syn", None)]},
                {"id": "libc", "deps": []},
            ]},
        });
        let names: Vec<(String, String)> = linked_crates(&metadata, "sluice")
            .expect("crates")
            .into_iter()
            .map(|c| (c.name, c.license))
            .collect();
        assert_eq!(
            names,
            [
                ("libc".to_owned(), "MIT OR Apache-2.0".to_owned()),
                ("odd".to_owned(), "see its sources".to_owned()),
                ("zstd".to_owned(), "MIT".to_owned()),
            ]
        );
        assert!(linked_crates(&metadata, "nothing").is_err());
        assert!(linked_crates(&serde_json::json!({"packages": []}), "sluice").is_err());
    }
}
