//! Redis helpers shared by the shared quota and the `buttress-redis`
//! stores and sinks: connecting, running scripts, and messages about
//! connection strings that never show a password.

/// Connecting to Redis, running Lua scripts, redacting URLs.
#[cfg(feature = "redis")]
pub mod redis {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::LazyLock;
    use std::time::Duration;

    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind, Value};

    /// A Lua script kept with its source, for `EVAL` when the server does
    /// not have it cached, and its name, for messages.
    #[allow(missing_debug_implementations)]
    pub struct Lua {
        /// The script's name, for messages.
        pub name: &'static str,
        /// Its source, for `EVAL`.
        pub source: &'static str,
        /// The script, hashed once.
        pub script: LazyLock<Script>,
    }

    /// Run `lua` on `keys` with `args`: `EVALSHA`, then `EVAL` once if the
    /// server does not have the script. Each request sent is counted in
    /// `round_trips`. No timeout: the caller bounds the whole exchange.
    pub async fn eval(
        connection: &mut ConnectionManager,
        lua: &Lua,
        keys: &[&[u8]],
        args: &[&[u8]],
        round_trips: &AtomicU64,
    ) -> RedisResult<Value> {
        let command = |verb: &str, script: &[u8]| {
            let mut cmd = Cmd::new();
            cmd.arg(verb).arg(script).arg(keys.len());
            for key in keys {
                cmd.arg(*key);
            }
            for arg in args {
                cmd.arg(*arg);
            }
            cmd
        };
        round_trips.fetch_add(1, Ordering::Relaxed);
        let sha = command("EVALSHA", lua.script.get_hash().as_bytes());
        match sha.query_async::<Value>(connection).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                round_trips.fetch_add(1, Ordering::Relaxed);
                command("EVAL", lua.source.as_bytes())
                    .query_async::<Value>(connection)
                    .await
            }
            answer => answer,
        }
    }

    /// Whether a request that failed with `e` may be sent again at once:
    /// the connection it went out on had died (the server restarted, or the
    /// link dropped while the connection sat idle), and the connection
    /// manager is reconnecting. Only for requests whose second sending
    /// cannot do anything the first did not (an idempotency claim carries
    /// its own mark, completions and releases are fenced; dead-letter
    /// pushes are keyed by entry id). A refused connection (the server is
    /// still down) is not sent again.
    pub fn worth_resending(e: &redis::RedisError) -> bool {
        e.is_connection_dropped() && !e.is_connection_refusal()
    }

    /// A reconnecting connection to the Redis server at `url`, waiting at
    /// most `timeout` per connection attempt, and the server's URL without
    /// its password. `what` names the user in messages ("the idempotency
    /// store").
    pub async fn connect(
        url: &str,
        timeout: Duration,
        what: &str,
    ) -> Result<(ConnectionManager, String), String> {
        let endpoint = redact(url);
        let client = redis::Client::open(url).map_err(|e| {
            format!(
                "invalid Redis URL {endpoint} for {what}: {e}; expected \
                 redis://[user:password@]host:port/db"
            )
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            // Requests are bounded by the caller's own timeout instead.
            .set_response_timeout(None)
            // Fail fast while the server is down; the next request starts
            // another reconnection.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connecting = ConnectionManager::new_with_config(client, config);
        match tokio::time::timeout(timeout * 3, connecting).await {
            Ok(Ok(connection)) => Ok((connection, endpoint)),
            Ok(Err(e)) => Err(format!(
                "could not connect to Redis at {endpoint} for {what}: {e}; check that Redis is \
                 running there and that the URL's host, port, password and TLS scheme are right"
            )),
            Err(_) => Err(format!(
                "could not connect to Redis at {endpoint} within {:?}; check that Redis is \
                 running there and reachable from this machine",
                timeout * 3
            )),
        }
    }

    /// `url` without its password (and without a query string, which may carry
    /// one), for messages.
    pub fn redact(url: &str) -> String {
        let url = url.split(['?', '#']).next().unwrap_or_default();
        let Some((scheme, rest)) = url.split_once("://") else {
            return if url.contains('@') {
                "<unparsable Redis URL>".to_owned()
            } else {
                url.to_owned()
            };
        };
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
                None => format!("{scheme}://{userinfo}@{host}{path}"),
            },
            None => format!("{scheme}://{authority}{path}"),
        }
    }
}
