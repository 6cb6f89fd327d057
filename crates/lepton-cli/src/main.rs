//! The `lepton` binary: parse arguments, dispatch, map errors to an exit code.

mod cli;
mod commands;
mod output;
mod progress;
mod tuning;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let server = matches!(cli.command, cli::Command::Serve(_) | cli::Command::Run(_));
    output::init_logging(&cli.global, server);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output::print_error(&err);
            ExitCode::FAILURE
        }
    }
}
