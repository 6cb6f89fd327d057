//! The `lepton` binary: parse arguments, dispatch, map errors to an exit code: 0 on success, 1
//! when a command fails (the error and its causes on stderr), 2 for a usage error (clap).

mod cli;
mod commands;
mod output;
mod progress;
mod tuning;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let json = cli.global.json;
    let server = matches!(cli.command, cli::Command::Serve(_) | cli::Command::Run(_));
    output::init_logging(&cli.global, server);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output::print_error(&err, json);
            ExitCode::FAILURE
        }
    }
}
