//! Tests of the pure parts of `cargo xtask package`: versions and file names, the control
//! text, conffiles, changelog and copyright, and the file list with the rewritten unit.

use super::metadata::*;
use super::stage::{self, PackageFile, Source};
use super::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_owned()
}

#[test]
fn cargo_versions_become_debian_versions_with_revision_1() {
    assert_eq!(
        debian_version_from_cargo("0.1.0").expect("0.1.0"),
        "0.1.0-1"
    );
    assert_eq!(
        debian_version_from_cargo("1.2.0-rc.1").expect("pre-release"),
        "1.2.0~rc.1-1"
    );
    assert_eq!(
        debian_version_from_cargo("1.2.0+build.5").expect("build metadata"),
        "1.2.0+build.5-1"
    );
    assert!(debian_version_from_cargo("v1").is_err());
}

#[test]
fn versions_are_checked_against_deb_version() {
    for good in [
        "0.1.0-1",
        "0.1.0-1.1",
        "1:0.1.0-1",
        "0.1.0",
        "0.1.0~rc1-1",
        "2.0-a-1",
    ] {
        validate_version(good).unwrap_or_else(|e| panic!("{good}: {e:#}"));
    }
    for (bad, why) in [
        ("v0.1.0-1", "start with a digit"),
        ("0.1.0-", "revision"),
        ("0.1.0-1_2", "revision"),
        ("0.1 .0-1", "not allowed"),
        ("x:0.1.0-1", "epoch"),
        ("", "start with a digit"),
    ] {
        let error = validate_version(bad).expect_err(bad).to_string();
        assert!(error.contains(why), "{bad}: {error}");
    }
}

#[test]
fn file_name_leaves_out_the_epoch() {
    assert_eq!(deb_file_name("0.1.0-1"), "sluice_0.1.0-1_amd64.deb");
    assert_eq!(deb_file_name("2:0.1.0-1"), "sluice_0.1.0-1_amd64.deb");
}

#[test]
fn the_workspace_version_is_read_from_cargo_metadata() {
    let metadata = serde_json::json!({"packages": [
        {"name": "xtask", "version": "9.9.9", "source": null},
        {"name": "sluice", "version": "5.0.0", "source": "registry+https://example"},
        {"name": "sluice", "version": "0.3.1", "source": null},
    ]});
    assert_eq!(version_in_metadata(&metadata).expect("version"), "0.3.1");
    assert!(version_in_metadata(&serde_json::json!({"packages": []})).is_err());
    let workspace = Workspace {
        root: repo(),
        target_dir: PathBuf::new(),
    };
    let metadata = cargo_metadata(&workspace).expect("cargo metadata");
    let cargo = version_in_metadata(&metadata).expect("sluice version");
    assert_eq!(cargo, env!("CARGO_PKG_VERSION"), "one workspace version");
    let linked = crates::linked_crates(&metadata, "sluice").expect("crates");
    let names: Vec<&str> = linked.iter().map(|c| c.name.as_str()).collect();
    for linked in ["aya", "zstd", "libc"] {
        assert!(names.contains(&linked), "{linked} in {names:?}");
    }
    for not_linked in ["sluice-xsk", "serde_derive", "aya-build", "tempfile"] {
        assert!(!names.contains(&not_linked), "{not_linked} in {names:?}");
    }
}

#[test]
fn source_control_names_the_section_dependencies_and_a_wrapped_description() {
    let control = source_control();
    let (source, binary) = control.split_once("\n\n").expect("two stanzas");
    assert_eq!(
        source,
        format!(
            "Source: sluice\nSection: net\nPriority: optional\nMaintainer: {MAINTAINER}\n\
             Rules-Requires-Root: no\nStandards-Version: 4.6.2"
        )
    );
    let lines: Vec<&str> = binary.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "Package: sluice",
            "Architecture: amd64",
            "Depends: ${shlibs:Depends}, adduser",
            "Description: GRE-tunnelled UDP to compressed record files, via XDP and AF_XDP",
        ]
    );
    assert!(
        lines[4..]
            .iter()
            .all(|l| l.starts_with(' ') && l.len() <= 80)
    );
    assert!(lines.contains(&" ."), "paragraph separator");
    assert!(control.ends_with("'systemctl enable --now sluice'.\n"));
}

#[test]
fn conffiles_lists_the_config() {
    assert_eq!(conffiles(&stage::CONFFILES), "/etc/sluice/sluice.toml\n");
}

#[test]
fn changelog_entry_is_in_debian_format() {
    // 2026-12-05 14:00:00 UTC, a Saturday.
    let text = changelog("0.1.0-1", Some("d78656c"), 1_796_479_200);
    assert_eq!(
        text,
        format!(
            "sluice (0.1.0-1) unstable; urgency=medium\n\n  \
             * Built by `cargo xtask package` from commit d78656c; the repository's\n    \
             history lists the changes.\n\n -- {MAINTAINER}  Sat, 05 Dec 2026 14:00:00 +0000\n"
        )
    );
    assert!(changelog("0.1.0-1", None, 0).contains("from the working tree;"));
}

