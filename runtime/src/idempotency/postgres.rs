//! `PostgresStore` (feature `postgres`): placeholder, being written.
