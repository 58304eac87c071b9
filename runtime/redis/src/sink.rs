//! `RedisSink` (feature `redis`): dead letters in a Redis stream.
//!
//! # What it guarantees
//!
//! - **A stream of dead letters.** Each push appends a record (`XADD`, fields
//!   `id` and `entry`, the entry as JSON) to `{prefix}stream`, so other
//!   tools can follow new dead letters with `XREAD` or consumer groups.
//!   The entry's current version (replay count, parked flag) is kept in the
//!   hash `{prefix}entries` (id → JSON), and `{prefix}index` maps each id to
//!   its stream record, so a removal deletes the record (`XDEL`).
//! - **Atomic operations.** Push, update, list and remove are each one Lua
//!   script, which Redis runs atomically: a push is idempotent by id even
//!   from many processes, and an update never resurrects a removed entry.
//! - Entries are listed oldest first (stream order); a list runs one script
//!   over the whole stream, so keep dead letters few (replay or purge them).
//! - Every request is bounded by a timeout (default 2 s); failures are
//!   [`SinkError::Unavailable`] naming the server without its password;
//!   stored values that are not dead letters are [`SinkError::Corrupt`]
//!   naming the entry.
//! - Redis's durability is the limit: without persistence (AOF) a restart
//!   loses recent entries. The three keys must live on one node (no
//!   cluster; a `{hash tag}` in the prefix keeps them in one slot).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use buttress_core::dlq::{DeadLetter, DeadLetterSink, Selection, SinkError};

const DEFAULT_PREFIX: &str = "buttress:dlq:";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS: stream, entries, index. ARGV: id, entry. 1 when added.
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local sid = redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'entry', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], sid)
return 1
",
    )
});

/// KEYS: entries. ARGV: id, entry. 1 when updated.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
",
    )
});

/// KEYS: stream, entries, index. ARGV: id. 1 when removed.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local sid = redis.call('HGET', KEYS[3], ARGV[1])
if not sid then return 0 end
redis.call('XDEL', KEYS[1], sid)
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
",
    )
});

/// KEYS: stream, entries. Replies id, entry, id, entry… in stream order.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for _, record in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local fields = record[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then
      local entry = redis.call('HGET', KEYS[2], fields[i + 1])
      if entry then
        table.insert(out, fields[i + 1])
        table.insert(out, entry)
      end
    end
  end
end
return out
",
    )
});

