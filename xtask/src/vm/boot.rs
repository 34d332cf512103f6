//! One VM run from start to ready: its directory, disk image, namespace with tap, qemu,
//! and the probe's first markers (booted, installed, started).
//!
//! Field order matters: the VM drops (qemu killed) before the namespace is deleted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::disk::DiskImage;
use super::net::TapNetns;
use super::probe::field;
use super::qemu::{Nic, Vm, VmSpec};
use super::rootfs::Kernel;
use super::stage;

/// Booting a Debian 12 guest under TCG takes ~20 s alone, longer two at a time.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// apt install, daemon-reload, `systemctl enable --now` (verifier, UMEM, attach).
pub const START_TIMEOUT: Duration = Duration::from_secs(240);

/// What every case shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The cached rootfs.
    pub rootfs: PathBuf,
    /// The package under test.
    pub deb: PathBuf,
    /// Where runs keep their files.
    pub work: PathBuf,
}

/// A booted run.
pub struct Run {
    /// The VM (dropped first).
    pub vm: Vm,
    /// Its network namespace and tap.
    pub net: TapNetns,
    /// Its disk.
    pub disk: DiskImage,
    /// Its directory on the host.
    pub dir: PathBuf,
    /// The VM spec, to boot it again.
    pub spec: VmSpec,
    /// Whether the VM is on its first boot (nothing of Sluice installed or run yet).
    first_boot: bool,
}

/// Creates the run `name` (a fresh directory, the image with `config`) and boots it.
/// `net` is passed in so a case can start host-side services on the tap first.
///
/// # Errors
/// When any step fails.
pub fn boot(
    shared: &Shared,
    name: &str,
    kernel: &Kernel,
    nic: Nic,
    config: &str,
    net: TapNetns,
) -> anyhow::Result<Run> {
    let dir = shared.work.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = stage::stage(&dir, &shared.deb, config)?;
    let disk = DiskImage::create(&dir.join("disk.img"), &shared.rootfs, &files)?;
    let spec = VmSpec {
        kernel: kernel.clone(),
        disk: disk.path().to_owned(),
        nic,
        tap: super::net::TAP.to_owned(),
        cpus: 2,
        memory_mib: 1536,
    };
    let vm = Vm::boot(net.name(), &spec, &dir.join("console-1.log"))?;
    Ok(Run {
        vm,
        net,
        disk,
        dir,
        spec,
        first_boot: true,
    })
}

impl Run {
    /// Boots the same image again (after a power cut) with its console in `console-N.log`.
    ///
    /// # Errors
    /// When qemu cannot start.
    pub fn reboot(&mut self, n: u32) -> anyhow::Result<()> {
        let log = self.dir.join(format!("console-{n}.log"));
        self.boot_again(&log)
    }

    /// Kills qemu and boots the same image again with its console in `log`.
    fn boot_again(&mut self, log: &Path) -> anyhow::Result<()> {
        self.vm.power_cut()?;
        self.vm = Vm::boot(self.net.name(), &self.spec, log)?;
        self.first_boot = false;
        Ok(())
    }

    /// Waits for the probe's `booted` marker and checks the kernel release.
    ///
    /// The guest's kernel, emulated by TCG with two vCPUs, has been seen to panic early in
    /// a boot now and then (once in ~30 runs of the suite: an `int3` oops one second in,
    /// the instruction pointer inside an instruction the kernel was patching; most likely
    /// qemu's handling of code another vCPU modifies, under multi-threaded TCG).
    /// On a run's first boot nothing of Sluice is installed or running before `booted`,
    /// so such a panic is the emulator's: the image is booted once more, said on stdout,
    /// with the panicked console kept beside the new one. After a power cut Sluice starts
    /// at boot, so a panic then is a failure as any other.
    ///
    /// # Errors
    /// When it does not come in time (twice, on a first boot whose kernel panicked) or
    /// names another kernel.
    pub fn wait_booted(&mut self) -> anyhow::Result<()> {
        let release = match self.vm.wait_for("booted", BOOT_TIMEOUT) {
            Ok(release) => release,
            Err(e) if self.first_boot && self.vm.kernel_panicked() => {
                let log = self.vm.log().with_extension("again.log");
                println!(
                    "vm-test: {}: the guest's kernel panicked before `booted`, before \
                     anything of Sluice ran ({e:#}); booting it once more, console in {}",
                    self.dir.file_name().unwrap_or_default().to_string_lossy(),
                    log.display()
                );
                self.boot_again(&log)?;
                self.vm.wait_for("booted", BOOT_TIMEOUT)?
            }
            Err(e) => return Err(e),
        };
        if release != self.spec.kernel.release {
            bail!("booted {release}, expected {}", self.spec.kernel.release);
        }
        Ok(())
    }

    /// Waits for `installed` (which must succeed) and `started`; returns whether the
    /// service started.
    ///
    /// # Errors
    /// When apt failed or a marker does not come in time.
    pub fn wait_installed_and_started(&mut self) -> anyhow::Result<bool> {
        let installed = self.vm.wait_for("installed", START_TIMEOUT)?;
        if field(&installed, "rc") != Some("0") {
            bail!(
                "apt install of the package failed ({installed}):\n{}",
                self.vm.values("apt").join("\n")
            );
        }
        self.wait_started()
    }

    /// Waits for `started`, then for `ready` (the journal lines and capabilities come in
    /// between); returns whether the service is active.
    ///
    /// # Errors
    /// When a marker does not come in time.
    pub fn wait_started(&mut self) -> anyhow::Result<bool> {
        let started = self.vm.wait_for("started", START_TIMEOUT)?;
        self.vm.wait_for("ready", Duration::from_secs(60))?;
        Ok(field(&started, "rc") == Some("0"))
    }

    /// The guest's journal lines of the service the probe reported.
    pub fn journal(&self) -> Vec<&str> {
        self.vm.values("journal")
    }

    /// Powers the guest off and copies its state directory out to `dir/state-N`.
    ///
    /// # Errors
    /// When the guest does not power off or debugfs fails.
    pub fn power_off_and_collect(&mut self, n: u32) -> anyhow::Result<PathBuf> {
        self.vm.power_off(Duration::from_secs(90))?;
        self.collect(n)
    }

    /// Copies the guest's state directory out (qemu must not be running).
    ///
    /// # Errors
    /// When debugfs fails.
    pub fn collect(&self, n: u32) -> anyhow::Result<PathBuf> {
        self.disk
            .rdump(stage::GUEST_STATE, &self.dir.join(format!("state-{n}")))
    }

    /// The run's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
