//! The receiving side of one row: what is set up once per row (the kernel path's tc
//! program or VXLAN device) and what is started fresh for every step (count-and-drop, the
//! AF_XDP counter, a `sluice run`), so every step's counters start at zero.
//!
//! [`RowReceiver::start_step`] returns a [`StepReceiver`] that is receiving;
//! [`StepReceiver::finish`] stops it and fills in what it saw. Dropping either undoes what
//! it set up (programs detached, daemon stopped by PID).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::count_drop::CountDrop;
use crate::generator::{Encap, PayloadKind, TrafficMix};
use crate::kernel_path::{TcDecapPath, VxlanPath};
use crate::lab::BenchLab;

use super::afxdp_count::AfXdpCounter;
use super::daemon_config::{DaemonConfig, SinkChoice, SourceChoice};
use super::daemon_run::DaemonRun;
use super::measurement::{Measurement, Pipeline, Receiver};
use super::plan::{AcmeEvents, GRE_KEY, Plan, RAW_PORT, SCHEMA_PORT, VXLAN_VNI};

/// Why a receiver could not be set up, started or read.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Ceiling A.
    #[error("count-and-drop: {0}")]
    CountDrop(#[from] crate::count_drop::XdpAttachError),
    /// Ceiling B.
    #[error(transparent)]
    AfXdp(#[from] super::afxdp_count::AfXdpCountError),
    /// The kernel path's set-up.
    #[error("kernel path: {0}")]
    KernelPath(#[from] crate::kernel_path::KernelPathError),
    /// The daemon.
    #[error("sluice: {0}")]
    Daemon(#[from] super::daemon_run::DaemonRunError),
}

/// The traffic each row is offered: one GRE tunnel with a key (VXLAN for the VXLAN row),
/// raw payloads of `payload_len` bytes, or the schema decoder's example event (the
/// ACME-SENSOR v2 event, which the lua rows' script parses too), repeated or as a series
/// (`acme_events`), on [`SCHEMA_PORT`].
pub fn traffic_for(receiver: &Receiver, payload_len: usize, acme_events: AcmeEvents) -> TrafficMix {
    let (kind, port) = match receiver.pipeline().map(|p| p.decoder) {
        Some(decoder) if decoder.reads_acme_sensor() => (acme_events.payload(), SCHEMA_PORT),
        _ => (PayloadKind::Raw { len: payload_len }, RAW_PORT),
    };
    let encap = match receiver {
        Receiver::KernelVxlan(_) => Encap::Vxlan { vni: VXLAN_VNI },
        _ => Encap::Gre,
    };
    TrafficMix::single(encap, Some(GRE_KEY), kind, port)
}

/// What a row keeps for all its steps.
#[derive(Debug)]
pub enum RowReceiver {
    /// Nothing to keep: the step attaches its own program or starts the daemon.
    Fresh,
    /// The tc-ingress decapsulation (and its XDP_PASS for NAPI).
    Tc(TcDecapPath),
    /// The VXLAN device (and its XDP_PASS for NAPI).
    Vxlan(VxlanPath),
}

/// A receiver that is receiving for one step.
#[derive(Debug)]
pub enum StepReceiver {
    /// Ceiling A.
    CountDrop(CountDrop),
    /// Ceiling B.
    AfXdp(AfXdpCounter),
    /// `sluice run`, XDP or UDP source.
    Daemon {
        /// The daemon.
        run: DaemonRun,
        /// True for the UDP source (no XDP counter on the path).
        udp: bool,
    },
}

/// Paths a row's daemons use.
#[derive(Clone, Debug)]
pub struct DaemonPaths {
    /// The release binary.
    pub binary: PathBuf,
    /// Config, log and stats files.
    pub work: PathBuf,
    /// Parent of the record directories (a disk, or tmpfs for the `(tmpfs)` rows).
    pub records_root: PathBuf,
}

fn daemon_config(plan: &Plan, pipeline: Pipeline, source: SourceChoice) -> DaemonConfig {
    DaemonConfig {
        source,
        pipeline,
        ports: vec![RAW_PORT, SCHEMA_PORT],
        schema_ports: vec![SCHEMA_PORT],
        workers: plan.workers,
        queue_depth: plan.queue_depth,
        busy_poll_usecs: plan.busy_poll_usecs,
        worker_scheduling: plan.worker_scheduling.clone(),
        sink: SinkChoice::Directory,
    }
}

/// The UDP source's listening addresses: both inner ports on every address (the inner
/// destination lives on the receiver's loopback or VXLAN device).
fn udp_listen() -> Vec<SocketAddr> {
    [RAW_PORT, SCHEMA_PORT]
        .into_iter()
        .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
        .collect()
}

impl RowReceiver {
    /// Sets up what the row keeps.
    ///
    /// # Errors
    /// [`SessionError::KernelPath`].
    pub fn prepare(receiver: &Receiver, lab: &BenchLab) -> Result<RowReceiver, SessionError> {
        Ok(match receiver {
            Receiver::KernelTc(_) => RowReceiver::Tc(TcDecapPath::attach(lab, &[])?),
            Receiver::KernelVxlan(_) => RowReceiver::Vxlan(VxlanPath::create(lab, VXLAN_VNI, &[])?),
            _ => RowReceiver::Fresh,
        })
    }

    /// Starts the receiver of one step; returns once it is receiving.
    ///
    /// # Errors
    /// [`SessionError`] from the attach or the daemon's start (with its log).
    pub fn start_step(
        &self,
        receiver: &Receiver,
        lab: &BenchLab,
        plan: &Plan,
        paths: &DaemonPaths,
        name: &str,
    ) -> Result<StepReceiver, SessionError> {
        let daemon =
            |pipeline: Pipeline, source: SourceChoice| -> Result<DaemonRun, SessionError> {
                let config = daemon_config(plan, pipeline, source);
                Ok(DaemonRun::start(
                    &paths.binary,
                    lab.receiver(),
                    &paths.work,
                    &paths.records_root,
                    name,
                    &config,
                )?)
            };
        Ok(match receiver {
            Receiver::CountDrop => StepReceiver::CountDrop(CountDrop::attach(lab)?),
            Receiver::AfXdpCount => {
                StepReceiver::AfXdp(AfXdpCounter::start(lab, &[RAW_PORT, SCHEMA_PORT])?)
            }
            Receiver::Sluice(pipeline) | Receiver::SluiceTmpfs(pipeline) => StepReceiver::Daemon {
                run: daemon(
                    *pipeline,
                    SourceChoice::Xdp {
                        interface: lab.receiver_if().to_owned(),
                    },
                )?,
                udp: false,
            },
            Receiver::KernelTc(pipeline) | Receiver::KernelVxlan(pipeline) => {
                StepReceiver::Daemon {
                    run: daemon(
                        *pipeline,
                        SourceChoice::Udp {
                            listen: udp_listen(),
                            recv_buffer_bytes: 64 << 20,
                        },
                    )?,
                    udp: true,
                }
            }
        })
    }
}

impl StepReceiver {
    /// Called when traffic starts (the daemon's CPU clock starts here).
    pub fn traffic_starts(&mut self) {
        if let StepReceiver::Daemon { run, .. } = self {
            run.mark_traffic_start();
        }
    }

    /// The daemon's PID, if this step runs one.
    pub fn daemon_pid(&self) -> Option<u32> {
        match self {
            StepReceiver::Daemon { run, .. } => run.pid(),
            _ => None,
        }
    }

    /// Stops the receiver and fills `m`'s receiver side: seen by XDP, received, handled,
    /// drops, process CPU, peak RSS and the daemon's account.
    ///
    /// # Errors
    /// [`SessionError`] when the counters cannot be read or the daemon left no stats.
    pub fn finish(self, m: &mut Measurement) -> Result<(), SessionError> {
        match self {
            StepReceiver::CountDrop(program) => {
                let counts = program.counts()?;
                drop(program);
                m.seen_by_xdp = Some(counts.packets);
                m.handled = counts.packets;
            }
            StepReceiver::AfXdp(counter) => {
                let counts = counter.stop()?;
                m.seen_by_xdp = Some(counts.redirected);
                m.received = Some(counts.received);
                m.handled = counts.received;
                m.dropped.insert("ring_full".into(), counts.ring_full);
                m.dropped.insert("xsk_rx_dropped".into(), counts.rx_dropped);
                let unaccounted = counts
                    .redirected
                    .saturating_sub(counts.received + counts.ring_full + counts.rx_dropped);
                m.dropped.insert("redirect_error".into(), unaccounted);
                m.process_cpu_seconds = Some(counts.thread_cpu_seconds);
            }
            StepReceiver::Daemon { run, udp } => {
                let result = run.stop()?;
                let stats = &result.stats;
                let reason = |name: &str| stats.dropped.get(name).copied().unwrap_or(0);
                if udp {
                    m.seen_by_xdp = None;
                    m.received = Some(stats.seen.saturating_sub(reason("socket_overflow")));
                } else {
                    m.seen_by_xdp = Some(stats.seen);
                    m.received = Some(stats.seen.saturating_sub(
                        reason("ring_full") + reason("xsk_rx_dropped") + reason("redirect_error"),
                    ));
                }
                m.handled = stats.recorded;
                for (name, count) in &stats.dropped {
                    if *count > 0 {
                        m.dropped.insert(name.clone(), *count);
                    }
                }
                m.process_cpu_seconds = result.cpu_seconds;
                m.thread_cpu = result.thread_cpu;
                m.peak_rss_kib = result.peak_rss_kib;
                m.accounting = Some(result.accounting);
            }
        }
        Ok(())
    }
}

/// A directory for a row's daemon files inside `work`.
pub fn row_work_dir(work: &Path, index: usize) -> PathBuf {
    work.join(format!("row{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::measurement::{DecoderChoice, FormatChoice};

    fn offered(receiver: &Receiver) -> (Encap, PayloadKind, u16) {
        let mix = traffic_for(receiver, 18, AcmeEvents::Repeated);
        assert_eq!(mix.payloads.len(), 1);
        (
            mix.encap,
            mix.payloads[0].kind.clone(),
            mix.payloads[0].dst_port,
        )
    }

    #[test]
    fn the_schema_and_lua_rows_are_offered_the_acme_sensor_event_on_the_schema_port() {
        let sluice = |decoder| {
            Receiver::Sluice(Pipeline {
                decoder,
                format: FormatChoice::Parquet,
            })
        };
        for decoder in [DecoderChoice::Schema, DecoderChoice::Lua] {
            assert_eq!(
                offered(&sluice(decoder)),
                (Encap::Gre, PayloadKind::Schema, SCHEMA_PORT),
                "{decoder:?}"
            );
            let series = traffic_for(&sluice(decoder), 18, AcmeEvents::Series);
            assert_eq!(series.payloads[0].kind, PayloadKind::SchemaSeries);
            let raw = traffic_for(&sluice(DecoderChoice::Raw), 18, AcmeEvents::Series);
            assert_eq!(raw.payloads[0].kind, PayloadKind::Raw { len: 18 });
        }
        assert_eq!(
            offered(&sluice(DecoderChoice::Raw)),
            (Encap::Gre, PayloadKind::Raw { len: 18 }, RAW_PORT)
        );
        assert_eq!(
            offered(&Receiver::KernelVxlan(Pipeline {
                decoder: DecoderChoice::Raw,
                format: FormatChoice::NdjsonZstd,
            })),
            (
                Encap::Vxlan { vni: VXLAN_VNI },
                PayloadKind::Raw { len: 18 },
                RAW_PORT
            )
        );
    }
}
