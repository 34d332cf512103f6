//! Tests of `cargo xtask install`: the plan and dry run, idempotence, upgrade and
//! rollback in a staging root, and (as root) the user in a staging root's passwd.

use std::os::unix::fs::MetadataExt as _;

use super::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_owned()
}

/// A staging root in a temp dir and a stand-in binary holding `contents`.
fn staged(dir: &Path, binary: &[u8]) -> Layout {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).expect("root");
    let source_binary = dir.join("sluice-build");
    std::fs::write(&source_binary, binary).expect("binary");
    Layout {
        repo: repo(),
        source_binary,
        build: false,
        root,
        prefix: "/usr/local".into(),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").mode() & 0o7777
}

#[test]
fn unit_execstart_follows_the_prefix() {
    let template = std::fs::read_to_string(repo().join(UNIT_TEMPLATE)).expect("template");
    let unit = render_unit(&template, Path::new("/opt/sluice/bin/sluice")).expect("render");
    assert!(
        unit.contains("\nExecStart=/opt/sluice/bin/sluice run --config /etc/sluice/sluice.toml\n")
    );
    assert_eq!(unit.matches("ExecStart=").count(), 1);
    assert_eq!(
        render_unit(&template, Path::new(TEMPLATE_BINARY)).expect("render"),
        template
    );
    assert!(render_unit("[Service]\nExecStart=/bin/true\n", Path::new("/x")).is_err());
}

#[test]
fn dry_run_prints_every_action_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = staged(dir.path(), b"v1");
    let r = layout.root.display().to_string();
    let lines = install(&layout, true).expect("dry run");
    let repo = repo().display().to_string();
    let source = layout.source_binary.display().to_string();
    assert_eq!(
        lines,
        [
            format!(
                "ok: user: skipped: {r}/etc/passwd does not exist (create it on the target: \
                 useradd --system --no-create-home --home-dir /var/lib/sluice \
                 --shell /usr/sbin/nologin --user-group sluice)"
            ),
            format!(
                "would binary: install {source} -> {r}/usr/local/bin/sluice (mode 0755, \
                 the replaced one kept as {r}/usr/local/bin/sluice.previous)"
            ),
            format!(
                "would unit: write {r}/etc/systemd/system/sluice.service (mode 0644, \
                 ExecStart=/usr/local/bin/sluice run --config /etc/sluice/sluice.toml)"
            ),
            format!(
                "would config: install {repo}/deploy/sluice.example.toml -> \
                 {r}/etc/sluice/sluice.toml (mode 0644, absent)"
            ),
            "ok: systemd: staging root: run `systemctl daemon-reload` on the target".to_owned(),
        ]
    );
    let left: Vec<_> = std::fs::read_dir(&layout.root).expect("root").collect();
    assert_eq!(left.len(), 0, "dry run wrote {left:?}");
}

#[test]
fn a_build_comes_first_and_a_real_root_reloads_systemd_only_if_running() {
    let layout = Layout {
        repo: repo(),
        source_binary: "/t/release/sluice".into(),
        build: true,
        root: "/".into(),
        prefix: "/opt/sluice".into(),
    };
    let actions = plan(&layout).expect("plan");
    let first = actions[0].to_string();
    assert!(
        first.starts_with("build: ") && first.ends_with(" build --release -p sluice"),
        "{first}"
    );
    assert_eq!(
        actions[2].to_string(),
        "binary: install /t/release/sluice -> /opt/sluice/bin/sluice (mode 0755, \
         the replaced one kept as /opt/sluice/bin/sluice.previous)"
    );
    // /etc/systemd/system/sluice.service does not name /opt/sluice here.
    assert_eq!(
        actions[3].to_string(),
        "unit: write /etc/systemd/system/sluice.service (mode 0644, \
         ExecStart=/opt/sluice/bin/sluice run --config /etc/sluice/sluice.toml)"
    );
    let reload = actions[5].to_string();
    if Path::new("/run/systemd/system").exists() {
        assert_eq!(reload, "systemd: systemctl daemon-reload");
    } else {
        assert_eq!(
            reload,
            "systemd: not running here (no /run/systemd/system): nothing to reload"
        );
    }
}

