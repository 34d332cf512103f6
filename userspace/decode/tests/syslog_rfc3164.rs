//! The syslog decoder on RFC 3164 messages and what devices send under that name: the
//! RFC's examples, Linux rsyslog forwarding (traditional and ISO timestamps), Cisco IOS,
//! NX-OS and ASA prefixes, Juniper, Fortinet key=value, missing PRI/hostname/timestamp,
//! year-less timestamps resolved against the receive time. Each case asserts the whole row.

mod syslog_support;

use sluice_decode::syslog::SyslogConfig;
use syslog_support::*;

#[test]
fn rfc3164_example_year_from_receive_time() {
    // October is nearer to March 2024 in 2023 than in 2024.
    check(
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        Row {
            format: "rfc3164",
            facility: Some(AUTH),
            severity: Some(CRIT),
            timestamp: Some(utc(2023, 10, 11, 22, 14, 15, 0)),
            hostname: Some("mymachine"),
            app_name: Some("su"),
            message: "'su root' failed for lonvick on /dev/pts/8",
            ..Row::default()
        },
    );
}

#[test]
fn rfc3164_example_without_tag() {
    check(
        "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 2, 5, 17, 32, 18, 0)),
            hostname: Some("10.0.0.99"),
            message: "Use the BFG!",
            ..Row::default()
        },
    );
}

#[test]
fn rsyslog_traditional_forwarding() {
    check(
        "<86>Mar 15 10:20:30 web01 sshd[4242]: Accepted publickey for deploy from 192.0.2.10 port 51234 ssh2",
        Row {
            format: "rfc3164",
            facility: Some(AUTHPRIV),
            severity: Some(INFO),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("web01"),
            app_name: Some("sshd"),
            procid: Some("4242"),
            message: "Accepted publickey for deploy from 192.0.2.10 port 51234 ssh2",
            ..Row::default()
        },
    );
}

#[test]
fn tag_with_slash_and_brackets_in_message() {
    check(
        "<22>Mar 15 10:20:30 mail postfix/smtpd[2812]: connect from unknown[192.0.2.3]",
        Row {
            format: "rfc3164",
            facility: Some((2, "mail")),
            severity: Some(INFO),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("mail"),
            app_name: Some("postfix/smtpd"),
            procid: Some("2812"),
            message: "connect from unknown[192.0.2.3]",
            ..Row::default()
        },
    );
}

#[test]
fn rsyslog_forward_format_iso_timestamp() {
    check(
        "<30>2024-03-15T10:20:30.123456+01:00 web01 systemd[1]: Started Session 42 of user root.",
        Row {
            format: "rfc3164",
            facility: Some(DAEMON),
            severity: Some(INFO),
            timestamp: Some(utc(2024, 3, 15, 9, 20, 30, 123_456)),
            hostname: Some("web01"),
            app_name: Some("systemd"),
            procid: Some("1"),
            message: "Started Session 42 of user root.",
            ..Row::default()
        },
    );
}

#[test]
fn iso_timestamp_with_space_and_no_zone_uses_default() {
    let config = SyslogConfig {
        default_timezone: "-05:00".to_owned(),
        ..SyslogConfig::default()
    };
    check_with(
        &config,
        RECEIVED,
        b"<14>2024-03-15 05:20:30 nas01 smbd: share mounted",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(INFO),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("nas01"),
            app_name: Some("smbd"),
            message: "share mounted",
            ..Row::default()
        },
    );
}

#[test]
fn missing_hostname_kernel_tag() {
    check(
        "<6>Mar 15 10:20:30 kernel: [12345.678] eth0: link up",
        Row {
            format: "rfc3164",
            facility: Some(KERN),
            severity: Some(INFO),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            app_name: Some("kernel"),
            message: "[12345.678] eth0: link up",
            ..Row::default()
        },
    );
}

#[test]
fn missing_pri() {
    check(
        "Mar 15 10:20:30 web01 cron[99]: job done",
        Row {
            format: "rfc3164",
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("web01"),
            app_name: Some("cron"),
            procid: Some("99"),
            message: "job done",
            ..Row::default()
        },
    );
}

