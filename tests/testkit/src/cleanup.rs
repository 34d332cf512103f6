//! Cleanup that also happens on Ctrl-C: a registry of the namespaces and child processes
//! this process created (and of system settings it changed, to put back), and guards that
//! undo them.
//!
//! `Drop` covers panics and early returns, but not a signal: SIGINT or SIGTERM kills the
//! process without unwinding, which would leave namespaces (and daemons inside them)
//! behind. [`install_signal_cleanup`] (called by every namespace creation, and by tools
//! early) starts a thread that, on the first SIGINT or SIGTERM, terminates every
//! registered child (by PID), deletes every registered namespace (by exact name), writes
//! every registered setting back, and exits with 128 + the signal number. Only resources
//! this process registered are touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// What cleanup could not do.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// The signal handler could not be registered.
    #[error("cannot register the SIGINT/SIGTERM handler: {source}")]
    Signals {
        /// The underlying error.
        source: std::io::Error,
    },
    /// Waiting for or signalling a child process failed.
    #[error("cannot stop process {pid} ({name}): {source}")]
    Process {
        /// The child's PID.
        pid: u32,
        /// What the child is.
        name: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

#[derive(Default)]
struct Registry {
    namespaces: BTreeSet<String>,
    children: BTreeSet<u32>,
    /// Files (sysfs settings) to write back, with what to write.
    restores: BTreeMap<PathBuf, String>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    namespaces: BTreeSet::new(),
    children: BTreeSet::new(),
    restores: BTreeMap::new(),
});

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    // A panic while holding the lock leaves consistent data (plain set inserts/removes).
    let mut guard = REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut guard)
}

pub(crate) fn register_namespace(name: &str) {
    with_registry(|r| r.namespaces.insert(name.to_owned()));
}

pub(crate) fn unregister_namespace(name: &str) {
    with_registry(|r| r.namespaces.remove(name));
}

/// Registers `contents` to be written back to `path` (a setting this process changed) if a
/// signal ends the process first; the caller writes it back itself otherwise, then calls
/// [`unregister_restore`].
pub fn register_restore(path: &Path, contents: &str) {
    with_registry(|r| r.restores.insert(path.to_owned(), contents.to_owned()));
}

/// Forgets what [`register_restore`] registered for `path`.
pub fn unregister_restore(path: &Path) {
    with_registry(|r| r.restores.remove(path));
}

/// Deletes the namespace `name` (`ip netns delete NAME`); a namespace already gone is fine.
pub(crate) fn delete_namespace(name: &str) {
    let status = std::process::Command::new("ip")
        .args(["netns", "delete", name])
        .stderr(std::process::Stdio::null())
        .status();
    if let Ok(status) = status
        && !status.success()
        && std::path::Path::new("/run/netns").join(name).exists()
    {
        eprintln!("warning: could not delete network namespace {name}");
    }
}

/// Sends SIGTERM to `pid`, waits up to `grace` for it to exit (reaping it), then SIGKILLs.
/// Only for PIDs of our own children (see [`ProcessGuard`]).
fn terminate_pid(pid: u32, grace: Duration) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) and waitpid(2) with a child PID we spawned and have not reaped;
    // they only touch that process.
    unsafe {
        if libc::kill(pid, libc::SIGTERM) != 0 {
            return;
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            let mut status = 0;
            if libc::waitpid(pid, &mut status, libc::WNOHANG) == pid {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
}

/// Terminates every registered child, deletes every registered namespace and writes
/// every registered setting back.
pub fn cleanup_all() {
    let (children, namespaces, restores) = with_registry(|r| {
        (
            std::mem::take(&mut r.children),
            std::mem::take(&mut r.namespaces),
            std::mem::take(&mut r.restores),
        )
    });
    for (path, contents) in restores {
        if let Err(e) = std::fs::write(&path, &contents) {
            eprintln!(
                "warning: could not write {contents:?} back to {}: {e}",
                path.display()
            );
        }
    }
    for pid in children {
        terminate_pid(pid, Duration::from_secs(5));
    }
    for name in namespaces {
        delete_namespace(&name);
    }
}

static HANDLER_INSTALLED: Mutex<bool> = Mutex::new(false);

/// Installs the SIGINT/SIGTERM handler that runs [`cleanup_all`] and exits with
/// 128 + the signal number. Idempotent; [`crate::netns::Netns::create`] calls it, so test
/// binaries get it too, and a tool may call it early.
///
/// # Errors
/// [`CleanupError::Signals`] when the handler cannot be registered.
pub fn install_signal_cleanup() -> Result<(), CleanupError> {
    let mut installed = HANDLER_INSTALLED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *installed {
        return Ok(());
    }
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|source| CleanupError::Signals { source })?;
    std::thread::Builder::new()
        .name("sluice-testkit-cleanup".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                eprintln!("signal {signal}: cleaning up namespaces and child processes");
                cleanup_all();
                std::process::exit(128 + signal);
            }
        })
        .map_err(|source| CleanupError::Signals { source })?;
    *installed = true;
    Ok(())
}

/// A child process that is terminated (SIGTERM, then SIGKILL after a grace period) when
/// the guard drops or the signal cleanup runs.
#[derive(Debug)]
pub struct ProcessGuard {
    name: String,
    child: Option<Child>,
}

impl ProcessGuard {
    /// Takes ownership of `child`, registering its PID for signal cleanup.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        with_registry(|r| r.children.insert(child.id()));
        Self {
            name: name.into(),
            child: Some(child),
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the child has not exited (reaping it if it has).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The child's exit status if it has exited, without waiting.
    ///
    /// # Errors
    /// [`CleanupError::Process`] when the status cannot be read.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>, CleanupError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        child.try_wait().map_err(|source| CleanupError::Process {
            pid: child.id(),
            name: self.name.clone(),
            source,
        })
    }

    /// Sends SIGTERM and waits up to `grace` for the child to exit; SIGKILLs it after
    /// that. Returns the exit status and whether the grace period sufficed.
    ///
    /// # Errors
    /// [`CleanupError::Process`] when signalling or waiting fails.
    pub fn terminate(&mut self, grace: Duration) -> Result<(ExitStatus, bool), CleanupError> {
        let Some(mut child) = self.child.take() else {
            return Err(CleanupError::Process {
                pid: 0,
                name: self.name.clone(),
                source: std::io::Error::other("already terminated"),
            });
        };
        let pid = child.id();
        with_registry(|r| r.children.remove(&pid));
        let err = |source| CleanupError::Process {
            pid,
            name: self.name.clone(),
            source,
        };
        if let Some(status) = child.try_wait().map_err(err)? {
            return Ok((status, true));
        }
        let raw_pid = libc::pid_t::try_from(pid).map_err(|_| err(std::io::Error::other("pid")))?;
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped yet.
        if unsafe { libc::kill(raw_pid, libc::SIGTERM) } != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().map_err(err)? {
                return Ok((status, true));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().map_err(err)?;
        let status = child.wait().map_err(err)?;
        Ok((status, false))
    }

    /// Waits up to `timeout` for the child to exit on its own; SIGKILLs it after that.
    /// Returns the exit status and whether it exited in time.
    ///
    /// # Errors
    /// [`CleanupError::Process`] when waiting or killing fails.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<(ExitStatus, bool), CleanupError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status()? {
                if let Some(child) = self.child.take() {
                    with_registry(|r| r.children.remove(&child.id()));
                }
                return Ok((status, true));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, _) = self.terminate(Duration::ZERO)?;
        Ok((status, false))
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Err(e) = self.terminate(Duration::from_secs(5))
        {
            eprintln!("warning: {e}");
        }
    }
}
