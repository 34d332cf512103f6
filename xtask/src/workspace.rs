//! Where the workspace and its build output are, as cargo itself reports them.
//!
//! `cargo metadata` honours `CARGO_TARGET_DIR` and `build.target-dir`, so the demo finds
//! the binary it just built wherever the user's configuration puts it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

use crate::cmd;

/// The workspace root and target directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// Directory of the root Cargo.toml.
    pub root: PathBuf,
    /// Build output directory.
    pub target_dir: PathBuf,
}

impl Workspace {
    /// Asks `cargo metadata`.
    ///
    /// # Errors
    /// When cargo fails or its output lacks the fields.
    pub fn locate() -> anyhow::Result<Workspace> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let text = cmd::stdout(Command::new(cargo).args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
        ]))?;
        parse_metadata(&text)
    }

    /// `TARGET/<profile>/<name>`.
    pub fn binary(&self, profile: &str, name: &str) -> PathBuf {
        self.target_dir.join(profile).join(name)
    }
}

fn parse_metadata(text: &str) -> anyhow::Result<Workspace> {
    let value: serde_json::Value =
        serde_json::from_str(text).context("cargo metadata printed invalid JSON")?;
    let field = |name: &str| {
        value[name]
            .as_str()
            .map(PathBuf::from)
            .with_context(|| format!("cargo metadata has no {name}"))
    };
    Ok(Workspace {
        root: field("workspace_root")?,
        target_dir: field("target_directory")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_fields_are_read() {
        let ws = parse_metadata(r#"{"workspace_root":"/w","target_directory":"/t","packages":[]}"#)
            .expect("parse");
        assert_eq!(ws.root, PathBuf::from("/w"));
        assert_eq!(
            ws.binary("release", "sluice"),
            PathBuf::from("/t/release/sluice")
        );
        assert!(parse_metadata("{}").is_err());
    }
}
