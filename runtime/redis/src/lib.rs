//! Redis backends for [buttress](https://docs.rs/buttress): an idempotency
//! store ([`RedisStore`]) and a dead-letter sink ([`RedisSink`]). Use them
//! through the `redis` feature of `buttress`, as
//! `buttress::idempotency::RedisStore` and `buttress::dlq::RedisSink`.
#![deny(missing_docs)]

mod sink;
mod store;

pub use sink::RedisSink;
pub use store::RedisStore;
