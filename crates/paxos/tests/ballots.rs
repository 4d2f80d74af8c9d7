//! No two proposals of one peer share a ballot: a regression test for the schedule the
//! membership tests found over 300 seeds (commit 9a5cfd9). A campaign's ballot covers every
//! instance from its start; a classic round in one of those instances, numbered from that
//! instance's own state only, took the same round, so the peer could send two values under
//! one ballot in one instance (Paxos's safety rests on one value per ballot).

mod lone;

use lone::{peer, World};
use synod_paxos::{Ballot, PaxosMsg};

/// Every ballot in the messages sent since `from` that asks for promises.
fn prepared(io: &World, from: usize) -> Vec<Ballot> {
    let mut ballots: Vec<Ballot> = io.sent[from..]
        .iter()
        .filter_map(|(_, msg)| match msg {
            PaxosMsg::Prepare { ballot, .. } | PaxosMsg::PrepareAll { ballot, .. } => Some(*ballot),
            _ => None,
        })
        .collect();
    ballots.dedup();
    ballots
}

#[test]
fn a_classic_round_during_a_campaign_takes_a_higher_ballot() {
    let (mut paxos, mut io) = peer(3);
    paxos.campaign(&mut io, 0);
    let campaign = prepared(&io, 0);
    assert_eq!(campaign.len(), 1, "one campaign ballot: {campaign:?}");
    let before = io.sent.len();
    // Instance 5 is covered by the campaign, which has no promises yet: a classic round.
    paxos.start(&mut io, 5, 42);
    let classic = prepared(&io, before);
    assert_eq!(classic.len(), 1, "one classic ballot: {classic:?}");
    assert!(
        classic[0] > campaign[0],
        "the classic ballot {:?} must be above the campaign's {:?}",
        classic[0],
        campaign[0]
    );
}

#[test]
fn a_campaign_after_a_classic_round_takes_a_higher_ballot() {
    let (mut paxos, mut io) = peer(3);
    paxos.start(&mut io, 5, 42);
    let classic = prepared(&io, 0);
    assert_eq!(classic.len(), 1, "one classic ballot: {classic:?}");
    let before = io.sent.len();
    paxos.campaign(&mut io, 0);
    let campaign = prepared(&io, before);
    assert_eq!(campaign.len(), 1, "one campaign ballot: {campaign:?}");
    assert!(
        campaign[0] > classic[0],
        "the campaign's ballot {:?} must be above the classic {:?}",
        campaign[0],
        classic[0]
    );
}
