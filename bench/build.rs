//! Builds the benchmark's eBPF programs (ebpf/sluice-bench-ebpf) with the nightly
//! toolchain and bpf-linker, and leaves the object in OUT_DIR for `include_bytes_aligned!`.
//! `cargo xtask setup` installs what this needs.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // Read when the script runs, not when it is compiled (one target directory may serve
    // several checkouts; see userspace/build.rs).
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("bench crate has no parent directory"))?
        .join("ebpf/sluice-bench-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: "sluice-bench-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
    .context("building the benchmark eBPF programs failed: run `cargo xtask setup` to install the nightly toolchain, rust-src and bpf-linker")
}
