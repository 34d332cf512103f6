//! `sluice run` refuses to start without each capability the XDP source needs, and names
//! the missing one. Each capability is removed from the bounding set with `setpriv`
//! (util-linux) so the daemon runs as root minus exactly that capability.
//!
//! The config names an interface that does not exist: if the check ever let the daemon
//! through, it would stop at "no such interface" and never touch a real one.

use std::process::Command;

use sluice_testkit::privilege;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

fn config(dir: &std::path::Path, umem_frames: u32) -> std::path::PathBuf {
    let path = dir.join(format!("caps-{umem_frames}.toml"));
    let text = format!(
        "[source]\ninterface = \"sl-no-such-if\"\numem_frames = {umem_frames}\n\
         ring_size = 64\n[sink]\npath = \"{}\"\n",
        dir.join("out").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn run_without(cap: &str, memlock: Option<&str>, config: &std::path::Path) -> (i32, String) {
    let mut cmd = match memlock {
        Some(limit) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--memlock={limit}")).arg("setpriv");
            c
        }
        None => Command::new("setpriv"),
    };
    cmd.arg(format!("--bounding-set=-{cap}"))
        .arg(format!("--inh-caps=-{cap}"))
        .arg(SLUICE)
        .args(["run", "--config"])
        .arg(config);
    let out = cmd.output().expect("run setpriv");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_missing_capability_is_named() {
    if !privilege::require_root("each_missing_capability_is_named")
        || !privilege::require_tool("each_missing_capability_is_named", "setpriv")
        || !privilege::require_tool("each_missing_capability_is_named", "prlimit")
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sluice-caps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config16m = config(&dir, 4096);
    let config256k = config(&dir, 64);
    for (cap, name) in [
        ("bpf", "CAP_BPF"),
        ("perfmon", "CAP_PERFMON"),
        ("net_admin", "CAP_NET_ADMIN"),
        ("net_raw", "CAP_NET_RAW"),
    ] {
        let (code, stderr) = run_without(cap, None, &config16m);
        assert_eq!(code, 2, "without {name}: {stderr}");
        assert!(
            stderr.contains(&format!("error: missing capability {name}: needed")),
            "without {name}: {stderr}"
        );
    }
    // CAP_IPC_LOCK is needed only when the UMEM exceeds RLIMIT_MEMLOCK (1 MiB here: a
    // limit can always be lowered): 16 MiB needs it, 256 KiB does not.
    let (code, stderr) = run_without("ipc_lock", Some("1048576"), &config16m);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error: missing capability CAP_IPC_LOCK"),
        "{stderr}"
    );
    let (code, stderr) = run_without("ipc_lock", Some("1048576"), &config256k);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error: source.interface \"sl-no-such-if\": no such interface"),
        "a UMEM under RLIMIT_MEMLOCK needs no CAP_IPC_LOCK: {stderr}"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}
