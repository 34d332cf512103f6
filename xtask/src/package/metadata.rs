//! The package's metadata as text: its Debian version and file name, the source control
//! file that `dpkg-gencontrol` turns into `DEBIAN/control` (adding Installed-Size and the
//! computed Depends), the conffile list, the Debian changelog and the machine-readable
//! copyright file. Pure functions, so that what the package declares is unit tested; the
//! tools that consume them are run by the parent module.

use anyhow::{bail, ensure};

use super::crates::LinkedCrate;

/// The binary package's name.
pub const PACKAGE: &str = "sluice";
/// The only architecture built (the eBPF object is embedded in an x86-64 binary).
pub const ARCHITECTURE: &str = "amd64";
/// Maintainer field: the address the repository's commits are made under.
pub const MAINTAINER: &str =
    "Sluice maintainers <maintainers@users.noreply.r-seed-4c81cf36.example>";

/// The one-line synopsis and the extended description (control-file form).
const DESCRIPTION: &str = "\
Description: GRE-tunnelled UDP to compressed record files, via XDP and AF_XDP
 Sluice runs on the machine that terminates GRE tunnels carrying UDP
 (telemetry, flow records, device events). An XDP program steers the tunnelled
 UDP into AF_XDP sockets past the kernel's network stack and leaves all other
 traffic to the kernel; worker threads decode the payloads (NetFlow v5/v9,
 IPFIX, syslog, declarative binary layouts, raw) into typed records, written
 as compressed NDJSON, CSV or Parquet files to a local directory or uploaded
 to Google Cloud Storage. Every packet is accounted for in Prometheus metrics.
 .
 The service is installed but neither enabled nor started: name the interface
 in /etc/sluice/sluice.toml first, then run 'systemctl enable --now sluice'.
";

/// The Debian version for a Cargo (semver) version: revision `-1`, a pre-release
/// sorting before its release (`1.0.0-rc.1` → `1.0.0~rc.1-1`).
///
/// # Errors
/// When the result is not a valid Debian version.
pub fn debian_version_from_cargo(cargo: &str) -> anyhow::Result<String> {
    let upstream = cargo.replacen('-', "~", 1);
    let version = format!("{upstream}-1");
    validate_version(&version)?;
    Ok(version)
}

/// Checks `version` against deb-version(7): `[epoch:]upstream[-revision]`, the upstream
/// part starting with a digit, a hyphen allowed in it only when a revision follows.
/// (Colons inside the upstream part are allowed by dpkg but refused here: they would
/// need an epoch and make a confusing file name.)
///
/// # Errors
/// Names what is wrong.
pub fn validate_version(version: &str) -> anyhow::Result<()> {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) => (Some(epoch), rest),
        None => (None, version),
    };
    if let Some(epoch) = epoch {
        ensure!(
            !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()),
            "version {version:?}: the epoch must be a number"
        );
    }
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((upstream, revision)) => (upstream, Some(revision)),
        None => (rest, None),
    };
    ensure!(
        upstream.starts_with(|c: char| c.is_ascii_digit()),
        "version {version:?}: the upstream part must start with a digit"
    );
    let upstream_ok = |c: char| c.is_ascii_alphanumeric() || ".+~-".contains(c);
    if let Some(bad) = upstream.chars().find(|&c| !upstream_ok(c)) {
        bail!("version {version:?}: {bad:?} is not allowed in the upstream part");
    }
    if let Some(revision) = revision {
        let revision_ok = |c: char| c.is_ascii_alphanumeric() || ".+~".contains(c);
        ensure!(
            !revision.is_empty() && revision.chars().all(revision_ok),
            "version {version:?}: the Debian revision may hold only letters, digits, `.+~`"
        );
    }
    Ok(())
}

/// `sluice_<version>_amd64.deb`, the epoch left out as dpkg-deb and apt name files.
pub fn deb_file_name(version: &str) -> String {
    let version = version.split_once(':').map_or(version, |(_, rest)| rest);
    format!("{PACKAGE}_{version}_{ARCHITECTURE}.deb")
}

