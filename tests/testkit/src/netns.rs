//! Private network namespaces joined by a veth pair, so tests and the demo send real
//! frames through real XDP without touching the host's interfaces.
//!
//! [`NetnsPair::create`] makes `sl-<pid>-<n>-a` and `sl-<pid>-<n>-b`, a veth between them
//! with fixed MACs ([`MAC_A`], [`MAC_B`]), 198.51.100.1/24 ↔ 198.51.100.2/24 and
//! 2001:db8:51::1/64 ↔ 2001:db8:51::2/64. Neighbour entries are static and IPv6 DAD and
//! router solicitation are off, so the only frames crossing the link are the ones a test
//! sends (plus the kernel's unavoidable MLD reports right after link-up). Dropping a
//! [`Netns`] deletes it by exact name; the names are also registered with
//! [`crate::cleanup`] so a SIGINT/SIGTERM handler can delete them.
//!
//! [`NetnsHub`] is one more namespace that several others reach over veth pairs of their
//! own: a server in it (the Cloud Storage emulator of the scale-out tests) is reachable at
//! one address, [`HUB_SERVICE_V4`], from each of them.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::cleanup;

/// MAC address of the `a` end of the veth.
pub const MAC_A: [u8; 6] = [0x02, 0x51, 0xce, 0x00, 0x00, 0x0a];
/// MAC address of the `b` end of the veth.
pub const MAC_B: [u8; 6] = [0x02, 0x51, 0xce, 0x00, 0x00, 0x0b];
/// IPv4 address of the `a` end.
pub const ADDR_V4_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// IPv4 address of the `b` end.
pub const ADDR_V4_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// IPv6 address of the `a` end.
pub const ADDR_V6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, 1);
/// IPv6 address of the `b` end.
pub const ADDR_V6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, 2);

