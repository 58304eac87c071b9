//! The `dlq` operator command's logic: list, show, export, count replays,
//! un-park, move and purge the dead letters of a file, PostgreSQL or Redis
//! sink. The binary (`src/main.rs`) only parses the command line, calls
//! [`run`] and exits with [`ToolError::exit_code`].

use std::io::Write;
use std::path::{Path, PathBuf};

use buttress::dlq::{
    rfc3339, DeadLetter, DeadLetterSink, FileSink, PostgresSink, RedisSink, Replayer, Selection,
    SinkError,
};
use clap::{Args, Parser, Subcommand};

/// Exit code on success.
pub const EXIT_OK: u8 = 0;
/// Exit code when a sink failed: its service unreachable or failing,
/// unreadable (corrupt) contents, a file that cannot be read or written.
pub const EXIT_SINK: u8 = 1;
/// Exit code for usage and input errors: bad arguments, a missing
/// `--file`, an unknown id, an invalid PostgreSQL URL or table name.
pub const EXIT_USAGE: u8 = 2;

const EXIT_CODES: &str = "Exit codes:\n  \
    0  success\n  \
    1  a sink failed: connection refused or timed out, corrupt contents, a file that \
    cannot be read or written (an invalid Redis URL is reported here too)\n  \
    2  usage or input error: bad arguments, no file at --file, an unknown id, an \
    invalid PostgreSQL URL or table name, replaying a sink into itself";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "dlq",
    version,
    about = "Inspect, un-park, move and purge dead letters kept by buttress's file, PostgreSQL or Redis sink",
    long_about = "Inspect, un-park, move and purge dead letters kept by buttress's file, \
                  PostgreSQL or Redis sink.\n\n\
                  Idempotency keys are shown as short hashes, except by `export --with-keys`.\n\
                  Commands that remove entries from a file sink (`purge`, `replay --remove`) \
                  rewrite the file: stop the application that writes it first.",
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    /// Where the dead letters are.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The PostgreSQL table (default `buttress_dead_letters`).
    #[arg(long, value_name = "NAME", requires = "postgres")]
    pub table: Option<String>,
    /// The Redis key prefix (default `buttress:dlq:`).
    #[arg(long, value_name = "NAME", requires = "redis")]
    pub prefix: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--file PATH`, `--postgres URL` or `--redis URL`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct StoreArgs {
    /// A JSON-lines file written by `FileSink` (it must exist).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A PostgreSQL connection string (`postgres://user@host:5432/db`).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// A Redis URL (`redis://[user:password@]host:6379/db`), for `RedisSink`.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
}

/// Which entries a command applies to.
#[derive(Debug, Clone, Copy, Args)]
pub struct Which {
    /// Only entries waiting for replay.
    #[arg(long, conflicts_with = "parked")]
    pub pending: bool,
    /// Only parked entries (failed too many replays).
    #[arg(long)]
    pub parked: bool,
}

impl Which {
    const fn selection(self) -> Selection {
        match (self.pending, self.parked) {
            (true, _) => Selection::Pending,
            (_, true) => Selection::Parked,
            _ => Selection::All,
        }
    }
}

