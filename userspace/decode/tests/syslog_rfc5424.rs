//! The syslog decoder on RFC 5424 messages: the RFC's own examples, Juniper structured
//! syslog, rsyslog's protocol-23 forwarding, and the deviations tolerated (no SD field, no
//! PRI, offset-less timestamps, impossible dates, malformed SD, a header cut short). Each
//! case asserts the whole row.

mod syslog_support;

use sluice_decode::{
    Value,
    syslog::{StructuredDataFormat, SyslogConfig},
};
use syslog_support::*;

#[test]
fn rfc5424_example_1_with_bom() {
    check(
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8",
        Row {
            format: "rfc5424",
            facility: Some(AUTH),
            severity: Some(CRIT),
            timestamp: Some(utc(2003, 10, 11, 22, 14, 15, 3_000)),
            hostname: Some("mymachine.example.com"),
            app_name: Some("su"),
            msgid: Some("ID47"),
            message: "'su root' failed for lonvick on /dev/pts/8",
            ..Row::default()
        },
    );
}

#[test]
fn rfc5424_example_2_offset_and_microseconds() {
    check(
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        Row {
            format: "rfc5424",
            facility: Some(LOCAL4),
            severity: Some(NOTICE),
            timestamp: Some(utc(2003, 8, 24, 12, 14, 15, 3)),
            hostname: Some("192.0.2.1"),
            app_name: Some("myproc"),
            procid: Some("8710"),
            message: "%% It's time to make the do-nuts.",
            ..Row::default()
        },
    );
}

const EXAMPLE_SD: &str = r#"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#;

#[test]
fn rfc5424_example_3_structured_data_raw() {
    let payload = format!(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 {EXAMPLE_SD} \u{feff}An application event log entry..."
    );
    check_with(
        &SyslogConfig::default(),
        RECEIVED,
        payload.as_bytes(),
        Row {
            format: "rfc5424",
            facility: Some(LOCAL4),
            severity: Some(NOTICE),
            timestamp: Some(utc(2003, 10, 11, 22, 14, 15, 3_000)),
            hostname: Some("mymachine.example.com"),
            app_name: Some("evntslog"),
            msgid: Some("ID47"),
            structured_data: Some(EXAMPLE_SD),
            message: "An application event log entry...",
            ..Row::default()
        },
    );
}

#[test]
fn rfc5424_example_4_structured_data_json_without_msg() {
    let payload = format!(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 {EXAMPLE_SD}"
    );
    let config = SyslogConfig {
        structured_data: StructuredDataFormat::Json,
        ..SyslogConfig::default()
    };
    check_with(
        &config,
        RECEIVED,
        payload.as_bytes(),
        Row {
            format: "rfc5424",
            facility: Some(LOCAL4),
            severity: Some(NOTICE),
            timestamp: Some(utc(2003, 10, 11, 22, 14, 15, 3_000)),
            hostname: Some("mymachine.example.com"),
            app_name: Some("evntslog"),
            msgid: Some("ID47"),
            structured_data: Some(
                r#"{"exampleSDID@32473":{"iut":"3","eventSource":"Application","eventID":"1011"},"examplePriority@32473":{"class":"high"}}"#,
            ),
            message: "",
            ..Row::default()
        },
    );
}

#[test]
fn rfc5424_all_nil() {
    check(
        "<13>1 - - - - - -",
        Row {
            format: "rfc5424",
            facility: Some(USER),
            severity: Some(NOTICE),
            message: "",
            ..Row::default()
        },
    );
}

