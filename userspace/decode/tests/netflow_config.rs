//! The netflow decoder's options as the daemon reads them: serde with defaults for missing
//! fields, unknown fields refused, and the factory refusing out-of-range values with the
//! field's name.

use sluice_decode::ConfigFieldError;
use sluice_decode::netflow::{NetflowConfig, NetflowFactory};

#[test]
fn missing_fields_take_their_defaults() {
    let config: NetflowConfig = serde_json::from_str("{}").expect("empty");
    assert_eq!(config, NetflowConfig::default());
    let config: NetflowConfig = serde_json::from_str(r#"{"hold_ms": 500}"#).expect("one field");
    assert_eq!(
        config,
        NetflowConfig {
            template_timeout_secs: 1800,
            hold_ms: 500,
            max_held_packets: 1024,
            max_held_bytes: 16 << 20,
            max_exporters: 4096,
            max_templates: 16_384,
            max_template_bytes: 32 << 20,
        }
    );
}

#[test]
fn unknown_fields_are_refused() {
    let err = serde_json::from_str::<NetflowConfig>(r#"{"hold_secs": 5}"#).expect_err("unknown");
    assert!(err.to_string().starts_with("unknown field `hold_secs`, expected one of `template_timeout_secs`, `hold_ms`, `max_held_packets`, `max_held_bytes`, `max_exporters`, `max_templates`, `max_template_bytes`"), "{err}");
}

#[test]
fn the_factory_refuses_values_out_of_range() {
    let config = NetflowConfig {
        hold_ms: 60_001,
        ..NetflowConfig::default()
    };
    assert_eq!(
        NetflowFactory::new(&config).map(|_| ()),
        Err(ConfigFieldError::new(
            "hold_ms",
            "60001 is out of range: use 0 (no holding) to 60000 milliseconds"
        ))
    );
    assert!(NetflowFactory::new(&NetflowConfig::default()).is_ok());
}
