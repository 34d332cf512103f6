//! Builds the XDP program (ebpf/sluice-ebpf) with the nightly toolchain and bpf-linker, and
//! leaves the object in OUT_DIR for `include_bytes_aligned!`. `cargo xtask setup` installs
//! what this needs.
fn main() -> anyhow::Result<()> {
    #[cfg(feature = "xdp")]
    build_ebpf()?;
    Ok(())
}

#[cfg(feature = "xdp")]
fn build_ebpf() -> anyhow::Result<()> {
    use anyhow::{Context as _, anyhow};
    use aya_build::{Package, Toolchain};

    // Read when the script runs, not when it is compiled: one target directory may serve
    // several checkouts (CI's clone beside the working tree), and a compiled-in path would
    // build the other checkout's eBPF source.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let metadata_dir = std::path::Path::new(&manifest_dir);
    let ebpf_dir = metadata_dir
        .parent()
        .ok_or_else(|| anyhow!("userspace crate has no parent directory"))?
        .join("ebpf/sluice-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: "sluice-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
    .context("building the eBPF program failed: run `cargo xtask setup` to install the nightly toolchain, rust-src and bpf-linker")
}
