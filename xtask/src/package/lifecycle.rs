//! The package's lifecycle on a clean Debian 12, in a chroot: install, upgrade with an
//! edited config, purge. What `cargo xtask package --check` (a step of `cargo xtask
//! test`) runs after lintian.
//!
//! The chroot is a copy (`cp -a`) of the VM tests' cached bookworm root filesystem
//! ([`crate::vm::rootfs::debian12_rootfs`], read-only), deleted afterwards. No systemd
//! runs in it and a `policy-rc.d` forbids service actions, so the maintainer scripts'
//! systemd branches are not exercised here (the VM tests run them under a real
//! systemd). apt runs with stdin closed: a conffile prompt would fail the upgrade.
//!
//! 1. `apt-get install ./sluice_A.deb`: the `sluice` system user and group exist (uid in
//!    the system range, home /var/lib/sluice, no login shell), the unit, the binary and
//!    the conffile are in place, `sluice --version` runs in the chroot, the service is
//!    neither enabled nor started and the postinst says so.
//! 2. The config is edited, the service enabled (`systemctl enable`, offline) and state
//!    written to /var/lib/sluice, as an operator's machine would have.
//! 3. `apt-get install ./sluice_B.deb` (a higher version, same conffile): no prompt, the
//!    edited config kept, the same user.
//! 4. `apt-get purge sluice`: user and group gone, /etc/sluice, /var/lib/sluice and the
//!    enablement link gone, and of the paths `dpkg -L` listed before, only those the
//!    clean root filesystem has itself (/usr, /lib/systemd/system, ...) remain.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};
use sluice_testkit::privilege::{find_tool, is_root};

use super::{metadata, prerequisite, stage};
use crate::cmd;
use crate::install::{CONFIG_PATH, EXAMPLE_CONFIG, SERVICE_USER, STATE_DIR, UNIT_TEMPLATE};

/// adduser's system uid range (FIRST_SYSTEM_UID..=LAST_SYSTEM_UID in adduser.conf).
const SYSTEM_UIDS: std::ops::RangeInclusive<u32> = 100..=999;
/// The link `systemctl enable` makes (the unit's WantedBy=multi-user.target).
const ENABLEMENT_LINK: &str = "/etc/systemd/system/multi-user.target.wants/sluice.service";
/// What the postinst prints on a fresh install.
const NOT_STARTED_NOTE: &str = "installed, not enabled and not started";
/// Appended to the config between install and upgrade.
const EDIT: &str = "\n# edited by the package lifecycle test\n";

/// One passwd entry's fields the test looks at.
#[derive(Debug, PartialEq, Eq)]
struct PasswdEntry {
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

/// `name`'s entry in the text of an /etc/passwd.
fn passwd_entry(passwd: &str, name: &str) -> Option<PasswdEntry> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields[..] {
            [user, _, uid, gid, _, home, shell] if user == name => Some(PasswdEntry {
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                home: home.to_owned(),
                shell: shell.to_owned(),
            }),
            _ => None,
        }
    })
}

/// `name`'s gid in the text of an /etc/group.
fn group_gid(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name))
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

/// The paths of `dpkg -L` output that are left in `root` but not in `clean`.
fn leftovers(listed: &str, root: &Path, clean: &Path) -> Vec<String> {
    listed
        .lines()
        .filter(|path| path.starts_with('/') && *path != "/.")
        .filter(|path| {
            let left = stage::staged(root, path).symlink_metadata().is_ok();
            left && stage::staged(clean, path).symlink_metadata().is_err()
        })
        .map(str::to_owned)
        .collect()
}

