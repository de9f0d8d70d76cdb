use std::process::ExitCode;

use clap::Parser;
use ipdrift::cli::Cli;
use ipdrift::commands;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_logging(cli.log_format, &cli.command);
    ExitCode::from(commands::execute(cli).await as u8)
}
