//! Ceiling A of the benchmark: an XDP program on the receiver's veth that counts every
//! frame (per CPU) and drops it — the most any XDP-based receiver could do on that core.
//!
//! [`CountDrop::attach`] loads `sluice_count_drop` and attaches it in driver mode inside the
//! receiver namespace; [`CountDrop::counts`] sums the per-CPU counters; dropping the value
//! detaches the program.

use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{Xdp, XdpMode},
};

use crate::lab::{BenchLab, LabError, Side};

/// Why attaching or reading failed.
#[derive(Debug, thiserror::Error)]
pub enum XdpAttachError {
    /// The lab could not be entered.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The embedded object could not be loaded.
    #[error("cannot load the benchmark eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    /// A program or map is missing, the verifier refused the program, or attaching failed.
    #[error("eBPF {what}: {message}")]
    Program {
        /// Which part.
        what: &'static str,
        /// The error.
        message: String,
    },
}

pub(crate) fn program_error(what: &'static str, message: impl std::fmt::Display) -> XdpAttachError {
    XdpAttachError::Program {
        what,
        message: message.to_string(),
    }
}

/// Frames and bytes counted by `sluice_count_drop`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Frames seen (and dropped).
    pub packets: u64,
    /// Their bytes (from the Ethernet header on).
    pub bytes: u64,
}

/// `sluice_count_drop`, attached to the receiver's veth until dropped.
pub struct CountDrop {
    ebpf: Ebpf,
}

impl std::fmt::Debug for CountDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountDrop").finish_non_exhaustive()
    }
}

impl CountDrop {
    /// Loads `sluice_count_drop` and attaches it (driver mode) to the receiver's veth.
    ///
    /// # Errors
    /// [`XdpAttachError`].
    pub fn attach(lab: &BenchLab) -> Result<Self, XdpAttachError> {
        let ebpf = attach_xdp(lab, "sluice_count_drop")?;
        Ok(Self { ebpf })
    }

    /// The counters summed over CPUs.
    ///
    /// # Errors
    /// [`XdpAttachError::Program`] when the map cannot be read.
    pub fn counts(&self) -> Result<DropCounts, XdpAttachError> {
        let map = self
            .ebpf
            .map("COUNT_DROP")
            .ok_or_else(|| program_error("map COUNT_DROP", "not in the object"))?;
        let counters: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| program_error("map COUNT_DROP", e))?;
        let read = |index: u32| -> Result<u64, XdpAttachError> {
            let values = counters
                .get(&index, 0)
                .map_err(|e| program_error("map COUNT_DROP", e))?;
            Ok(values.iter().sum())
        };
        Ok(DropCounts {
            packets: read(0)?,
            bytes: read(1)?,
        })
    }
}

impl CountDrop {
    /// The counters once they stop moving: read every 20 ms until two reads agree, or
    /// `timeout` passed (then the last read). Frames the generator offered may still sit in
    /// the veth ring, or wait for a preempted softirq, right after a run returns.
    ///
    /// # Errors
    /// As [`CountDrop::counts`].
    pub fn counts_settled(
        &self,
        timeout: std::time::Duration,
    ) -> Result<DropCounts, XdpAttachError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = self.counts()?;
        loop {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let now = self.counts()?;
            if now == last || std::time::Instant::now() >= deadline {
                return Ok(now);
            }
            last = now;
        }
    }
}

/// Loads the benchmark object and attaches its XDP program `name` in driver mode to the
/// receiver's veth, from a thread inside the receiver namespace. The returned [`Ebpf`]
/// owns the link: dropping it detaches the program.
pub(crate) fn attach_xdp(lab: &BenchLab, name: &'static str) -> Result<Ebpf, XdpAttachError> {
    let interface = lab.interface(Side::Receiver).to_owned();
    lab.netns(Side::Receiver)
        .run_in(move || {
            let mut ebpf = Ebpf::load(crate::EBPF_OBJECT).map_err(XdpAttachError::Load)?;
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| program_error("program", format!("{name} not in the object")))?
                .try_into()
                .map_err(|e| program_error("program", e))?;
            program
                .load()
                .map_err(|e| program_error("program (verifier)", format!("{name}: {e}")))?;
            program
                .attach(&interface, XdpMode::Driver)
                .map_err(|e| program_error("attach", format!("{name} on {interface}: {e}")))?;
            Ok(ebpf)
        })
        .map_err(LabError::from)?
}
