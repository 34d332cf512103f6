//! The running kernel, and whether Sluice can run on it.
//!
//! Users run Sluice on cloud images whose kernels lag the development host's by years
//! (Debian 12: 6.1, Ubuntu 22.04: 5.15). The XDP source needs two things that older
//! kernels lack, and without them it fails in ways that explain nothing (a bare EPERM from
//! map creation, an EINVAL from the self-test), so the release is checked first and a
//! kernel below [`MINIMUM`] is refused with one line naming it and what it lacks:
//! - BPF memory charged to the memory cgroup (Linux 5.11); before it, every map counts
//!   against RLIMIT_MEMLOCK, which systemd leaves at 64 KiB on those kernels;
//! - `BPF_PROG_TEST_RUN` with an XDP context (`xdp_md`: ingress interface and receive
//!   queue; Linux 5.15), which the start-up self-test needs to prove steering per queue.
//!
//! Everything optional above the minimum (native mode, zero-copy, busy polling) is not
//! judged by version: it is tried at start and the fallback is logged and exported.

/// The oldest kernel Sluice runs on (major, minor).
pub const MINIMUM: (u32, u32) = (5, 15);

/// What a kernel below [`MINIMUM`] lacks, for the refusal.
pub const MISSING_BELOW_MINIMUM: &str = "BPF memory accounting by cgroup (Linux 5.11; before it \
     BPF maps count against RLIMIT_MEMLOCK) and BPF_PROG_TEST_RUN with an XDP context \
     (Linux 5.15; the start-up self-test proves steering with it)";

/// The kernel's release string (`uname -r`), e.g. `6.1.0-27-cloud-amd64`.
pub fn release() -> String {
    // SAFETY: `uname` fills the zeroed struct; on failure it is left zeroed (empty strings).
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is a valid, writable utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return String::from("unknown");
    }
    let bytes: Vec<u8> = name
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `(major, minor)` of a release string such as `5.10.0-32-amd64` or `6.18.44-fc`.
pub fn version_of(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Why this kernel cannot run the XDP source.
#[derive(Debug, thiserror::Error)]
#[error(
    "Linux {release} is not supported: Sluice needs Linux {}.{} or later; this kernel lacks {missing}",
    MINIMUM.0,
    MINIMUM.1
)]
pub struct UnsupportedKernel {
    /// The running kernel's release.
    pub release: String,
    /// What it lacks.
    pub missing: &'static str,
}

/// Refuses a kernel below [`MINIMUM`]; an unparsable release is let through (the probes
/// that follow name whatever is missing).
pub fn check(release: &str) -> Result<(), UnsupportedKernel> {
    match version_of(release) {
        Some(version) if version < MINIMUM => Err(UnsupportedKernel {
            release: release.to_owned(),
            missing: MISSING_BELOW_MINIMUM,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_distribution_release_strings() {
        assert_eq!(version_of("5.10.0-32-amd64"), Some((5, 10)));
        assert_eq!(version_of("6.1.0-27-cloud-amd64"), Some((6, 1)));
        assert_eq!(version_of("5.15.0-1071-gcp"), Some((5, 15)));
        assert_eq!(version_of("6.18.44-fc-v1252"), Some((6, 18)));
        assert_eq!(version_of("6.12"), Some((6, 12)));
        assert_eq!(version_of("weird"), None);
    }

    #[test]
    fn kernels_below_the_minimum_are_refused_by_name() {
        assert!(check("5.15.0-1071-gcp").is_ok());
        assert!(check("6.1.0-27-amd64").is_ok());
        assert!(check("unknown").is_ok());
        let e = check("5.10.0-32-amd64").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref().map(|m| m.starts_with(
                "Linux 5.10.0-32-amd64 is not supported: Sluice needs Linux 5.15 or later; this kernel lacks BPF memory accounting"
            )),
            Some(true),
            "{e:?}"
        );
    }
}
