//! The `netflow` decoder's options, as an operator writes them in `[[decoder]]`'s
//! `netflow = { ... }` table, and the limits they are checked against at start.

use serde::{Deserialize, Serialize};

use crate::ConfigFieldError;

/// Longest accepted `template_timeout_secs`: a week. Exporters resend templates every few
/// minutes; a template older than that belongs to an exporter that has been re-configured.
pub const MAX_TEMPLATE_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// Longest accepted `hold_ms`: a packet overtaken by its template packet on another worker
/// is released within milliseconds; a minute covers an exporter that sends templates only
/// every N data packets.
pub const MAX_HOLD_MS: u64 = 60_000;
/// Largest accepted `max_held_packets` (per exporter); each held packet keeps a copy of
/// its payload (at most 64 KiB).
pub const MAX_HELD_PACKETS: usize = 65_536;
/// Largest accepted `max_exporters` and `max_templates`.
pub const MAX_STATE_ENTRIES: usize = 1 << 20;
/// Smallest accepted `max_template_bytes`: room for a few templates of a few hundred
/// fields (one template filling a whole 64 KiB packet costs about 400 KiB).
pub const MIN_TEMPLATE_BYTES: u64 = 64 << 10;
/// Largest accepted `max_template_bytes` and `max_held_bytes`: 4 GiB.
pub const MAX_STATE_BYTES: u64 = 4 << 30;

/// Options of the `netflow` decoder (NetFlow v5, v9 and IPFIX).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetflowConfig {
    /// A (options) template not refreshed by its exporter for this many seconds is
    /// forgotten: data that needs it is held, then dropped as `no_template`. 1 to 604800,
    /// default 1800 (RFC 7011 §8.4 suggests three times the exporter's resend interval).
    pub template_timeout_secs: u64,
    /// How long a packet whose data sets arrived before their template is held, waiting
    /// for the template (which may be decoded by another worker at the same moment), in
    /// milliseconds of receive time. 0 to 60000, default 2000; 0 turns holding off (such a
    /// packet is a `no_template` error at once).
    pub hold_ms: u64,
    /// At most this many packets are held per exporter; one more is a `no_template` error
    /// at once. 0 to 65536, default 1024; 0 turns holding off.
    pub max_held_packets: usize,
    /// At most this many bytes are held over all exporters: payload copies and their
    /// bookkeeping. A packet that would go beyond is a `no_template` error at once.
    /// Exporters with no template yet (which a flood of template-less data looks like) may
    /// fill half of it, so that exporters whose templates are known can always hold theirs.
    /// 0 to 4 GiB, default 16 MiB; 0 turns holding off.
    pub max_held_bytes: u64,
    /// At most this many exporters (tunnel, address, observation domain) keep templates;
    /// the templates of one more are refused (its data is then `no_template`) until an
    /// exporter's templates all expire. 1 to 1048576, default 4096.
    pub max_exporters: usize,
    /// At most this many templates and options templates are kept over all exporters;
    /// one more is refused. 1 to 1048576, default 16384.
    pub max_templates: usize,
    /// At most this many bytes of templates (their decoding plans and definitions) are
    /// kept over all exporters; a template that would go beyond is refused. 64 KiB to
    /// 4 GiB, default 32 MiB.
    pub max_template_bytes: u64,
}

impl Default for NetflowConfig {
    fn default() -> Self {
        Self {
            template_timeout_secs: 1800,
            hold_ms: 2000,
            max_held_packets: 1024,
            max_held_bytes: 16 << 20,
            max_exporters: 4096,
            max_templates: 16_384,
            max_template_bytes: 32 << 20,
        }
    }
}

