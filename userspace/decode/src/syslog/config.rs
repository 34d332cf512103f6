//! The syslog decoder's options: what an operator may set, checked before anything runs.

use serde::{Deserialize, Serialize};

use super::timestamp;
use crate::ConfigFieldError;

/// Options of the `syslog` decoder (the `[decoder]` table of a port, minus its `type`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// Zone of timestamps that carry none (BSD `Mmm dd hh:mm:ss`, and RFC 3339 text
    /// without an offset): `"UTC"` (the default) or a fixed offset such as `"+02:00"`,
    /// `"-0530"`. Named zones with daylight-saving rules are not supported; a device that
    /// follows them should log in UTC or send RFC 5424.
    pub default_timezone: String,
    /// Longest `message` kept, in bytes: longer ones are cut at the last character
    /// boundary at or below it. At least 1; the default, 65 535, keeps every UDP payload whole.
    pub max_message_bytes: usize,
    /// What to do with text fields that are not valid UTF-8: `"replace"` each bad sequence
    /// with U+FFFD (the default; the record is kept) or `"reject"` the payload
    /// (`decode_error`, kind `invalid_utf8`).
    pub invalid_utf8: InvalidUtf8,
    /// How the `structured_data` column is written: `"raw"`, the SD text exactly as sent
    /// (the default, no allocation), or `"json"`, an object `{"SD-ID":{"name":"value"}}`.
    pub structured_data: StructuredDataFormat,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            default_timezone: "UTC".to_owned(),
            max_message_bytes: 65_535,
            invalid_utf8: InvalidUtf8::Replace,
            structured_data: StructuredDataFormat::Raw,
        }
    }
}

/// Handling of text that is not UTF-8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidUtf8 {
    /// Replace each invalid sequence with U+FFFD and keep the record.
    #[default]
    Replace,
    /// Fail the payload with a `invalid_utf8` decode error naming the field.
    Reject,
}

/// Output form of the `structured_data` column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredDataFormat {
    /// The SD-ELEMENTs as sent, escapes included.
    #[default]
    Raw,
    /// A JSON object keyed by SD-ID, each a JSON object of parameters; values unescaped;
    /// a repeated parameter becomes an array of its values.
    Json,
}

impl SyslogConfig {
    /// Checks every option; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigFieldError> {
        self.default_offset_seconds()?;
        if self.max_message_bytes == 0 {
            return Err(ConfigFieldError::new(
                "max_message_bytes",
                "must be at least 1 (65535 keeps every UDP payload whole)",
            ));
        }
        Ok(())
    }

    /// `default_timezone` in seconds east of UTC.
    pub(crate) fn default_offset_seconds(&self) -> Result<i32, ConfigFieldError> {
        timestamp::parse_offset(self.default_timezone.as_bytes()).ok_or_else(|| {
            ConfigFieldError::new(
                "default_timezone",
                format!(
                    "{:?} is not a zone this decoder knows: use \"UTC\" or a fixed offset like \"+02:00\"",
                    self.default_timezone
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(SyslogConfig::default().validate(), Ok(()));
        assert_eq!(SyslogConfig::default().default_offset_seconds(), Ok(0));
    }

    #[test]
    fn bad_timezone_names_the_field() {
        let config = SyslogConfig {
            default_timezone: "Europe/Paris".to_owned(),
            ..Default::default()
        };
        let err = config.validate().map_err(|e| e.field);
        assert_eq!(err, Err("default_timezone".to_owned()));
    }

    #[test]
    fn zero_max_message_bytes_names_the_field() {
        let config = SyslogConfig {
            max_message_bytes: 0,
            ..Default::default()
        };
        assert_eq!(
            config.validate().map_err(|e| e.field),
            Err("max_message_bytes".to_owned())
        );
    }

    #[test]
    fn offsets_are_accepted() {
        let config = SyslogConfig {
            default_timezone: "-05:30".to_owned(),
            ..Default::default()
        };
        assert_eq!(config.default_offset_seconds(), Ok(-19_800));
    }
}