#[test]
fn juniper_structured_syslog() {
    let sd = r#"[junos@2636.1.1.1.2.18 username="admin" comment="maint \"window\" [2]"]"#;
    let payload = format!(
        "<165>1 2024-03-15T10:20:30.123+01:00 mx1 mgd 3046 UI_COMMIT {sd} User 'admin' requested 'commit' operation"
    );
    check_with(
        &SyslogConfig::default(),
        RECEIVED,
        payload.as_bytes(),
        Row {
            format: "rfc5424",
            facility: Some(LOCAL4),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 9, 20, 30, 123_000)),
            hostname: Some("mx1"),
            app_name: Some("mgd"),
            procid: Some("3046"),
            msgid: Some("UI_COMMIT"),
            structured_data: Some(sd),
            message: "User 'admin' requested 'commit' operation",
        },
    );
    let config = SyslogConfig {
        structured_data: StructuredDataFormat::Json,
        ..SyslogConfig::default()
    };
    let row = decode_with(&config, RECEIVED, payload.as_bytes());
    assert_eq!(
        row[10],
        Value::Str(
            r#"{"junos@2636.1.1.1.2.18":{"username":"admin","comment":"maint \"window\" [2]"}}"#
                .into()
        )
    );
}

#[test]
fn rsyslog_protocol23_format_with_trailing_newline() {
    check(
        "<30>1 2024-03-15T10:20:30.123456+00:00 web01 systemd 1 - -  Started Session 42 of user root.\n",
        Row {
            format: "rfc5424",
            facility: Some(DAEMON),
            severity: Some(INFO),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 123_456)),
            hostname: Some("web01"),
            app_name: Some("systemd"),
            procid: Some("1"),
            message: " Started Session 42 of user root.",
            ..Row::default()
        },
    );
}

#[test]
fn rfc5424_trailing_nul_and_crlf_are_framing() {
    check(
        "<13>1 2024-03-15T10:20:30Z h a - - - done\r\n\0",
        Row {
            format: "rfc5424",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("h"),
            app_name: Some("a"),
            message: "done",
            ..Row::default()
        },
    );
}

#[test]
fn rfc5424_without_structured_data_field() {
    check(
        "<13>1 2024-03-15T10:20:30Z host app 12 ID hello world",
        Row {
            format: "rfc5424",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("host"),
            app_name: Some("app"),
            procid: Some("12"),
            msgid: Some("ID"),
            message: "hello world",
            ..Row::default()
        },
    );
}

#[test]
fn rfc5424_without_pri() {
    check(
        "1 2024-03-15T10:20:30Z host app - - - no pri",
        Row {
            format: "rfc5424",
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("host"),
            app_name: Some("app"),
            message: "no pri",
            ..Row::default()
        },
    );
}

#[test]
fn rfc5424_timestamp_without_offset_uses_default_timezone() {
    let config = SyslogConfig {
        default_timezone: "+02:00".to_owned(),
        ..SyslogConfig::default()
    };
    check_with(
        &config,
        RECEIVED,
        b"<13>1 2024-03-15T12:20:30 host app - - - local",
        Row {
            format: "rfc5424",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("host"),
            app_name: Some("app"),
            message: "local",
            ..Row::default()
        },
    );
}

#[test]
fn rfc5424_impossible_date_is_null_and_the_rest_is_kept() {
    check(
        "<11>1 2024-02-30T10:20:30Z host app - - - bad date",
        Row {
            format: "rfc5424",
            facility: Some(USER),
            severity: Some(ERR),
            hostname: Some("host"),
            app_name: Some("app"),
            message: "bad date",
            ..Row::default()
        },
    );
}

#[test]
fn rfc5424_malformed_structured_data_stays_in_message() {
    check(
        "<13>1 - host app - - [bad sd here",
        Row {
            format: "rfc5424",
            facility: Some(USER),
            severity: Some(NOTICE),
            hostname: Some("host"),
            app_name: Some("app"),
            message: "[bad sd here",
            ..Row::default()
        },
    );
}

#[test]
fn rfc5424_header_cut_short() {
    check(
        "<13>1 2024-03-15T10:20:30Z host",
        Row {
            format: "rfc5424",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("host"),
            message: "",
            ..Row::default()
        },
    );
}
