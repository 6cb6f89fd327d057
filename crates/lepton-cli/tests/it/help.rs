//! `--help` and `--version` of every command.

use crate::support::lepton;

const COMMANDS: &[&str] = &[
    "train", "eval", "predict", "cv", "export", "inspect", "serve", "embed", "run", "generate",
    "chat", "compress",
];

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in COMMANDS {
        let run = lepton(&[cmd, "--help"]).success();
        assert!(
            run.stdout.contains(&format!("Usage: lepton {cmd}")),
            "{cmd}: {}",
            run.stdout
        );
        assert!(
            run.stdout.contains("Example:") && run.stdout.contains(&format!("lepton {cmd}")),
            "{cmd} --help has no example: {}",
            run.stdout
        );
    }
    let run = lepton(&["data", "inspect", "--help"]).success();
    assert!(run.stdout.contains("Example:"), "{}", run.stdout);
}

#[test]
fn top_level_help_lists_every_command() {
    let run = lepton(&["--help"]).success();
    for cmd in COMMANDS.iter().chain(&["data"]) {
        assert!(
            run.stdout.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from --help: {}",
            run.stdout
        );
    }
    let version = lepton(&["--version"]).success();
    assert_eq!(
        version.stdout.trim(),
        format!("lepton {}", env!("CARGO_PKG_VERSION"))
    );
}
