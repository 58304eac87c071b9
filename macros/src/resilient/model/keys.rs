//! The key tables: every key `#[resilient]` accepts, each group's
//! settings, and the words a setting may take, from the settings
//! vocabulary the runtime's configuration files use too. Unknown names are
//! reported against these, with a "did you mean" hint.

use buttress_settings::keys;

pub(super) const KEYS: &[&str] = keys::ATTRIBUTE;
pub(super) const RETRY_KEYS: &[&str] = keys::RETRY;
pub(super) const BACKOFFS: &[&str] = keys::BACKOFFS;
pub(super) const JITTERS: &[&str] = keys::JITTERS;
pub(super) const BREAKER_KEYS: &[&str] = keys::BREAKER;
pub(super) const RECOVERY_KEYS: &[&str] = keys::RECOVERY;
pub(super) const THROTTLE_KEYS: &[&str] = keys::THROTTLE;
pub(super) const ADAPTIVE_TIMEOUT_KEYS: &[&str] = keys::ADAPTIVE_TIMEOUT;
pub(super) const BULKHEAD_KEYS: &[&str] = keys::BULKHEAD;
pub(super) const RATE_LIMIT_KEYS: &[&str] = keys::RATE_LIMIT;
pub(super) const CLOCKS: &[&str] = keys::CLOCKS;
pub(super) const IDEMPOTENT_KEYS: &[&str] = keys::IDEMPOTENT;
pub(super) const ON_STORE_ERROR: &[&str] = keys::ON_STORE_ERROR;
pub(super) const DLQ_KEYS: &[&str] = keys::DLQ;
pub(super) const DLQ_ON: &[&str] = keys::DLQ_ON;