/// Why a namespace operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// An `ip` command could not be started or exited non-zero.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status, or the spawn error.
        status: String,
        /// Its standard error.
        stderr: String,
    },
    /// Entering the namespace failed.
    #[error("cannot enter network namespace {name}: {source}")]
    Enter {
        /// The namespace.
        name: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A setting inside the namespace could not be written.
    #[error("cannot write {path} in network namespace {name}: {source}")]
    Sysctl {
        /// The namespace.
        name: String,
        /// The /proc/sys path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Runs `ip ARGS`, failing with its stderr on a non-zero exit.
fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let command = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetnsError::Command {
            command: command.clone(),
            status: e.to_string(),
            stderr: String::new(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// A network namespace this process created; deleted by exact name on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`) and registers it for signal cleanup.
    ///
    /// # Errors
    /// [`NetnsError::Command`] when `ip netns add` fails (e.g. not root, or the name exists).
    pub fn create(name: &str) -> Result<Netns, NetnsError> {
        if let Err(e) = cleanup::install_signal_cleanup() {
            eprintln!("warning: {e}: namespaces are not deleted on Ctrl-C");
        }
        cleanup::register_namespace(name);
        if let Err(e) = ip(&["netns", "add", name]) {
            cleanup::unregister_namespace(name);
            return Err(e);
        }
        Ok(Netns {
            name: name.to_owned(),
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`).
    /// `ip netns exec` execs the program, so the child's PID is the program's.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    fn open(&self) -> Result<File, NetnsError> {
        let path = PathBuf::from("/run/netns").join(&self.name);
        File::open(&path).map_err(|source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        })
    }

    /// Runs `f` on a new thread that has entered the namespace, and returns its result.
    /// Sockets created in `f` stay in the namespace after `f` returns, so a test can bind a
    /// listener here and use it from any thread. A panic in `f` is resumed in the caller.
    ///
    /// # Errors
    /// [`NetnsError::Enter`] when the namespace cannot be entered.
    pub fn run_in<F, R>(&self, f: F) -> Result<R, NetnsError>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = self.open()?;
        let name = self.name.clone();
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || enter(&file, &name).map(|()| f()));
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Like [`Netns::run_in`], but returns at once with the thread's handle.
    ///
    /// # Errors
    /// [`NetnsError::Enter`] when the namespace file cannot be opened.
    pub fn spawn_in<F, R>(
        &self,
        f: F,
    ) -> Result<std::thread::JoinHandle<Result<R, NetnsError>>, NetnsError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = self.open()?;
        let name = self.name.clone();
        Ok(std::thread::spawn(move || {
            enter(&file, &name).map(|()| f())
        }))
    }

    /// Writes `value` to `/proc/sys/<key>` inside the namespace (e.g. `net/ipv6/conf/default/accept_dad`).
    ///
    /// # Errors
    /// [`NetnsError::Enter`] or [`NetnsError::Sysctl`].
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        let path = format!("/proc/sys/{key}");
        let name = self.name.clone();
        self.run_in(|| std::fs::write(&path, value))?
            .map_err(|source| NetnsError::Sysctl { name, path, source })
    }
}

/// Runs `f` on a new thread inside the namespace named `name` (which the caller created
/// and still holds), for helpers that keep only the name.
///
/// # Errors
/// [`NetnsError::Enter`] when the namespace cannot be entered.
pub fn run_in_named<F, R>(name: &str, f: F) -> Result<R, NetnsError>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let file =
        File::open(PathBuf::from("/run/netns").join(name)).map_err(|source| NetnsError::Enter {
            name: name.to_owned(),
            source,
        })?;
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| enter(&file, name).map(|()| f()));
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Moves the calling thread into the namespace open as `file`.
fn enter(file: &File, name: &str) -> Result<(), NetnsError> {
    // SAFETY: setns(2) with a valid open namespace fd; it changes only this thread's
    // network namespace (a thread of our own that exits when its job is done).
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(NetnsError::Enter {
            name: name.to_owned(),
            source: std::io::Error::last_os_error(),
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        cleanup::delete_namespace(&self.name);
        cleanup::unregister_namespace(&self.name);
    }
}

/// Two namespaces joined by a veth pair, addressed and up (see the module docs).
#[derive(Debug)]
pub struct NetnsPair {
    /// The sending side, `sl-<pid>-<n>-a`.
    pub a: Netns,
    /// The receiving side, `sl-<pid>-<n>-b`.
    pub b: Netns,
    /// The veth end in `a`.
    pub if_a: String,
    /// The veth end in `b`.
    pub if_b: String,
}

/// Numbers the pairs and hubs of this process (`sl-<pid>-<n>-...`).
static PAIR_COUNTER: AtomicU32 = AtomicU32::new(0);

/// How long `create` waits after both link-local addresses exist for the kernel's MLD
/// reports (1 ms apart, see `configure`) to be sent, so that a test counting frames at b
/// sees only its own.
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

impl NetnsPair {
    /// Creates and configures the pair. On error, whatever was created is deleted.
    ///
    /// # Errors
    /// [`NetnsError`] from the first step that fails.
    pub fn create() -> Result<NetnsPair, NetnsError> {
        let pid = std::process::id();
        let n = PAIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let a = Netns::create(&format!("sl-{pid}-{n}-a"))?;
        let b = Netns::create(&format!("sl-{pid}-{n}-b"))?;
        // Interface names must fit IFNAMSIZ - 1 = 15 bytes: 2 + ≤6 (pid ≤ 2^22) + 1 + ≤5 + 1.
        let if_a = format!("sl{pid:x}-{:x}a", n & 0xf_ffff);
        let if_b = format!("sl{pid:x}-{:x}b", n & 0xf_ffff);
        let pair = NetnsPair { a, b, if_a, if_b };
        pair.configure()?;
        Ok(pair)
    }

    fn configure(&self) -> Result<(), NetnsError> {
        for ns in [&self.a, &self.b] {
            // Before the veth exists, so both ends inherit them: no DAD probes and no
            // router solicitations on the link while a test counts frames.
            ns.sysctl("net/ipv6/conf/default/accept_dad", "0")?;
            ns.sysctl("net/ipv6/conf/default/dad_transmits", "0")?;
            ns.sysctl("net/ipv6/conf/default/router_solicitations", "0")?;
            // MLD reports for the groups joined at link-up cannot be turned off; make
            // their retransmissions (default up to 1 s later) follow within milliseconds,
            // so they are over before `create` returns (see SETTLE).
            ns.sysctl(
                "net/ipv6/conf/default/mldv1_unsolicited_report_interval",
                "1",
            )?;
            ns.sysctl(
                "net/ipv6/conf/default/mldv2_unsolicited_report_interval",
                "1",
            )?;
        }
        let mac_a = format_mac(&MAC_A);
        let mac_b = format_mac(&MAC_B);
        let (a, b) = (self.a.name(), self.b.name());
        let (if_a, if_b) = (self.if_a.as_str(), self.if_b.as_str());
        ip(&[
            "-n", a, "link", "add", if_a, "address", &mac_a, "type", "veth", "peer", "name", if_b,
            "address", &mac_b, "netns", b,
        ])?;
        let sides = [
            (a, if_a, ADDR_V4_A, ADDR_V6_A, ADDR_V4_B, ADDR_V6_B, &mac_b),
            (b, if_b, ADDR_V4_B, ADDR_V6_B, ADDR_V4_A, ADDR_V6_A, &mac_a),
        ];
        for (ns, ifname, v4, v6, peer_v4, peer_v6, peer_mac) in sides {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", ifname])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
            for peer in [peer_v4.to_string(), peer_v6.to_string()] {
                ip(&[
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    &peer,
                    "lladdr",
                    peer_mac,
                    "dev",
                    ifname,
                    "nud",
                    "permanent",
                ])?;
            }
        }
        // The kernel sends its MLD reports once the carrier is seen up, which linkwatch may
        // delay by up to a second, and only then adds the link-local address: wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for (ns, ifname) in [(a, if_a), (b, if_b)] {
            while !has_link_local(ns, ifname)? {
                if std::time::Instant::now() > deadline {
                    return Err(NetnsError::Command {
                        command: format!("ip -n {ns} -6 addr show dev {ifname} scope link"),
                        status: "no link-local address after 5 s".into(),
                        stderr: String::new(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        std::thread::sleep(SETTLE);
        Ok(())
    }
}

/// The address of a [`NetnsHub`]'s server, on the hub's loopback.
pub const HUB_SERVICE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);

/// Most spokes a hub takes: their /30s, from 198.51.100.128, stay below
/// [`HUB_SERVICE_V4`].
pub const HUB_MAX_SPOKES: usize = 16;

/// One spoke's link to a [`NetnsHub`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubLink {
    /// The spoke namespace's name.
    pub spoke: String,
    /// The veth end in the spoke (`hub<n>`).
    pub if_spoke: String,
    /// The veth end in the hub (`spoke<i>`).
    pub if_hub: String,
    /// The spoke's address on the link (198.51.100.(128 + 4i + 1)/30).
    pub spoke_v4: Ipv4Addr,
    /// The hub's address on the link (198.51.100.(128 + 4i + 2)/30).
    pub hub_v4: Ipv4Addr,
}

/// A namespace `sl-<pid>-<n>-hub` joined to each of several existing namespaces (the
/// spokes) by a veth pair with a /30 of 198.51.100.128/26, and holding
/// [`HUB_SERVICE_V4`]/32 on its loopback, which each spoke routes to its link: a server
/// bound there in the hub is reached from every spoke, while the spokes do not reach one
/// another (the hub does not forward). The /30s are more specific than the /24 of a
/// [`NetnsPair`]'s veth, so a spoke that is the `b` end of a pair keeps both routes.
///
/// Dropping the hub deletes its namespace by exact name, which deletes the veth pairs
/// with it (their spoke ends too); the name is registered for signal cleanup like any
/// [`Netns`]. Drop the hub after the processes running in it.
#[derive(Debug)]
pub struct NetnsHub {
    /// The hub namespace.
    pub hub: Netns,
    /// One link per spoke, in the order given.
    pub links: Vec<HubLink>,
}

impl NetnsHub {
    /// Creates the hub and joins it to each of `spokes` (at most [`HUB_MAX_SPOKES`]). On
    /// error, whatever was created is deleted.
    ///
    /// # Errors
    /// [`NetnsError`] from the first step that fails; [`NetnsError::Command`] naming the
    /// limit for too many spokes.
    pub fn create(spokes: &[&Netns]) -> Result<NetnsHub, NetnsError> {
        if spokes.len() > HUB_MAX_SPOKES {
            return Err(NetnsError::Command {
                command: "NetnsHub::create".into(),
                status: format!("{} spokes; at most {HUB_MAX_SPOKES}", spokes.len()),
                stderr: String::new(),
            });
        }
        let pid = std::process::id();
        let n = PAIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let hub = Netns::create(&format!("sl-{pid}-{n}-hub"))?;
        let name = hub.name().to_owned();
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        let service = format!("{HUB_SERVICE_V4}/32");
        ip(&["-n", &name, "addr", "add", &service, "dev", "lo"])?;
        let mut links = Vec::with_capacity(spokes.len());
        for (i, spoke) in spokes.iter().enumerate() {
            let base = 128 + 4 * i as u8;
            let link = HubLink {
                spoke: spoke.name().to_owned(),
                // Names are per namespace: `spoke<i>` is unique in the hub, `hub<n>` in
                // a spoke (unless joined twice to one hub).
                if_spoke: format!("hub{:x}", n & 0xf_ffff),
                if_hub: format!("spoke{i}"),
                spoke_v4: Ipv4Addr::new(198, 51, 100, base + 1),
                hub_v4: Ipv4Addr::new(198, 51, 100, base + 2),
            };
            ip(&[
                "-n",
                &name,
                "link",
                "add",
                &link.if_hub,
                "type",
                "veth",
                "peer",
                "name",
                &link.if_spoke,
                "netns",
                &link.spoke,
            ])?;
            for (ns, ifname, addr) in [
                (name.as_str(), &link.if_hub, link.hub_v4),
                (link.spoke.as_str(), &link.if_spoke, link.spoke_v4),
            ] {
                ip(&[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/30"),
                    "dev",
                    ifname,
                ])?;
                ip(&["-n", ns, "link", "set", ifname, "up"])?;
            }
            ip(&[
                "-n",
                &link.spoke,
                "route",
                "add",
                &service,
                "via",
                &link.hub_v4.to_string(),
                "dev",
                &link.if_spoke,
            ])?;
            links.push(link);
        }
        Ok(NetnsHub { hub, links })
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        self.hub.name()
    }
}

/// True once `ifname` in `ns` has its IPv6 link-local address.
fn has_link_local(ns: &str, ifname: &str) -> Result<bool, NetnsError> {
    let args = [
        "-n", ns, "-6", "addr", "show", "dev", ifname, "scope", "link",
    ];
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetnsError::Command {
            command: format!("ip {}", args.join(" ")),
            status: e.to_string(),
            stderr: String::new(),
        })?;
    Ok(String::from_utf8_lossy(&output.stdout).contains("inet6 fe80:"))
}

/// `02:51:ce:00:00:0a` style.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privilege::require_root;

    #[test]
    fn format_mac_is_colon_separated_lowercase_hex() {
        assert_eq!(format_mac(&MAC_A), "02:51:ce:00:00:0a");
        assert_eq!(format_mac(&[0xff, 0xab, 0, 1, 2, 3]), "ff:ab:00:01:02:03");
    }

    #[test]
    fn pair_is_created_configured_and_deleted() {
        if !require_root("netns::pair_is_created_configured_and_deleted")
            || !crate::privilege::require_tool(
                "netns::pair_is_created_configured_and_deleted",
                "ip",
            )
        {
            return;
        }
        let pair = NetnsPair::create().expect("create pair");
        let (name_a, name_b) = (pair.a.name().to_owned(), pair.b.name().to_owned());
        let pid = std::process::id();
        assert!(name_a.starts_with(&format!("sl-{pid}-")) && name_a.ends_with("-a"));
        assert!(pair.if_a.len() <= 15 && pair.if_b.len() <= 15);
        assert!(PathBuf::from("/run/netns").join(&name_a).exists());

        // Written through `run_in`, read back through `ip netns exec`: the setting landed
        // in b's namespace (and b's veth inherited it), not in ours.
        let path = format!("/proc/sys/net/ipv6/conf/{}/accept_dad", pair.if_b);
        let dad = pair.b.command("cat").arg(&path).output().expect("cat");
        assert_eq!(String::from_utf8_lossy(&dad.stdout).trim(), "0");

        let ping = pair
            .a
            .command("ping")
            .args(["-c", "1", "-W", "2", &ADDR_V4_B.to_string()])
            .output()
            .expect("run ping");
        assert!(ping.status.success(), "ping a->b failed: {ping:?}");
        let ping6 = pair
            .b
            .command("ping")
            .args(["-6", "-c", "1", "-W", "2", &ADDR_V6_A.to_string()])
            .output()
            .expect("run ping -6");
        assert!(ping6.status.success(), "ping -6 b->a failed: {ping6:?}");

        // A listener bound inside b, reached by a client connecting from inside a.
        let listener = pair
            .b
            .run_in(|| std::net::TcpListener::bind((ADDR_V4_B, 0)))
            .expect("enter b")
            .expect("bind in b");
        let port = listener.local_addr().expect("local addr").port();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut stream, peer) = listener.accept().expect("accept");
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).expect("read");
            stream.write_all(b"pong!").expect("write");
            (peer.ip(), buf)
        });
        let reply = pair
            .a
            .run_in(move || {
                use std::io::{Read, Write};
                let mut stream = std::net::TcpStream::connect((ADDR_V4_B, port))?;
                stream.write_all(b"ping!")?;
                let mut buf = [0u8; 5];
                stream.read_exact(&mut buf)?;
                Ok::<_, std::io::Error>(buf)
            })
            .expect("enter a")
            .expect("tcp exchange");
        let (peer, request) = server.join().expect("server thread");
        assert_eq!(&reply, b"pong!");
        assert_eq!(&request, b"ping!");
        assert_eq!(peer, std::net::IpAddr::V4(ADDR_V4_A));

        drop(pair);
        assert!(!PathBuf::from("/run/netns").join(&name_a).exists());
        assert!(!PathBuf::from("/run/netns").join(&name_b).exists());
    }

    #[test]
    fn hub_is_reached_from_every_spoke_and_deleted_on_drop() {
        const NAME: &str = "netns::hub_is_reached_from_every_spoke_and_deleted_on_drop";
        if !require_root(NAME) || !crate::privilege::require_tool(NAME, "ip") {
            return;
        }
        let first = NetnsPair::create().expect("create pair");
        let second = NetnsPair::create().expect("create pair");
        let hub = NetnsHub::create(&[&first.b, &second.b]).expect("create hub");
        let hub_name = hub.name().to_owned();
        assert!(hub_name.ends_with("-hub"), "{hub_name}");
        assert_eq!(
            hub.links
                .iter()
                .map(|l| (l.spoke.as_str(), l.spoke_v4, l.hub_v4))
                .collect::<Vec<_>>(),
            [
                (
                    first.b.name(),
                    Ipv4Addr::new(198, 51, 100, 129),
                    Ipv4Addr::new(198, 51, 100, 130)
                ),
                (
                    second.b.name(),
                    Ipv4Addr::new(198, 51, 100, 133),
                    Ipv4Addr::new(198, 51, 100, 134)
                ),
            ]
        );
        // A listener on the service address in the hub, reached from each spoke, each
        // connection coming from that spoke's own link address.
        let listener = hub
            .hub
            .run_in(|| std::net::TcpListener::bind((HUB_SERVICE_V4, 0)))
            .expect("enter hub")
            .expect("bind in hub");
        let port = listener.local_addr().expect("local addr").port();
        for (spoke, link) in [&first.b, &second.b].into_iter().zip(&hub.links) {
            let client = spoke
                .run_in(move || {
                    std::net::TcpStream::connect_timeout(
                        &std::net::SocketAddr::from((HUB_SERVICE_V4, port)),
                        std::time::Duration::from_secs(5),
                    )
                })
                .expect("enter spoke")
                .expect("connect from spoke");
            let (_, peer) = listener.accept().expect("accept");
            assert_eq!(peer.ip(), std::net::IpAddr::V4(link.spoke_v4));
            drop(client);
        }
        // The pair's own link still works next to the hub's.
        let ping = first
            .b
            .command("ping")
            .args(["-c", "1", "-W", "2", &ADDR_V4_A.to_string()])
            .output()
            .expect("run ping");
        assert!(ping.status.success(), "ping b->a failed: {ping:?}");
        // The hub does not forward: one spoke does not reach the other.
        let across = first
            .b
            .command("ping")
            .args(["-c", "1", "-W", "1", &hub.links[1].spoke_v4.to_string()])
            .output()
            .expect("run ping");
        assert!(!across.status.success(), "spoke reached spoke: {across:?}");

        let if_spoke = hub.links[0].if_spoke.clone();
        // A socket holds its namespace: close the listener first.
        drop(listener);
        drop(hub);
        assert!(!PathBuf::from("/run/netns").join(&hub_name).exists());
        // Deleting the hub deletes the spoke ends of its links (the kernel dismantles a
        // namespace asynchronously: give it a moment).
        let links = || {
            let out = first
                .b
                .command("ip")
                .args(["-o", "link", "show"])
                .output()
                .expect("ip link");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while links().contains(&format!(" {if_spoke}@")) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let left = links();
        assert!(!left.contains(&format!(" {if_spoke}@")), "{left}");
    }
}
