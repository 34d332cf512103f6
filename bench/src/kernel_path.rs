//! The kernel-path references of the benchmark: the kernel's own stack delivers the inner
//! UDP of the generated traffic to an ordinary UDP socket in the receiver namespace.
//!
//! - [`TcDecapPath`]: this kernel has no GRE device (`ip link add .. type gre` fails with
//!   "Unknown device type") and cannot load modules, so `sluice_tc_decap`, a tc-ingress
//!   program (TCX link) on the receiver's veth, strips the outer IPv4/IPv6 + GRE headers,
//!   keeps the Ethernet header with the inner EtherType, and lets the stack deliver the
//!   inner packet. This flatters the kernel: one stack pass, where a GRE device makes two.
//! - [`VxlanPath`]: the built-in VXLAN device (`vx0`, UDP 4789, local = the receiver's
//!   veth IPv4 address, MAC [`VXLAN_DEV_MAC`]), the same receive shape as a kernel GRE
//!   device: outer UDP delivery, decapsulation, a second pass for the inner packet. Use it
//!   with [`crate::generator::Encap::Vxlan`] and IPv4 tunnels ending at 198.51.100.2.
//!
//! Both attach `sluice_pass` (XDP_PASS) on the receiver's veth, because live frames are
//! lost on a veth without NAPI, and both give the receiver the mix's inner destination
//! addresses (192.0.2.1 and 2001:db8:c0::1 by default) with reverse-path filtering off.
//! Dropping a path detaches its programs; the namespace's deletion removes the rest.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{SchedClassifier, TcAttachType},
};

use crate::count_drop::{XdpAttachError, attach_xdp, program_error};
use crate::generator::mix::{INNER_DST_V4, INNER_DST_V6, VXLAN_DEV_MAC};
use crate::lab::{BenchLab, LabError, Side};

/// Name of the VXLAN device [`VxlanPath`] creates in the receiver namespace.
pub const VXLAN_DEVICE: &str = "vx0";

/// Why a kernel path could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KernelPathError {
    /// Loading or attaching a program failed.
    #[error(transparent)]
    Attach(#[from] XdpAttachError),
    /// A command or namespace operation failed.
    #[error(transparent)]
    Lab(#[from] LabError),
}

/// Counters of `sluice_tc_decap`, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecapCounts {
    /// GRE packets decapsulated and passed on.
    pub decapsulated: u64,
    /// Packets that were not GRE v0 carrying IP, passed on untouched.
    pub passed: u64,
    /// GRE packets whose decapsulation failed (passed on untouched).
    pub failed: u64,
}

/// `sluice_tc_decap` at tc ingress of the receiver's veth (see the module docs).
pub struct TcDecapPath {
    xdp: Ebpf,
    tc: Ebpf,
}

impl std::fmt::Debug for TcDecapPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcDecapPath").finish_non_exhaustive()
    }
}

impl TcDecapPath {
    /// Attaches `sluice_pass` (XDP) and `sluice_tc_decap` (tc ingress) to the receiver's
    /// veth and adds the inner destination addresses `inner_dsts` to the receiver's
    /// loopback (pass `&[]` for the defaults, 192.0.2.1 and 2001:db8:c0::1).
    ///
    /// # Errors
    /// [`KernelPathError`].
    pub fn attach(lab: &BenchLab, inner_dsts: &[IpAddr]) -> Result<Self, KernelPathError> {
        prepare_receiver(lab, "lo", inner_dsts)?;
        let xdp = attach_xdp(lab, "sluice_pass")?;
        let interface = lab.interface(Side::Receiver).to_owned();
        let tc = lab
            .netns(Side::Receiver)
            .run_in(move || -> Result<Ebpf, XdpAttachError> {
                let mut ebpf = Ebpf::load(crate::EBPF_OBJECT).map_err(XdpAttachError::Load)?;
                let program: &mut SchedClassifier = ebpf
                    .program_mut("sluice_tc_decap")
                    .ok_or_else(|| program_error("program", "sluice_tc_decap not in the object"))?
                    .try_into()
                    .map_err(|e| program_error("program", e))?;
                program.load().map_err(|e| {
                    program_error("program (verifier)", format!("sluice_tc_decap: {e}"))
                })?;
                program
                    .attach(&interface, TcAttachType::Ingress)
                    .map_err(|e| {
                        program_error("attach", format!("sluice_tc_decap on {interface}: {e}"))
                    })?;
                Ok(ebpf)
            })
            .map_err(LabError::from)??;
        Ok(Self { xdp, tc })
    }

