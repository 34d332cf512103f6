//! Socket configuration and its validation.
//!
//! The kernel rejects bad geometry with a bare `EINVAL` somewhere deep in the setup
//! sequence; checking it up front turns that into a precise [`XskError`] variant
//! naming the offending field, before any memory is allocated.

use std::fmt;

use crate::XskError;

/// How to bind the socket to the device queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BindMode {
    /// Try zero-copy, fall back to copy mode when the driver cannot do zero-copy.
    #[default]
    Auto,
    /// Copy mode (`XDP_COPY`): works on every device, including veth.
    Copy,
    /// Zero-copy (`XDP_ZEROCOPY`): fails with `EOPNOTSUPP` if the driver lacks support.
    ZeroCopy,
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindMode::Auto => "auto",
            BindMode::Copy => "copy",
            BindMode::ZeroCopy => "zero-copy",
        })
    }
}

/// Geometry and options of an [`XskSocket`](crate::XskSocket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// Number of UMEM frames; a power of two, e.g. 4096.
    pub frame_count: u32,
    /// UMEM chunk size in bytes: 2048 or 4096.
    pub frame_size: u32,
    /// Size of the fill, completion and RX rings; a power of two not larger than
    /// `frame_count`, e.g. 2048.
    pub ring_size: u32,
    /// How to bind (zero-copy, copy, or try zero-copy first).
    pub bind_mode: BindMode,
    /// Set `XDP_USE_NEED_WAKEUP` at bind, so the kernel only needs a syscall kick when
    /// it says so (saves CPU in zero-copy mode).
    pub need_wakeup: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_count: 4096,
            frame_size: 4096,
            ring_size: 2048,
            bind_mode: BindMode::Auto,
            need_wakeup: true,
        }
    }
}

impl XskConfig {
    /// Checks the geometry: `frame_count` and `ring_size` non-zero powers of two,
    /// `ring_size <= frame_count`, `frame_size` 2048 or 4096.
    pub fn validate(&self) -> Result<(), XskError> {
        if !self.frame_count.is_power_of_two() {
            return Err(XskError::FrameCountNotPowerOfTwo {
                frame_count: self.frame_count,
            });
        }
        if !matches!(self.frame_size, 2048 | 4096) {
            return Err(XskError::InvalidFrameSize {
                frame_size: self.frame_size,
            });
        }
        if !self.ring_size.is_power_of_two() {
            return Err(XskError::RingSizeNotPowerOfTwo {
                ring_size: self.ring_size,
            });
        }
        if self.ring_size > self.frame_count {
            return Err(XskError::RingLargerThanUmem {
                ring_size: self.ring_size,
                frame_count: self.frame_count,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic
mod tests {
    use super::*;

    fn cfg(frame_count: u32, frame_size: u32, ring_size: u32) -> XskConfig {
        XskConfig {
            frame_count,
            frame_size,
            ring_size,
            ..XskConfig::default()
        }
    }

    #[test]
    fn default_is_valid() {
        let c = XskConfig::default();
        assert_eq!(
            (c.frame_count, c.frame_size, c.ring_size),
            (4096, 4096, 2048)
        );
        assert_eq!(c.bind_mode, BindMode::Auto);
        assert!(c.need_wakeup);
        c.validate().unwrap();
    }

    #[test]
    fn accepts_edge_geometries() {
        cfg(1, 2048, 1).validate().unwrap();
        cfg(2048, 2048, 2048).validate().unwrap();
        cfg(1 << 20, 4096, 1 << 14).validate().unwrap();
    }

    #[test]
    fn frame_count_must_be_power_of_two() {
        for bad in [0, 3, 4095, 6000, u32::MAX] {
            assert!(
                matches!(
                    cfg(bad, 4096, 1).validate(),
                    Err(XskError::FrameCountNotPowerOfTwo { frame_count }) if frame_count == bad
                ),
                "frame_count {bad}"
            );
        }
    }

    #[test]
    fn frame_size_must_be_2048_or_4096() {
        for bad in [0, 1024, 3000, 8192, 65536] {
            assert!(
                matches!(
                    cfg(4096, bad, 2048).validate(),
                    Err(XskError::InvalidFrameSize { frame_size }) if frame_size == bad
                ),
                "frame_size {bad}"
            );
        }
    }

    #[test]
    fn ring_size_must_be_power_of_two() {
        for bad in [0, 3, 1000, 2047] {
            assert!(
                matches!(
                    cfg(4096, 4096, bad).validate(),
                    Err(XskError::RingSizeNotPowerOfTwo { ring_size }) if ring_size == bad
                ),
                "ring_size {bad}"
            );
        }
    }

    #[test]
    fn ring_must_not_exceed_umem() {
        assert!(matches!(
            cfg(1024, 2048, 2048).validate(),
            Err(XskError::RingLargerThanUmem {
                ring_size: 2048,
                frame_count: 1024
            })
        ));
    }

    #[test]
    fn error_messages_name_the_field() {
        let msg = cfg(4096, 1000, 2048).validate().unwrap_err().to_string();
        assert!(msg.contains("frame_size 1000"), "{msg}");
    }
}
