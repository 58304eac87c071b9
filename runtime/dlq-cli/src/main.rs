//! `dlq`: inspect, un-park, move and purge the dead letters of a file,
//! PostgreSQL or Redis sink.
//!
//! ```text
//! dlq --file dead-letters.jsonl list
//! dlq --file dead-letters.jsonl show <id>
//! dlq --postgres postgres://app@127.0.0.1/app export --parked > parked.json
//! dlq --postgres postgres://app@127.0.0.1/app replay-count
//! dlq --redis redis://127.0.0.1:6379/ --prefix payments:dlq: unpark --all
//! dlq --file old.jsonl replay --all --to-postgres postgres://app@127.0.0.1/app --remove
//! dlq --file dead-letters.jsonl purge --parked
//! ```
//!
//! Exit codes: 0 on success, 1 when a sink failed, 2 for usage and input
//! errors (see `dlq --help`).

use std::process::ExitCode;

use buttress_dlq::{run, Cli};
use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match run(cli, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dlq: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
