//! The UMEM and ring sizes of each AF_XDP socket, chosen at start from the config and the
//! interface's MTU rather than assumed.
//!
//! A receive thread that is not scheduled for a few milliseconds (on a small VM it shares
//! two vCPUs with the workers, the kernel's softirq work and everything else) must not
//! cost packets: the fill ring is what the kernel draws from meanwhile. For a given
//! amount of locked memory, 2 KiB frames hold twice the packets of 4 KiB ones, so the
//! default is 64 MiB per socket in the smallest frames that fit the interface's largest
//! frame — 32 768 frames of 2 KiB at MTU ≤ 1770, with 16 384 in the fill ring: 11 ms at
//! 1.5 Mpps — and half the frames in each ring. The kernel keeps 256 bytes of every
//! frame as headroom (`XDP_PACKET_HEADROOM`); a frame larger than the rest is dropped by
//! the kernel (`xsk_rx_dropped`), so an MTU that cannot fit is refused at start instead.

use crate::config::SourceConfig;

/// Bytes of each UMEM frame the kernel keeps before the packet in copy and zero-copy mode.
pub const KERNEL_HEADROOM: u32 = 256;

/// Ethernet header and two VLAN tags: what a frame adds to the interface's MTU.
pub const LINK_OVERHEAD: u32 = 14 + 2 * 4;

/// Default UMEM per socket.
pub const DEFAULT_UMEM_BYTES: u64 = 64 << 20;

/// Sizes of one socket's UMEM and rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per UMEM frame (2048 or 4096).
    pub frame_size: u32,
    /// UMEM frames.
    pub frame_count: u32,
    /// Fill, completion and receive ring entries.
    pub ring_size: u32,
}

impl Geometry {
    /// Bytes of UMEM one socket locks.
    pub fn umem_bytes(&self) -> u64 {
        u64::from(self.frame_size) * u64::from(self.frame_count)
    }

    /// The largest frame (Ethernet header included) a UMEM frame holds.
    pub fn largest_frame(&self) -> u32 {
        self.frame_size - KERNEL_HEADROOM
    }
}

/// Why no geometry fits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct GeometryError {
    /// The config field to change.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

/// The largest MTU whose frames fit a UMEM frame of `frame_size` bytes.
pub fn largest_mtu(frame_size: u32) -> u32 {
    frame_size - KERNEL_HEADROOM - LINK_OVERHEAD
}

/// The most UMEM one socket of `source` can lock, whatever the MTU turns out to be (for
/// the capability check, which runs before the interface is looked at).
pub fn umem_bytes_at_most(source: &SourceConfig) -> u64 {
    match source.umem_frames {
        Some(frames) => u64::from(frames) * u64::from(source.frame_size.unwrap_or(4096)),
        None => DEFAULT_UMEM_BYTES,
    }
}

/// The geometry for `source` on an interface of `mtu`: configured sizes as they are (they
/// passed `Config::validate`), unset ones chosen as the module says.
///
/// # Errors
/// The interface's frames do not fit the frame size (configured or the largest, 4096), or
/// a configured ring is larger than the UMEM chosen for it.
pub fn resolve(source: &SourceConfig, mtu: u32) -> Result<Geometry, GeometryError> {
    let frame_size = match source.frame_size {
        Some(size) => size,
        None if mtu <= largest_mtu(2048) => 2048,
        None => 4096,
    };
    if mtu > largest_mtu(frame_size) {
        return Err(GeometryError {
            field: "source.frame_size",
            reason: format!(
                "interface {} has MTU {mtu}: its frames (up to {} bytes with Ethernet and two \
                 VLAN headers) do not fit a {frame_size}-byte UMEM frame, of which the kernel \
                 keeps {KERNEL_HEADROOM} bytes as headroom; the largest MTU it fits is {}{}",
                source.interface,
                mtu + LINK_OVERHEAD,
                largest_mtu(frame_size),
                if frame_size < 4096 {
                    format!(" (frame_size = 4096 fits up to {})", largest_mtu(4096))
                } else {
                    String::new()
                },
            ),
        });
    }
    let frame_count = source.umem_frames.unwrap_or_else(|| {
        u32::try_from(DEFAULT_UMEM_BYTES / u64::from(frame_size)).unwrap_or(u32::MAX)
    });
    let ring_size = source.ring_size.unwrap_or(frame_count / 2).max(1);
    if ring_size > frame_count {
        return Err(GeometryError {
            field: "source.ring_size",
            reason: format!("{ring_size} must not exceed the UMEM's {frame_count} frames"),
        });
    }
    Ok(Geometry {
        frame_size,
        frame_count,
        ring_size,
    })
}