    /// The decapsulation counters.
    ///
    /// # Errors
    /// [`XdpAttachError::Program`] when the map cannot be read.
    pub fn counts(&self) -> Result<DecapCounts, XdpAttachError> {
        let map = self
            .tc
            .map("TC_DECAP_STATS")
            .ok_or_else(|| program_error("map TC_DECAP_STATS", "not in the object"))?;
        let counters: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| program_error("map TC_DECAP_STATS", e))?;
        let read = |index: u32| -> Result<u64, XdpAttachError> {
            let values = counters
                .get(&index, 0)
                .map_err(|e| program_error("map TC_DECAP_STATS", e))?;
            Ok(values.iter().sum())
        };
        Ok(DecapCounts {
            decapsulated: read(0)?,
            passed: read(1)?,
            failed: read(2)?,
        })
    }

    /// The XDP object holding `sluice_pass` (kept so the veth keeps NAPI).
    pub fn xdp(&self) -> &Ebpf {
        &self.xdp
    }
}

/// The kernel's VXLAN device in the receiver namespace (see the module docs).
pub struct VxlanPath {
    xdp: Ebpf,
    vni: u32,
}

impl std::fmt::Debug for VxlanPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VxlanPath")
            .field("vni", &self.vni)
            .finish_non_exhaustive()
    }
}

impl VxlanPath {
    /// Creates [`VXLAN_DEVICE`] (`id vni dstport 4789 local 198.51.100.2 dev <veth>`, MAC
    /// [`VXLAN_DEV_MAC`], learning off), gives it the inner destination addresses
    /// (`&[]`: 192.0.2.1, 2001:db8:c0::1) and attaches `sluice_pass` to the veth.
    ///
    /// # Errors
    /// [`KernelPathError`].
    pub fn create(
        lab: &BenchLab,
        vni: u32,
        inner_dsts: &[IpAddr],
    ) -> Result<Self, KernelPathError> {
        let veth = lab.interface(Side::Receiver);
        let local = lab.addr_v4(Side::Receiver).to_string();
        let vni_text = vni.to_string();
        let mac = sluice_testkit::netns::format_mac(&VXLAN_DEV_MAC);
        lab.exec(
            Side::Receiver,
            "ip",
            &[
                "link",
                "add",
                VXLAN_DEVICE,
                "address",
                &mac,
                "type",
                "vxlan",
                "id",
                &vni_text,
                "dstport",
                "4789",
                "local",
                &local,
                "dev",
                veth,
                "nolearning",
            ],
        )?;
        lab.exec(Side::Receiver, "ip", &["link", "set", VXLAN_DEVICE, "up"])?;
        prepare_receiver(lab, VXLAN_DEVICE, inner_dsts)?;
        let xdp = attach_xdp(lab, "sluice_pass")?;
        Ok(Self { xdp, vni })
    }

    /// The VNI the device accepts.
    pub fn vni(&self) -> u32 {
        self.vni
    }

    /// The XDP object holding `sluice_pass` (kept so the veth keeps NAPI).
    pub fn xdp(&self) -> &Ebpf {
        &self.xdp
    }
}

/// Adds the inner destinations to `device` in the receiver namespace and turns off
/// reverse-path filtering there (the inner sources have no route back).
fn prepare_receiver(lab: &BenchLab, device: &str, inner_dsts: &[IpAddr]) -> Result<(), LabError> {
    let defaults = [IpAddr::V4(INNER_DST_V4), IpAddr::V6(INNER_DST_V6)];
    let addrs = if inner_dsts.is_empty() {
        &defaults[..]
    } else {
        inner_dsts
    };
    let receiver = lab.netns(Side::Receiver);
    for key in ["all", "default", device, lab.interface(Side::Receiver)] {
        receiver.sysctl(&format!("net/ipv4/conf/{key}/rp_filter"), "0")?;
    }
    for addr in addrs {
        let with_prefix = match addr {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        };
        let mut args = vec!["addr", "add", &with_prefix, "dev", device];
        if addr.is_ipv6() {
            args.push("nodad");
        }
        lab.exec(Side::Receiver, "ip", &args)?;
    }
    Ok(())
}

/// Binds a UDP socket to `addr` inside the receiver namespace, with `rcvbuf` bytes of
/// receive buffer asked for (SO_RCVBUFFORCE, falling back to SO_RCVBUF, which the kernel
/// caps at net.core.rmem_max) — for tests and the harness's own counters.
///
/// # Errors
/// [`LabError`] when the namespace cannot be entered, or the socket error.
pub fn bind_udp_in_receiver(
    lab: &BenchLab,
    addr: SocketAddr,
    rcvbuf: usize,
) -> Result<std::io::Result<UdpSocket>, LabError> {
    lab.netns(Side::Receiver)
        .run_in(move || {
            let socket = UdpSocket::bind(addr)?;
            set_rcvbuf(&socket, rcvbuf);
            Ok(socket)
        })
        .map_err(LabError::from)
}

fn set_rcvbuf(socket: &UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd as _;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: valid socket fd and a c_int option value.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}
