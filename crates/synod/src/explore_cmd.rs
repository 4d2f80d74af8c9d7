//! `synod explore`: runs the model checker (`synod_explore`) on one protocol's real cores and
//! prints what it covered (states explored, distinct states, depth, time) and any
//! counterexample, step by step.
//!
//! Exit codes: 0 no invariant violated, 1 a violation (the schedule is printed).

use std::process::ExitCode;

use synod_explore::models::paxos::PaxosModel;
use synod_explore::{explore, Bounds};

#[derive(clap::Args)]
pub struct ExploreArgs {
    /// The protocol: `paxos`.
    model: ExploreModel,
    /// The wider bound of the safety issue (two instances, proposals with or without a
    /// leader, any peer may lose its disk, a drop and timers), instead of the bound CI runs.
    #[arg(long)]
    deep: bool,
    /// Steps from the initial state.
    #[arg(long, default_value_t = 14)]
    depth: usize,
    /// Stop after this many distinct states (about 100 bytes of memory each).
    #[arg(long, default_value_t = 20_000_000)]
    max_states: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExploreModel {
    Paxos,
}

pub fn run(args: ExploreArgs) -> ExitCode {
    let bounds = Bounds {
        depth: args.depth,
        max_states: args.max_states,
    };
    let report = match args.model {
        ExploreModel::Paxos => {
            let model = match args.deep {
                true => PaxosModel::issue_bound(),
                false => PaxosModel::ci_bound(),
            };
            explore(&model, bounds)
        }
    };
    print!("{report}");
    match report.violation {
        Some(_) => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    }
}
