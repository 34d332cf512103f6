//! Spool file names: the object name, percent-encoded into one flat file name.
//!
//! The name a batch is uploaded under is decided when it is committed and is part of the
//! file's name, so that a restart (or another process reading the spool) uploads it under
//! the same name, and create-only uploads turn a second attempt into "already there".
//! Letters, digits, `-`, `_`, `=` and `.` stay as they are; every other byte (`/`, `%`,
//! spaces, non-ASCII) becomes `%XX` (uppercase hex), and so does a leading `.` (so a
//! batch never looks like the spool's own dot files). The encoding is one-to-one:
//! [`decode`] inverts [`encode`], and a file name that does not decode to a valid object
//! name is not a batch.

/// Suffix of every batch file in the spool.
pub const SUFFIX: &str = ".spool";

/// Longest file name most Linux file systems take.
const NAME_MAX: usize = 255;

/// Longest Cloud Storage object name, in bytes.
const OBJECT_NAME_MAX: usize = 1024;

/// Why an object name cannot be spooled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("the object name is empty")]
    Empty,
    /// Longer than Cloud Storage allows.
    #[error("the object name is {len} bytes; Cloud Storage allows {OBJECT_NAME_MAX}")]
    TooLongForStorage {
        /// Its length.
        len: usize,
    },
    /// Its encoded file name is longer than a file name may be.
    #[error("the spool file name would be {len} bytes; the file system allows {NAME_MAX}")]
    TooLongForFileName {
        /// Length of the encoded file name.
        len: usize,
    },
    /// Contains a control character (Cloud Storage refuses CR and LF; none is useful).
    #[error("the object name contains a control character")]
    ControlCharacter,
    /// `.`/`..` segment or leading `/`: names that tools mangle.
    #[error("the object name has an empty, `.` or `..` path segment")]
    BadSegment,
}

fn keep(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'=' | b'.')
}

/// Checks the object name rules this crate relies on.
///
/// # Errors
/// The first rule it breaks.
pub fn validate(object: &str) -> Result<(), NameError> {
    if object.is_empty() {
        return Err(NameError::Empty);
    }
    if object.len() > OBJECT_NAME_MAX {
        return Err(NameError::TooLongForStorage { len: object.len() });
    }
    if object.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    if object
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(NameError::BadSegment);
    }
    Ok(())
}

/// The spool file name of `object`.
///
/// # Errors
/// When the object name is invalid, or its file name would be too long.
pub fn encode(object: &str) -> Result<String, NameError> {
    validate(object)?;
    let mut out = String::with_capacity(object.len() + 16);
    for (i, &byte) in object.as_bytes().iter().enumerate() {
        if keep(byte) && !(i == 0 && byte == b'.') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0xf));
        }
    }
    out.push_str(SUFFIX);
    if out.len() > NAME_MAX {
        return Err(NameError::TooLongForFileName { len: out.len() });
    }
    Ok(out)
}

/// The object name of a spool file name, or `None` when it is not one [`encode`] makes.
pub fn decode(file_name: &str) -> Option<String> {
    let body = file_name.strip_suffix(SUFFIX)?;
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b if keep(b) && !(i == 0 && b == b'.') => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    let object = String::from_utf8(out).ok()?;
    // Only the canonical spelling is a batch: `%41` for `A` is not ours.
    (encode(&object).ok()? == file_name).then_some(object)
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble & 0xf)])
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_name_encodes_slashes_only() {
        let object =
            "sluice/raw/dt=2026-11-22/hour=03/host1-0a1b2c3d-00c0ffee-2-00000017.ndjson.zst";
        let file = encode(object).unwrap();
        assert_eq!(
            file,
            "sluice%2Fraw%2Fdt=2026-11-22%2Fhour=03%2Fhost1-0a1b2c3d-00c0ffee-2-00000017.ndjson.zst.spool"
        );
        assert_eq!(decode(&file).as_deref(), Some(object));
    }

    #[test]
    fn odd_bytes_round_trip() {
        for object in [".hidden", "a b/%41/ü€", "x.spool", "a..b", "=.-_"] {
            let file = encode(object).unwrap();
            assert!(!file.starts_with('.'), "{file}");
            assert!(!file[..file.len() - SUFFIX.len()].contains('/'));
            assert_eq!(decode(&file).as_deref(), Some(object), "{file}");
        }
        assert_eq!(encode(".x").unwrap(), "%2Ex.spool");
        assert_eq!(encode("a%b").unwrap(), "a%25b.spool");
    }

    #[test]
    fn non_canonical_or_foreign_names_are_not_batches() {
        assert_eq!(decode("%41.spool"), None);
        assert_eq!(decode("%2fx.spool"), None);
        assert_eq!(decode("a%2.spool"), None);
        assert_eq!(decode("a b.spool"), None);
        assert_eq!(decode(".tmp-1"), None);
        assert_eq!(decode("boot-id"), None);
        assert_eq!(decode("a%2F%2Fb.spool"), None);
    }

    #[test]
    fn invalid_object_names_are_refused() {
        assert_eq!(encode(""), Err(NameError::Empty));
        assert_eq!(encode("a\nb"), Err(NameError::ControlCharacter));
        assert_eq!(encode("/a"), Err(NameError::BadSegment));
        assert_eq!(encode("a//b"), Err(NameError::BadSegment));
        assert_eq!(encode("a/../b"), Err(NameError::BadSegment));
        assert_eq!(
            encode(&"x".repeat(1025)),
            Err(NameError::TooLongForStorage { len: 1025 })
        );
        assert_eq!(
            encode(&"x".repeat(250)),
            Err(NameError::TooLongForFileName { len: 256 })
        );
        assert!(encode(&"x".repeat(249)).is_ok());
    }
}
