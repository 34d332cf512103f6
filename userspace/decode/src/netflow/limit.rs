//! What the `netflow` decoder refuses to keep when a configured limit is reached, and the
//! warning that says so.
//!
//! Each refusal is counted under the name of the option that set the limit (the label of
//! `sluice_netflow_refused_templates_total` and `sluice_netflow_hold_refused_packets_total`)
//! and logged at most once per [`LOG_INTERVAL`] per limit, with the number refused since the
//! previous line: a flood costs one line every ten seconds, not one per packet. Held packets
//! that expire are logged the same way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one warning per limit (and one for expired held packets) in this time.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A limit of the decoder's state, named after its option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// A new exporter's templates: `max_exporters` exporters already have state.
    MaxExporters,
    /// A template: `max_templates` templates are kept.
    MaxTemplates,
    /// A template: it would take the templates beyond `max_template_bytes`.
    MaxTemplateBytes,
    /// A packet not held: it would take the held packets beyond `max_held_bytes` (or the
    /// half of it open to exporters without templates).
    MaxHeldBytes,
    /// A packet not held: its exporter already holds `max_held_packets`.
    MaxHeldPackets,
}

impl Limit {
    /// Limits that refuse templates.
    pub const TEMPLATES: [Limit; 3] = [
        Limit::MaxExporters,
        Limit::MaxTemplates,
        Limit::MaxTemplateBytes,
    ];
    /// Limits that refuse to hold a packet.
    pub const HOLD: [Limit; 2] = [Limit::MaxHeldBytes, Limit::MaxHeldPackets];

    /// The option's name (a metric label).
    pub const fn option(self) -> &'static str {
        match self {
            Limit::MaxExporters => "max_exporters",
            Limit::MaxTemplates => "max_templates",
            Limit::MaxTemplateBytes => "max_template_bytes",
            Limit::MaxHeldBytes => "max_held_bytes",
            Limit::MaxHeldPackets => "max_held_packets",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }

    /// What the warning says.
    const fn message(self) -> &'static str {
        match self {
            Limit::MaxExporters => {
                "netflow: templates of new exporters refused, max_exporters exporters have \
                 templates; their data is dropped as no_template (raise max_exporters, or \
                 find who sends templates from so many exporters or observation domains)"
            }
            Limit::MaxTemplates => {
                "netflow: templates refused, max_templates are kept; data that needs them is \
                 dropped as no_template"
            }
            Limit::MaxTemplateBytes => {
                "netflow: templates refused, max_template_bytes are kept; data that needs \
                 them is dropped as no_template"
            }
            Limit::MaxHeldBytes => {
                "netflow: data sets without their template not held, max_held_bytes are \
                 held; dropped as no_template (template-less data from many exporters?)"
            }
            Limit::MaxHeldPackets => {
                "netflow: data sets without their template not held, the exporter already \
                 holds max_held_packets; dropped as no_template"
            }
        }
    }
}

/// Counts one kind of event and says when a warning about it is due.
#[derive(Debug, Default)]
struct Throttle {
    /// Nanoseconds (since the log's start) before which no line is written.
    next_ns: AtomicU64,
    /// Events since the last line.
    since: AtomicU64,
}

impl Throttle {
    /// Adds `n` events; returns how many happened since the last line when one is due.
    fn note(&self, n: u64, now_ns: u64) -> Option<u64> {
        self.since.fetch_add(n, Ordering::Relaxed);
        let next = self.next_ns.load(Ordering::Relaxed);
        if now_ns < next {
            return None;
        }
        let interval = u64::try_from(LOG_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
        self.next_ns
            .compare_exchange(
                next,
                now_ns.saturating_add(interval),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .ok()?;
        Some(self.since.swap(0, Ordering::Relaxed))
    }
}

/// The rate-limited warnings of one factory.
#[derive(Debug)]
pub struct LimitLog {
    stream: String,
    start: Instant,
    limits: [Throttle; 5],
    expired: Throttle,
}

impl LimitLog {
    /// Warnings naming `stream`.
    pub fn new(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            start: Instant::now(),
            limits: Default::default(),
            expired: Throttle::default(),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// `n` refusals by `limit` (`total`: all of them so far); warns if due.
    pub fn refused(&self, limit: Limit, n: u64, total: u64) {
        let Some(throttle) = self.limits.get(limit.index()) else {
            return;
        };
        if let Some(since) = throttle.note(n, self.now_ns()) {
            tracing::warn!(
                stream = %self.stream,
                limit = limit.option(),
                refused = since,
                total,
                "{}",
                limit.message()
            );
        }
    }

    /// `n` held packets expired (`total`: all of them so far); warns if due.
    pub fn expired(&self, n: u64, total: u64) {
        if let Some(since) = self.expired.note(n, self.now_ns()) {
            tracing::warn!(
                stream = %self.stream,
                packets = since,
                total,
                "netflow: held packets expired without their template (hold_ms); dropped as \
                 no_template"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_speaks_at_once_then_once_per_interval_with_the_count() {
        let t = Throttle::default();
        let second = 1_000_000_000;
        assert_eq!(t.note(1, 0), Some(1));
        assert_eq!(t.note(1, second), None);
        assert_eq!(t.note(5, 9 * second), None);
        assert_eq!(t.note(1, 10 * second), Some(7));
        assert_eq!(t.note(2, 11 * second), None);
        assert_eq!(t.note(1, 25 * second), Some(3));
    }

    #[test]
    fn every_limit_is_named_after_its_option() {
        let names: Vec<&str> = Limit::TEMPLATES
            .iter()
            .chain(&Limit::HOLD)
            .map(|l| l.option())
            .collect();
        assert_eq!(
            names,
            [
                "max_exporters",
                "max_templates",
                "max_template_bytes",
                "max_held_bytes",
                "max_held_packets"
            ]
        );
        for (i, limit) in Limit::TEMPLATES.iter().chain(&Limit::HOLD).enumerate() {
            assert_eq!(limit.index(), i);
        }
    }
}
