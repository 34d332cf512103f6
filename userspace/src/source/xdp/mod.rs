//! The kernel-bypass source: the XDP program (loaded from the object embedded at build
//! time) steers our packets into one AF_XDP socket per configured queue, and one receive
//! thread per socket copies frames out to the workers.
//!
//! Start order matters: the kernel is checked first ([`crate::kernel`]), maps are filled
//! and sockets registered in the XSKMAP, the loaded program is proven on synthetic frames
//! ([`selftest`]) and its counters zeroed, and only then is it attached, so no packet of
//! ours ever meets a missing socket and no start ends in an appliance that records
//! nothing. Stop order too: detach first, then drain the rings, then read the counters.

mod bpf_log;
pub mod capabilities;
pub mod geometry;
pub mod missed;
pub mod receive;
pub mod selftest;

use std::os::fd::AsRawFd as _;

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray, PerCpuValues, XskMap},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use sluice_common::{SETTINGS_ALL_PORTS, SETTINGS_STEER_PLAIN_UDP, Settings, VERDICT_COUNT, names};
use sluice_xsk::{BindMode, XskConfig, XskSocket};

use geometry::Geometry;

use crate::{
    config::{SourceConfig, XdpAttachMode, XskBindMode},
    decap::PortFilter,
    kernel::{self, UnsupportedKernel},
    metrics::LinkModes,
};

/// The eBPF object built from ebpf/sluice-ebpf by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sluice"));

/// Packets a busy-polling socket may process per poll (`SO_BUSY_POLL_BUDGET`).
const BUSY_POLL_BUDGET: u32 = 64;

/// Why the XDP source could not start.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The kernel is older than the minimum.
    #[error(transparent)]
    Kernel(#[from] UnsupportedKernel),
    /// The loaded program failed the start-up self-test.
    #[error(transparent)]
    SelfTest(#[from] selftest::SelfTestError),
    /// A capability is missing.
    #[error(transparent)]
    Capability(#[from] capabilities::MissingCapability),
    /// The interface does not exist.
    #[error("source.interface {0:?}: no such interface")]
    NoInterface(String),
    /// The interface's MTU could not be read.
    #[error("source.interface {interface:?}: cannot read its MTU: {source}")]
    Mtu {
        /// Interface.
        interface: String,
        /// The error.
        source: std::io::Error,
    },
    /// No UMEM geometry fits the interface.
    #[error(transparent)]
    Geometry(#[from] geometry::GeometryError),
    /// The object could not be loaded.
    #[error("cannot load the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    /// The program or a map is missing from the object, or the verifier refused it.
    #[error("eBPF {what}: {message}")]
    Program {
        /// Which part.
        what: &'static str,
        /// The error.
        message: String,
    },
    /// Attaching failed in every allowed mode.
    #[error("cannot attach XDP to {interface} ({mode}): {message}")]
    Attach {
        /// Interface.
        interface: String,
        /// Mode(s) tried.
        mode: &'static str,
        /// The error.
        message: String,
    },
    /// An AF_XDP socket could not be opened.
    #[error("AF_XDP socket on {interface} queue {queue}: {source}")]
    Socket {
        /// Interface.
        interface: String,
        /// Queue.
        queue: u32,
        /// The error.
        source: sluice_xsk::XskError,
    },
}

fn program_err(what: &'static str) -> impl FnOnce(String) -> XdpError {
    move |message| XdpError::Program { what, message }
}

/// The per-CPU verdict counters, readable from any thread (the metrics endpoint) for as
/// long as anyone holds them, detached or not.
pub struct VerdictCounters {
    map: std::sync::Mutex<PerCpuArray<aya::maps::MapData, u64>>,
}

impl std::fmt::Debug for VerdictCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerdictCounters")
    }
}

impl VerdictCounters {
    /// The counters summed over CPUs, by `Verdict` index.
    pub fn read(&self) -> Result<Vec<u64>, XdpError> {
        let map = self
            .map
            .lock()
            .map_err(|_| program_err("verdict map")("lock poisoned".into()))?;
        (0..VERDICT_COUNT)
            .map(|i| {
                map.get(&i, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .map_err(|e| program_err("verdict map")(e.to_string()))
            })
            .collect()
    }

    /// Sets every counter on every CPU back to zero (after the self-test's runs).
    fn reset(&self) -> Result<(), XdpError> {
        let cpus = aya::util::nr_cpus()
            .map_err(|(what, e)| program_err("verdict map")(format!("{what}: {e}")))?;
        let mut map = self
            .map
            .lock()
            .map_err(|_| program_err("verdict map")("lock poisoned".into()))?;
        for i in 0..VERDICT_COUNT {
            let zeros = PerCpuValues::try_from(vec![0u64; cpus])
                .map_err(|e| program_err("verdict map")(e.to_string()))?;
            map.set(i, zeros, 0)
                .map_err(|e| program_err("verdict map")(e.to_string()))?;
        }
        Ok(())
    }
}

/// The loaded (and, once [`XdpProgram::attach`] ran, attached) program and its maps.
pub struct XdpProgram {
    ebpf: Ebpf,
    /// Forwards the program's rare-event lines; `None` when they cannot be read.
    _program_log: Option<bpf_log::ProgramLog>,
    interface: String,
    geometry: Geometry,
    link: Option<XdpLinkId>,
    mode: &'static str,
    verdicts: std::sync::Arc<VerdictCounters>,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("interface", &self.interface)
            .field("attached", &self.link.is_some())
            .field("mode", &self.mode)
            .finish()
    }
}

/// The interface index of `name`.
pub fn if_index(name: &str) -> Result<u32, XdpError> {
    let c = std::ffi::CString::new(name).map_err(|_| XdpError::NoInterface(name.to_owned()))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(XdpError::NoInterface(name.to_owned()))
    } else {
        Ok(index)
    }
}