/// `debian/control` of a source package holding the one binary package: what
/// `dpkg-gencontrol` reads. `${shlibs:Depends}` is filled in by `dpkg-shlibdeps` (libc6
/// and whatever else the binary links); adduser runs in the postinst.
pub fn source_control() -> String {
    format!(
        "Source: {PACKAGE}\n\
         Section: net\n\
         Priority: optional\n\
         Maintainer: {MAINTAINER}\n\
         Rules-Requires-Root: no\n\
         Standards-Version: 4.6.2\n\
         \n\
         Package: {PACKAGE}\n\
         Architecture: {ARCHITECTURE}\n\
         Depends: ${{shlibs:Depends}}, adduser\n\
         {DESCRIPTION}"
    )
}

/// `DEBIAN/conffiles`: one absolute path per line.
pub fn conffiles(paths: &[&str]) -> String {
    paths.iter().map(|path| format!("{path}\n")).collect()
}

/// `debian/changelog` with one entry for this build (installed gzipped as
/// `changelog.Debian.gz`). `commit` names the sources; `epoch_secs` dates the entry.
pub fn changelog(version: &str, commit: Option<&str>, epoch_secs: i64) -> String {
    let built_from = commit.map_or_else(
        || "the working tree".to_owned(),
        |commit| format!("commit {commit}"),
    );
    format!(
        "{PACKAGE} ({version}) unstable; urgency=medium\n\
         \n\
         \x20 * Built by `cargo xtask package` from {built_from}; the repository's\n\
         \x20   history lists the changes.\n\
         \n\
         \x20-- {MAINTAINER}  {}\n",
        rfc2822(epoch_secs)
    )
}

/// `usr/share/doc/sluice/copyright` in the machine-readable format (DEP-5), naming the
/// third-party crates linked into the binary and their licenses.
pub fn copyright(year: i64, linked: &[LinkedCrate]) -> String {
    let crates: String = linked
        .iter()
        .map(|c| format!(" {} {} ({})\n", c.name, c.version, c.license))
        .collect();
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: {PACKAGE}\n\
         Upstream-Contact: {MAINTAINER}\n\
         \n\
         Files: *\n\
         Copyright: {year} Sluice maintainers\n\
         License: Apache-2.0\n\
         Comment: /usr/bin/sluice also holds these Rust crates, statically linked, each\n\
         \x20under the license its Cargo.toml declares (the license texts are in the\n\
         \x20crates' sources, https://crates.io):\n\
         {crates}\
         \n\
         License: Apache-2.0\n\
         \x20Licensed under the Apache License, Version 2.0 (the \"License\"); you may not\n\
         \x20use this file except in compliance with the License. You may obtain a copy of\n\
         \x20the License at\n\
         \x20.\n\
         \x20    http://www.apache.org/licenses/LICENSE-2.0\n\
         \x20.\n\
         \x20Unless required by applicable law or agreed to in writing, software\n\
         \x20distributed under the License is distributed on an \"AS IS\" BASIS, WITHOUT\n\
         \x20WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the\n\
         \x20License for the specific language governing permissions and limitations under\n\
         \x20the License.\n\
         \x20.\n\
         \x20On Debian systems, the complete text of the Apache License, Version 2.0 can be\n\
         \x20found in \"/usr/share/common-licenses/Apache-2.0\".\n"
    )
}

/// Seconds since the epoch → (year, month 1–12, day 1–31, weekday 0 = Sunday, seconds
/// of the day), proleptic Gregorian, UTC.
fn civil(epoch_secs: i64) -> (i64, i64, i64, i64, i64) {
    let days = epoch_secs.div_euclid(86_400);
    let secs = epoch_secs.rem_euclid(86_400);
    let weekday = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday.
    let (year, month, day) = sluice_testkit::civil::civil_from_days(days);
    (year, month, day, weekday, secs)
}

/// The year of `epoch_secs` (UTC).
pub fn year(epoch_secs: i64) -> i64 {
    civil(epoch_secs).0
}

/// RFC 2822 date in UTC, as Debian changelogs want it: `Sat, 05 Dec 2026 14:00:00 +0000`.
pub fn rfc2822(epoch_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, weekday, secs) = civil(epoch_secs);
    let index = |value: i64| usize::try_from(value).unwrap_or_default();
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[index(weekday)],
        MONTHS[index(month - 1)],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
