//! Object manifests: the durable record of which spooled batches make one object.
//!
//! Exactly-once across crashes rests on deciding an object's contents *before* its
//! upload starts: the manifest is written (temp file, fsync, rename without replacing,
//! fsync of the directory) before the first attempt, so a restart rebuilds the same
//! object from the same batches under the same name, and the create-only upload either
//! lands it or finds it there (412). After the upload, the manifest is renamed to
//! `.uploaded` (the batches may now go), the batches are removed, then the marker.
//!
//! Files in `objects/` of the spool: `<first batch's spool file stem>.object` (planned),
//! `….uploaded` (uploaded, batches being removed), `.tmp-*` (being written). The text:
//!
//! ```text
//! sluice-object 1
//! object <object name>
//! batch <spool file name>          (one line per batch, in the object's order)
//! crc32c <8 hex digits>            (CRC32C of every byte before this line)
//! ```
//!
//! Object names and spool file names never hold control characters (see
//! [`super::name::validate`]), so one name per line is unambiguous.

/// Sub-directory of the spool holding manifests.
pub const OBJECTS_DIR: &str = "objects";
/// Suffix of a planned object's manifest.
pub const PLANNED_SUFFIX: &str = ".object";
/// Suffix of an uploaded object's manifest.
pub const UPLOADED_SUFFIX: &str = ".uploaded";

const MAGIC_LINE: &str = "sluice-object 1";

/// An object's name and its batches' spool file names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The object name.
    pub object_name: String,
    /// Spool file names of its batches, in order.
    pub batch_files: Vec<String>,
}

impl Manifest {
    /// The manifest's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{MAGIC_LINE}\nobject {}\n", self.object_name);
        for file in &self.batch_files {
            text.push_str("batch ");
            text.push_str(file);
            text.push('\n');
        }
        let crc = crc32c::crc32c(text.as_bytes());
        text.push_str(&format!("crc32c {crc:08x}\n"));
        text.into_bytes()
    }

    /// Reads a manifest back.
    ///
    /// # Errors
    /// What is wrong: not text, a missing or unknown line, a checksum mismatch.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or("too short")?;
        let (body, last) = text.split_at(body_end);
        let recorded = last
            .strip_prefix("crc32c ")
            .and_then(|line| line.strip_suffix('\n'))
            .and_then(|hex| {
                let value = u32::from_str_radix(hex, 16).ok()?;
                (format!("{value:08x}") == hex).then_some(value)
            })
            .ok_or("no checksum line at the end")?;
        let actual = crc32c::crc32c(body.as_bytes());
        if recorded != actual {
            return Err(format!(
                "checksum {actual:08x}, the manifest says {recorded:08x}"
            ));
        }
        let mut lines = body.lines();
        if lines.next() != Some(MAGIC_LINE) {
            return Err(format!("the first line is not {MAGIC_LINE:?}"));
        }
        let object_name = lines
            .next()
            .and_then(|l| l.strip_prefix("object "))
            .filter(|n| !n.is_empty())
            .ok_or("no object line")?
            .to_owned();
        let batch_files = lines
            .map(|l| {
                l.strip_prefix("batch ")
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("unexpected line {l:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            object_name,
            batch_files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            object_name: "p/raw/dt=2027-01-15/hour=03/h-3f2a9c1e-00c0ffee-0-00000001-x2.parquet"
                .into(),
            batch_files: vec!["a.spool".into(), "b%20c.spool".into()],
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let bytes = m.encode();
        assert!(bytes.starts_with(b"sluice-object 1\nobject p/raw/"));
        assert_eq!(Manifest::decode(&bytes), Ok(m));
    }

    #[test]
    fn any_damage_is_refused() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() - 1 {
            assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x20;
            assert!(Manifest::decode(&flipped).is_err(), "flip at {i}");
        }
        assert!(Manifest::decode(b"\xff\xfe").is_err());
    }
}
