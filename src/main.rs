//! The `raftsafe` binary: parses the command line and hands it to the library.
//! `serve` runs a node (the default with no subcommand); everything else is a client or an
//! offline helper (see [`raftsafe::cli`]).

use std::process::ExitCode;

use raftsafe::cli::{self, Cmd};

/// Per-thread heaps instead of glibc's locked arenas: every request allocates (headers,
/// JSON, the answer), and on a busy node glibc's malloc was a sixth of the CPU
/// (BENCHMARKS.md, "Where a linearizable GET's CPU goes"). The library leaves the
/// choice to the program that links it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
