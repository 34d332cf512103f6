//! The syslog decoder never panics and always answers the same way: every truncation of
//! real messages, arbitrary bytes, syslog-shaped random text, and edge cases (where
//! fuzzing findings are added).
//!
//! The invariant under the default options is exact: a payload that is empty once trailing
//! NUL/CR/LF are dropped is a `empty` error, every other payload is exactly one row. Under
//! `invalid_utf8 = "reject"` the only other outcome is an `invalid_utf8` error.

use std::net::{IpAddr, Ipv6Addr};

use proptest::prelude::*;
use sluice_decode::{
    Decoder, DecoderFactory, PacketContext, Value,
    syslog::{InvalidUtf8, StructuredDataFormat, SyslogConfig, SyslogFactory},
};

/// Messages of every shape the decoder knows, including non-ASCII text.
const CORPUS: &[&str] = &[
    "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8",
    "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
    r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] An application event"#,
    r#"<165>1 2024-03-15T10:20:30.123+01:00 mx1 mgd 3046 UI_COMMIT [junos@2636.1.1.1.2.18 username="admin" comment="maint \"window\" [2]"] User 'admin' requested 'commit' operation"#,
    "<13>1 2024-03-15T10:20:30Z host app 12 ID héllo wörld\n",
    "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
    "<86>Mar 15 10:20:30 web01 sshd[4242]: Accepted publickey for deploy from 192.0.2.10 port 51234 ssh2",
    "<30>2024-03-15T10:20:30.123456+01:00 web01 systemd[1]: Started Session 42 of user root.",
    "<6>Mar  5 10:20:30 kernel: [12345.678] eth0: link up",
    "Mar 15 10:20:30 web01 cron[99]: job done",
    "<189>42: *Mar  1 00:01:02.345: %SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.1)",
    "<187>1234: router1: Mar 15 10:20:30.123 UTC: %LINK-3-UPDOWN: Interface Gi0/1, changed state to down",
    "<189>7: .Mar 15 11:20:30.000 CET: %SYS-5-RESTART: System restarted",
    "<189>: 2024 Mar 15 10:20:30 UTC: %ETHPORT-5-IF_UP: Interface Ethernet1/1 is up",
    "<166>Mar 15 2024 10:20:30 asa1 : %ASA-6-302014: Teardown TCP connection 123",
    "<28>Mar 15 10:20:30 mx1 mib2d[1234]: SNMP_TRAP_LINK_DOWN: ifIndex 531, ifName ge-0/0/1",
    r#"<189>date=2024-03-15 time=10:20:30 devname="FG100E" logid="0000000013" type="traffic" action="accept""#,
    "<13>myapp[77]: démarré\r\n\0",
];

fn ctx() -> PacketContext {
    let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
    PacketContext {
        received_at: 1_710_504_000_000_000,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: ip,
        src_port: 514,
        dst_ip: ip,
        dst_port: 514,
    }
}

fn decoder(config: &SyslogConfig) -> Box<dyn Decoder> {
    SyslogFactory::new(config).expect("valid config").build()
}

