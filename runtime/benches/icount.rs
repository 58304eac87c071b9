//! One overhead row, `n` calls, for counting instructions under
//! callgrind: `scripts/icount` runs it at two call counts and reports the
//! instructions per call of each row, a figure that does not drift with
//! the machine's load the way nanoseconds do.
//!
//! `icount <row> <ready|yield> <n>`, rows as in `overhead_paired`:
//! `tokio_timeout`, `default_stack`, `full_stack`, `resilient_macro`, and
//! `retry_twice` (two zero-backoff retries, then the answer).
//! `icount time <row> <ready|yield> <n>` prints instead the fastest of 2000
//! rounds of `n` calls, in nanoseconds per call (see `scripts/icount
//! --rates`). Without arguments (as `cargo bench` runs it) it does nothing.

mod common;

use std::future::Future;

use common::{
    current_thread, default_stack, drive, full_stack, macro_ready, macro_yield_once, ready,
    retry_twice, with_tokio_timeout, yield_once, Out,
};
use tokio::runtime::Runtime;

/// Rounds timed by `icount time …`.
const TIMED_ROUNDS: usize = 2000;

fn calls<F: Future<Output = Out>>(rt: &Runtime, n: u64, mut call: impl FnMut() -> F) {
    rt.block_on(async {
        for _ in 0..n {
            let _ = std::hint::black_box(call().await);
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (timing, rest) = match args.first().map(String::as_str) {
        Some("time") => (true, &args[1..]),
        _ => (false, &args[..]),
    };
    let [row, body, n] = rest else {
        return;
    };
    let n: u64 = n.parse().expect("a number of calls");
    let yields = match body.as_str() {
        "ready" => false,
        "yield" => true,
        other => panic!("unknown body `{other}`: ready or yield"),
    };
    let rt = current_thread();
    let default = default_stack("icount-default");
    let full = full_stack("icount-full");
    // `time`: the fastest of `TIMED_ROUNDS` rounds of `n` calls, in ns per
    // call: what the machine does undisturbed, for converting nanoseconds
    // to instructions (a median would follow the machine's load).
    let run = |rt: &Runtime, n: u64, call: &mut dyn FnMut(&Runtime, u64)| {
        if !timing {
            return call(rt, n);
        }
        call(rt, n); // warm up
        let fastest = (0..TIMED_ROUNDS)
            .map(|_| {
                let start = std::time::Instant::now();
                call(rt, n);
                start.elapsed().as_nanos() as f64 / n as f64
            })
            .fold(f64::INFINITY, f64::min);
        println!("{fastest:.1}");
    };
    macro_rules! row {
        ($wrap:expr) => {
            if yields {
                run(&rt, n, &mut |rt, n| calls(rt, n, || $wrap(yield_once)))
            } else {
                run(&rt, n, &mut |rt, n| calls(rt, n, || $wrap(ready)))
            }
        };
    }
    match row.as_str() {
        "tokio_timeout" => row!(with_tokio_timeout),
        "default_stack" => row!(|body| drive(&default, body)),
        "full_stack" => row!(|body| drive(&full, body)),
        "resilient_macro" if yields => run(&rt, n, &mut |rt, n| calls(rt, n, macro_yield_once)),
        "resilient_macro" => run(&rt, n, &mut |rt, n| calls(rt, n, macro_ready)),
        // Two zero-backoff retries of a body that fails at once: the body
        // argument is ignored (the attempts are ready on their first poll).
        "retry_twice" => run(&rt, n, &mut |rt, n| calls(rt, n, retry_twice)),
        other => panic!("unknown row `{other}`"),
    }
}
