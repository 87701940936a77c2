//! The `raftsafe` binary: parses the command line and hands it to the library.
//! `serve` runs a node (the default with no subcommand); everything else is a client or an
//! offline helper (see [`raftsafe::cli`]).

use std::process::ExitCode;

use clap::Parser;
use raftsafe::cli::{self, Cli, Cmd};

fn main() -> ExitCode {
    match Cli::parse().command {
        None => cli::serve(Default::default()),
        Some(Cmd::Serve(settings)) => cli::serve(*settings),
        Some(other) => cli::run(other),
    }
}
