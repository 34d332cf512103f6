//! The test venv's Python: `$HOME/.local/share/sluice/venv/bin/python`, where `cargo xtask
//! setup` installs the pinned PyPI packages the independent readers need (pyarrow, duckdb).
//! One place that finds it, for every test that runs a Python reader.

use std::path::PathBuf;
use std::process::Command;

/// The venv's interpreter, when it exists and imports every one of `modules`.
pub fn venv_python(modules: &[&str]) -> Option<PathBuf> {
    let python =
        PathBuf::from(std::env::var_os("HOME")?).join(".local/share/sluice/venv/bin/python");
    if !python.is_file() {
        return None;
    }
    let imports = modules
        .iter()
        .map(|m| format!("import {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let ok = Command::new(&python)
        .args(["-c", &imports])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}
