//! Membership changes (docs/paxos.md, "Membership changes"): learners that catch up and are
//! promoted, removing the leader, replacing a lost replica under a new id, a change while
//! another is pending, the leader crashing during a change, and a partition between the old
//! and the new voters. Every run checks agreement after every step and the clients' history
//! for linearizability; each prints its seed (`SYNOD_SEED=S` replays one, `SYNOD_SEEDS=N`
//! sweeps more).

mod common;

use std::time::Duration;

use synod_kvpaxos::KvReplica;
use synod_node::NodeId;
use synod_paxos::{Config, ConfigError};
use synod_rsm::Role;
use synod_sim::seeds;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn ids(servers: &[usize]) -> Vec<NodeId> {
    servers.iter().map(|&i| server(i)).collect()
}

fn up(c: &Cluster, i: usize) -> Option<&KvReplica> {
    c.sim.node::<KvReplica>(server(i))
}

/// The newest configuration any running replica knows of.
fn latest(c: &Cluster) -> Config {
    (0..c.n)
        .filter_map(|i| {
            up(c, i)?
                .paxos()
                .schedule()
                .latest()
                .map(|(_, c)| c.clone())
        })
        .max_by_key(|config| config.epoch)
        .expect("some replica knows the configuration")
}

/// Has the group decide the configuration with these voters and learners: proposes it
/// through a running voter, again while the log does not hold it. Returns it.
fn change(c: &mut Cluster, voters: &[usize], learners: &[usize]) -> Config {
    let deadline = c.sim.now() + LIMIT;
    loop {
        let newest = latest(c);
        if newest.voters == ids(voters) && newest.learners == ids(learners) {
            return newest;
        }
        assert!(
            c.sim.now() < deadline,
            "the change to voters {voters:?}, learners {learners:?} was never decided"
        );
        let config = Config {
            epoch: newest.epoch + 1,
            voters: ids(voters),
            learners: ids(learners),
            addrs: Default::default(),
        };
        let via = (0..c.n).find(|&i| up(c, i).is_some_and(|r| r.role() == Role::Voter));
        if let Some(via) = via {
            // Refused while the previous change is not in effect there: tried again below.
            let _ = c.sim.call(server(via), |r: &mut KvReplica, ctx| {
                r.reconfigure(ctx, config.clone())
            });
        }
        c.sim.run_for(Duration::from_millis(300));
    }
}

/// Waits until every listed replica applied far enough that `config` is in effect there.
fn wait_in_effect(c: &mut Cluster, config: &Config, replicas: &[usize]) {
    let what = format!("epoch {} in effect at {replicas:?}", config.epoch);
    c.sim.require(LIMIT, &what, |s| {
        replicas.iter().all(|&i| {
            s.node::<KvReplica>(server(i))
                .is_some_and(|r| r.paxos().config() == Some(config))
        })
    });
}

/// Waits until replica `i` has `role`.
fn wait_role(c: &mut Cluster, i: usize, role: Role) {
    c.sim
        .require(LIMIT, &format!("replica {i} becomes {role:?}"), |s| {
            s.node::<KvReplica>(server(i))
                .is_some_and(|r| r.role() == role)
        });
}

/// Waits until learner `i` has applied within a few instances of `of`.
fn wait_caught_up(c: &mut Cluster, i: usize, of: usize) {
    c.sim
        .require(LIMIT, &format!("replica {i} catches up"), |s| {
            let next = |j: usize| s.node::<KvReplica>(server(j)).map(KvReplica::next);
            matches!((next(i), next(of)), (Some(a), Some(b)) if a + 20 >= b && a > 0)
        });
}

fn keys() -> Vec<String> {
    (0..3).map(|k| format!("k{k}")).collect()
}

/// 3 voters, 2 new replicas: the two join as learners, catch up from a snapshot and the
/// log while clients write, and vote nowhere (with two of the three voters down nothing is
/// decided); promoted, they count: the group survives losing two of its first three.
#[test]
fn learners_catch_up_then_are_promoted_and_count() {
    for seed in seeds(3) {
        let mut c = Cluster::growing(seed, 3, 2, |r| r);
        let clients: Vec<_> = (0..3)
            .map(|_| c.busy_clerk(&[0, 1, 2, 3, 4], keys(), true))
            .collect();
        c.sim.run_for(Duration::from_millis(500));
        assert_eq!(up(&c, 3).unwrap().role(), Role::Joining);
        let added = change(&mut c, &[0, 1, 2], &[3, 4]);
        wait_in_effect(&mut c, &added, &[0, 1, 2, 3, 4]);
        wait_role(&mut c, 3, Role::Learner);
        wait_caught_up(&mut c, 3, 0);
        wait_caught_up(&mut c, 4, 0);

        // Learners never count: voter 0 and two learners are no majority of {0, 1, 2}.
        c.stop(&clients);
        c.wait_idle(&clients, LIMIT, "clients finish");
        c.sim.crash(server(1));
        c.sim.crash(server(2));
        let ck = c.clerk(&[0, 3, 4]);
        c.submit(ck, put("stuck", "no majority"));
        c.sim.run_for(Duration::from_secs(3));
        assert!(
            !c.clerk_ref(ck).idle(),
            "a write decided without a majority of voters"
        );
        c.sim.restart(server(1));
        c.sim.restart(server(2));
        c.wait_idle(&[ck], LIMIT, "the write completes once the voters are back");

        let promoted = change(&mut c, &[0, 1, 2, 3, 4], &[]);
        wait_in_effect(&mut c, &promoted, &[0, 1, 2, 3, 4]);
        for i in 0..5 {
            assert_eq!(up(&c, i).unwrap().role(), Role::Voter, "replica {i}");
        }
        // Three of five: the promoted replicas' votes are needed now.
        c.sim.crash(server(0));
        c.sim.crash(server(1));
        let ck = c.clerk(&[2, 3, 4]);
        c.append(ck, "grown", "x");
        c.check(ck, "grown", "x");
        assert!(c.history.completed() > 50, "too little progress");
        c.check_linearizable();
    }
}