#[test]
fn single_digit_days_padded_zeroed_or_bare() {
    for payload in [
        "<13>Mar  1 10:20:30 h t: x",
        "<13>Mar 01 10:20:30 h t: x",
        "<13>Mar 1 10:20:30 h t: x",
    ] {
        check(
            payload,
            Row {
                format: "rfc3164",
                facility: Some(USER),
                severity: Some(NOTICE),
                timestamp: Some(utc(2024, 3, 1, 10, 20, 30, 0)),
                hostname: Some("h"),
                app_name: Some("t"),
                message: "x",
                ..Row::default()
            },
        );
    }
}

#[test]
fn december_message_received_on_new_year_is_last_year() {
    check_with(
        &SyslogConfig::default(),
        utc(2025, 1, 1, 0, 0, 5, 0),
        b"<13>Dec 31 23:59:59 h t: late",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 12, 31, 23, 59, 59, 0)),
            hostname: Some("h"),
            app_name: Some("t"),
            message: "late",
            ..Row::default()
        },
    );
}

#[test]
fn default_timezone_applies_to_bsd_timestamps() {
    let config = SyslogConfig {
        default_timezone: "+05:30".to_owned(),
        ..SyslogConfig::default()
    };
    check_with(
        &config,
        RECEIVED,
        b"<13>Mar 15 15:50:30 h t: x",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("h"),
            app_name: Some("t"),
            message: "x",
            ..Row::default()
        },
    );
}

#[test]
fn cisco_ios_sequence_and_unsynced_clock() {
    check(
        "<189>42: *Mar  1 00:01:02.345: %SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.1)",
        Row {
            format: "rfc3164",
            facility: Some(LOCAL7),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 1, 0, 1, 2, 345_000)),
            message: "%SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.1)",
            ..Row::default()
        },
    );
}

#[test]
fn cisco_ios_origin_hostname_and_utc_zone() {
    check(
        "<187>1234: router1: Mar 15 10:20:30.123 UTC: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to down",
        Row {
            format: "rfc3164",
            facility: Some(LOCAL7),
            severity: Some(ERR),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 123_000)),
            hostname: Some("router1"),
            message: "%LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to down",
            ..Row::default()
        },
    );
}

#[test]
fn cisco_ios_unresolvable_zone_word_uses_default() {
    let config = SyslogConfig {
        default_timezone: "+01:00".to_owned(),
        ..SyslogConfig::default()
    };
    check_with(
        &config,
        RECEIVED,
        b"<189>7: .Mar 15 11:20:30.000 CET: %SYS-5-RESTART: System restarted",
        Row {
            format: "rfc3164",
            facility: Some(LOCAL7),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            message: "%SYS-5-RESTART: System restarted",
            ..Row::default()
        },
    );
}

#[test]
fn cisco_ios_timestamp_with_year() {
    check(
        "<190>8: Mar 15 2024 10:20:30 UTC: %SYS-6-LOGGINGHOST_STARTSTOP: Logging to host 192.0.2.5 port 514 started - CLI initiated",
        Row {
            format: "rfc3164",
            facility: Some(LOCAL7),
            severity: Some(INFO),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            message: "%SYS-6-LOGGINGHOST_STARTSTOP: Logging to host 192.0.2.5 port 514 started - CLI initiated",
            ..Row::default()
        },
    );
}

#[test]
fn cisco_nxos_year_first() {
    check(
        "<189>: 2024 Mar 15 10:20:30 UTC: %ETHPORT-5-IF_UP: Interface Ethernet1/1 is up in mode access",
        Row {
            format: "rfc3164",
            facility: Some(LOCAL7),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            message: "%ETHPORT-5-IF_UP: Interface Ethernet1/1 is up in mode access",
            ..Row::default()
        },
    );
}

#[test]
fn cisco_asa_with_and_without_device_id() {
    check(
        "<166>Mar 15 2024 10:20:30: %ASA-6-302013: Built outbound TCP connection 123 for outside:192.0.2.1/443 (192.0.2.1/443) to inside:10.0.0.5/51234 (10.0.0.5/51234)",
        Row {
            format: "rfc3164",
            facility: Some(LOCAL4),
            severity: Some(INFO),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            message: "%ASA-6-302013: Built outbound TCP connection 123 for outside:192.0.2.1/443 (192.0.2.1/443) to inside:10.0.0.5/51234 (10.0.0.5/51234)",
            ..Row::default()
        },
    );
    check(
        "<166>Mar 15 2024 10:20:30 asa1 : %ASA-6-302014: Teardown TCP connection 123",
        Row {
            format: "rfc3164",
            facility: Some(LOCAL4),
            severity: Some(INFO),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("asa1"),
            message: "%ASA-6-302014: Teardown TCP connection 123",
            ..Row::default()
        },
    );
}