/// A copy of the clean root filesystem, deleted on drop.
struct Chroot {
    root: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Chroot {
    /// Copies `clean` and forbids service actions (policy-rc.d exit 101, no
    /// /run/systemd/system).
    fn copy_of(clean: &Path) -> anyhow::Result<Chroot> {
        let scratch = tempfile::Builder::new()
            .prefix("sluice-package-lifecycle-")
            .tempdir()
            .context("creating a scratch directory")?;
        let root = scratch.path().join("root");
        cmd::run(
            Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(clean)
                .arg(&root),
        )?;
        let chroot = Chroot {
            root,
            _scratch: scratch,
        };
        let policy = chroot.path("/usr/sbin/policy-rc.d");
        std::fs::write(&policy, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("writing {}", policy.display()))?;
        std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .with_context(|| format!("chmod {}", policy.display()))?;
        let systemd_marker = chroot.path("/run/systemd/system");
        if systemd_marker.exists() {
            std::fs::remove_dir_all(&systemd_marker)
                .with_context(|| format!("removing {}", systemd_marker.display()))?;
        }
        Ok(chroot)
    }

    /// `path` (absolute inside the chroot) as seen from outside.
    fn path(&self, path: &str) -> PathBuf {
        stage::staged(&self.root, path)
    }

    fn read(&self, path: &str) -> anyhow::Result<String> {
        std::fs::read_to_string(self.path(path)).with_context(|| format!("reading {path}"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("chroot");
        command
            .arg(&self.root)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        command
    }

    /// Runs `args` in the chroot with stdin closed; prints and returns stdout + stderr.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = self.command(args);
        println!("$ {}", cmd::display(&command));
        let output = cmd::output(&mut command)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for line in text.lines() {
            println!("  | {line}");
        }
        ensure!(
            output.status.success(),
            "`{}` failed ({})",
            args.join(" "),
            output.status
        );
        Ok(text)
    }

    /// apt-get with `args` (no pseudo-terminal for dpkg's log: the chroot has no
    /// /dev/pts).
    fn apt(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["apt-get", "-o", "Dpkg::Use-Pty=0"];
        full.extend_from_slice(args);
        self.run(&full)
    }

    /// Copies `deb` into the chroot's /tmp; returns its path inside.
    fn put(&self, deb: &Path) -> anyhow::Result<String> {
        let name = deb
            .file_name()
            .with_context(|| format!("{} has no file name", deb.display()))?;
        let inside = format!("/tmp/{}", name.to_string_lossy());
        std::fs::copy(deb, self.path(&inside))
            .with_context(|| format!("copying {} into the chroot", deb.display()))?;
        Ok(inside)
    }

    fn installed_version(&self) -> anyhow::Result<String> {
        self.run(&["dpkg-query", "-W", "-f", "${Version}", metadata::PACKAGE])
    }
}

/// Prints a verified fact.
fn ok(fact: &str) {
    println!("lifecycle ok: {fact}");
}

/// Runs the lifecycle with `first` and its upgrade `second` (same conffile, higher
/// version); `repo` holds the unit template and example config they were built from.
///
/// # Errors
/// The first expectation that does not hold; outside CI, a missing prerequisite (root,
/// debootstrap) is a printed skip instead.
pub fn run(first: &Path, second: &Path, repo: &Path) -> anyhow::Result<()> {
    if !prerequisite(is_root(), "the lifecycle test needs root (chroot)")?
        || !prerequisite(
            find_tool("debootstrap").is_some(),
            "the lifecycle test needs debootstrap for its Debian 12 root filesystem",
        )?
    {
        return Ok(());
    }
    let clean = crate::vm::rootfs::debian12_rootfs()?;
    println!("\n== package lifecycle in a copy of {}", clean.display());
    let chroot = Chroot::copy_of(&clean)?;
    let first = chroot.put(first)?;
    let second = chroot.put(second)?;
    let (first_version, second_version) = (
        deb_version(&chroot, &first)?,
        deb_version(&chroot, &second)?,
    );
    chroot.run(&[
        "dpkg",
        "--compare-versions",
        &second_version,
        "gt",
        &first_version,
    ])?;

    let output = chroot.apt(&["install", "-y", &first])?;
    let user = check_installed(&chroot, repo, &output, &first_version)?;

    let edited = format!("{}{EDIT}", chroot.read(CONFIG_PATH)?);
    std::fs::write(chroot.path(CONFIG_PATH), &edited).context("editing the config")?;
    chroot.run(&["systemctl", "enable", "sluice.service"])?;
    ensure!(
        chroot.path(ENABLEMENT_LINK).symlink_metadata().is_ok(),
        "`systemctl enable` made no {ENABLEMENT_LINK}"
    );
    let spool = chroot.path(&format!("{STATE_DIR}/spool/batch.ndjson.zst"));
    if let Some(dir) = spool.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&spool, b"not uploaded yet").context("writing a spool file")?;
    chroot.run(&["chown", "-R", "sluice:sluice", STATE_DIR])?;

    let output = chroot.apt(&["install", "-y", &second])?;
    ensure!(
        !output.contains("Configuration file"),
        "the upgrade asked about the config"
    );
    ensure!(
        chroot.read(CONFIG_PATH)? == edited,
        "the upgrade did not keep the edited {CONFIG_PATH}"
    );
    ok("upgrade kept the edited config, without a prompt");
    ensure!(
        chroot.installed_version()? == second_version,
        "{second_version} is not the installed version after the upgrade"
    );
    let passwd = chroot.read("/etc/passwd")?;
    ensure!(
        passwd_entry(&passwd, SERVICE_USER).as_ref() == Some(&user),
        "the upgrade changed the {SERVICE_USER} user"
    );
    ok(&format!("upgraded to {second_version}, same user"));

    let listed = chroot.run(&["dpkg", "-L", metadata::PACKAGE])?;
    chroot.apt(&["purge", "-y", metadata::PACKAGE])?;
    check_purged(&chroot, &clean, &listed)
}

/// The Version field of the .deb at `inside` (a path in the chroot).
fn deb_version(chroot: &Chroot, inside: &str) -> anyhow::Result<String> {
    Ok(chroot
        .run(&["dpkg-deb", "--field", inside, "Version"])?
        .trim()
        .to_owned())
}

/// Checks a fresh install; returns the user it created.
fn check_installed(
    chroot: &Chroot,
    repo: &Path,
    apt_output: &str,
    version: &str,
) -> anyhow::Result<PasswdEntry> {
    ensure!(
        chroot.installed_version()? == version,
        "{version} is not installed"
    );
    let user = passwd_entry(&chroot.read("/etc/passwd")?, SERVICE_USER)
        .with_context(|| format!("no {SERVICE_USER} user after the install"))?;
    let gid = group_gid(&chroot.read("/etc/group")?, SERVICE_USER)
        .with_context(|| format!("no {SERVICE_USER} group after the install"))?;
    ensure!(
        SYSTEM_UIDS.contains(&user.uid)
            && user.gid == gid
            && user.home == STATE_DIR
            && user.shell == "/usr/sbin/nologin",
        "{SERVICE_USER} is not a system user of group {gid} with home {STATE_DIR} and no \
         login shell: {user:?}"
    );
    ok(&format!(
        "user {SERVICE_USER} uid {} gid {gid}, home {STATE_DIR}, shell {}",
        user.uid, user.shell
    ));

    let template = std::fs::read_to_string(repo.join(UNIT_TEMPLATE))
        .with_context(|| format!("reading {UNIT_TEMPLATE}"))?;
    let unit = crate::install::render_unit(&template, Path::new(stage::BINARY_PATH))?;
    ensure!(
        chroot.read(stage::UNIT_PATH)? == unit,
        "{} is not the rendered {UNIT_TEMPLATE}",
        stage::UNIT_PATH
    );
    ok(&format!(
        "{} with ExecStart={} run ...",
        stage::UNIT_PATH,
        stage::BINARY_PATH
    ));

    let printed = chroot.run(&[stage::BINARY_PATH, "--version"])?;
    ensure!(
        printed.starts_with("sluice "),
        "`sluice --version` printed {printed:?}"
    );
    ok(&format!(
        "`sluice --version` in the chroot: {}",
        printed.trim()
    ));

    let example = std::fs::read_to_string(repo.join(EXAMPLE_CONFIG))
        .with_context(|| format!("reading {EXAMPLE_CONFIG}"))?;
    ensure!(
        chroot.read(CONFIG_PATH)? == example,
        "{CONFIG_PATH} is not {EXAMPLE_CONFIG}"
    );
    let conffiles = chroot.run(&["dpkg-query", "-W", "-f", "${Conffiles}", metadata::PACKAGE])?;
    ensure!(
        conffiles
            .trim_start()
            .starts_with(&format!("{CONFIG_PATH} ")),
        "{CONFIG_PATH} is not the package's conffile: {conffiles:?}"
    );
    ok(&format!("{CONFIG_PATH} installed as a conffile"));

    ensure!(
        chroot.path(ENABLEMENT_LINK).symlink_metadata().is_err(),
        "the install enabled the service"
    );
    ensure!(
        apt_output.contains(NOT_STARTED_NOTE),
        "the postinst did not say the service is {NOT_STARTED_NOTE}"
    );
    ok("service not enabled, and the postinst said so");
    Ok(user)
}

fn check_purged(chroot: &Chroot, clean: &Path, listed: &str) -> anyhow::Result<()> {
    ensure!(
        passwd_entry(&chroot.read("/etc/passwd")?, SERVICE_USER).is_none()
            && group_gid(&chroot.read("/etc/group")?, SERVICE_USER).is_none(),
        "the purge left the {SERVICE_USER} user or group"
    );
    ok(&format!("user and group {SERVICE_USER} removed"));
    for gone in ["/etc/sluice", STATE_DIR, ENABLEMENT_LINK] {
        ensure!(
            chroot.path(gone).symlink_metadata().is_err(),
            "the purge left {gone}"
        );
    }
    ok(&format!(
        "/etc/sluice, {STATE_DIR} (with its spool) and the enablement link removed"
    ));
    let left = leftovers(listed, &chroot.root, clean);
    if !left.is_empty() {
        bail!("the purge left files of the package: {}", left.join(" "));
    }
    let status = cmd::output(&mut chroot.command(&[
        "dpkg-query",
        "-W",
        "-f",
        "${db:Status-Status}",
        metadata::PACKAGE,
    ]))?;
    let status = String::from_utf8_lossy(&status.stdout);
    ensure!(
        status.is_empty() || status == "not-installed",
        "dpkg still knows the package after the purge: {status}"
    );
    ok(&format!(
        "none of the {} paths of `dpkg -L` left beyond the clean root filesystem's own",
        listed.lines().count()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        sluice:x:104:107::/var/lib/sluice:/usr/sbin/nologin\n\
        broken:x\n";

    #[test]
    fn passwd_and_group_entries_are_read_by_name() {
        assert_eq!(
            passwd_entry(PASSWD, "sluice"),
            Some(PasswdEntry {
                uid: 104,
                gid: 107,
                home: "/var/lib/sluice".into(),
                shell: "/usr/sbin/nologin".into(),
            })
        );
        assert_eq!(passwd_entry(PASSWD, "slui"), None);
        assert_eq!(passwd_entry(PASSWD, "broken"), None);
        let group = "root:x:0:\nsluice:x:107:\n";
        assert_eq!(group_gid(group, "sluice"), Some(107));
        assert_eq!(group_gid(group, "nobody"), None);
    }

    #[test]
    fn leftovers_are_paths_of_the_package_not_in_the_clean_tree() {
        let clean = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        for tree in [clean.path(), root.path()] {
            std::fs::create_dir_all(tree.join("usr/bin")).expect("mkdir");
        }
        std::fs::create_dir_all(root.path().join("usr/share/sluice")).expect("mkdir");
        std::fs::write(root.path().join("usr/bin/sluice"), "").expect("write");
        let listed = "/.\n/usr\n/usr/bin\n/usr/bin/sluice\n/usr/share/sluice\n/etc/sluice\n";
        assert_eq!(
            leftovers(listed, root.path(), clean.path()),
            ["/usr/bin/sluice", "/usr/share/sluice"]
        );
    }
}
