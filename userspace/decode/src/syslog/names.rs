//! Facility and severity keywords, so records can be filtered without a lookup table.
//!
//! The names are the keywords of RFC 5424 table 1/2 as `logger -p` and syslog.conf spell
//! them; facilities 12..=15, which have no keyword in glibc, use the common names
//! (`ntp`, `security`, `console`, `solaris-cron`).

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The keyword of facility `code` (0..=23).
pub(crate) fn facility(code: u8) -> Option<&'static str> {
    FACILITIES.get(usize::from(code)).copied()
}

/// The keyword of severity `code` (0..=7).
pub(crate) fn severity(code: u8) -> Option<&'static str> {
    SEVERITIES.get(usize::from(code)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_by_code() {
        assert_eq!(facility(0), Some("kern"));
        assert_eq!(facility(10), Some("authpriv"));
        assert_eq!(facility(23), Some("local7"));
        assert_eq!(facility(24), None);
        assert_eq!(severity(0), Some("emerg"));
        assert_eq!(severity(4), Some("warning"));
        assert_eq!(severity(7), Some("debug"));
        assert_eq!(severity(8), None);
    }
}
