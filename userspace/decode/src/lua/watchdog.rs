//! The CPU-time budget of a Lua call (`max_call_cpu_ms`), enforced from outside the call
//! so that a call within its budget pays nothing for it.
//!
//! A count hook would check a budget from inside, but while one is set Lua 5.4 traps on
//! every instruction, whatever the hook's interval: 10–30% of a parser's time. Instead,
//! each state has a [`CallClock`]: a call marks its start and end (two atomic additions),
//! and one watchdog thread per process looks every half budget at the calls in progress,
//! reading the CPU time of the thread running each (`clock_gettime` on its thread CPU
//! clock), so that a worker waiting for a CPU is not charged. A call found over its budget
//! is interrupted the way Lua's own interpreter stops a script on Ctrl-C: a signal
//! (`SIGURG`) to that thread, whose handler sets a count hook on the running state
//! (`lua_sethook` may be called from a signal handler). The hook raises the budget error
//! at the next instruction, and at every one after it, so a `pcall` in the script cannot
//! keep the call going. When the call has ended, the hook is taken off again.
//!
//! Coroutines run on threads of their own, which a hook set on the state's main thread
//! does not reach: the sandbox starts every coroutine body with `watch()`, a count hook
//! every 1000 instructions on the coroutine's thread that raises the error once the call
//! is marked over budget (a coroutine's instructions pay the trap; the main thread's do
//! not).
//!
//! A call is stopped after at least its budget of CPU time and, with one check every half
//! budget, usually before one and a half budgets. Time spent inside one C library call
//! (`string.rep`, a pattern match over a long string) cannot be interrupted: the hook runs
//! at the next Lua instruction.

use std::{
    cell::Cell,
    collections::HashMap,
    os::raw::c_int,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering},
    },
    time::Duration,
};

use mlua::ffi;

/// The signal that interrupts a call over budget (ignored by default, so a stray one
/// harms nothing; Sluice uses no out-of-band socket data).
const INTERRUPT_SIGNAL: c_int = libc::SIGURG;
/// Instructions between two checks of the budget in a coroutine.
const COROUTINE_CHECK_INTERVAL: c_int = 1000;
/// Shortest and longest pause between two looks of the watchdog.
const TICK_RANGE: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(50));
/// The watchdog's pause while no state is registered.
const IDLE_TICK: Duration = Duration::from_millis(100);

thread_local! {
    /// The clock of the call running on this thread, null between calls.
    static CURRENT: Cell<*const CallClock> = const { Cell::new(std::ptr::null()) };
    /// This thread's Linux thread id, 0 until first asked.
    static TID: Cell<i32> = const { Cell::new(0) };
}

/// One state's calls, as the worker marks them and the watchdog sees them.
#[derive(Debug)]
pub(crate) struct CallClock {
    /// Odd while a call runs: incremented when it starts and when it ends.
    seq: AtomicU64,
    /// The call (`seq`) the watchdog found over budget; 0 for none.
    interrupt: AtomicU64,
    /// Linux thread id of the thread running the calls.
    tid: AtomicI32,
    /// The state's main thread, where the signal handler sets the hook.
    main: AtomicPtr<ffi::lua_State>,
    /// The budget, in nanoseconds of thread CPU time.
    budget_ns: u64,
    /// The signal handler set the hook on the main thread (taken off after the call).
    armed: AtomicBool,
    /// The hook raised the budget error in the current call.
    fired: AtomicBool,
    /// What the error says.
    message: String,
}

impl CallClock {
    /// A clock for a state whose calls may take `budget_ms` of CPU time each, watched
    /// from now on (the watchdog starts with the first clock).
    pub(crate) fn new(budget_ms: u64) -> Arc<Self> {
        let clock = Arc::new(Self {
            seq: AtomicU64::new(0),
            interrupt: AtomicU64::new(0),
            tid: AtomicI32::new(0),
            main: AtomicPtr::new(std::ptr::null_mut()),
            budget_ns: budget_ms.saturating_mul(1_000_000),
            armed: AtomicBool::new(false),
            fired: AtomicBool::new(false),
            message: budget_text(budget_ms),
        });
        watchdog().watch(&clock);
        clock
    }

    /// The state's main thread (before its first call).
    pub(crate) fn set_main(&self, main: *mut ffi::lua_State) {
        self.main.store(main, Ordering::Relaxed);
    }

