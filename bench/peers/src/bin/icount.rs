//! One row, `n` calls, for counting instructions under callgrind:
//! `scripts/peers icount` runs every row at two call counts and reports the
//! instructions per call, a figure that does not drift with the machine's
//! load the way nanoseconds do.
//!
//! `icount <row> <ready|yield_once|retry|retry_timer> <n>`; `icount --list` prints
//! every `group row` pair.

use buttress_peers_bench::{current_thread, Group};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        let rt = current_thread();
        for group in Group::ALL {
            for row in group.rows(&rt) {
                println!("{} {}", group.name(), row.name);
            }
        }
        return;
    }
    let [row, group, n] = args.as_slice() else {
        eprintln!("usage: icount <row> <ready|yield_once|retry|retry_timer> <n>, or icount --list");
        std::process::exit(2);
    };
    let Some(group) = Group::parse(group) else {
        eprintln!("icount: unknown group `{group}`: ready, yield_once, retry or retry_timer");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("a number of calls");
    let rt = current_thread();
    let mut rows = group.rows(&rt);
    let Some(named) = rows.iter_mut().find(|r| r.name == row) else {
        eprintln!("icount: no row `{row}` in group {}", group.name());
        std::process::exit(2);
    };
    named.row.run(&rt, n);
}
