//! `dlq`: inspect and purge the dead letters of a file or PostgreSQL sink.
//!
//! ```text
//! dlq --file dead-letters.jsonl list
//! dlq --file dead-letters.jsonl show <id>
//! dlq --postgres postgres://app@127.0.0.1/app export --parked > parked.json
//! dlq --postgres postgres://app@127.0.0.1/app replay-count
//! dlq --file dead-letters.jsonl purge --parked
//! ```

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
            ExitCode::FAILURE
        }
    }
}
