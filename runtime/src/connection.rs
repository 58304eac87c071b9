//! Helpers shared by the PostgreSQL and Redis stores and sinks: messages
//! about connection strings that never show a password.

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
    use tokio_postgres::NoTls;

    /// A pool of up to `max_size` connections without TLS for `url`, and
    /// the password-free description of its target. No I/O. `what` names
    /// the user in messages ("the idempotency store").
    ///
    /// No pool timeouts: each operation's own timeout covers waiting for
    /// and opening a connection.
    pub(crate) fn pool(url: &str, max_size: usize, what: &str) -> Result<(Pool, String), String> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            let mut reason = error_chain(&e);
            if let Some(password) = password_in(url).filter(|p| !p.is_empty()) {
                reason = reason.replace(password, "***");
            }
            format!(
                "invalid PostgreSQL connection string for {what}: {reason}; \
                 expected postgres://user[:password]@host[:port]/dbname or key=value pairs"
            )
        })?;
        let target = describe_config(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| format!("could not build the PostgreSQL pool: {e}"))?;
        Ok((pool, target))
    }

    /// Check that `table` is a plain lowercase identifier of at most
    /// `max_len` characters (it is spliced into SQL). `what` names the
    /// table in the message ("idempotency").
    pub(crate) fn check_table(table: &str, max_len: usize, what: &str) -> Result<(), String> {
        let mut chars = table.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if first_ok && rest_ok && table.len() <= max_len {
            Ok(())
        } else {
            Err(format!(
                "invalid {what} table name {table:?}: use a plain identifier of at most \
                 {max_len} characters: lowercase ASCII letters, digits and '_', not starting \
                 with a digit (no schema, quotes or spaces)"
            ))
        }
    }

    /// `user@host:port/dbname`, without the password.
    pub(crate) fn describe_config(config: &tokio_postgres::Config) -> String {
        let user = config.get_user().unwrap_or("(default user)");
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let host = match host {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                };
                let port = config
                    .get_ports()
                    .get(i)
                    .or_else(|| config.get_ports().first())
                    .copied()
                    .unwrap_or(5432);
                format!("{host}:{port}")
            })
            .collect();
        let hosts = if hosts.is_empty() {
            "localhost:5432".to_owned()
        } else {
            hosts.join(",")
        };
        let db = config.get_dbname().unwrap_or(user);
        format!("{user}@{hosts}/{db}")
    }

    /// An error and its sources, as one line (tokio-postgres puts the cause,
    /// e.g. "connection refused", in the source, not in the message).
    pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            let part = cause.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = cause.source();
        }
        text
    }

    /// The password of a connection string, if one can be found, to keep it out
    /// of messages about the string itself.
    pub(crate) fn password_in(url: &str) -> Option<&str> {
        if let Some(rest) = url.split_once("://").map(|(_, rest)| rest) {
            let authority = rest.split(['/', '?']).next().unwrap_or(rest);
            let userinfo = authority.rsplit_once('@')?.0;
            return userinfo.split_once(':').map(|(_, password)| password);
        }
        let start = url.find("password=")? + "password=".len();
        let value = &url[start..];
        let value = value
            .strip_prefix('\'')
            .and_then(|quoted| quoted.split('\'').next())
            .unwrap_or_else(|| value.split_whitespace().next().unwrap_or(""));
        Some(value)
    }
}

#[cfg(feature = "redis")]
pub(crate) mod redis {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::LazyLock;
    use std::time::Duration;

    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind, Value};

    /// A Lua script kept with its source, for `EVAL` when the server does
    /// not have it cached, and its name, for messages.
    pub(crate) struct Lua {
        pub(crate) name: &'static str,
        pub(crate) source: &'static str,
        pub(crate) script: LazyLock<Script>,
    }

    /// Run `lua` on `keys` with `args`: `EVALSHA`, then `EVAL` once if the
    /// server does not have the script. Each request sent is counted in
    /// `round_trips`. No timeout: the caller bounds the whole exchange.
    pub(crate) async fn eval(
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
    pub(crate) fn worth_resending(e: &redis::RedisError) -> bool {
        e.is_connection_dropped() && !e.is_connection_refusal()
    }

    /// A reconnecting connection to the Redis server at `url`, waiting at
    /// most `timeout` per connection attempt, and the server's URL without
    /// its password. `what` names the user in messages ("the idempotency
    /// store").
    pub(crate) async fn connect(
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
    pub(crate) fn redact(url: &str) -> String {
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