    /// Before a call on this thread.
    pub(crate) fn start(self: &Arc<Self>) {
        let tid = TID.with(|t| {
            if t.get() == 0 {
                // SAFETY: no arguments, no failure.
                t.set(unsafe { libc::gettid() });
            }
            t.get()
        });
        if self.tid.load(Ordering::Relaxed) != tid {
            self.tid.store(tid, Ordering::Relaxed);
        }
        CURRENT.with(|c| c.set(Arc::as_ptr(self)));
        // Only this thread writes `seq`: a load and a store, no locked instruction.
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Release);
    }

    /// After the call: whether it was stopped for its budget, and whether the main
    /// thread's hook was replaced (it is off now).
    pub(crate) fn finish(&self) -> Finished {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Release);
        CURRENT.with(|c| c.set(std::ptr::null()));
        // The handler may set `armed` only while the call ran (`seq` odd): read first,
        // and swapped only when set.
        let unhooked =
            self.armed.load(Ordering::Acquire) && self.armed.swap(false, Ordering::AcqRel);
        if unhooked {
            let main = self.main.load(Ordering::Relaxed);
            if !main.is_null() {
                // SAFETY: the state's main thread, on the thread that owns it, between calls.
                unsafe { ffi::lua_sethook(main, None, 0, 0) };
            }
        }
        Finished {
            stopped: self.fired.load(Ordering::Acquire) && self.fired.swap(false, Ordering::AcqRel),
            unhooked,
        }
    }

    /// For a hook of Sluice's: whether the call in progress is over budget, noting that it
    /// is being stopped.
    pub(crate) fn stop_if_over_budget(&self) -> bool {
        let over = self.over_budget();
        if over {
            self.fired.store(true, Ordering::Release);
        }
        over
    }

    /// Whether the call in progress is over budget.
    fn over_budget(&self) -> bool {
        let seq = self.seq.load(Ordering::Acquire);
        seq & 1 == 1 && self.interrupt.load(Ordering::Acquire) == seq
    }

    /// What the budget error says.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

/// How a call ended, for its budget.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Finished {
    /// The call was stopped for its CPU budget.
    pub stopped: bool,
    /// The main thread's hook was replaced, then taken off: an instruction budget's hook
    /// must be set again.
    pub unhooked: bool,
}

/// The budget error's text.
pub(crate) fn budget_text(budget_ms: u64) -> String {
    format!("CPU time budget exhausted (max_call_cpu_ms = {budget_ms})")
}

/// `watch()`: the budget's count hook on the calling coroutine (see the module's
/// documentation).
///
/// # Safety
/// Called by Lua as a C function.
pub(crate) unsafe extern "C-unwind" fn watch_c(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: `state` is the running thread.
    unsafe {
        ffi::lua_sethook(
            state,
            Some(budget_hook),
            ffi::LUA_MASKCOUNT,
            COROUTINE_CHECK_INTERVAL,
        )
    };
    0
}

/// The count hook: raises the budget error while the call is over budget (and from then
/// on fires at every instruction); takes itself off a main thread otherwise.
///
/// # Safety
/// Called by Lua as a hook. Nothing owned is alive in this frame when `lua_error` leaves it.
unsafe extern "C-unwind" fn budget_hook(state: *mut ffi::lua_State, _: *mut ffi::lua_Debug) {
    let clock = CURRENT.with(Cell::get);
    // SAFETY: `CURRENT` points at the clock of the call running on this thread (its state
    // holds it) or is null.
    let Some(clock) = (unsafe { clock.as_ref() }) else {
        return;
    };
    unsafe {
        if clock.over_budget() {
            clock.fired.store(true, Ordering::Release);
            ffi::lua_sethook(state, Some(budget_hook), ffi::LUA_MASKCOUNT, 1);
            let message = clock.message();
            ffi::lua_pushlstring(state, message.as_ptr().cast(), message.len());
            ffi::lua_error(state);
        }
        if state == clock.main.load(Ordering::Relaxed) {
            // Armed for a call that has ended before the hook ran.
            ffi::lua_sethook(state, None, 0, 0);
        }
    }
}