/// The sink `replay` writes to.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Into this JSON-lines file (created if missing).
    #[arg(long, value_name = "PATH")]
    pub to_file: Option<PathBuf>,
    /// Into this PostgreSQL database (the table is created if missing).
    #[arg(long, value_name = "URL")]
    pub to_postgres: Option<String>,
    /// Into this Redis server.
    #[arg(long, value_name = "URL")]
    pub to_redis: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One line per entry, oldest first.
    List(Which),
    /// Everything about one entry (the key as a hash).
    Show {
        /// The entry's id.
        id: String,
    },
    /// The entries as a JSON array, on standard output.
    Export {
        #[command(flatten)]
        which: Which,
        /// Include idempotency keys in clear (to replay elsewhere); keep
        /// the output as secret as the keys.
        #[arg(long)]
        with_keys: bool,
    },
    /// Failed replays per entry, and totals.
    #[command(alias = "count")]
    ReplayCount(Which),
    /// Put parked entries back in line for the application's replayer.
    #[command(
        long_about = "Put parked entries back in line for the application's replayer \
                      (`Replayer::unpark`): each one is pending again, with its replay count \
                      reset to 0 and its last replay error kept for reference. The application \
                      replays it on its next `Replayer::replay` pass.\n\n\
                      An unknown id is an error (exit code 2), checked before anything changes; \
                      an id that is not parked is reported and left as it is."
    )]
    Unpark {
        /// Ids of the parked entries.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Un-park every parked entry.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Copy (or, with --remove, move) entries into another sink.
    #[command(
        long_about = "Copy entries into another sink; with --remove, move them.\n\n\
        This command cannot run your application's replay handler (the code that calls \
        the provider again lives in the application, which drives it with \
        `Replayer::replay`). What it does is re-send entries into the sink that \
        application's replayer reads: say, from the file a previous deployment left \
        behind into the live PostgreSQL table or Redis stream. Entries keep their id, \
        idempotency key, replay count and parked flag (un-park them in the target with \
        `dlq ... unpark`). Pushes are idempotent by id, so running it again never \
        duplicates an entry.\n\n\
        Without ids, the selection is --pending (the default), --parked or --all. With \
        --remove, each entry is deleted from the source only once the target stored it: \
        a failure stops the command (exit code 1) with every entry in at least one sink; \
        run it again to finish."
    )]
    Replay {
        /// Ids of the entries to copy (default: the selection).
        ids: Vec<String>,
        /// Where to copy them.
        #[command(flatten)]
        target: Target,
        /// The target PostgreSQL table (default `buttress_dead_letters`).
        #[arg(long, value_name = "NAME", requires = "to_postgres")]
        to_table: Option<String>,
        /// The target Redis key prefix (default `buttress:dlq:`).
        #[arg(long, value_name = "NAME", requires = "to_redis")]
        to_prefix: Option<String>,
        /// Pending entries only (the default).
        #[arg(long, conflicts_with_all = ["ids", "parked", "all"])]
        pending: bool,
        /// Parked entries only.
        #[arg(long, conflicts_with_all = ["ids", "all"])]
        parked: bool,
        /// Every entry, pending and parked.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Delete each entry from the source once the target stored it.
        #[arg(long)]
        remove: bool,
    },
    /// Remove entries: the given ids, or every one of a selection.
    Purge {
        /// Ids of the entries to remove.
        ids: Vec<String>,
        /// Remove every parked entry.
        #[arg(long, conflicts_with_all = ["ids", "all"])]
        parked: bool,
        /// Remove every entry.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Writing the output failed.
    #[error("could not write the output: {0}")]
    Output(#[from] std::io::Error),
    /// No entry with that id.
    #[error("no dead letter with id {0}; `dlq list` shows the ids")]
    NotFound(String),
    /// `purge` without ids, `--parked` or `--all`.
    #[error("purge what? give entry ids, --parked or --all")]
    NothingToPurge,
    /// `--file` names no file.
    #[error("no dead-letter file at {}: check the path (the application creates it on the first dead letter)", .0.display())]
    NoFile(PathBuf),
    /// Arguments the sinks reject before any I/O (a PostgreSQL URL or
    /// table name), or a replay into its own source.
    #[error("{0}")]
    Usage(String),
}

impl ToolError {
    /// The process exit code: [`EXIT_USAGE`] (2) for usage and input
    /// errors, [`EXIT_SINK`] (1) for sink and output failures.
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::Sink(_) | Self::Output(_) => EXIT_SINK,
            Self::NotFound(_) | Self::NothingToPurge | Self::NoFile(_) | Self::Usage(_) => {
                EXIT_USAGE
            }
        }
    }
}

/// Run `cli`, writing to `out`.
///
/// # Errors
/// A [`ToolError`] saying what failed; [`ToolError::exit_code`] is the
/// code to exit with.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<(), ToolError> {
    if let Some(path) = &cli.store.file {
        if !path.is_file() {
            return Err(ToolError::NoFile(path.clone()));
        }
        let sink = open_file(path).await?;
        let removed = execute(&cli, &sink, out).await?;
        if removed {
            sink.compact().await?;
        }
        return Ok(());
    }
    if let Some(url) = &cli.store.postgres {
        let sink = postgres(url, cli.table.as_deref())?;
        return execute(&cli, &sink, out).await.map(drop);
    }
    let url = cli.store.redis.as_deref().unwrap_or_default();
    let sink = redis(url, cli.prefix.as_deref()).await?;
    execute(&cli, &sink, out).await.map(drop)
}

/// Open the file sink at `path`, warning about a torn last line.
async fn open_file(path: &Path) -> Result<FileSink, ToolError> {
    let sink = FileSink::open(path).await?;
    for torn in sink.torn() {
        eprintln!(
            "warning: line {} of {} was torn by a crash ({} bytes); it was skipped and kept in {}",
            torn.line,
            path.display(),
            torn.bytes,
            torn.saved_to.display()
        );
    }
    Ok(sink)
}

