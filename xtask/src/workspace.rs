//! The workspace as `cargo metadata` describes it: its packages, which of them are the
//! library crates, their features and dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The package of the `mailroom` binary: the one package under `crates/` that is not a
/// library crate.
pub(crate) const CLI_PACKAGE: &str = "mailroom-cli";

/// The schema package, a library crate wherever its folder is.
pub(crate) const MIGRATIONS_PACKAGE: &str = "mailroom-migrations";

#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) root: PathBuf,
    pub(crate) target_dir: PathBuf,
    pub(crate) packages: Vec<Package>,
}

#[derive(Debug)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) version: String,
    /// The folder holding the package's `Cargo.toml`.
    pub(crate) dir: PathBuf,
    /// Whether the manifest declares any `[features]`.
    pub(crate) has_features: bool,
    /// Whether the package has a library target (doctests need one).
    pub(crate) has_lib: bool,
    /// Every dependency's package name, of every kind (normal, dev, build).
    pub(crate) dependencies: Vec<String>,
}

impl Workspace {
    /// Runs `cargo metadata --no-deps` in the current directory.
    pub(crate) fn load() -> Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(&cargo)
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .output()
            .with_context(|| format!("cannot run {cargo} metadata"))?;
        if !output.status.success() {
            bail!(
                "`cargo metadata` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let metadata: Value =
            serde_json::from_slice(&output.stdout).context("`cargo metadata` printed no JSON")?;
        Self::from_metadata(&metadata)
    }

    fn from_metadata(metadata: &Value) -> Result<Self> {
        let text = |value: &Value, key: &str| -> Result<String> {
            value[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("`cargo metadata` has no string `{key}`"))
        };
        let mut packages = Vec::new();
        for package in metadata["packages"].as_array().into_iter().flatten() {
            let manifest = PathBuf::from(text(package, "manifest_path")?);
            let has_lib =
                package["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|target| {
                        target["kind"].as_array().into_iter().flatten().any(|kind| {
                            matches!(kind.as_str(), Some("lib" | "rlib" | "proc-macro"))
                        })
                    });
            packages.push(Package {
                name: text(package, "name")?,
                version: text(package, "version")?,
                dir: manifest
                    .parent()
                    .context("a manifest path has a parent")?
                    .to_path_buf(),
                has_features: package["features"]
                    .as_object()
                    .is_some_and(|features| !features.is_empty()),
                has_lib,
                dependencies: package["dependencies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|dependency| dependency["name"].as_str().map(str::to_owned))
                    .collect(),
            });
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            root: PathBuf::from(text(metadata, "workspace_root")?),
            target_dir: PathBuf::from(text(metadata, "target_directory")?),
            packages,
        })
    }

    pub(crate) fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|package| package.name == name)
    }

    /// The crates a team can build on: every package under `crates/` except the binary's,
    /// plus the schema package.
    pub(crate) fn library_crates(&self) -> Vec<&Package> {
        let crates_dir = self.root.join("crates");
        self.packages
            .iter()
            .filter(|package| {
                (package.dir.starts_with(&crates_dir) && package.name != CLI_PACKAGE)
                    || package.name == MIGRATIONS_PACKAGE
            })
            .collect()
    }

    /// The workspace version, as the binary's package carries it.
    pub(crate) fn version(&self) -> Result<&str> {
        self.package(CLI_PACKAGE)
            .map(|package| package.version.as_str())
            .with_context(|| format!("the workspace has no package `{CLI_PACKAGE}`"))
    }

    /// A path shown relative to the workspace root.
    pub(crate) fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_crates_are_those_under_crates_but_the_binary_plus_the_schema() {
        let metadata = serde_json::json!({
            "workspace_root": "/w",
            "target_directory": "/w/target",
            "packages": [
                package("mailroom-model", "/w/crates/mailroom-model", true),
                package("mailroom-cli", "/w/crates/mailroom-cli", false),
                package("mailroom-migrations", "/w/migrations", true),
                package("xtask", "/w/xtask", false),
            ],
        });
        let workspace = Workspace::from_metadata(&metadata).unwrap();
        let names: Vec<&str> = workspace
            .library_crates()
            .iter()
            .map(|package| package.name.as_str())
            .collect();
        assert_eq!(names, ["mailroom-migrations", "mailroom-model"]);
        assert_eq!(workspace.version().unwrap(), "0.2.0");
        let model = workspace.package("mailroom-model").unwrap();
        assert!(model.has_lib && model.has_features);
        assert_eq!(model.dependencies, ["serde"]);
    }

    fn package(name: &str, dir: &str, lib: bool) -> Value {
        serde_json::json!({
            "name": name,
            "version": "0.2.0",
            "manifest_path": format!("{dir}/Cargo.toml"),
            "features": if lib { serde_json::json!({"mock": []}) } else { serde_json::json!({}) },
            "targets": [{ "kind": [if lib { "lib" } else { "bin" }] }],
            "dependencies": [{ "name": "serde" }],
        })
    }
}
