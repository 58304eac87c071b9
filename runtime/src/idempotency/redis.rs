//! `RedisStore` (feature `redis`): placeholder, being written.
