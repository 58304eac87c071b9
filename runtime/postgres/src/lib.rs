//! PostgreSQL backends for [buttress](https://docs.rs/buttress): an
//! idempotency store ([`PostgresStore`]) and a dead-letter sink
//! ([`PostgresSink`]). Use them through the `postgres` feature of
//! `buttress`, as `buttress::idempotency::PostgresStore` and
//! `buttress::dlq::PostgresSink`.
#![deny(missing_docs)]

mod connection;
mod sink;
mod store;

pub use sink::PostgresSink;
pub use store::PostgresStore;