/// The MTU of `interface` (`SIOCGIFMTU`, in the calling thread's network namespace).
///
/// # Errors
/// The socket or the ioctl failed (e.g. no such interface).
pub fn interface_mtu(interface: &str) -> std::io::Result<u32> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    // SAFETY: plain ifreq, all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = interface.as_bytes();
    if name.len() >= request.ifr_name.len() || name.contains(&0) {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments; the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCGIFMTU reads `ifr_name` and writes `ifr_ifru.ifru_mtu` of the ifreq we own.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU, &mut request) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel wrote the MTU member of the union.
    let mtu = unsafe { request.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(mtu).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(frame_size: Option<u32>, umem: Option<u32>, ring: Option<u32>) -> SourceConfig {
        SourceConfig {
            interface: "eth0".into(),
            frame_size,
            umem_frames: umem,
            ring_size: ring,
            ..SourceConfig::default()
        }
    }

    #[test]
    fn unset_sizes_follow_the_mtu_in_64_mib() {
        let at = |mtu| resolve(&source(None, None, None), mtu);
        let small = Geometry {
            frame_size: 2048,
            frame_count: 32768,
            ring_size: 16384,
        };
        assert_eq!(at(1500), Ok(small));
        assert_eq!(at(1460), Ok(small));
        assert_eq!(at(1770), Ok(small));
        let large = Geometry {
            frame_size: 4096,
            frame_count: 16384,
            ring_size: 8192,
        };
        assert_eq!(at(1771), Ok(large));
        assert_eq!(at(3818), Ok(large));
        assert_eq!(small.umem_bytes(), 64 << 20);
        assert_eq!(large.umem_bytes(), 64 << 20);
        assert_eq!(small.largest_frame(), 1792);
    }

    #[test]
    fn the_capability_check_gets_an_upper_bound() {
        assert_eq!(umem_bytes_at_most(&source(None, None, None)), 64 << 20);
        assert_eq!(umem_bytes_at_most(&source(None, Some(64), None)), 256 << 10);
        assert_eq!(
            umem_bytes_at_most(&source(Some(2048), Some(64), None)),
            128 << 10
        );
    }

    #[test]
    fn configured_sizes_are_kept() {
        assert_eq!(
            resolve(&source(Some(4096), Some(256), Some(128)), 1500),
            Ok(Geometry {
                frame_size: 4096,
                frame_count: 256,
                ring_size: 128
            })
        );
        assert_eq!(
            resolve(&source(None, Some(1024), None), 1500).map(|g| g.ring_size),
            Ok(512)
        );
    }

    #[test]
    fn frames_that_cannot_fit_are_refused_naming_the_field() {
        let jumbo = resolve(&source(None, None, None), 9000).unwrap_err();
        assert_eq!(jumbo.field, "source.frame_size");
        assert!(jumbo.reason.contains("MTU 9000"), "{}", jumbo.reason);
        assert!(jumbo.reason.contains("3818"), "{}", jumbo.reason);
        let small = resolve(&source(Some(2048), None, None), 1800).unwrap_err();
        assert!(
            small.reason.contains("frame_size = 4096 fits up to 3818"),
            "{}",
            small.reason
        );
        let ring = resolve(&source(Some(4096), None, Some(32768)), 1500).unwrap_err();
        assert_eq!(ring.field, "source.ring_size");
    }

    #[test]
    fn the_mtu_of_loopback_is_read() {
        let mtu = interface_mtu("lo").unwrap();
        assert!(mtu >= 1280, "{mtu}");
        assert!(interface_mtu("sl-no-such-if").is_err());
    }
}
