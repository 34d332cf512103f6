//! Object names: unique per batch, fixed when the batch is committed, and laid out for
//! BigQuery's hive partitioning.
//!
//! ```text
//! PREFIX/<stream>/dt=YYYY-MM-DD/hour=HH/<host>-<boot>-<run>-<worker>-<sequence>.<ext>
//! sluice/netflow/dt=2026-11-22/hour=03/probe1-3f2a9c1e-00c0ffee-2-00000017.ndjson.gz
//! ```
//!
//! `dt`/`hour` are the UTC date and hour of the batch's first record. `<boot>` is the
//! first 8 hex digits of the kernel's boot id ([`BootId`]), which ties objects to the
//! machine's boot (the journal's `_BOOT_ID`). `<run>` ([`RunId`], 8 random hex digits
//! drawn at every start) is what keeps names unique across restarts within one boot:
//! worker sequence numbers start again at 0 in every run, and without it a restarted
//! process would reuse the names of objects already uploaded — which create-only
//! uploads would then report as "already there", silently dropping the new batch.
//! `<sequence>` is 8 digits or more, so names of one worker sort by sequence.
//!
//! Once committed, the name is stored in the spool file's name: a restart uploads the
//! batch under the same name, so a batch uploaded before a crash but not yet removed is
//! found to exist (HTTP 412) rather than written twice.

use std::fmt::Write as _;
use std::path::Path;

/// File in the spool directory holding the fallback boot id (when `/proc` has none).
pub const BOOT_ID_FILE: &str = "boot-id";

const KERNEL_BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The kernel's boot id: 32 lowercase hex digits, new at every boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootId(String);

impl BootId {
    /// Parses a UUID as `/proc/sys/kernel/random/boot_id` prints it (dashes optional).
    pub fn parse(text: &str) -> Option<Self> {
        let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
        (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| Self(hex.to_ascii_lowercase()))
    }

    /// The running kernel's boot id.
    ///
    /// # Errors
    /// When `/proc/sys/kernel/random/boot_id` cannot be read or parsed.
    pub fn kernel() -> std::io::Result<Self> {
        let text = std::fs::read_to_string(KERNEL_BOOT_ID)?;
        Self::parse(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{KERNEL_BOOT_ID} holds {text:?}, not a UUID"),
            )
        })
    }

    /// The kernel's boot id, or (without `/proc`, e.g. in a sandbox) a random id kept in
    /// `spool_dir/boot-id`, created on first use.
    ///
    /// # Errors
    /// When neither can be read, or the fallback cannot be written.
    pub fn current(spool_dir: &Path) -> std::io::Result<Self> {
        if let Ok(id) = Self::kernel() {
            return Ok(id);
        }
        let path = spool_dir.join(BOOT_ID_FILE);
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Some(id) = Self::parse(&text)
        {
            return Ok(id);
        }
        let mut hex = String::with_capacity(32);
        for byte in random_bytes::<16>()? {
            let _ = write!(hex, "{byte:02x}");
        }
        let temp = spool_dir.join(format!(".tmp-{BOOT_ID_FILE}-{}", std::process::id()));
        std::fs::write(&temp, format!("{hex}\n"))?;
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(spool_dir)?.sync_all()?;
        Ok(Self(hex))
    }

    /// All 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 hex digits: what object names carry.
    pub fn short(&self) -> &str {
        &self.0[..8]
    }
}

/// A random id drawn at every start of the process: 8 hex digits in names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunId(u32);

impl RunId {
    /// A fresh id from the kernel's random source.
    ///
    /// # Errors
    /// When `getrandom(2)` fails.
    pub fn random() -> std::io::Result<Self> {
        Ok(Self(u32::from_le_bytes(random_bytes::<4>()?)))
    }

    /// A given id (tests, or a caller that keeps its own).
    pub const fn from_u32(id: u32) -> Self {
        Self(id)
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n.unsigned_abs();
    }
    Ok(buf)
}

/// Builds the object names of one process run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectNamer {
    prefix: String,
    host: String,
    boot: String,
    run: String,
}