impl XdpProgram {
    /// Checks capabilities, loads the object, fills the settings and port maps.
    pub fn load(source: &SourceConfig, filter: &PortFilter) -> Result<Self, XdpError> {
        kernel::check(&kernel::release())?;
        // Capabilities first, before the interface is touched (the UMEM's exact size waits
        // for the MTU; its bound does not).
        capabilities::check(
            capabilities::effective(),
            geometry::umem_bytes_at_most(source) * source.queues.len() as u64,
            capabilities::memlock_limit(),
        )?;
        if_index(&source.interface)?;
        let mtu = geometry::interface_mtu(&source.interface).map_err(|error| XdpError::Mtu {
            interface: source.interface.clone(),
            source: error,
        })?;
        let geometry = geometry::resolve(source, mtu)?;
        let mut ebpf = Ebpf::load(EBPF_OBJECT).map_err(XdpError::Load)?;

        let mut flags = 0;
        if filter.all_ports() {
            flags |= SETTINGS_ALL_PORTS;
        }
        if filter.plain_udp() {
            flags |= SETTINGS_STEER_PLAIN_UDP;
        }
        let map = ebpf
            .map_mut(names::SETTINGS)
            .ok_or_else(|| program_err("map")(names::SETTINGS.into()))?;
        let mut settings: Array<_, Settings> =
            Array::try_from(map).map_err(|e| program_err("settings map")(e.to_string()))?;
        settings
            .set(0, Settings { flags, reserved: 0 }, 0)
            .map_err(|e| program_err("settings map")(e.to_string()))?;

        let map = ebpf
            .map_mut(names::PORT_BITMAP)
            .ok_or_else(|| program_err("map")(names::PORT_BITMAP.into()))?;
        let mut ports: Array<_, u64> =
            Array::try_from(map).map_err(|e| program_err("port map")(e.to_string()))?;
        for (index, word) in filter.words().iter().enumerate() {
            if *word != 0 {
                ports
                    .set(index as u32, *word, 0)
                    .map_err(|e| program_err("port map")(e.to_string()))?;
            }
        }

        let program: &mut Xdp = ebpf
            .program_mut(names::PROGRAM)
            .ok_or_else(|| program_err("program")(format!("{} not in object", names::PROGRAM)))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| program_err("program")(e.to_string()))?;
        program
            .load()
            .map_err(|e| program_err("verifier")(error_with_sources(&e)))?;
        let map = ebpf
            .take_map(names::VERDICT_COUNTERS)
            .ok_or_else(|| program_err("map")(names::VERDICT_COUNTERS.into()))?;
        let counters =
            PerCpuArray::try_from(map).map_err(|e| program_err("verdict map")(e.to_string()))?;
        let program_log = bpf_log::ProgramLog::start(&mut ebpf);
        Ok(Self {
            ebpf,
            _program_log: program_log,
            interface: source.interface.clone(),
            geometry,
            link: None,
            mode: "none",
            verdicts: std::sync::Arc::new(VerdictCounters {
                map: std::sync::Mutex::new(counters),
            }),
        })
    }

    /// The UMEM and ring sizes the sockets get (chosen at [`XdpProgram::load`]).
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Opens one AF_XDP socket per configured queue and registers it in the XSKMAP.
    /// With `busy_poll_usecs`, each socket also busy-polls its queue (see the config).
    pub fn open_sockets(&mut self, source: &SourceConfig) -> Result<Vec<XskSocket>, XdpError> {
        let ifindex = if_index(&source.interface)?;
        let geometry = self.geometry;
        let config = XskConfig {
            frame_count: geometry.frame_count,
            frame_size: geometry.frame_size,
            ring_size: geometry.ring_size,
            bind_mode: match source.bind_mode {
                XskBindMode::Auto => BindMode::Auto,
                XskBindMode::Copy => BindMode::Copy,
                XskBindMode::ZeroCopy => BindMode::ZeroCopy,
            },
            need_wakeup: true,
        };
        let map = self
            .ebpf
            .map_mut(names::XSK_MAP)
            .ok_or_else(|| program_err("map")(names::XSK_MAP.into()))?;
        let mut xsks = XskMap::try_from(map).map_err(|e| program_err("xsk map")(e.to_string()))?;
        let mut sockets = Vec::with_capacity(source.queues.len());
        for queue in &source.queues {
            let socket =
                XskSocket::open(ifindex, *queue, &config).map_err(|e| XdpError::Socket {
                    interface: source.interface.clone(),
                    queue: *queue,
                    source: e,
                })?;
            xsks.set(*queue, socket.as_raw_fd(), 0)
                .map_err(|e| program_err("xsk map")(e.to_string()))?;
            if source.busy_poll_usecs > 0 {
                // Best effort: without it the receive loop still spins on the ring.
                if let Err(e) = socket.set_busy_poll(source.busy_poll_usecs, BUSY_POLL_BUDGET) {
                    tracing::warn!(queue, error = %e, "busy polling not enabled on the socket");
                }
            }
            tracing::info!(
                queue,
                mode = ?socket.bound_mode(),
                frame_size = geometry.frame_size,
                umem_frames = geometry.frame_count,
                ring_size = geometry.ring_size,
                busy_poll_usecs = source.busy_poll_usecs,
                "AF_XDP socket bound"
            );
            sockets.push(socket);
        }
        Ok(sockets)
    }

    /// Proves on the live kernel that the loaded program, with the maps as filled and the
    /// sockets as registered, steers what the pipeline expects on every configured queue
    /// (see [`selftest`]); then zeroes the verdict counters the test runs moved. Run after
    /// [`XdpProgram::open_sockets`], before [`XdpProgram::attach`].
    pub fn self_test(&self, source: &SourceConfig, filter: &PortFilter) -> Result<(), XdpError> {
        let ifindex = if_index(&source.interface)?;
        let program: &Xdp = self
            .ebpf
            .program(names::PROGRAM)
            .ok_or_else(|| program_err("program")(names::PROGRAM.into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| program_err("program")(e.to_string()))?;
        let verdicts = || self.verdicts.read().unwrap_or_default();
        selftest::run(
            program,
            &source.interface,
            ifindex,
            &source.queues,
            filter,
            &kernel::release(),
            verdicts,
        )?;
        self.verdicts.reset()?;
        tracing::info!(
            interface = %source.interface,
            queues = ?source.queues,
            "start-up self-test passed: the program steers GRE/UDP to our sockets and passes the rest"
        );
        Ok(())
    }

    /// Attaches the program in the configured mode (native, falling back to generic in `auto`).
    pub fn attach(&mut self, mode: XdpAttachMode) -> Result<(), XdpError> {
        let interface = self.interface.clone();
        let program: &mut Xdp = self
            .ebpf
            .program_mut(names::PROGRAM)
            .ok_or_else(|| program_err("program")(names::PROGRAM.into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| program_err("program")(e.to_string()))?;
        let attach_err = |mode: &'static str, e: aya::programs::ProgramError| XdpError::Attach {
            interface: interface.clone(),
            mode,
            message: error_with_sources(&e),
        };
        let (link, used) = match mode {
            XdpAttachMode::Native => (
                program
                    .attach(&interface, XdpMode::Driver)
                    .map_err(|e| attach_err("native", e))?,
                "native",
            ),
            XdpAttachMode::Generic => (
                program
                    .attach(&interface, XdpMode::Skb)
                    .map_err(|e| attach_err("generic", e))?,
                "generic",
            ),
            XdpAttachMode::Auto => match program.attach(&interface, XdpMode::Driver) {
                Ok(link) => (link, "native"),
                Err(e) => {
                    tracing::warn!(interface, error = %error_with_sources(&e), "native XDP unavailable, falling back to generic mode (slower; alert SluiceXdpGenericFallback)");
                    (
                        program
                            .attach(&interface, XdpMode::Skb)
                            .map_err(|e| attach_err("native, then generic", e))?,
                        "generic",
                    )
                }
            },
        };
        self.link = Some(link);
        self.mode = used;
        tracing::info!(interface, mode = used, "XDP program attached");
        Ok(())
    }

    /// The attach mode in use (`native` or `generic`).
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// The attach mode and each socket's bind mode, with what the config asked for.
    pub fn link_modes(&self, source: &SourceConfig, sockets: &[(u32, BindMode)]) -> LinkModes {
        let requested_bind = match source.bind_mode {
            XskBindMode::Auto => "auto",
            XskBindMode::Copy => "copy",
            XskBindMode::ZeroCopy => "zero_copy",
        };
        let requested_xdp = match source.xdp_mode {
            XdpAttachMode::Auto => "auto",
            XdpAttachMode::Native => "native",
            XdpAttachMode::Generic => "generic",
        };
        LinkModes {
            interface: self.interface.clone(),
            xdp: self.link.is_some().then_some((self.mode, requested_xdp)),
            queues: sockets
                .iter()
                .map(|(queue, mode)| {
                    let mode = match mode {
                        BindMode::ZeroCopy => "zero_copy",
                        BindMode::Copy | BindMode::Auto => "copy",
                    };
                    (*queue, mode, requested_bind)
                })
                .collect(),
        }
    }

    /// Detaches the program; packets go to the kernel again. Idempotent.
    pub fn detach(&mut self) {
        let Some(link) = self.link.take() else { return };
        let result = self
            .ebpf
            .program_mut(names::PROGRAM)
            .ok_or_else(|| "program missing".to_owned())
            .and_then(|p| <&mut Xdp>::try_from(p).map_err(|e| e.to_string()))
            .and_then(|p| p.detach(link).map_err(|e| e.to_string()));
        match result {
            Ok(()) => tracing::info!(interface = %self.interface, "XDP program detached"),
            Err(e) => {
                tracing::error!(interface = %self.interface, error = %e, "detaching XDP failed")
            }
        }
    }

    /// The verdict counters, summed over CPUs, by `Verdict` index.
    pub fn verdict_counts(&self) -> Result<Vec<u64>, XdpError> {
        self.verdicts.read()
    }

    /// A shared handle on the verdict counters.
    pub fn verdicts(&self) -> std::sync::Arc<VerdictCounters> {
        std::sync::Arc::clone(&self.verdicts)
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        self.detach();
    }
}

/// The error with its sources, which for a verifier refusal carry the verifier log.
pub(crate) fn error_with_sources(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
