//! The `raftsafe` binary: parses the command line and hands it to the library.
//! `serve` runs a node (the default with no subcommand); everything else is a client or an
//! offline helper (see [`raftsafe::cli`]).

use std::process::ExitCode;

use raftsafe::cli::{self, Cmd};

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        None => cli::serve(Default::default()),
        Some(Cmd::Serve(settings)) => cli::serve(*settings),
        Some(other) => cli::run(other),
    }
}
