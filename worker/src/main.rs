//! `radio-worker`: parses the command line, sets up logging and hands over to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use radio_worker::{generate, pack_verify};

/// The Ace Radio GPU worker.
#[derive(Debug, Parser)]
#[command(name = "radio-worker", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// One variant per subcommand; each hands its arguments to one function in the library.
#[derive(Debug, Subcommand)]
enum Command {
    /// Render one song to a file, without Redis.
    Generate(generate::GenerateArgs),
    /// Check model packs.
    #[command(subcommand)]
    Pack(pack_verify::PackCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    radio_shared::telemetry::init_logging("warn");
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Pack(command) => pack_verify::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