fn trimmed(payload: &[u8]) -> &[u8] {
    let end = payload
        .iter()
        .rposition(|b| !matches!(b, 0 | b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    &payload[..end]
}

/// `Ok(format)` of the single row, or the error kind.
fn outcome(decoder: &mut dyn Decoder, payload: &[u8]) -> Result<String, &'static str> {
    let mut rows: Vec<Vec<Value<'static>>> = Vec::new();
    match decoder.decode(&ctx(), payload, &mut rows) {
        Ok(outcome) => {
            assert_eq!((outcome.rows, outcome.held, rows.len()), (1, false, 1));
            assert_eq!(rows[0].len(), 12);
            match &rows[0][0] {
                Value::Str(format) => Ok(format.to_string()),
                other => panic!("format column holds {other:?}"),
            }
        }
        Err(e) => {
            assert!(rows.is_empty());
            Err(e.kind)
        }
    }
}

fn assert_replace_invariant(decoder: &mut dyn Decoder, payload: &[u8]) {
    let result = outcome(decoder, payload);
    if trimmed(payload).is_empty() {
        assert_eq!(result, Err("empty"), "{payload:?}");
    } else {
        assert!(
            matches!(result.as_deref(), Ok("rfc3164" | "rfc5424" | "unknown")),
            "{payload:?}: {result:?}"
        );
    }
}

#[test]
fn corpus_decodes_with_the_expected_format() {
    let mut decoder = decoder(&SyslogConfig::default());
    let formats: Vec<String> = CORPUS
        .iter()
        .map(|m| outcome(decoder.as_mut(), m.as_bytes()).expect("decodes"))
        .collect();
    let expected = [
        "rfc5424", "rfc5424", "rfc5424", "rfc5424", "rfc5424", "rfc3164", "rfc3164", "rfc3164",
        "rfc3164", "rfc3164", "rfc3164", "rfc3164", "rfc3164", "rfc3164", "rfc3164", "rfc3164",
        "rfc3164", "rfc3164",
    ];
    assert_eq!(formats, expected);
}

#[test]
fn every_truncation_of_the_corpus_decodes_or_is_empty() {
    let mut replace = decoder(&SyslogConfig::default());
    let mut reject = decoder(&SyslogConfig {
        invalid_utf8: InvalidUtf8::Reject,
        structured_data: StructuredDataFormat::Json,
        ..SyslogConfig::default()
    });
    let mut checked = 0;
    for message in CORPUS {
        let bytes = message.as_bytes();
        for len in 0..=bytes.len() {
            let prefix = &bytes[..len];
            assert_replace_invariant(replace.as_mut(), prefix);
            // The corpus' only non-ASCII bytes are in text columns, so a prefix is rejected
            // exactly when it ends inside a multi-byte character.
            let expected_error = if trimmed(prefix).is_empty() {
                Some("empty")
            } else if std::str::from_utf8(trimmed(prefix)).is_err() {
                Some("invalid_utf8")
            } else {
                None
            };
            assert_eq!(
                outcome(reject.as_mut(), prefix).err(),
                expected_error,
                "{prefix:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, CORPUS.iter().map(|m| m.len() + 1).sum::<usize>());
}

/// Hand-made inputs at the parsers' edges (a byte short of each construct). Findings of
/// `cargo fuzz run decode_syslog` go here too; the runs so far found none.
#[test]
fn regressions() {
    let cases: &[&[u8]] = &[
        b"<",
        b"<1",
        b"<1>",
        b"<1>1",
        b"<1>1 ",
        b"<1>1 -",
        b"<1>1 - - - - - [",
        b"<1>1 - - - - - [a k=\"\\",
        b"1 0",
        b"*",
        b"0:",
        b"0: ",
        b"0: x: ",
        b": Mar",
        b"Jan 1 0:00:00 :",
        b"Jan 1 0:00:00 UTC",
        b"Jan 1 0:00:00 +99:",
        b"Jan 1 9999 0:00:00",
        b"9999 Dec 31 23:59:60",
        b"2024-03-15T10:20:30.",
        b"<13>x[",
        b"<13>x[]",
        b"<13>x[1",
        b"\xef\xbb\xbf",
        b"<13>\xef\xbb",
        b"<13>1 - - - - - \xef\xbb\xbf",
    ];
    let mut replace = decoder(&SyslogConfig::default());
    for case in cases {
        assert_replace_invariant(replace.as_mut(), case);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes(payload in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut replace = decoder(&SyslogConfig::default());
        assert_replace_invariant(replace.as_mut(), &payload);
        let mut reject = decoder(&SyslogConfig {
            invalid_utf8: InvalidUtf8::Reject,
            structured_data: StructuredDataFormat::Json,
            max_message_bytes: 7,
            ..SyslogConfig::default()
        });
        let result = outcome(reject.as_mut(), &payload);
        prop_assert!(matches!(result, Ok(_) | Err("empty" | "invalid_utf8")), "{:?}", result);
    }

    #[test]
    fn syslog_shaped_text(
        payload in r#"(<[0-9]{1,3}>)?(1 )?([0-9]{1,3}: )?[*.]?((Jan|Mar|Dec) [ 0-9]{1,2} ([0-9]{4} )?[0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})?|-)?( (UTC|CET|[+-][0-9]{4}))?:? ?([a-z0-9.-]{0,8}:? )?([a-z]{0,6}(\[[0-9]{0,5}\])?:? )?(- |\[[a-z@0-9]{1,6}( [a-z]{1,3}="[a-z\\"\]]{0,6}"){0,3}\]{0,2} )?[ -~é]{0,20}[\r\n\x00]{0,2}"#
    ) {
        let mut replace = decoder(&SyslogConfig::default());
        assert_replace_invariant(replace.as_mut(), payload.as_bytes());
        let mut json = decoder(&SyslogConfig {
            structured_data: StructuredDataFormat::Json,
            invalid_utf8: InvalidUtf8::Reject,
            ..SyslogConfig::default()
        });
        // Valid UTF-8 in, so nothing is rejected.
        let result = outcome(json.as_mut(), payload.as_bytes());
        prop_assert_eq!(result.is_err(), trimmed(payload.as_bytes()).is_empty());
    }
}