#[test]
fn dates_are_rfc2822_utc() {
    assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    assert_eq!(rfc2822(1_796_489_999), "Sat, 05 Dec 2026 16:59:59 +0000");
    assert_eq!(year(1_796_479_200), 2026);
}

#[test]
fn copyright_is_machine_readable_apache_2_and_names_the_linked_crates() {
    let linked = [crates::LinkedCrate {
        name: "zstd".into(),
        version: "0.13.3".into(),
        license: "MIT".into(),
    }];
    let text = copyright(2026, &linked);
    assert!(text.starts_with(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    ));
    assert!(text.contains(
        "\n\nFiles: *\nCopyright: 2026 Sluice maintainers\nLicense: Apache-2.0\nComment: "
    ));
    assert!(text.contains("https://crates.io):\n zstd 0.13.3 (MIT)\n\nLicense: Apache-2.0\n"));
    assert!(text.contains("\"/usr/share/common-licenses/Apache-2.0\".\n"));
}

#[test]
fn files_put_everything_where_debian_expects_it() {
    let repo = repo();
    let files = stage::files(&repo, Path::new("/build/sluice"), "c".into()).expect("files");
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths[..4],
        [
            "/usr/bin/sluice",
            "/lib/systemd/system/sluice.service",
            "/etc/sluice/sluice.toml",
            "/usr/share/doc/sluice/README.md",
        ]
    );
    for expected in [
        "/usr/share/doc/sluice/docs/operations.md",
        "/usr/share/doc/sluice/copyright",
        "/usr/share/sluice/prometheus/prometheus.yml",
        "/usr/share/sluice/prometheus/sluice-alerts.yml",
        "/usr/share/sluice/grafana/sluice.json",
        "/usr/share/lintian/overrides/sluice",
    ] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }
    let docs = std::fs::read_dir(repo.join("docs"))
        .expect("docs")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".md"))
        })
        .count();
    let shipped = paths
        .iter()
        .filter(|p| p.contains("/doc/sluice/docs/"))
        .count();
    assert_eq!(shipped, docs);
    assert_eq!(
        files[0],
        PackageFile {
            path: "/usr/bin/sluice".into(),
            source: Source::Copy("/build/sluice".into()),
            mode: 0o755,
        }
    );
    assert_eq!(
        files[2].source,
        Source::Copy(repo.join("deploy/sluice.example.toml"))
    );
    assert!(files[1..].iter().all(|f| f.mode == 0o644));
}

#[test]
fn the_unit_is_read_at_build_time_and_points_at_usr_bin() {
    let files = stage::files(&repo(), Path::new("/b"), String::new()).expect("files");
    let Source::Text(unit) = &files[1].source else {
        panic!("the unit is generated");
    };
    let template = std::fs::read_to_string(repo().join("deploy/sluice.service")).expect("unit");
    assert_eq!(unit.lines().count(), template.lines().count());
    assert_eq!(unit.matches("\nExecStart=").count(), 1);
    assert!(unit.contains("\nExecStart=/usr/bin/sluice run --config /etc/sluice/sluice.toml\n"));
}

#[test]
fn stage_writes_files_with_their_modes_and_0755_directories() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("binary");
    std::fs::write(&source, "elf").expect("write");
    let root = dir.path().join("root");
    let files = [
        PackageFile {
            path: "/usr/bin/sluice".into(),
            source: Source::Copy(source),
            mode: 0o755,
        },
        PackageFile {
            path: "/etc/sluice/sluice.toml".into(),
            source: Source::Text("x = 1\n".into()),
            mode: 0o644,
        },
    ];
    stage::stage(&root, &files).expect("stage");
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr/bin/sluice"), 0o755);
    assert_eq!(mode("etc/sluice/sluice.toml"), 0o644);
    for d in ["usr", "usr/bin", "etc", "etc/sluice"] {
        assert_eq!(mode(d), 0o755, "{d}");
    }
    assert_eq!(
        std::fs::read_to_string(root.join("etc/sluice/sluice.toml")).expect("read"),
        "x = 1\n"
    );
}

#[test]
fn maintainer_scripts_are_posix_sh_with_set_e() {
    for (name, script) in MAINTAINER_SCRIPTS {
        assert!(script.starts_with("#!/bin/sh\n"), "{name}");
        assert!(script.contains("\nset -e\n"), "{name}");
        let status = Command::new("sh")
            .args(["-n", "-c", script])
            .status()
            .expect("sh");
        assert!(status.success(), "{name} does not parse");
    }
    let (_, postinst) = MAINTAINER_SCRIPTS[0];
    let starts_service = |line: &str| {
        let line = line.trim();
        [
            "systemctl enable",
            "systemctl start",
            "deb-systemd-helper enable",
        ]
        .iter()
        .any(|call| line.starts_with(call))
            || line.contains("deb-systemd-invoke start")
    };
    assert!(
        !postinst.lines().any(starts_service),
        "a fresh install neither enables nor starts"
    );
    assert!(postinst.contains("try-restart sluice.service"));
}
