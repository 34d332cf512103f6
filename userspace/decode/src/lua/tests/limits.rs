//! The sandbox and its limits: what a script cannot reach, a runaway call stopped
//! (also when it catches the error, or loops in a coroutine), a state out of memory
//! collected or rebuilt, script errors counted with their message — and the same state
//! decoding the next payload each time.

use super::{decode, error, factory};
use crate::{
    Value,
    lua::{LUA_BUDGET, LUA_ERROR, LUA_MEMORY},
};

const N: &[(&str, &str, bool)] = &[("n", "i64", false)];

/// A script whose `process` runs `body` when the payload is `"bad"`, else emits `n = 1`.
fn script(body: &str) -> String {
    format!(
        "function process(event, emit)\n\
           if event.log.message == 'bad' then\n{body}\nend\n\
           event.log.n = 1\n\
           emit(event)\n\
         end"
    )
}

fn one() -> Vec<Vec<Value<'static>>> {
    vec![vec![Value::I64(1)]]
}

#[test]
fn libraries_outside_the_sandbox_are_absent() {
    let probe = r#"
        function process(event, emit)
          local absent = {}
          for _, name in ipairs({ "io", "debug", "package", "dofile", "loadfile" }) do
            if _G[name] ~= nil then absent[#absent + 1] = name end
          end
          if string.dump or os.execute or os.remove or os.getenv or os.exit then
            absent[#absent + 1] = "os or string.dump"
          end
          assert(#absent == 0, "present: " .. table.concat(absent, ","))
          assert(type(os.time()) == "number" and type(os.date("!%Y")) == "string")
          assert(type(os.clock()) == "number")
          -- Text chunks load, binary ones do not.
          assert(load("return 1 + 1")() == 2)
          local ok, err = load("\27Lua binary", "bin", "b")
          assert(ok == nil and err:find("attempt to load a binary chunk"), err)
          assert(collectgarbage("count") > 0)
          assert(not pcall(collectgarbage, "stop"))
          event.log.n = 7
          emit(event)
        end"#;
    let mut d = factory(probe, N, "").expect("loads").decoder();
    assert_eq!(decode(&mut d, b"x"), Ok(vec![vec![Value::I64(7)]]));
    // `require` says why it is not there.
    let mut d = factory(&script("require('socket')"), N, "")
        .expect("loads")
        .decoder();
    let (kind, _, message) = error(&mut d, b"bad");
    assert_eq!(kind, LUA_ERROR);
    assert!(
        message.contains("require(\"socket\") is not available in Sluice"),
        "{message}"
    );
}

#[test]
fn a_runaway_call_is_stopped_and_the_state_goes_on() {
    // The CPU budget (the watchdog, no hook while a call is within it) and the
    // instruction budget (a count hook) stop the same scripts the same way.
    let budgets = [
        (
            "max_call_cpu_ms = 20",
            "CPU time budget exhausted (max_call_cpu_ms = 20)",
        ),
        (
            "max_instructions = 20000",
            "instruction budget exhausted (max_instructions = 20000)",
        ),
    ];
    for (budget, expected) in budgets {
        for body in [
            "while true do end",
            // Catching the error does not help: every next instruction fails too.
            "while true do pcall(function() while true do end end) end",
            "local function f() return f() end while true do pcall(f) end",
            // Nor does looping in a coroutine.
            "local co = coroutine.wrap(function() while true do end end) co()",
            "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
            // Nor a comparison function called from C.
            "local t = {} for i = 1, 100 do t[i] = i end \
             table.sort(t, function(a, b) while true do end end)",
        ] {
            let mut d = factory(&script(body), N, budget).expect("loads").decoder();
            assert_eq!(decode(&mut d, b"ok"), Ok(one()), "{body}");
            let started = std::time::Instant::now();
            let (kind, field, message) = error(&mut d, b"bad");
            assert_eq!(
                (kind.as_str(), field, message.as_str()),
                (LUA_BUDGET, None, expected),
                "{body}"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{body}"
            );
            // The same state, with its budget back.
            for _ in 0..3 {
                assert_eq!(decode(&mut d, b"ok"), Ok(one()), "{body}");
            }
        }
    }
}

#[test]
fn a_call_within_its_cpu_budget_is_not_stopped() {
    // ~30 ms of CPU in one call under a 200 ms budget, while other calls come and go.
    let body = "local x = 0 for i = 1, 3000000 do x = x + 1 end";
    let mut d = factory(&script(body), N, "max_call_cpu_ms = 200")
        .expect("loads")
        .decoder();
    for _ in 0..3 {
        assert_eq!(decode(&mut d, b"bad"), Ok(one()));
        for _ in 0..100 {
            assert_eq!(decode(&mut d, b"ok"), Ok(one()));
        }
    }
}

#[test]
fn the_budget_is_per_call() {
    // 100 calls of ~5000 instructions each under a 20000 budget: none is stopped.
    let body = "local x = 0 for i = 1, 1000 do x = x + i end event.log.n = x emit(event)";
    let source = format!("function process(event, emit) {body} end");
    let mut d = factory(&source, N, "max_instructions = 20000")
        .expect("loads")
        .decoder();
    for _ in 0..100 {
        assert_eq!(decode(&mut d, b"x"), Ok(vec![vec![Value::I64(500_500)]]));
    }
}

#[test]
fn allocating_without_end_is_a_memory_error_and_the_state_is_collected() {
    let body = "local t = {} while true do t[#t + 1] = string.rep('x', 1000) .. #t end";
    let mut d = factory(
        &script(body),
        N,
        "max_memory_bytes = 2097152\nmax_call_cpu_ms = 1000",
    )
    .expect("loads")
    .decoder();
    for _ in 0..3 {
        let (kind, field, message) = error(&mut d, b"bad");
        assert_eq!((kind.as_str(), field), (LUA_MEMORY, None), "{message}");
        assert!(message.contains("memory"), "{message}");
        assert_eq!(decode(&mut d, b"ok"), Ok(one()));
        assert!(d.used_memory() < 1 << 20, "{}", d.used_memory());
    }
}

#[test]
fn a_state_whose_globals_fill_its_memory_is_rebuilt() {
    // Each bad payload keeps about 720 KB in a global: the third cannot fit in 2 MiB,
    // and a full collection frees nothing, so the state is rebuilt (its globals start
    // afresh).
    let body =
        "kept = kept or {} for i = 1, 700 do kept[#kept + 1] = string.rep('k', 1000) .. i end";
    let source = format!("loaded = (loaded or 0) + 1\n{}", script(body));
    let mut d = factory(&source, N, "max_memory_bytes = 2097152")
        .expect("loads")
        .decoder();
    assert_eq!(decode(&mut d, b"bad"), Ok(one()));
    assert_eq!(decode(&mut d, b"bad"), Ok(one()));
    // Rebuilds are at most one a second: wait for the one after the start.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (kind, _, _) = error(&mut d, b"bad");
    assert_eq!(kind, LUA_MEMORY);
    assert!(d.used_memory() < 1 << 20, "rebuilt: {}", d.used_memory());
    assert_eq!(decode(&mut d, b"bad"), Ok(one()));
    assert_eq!(decode(&mut d, b"ok"), Ok(one()));
}

#[test]
fn script_errors_are_counted_with_their_message_and_line() {
    let source = "function process(event, emit)\n\
                    local n = string.unpack('>I4', event.log.message)\n\
                    if n == 0 then error('zero is not a reading') end\n\
                    if n == 1 then local t = nil; t.x = 1 end\n\
                    if n == 2 then error({ code = 2 }) end\n\
                    event.log.n = n\n\
                    emit(event)\n\
                  end";
    let mut d = factory(source, N, "").expect("loads").decoder();
    let cases: [(&[u8], &str); 4] = [
        (
            b"\0\0",
            "source:2: bad argument #2 to 'unpack' (data string too short)",
        ),
        (b"\0\0\0\0", "source:3: zero is not a reading"),
        (
            b"\0\0\0\x01",
            "source:4: attempt to index a nil value (local 't')",
        ),
        (b"\0\0\0\x02", "(error object is a table)"),
    ];
    for (payload, expected) in cases {
        let (kind, field, message) = error(&mut d, payload);
        assert_eq!((kind.as_str(), field), (LUA_ERROR, None));
        assert!(message.starts_with(expected), "{message:?} for {payload:?}");
        assert!(!message.contains('\n'), "one line: {message:?}");
        assert_eq!(decode(&mut d, b"\0\0\0\x09"), Ok(vec![vec![Value::I64(9)]]));
    }
}

#[test]
fn emitting_something_other_than_a_log_event_is_an_error() {
    for (emitted, expected) in [
        (
            "42",
            "emit: an event is a table { log = { ... } }, not an integer",
        ),
        (
            "{ metric = { name = 'x' } }",
            "emit: metric events are not supported",
        ),
        (
            "{ log = 'x' }",
            "emit: the event's `log` is a string, not a table",
        ),
    ] {
        let source = format!("function process(event, emit) emit({emitted}) end");
        let mut d = factory(&source, N, "").expect("loads").decoder();
        let (kind, _, message) = error(&mut d, b"x");
        assert_eq!(kind, LUA_ERROR);
        assert!(message.contains(expected), "{message:?}");
    }
}

#[test]
fn a_row_limit_bounds_what_one_payload_emits() {
    let source = "function process(event, emit)\n\
                    for i = 1, #event.log.message do event.log.n = i emit(event) end\n\
                  end";
    let mut d = factory(source, N, "max_rows_per_payload = 3")
        .expect("loads")
        .decoder();
    assert_eq!(decode(&mut d, b"abc").expect("3 rows").len(), 3);
    let (kind, field, message) = error(&mut d, b"abcd");
    assert_eq!(
        (kind.as_str(), field, message.as_str()),
        (
            crate::lua::TOO_MANY_ROWS,
            None,
            "more than max_rows_per_payload = 3 rows"
        )
    );
}

#[test]
fn a_script_that_catches_a_refused_emit_still_loses_the_payload() {
    let source = "function process(event, emit)\n\
                    event.log.n = 'x'\n\
                    local ok = pcall(emit, event)\n\
                    event.log.n = 1\n\
                    emit(event)\n\
                  end";
    let mut d = factory(source, N, "").expect("loads").decoder();
    let (kind, field, _) = error(&mut d, b"x");
    assert_eq!(
        (kind.as_str(), field.as_deref()),
        (crate::lua::BAD_FIELD, Some("n"))
    );
}

#[test]
fn init_and_shutdown_run_and_their_emits_are_not_recorded() {
    let source = "count = 0\n\
                  function init(emit) count = 100 emit({ log = { n = -1 } }) end\n\
                  function shutdown(emit) emit({ log = { n = count } }) end\n\
                  function process(event, emit) count = count + 1 event.log.n = count emit(event) end";
    let f = factory(
        source,
        N,
        "hooks = { init = 'init', shutdown = 'shutdown' }",
    )
    .expect("loads");
    let mut d = f.decoder();
    assert_eq!(decode(&mut d, b"x"), Ok(vec![vec![Value::I64(101)]]));
    assert_eq!(decode(&mut d, b"x"), Ok(vec![vec![Value::I64(102)]]));
    // Each worker has its own state (and globals).
    let mut other = f.decoder();
    assert_eq!(decode(&mut other, b"x"), Ok(vec![vec![Value::I64(101)]]));
    drop(d);
    drop(other);
}