/// The leader is removed: it steps down and stops serving once its removal is in effect,
/// the two others elect a leader and go on.
#[test]
fn removing_the_leader() {
    for seed in seeds(3) {
        let mut c = Cluster::new(seed, 3);
        let clients: Vec<_> = (0..2)
            .map(|_| c.busy_clerk(&[0, 1, 2], keys(), true))
            .collect();
        c.sim
            .require(LIMIT, "a leader", |s| !leaders(s, 3).is_empty());
        let leader = leaders(&c.sim, 3)[0];
        let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let removed = change(&mut c, &rest, &[]);
        wait_in_effect(&mut c, &removed, &rest);
        wait_role(&mut c, leader, Role::Removed);
        c.sim.require(LIMIT, "another leader", |s| {
            rest.iter().any(|i| leaders(s, 3).contains(i))
        });
        assert!(
            !c.leaders().contains(&leader),
            "the removed replica still leads"
        );
        c.stop(&clients);
        c.wait_idle(&clients, LIMIT, "clients finish without the old leader");
        let ck = c.clerk(&rest);
        c.put(ck, "after", "removal");
        c.check(ck, "after", "removal");
        c.check_linearizable();
    }
}

/// Replica 2's machine dies for good; a new replica (new id 3) replaces it: added as a
/// learner, then made a voter in 2's place. With replica 0 down too, 1 and 3 are the
/// majority, so the replacement votes, and it holds every write made before it existed.
#[test]
fn a_lost_replica_is_replaced_under_a_new_id() {
    for seed in seeds(3) {
        let mut c = Cluster::growing(seed, 3, 1, |r| r);
        let ck = c.clerk(&[0, 1, 2, 3]);
        for i in 0..30 {
            c.append(ck, "log", &format!("{i},"));
        }
        c.sim.crash(server(2));
        let clients: Vec<_> = (0..2)
            .map(|_| c.busy_clerk(&[0, 1, 3], keys(), true))
            .collect();
        let began = c.sim.now();
        let learner = change(&mut c, &[0, 1, 2], &[3]);
        wait_in_effect(&mut c, &learner, &[0, 1, 3]);
        wait_caught_up(&mut c, 3, 0);
        let replaced = change(&mut c, &[0, 1, 3], &[]);
        wait_in_effect(&mut c, &replaced, &[0, 1, 3]);
        eprintln!(
            "seed {seed}: replica 2 replaced by 3 (added, caught up, promoted, in effect) in \
             {:?} of virtual time, state {} bytes",
            c.sim.now() - began,
            c.replica(3).status(server(3)).state_bytes
        );
        c.stop(&clients);
        c.wait_idle(&clients, LIMIT, "clients finish");
        c.sim.crash(server(0));
        let only = c.clerk(&[1, 3]);
        let expected: String = (0..30).map(|i| format!("{i},")).collect();
        c.append(only, "log", "30,");
        c.check(only, "log", &format!("{expected}30,"));
        c.check_linearizable();
    }
}

