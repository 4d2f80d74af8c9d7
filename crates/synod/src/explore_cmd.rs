//! `synod explore`: runs the model checker (`synod_explore`) on one protocol's real cores and
//! prints what it covered (states explored, distinct states, depth, time) and any
//! counterexample, step by step.
//!
//! Exit codes: 0 no invariant violated, 1 a violation (the schedule is printed).

use std::process::ExitCode;

use synod_explore::models::kv::KvModel;
use synod_explore::models::paxos::PaxosModel;
use synod_explore::models::pb::PbModel;
use synod_explore::{explore, Bounds, Model, Report};

#[derive(clap::Args)]
pub struct ExploreArgs {
    /// The protocol: `paxos`, `paxos-two-wipes` (two lost disks around a leader), `kv` (the
    /// Paxos KV with clients) or `pb` (the view service with primary/backup and clients).
    model: ExploreModel,
    /// The wider bound of the safety issue (two instances, proposals with or without a
    /// leader, any peer may lose its disk, a drop and timers), instead of the bound CI runs.
    #[arg(long)]
    deep: bool,
    /// Steps from the initial state (default: the depth CI covers for the model).
    #[arg(long)]
    depth: Option<usize>,
    /// Stop after this many distinct states (about 100 bytes of memory each).
    #[arg(long, default_value_t = 20_000_000)]
    max_states: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExploreModel {
    Paxos,
    PaxosTwoWipes,
    Kv,
    Pb,
}

pub fn run(args: ExploreArgs) -> ExitCode {
    let bounds = Bounds {
        depth: args.depth.unwrap_or(args.model.ci_depth()),
        max_states: args.max_states,
    };
    let report = match (args.model, args.deep) {
        (ExploreModel::Paxos, false) => run_model(&PaxosModel::ci_bound(), bounds),
        (ExploreModel::Paxos, true) => run_model(&PaxosModel::issue_bound(), bounds),
        (ExploreModel::PaxosTwoWipes, _) => run_model(&PaxosModel::two_wipes_bound(), bounds),
        (ExploreModel::Kv, false) => run_model(&KvModel::ci_bound(), bounds),
        (ExploreModel::Kv, true) => run_model(&KvModel::issue_bound(), bounds),
        (ExploreModel::Pb, false) => run_model(&PbModel::ci_bound(), bounds),
        (ExploreModel::Pb, true) => run_model(&PbModel::issue_bound(), bounds),
    };
    print!("{report}");
    match report.violation {
        Some(_) => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    }
}

impl ExploreModel {
    /// The depth `cargo test -p synod-explore` covers completely for the model's CI bound.
    fn ci_depth(self) -> usize {
        match self {
            ExploreModel::Paxos => PaxosModel::CI_DEPTH,
            ExploreModel::PaxosTwoWipes => PaxosModel::TWO_WIPES_CI_DEPTH,
            ExploreModel::Kv => KvModel::CI_DEPTH,
            ExploreModel::Pb => PbModel::CI_DEPTH,
        }
    }
}

fn run_model(model: &impl Model, bounds: Bounds) -> Report {
    explore(model, bounds)
}
