//! The `netflow` decoders' shared state on `/metrics` (`sluice_netflow_*`, docs/metrics.md):
//! template and held-packet events, what the state limits refused, and how much state is
//! kept, per `netflow` stream. Read from each factory on scrape
//! ([`sluice_decode::netflow::NetflowFactory::stats`] and `state`: a few atomic loads),
//! never on the packet path.

use std::sync::Arc;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use sluice_decode::netflow::{NetflowFactory, NetflowState, NetflowStats};

use super::{counter_vec, raise};

/// One `netflow` stream's counters and state, as a scrape reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetflowSnapshot {
    /// The stream.
    pub stream: String,
    /// Its factory's counters.
    pub stats: NetflowStats,
    /// Its factory's state now.
    pub state: NetflowState,
}

impl NetflowSnapshot {
    /// Reads every `netflow` stream's factory.
    pub fn read(factories: &[(String, Arc<NetflowFactory>)]) -> Vec<NetflowSnapshot> {
        factories
            .iter()
            .map(|(stream, factory)| NetflowSnapshot {
                stream: stream.clone(),
                stats: factory.stats(),
                state: factory.state(),
            })
            .collect()
    }
}

/// The `sluice_netflow_*` families.
pub struct NetflowMetrics {
    templates: IntCounterVec,
    refused_templates: IntCounterVec,
    hold_packets: IntCounterVec,
    hold_refused: IntCounterVec,
    exporters: IntGaugeVec,
    kept_templates: IntGaugeVec,
    template_bytes: IntGaugeVec,
    held_packets: IntGaugeVec,
    held_bytes: IntGaugeVec,
}

fn gauge_vec(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), &["stream"])?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl NetflowMetrics {
    /// Registers the families (their series appear with the first snapshot that lists a
    /// `netflow` stream, i.e. from the first scrape).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            templates: counter_vec(
                registry,
                "sluice_netflow_templates_total",
                "NetFlow v9/IPFIX templates learned, withdrawn and expired.",
                &["stream", "event"],
            )?,
            refused_templates: counter_vec(
                registry,
                "sluice_netflow_refused_templates_total",
                "Templates refused by a state limit (reason: the option).",
                &["stream", "reason"],
            )?,
            hold_packets: counter_vec(
                registry,
                "sluice_netflow_hold_packets_total",
                "Packets held for a missing template, released, expired, failed at release.",
                &["stream", "event"],
            )?,
            hold_refused: counter_vec(
                registry,
                "sluice_netflow_hold_refused_packets_total",
                "Packets not held because of a state limit (reason: the option); each is a no_template decode error.",
                &["stream", "reason"],
            )?,
            exporters: gauge_vec(
                registry,
                "sluice_netflow_exporters",
                "Exporters with templates (max_exporters).",
            )?,
            kept_templates: gauge_vec(
                registry,
                "sluice_netflow_templates",
                "Templates kept (max_templates).",
            )?,
            template_bytes: gauge_vec(
                registry,
                "sluice_netflow_template_bytes",
                "Estimated memory of the templates kept (max_template_bytes).",
            )?,
            held_packets: gauge_vec(
                registry,
                "sluice_netflow_held_packets",
                "Packets held for a missing template.",
            )?,
            held_bytes: gauge_vec(
                registry,
                "sluice_netflow_held_bytes",
                "Bytes charged for held packets, copies and bookkeeping (max_held_bytes).",
            )?,
        })
    }

    /// Refreshes every family from the snapshots.
    pub fn update(&self, snapshots: &[NetflowSnapshot]) {
        for NetflowSnapshot {
            stream,
            stats,
            state,
        } in snapshots
        {
            let stream = stream.as_str();
            for (event, n) in [
                ("learned", stats.templates_learned),
                ("withdrawn", stats.templates_withdrawn),
                ("expired", stats.templates_expired),
            ] {
                raise(&self.templates.with_label_values(&[stream, event]), n);
            }
            for (event, n) in [
                ("held", stats.packets_held),
                ("released", stats.packets_released),
                ("expired", stats.packets_expired),
                ("release_failed", stats.release_failures),
            ] {
                raise(&self.hold_packets.with_label_values(&[stream, event]), n);
            }
            for (reason, n) in stats.templates_refused() {
                raise(
                    &self.refused_templates.with_label_values(&[stream, reason]),
                    n,
                );
            }
            for (reason, n) in stats.hold_refused() {
                raise(&self.hold_refused.with_label_values(&[stream, reason]), n);
            }
            let label = [stream];
            self.exporters
                .with_label_values(&label)
                .set(gauge(state.exporters));
            self.kept_templates
                .with_label_values(&label)
                .set(gauge(state.templates));
            self.template_bytes
                .with_label_values(&label)
                .set(gauge(state.template_bytes));
            self.held_packets
                .with_label_values(&label)
                .set(gauge(state.held_packets));
            self.held_bytes
                .with_label_values(&label)
                .set(gauge(state.held_bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_netflow_stream_has_every_event_reason_and_size_from_its_first_snapshot()
    -> Result<(), prometheus::Error> {
        let registry = Registry::new();
        let metrics = NetflowMetrics::register(&registry)?;
        let snapshot = NetflowSnapshot {
            stream: "flows".into(),
            stats: NetflowStats {
                templates_learned: 3,
                packets_held: 10,
                packets_expired: 9,
                packets_released: 1,
                hold_refused_bytes: 40,
                templates_refused_exporters: 2,
                ..NetflowStats::default()
            },
            state: NetflowState {
                exporters: 1,
                templates: 3,
                template_bytes: 2400,
                held_packets: 0,
                held_bytes: 0,
            },
        };
        metrics.update(std::slice::from_ref(&snapshot));
        metrics.update(&[snapshot]);
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )?;
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "sluice_netflow_exporters{stream=\"flows\"} 1",
                "sluice_netflow_held_bytes{stream=\"flows\"} 0",
                "sluice_netflow_held_packets{stream=\"flows\"} 0",
                "sluice_netflow_hold_packets_total{event=\"expired\",stream=\"flows\"} 9",
                "sluice_netflow_hold_packets_total{event=\"held\",stream=\"flows\"} 10",
                "sluice_netflow_hold_packets_total{event=\"release_failed\",stream=\"flows\"} 0",
                "sluice_netflow_hold_packets_total{event=\"released\",stream=\"flows\"} 1",
                "sluice_netflow_hold_refused_packets_total{reason=\"max_held_bytes\",stream=\"flows\"} 40",
                "sluice_netflow_hold_refused_packets_total{reason=\"max_held_packets\",stream=\"flows\"} 0",
                "sluice_netflow_refused_templates_total{reason=\"max_exporters\",stream=\"flows\"} 2",
                "sluice_netflow_refused_templates_total{reason=\"max_template_bytes\",stream=\"flows\"} 0",
                "sluice_netflow_refused_templates_total{reason=\"max_templates\",stream=\"flows\"} 0",
                "sluice_netflow_template_bytes{stream=\"flows\"} 2400",
                "sluice_netflow_templates{stream=\"flows\"} 3",
                "sluice_netflow_templates_total{event=\"expired\",stream=\"flows\"} 0",
                "sluice_netflow_templates_total{event=\"learned\",stream=\"flows\"} 3",
                "sluice_netflow_templates_total{event=\"withdrawn\",stream=\"flows\"} 0",
            ]
        );
        Ok(())
    }
}
