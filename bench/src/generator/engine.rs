//! Which engine puts the generator's frames on the veth, and how to force one.
//!
//! - [`GenEngine::XdpLive`]: `sluice_gen` run by `BPF_PROG_TEST_RUN` with
//!   `BPF_F_TEST_XDP_LIVE_FRAMES` (`xdp_live.rs`): several Mpps from one core.
//! - [`GenEngine::AfPacket`]: an `AF_PACKET` socket on the sender's veth, frames sent in
//!   batches with `sendmmsg` and the qdisc bypassed (`af_packet.rs`): works on any
//!   kernel, offers far fewer frames per second.
//!
//! [`super::Generator::new`] uses the engine [`ENGINE_ENV`] names (`xdp-live`,
//! `af-packet`). When it is unset or `auto`, it asks the kernel once per process whether
//! it runs XDP programs with live frames (some builds refuse with EPERM) and falls back to
//! AF_PACKET if not, saying so on stderr ([`super::chosen_engine`]).
//! [`super::Generator::with_engine`] forces one from code.

/// Environment variable that forces an engine: `xdp-live`, `af-packet`, or `auto`.
pub const ENGINE_ENV: &str = "SLUICE_BENCH_GENERATOR";

/// How the generator sends (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GenEngine {
    /// `BPF_PROG_TEST_RUN` of `sluice_gen` with live frames, redirected out of the veth.
    XdpLive,
    /// `sendmmsg` on an `AF_PACKET` socket bound to the veth, qdisc bypassed.
    AfPacket,
}

impl GenEngine {
    /// Every engine, in order of preference.
    pub const ALL: [GenEngine; 2] = [GenEngine::XdpLive, GenEngine::AfPacket];

    /// The name [`ENGINE_ENV`] takes: `xdp-live` or `af-packet`.
    pub fn name(self) -> &'static str {
        match self {
            GenEngine::XdpLive => "xdp-live",
            GenEngine::AfPacket => "af-packet",
        }
    }

    /// A short description for reports and logs.
    pub fn label(self) -> &'static str {
        match self {
            GenEngine::XdpLive => "XDP live frames (BPF_PROG_TEST_RUN)",
            GenEngine::AfPacket => "AF_PACKET (sendmmsg, qdisc bypassed)",
        }
    }

    /// The engine called `name` ([`GenEngine::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|engine| engine.name() == name)
    }
}

impl std::fmt::Display for GenEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why [`ENGINE_ENV`] could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{ENGINE_ENV}={value}: expected xdp-live, af-packet or auto")]
pub struct EngineChoiceError {
    /// The value found.
    pub value: String,
}

/// The engine [`ENGINE_ENV`] forces, or `None` for `auto` (or unset: probe the kernel).
///
/// # Errors
/// [`EngineChoiceError`] for any other value.
pub fn forced_by_env() -> Result<Option<GenEngine>, EngineChoiceError> {
    match std::env::var(ENGINE_ENV) {
        Ok(value) => parse_choice(&value),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(EngineChoiceError {
            value: value.to_string_lossy().into_owned(),
        }),
    }
}

fn parse_choice(value: &str) -> Result<Option<GenEngine>, EngineChoiceError> {
    let value = value.trim();
    if value.is_empty() || value == "auto" {
        return Ok(None);
    }
    GenEngine::from_name(value)
        .map(Some)
        .ok_or_else(|| EngineChoiceError {
            value: value.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_by_name() {
        assert_eq!(
            parse_choice("xdp-live").ok(),
            Some(Some(GenEngine::XdpLive))
        );
        assert_eq!(
            parse_choice(" af-packet\n").ok(),
            Some(Some(GenEngine::AfPacket))
        );
        assert_eq!(parse_choice("auto").ok(), Some(None));
        assert_eq!(parse_choice("").ok(), Some(None));
        assert_eq!(
            parse_choice("af_packet").map_err(|e| e.value),
            Err("af_packet".to_owned())
        );
        for engine in GenEngine::ALL {
            assert_eq!(GenEngine::from_name(engine.name()), Some(engine));
        }
    }
}