/// The signal handler: on the thread whose call is over budget, the hook on its state.
extern "C" fn on_interrupt(_: c_int) {
    // `CURRENT` is a const-initialised thread local without a destructor: reading it is a
    // plain load, safe in a signal handler; so are the atomics and `lua_sethook`.
    let clock = CURRENT.with(Cell::get);
    // SAFETY: as in `budget_hook`.
    let Some(clock) = (unsafe { clock.as_ref() }) else {
        return;
    };
    let main = clock.main.load(Ordering::Relaxed);
    if clock.over_budget() && !main.is_null() {
        clock.armed.store(true, Ordering::Release);
        // SAFETY: the state running on this thread, interrupted; Lua's own interpreter
        // sets its Ctrl-C hook this way.
        unsafe { ffi::lua_sethook(main, Some(budget_hook), ffi::LUA_MASKCOUNT, 1) };
    }
}

/// The process's watchdog: the clocks it looks at.
struct Watchdog {
    clocks: Mutex<Vec<Weak<CallClock>>>,
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        install_handler();
        let dog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            clocks: Mutex::new(Vec::new()),
        }));
        let spawned = std::thread::Builder::new()
            .name("sluice-lua-dog".into())
            .spawn(move || dog.run());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "lua: the call budget's watchdog thread could not start");
        }
        dog
    })
}

impl Watchdog {
    fn watch(&self, clock: &Arc<CallClock>) {
        if let Ok(mut clocks) = self.clocks.lock() {
            clocks.push(Arc::downgrade(clock));
        }
    }

    /// Looks at the calls in progress every half of the smallest budget.
    fn run(&self) {
        // Per clock: the call last seen in progress and its thread's CPU time then.
        let mut seen: HashMap<usize, (u64, u64)> = HashMap::new();
        let pid = std::process::id() as libc::pid_t;
        loop {
            let clocks: Vec<Arc<CallClock>> = match self.clocks.lock() {
                Ok(mut clocks) => {
                    clocks.retain(|c| c.strong_count() > 0);
                    clocks.iter().filter_map(Weak::upgrade).collect()
                }
                Err(_) => return,
            };
            seen.retain(|key, _| clocks.iter().any(|c| Arc::as_ptr(c) as usize == *key));
            let tick = clocks
                .iter()
                .map(|c| Duration::from_nanos(c.budget_ns / 2))
                .min()
                .map_or(IDLE_TICK, |t| t.clamp(TICK_RANGE.0, TICK_RANGE.1));
            for clock in &clocks {
                let seq = clock.seq.load(Ordering::Acquire);
                let key = Arc::as_ptr(clock) as usize;
                if seq & 1 == 0 {
                    seen.remove(&key);
                    continue;
                }
                let tid = clock.tid.load(Ordering::Relaxed);
                let Some(cpu) = thread_cpu_ns(tid) else {
                    continue;
                };
                match seen.get(&key) {
                    Some(&(call, since)) if call == seq => {
                        if cpu.saturating_sub(since) >= clock.budget_ns {
                            clock.interrupt.store(seq, Ordering::Release);
                            // SAFETY: a signal to a thread of this process; if it has
                            // ended, the call fails harmlessly (ESRCH).
                            unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, INTERRUPT_SIGNAL) };
                        }
                    }
                    _ => {
                        seen.insert(key, (seq, cpu));
                    }
                }
            }
            drop(clocks);
            std::thread::sleep(tick);
        }
    }
}

/// CPU time of thread `tid` of this process, in nanoseconds (`None` if it has ended).
fn thread_cpu_ns(tid: i32) -> Option<u64> {
    if tid <= 0 {
        return None;
    }
    // The thread's CPU clock, as glibc's pthread_getcpuclockid makes it from a thread id
    // (CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD_MASK); unlike a pthread_t, a thread id that has
    // ended is an error, not undefined behaviour.
    let clock = (!(tid as libc::clockid_t) << 3) | 6;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(u64::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec).ok()?)
}

/// Installs the interrupt's signal handler (restarting interrupted system calls), once.
fn install_handler() {
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe (see
    // `on_interrupt`).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_interrupt as extern "C" fn(c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(INTERRUPT_SIGNAL, &action, std::ptr::null_mut()) != 0 {
            tracing::error!(
                error = %std::io::Error::last_os_error(),
                "lua: the call budget's signal handler could not be installed"
            );
        }
    }
}
