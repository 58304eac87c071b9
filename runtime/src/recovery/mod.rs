//! Recovery at the provider's pace.

mod config;

pub use config::{RecoveryConfig, MAX_PACE, MAX_WAITING};
