//! Connection helpers: a pool without TLS, table-name checks and messages
//! about connection strings that never show a password.

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
