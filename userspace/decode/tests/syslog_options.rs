//! The syslog decoder's errors and options: empty payloads, invalid UTF-8 replaced or
//! rejected (with field and offset), `max_message_bytes`, the config's serde form and
//! validation, and the published schema.

mod syslog_support;

use sluice_decode::{
    ColumnType, DecoderFactory, Value,
    syslog::{InvalidUtf8, StructuredDataFormat, SyslogConfig, SyslogFactory},
};
use syslog_support::*;

#[test]
fn empty_payloads_are_errors() {
    let mut decoder = decoder(&SyslogConfig::default());
    let mut rows: Vec<Vec<Value<'static>>> = Vec::new();
    for payload in [&b""[..], b"\n", b"\0", b"\r\n\0"] {
        let err = decoder
            .decode(&ctx(RECEIVED), payload, &mut rows)
            .expect_err("empty");
        assert_eq!((err.kind, err.field_text(), err.offset), ("empty", None, 0));
    }
    assert!(rows.is_empty());
}

#[test]
fn invalid_utf8_is_replaced_by_default() {
    check_with(
        &SyslogConfig::default(),
        RECEIVED,
        b"<13>Mar 15 10:20:30 h\xff t: caf\xe9 \xf0\x9f\x98",
        Row {
            format: "rfc3164",
            facility: Some(USER),
            severity: Some(NOTICE),
            timestamp: Some(utc(2024, 3, 15, 10, 20, 30, 0)),
            hostname: Some("h\u{fffd}"),
            app_name: Some("t"),
            message: "caf\u{fffd} \u{fffd}",
            ..Row::default()
        },
    );
}

#[test]
fn invalid_utf8_rejected_names_field_and_offset() {
    let config = SyslogConfig {
        invalid_utf8: InvalidUtf8::Reject,
        ..SyslogConfig::default()
    };
    let mut decoder = decoder(&config);
    let mut rows: Vec<Vec<Value<'static>>> = Vec::new();
    let payload = b"<13>Mar 15 10:20:30 h t: caf\xe9";
    let err = decoder
        .decode(&ctx(RECEIVED), payload, &mut rows)
        .expect_err("invalid");
    assert_eq!(
        (err.kind, err.field_text().as_deref(), err.offset),
        ("invalid_utf8", Some("message"), 28)
    );
    let payload = b"<13>1 - h\xc3 a - - - x";
    let err = decoder
        .decode(&ctx(RECEIVED), payload, &mut rows)
        .expect_err("invalid");
    assert_eq!(
        (err.kind, err.field_text().as_deref(), err.offset),
        ("invalid_utf8", Some("hostname"), 9)
    );
    let payload = b"<13>1 - h a - - [x k=\"\xff\"] m";
    let err = decoder
        .decode(&ctx(RECEIVED), payload, &mut rows)
        .expect_err("invalid");
    assert_eq!(
        (err.kind, err.field_text().as_deref(), err.offset),
        ("invalid_utf8", Some("structured_data"), 22)
    );
    assert!(rows.is_empty());
}

#[test]
fn max_message_bytes_cuts_at_a_character_boundary() {
    let config = SyslogConfig {
        max_message_bytes: 5,
        ..SyslogConfig::default()
    };
    let expected = |message| Row {
        format: "rfc3164",
        facility: Some(USER),
        severity: Some(NOTICE),
        app_name: Some("t"),
        message,
        ..Row::default()
    };
    check_with(&config, RECEIVED, b"<13>t: abcdefgh", expected("abcde"));
    // "é" is 2 bytes at offsets 4..6: the cut at 5 drops it whole.
    check_with(
        &config,
        RECEIVED,
        "<13>t: abcdé".as_bytes(),
        expected("abcd"),
    );
    check_with(&config, RECEIVED, b"<13>t: abc", expected("abc"));
    // Two replacement characters are 6 bytes: the second does not fit.
    check_with(&config, RECEIVED, b"<13>t: \xff\xff", expected("\u{fffd}"));
    let reject = SyslogConfig {
        invalid_utf8: InvalidUtf8::Reject,
        ..config
    };
    check_with(
        &reject,
        RECEIVED,
        "<13>t: abcdé".as_bytes(),
        expected("abcd"),
    );
}

#[test]
fn config_from_json_and_unknown_fields() {
    let config: SyslogConfig = serde_json::from_str(
        r#"{"default_timezone":"+02:00","max_message_bytes":2048,"invalid_utf8":"reject","structured_data":"json"}"#,
    )
    .expect("valid");
    assert_eq!(
        config,
        SyslogConfig {
            default_timezone: "+02:00".to_owned(),
            max_message_bytes: 2048,
            invalid_utf8: InvalidUtf8::Reject,
            structured_data: StructuredDataFormat::Json,
        }
    );
    let empty: SyslogConfig = serde_json::from_str("{}").expect("defaults");
    assert_eq!(empty, SyslogConfig::default());
    let err =
        serde_json::from_str::<SyslogConfig>(r#"{"timezone":"UTC"}"#).expect_err("unknown field");
    assert!(
        err.to_string().starts_with("unknown field `timezone`"),
        "{err}"
    );
}

#[test]
fn factory_rejects_bad_options_naming_the_field() {
    let bad_zone = SyslogConfig {
        default_timezone: "CEST".to_owned(),
        ..SyslogConfig::default()
    };
    let err = SyslogFactory::new(&bad_zone).expect_err("bad zone");
    assert_eq!(err.field, "default_timezone");
    let zero = SyslogConfig {
        max_message_bytes: 0,
        ..SyslogConfig::default()
    };
    let err = SyslogFactory::new(&zero).expect_err("zero");
    assert_eq!(err.field, "max_message_bytes");
}

#[test]
fn schema_columns() {
    let factory = SyslogFactory::new(&SyslogConfig::default()).expect("valid");
    let schema = factory.schema();
    assert_eq!(schema.decoder, "syslog");
    let columns: Vec<(&str, ColumnType, bool)> = schema
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.ty, c.nullable))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("format", ColumnType::String, false),
            ("facility", ColumnType::UInt64, true),
            ("facility_name", ColumnType::String, true),
            ("severity", ColumnType::UInt64, true),
            ("severity_name", ColumnType::String, true),
            ("timestamp", ColumnType::Timestamp, true),
            ("hostname", ColumnType::String, true),
            ("app_name", ColumnType::String, true),
            ("procid", ColumnType::String, true),
            ("msgid", ColumnType::String, true),
            ("structured_data", ColumnType::String, true),
            ("message", ColumnType::String, false),
        ]
    );
    assert_eq!(factory.build().schema(), schema);
}