/// A lazy PostgreSQL sink: a bad URL or table name is a usage error.
fn postgres(url: &str, table: Option<&str>) -> Result<PostgresSink, ToolError> {
    let usage = |e: SinkError| match e {
        SinkError::Unavailable { message, .. } => ToolError::Usage(message),
        other => ToolError::Usage(other.to_string()),
    };
    let sink = PostgresSink::connect_lazy(url).map_err(usage)?;
    match table {
        Some(table) => sink.with_table(table).map_err(usage),
        None => Ok(sink),
    }
}

/// A connected Redis sink.
async fn redis(url: &str, prefix: Option<&str>) -> Result<RedisSink, ToolError> {
    let sink = RedisSink::connect(url).await?;
    Ok(match prefix {
        Some(prefix) => sink.with_prefix(prefix),
        None => sink,
    })
}

/// Run one command on `sink`; `true` when entries were removed.
async fn execute(
    cli: &Cli,
    sink: &impl DeadLetterSink,
    out: &mut impl Write,
) -> Result<bool, ToolError> {
    match &cli.command {
        Command::List(which) => {
            let entries = sink.list(which.selection()).await?;
            for e in &entries {
                writeln!(
                    out,
                    "{}  {}/{}  {}  attempts={}  replays={}{}  last={}  {}: {}",
                    e.id,
                    e.provider,
                    e.operation,
                    e.reason,
                    e.attempts,
                    e.replays,
                    if e.parked { "  parked" } else { "" },
                    rfc3339(e.last_attempt_at),
                    e.class,
                    e.error
                )?;
            }
            writeln!(out, "{} entr{}", entries.len(), plural(entries.len()))?;
        }
        Command::Show { id } => {
            let entry = sink
                .get(id)
                .await?
                .ok_or_else(|| ToolError::NotFound(id.clone()))?;
            writeln!(out, "{entry}")?;
            let redacted: serde_json::Value =
                serde_json::from_str(&entry.to_redacted_json()).unwrap_or_default();
            writeln!(out, "{}", pretty(&redacted))?;
        }
        Command::Export { which, with_keys } => {
            let entries = sink.list(which.selection()).await?;
            let values: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    if *with_keys {
                        serde_json::to_value(e).unwrap_or_default()
                    } else {
                        serde_json::from_str(&e.to_redacted_json()).unwrap_or_default()
                    }
                })
                .collect();
            writeln!(out, "{}", pretty(&serde_json::Value::Array(values)))?;
        }
        Command::ReplayCount(which) => {
            let entries = sink.list(which.selection()).await?;
            for e in &entries {
                writeln!(
                    out,
                    "{}  replays={}{}{}",
                    e.id,
                    e.replays,
                    if e.parked { "  parked" } else { "" },
                    e.last_replay_error
                        .as_deref()
                        .map(|err| format!("  last error: {err}"))
                        .unwrap_or_default()
                )?;
            }
            writeln!(out, "{}", summary(&entries))?;
        }
        Command::Unpark { ids, all } => {
            let replayer = Replayer::new(sink);
            let entries = if *all {
                replayer.parked().await?
            } else {
                entries_by_id(sink, ids).await?
            };
            let mut unparked = 0usize;
            for e in &entries {
                if e.parked && replayer.unpark(&e.id).await? {
                    unparked += 1;
                    writeln!(
                        out,
                        "unparked {}  {}/{}  replays={} -> 0{}",
                        e.id,
                        e.provider,
                        e.operation,
                        e.replays,
                        e.last_replay_error
                            .as_deref()
                            .map(|err| format!("  last error: {err}"))
                            .unwrap_or_default()
                    )?;
                } else {
                    writeln!(out, "{} is not parked; left as it is", e.id)?;
                }
            }
            writeln!(out, "unparked {unparked} entr{}", plural(unparked))?;
        }
        Command::Replay {
            ids,
            target,
            to_table,
            to_prefix,
            pending: _,
            parked,
            all,
            remove,
        } => {
            if same_sink(cli, target, to_table.as_deref(), to_prefix.as_deref()) {
                return Err(ToolError::Usage(
                    "replay into the sink it reads from: give a different --to-file, \
                     --to-postgres/--to-table or --to-redis/--to-prefix"
                        .to_owned(),
                ));
            }
            let entries = if !ids.is_empty() {
                entries_by_id(sink, ids).await?
            } else if *all {
                sink.list(Selection::All).await?
            } else if *parked {
                sink.list(Selection::Parked).await?
            } else {
                sink.list(Selection::Pending).await?
            };
            let remove = *remove;
            if let Some(path) = &target.to_file {
                let to = open_file(path).await?;
                return copy(sink, &to, &entries, remove, out).await;
            }
            if let Some(url) = &target.to_postgres {
                let to = postgres(url, to_table.as_deref())?;
                to.create_table().await?;
                return copy(sink, &to, &entries, remove, out).await;
            }
            let url = target.to_redis.as_deref().unwrap_or_default();
            let to = redis(url, to_prefix.as_deref()).await?;
            return copy(sink, &to, &entries, remove, out).await;
        }
        Command::Purge { ids, parked, all } => {
            let targets: Vec<String> = if *all || *parked {
                let selection = if *all {
                    Selection::All
                } else {
                    Selection::Parked
                };
                sink.list(selection)
                    .await?
                    .into_iter()
                    .map(|e| e.id)
                    .collect()
            } else if ids.is_empty() {
                return Err(ToolError::NothingToPurge);
            } else {
                entries_by_id(sink, ids)
                    .await?
                    .into_iter()
                    .map(|e| e.id)
                    .collect()
            };
            let mut removed = 0usize;
            for id in &targets {
                if sink.remove(id).await? {
                    removed += 1;
                } else {
                    eprintln!("warning: no dead letter with id {id}");
                }
            }
            writeln!(out, "purged {removed} entr{}", plural(removed))?;
            return Ok(removed > 0);
        }
    }
    Ok(false)
}

