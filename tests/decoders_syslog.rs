//! Syslog from a real peer through the whole appliance: `logger` (util-linux) in
//! namespace a sends RFC 5424 and RFC 3164 messages as plain UDP to port 514 of namespace
//! b, where the XDP program steers them to Sluice and the `syslog` decoder turns each into
//! one record with the fields logger was given.

mod common;

use std::time::Duration;

use common::{read_json_records as read_records, rfc3339_micros, sluice_binary};
use sluice_testkit::{
    daemon::{self, ConfigSpec, RunFiles},
    netns::{ADDR_V4_A, ADDR_V4_B, NetnsPair},
    privilege::{require_root, require_tool},
};

const NAME: &str = "decoders_syslog::logger_messages_decode_to_their_fields";

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

#[test]
fn logger_messages_decode_to_their_fields() {
    if !(require_root(NAME) && ["ip", "logger"].iter().all(|t| require_tool(NAME, t))) {
        return;
    }
    let dir = sluice_testkit::scratch::tempdir("syslog").expect("tempdir");
    let pair = NetnsPair::create().expect("namespaces");
    let out = dir.path().join("records");
    let files = RunFiles::in_dir(dir.path(), "sluice");
    let mut spec = ConfigSpec::xdp(&pair.if_b, &out);
    spec.ports = vec![5000, 514];
    spec.plain_udp = true;
    let config = spec.to_toml() + "\n[[decoder]]\nports = [514]\nsyslog = {}\n";
    std::fs::write(&files.config, config).expect("config");
    let mut sluice = daemon::start_run(&sluice_binary(), &pair.b, &files).expect("start sluice");
    sluice
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));

    let before = std::time::SystemTime::now();
    let server = ADDR_V4_B.to_string();
    let logger = |args: &[&str]| {
        let status = pair
            .a
            .command("logger")
            .args(["--server", &server, "--port", "514", "--udp"])
            .args(args)
            .status()
            .expect("run logger");
        assert!(status.success(), "logger {args:?}: {status}");
    };
    logger(&[
        "--rfc5424",
        "-p",
        "local3.warning",
        "-t",
        "myapp",
        "--id=4242",
        "--msgid",
        "ID47",
        "--sd-id",
        "exampleSDID@32473",
        "--sd-param",
        "iut=\"3\"",
        "hello 5424",
    ]);
    logger(&[
        "--rfc3164",
        "-p",
        "auth.crit",
        "-t",
        "su",
        "--id=77",
        "hello 3164",
    ]);
    std::thread::sleep(Duration::from_millis(800));
    let (status, in_time, stats) = sluice.stop(Duration::from_secs(15)).expect("stop sluice");
    assert!(status.success() && in_time, "sluice exit {status}");
    assert_eq!(
        (
            stats.seen,
            stats.recorded,
            stats.records_written,
            stats.dropped_total
        ),
        (2, 2, 2, 0)
    );
    assert!(stats.balanced);

    assert!(!out.join("raw").exists(), "nothing went to the raw stream");
    let mut records = read_records(&out.join("syslog"));
    records.sort_by_key(|r| r["format"].as_str().map(str::to_owned));
    assert_eq!(records.len(), 2, "{records:?}");
    let host = hostname();
    let now = std::time::SystemTime::now();
    for r in &records {
        assert_eq!(r["tunnel_src"], serde_json::Value::Null);
        assert_eq!(r["src_ip"], ADDR_V4_A.to_string());
        assert_eq!(r["dst_ip"], ADDR_V4_B.to_string());
        assert_eq!(r["dst_port"], 514);
        assert_eq!(r["hostname"], host.as_str());
        // The message's own timestamp: logger stamps it with the current time.
        let ts = r["timestamp"].as_str().expect("timestamp");
        let secs = (rfc3339_micros(ts) / 1_000_000) as u64;
        let lo = before
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs()
            - 1;
        let hi = now
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs()
            + 1;
        assert!((lo..=hi).contains(&secs), "{ts} not between {lo} and {hi}");
    }
    let (r3164, r5424) = (&records[0], &records[1]);
    assert_eq!(r5424["format"], "rfc5424");
    assert_eq!(
        (r5424["facility"].as_u64(), r5424["severity"].as_u64()),
        (Some(19), Some(4))
    );
    assert_eq!(
        (
            r5424["facility_name"].as_str(),
            r5424["severity_name"].as_str()
        ),
        (Some("local3"), Some("warning"))
    );
    assert_eq!(r5424["app_name"], "myapp");
    assert_eq!(r5424["procid"], "4242");
    assert_eq!(r5424["msgid"], "ID47");
    let sd = r5424["structured_data"].as_str().expect("structured data");
    assert!(sd.ends_with("[exampleSDID@32473 iut=\"3\"]"), "{sd}");
    assert_eq!(r5424["message"], "hello 5424");

    assert_eq!(r3164["format"], "rfc3164");
    assert_eq!(
        (r3164["facility"].as_u64(), r3164["severity"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(r3164["app_name"], "su");
    assert_eq!(r3164["procid"], "77");
    assert_eq!(r3164["msgid"], serde_json::Value::Null);
    assert_eq!(r3164["message"], "hello 3164");
}