/// Dead letters in a Redis stream (see the module documentation for the
/// layout and guarantees). Cheap to clone; clones share the connection.
///
/// # Default
/// Prefix `buttress:dlq:`, a 2 s timeout per request.
///
/// ```no_run
/// # async fn demo() -> Result<(), buttress::dlq::SinkError> {
/// use buttress::dlq::RedisSink;
///
/// let sink = RedisSink::connect("redis://127.0.0.1:6379/").await?.with_prefix("payments:dlq:");
/// # let _ = sink;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSink {
    connection: ConnectionManager,
    endpoint: Arc<str>,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisSink {
    /// Connect to the Redis server at `url` (`redis://[user:password@]host:port/db`).
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when the URL is invalid or the server
    /// cannot be reached; the message names it without the password.
    pub async fn connect(url: &str) -> Result<Self, SinkError> {
        let (connection, endpoint) =
            buttress_core::__backend::redis::connect(url, DEFAULT_TIMEOUT, "the dead-letter sink")
                .await
                .map_err(SinkError::unavailable)?;
        Ok(Self {
            connection,
            endpoint: endpoint.into(),
            prefix: Arc::from(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Keep the keys under `prefix` (default `buttress:dlq:`): the stream
    /// `{prefix}stream` and the hashes `{prefix}entries` and `{prefix}index`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// Bound each request by `timeout` (default 2 s).
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The name of the stream dead letters are appended to.
    #[must_use]
    pub fn stream_key(&self) -> String {
        format!("{}stream", self.prefix)
    }

    fn keys(&self) -> [String; 3] {
        [
            self.stream_key(),
            format!("{}entries", self.prefix),
            format!("{}index", self.prefix),
        ]
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, SinkError> {
        let mut connection = self.connection.clone();
        let exchange = async {
            match invocation.invoke_async(&mut connection).await {
                // The connection had died (a restart while it sat idle):
                // the manager reconnects; a push is keyed by the entry's id
                // and the other scripts write what they wrote, so sending
                // again changes nothing the first sending did.
                Err(e) if buttress_core::__backend::redis::worth_resending(&e) => {
                    invocation.invoke_async(&mut connection).await
                }
                answer => answer,
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(SinkError::unavailable(format!(
                "Redis at {} failed to {what} for the dead-letter sink: {e}; check that Redis \
                 is running and reachable, and that no other program writes under the prefix {:?}",
                self.endpoint, self.prefix
            ))),
            Err(_) => Err(SinkError::unavailable(format!(
                "Redis at {} did not answer within {:?} (trying to {what} for the dead-letter \
                 sink); check that the server is up and not overloaded",
                self.endpoint, self.timeout
            ))),
        }
    }

    fn parse(&self, id: &str, json: &str) -> Result<DeadLetter, SinkError> {
        serde_json::from_str(json).map_err(|e| {
            SinkError::corrupt(format!(
                "entry {id} in {}entries at {} is not a dead letter: {e}; fix or delete it",
                self.prefix, self.endpoint
            ))
        })
    }
}

impl DeadLetterSink for RedisSink {
    async fn push(&self, entry: &DeadLetter) -> Result<(), SinkError> {
        let json = serde_json::to_string(entry).map_err(|e| {
            SinkError::corrupt(format!("entry {} cannot be serialized: {e}", entry.id))
        })?;
        let [stream, entries, index] = self.keys();
        let mut invocation = PUSH.prepare_invoke();
        invocation
            .key(stream)
            .key(entries)
            .key(index)
            .arg(&entry.id)
            .arg(json);
        self.run::<i64>("store a dead letter", invocation)
            .await
            .map(drop)
    }

    async fn list(&self, selection: Selection) -> Result<Vec<DeadLetter>, SinkError> {
        let [stream, entries, _] = self.keys();
        let mut invocation = LIST.prepare_invoke();
        invocation.key(stream).key(entries);
        let flat: Vec<String> = self.run("list dead letters", invocation).await?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            if let [id, json] = pair {
                let entry = self.parse(id, json)?;
                if selection.contains(&entry) {
                    out.push(entry);
                }
            }
        }
        Ok(out)
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, SinkError> {
        let [_, entries, _] = self.keys();
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("HGET");
        command.arg(entries).arg(id);
        let answer = tokio::time::timeout(
            self.timeout,
            command.query_async::<Option<String>>(&mut connection),
        )
        .await;
        match answer {
            Ok(Ok(json)) => json.map(|json| self.parse(id, &json)).transpose(),
            Ok(Err(e)) => Err(SinkError::unavailable(format!(
                "Redis at {} failed to read a dead letter: {e}; check that Redis is running and reachable",
                self.endpoint
            ))),
            Err(_) => Err(SinkError::unavailable(format!(
                "Redis at {} did not answer within {:?} (trying to read a dead letter)",
                self.endpoint, self.timeout
            ))),
        }
    }

    async fn update(&self, entry: &DeadLetter) -> Result<bool, SinkError> {
        let json = serde_json::to_string(entry).map_err(|e| {
            SinkError::corrupt(format!("entry {} cannot be serialized: {e}", entry.id))
        })?;
        let [_, entries, _] = self.keys();
        let mut invocation = UPDATE.prepare_invoke();
        invocation.key(entries).arg(&entry.id).arg(json);
        Ok(self.run::<i64>("update a dead letter", invocation).await? == 1)
    }

    async fn remove(&self, id: &str) -> Result<bool, SinkError> {
        let [stream, entries, index] = self.keys();
        let mut invocation = REMOVE.prepare_invoke();
        invocation.key(stream).key(entries).key(index).arg(id);
        Ok(self.run::<i64>("remove a dead letter", invocation).await? == 1)
    }
}