/// Two changes proposed at once by two replicas, and a third while the winner is not in
/// effect: the log takes exactly one, the others are refused (at the replica, or when
/// applied), and the schedule never holds two pending changes (asserted in the core).
#[test]
fn one_change_at_a_time() {
    for seed in seeds(3) {
        let mut c = Cluster::growing(seed, 3, 2, |r| r);
        let ck = c.clerk(&[0, 1, 2]);
        c.put(ck, "a", "1");
        let epoch = latest(&c).epoch + 1;
        let add = |learner: usize| Config {
            epoch,
            voters: ids(&[0, 1, 2]),
            learners: ids(&[learner]),
            addrs: Default::default(),
        };
        let (first, second) = (add(3), add(4));
        let r0 = c.sim.call(server(0), |r: &mut KvReplica, ctx| {
            r.reconfigure(ctx, first.clone())
        });
        let r1 = c.sim.call(server(1), |r: &mut KvReplica, ctx| {
            r.reconfigure(ctx, second.clone())
        });
        assert_eq!((r0, r1), (Ok(()), Ok(())), "both proposed");
        c.sim.require(LIMIT, "one change decided", |s| {
            s.node::<KvReplica>(server(2))
                .is_some_and(|r| r.paxos().schedule().latest().unwrap().1.epoch == epoch)
        });
        let won = latest(&c);
        assert!(won == first || won == second, "{won:?}");
        // The next change, proposed before `won` is in effect at the proposer, is refused.
        let via = (0..3)
            .find(|&i| up(&c, i).unwrap().paxos().config().unwrap().epoch < epoch)
            .unwrap_or(2);
        let third = Config {
            epoch: epoch + 1,
            voters: ids(&[0, 1, 2]),
            learners: ids(&[3, 4]),
            addrs: Default::default(),
        };
        let refused = c.sim.call(server(via), |r: &mut KvReplica, ctx| {
            r.reconfigure(ctx, third.clone())
        });
        if up(&c, via).unwrap().paxos().config().unwrap().epoch < epoch {
            assert!(
                matches!(refused, Err(ConfigError::ChangeInProgress { .. })),
                "{refused:?}"
            );
        }
        wait_in_effect(&mut c, &won, &[0, 1, 2]);
        assert_eq!(latest(&c).epoch, epoch, "a refused change took effect");
        let both = change(&mut c, &[0, 1, 2], &[3, 4]);
        wait_in_effect(&mut c, &both, &[0, 1, 2, 3, 4]);
        c.check(ck, "a", "1");
        c.check_linearizable();
    }
}

/// The leader proposes a change and crashes at once; it may or may not be decided. After
/// a new leader takes over, the change is driven to completion, and nothing is lost.
#[test]
fn leader_crash_during_a_change() {
    for seed in seeds(3) {
        let mut c = Cluster::growing(seed, 3, 1, |r| r);
        let clients: Vec<_> = (0..2)
            .map(|_| c.busy_clerk(&[0, 1, 2, 3], keys(), true))
            .collect();
        c.sim
            .require(LIMIT, "a leader", |s| !leaders(s, 3).is_empty());
        let leader = leaders(&c.sim, 3)[0];
        let config = Config {
            epoch: latest(&c).epoch + 1,
            voters: ids(&[0, 1, 2]),
            learners: ids(&[3]),
            addrs: Default::default(),
        };
        c.sim
            .call(server(leader), |r: &mut KvReplica, ctx| {
                r.reconfigure(ctx, config.clone())
            })
            .expect("the leader proposes");
        c.sim.run_for(Duration::from_millis(1));
        c.sim.crash(server(leader));
        c.sim.run_for(Duration::from_secs(1));
        c.sim.restart(server(leader));
        let added = change(&mut c, &[0, 1, 2], &[3]);
        wait_in_effect(&mut c, &added, &[0, 1, 2, 3]);
        let promoted = change(&mut c, &[0, 1, 2, 3], &[]);
        wait_in_effect(&mut c, &promoted, &[0, 1, 2, 3]);
        c.stop(&clients);
        c.wait_idle(&clients, LIMIT, "clients finish");
        c.check_linearizable();
    }
}

/// Voters {0, 1, 2} become {2, 3, 4}, then the network splits the old-only replicas from
/// the new ones: the new side goes on, the old side decides nothing (agreement is checked
/// after every step), and no read on either side returns stale data.
#[test]
fn partition_between_the_old_and_the_new_voters() {
    for seed in seeds(3) {
        let mut c = Cluster::growing(seed, 3, 2, |r| r);
        let ck = c.clerk(&[0, 1, 2, 3, 4]);
        c.put(ck, "k", "old");
        let added = change(&mut c, &[0, 1, 2], &[3, 4]);
        wait_in_effect(&mut c, &added, &[0, 1, 2, 3, 4]);
        wait_caught_up(&mut c, 3, 2);
        wait_caught_up(&mut c, 4, 2);
        let clients: Vec<_> = (0..3)
            .map(|_| c.busy_clerk(&[0, 1, 2, 3, 4], keys(), true))
            .collect();
        let moved = change(&mut c, &[2, 3, 4], &[]);
        // Split as soon as the new side runs it, whether or not 0 and 1 applied it.
        wait_in_effect(&mut c, &moved, &[2, 3, 4]);
        c.part(&[&[0, 1], &[2, 3, 4]]);
        c.put(ck, "k", "new");
        c.sim.run_for(Duration::from_secs(2));
        let old_side = c.clerk(&[0, 1]);
        c.submit(old_side, get("k"));
        c.sim.run_for(Duration::from_secs(2));
        assert!(
            !c.clerk_ref(old_side).idle(),
            "the old voters answered a read after the change"
        );
        c.stop(&clients);
        c.wait_idle(&clients, LIMIT, "clients finish on the new side");
        c.check(ck, "k", "new");
        c.check_linearizable();
    }
}