/// The entries `ids`, all of them or [`ToolError::NotFound`] for the first
/// one missing (checked before anything changes).
async fn entries_by_id(
    sink: &impl DeadLetterSink,
    ids: &[String],
) -> Result<Vec<DeadLetter>, ToolError> {
    let mut entries = Vec::with_capacity(ids.len());
    for id in ids {
        let entry = sink
            .get(id)
            .await?
            .ok_or_else(|| ToolError::NotFound(id.clone()))?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Push `entries` to `to`, oldest first; with `remove`, delete each from
/// `from` once `to` stored it. `true` when entries were removed.
async fn copy(
    from: &impl DeadLetterSink,
    to: &impl DeadLetterSink,
    entries: &[DeadLetter],
    remove: bool,
    out: &mut impl Write,
) -> Result<bool, ToolError> {
    let verb = if remove { "moved" } else { "copied" };
    let mut removed = false;
    for e in entries {
        to.push(e).await?;
        if remove {
            removed |= from.remove(&e.id).await?;
        }
        writeln!(out, "{verb} {}  {}/{}", e.id, e.provider, e.operation)?;
    }
    writeln!(
        out,
        "{verb} {} entr{}",
        entries.len(),
        plural(entries.len())
    )?;
    Ok(removed)
}

/// Whether `replay`'s target is the sink it reads from (which `--remove`
/// would empty).
fn same_sink(cli: &Cli, target: &Target, table: Option<&str>, prefix: Option<&str>) -> bool {
    const TABLE: &str = "buttress_dead_letters";
    const PREFIX: &str = "buttress:dlq:";
    if let (Some(from), Some(to)) = (&cli.store.file, &target.to_file) {
        return match (from.canonicalize(), to.canonicalize()) {
            (Ok(from), Ok(to)) => from == to,
            _ => from == to,
        };
    }
    if let (Some(from), Some(to)) = (&cli.store.postgres, &target.to_postgres) {
        return from == to && cli.table.as_deref().unwrap_or(TABLE) == table.unwrap_or(TABLE);
    }
    if let (Some(from), Some(to)) = (&cli.store.redis, &target.to_redis) {
        return from == to && cli.prefix.as_deref().unwrap_or(PREFIX) == prefix.unwrap_or(PREFIX);
    }
    false
}

/// `N entries: P pending, Q parked, R failed replays`.
#[must_use]
pub fn summary(entries: &[DeadLetter]) -> String {
    let parked = entries.iter().filter(|e| e.parked).count();
    let replays: u64 = entries.iter().map(|e| u64::from(e.replays)).sum();
    format!(
        "{} entr{}: {} pending, {parked} parked, {replays} failed replay(s)",
        entries.len(),
        plural(entries.len()),
        entries.len() - parked
    )
}

const fn plural(n: usize) -> &'static str {
    if n == 1 {
        "y"
    } else {
        "ies"
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
