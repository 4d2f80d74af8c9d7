//! A read barrier asks only as many peers as a majority needs, the prompt ones first, and
//! every peer that has not answered once the hedge passes without a majority; it completes
//! only on a majority's answers, whoever was asked.

mod lone;

use std::time::Duration;

use lone::{peer, World};
use synod_node::NodeId;
use synod_paxos::{Paxos, PaxosMsg};

/// Who was asked barrier `id` since the message at `from`, in order.
fn asked(world: &World, from: usize, id: u64) -> Vec<NodeId> {
    world.sent[from..]
        .iter()
        .filter(|(_, msg)| matches!(msg, PaxosMsg::ReadQuery { id: asked, .. } if *asked == id))
        .map(|(to, _)| *to)
        .collect()
}

fn answer(paxos: &mut Paxos<u64>, world: &mut World, from: u64, id: u64, max: Option<u64>) {
    let msg = PaxosMsg::ReadMax { id, max, done: 0 };
    paxos.handle(world, NodeId(from), msg);
}

#[test]
fn a_barrier_asks_one_peer_of_three_and_the_other_after_the_hedge() {
    let (mut paxos, mut world) = peer(3);
    let id = paxos.read_barrier(&mut world);
    assert_eq!(
        asked(&world, 0, id),
        [NodeId(1)],
        "one answer makes a majority"
    );
    paxos.tick(&mut world);
    assert_eq!(asked(&world, 0, id).len(), 1, "the hedge has not passed");
    // Peer 1 is silent (gone, slow, or the query was lost): after the hedge every peer
    // that has not answered is asked, peer 2 for the first time.
    world.now += Duration::from_millis(10);
    let before = world.sent.len();
    paxos.tick(&mut world);
    assert_eq!(asked(&world, before, id), [NodeId(1), NodeId(2)]);
    assert_eq!(paxos.barrier(id), None, "no answer yet");
    answer(&mut paxos, &mut world, 2, id, Some(7));
    assert_eq!(paxos.barrier(id), Some(Some(7)), "a majority answered");
    paxos.end_barrier(id);
    // Peer 2 answered while the barrier waited: the next barrier asks it first, and only it.
    let before = world.sent.len();
    let next = paxos.read_barrier(&mut world);
    assert_eq!(asked(&world, before, next), [NodeId(2)]);
}

#[test]
fn a_barrier_asks_a_majority_of_five_and_completes_only_on_their_answers() {
    let (mut paxos, mut world) = peer(5);
    let id = paxos.read_barrier(&mut world);
    assert_eq!(asked(&world, 0, id), [NodeId(1), NodeId(2)]);
    answer(&mut paxos, &mut world, 1, id, Some(3));
    assert_eq!(paxos.barrier(id), None, "two of five, itself included");
    answer(&mut paxos, &mut world, 2, id, None);
    assert_eq!(paxos.barrier(id), Some(Some(3)));
    // Answers after the barrier completed do not make a peer prompt: peer 4's late one.
    answer(&mut paxos, &mut world, 4, id, Some(9));
    paxos.end_barrier(id);
    let before = world.sent.len();
    let next = paxos.read_barrier(&mut world);
    assert_eq!(asked(&world, before, next), [NodeId(2), NodeId(1)]);
    // After the retry everyone silent is asked again, messages being losable.
    world.now += Duration::from_millis(10);
    paxos.tick(&mut world);
    let hedged = world.sent.len();
    world.now += Duration::from_millis(100);
    paxos.tick(&mut world);
    let mut again = asked(&world, hedged, next);
    again.sort();
    assert_eq!(again, [NodeId(1), NodeId(2), NodeId(3), NodeId(4)]);
}