#[test]
fn install_is_idempotent_keeps_the_config_and_the_previous_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = staged(dir.path(), b"v1");
    let r = layout.root.clone();
    let bin = r.join("usr/local/bin/sluice");
    let previous = r.join("usr/local/bin/sluice.previous");
    let unit = r.join("etc/systemd/system/sluice.service");
    let config = r.join("etc/sluice/sluice.toml");

    let first = install(&layout, false).expect("first install");
    let done: Vec<bool> = first.iter().map(|l| l.starts_with("done: ")).collect();
    assert_eq!(done, [false, true, true, true, false], "{first:#?}");
    assert_eq!(std::fs::read(&bin).expect("bin"), b"v1");
    assert_eq!(
        (mode(&bin), mode(&unit), mode(&config)),
        (0o755, 0o644, 0o644)
    );
    assert!(!previous.exists());
    let example = std::fs::read(repo().join(EXAMPLE_CONFIG)).expect("example");
    assert_eq!(std::fs::read(&config).expect("config"), example);
    let unit_text = std::fs::read_to_string(&unit).expect("unit");
    assert!(
        unit_text
            .contains("\nExecStart=/usr/local/bin/sluice run --config /etc/sluice/sluice.toml\n")
    );

    // Again: nothing to do, everything said so.
    let second = install(&layout, false).expect("second install");
    assert_eq!(
        second,
        [
            format!(
                "ok: user: skipped: {}/etc/passwd does not exist (create it on the target: \
                 useradd --system --no-create-home --home-dir /var/lib/sluice \
                 --shell /usr/sbin/nologin --user-group sluice)",
                r.display()
            ),
            format!("ok: binary: {} is up to date", bin.display()),
            format!("ok: unit: {} is up to date", unit.display()),
            format!(
                "ok: config: keeping {} (compare with deploy/sluice.example.toml for new keys)",
                config.display()
            ),
            "ok: systemd: unit unchanged, nothing to reload".to_owned(),
        ]
    );

    // An edited config survives an upgrade; the old binary is kept for rollback.
    std::fs::write(&config, "# mine\n").expect("edit config");
    std::fs::write(&layout.source_binary, b"v2").expect("v2");
    let third = install(&layout, false).expect("upgrade");
    assert!(third[1].starts_with("done: binary: install"), "{third:#?}");
    assert_eq!(std::fs::read(&bin).expect("bin"), b"v2");
    assert_eq!(std::fs::read(&previous).expect("previous"), b"v1");
    assert_eq!(mode(&previous), 0o755);
    assert_eq!(std::fs::read(&config).expect("config"), b"# mine\n");

    // Rollback: install the previous binary; the two swap.
    let rollback = Layout {
        source_binary: previous.clone(),
        ..layout.clone()
    };
    install(&rollback, false).expect("rollback");
    assert_eq!(std::fs::read(&bin).expect("bin"), b"v1");
    assert_eq!(std::fs::read(&previous).expect("previous"), b"v2");
    let names: Vec<String> = std::fs::read_dir(r.join("usr/local/bin"))
        .expect("bin dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        names,
        ["sluice", "sluice.previous"],
        "no temporary file left"
    );
}

#[test]
fn the_user_is_created_in_a_staging_roots_passwd_once() {
    const NAME: &str = "xtask::install::the_user_is_created_in_a_staging_roots_passwd_once";
    if !sluice_testkit::privilege::require_root(NAME)
        || !sluice_testkit::privilege::require_tool(NAME, "useradd")
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = staged(dir.path(), b"v1");
    let etc = layout.root.join("etc");
    std::fs::create_dir_all(&etc).expect("etc");
    for (file, line, mode) in [
        ("passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
        ("group", "root:x:0:\n", 0o644),
        ("shadow", "root:*:19000:0:99999:7:::\n", 0o640),
        ("gshadow", "root:*::\n", 0o640),
    ] {
        std::fs::write(etc.join(file), line).expect("write etc file");
        std::fs::set_permissions(etc.join(file), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }
    let first = install(&layout, false).expect("install");
    assert_eq!(
        first[0],
        format!(
            "done: user: useradd --root {} --system --no-create-home --home-dir \
             /var/lib/sluice --shell /usr/sbin/nologin --user-group sluice",
            layout.root.display()
        )
    );
    let passwd = std::fs::read_to_string(etc.join("passwd")).expect("passwd");
    let entry: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("sluice:"))
        .expect("sluice in passwd")
        .split(':')
        .collect();
    let gid = entry[3];
    assert_eq!(
        (entry[0], entry[5], entry[6]),
        ("sluice", "/var/lib/sluice", "/usr/sbin/nologin")
    );
    let uid: u32 = entry[2].parse().expect("uid");
    assert!((1..1000).contains(&uid), "a system uid: {uid}");
    let group = std::fs::read_to_string(etc.join("group")).expect("group");
    assert!(group.contains(&format!("\nsluice:x:{gid}:\n")), "{group}");

    let second = install(&layout, false).expect("install again");
    assert_eq!(second[0], "ok: user: sluice exists");
    let again = std::fs::read_to_string(etc.join("passwd")).expect("passwd");
    assert_eq!(again, passwd);
}
