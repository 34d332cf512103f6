//! Syslog, RFC 3164 and RFC 5424. Work in progress.