impl ObjectNamer {
    /// Names under `prefix` (may be empty) for `host` in this boot and run. `/` in the
    /// host name becomes `_`.
    pub fn new(prefix: &str, host: &str, boot: &BootId, run: RunId) -> Self {
        Self {
            prefix: prefix.trim_matches('/').to_owned(),
            host: host.replace('/', "_"),
            boot: boot.short().to_owned(),
            run: run.to_string(),
        }
    }

    /// The object name of `worker`'s batch number `sequence` of `stream`, whose first
    /// record was received at `first_received_unix_micros`; `extension` without the
    /// leading dot (`ndjson.gz`, `parquet`).
    pub fn name(
        &self,
        stream: &str,
        first_received_unix_micros: i64,
        worker: usize,
        sequence: u64,
        extension: &str,
    ) -> String {
        let (year, month, day, hour) = civil_hour(first_received_unix_micros);
        let mut name = String::with_capacity(self.prefix.len() + stream.len() + 96);
        if !self.prefix.is_empty() {
            name.push_str(&self.prefix);
            name.push('/');
        }
        let _ = write!(
            name,
            "{stream}/dt={year:04}-{month:02}-{day:02}/hour={hour:02}/{}-{}-{}-{worker}-{sequence:08}.{extension}",
            self.host, self.boot, self.run
        );
        name
    }
}

/// UTC (year, month, day, hour) of a Unix time in microseconds (proleptic Gregorian).
fn civil_hour(unix_micros: i64) -> (i64, u32, u32, u32) {
    let seconds = unix_micros.div_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let hour = u32::try_from(seconds.rem_euclid(86_400) / 3600).unwrap_or(0);
    // Days since 1970-01-01 to civil date (H. Hinnant's algorithm; the crate does not depend
    // on the decoders, where `sluice_decode::civil` has it).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_exact() {
        assert_eq!(civil_hour(0), (1970, 1, 1, 0));
        // 2026-11-22T03:04:05.678901Z
        assert_eq!(civil_hour(1_795_316_645_678_901), (2026, 11, 22, 3));
        // 2024-02-29T23:59:59.999999Z, then the next microsecond.
        assert_eq!(civil_hour(1_709_251_199_999_999), (2024, 2, 29, 23));
        assert_eq!(civil_hour(1_709_251_200_000_000), (2024, 3, 1, 0));
        assert_eq!(civil_hour(-1), (1969, 12, 31, 23));
    }

    #[test]
    fn names_follow_the_scheme() {
        let boot = BootId::parse("3f2a9c1e-0b1c-4d2e-8f90-a1b2c3d4e5f6").unwrap();
        assert_eq!(boot.as_str(), "3f2a9c1e0b1c4d2e8f90a1b2c3d4e5f6");
        let namer = ObjectNamer::new("sluice/prod", "probe/1", &boot, RunId::from_u32(0xc0ffee));
        assert_eq!(
            namer.name("netflow", 1_795_316_645_678_901, 2, 17, "ndjson.gz"),
            "sluice/prod/netflow/dt=2026-11-22/hour=03/probe_1-3f2a9c1e-00c0ffee-2-00000017.ndjson.gz"
        );
        let bare = ObjectNamer::new("", "h", &boot, RunId::from_u32(1));
        assert_eq!(
            bare.name("raw", 0, 0, 123_456_789, "parquet"),
            "raw/dt=1970-01-01/hour=00/h-3f2a9c1e-00000001-0-123456789.parquet"
        );
        // Every name the namer makes can be spooled.
        assert!(crate::spool::name::encode(&namer.name("raw", 0, 0, 0, "x")).is_ok());
    }

    #[test]
    fn boot_ids_parse_strictly() {
        assert_eq!(BootId::parse("nope"), None);
        assert_eq!(BootId::parse("3f2a9c1e-0b1c-4d2e-8f90-a1b2c3d4e5fz"), None);
        let kernel = BootId::kernel().unwrap();
        assert_eq!(kernel.as_str().len(), 32);
        assert_eq!(kernel.short(), &kernel.as_str()[..8]);
    }

    #[test]
    fn run_ids_differ_between_draws() {
        let ids: std::collections::HashSet<String> = (0..16)
            .map(|_| RunId::random().unwrap().to_string())
            .collect();
        assert!(ids.len() >= 15, "{ids:?}");
        assert!(ids.iter().all(|id| id.len() == 8));
    }
}
