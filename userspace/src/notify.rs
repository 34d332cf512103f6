//! systemd's service notification protocol (`sd_notify`), so that `Type=notify` means
//! what an operator expects: `systemctl start sluice` returns once the program is
//! attached and the sockets are bound (`READY=1`), `systemctl status` shows the counters
//! (`STATUS=`), a stop is announced (`STOPPING=1`), and a hung main loop is restarted by
//! the watchdog (`WATCHDOG=1` while `WatchdogSec=` is set).
//!
//! The protocol is one datagram per message to the socket named by `$NOTIFY_SOCKET`
//! (a path, or `@name` in the abstract namespace); without it (not started by systemd)
//! every call does nothing. A failed send is logged once and otherwise ignored: the
//! service must not stop recording because its supervisor went away.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    time::{Duration, Instant},
};

/// A connection to systemd's notification socket, if there is one.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    warned: bool,
}

/// The socket address `$NOTIFY_SOCKET` names: a path, or `@name` in the abstract namespace.
fn address(name: &str) -> std::io::Result<SocketAddr> {
    match name.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(abstract_name.as_bytes())
        }
        None => SocketAddr::from_pathname(name),
    }
}

/// The watchdog interval from `$WATCHDOG_USEC` (when `$WATCHDOG_PID`, if set, is us).
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

impl Notifier {
    /// Connects to `$NOTIFY_SOCKET` if systemd set it.
    pub fn from_env() -> Self {
        let target = std::env::var("NOTIFY_SOCKET").ok().and_then(|name| {
            let open = || -> std::io::Result<(UnixDatagram, SocketAddr)> {
                Ok((UnixDatagram::unbound()?, address(&name)?))
            };
            open()
                .map_err(|e| tracing::warn!(socket = %name, error = %e, "NOTIFY_SOCKET unusable"))
                .ok()
        });
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
        );
        Self {
            target,
            watchdog,
            last_ping: None,
            warned: false,
        }
    }

    fn send(&mut self, message: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
            && !self.warned
        {
            tracing::warn!(error = %e, "cannot notify systemd");
            self.warned = true;
        }
    }

    /// `READY=1` with a status line: the service is receiving.
    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=`: shown by `systemctl status`.
    pub fn status(&mut self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// `STOPPING=1`: the service is shutting down (draining and flushing).
    pub fn stopping(&mut self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// `WATCHDOG=1` at half the configured interval, from the main loop: a loop that
    /// stops turning stops the pings, and systemd restarts the service.
    pub fn watchdog(&mut self) {
        let Some(interval) = self.watchdog else {
            return;
        };
        if self.last_ping.is_none_or(|t| t.elapsed() >= interval / 2) {
            self.send("WATCHDOG=1");
            self.last_ping = Some(Instant::now());
        }
    }
}

/// Status text without newlines (which would start a new assignment).
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_notification_socket_in_order() {
        let dir = std::env::temp_dir().join(format!("sluice-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("notify");
        let systemd = UnixDatagram::bind(&path).expect("bind");
        let mut notifier = Notifier {
            target: Some((
                UnixDatagram::unbound().expect("socket"),
                address(path.to_str().expect("utf-8")).expect("address"),
            )),
            watchdog: Some(Duration::from_secs(10)),
            last_ping: None,
            warned: false,
        };
        notifier.ready("seen 0\nrecorded 0");
        notifier.watchdog();
        notifier.watchdog(); // within half the interval: not sent again
        notifier.status("seen 5");
        notifier.stopping("draining");
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        systemd
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        for _ in 0..4 {
            let n = systemd.recv(&mut buf).expect("message");
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            got,
            [
                "READY=1\nSTATUS=seen 0 recorded 0",
                "WATCHDOG=1",
                "STATUS=seen 5",
                "STOPPING=1\nSTATUS=draining",
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn abstract_and_path_addresses_are_told_apart() {
        use std::os::linux::net::SocketAddrExt as _;
        let a = address("@/org/freedesktop/systemd1/notify").expect("abstract");
        assert_eq!(
            a.as_abstract_name(),
            Some(&b"/org/freedesktop/systemd1/notify"[..])
        );
        let p = address("/run/systemd/notify").expect("path");
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
    }

    #[test]
    fn the_watchdog_interval_is_ours_only() {
        let me = std::process::id().to_string();
        assert_eq!(
            watchdog_interval(Some("30000000"), Some(&me)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), None),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_interval(Some("30000000"), Some("1")), None);
        assert_eq!(watchdog_interval(Some("0"), None), None);
        assert_eq!(watchdog_interval(None, None), None);
    }
}
