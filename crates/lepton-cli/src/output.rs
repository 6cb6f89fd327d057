//! Terminal output: logging set-up, error printing, and the `--quiet` / `--json` modes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::GlobalArgs;

/// How a command reports to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Progress bars and tables.
    Human,
    /// One JSON object per event or result on stdout.
    Json,
    /// Errors only.
    Quiet,
}

impl Mode {
    pub fn from_args(args: &GlobalArgs) -> Self {
        if args.json {
            Mode::Json
        } else if args.quiet {
            Mode::Quiet
        } else {
            Mode::Human
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the level (default `info`, `warn` with `--quiet`).
/// Servers (`json_logs`) always log JSON lines, as access logs are meant for machines.
pub fn init_logging(args: &GlobalArgs, json_logs: bool) {
    let default = if json_logs {
        "info"
    } else if args.quiet || args.json {
        "warn"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if args.json || json_logs {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_target(false).init();
    }
}

/// Print an error and its causes on stderr: one per line, or with `--json` one object
/// `{"error": message, "causes": [message, ...]}` so scripts can parse failures too.
pub fn print_error(err: &anyhow::Error, json: bool) {
    if json {
        let causes: Vec<String> = err.chain().skip(1).map(ToString::to_string).collect();
        eprintln!(
            "{}",
            serde_json::json!({"error": err.to_string(), "causes": causes})
        );
        return;
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// Print a serialisable value as one line of JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