#[test]
fn juniper_bsd_with_and_without_hostname() {
    let message = "SNMP_TRAP_LINK_DOWN: ifIndex 531, ifAdminStatus up(1), ifOperStatus down(2), ifName ge-0/0/1";
    check(
        &format!("<28>Mar 15 10:20:30 mx1 mib2d[1234]: {message}"),
        Row {
            format: "rfc3164",
            facility: Some(DAEMON),
            severity: Some(WARNING),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("mx1"),
            app_name: Some("mib2d"),
            procid: Some("1234"),
            message: "SNMP_TRAP_LINK_DOWN: ifIndex 531, ifAdminStatus up(1), ifOperStatus down(2), ifName ge-0/0/1",
            ..Row::default()
        },
    );
    check(
        &format!("<28>Mar 15 10:20:30  mib2d[1234]: {message}"),
        Row {
            format: "rfc3164",
            facility: Some(DAEMON),
            severity: Some(WARNING),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            app_name: Some("mib2d"),
            procid: Some("1234"),
            message: "SNMP_TRAP_LINK_DOWN: ifIndex 531, ifAdminStatus up(1), ifOperStatus down(2), ifName ge-0/0/1",
            ..Row::default()
        },
    );
}

#[test]
fn fortinet_key_value_without_header() {
    check(
        r#"<189>date=2024-03-15 time=10:20:30 devname="FG100E" devid="FG100ETK1800000" logid="0000000013" type="traffic" subtype="forward" level="notice" srcip=10.0.0.5 dstip=192.0.2.1 action="accept""#,
        Row {
            format: "rfc3164",
            facility: Some(LOCAL7),
            severity: Some(NOTICE),
            message: r#"date=2024-03-15 time=10:20:30 devname="FG100E" devid="FG100ETK1800000" logid="0000000013" type="traffic" subtype="forward" level="notice" srcip=10.0.0.5 dstip=192.0.2.1 action="accept""#,
            ..Row::default()
        },
    );
}

#[test]
fn tag_without_timestamp() {
    check(
        "<13>myapp[77]: started",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(NOTICE),
            app_name: Some("myapp"),
            procid: Some("77"),
            message: "started",
            ..Row::default()
        },
    );
}

#[test]
fn nil_hostname_and_tag_at_end() {
    check(
        "<13>Mar 15 10:20:30 - tag:",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            app_name: Some("tag"),
            message: "",
            ..Row::default()
        },
    );
}

#[test]
fn pri_only_and_timestamp_only() {
    check(
        "<13>",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(NOTICE),
            message: "",
            ..Row::default()
        },
    );
    check(
        "<13>Mar 15 10:20:30",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            message: "",
            ..Row::default()
        },
    );
}

#[test]
fn last_token_after_timestamp_is_the_message() {
    check(
        "<13>Mar 15 10:20:30 rebooting",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            message: "rebooting",
            ..Row::default()
        },
    );
}

#[test]
fn url_in_message_is_not_a_tag() {
    check(
        "<13>Mar 15 10:20:30 h http://example.com/ is down",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("h"),
            message: "http://example.com/ is down",
            ..Row::default()
        },
    );
}

#[test]
fn no_pri_no_timestamp_is_unknown() {
    check(
        "hello world",
        Row {
            format: "unknown",
            message: "hello world",
            ..Row::default()
        },
    );
    check(
        "  indented: text",
        Row {
            format: "unknown",
            message: "  indented: text",
            ..Row::default()
        },
    );
}

#[test]
fn invalid_pri_is_kept_in_the_message() {
    check(
        "<192>Mar 15 10:20:30 h t: x",
        Row {
            format: "unknown",
            message: "<192>Mar 15 10:20:30 h t: x",
            ..Row::default()
        },
    );
}
