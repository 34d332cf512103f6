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
}

impl Default for NetflowConfig {
    fn default() -> Self {
        Self {
            template_timeout_secs: 1800,
            hold_ms: 2000,
            max_held_packets: 1024,
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
        Ok(())
    }

    /// Whether data sets without their template are held at all.
    pub(crate) fn holds(&self) -> bool {
        self.hold_ms > 0 && self.max_held_packets > 0
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
    }
}
