//! `cargo xtask vm-test`: Sluice tested as its users run it, in Debian 12 VMs booted under
//! qemu (software emulation: KVM does not work on these machines), installed from its
//! package with apt, started by systemd, fed GRE over a tap from the host (issue 10,
//! items 7 to 9; docs/operations.md, "Tested kernels and NICs").
//!
//! - [`cache`], [`rootfs`]: the cached Debian 12 root filesystem and its three kernels.
//! - [`disk`]: a run's own ext4 image (`mkfs.ext4 -d`, debugfs in and out).
//! - [`stage`], [`probe`]: what a run puts in the image; the guest-side probe and its
//!   serial-console markers.
//! - [`net`], [`qemu`], [`boot`]: the run's namespace and tap, the qemu process, a booted run.
//! - [`traffic`], [`checks`]: the frames sent and the checks on what comes back.
//! - [`matrix`], [`powercut`]: the cases.
//!
//! Cases run two at a time; the last line is `N passed, N failed`. A missing
//! prerequisite (not root, no qemu, no image and none can be built) fails under
//! `CI=true` and skips with the reason otherwise.

pub mod boot;
pub mod cache;
pub mod checks;
pub mod disk;
pub mod matrix;
pub mod net;
pub mod powercut;
pub mod probe;
pub mod qemu;
pub mod rootfs;
pub mod stage;
pub mod traffic;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;

use boot::Shared;
use qemu::Nic;
use rootfs::Kernel;

/// Options of `cargo xtask vm-test`.
#[derive(Debug, Args)]
pub struct VmTestArgs {
    /// Only build (or check) the cached image and exit.
    #[arg(long)]
    pub prepare: bool,
    /// Run only the cases whose name contains this (repeatable).
    #[arg(long = "case")]
    pub cases: Vec<String>,
    /// VMs run at the same time.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Test this package instead of building one (also `SLUICE_VM_DEB`).
    #[arg(long)]
    pub deb: Option<PathBuf>,
}

/// Environment variable naming a package to test instead of building one.
pub const DEB_ENV: &str = "SLUICE_VM_DEB";

/// Host tools a run calls.
const TOOLS: [&str; 7] = [
    "qemu-system-x86_64",
    "mkfs.ext4",
    "debugfs",
    "ip",
    "tcpreplay",
    "curl",
    "ping",
];

/// One VM case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Case {
    /// The matrix: records, capabilities, modes, balance on `kernel` with `nic`.
    Matrix {
        /// Kernel series (`6.1`, `6.12`).
        kernel: &'static str,
        /// The NIC.
        nic: Nic,
    },
    /// The below-minimum kernel's refusal.
    Refusal {
        /// Kernel series (`5.10`).
        kernel: &'static str,
    },
    /// The power cut with the Cloud Storage sink.
    PowerCut {
        /// Kernel series.
        kernel: &'static str,
    },
}

impl Case {
    /// Every case, longest first (so that two at a time finish together).
    pub fn all() -> Vec<Case> {
        vec![
            Case::PowerCut { kernel: "6.1" },
            Case::Matrix {
                kernel: "6.1",
                nic: Nic::VirtioNet,
            },
            Case::Matrix {
                kernel: "6.1",
                nic: Nic::E1000,
            },
            Case::Matrix {
                kernel: "6.12",
                nic: Nic::VirtioNet,
            },
            Case::Matrix {
                kernel: "6.12",
                nic: Nic::E1000,
            },
            Case::Refusal { kernel: "5.10" },
        ]
    }

    /// The case's name (also its run directory).
    pub fn name(&self) -> String {
        match self {
            Case::Matrix { kernel, nic } => format!("matrix-{kernel}-{}", nic.name()),
            Case::Refusal { kernel } => format!("refusal-{kernel}"),
            Case::PowerCut { kernel } => format!("powercut-{kernel}"),
        }
    }

    fn kernel(&self) -> &'static str {
        match self {
            Case::Matrix { kernel, .. } | Case::Refusal { kernel } | Case::PowerCut { kernel } => {
                kernel
            }
        }
    }

    fn run(&self, shared: &Shared, kernels: &[Kernel]) -> anyhow::Result<()> {
        let kernel = rootfs::pick_kernel(kernels, self.kernel())
            .with_context(|| format!("no {} kernel in the image", self.kernel()))?;
        let name = self.name();
        match self {
            Case::Matrix { nic, .. } => matrix::run_matrix(shared, &name, kernel, *nic),
            Case::Refusal { .. } => matrix::run_refusal(shared, &name, kernel),
            Case::PowerCut { .. } => powercut::run_power_cut(shared, &name, kernel),
        }
    }
}

/// The cases `filters` select (all when empty).
pub fn select(filters: &[String]) -> Vec<Case> {
    Case::all()
        .into_iter()
        .filter(|case| filters.is_empty() || filters.iter().any(|f| case.name().contains(f)))
        .collect()
}

/// The closing line.
pub fn summary_line(passed: usize, failed: usize) -> String {
    format!("{passed} passed, {failed} failed")
}

/// A missing prerequisite: an error under CI, a printed skip otherwise.
fn missing(reason: &str) -> anyhow::Result<()> {
    if sluice_testkit::privilege::is_ci() {
        bail!("vm-test: {reason} (CI=true: failing instead of skipping)");
    }
    println!("SKIP vm-test: {reason}");
    Ok(())
}

