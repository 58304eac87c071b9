//! The buttress examples: a fault-injecting provider (a real HTTP server on
//! 127.0.0.1), clients over reqwest, and the outage lab.

pub mod clients;
pub mod dlq_tool;
pub mod lab;
pub mod provider;

/// The book's lab chapter, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../book/src/lab.md")]
struct LabChapter;
