//! Messages per second per core of the syslog decoder, on typical ~150-byte RFC 3164 and
//! RFC 5424 messages (and a Cisco IOS one, the most prefix-laden 3164 variant), into a
//! sink that looks at every value without copying — what a worker pays per packet
//! before encoding. `rfc5424_sd_json` prices the JSON structured-data option.
//!
//! Run: `cargo bench -p sluice-decode --bench decode_syslog`.

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_decode::{
    Decoder, DecoderFactory, PacketContext, RowSink, Value,
    syslog::{StructuredDataFormat, SyslogConfig, SyslogFactory},
};

const RFC3164: &[u8] = b"<86>Mar 15 10:20:30 web01 sshd[4242]: Accepted publickey for deploy from 192.0.2.10 port 51234 ssh2: RSA SHA256:Xk3bGQ2v7uT1pLr9yZ0w";
const RFC5424: &[u8] = br#"<165>1 2024-03-15T10:20:30.123456+01:00 mx1.example.net mgd 3046 UI_COMMIT [junos@2636.1.1.1.2.18 username="admin"] User 'admin' requested 'commit' operation"#;
const CISCO: &[u8] = b"<187>1234: router1: *Mar 15 10:20:30.123 UTC: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to down by admin request";

/// Touches every value so the work cannot be optimised away.
struct Touch(u64);

impl RowSink for Touch {
    fn row(&mut self, _ctx: &PacketContext, values: &[Value<'_>]) {
        for value in values {
            self.0 = self.0.wrapping_add(match value {
                Value::Str(s) => s.len() as u64,
                Value::U64(n) => *n,
                Value::Timestamp(t) => *t as u64,
                _ => 1,
            });
        }
    }
}

fn ctx() -> PacketContext {
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
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
    match SyslogFactory::new(config) {
        Ok(factory) => factory.build(),
        Err(e) => panic!("bench config: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let ctx = ctx();
    let json = SyslogConfig {
        structured_data: StructuredDataFormat::Json,
        ..SyslogConfig::default()
    };
    let cases: [(&str, &[u8], SyslogConfig); 4] = [
        ("rfc3164", RFC3164, SyslogConfig::default()),
        ("rfc5424", RFC5424, SyslogConfig::default()),
        ("cisco_ios", CISCO, SyslogConfig::default()),
        ("rfc5424_sd_json", RFC5424, json),
    ];
    let mut group = c.benchmark_group("decode_syslog");
    group.throughput(Throughput::Elements(1));
    for (name, payload, config) in cases {
        let mut decoder = decoder(&config);
        let mut sink = Touch(0);
        group.bench_function(format!("{name}_{}B", payload.len()), |b| {
            b.iter(|| {
                let outcome = decoder.decode(&ctx, black_box(payload), &mut sink);
                black_box(outcome.is_ok())
            });
        });
        black_box(sink.0);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
