//! The buttress examples: a fault-injecting provider (a real HTTP server on
//! 127.0.0.1), clients over reqwest, and the outage lab.

pub mod clients;
pub mod lab;
pub mod provider;

/// This process's resident memory (`VmRSS` in `/proc/self/status`), in
/// KiB; `None` where there is no such file.
#[must_use]
pub fn rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The book's lab chapter, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/lab.md")]
struct LabChapter;