impl NetflowConfig {
    /// Checks every field against its accepted range.
    ///
    /// # Errors
    /// [`ConfigFieldError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigFieldError> {
        if !(1..=MAX_TEMPLATE_TIMEOUT_SECS).contains(&self.template_timeout_secs) {
            return Err(ConfigFieldError::new(
                "template_timeout_secs",
                format!(
                    "{} is out of range: use 1 to {MAX_TEMPLATE_TIMEOUT_SECS} seconds",
                    self.template_timeout_secs
                ),
            ));
        }
        if self.hold_ms > MAX_HOLD_MS {
            return Err(ConfigFieldError::new(
                "hold_ms",
                format!(
                    "{} is out of range: use 0 (no holding) to {MAX_HOLD_MS} milliseconds",
                    self.hold_ms
                ),
            ));
        }
        if self.max_held_packets > MAX_HELD_PACKETS {
            return Err(ConfigFieldError::new(
                "max_held_packets",
                format!(
                    "{} is out of range: use 0 (no holding) to {MAX_HELD_PACKETS} packets per exporter",
                    self.max_held_packets
                ),
            ));
        }
        if self.max_held_bytes > MAX_STATE_BYTES {
            return Err(ConfigFieldError::new(
                "max_held_bytes",
                format!(
                    "{} is out of range: use 0 (no holding) to {MAX_STATE_BYTES} bytes",
                    self.max_held_bytes
                ),
            ));
        }
        for (field, value) in [
            ("max_exporters", self.max_exporters),
            ("max_templates", self.max_templates),
        ] {
            if !(1..=MAX_STATE_ENTRIES).contains(&value) {
                return Err(ConfigFieldError::new(
                    field,
                    format!("{value} is out of range: use 1 to {MAX_STATE_ENTRIES}"),
                ));
            }
        }
        if !(MIN_TEMPLATE_BYTES..=MAX_STATE_BYTES).contains(&self.max_template_bytes) {
            return Err(ConfigFieldError::new(
                "max_template_bytes",
                format!(
                    "{} is out of range: use {MIN_TEMPLATE_BYTES} to {MAX_STATE_BYTES} bytes",
                    self.max_template_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Whether data sets without their template are held at all.
    pub(crate) fn holds(&self) -> bool {
        self.hold_ms > 0 && self.max_held_packets > 0 && self.max_held_bytes > 0
    }

    /// `max_held_bytes` as a size (it fits: at most 4 GiB, checked by `validate`).
    pub(crate) fn held_bytes_limit(&self) -> usize {
        usize::try_from(self.max_held_bytes).unwrap_or(usize::MAX)
    }

    /// `max_template_bytes` as a size.
    pub(crate) fn template_bytes_limit(&self) -> usize {
        usize::try_from(self.max_template_bytes).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = NetflowConfig::default();
        assert_eq!(config.template_timeout_secs, 1800);
        assert_eq!(config.hold_ms, 2000);
        assert_eq!(config.max_held_packets, 1024);
        assert_eq!(config.max_held_bytes, 16 * 1024 * 1024);
        assert_eq!(config.max_exporters, 4096);
        assert_eq!(config.max_templates, 16_384);
        assert_eq!(config.max_template_bytes, 32 * 1024 * 1024);
        assert_eq!(config.validate(), Ok(()));
        assert!(config.holds());
    }

    #[test]
    fn each_field_is_checked_and_named() {
        let bad = [
            (
                NetflowConfig {
                    template_timeout_secs: 0,
                    ..NetflowConfig::default()
                },
                "template_timeout_secs",
            ),
            (
                NetflowConfig {
                    template_timeout_secs: MAX_TEMPLATE_TIMEOUT_SECS + 1,
                    ..NetflowConfig::default()
                },
                "template_timeout_secs",
            ),
            (
                NetflowConfig {
                    hold_ms: MAX_HOLD_MS + 1,
                    ..NetflowConfig::default()
                },
                "hold_ms",
            ),
            (
                NetflowConfig {
                    max_held_packets: MAX_HELD_PACKETS + 1,
                    ..NetflowConfig::default()
                },
                "max_held_packets",
            ),
            (
                NetflowConfig {
                    max_held_bytes: MAX_STATE_BYTES + 1,
                    ..NetflowConfig::default()
                },
                "max_held_bytes",
            ),
            (
                NetflowConfig {
                    max_exporters: 0,
                    ..NetflowConfig::default()
                },
                "max_exporters",
            ),
            (
                NetflowConfig {
                    max_exporters: MAX_STATE_ENTRIES + 1,
                    ..NetflowConfig::default()
                },
                "max_exporters",
            ),
            (
                NetflowConfig {
                    max_templates: 0,
                    ..NetflowConfig::default()
                },
                "max_templates",
            ),
            (
                NetflowConfig {
                    max_template_bytes: MIN_TEMPLATE_BYTES - 1,
                    ..NetflowConfig::default()
                },
                "max_template_bytes",
            ),
            (
                NetflowConfig {
                    max_template_bytes: MAX_STATE_BYTES + 1,
                    ..NetflowConfig::default()
                },
                "max_template_bytes",
            ),
        ];
        for (config, field) in bad {
            let err = config.validate().expect_err(field);
            assert_eq!(err.field, field);
        }
        let no_hold = NetflowConfig {
            hold_ms: 0,
            ..NetflowConfig::default()
        };
        assert_eq!(no_hold.validate(), Ok(()));
        assert!(!no_hold.holds());
        let no_held_bytes = NetflowConfig {
            max_held_bytes: 0,
            ..NetflowConfig::default()
        };
        assert_eq!(no_held_bytes.validate(), Ok(()));
        assert!(!no_held_bytes.holds());
    }
}