/// Runs the VM tests.
///
/// # Errors
/// When a prerequisite is missing under CI, or a case fails.
pub fn run(args: &VmTestArgs) -> anyhow::Result<()> {
    if !sluice_testkit::privilege::is_root() {
        return missing("needs root (namespaces, tap devices, debootstrap)");
    }
    if let Some(tool) = TOOLS
        .iter()
        .find(|t| sluice_testkit::privilege::find_tool(t).is_none())
    {
        return missing(&format!("needs `{tool}` (cargo xtask setup installs it)"));
    }
    let started = Instant::now();
    let rootfs = match rootfs::debian12_rootfs() {
        Ok(rootfs) => rootfs,
        Err(e) => return missing(&format!("no VM image and cannot build one: {e:#}")),
    };
    let kernels = rootfs::kernels()?;
    for kernel in &kernels {
        println!("vm-test: kernel {}", kernel.release);
    }
    if args.prepare {
        println!(
            "vm-test: image ready in {} ({:.0?})",
            rootfs.display(),
            started.elapsed()
        );
        return Ok(());
    }
    let work = cache::cache_dir()?.join("runs");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let deb = snapshot(&package_under_test(args)?, &work)?;
    println!("vm-test: package {}", deb.display());
    let shared = Shared { rootfs, deb, work };
    let cases = select(&args.cases);
    if cases.is_empty() {
        bail!("no case matches {:?}", args.cases);
    }
    let results = run_cases(&shared, &kernels, cases, args.jobs.max(1));
    let failed = results.iter().filter(|(_, r, _)| r.is_err()).count();
    println!(
        "\nvm-test: {} cases in {:.0?}",
        results.len(),
        started.elapsed()
    );
    for (name, result, took) in &results {
        match result {
            Ok(()) => println!("  ok      {name} ({took:.0?})"),
            Err(e) => println!("  FAILED  {name} ({took:.0?}): {}", first_line(e)),
        }
    }
    println!("{}", summary_line(results.len() - failed, failed));
    if failed > 0 {
        bail!(
            "vm-test: {failed} case(s) failed; consoles and disks in {}",
            shared.work.display()
        );
    }
    Ok(())
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or("").to_owned()
}

/// The package: `--deb`, `$SLUICE_VM_DEB`, else built by `cargo xtask package`'s code.
fn package_under_test(args: &VmTestArgs) -> anyhow::Result<PathBuf> {
    if let Some(deb) = args
        .deb
        .clone()
        .or_else(|| std::env::var_os(DEB_ENV).map(PathBuf::from))
    {
        if !deb.is_file() {
            bail!("{} is not a file", deb.display());
        }
        return Ok(deb);
    }
    crate::package::build(&crate::package::PackageArgs::default())
        .context("building the package under test (cargo xtask package)")
}

/// A private copy of the package in `work`, checked to be a whole archive: the shared
/// target directory's .deb may be rebuilt by another command while the VMs run.
fn snapshot(deb: &std::path::Path, work: &std::path::Path) -> anyhow::Result<PathBuf> {
    let name = deb
        .file_name()
        .context("the package path has no file name")?;
    let copy = work.join(name);
    // Through a temporary name: `deb` may be a snapshot already (`--deb` of a run's copy).
    let temp = work.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::copy(deb, &temp)
        .with_context(|| format!("copying {} to {}", deb.display(), temp.display()))?;
    std::fs::rename(&temp, &copy)
        .with_context(|| format!("renaming {} to {}", temp.display(), copy.display()))?;
    crate::cmd::stdout(
        std::process::Command::new("dpkg-deb")
            .arg("--contents")
            .arg(&copy),
    )
    .with_context(|| format!("{} is not a whole package", deb.display()))?;
    Ok(copy)
}

type CaseResult = (String, anyhow::Result<()>, Duration);

/// Runs `cases` on `jobs` threads; a panic in a case is its failure.
fn run_cases(
    shared: &Shared,
    kernels: &[Kernel],
    cases: Vec<Case>,
    jobs: usize,
) -> Vec<CaseResult> {
    let queue = Mutex::new(cases.into_iter().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.pop_front()).ok().flatten();
                    let Some(case) = next else { break };
                    let name = case.name();
                    println!("vm-test: {name}: starting");
                    let start = Instant::now();
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        case.run(shared, kernels)
                    }))
                    .unwrap_or_else(|panic| {
                        let text = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default();
                        Err(anyhow::anyhow!("panicked: {text}"))
                    });
                    let took = start.elapsed();
                    if result.is_ok() {
                        // ~1.3 GB each; a failed case keeps its image for a post-mortem.
                        let _ = std::fs::remove_file(shared.work.join(&name).join("disk.img"));
                    }
                    match &result {
                        Ok(()) => println!("vm-test: {name}: ok ({took:.0?})"),
                        Err(e) => println!("vm-test: {name}: FAILED ({took:.0?}): {e:#}"),
                    }
                    if let Ok(mut results) = results.lock() {
                        results.push((name, result, took));
                    }
                }
            });
        }
    });
    results.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_named_and_selected_by_substring() {
        let names: Vec<String> = Case::all().iter().map(Case::name).collect();
        assert_eq!(
            names,
            [
                "powercut-6.1",
                "matrix-6.1-virtio-net",
                "matrix-6.1-e1000",
                "matrix-6.12-virtio-net",
                "matrix-6.12-e1000",
                "refusal-5.10",
            ]
        );
        let picked: Vec<String> = select(&["6.12-".into()]).iter().map(Case::name).collect();
        assert_eq!(picked, ["matrix-6.12-virtio-net", "matrix-6.12-e1000"]);
        assert_eq!(select(&[]).len(), 6);
    }

    #[test]
    fn the_summary_is_one_line() {
        assert_eq!(summary_line(5, 1), "5 passed, 1 failed");
    }
}
