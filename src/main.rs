use std::process::ExitCode;

use clap::Parser;
use ipdrift::cli::Cli;
use ipdrift::commands::{self, Outcome};

/// Passes over large fleets allocate and free a great deal; mimalloc does it in fewer
/// instructions than glibc's malloc (BENCHMARKS.md §1c).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // An empty IPDRIFT_CONFIG means "not set", not "a config named ''".
    if std::env::var_os("IPDRIFT_CONFIG").is_some_and(|v| v.is_empty()) {
        // SAFETY: nothing else runs yet; the runtime's worker threads do not read the environment.
        unsafe { std::env::remove_var("IPDRIFT_CONFIG") };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 1: exit 2 means "diff found drift".
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Outcome::Error as u8
            } else {
                0
            });
        }
    };
    commands::init_logging(cli.log_format, &cli.command);
    ExitCode::from(commands::execute(cli).await as u8)
}
