//! The `dlq` operator command's logic: list, show, export, count replays
//! and purge the dead letters of a file or PostgreSQL sink. The binary
//! (`src/main.rs`) only parses the command line and calls [`run`].

use std::io::Write;
use std::path::PathBuf;

use buttress::dlq::{
    rfc3339, DeadLetter, DeadLetterSink, FileSink, PostgresSink, Selection, SinkError,
};
use clap::{Args, Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "dlq",
    version,
    about = "Inspect and purge dead letters kept by buttress's file or PostgreSQL sink",
    long_about = "Inspect and purge dead letters kept by buttress's file or PostgreSQL sink.\n\n\
                  Idempotency keys are shown as short hashes, except by `export --with-keys`.\n\
                  Purging a file sink rewrites the file: stop the application that writes it first."
)]
pub struct Cli {
    /// Where the dead letters are.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The PostgreSQL table (default `buttress_dead_letters`).
    #[arg(long, value_name = "NAME", requires = "postgres")]
    pub table: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--file PATH` or `--postgres URL`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct StoreArgs {
    /// A JSON-lines file written by `FileSink`.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A PostgreSQL connection string (`postgres://user@host:5432/db`).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
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
}

/// Run `cli`, writing to `out`.
///
/// # Errors
/// A [`ToolError`] saying what failed.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<(), ToolError> {
    if let Some(path) = &cli.store.file {
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
        let purged = execute(&cli.command, &sink, out).await?;
        if purged {
            sink.compact().await?;
        }
        return Ok(());
    }
    let url = cli.store.postgres.as_deref().unwrap_or_default();
    let sink = PostgresSink::connect_lazy(url)?;
    let sink = match &cli.table {
        Some(table) => sink.with_table(table)?,
        None => sink,
    };
    execute(&cli.command, &sink, out).await.map(drop)
}

/// Run one command on `sink`; `true` when entries were removed.
async fn execute(
    command: &Command,
    sink: &impl DeadLetterSink,
    out: &mut impl Write,
) -> Result<bool, ToolError> {
    match command {
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
                ids.clone()
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
