//! The buttress examples: a fault-injecting provider (a real HTTP server on
//! 127.0.0.1), clients over reqwest, and the outage lab.

pub mod clients;
pub mod lab;
pub mod provider;
