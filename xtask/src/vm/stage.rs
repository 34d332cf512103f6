//! What a run puts into its disk image: the package under test, the case's config, the
//! stats drop-in and the probe with its unit (enabled by a symlink, as `systemctl enable`
//! would), written to the run's directory on the host first.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use sluice_testkit::daemon::ConfigSpec;

use super::disk::GuestFile;
use super::probe;

/// The port the guest's metrics endpoint listens on (all addresses: the host scrapes it
/// over the tap).
pub const METRICS_PORT: u16 = 9464;

/// Where the daemon writes records in the guest (the unit's state directory).
pub const GUEST_RECORDS: &str = "/var/lib/sluice/records";

/// The guest's state directory, copied out after power-off.
pub const GUEST_STATE: &str = "/var/lib/sluice";

/// A config for `eth0` queue 0 in `auto` mode with the test matrix's ports, plain UDP on,
/// `body` adjusting it, and metrics on every address.
pub fn config_text(adjust: impl FnOnce(&mut ConfigSpec)) -> String {
    let mut spec = ConfigSpec::xdp("eth0", Path::new(GUEST_RECORDS));
    spec.workers = 1;
    adjust(&mut spec);
    format!(
        "{}\n[metrics]\nenabled = true\nlisten = \"0.0.0.0:{METRICS_PORT}\"\n",
        spec.to_toml()
    )
}

/// Writes the run's files into `dir` and returns what goes where in the image.
///
/// # Errors
/// When a file cannot be written.
pub fn stage(dir: &Path, deb: &Path, config: &str) -> anyhow::Result<Vec<GuestFile>> {
    let write = |name: &str, text: &str, mode: u32| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
        Ok(path)
    };
    let guest = |name: &str| format!("{}/{name}", probe::GUEST_DIR);
    let unit = "/etc/systemd/system/sluice-vm-probe.service";
    Ok(vec![
        GuestFile::Copy {
            source: deb.to_owned(),
            dest: guest("sluice.deb"),
        },
        GuestFile::Copy {
            source: write("sluice.toml", config, 0o644)?,
            dest: guest("sluice.toml"),
        },
        GuestFile::Copy {
            source: write("stats.conf", probe::STATS_DROP_IN, 0o644)?,
            dest: guest("stats.conf"),
        },
        GuestFile::Copy {
            source: write("sluice-vm-probe", probe::SCRIPT, 0o755)?,
            dest: "/usr/local/sbin/sluice-vm-probe".to_owned(),
        },
        GuestFile::Copy {
            source: write("sluice-vm-probe.service", probe::UNIT, 0o644)?,
            dest: unit.to_owned(),
        },
        GuestFile::Symlink {
            link: "/etc/systemd/system/multi-user.target.wants/sluice-vm-probe.service".to_owned(),
            target: unit.to_owned(),
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_attaches_to_eth0_and_serves_metrics_to_the_host() {
        let text = config_text(|spec| spec.format = Some("parquet".into()));
        assert!(
            text.contains("interface = \"eth0\"\nqueues = [0]\nxdp_mode = \"auto\""),
            "{text}"
        );
        assert!(
            text.contains("path = \"/var/lib/sluice/records\"\nformat = \"parquet\""),
            "{text}"
        );
        assert!(
            text.ends_with("[metrics]\nenabled = true\nlisten = \"0.0.0.0:9464\"\n"),
            "{text}"
        );
    }

    #[test]
    fn staging_puts_the_package_config_and_enabled_probe_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = stage(dir.path(), Path::new("/x/sluice_1_amd64.deb"), "cfg").expect("stage");
        let dests: Vec<String> = files
            .iter()
            .map(|f| match f {
                GuestFile::Copy { dest, .. } => dest.clone(),
                GuestFile::Symlink { link, .. } => link.clone(),
            })
            .collect();
        assert_eq!(
            dests,
            [
                "/root/sluice-vm/sluice.deb",
                "/root/sluice-vm/sluice.toml",
                "/root/sluice-vm/stats.conf",
                "/usr/local/sbin/sluice-vm-probe",
                "/etc/systemd/system/sluice-vm-probe.service",
                "/etc/systemd/system/multi-user.target.wants/sluice-vm-probe.service",
            ]
        );
        let probe = dir.path().join("sluice-vm-probe");
        let mode = std::fs::metadata(&probe)
            .expect("probe")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}
