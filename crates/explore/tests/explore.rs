//! The bounded explorations CI runs: each model's real cores, every interleaving up to the
//! bound, no invariant violated. `synod explore MODEL --deep` runs the wider bounds.

use synod_explore::models::kv::KvModel;
use synod_explore::models::paxos::PaxosModel;
use synod_explore::models::pb::PbModel;
use synod_explore::{explore, Bounds, Model};

fn explore_clean(model: &impl Model, depth: usize) {
    let report = explore(
        model,
        Bounds {
            depth,
            max_states: 5_000_000,
        },
    );
    println!("{report}");
    assert!(report.violation.is_none(), "{report}");
    assert!(report.complete, "the bound was not covered: {report}");
    assert!(
        report.distinct > 100_000,
        "explored too little to mean anything: {report}"
    );
}

/// Covers the safety issue's schedule (dueling leaders around a wiped acceptor): on the code
/// before the ballot floor, this bound finds it at depth 14.
#[test]
fn paxos_two_leaders_and_a_wiped_acceptor() {
    explore_clean(&PaxosModel::ci_bound(), PaxosModel::CI_DEPTH);
}

/// Two lost disks around a leader (at once, or one during the other's rejoin): beyond what
/// three peers tolerate, so the group may stop, but it never decides two values or breaks a
/// promise that counted.
#[test]
fn paxos_two_lost_disks_never_contradict() {
    explore_clean(
        &PaxosModel::two_wipes_bound(),
        PaxosModel::TWO_WIPES_CI_DEPTH,
    );
}

/// The Paxos KV with a write and a read from two clients, through the leader or a follower,
/// with a retry each: every order of every message.
#[test]
fn kv_write_and_read_through_leader_and_follower() {
    explore_clean(&KvModel::ci_bound(), KvModel::CI_DEPTH);
}

/// The Paxos KV asked to remove replica 2 while a write and a read go through the leader:
/// the change and the operations in every order of every message, up to the change being
/// decided (not yet its taking effect, 8 instances later).
#[test]
fn kv_membership_change_among_a_write_and_a_read() {
    explore_clean(&KvModel::membership_bound(), KvModel::MEMBERSHIP_CI_DEPTH);
}

/// Primary/backup with a write and a read from two clients, a server crash and two timer
/// firings (a restarted server, a view change).
#[test]
fn pb_write_and_read_with_a_crash() {
    explore_clean(&PbModel::ci_bound(), PbModel::CI_DEPTH);
}
