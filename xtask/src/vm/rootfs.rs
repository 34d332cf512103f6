//! The cached Debian 12 (bookworm) root filesystem the VM tests boot, with the kernels
//! they boot copied out next to it.
//!
//! Built once with debootstrap (minbase plus systemd and what the guest probe and the
//! package need), then, in a chroot, bookworm-backports' 6.12 kernel and bullseye's 5.10
//! kernel (the "below the minimum" case) next to bookworm's own 6.1, so every kernel's
//! modules are present. Cached outside the clone ([`super::cache`]), rebuilt only when
//! missing or when [`RECIPE_VERSION`] changes (~5 min and ~1 GB, needs root and the
//! network). Treat the result as read-only: each VM run copies it into a disk image of its
//! own with `mkfs.ext4 -d`.
//!
//! Layout of the entry: `rootfs/` (the tree), `boot/vmlinuz-R` and `boot/initrd.img-R` for
//! each kernel release R, readable outside the tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::cache;
use crate::cmd;

/// Bump when the recipe below changes: the cached rootfs is rebuilt on the next run.
pub const RECIPE_VERSION: &str = "debian12-v1";

/// The cache entry's name.
const ENTRY: &str = "debian12";

/// Debian mirror for debootstrap and apt.
const MIRROR: &str = "http://deb.debian.org/debian";

/// Packages debootstrap adds to minbase: an init (systemd), the stock 6.1 kernel, what
/// the guest probe calls, and what the Sluice package depends on (adduser for its system
/// user), so that `apt install ./sluice_*.deb` needs no network in the guest.
pub const INCLUDE: [&str; 13] = [
    "systemd",
    "systemd-sysv",
    "linux-image-amd64",
    "iproute2",
    "udev",
    "ethtool",
    "kmod",
    "adduser",
    "curl",
    "iputils-ping",
    "ca-certificates",
    "procps",
    "zstd",
];

/// Units masked in the guest: timers and gettys that would compete with the test for the
/// two emulated CPUs or for the serial console the probe talks on.
const MASKED_UNITS: [&str; 8] = [
    "serial-getty@ttyS0.service",
    "getty@tty1.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "man-db.timer",
    "systemd-timesyncd.service",
];

/// The guest's static network: eth0 at 192.0.2.2/24 (the host's tap is 192.0.2.1).
const NETWORK_UNIT: &str = "[Match]\nName=eth0\n\n[Network]\nAddress=192.0.2.2/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n";

/// One kernel of the cached image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `uname -r`, e.g. `6.1.0-41-amd64`.
    pub release: String,
    /// Its image, outside the rootfs.
    pub vmlinuz: PathBuf,
    /// Its initramfs, outside the rootfs.
    pub initrd: PathBuf,
}

/// Ensures the cached rootfs exists (building it when missing or stale) and returns its
/// directory. Needs root and network access the first time (~5 min).
///
/// # Errors
/// When the cache cannot be built (not root, no debootstrap, no network).
pub fn debian12_rootfs() -> anyhow::Result<PathBuf> {
    Ok(debian12_entry()?.join("rootfs"))
}

/// The cache entry (rootfs and kernels), built when missing or stale.
///
/// # Errors
/// As [`debian12_rootfs`].
pub fn debian12_entry() -> anyhow::Result<PathBuf> {
    cache::ensure_entry(ENTRY, RECIPE_VERSION, build)
}

/// The kernels of the cached image, sorted by release.
///
/// # Errors
/// When the cache cannot be built or read.
pub fn kernels() -> anyhow::Result<Vec<Kernel>> {
    let boot = debian12_entry()?.join("boot");
    let mut kernels = Vec::new();
    for entry in std::fs::read_dir(&boot).with_context(|| format!("reading {}", boot.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            kernels.push(Kernel {
                release: release.to_owned(),
                vmlinuz: boot.join(&name),
                initrd: boot.join(format!("initrd.img-{release}")),
            });
        }
    }
    kernels.sort_by(|a, b| a.release.cmp(&b.release));
    Ok(kernels)
}

/// The kernel whose release starts with `series` followed by `.` or `-` (`"6.1"` matches
/// `6.1.0-41-amd64`, not `6.12.48+deb12-amd64`).
pub fn pick_kernel<'a>(kernels: &'a [Kernel], series: &str) -> Option<&'a Kernel> {
    kernels.iter().rev().find(|k| {
        k.release
            .strip_prefix(series)
            .is_some_and(|rest| rest.starts_with(['.', '-']))
    })
}

