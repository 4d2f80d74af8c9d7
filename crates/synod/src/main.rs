//! The `synod` binary: one command line for every synod service.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "synod", version, about = "Fault-tolerant distributed systems: MapReduce, primary/backup, Paxos and sharded KV")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}