fn build(entry: &Path) -> anyhow::Result<()> {
    if !sluice_testkit::privilege::is_root() {
        bail!("building the VM rootfs needs root (debootstrap, chroot)");
    }
    for tool in ["debootstrap", "unshare", "chroot"] {
        if sluice_testkit::privilege::find_tool(tool).is_none() {
            bail!("building the VM rootfs needs `{tool}` (cargo xtask setup installs it)");
        }
    }
    let root = entry.join("rootfs");
    println!(
        "vm: building the Debian 12 rootfs in {} (~5 min)",
        root.display()
    );
    cmd::run(Command::new("debootstrap").args([
        "--variant=minbase",
        &format!("--include={}", INCLUDE.join(",")),
        "bookworm",
        &root.to_string_lossy(),
        MIRROR,
    ]))?;
    write(
        &root,
        "etc/apt/sources.list",
        &format!(
            "deb {MIRROR} bookworm main\ndeb {MIRROR} bookworm-backports main\ndeb {MIRROR} bullseye main\n"
        ),
    )?;
    chroot(&root, &["apt-get", "update"])?;
    // The backports metapackage pulls the 6.12 image; the 6.1 image stays installed.
    chroot(
        &root,
        &[
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "-t",
            "bookworm-backports",
            "linux-image-amd64",
        ],
    )?;
    let show = cmd::stdout(&mut chroot_command(
        &root,
        &["apt-cache", "show", "linux-image-amd64/bullseye"],
    ))?;
    let bullseye = versioned_image(&show)
        .context("no versioned linux-image in bullseye's linux-image-amd64")?;
    chroot(
        &root,
        &[
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            &bullseye,
        ],
    )?;
    chroot(&root, &["apt-get", "clean"])?;
    configure_guest(&root)?;
    copy_kernels(&root, &entry.join("boot"))
}

/// The `linux-image-<release>` package a `linux-image-amd64` metapackage depends on, from
/// `apt-cache show` output.
pub fn versioned_image(apt_cache_show: &str) -> Option<String> {
    apt_cache_show
        .lines()
        .filter_map(|line| line.strip_prefix("Depends:"))
        .flat_map(|deps| deps.split(','))
        .map(|dep| dep.split_whitespace().next().unwrap_or(""))
        .find(|name| name.starts_with("linux-image-") && name.ends_with("-amd64"))
        .map(str::to_owned)
}

/// Files and links of the guest that every run shares: hostname, fstab, eth0's address,
/// systemd-networkd enabled, noisy units masked.
fn configure_guest(root: &Path) -> anyhow::Result<()> {
    write(root, "etc/hostname", "sluice-vm\n")?;
    write(
        root,
        "etc/hosts",
        "127.0.0.1 localhost\n127.0.1.1 sluice-vm\n",
    )?;
    write(
        root,
        "etc/fstab",
        "/dev/vda / ext4 rw,errors=remount-ro 0 0\n",
    )?;
    write(root, "etc/systemd/network/10-eth0.network", NETWORK_UNIT)?;
    chroot(root, &["systemctl", "enable", "systemd-networkd.service"])?;
    let mut mask = vec!["systemctl", "mask"];
    mask.extend(MASKED_UNITS);
    chroot(root, &mask)
}

fn copy_kernels(root: &Path, boot: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(boot).with_context(|| format!("creating {}", boot.display()))?;
    let mut copied = 0;
    for entry in std::fs::read_dir(root.join("boot"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("vmlinuz-") || name.starts_with("initrd.img-") {
            std::fs::copy(root.join("boot").join(&name), boot.join(&name))
                .with_context(|| format!("copying {name} out of the rootfs"))?;
            copied += 1;
        }
    }
    if copied != 6 {
        bail!("expected 3 kernels with their initrds in the rootfs, found {copied} files");
    }
    Ok(())
}

fn write(root: &Path, relative: &str, text: &str) -> anyhow::Result<()> {
    let path = root.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// `args` run chrooted in `root`, in a private mount namespace with /proc and /sys
/// mounted (they vanish with the namespace, so nothing stays mounted on the host).
fn chroot_command(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"root="$1"; shift; mount -t proc proc "$root/proc" && mount -t sysfs sys "$root/sys" && exec chroot "$root" "$@""#)
        .arg("sh")
        .arg(root)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C.UTF-8")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    command
}

fn chroot(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    cmd::run(&mut chroot_command(root, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_image_is_read_from_the_metapackage_dependencies() {
        let show = "Package: linux-image-amd64\nVersion: 5.10.237-1\nDepends: linux-image-5.10.0-35-amd64 (= 5.10.237-1)\nDescription: x\n";
        assert_eq!(
            versioned_image(show).as_deref(),
            Some("linux-image-5.10.0-35-amd64")
        );
        assert_eq!(versioned_image("Package: x\n"), None);
    }

    #[test]
    fn a_kernel_series_matches_its_releases_only() {
        let kernel = |release: &str| Kernel {
            release: release.to_owned(),
            vmlinuz: PathBuf::new(),
            initrd: PathBuf::new(),
        };
        let kernels = [
            kernel("5.10.0-35-amd64"),
            kernel("6.1.0-41-amd64"),
            kernel("6.12.48+deb12-amd64"),
        ];
        assert_eq!(
            pick_kernel(&kernels, "6.1").map(|k| &k.release[..]),
            Some("6.1.0-41-amd64")
        );
        assert_eq!(
            pick_kernel(&kernels, "6.12").map(|k| &k.release[..]),
            Some("6.12.48+deb12-amd64")
        );
        assert_eq!(
            pick_kernel(&kernels, "5.10").map(|k| &k.release[..]),
            Some("5.10.0-35-amd64")
        );
        assert_eq!(pick_kernel(&kernels, "6.6"), None);
    }
}
