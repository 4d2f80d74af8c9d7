//! The protocols' models, each a bounded configuration of real cores and its invariants.

pub mod clients;
pub mod kv;
pub mod paxos;
pub mod pb;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use synod_paxos::{Membership, PaxosConfig};

use crate::world::{Life, World};

/// The Paxos configuration of a node's `life`: a life after a wipe rejoins. Its quiet period
/// is not a wait here but the rule in [`quiet_before_rejoin`].
pub(crate) fn paxos_config(life: Life) -> PaxosConfig {
    PaxosConfig {
        rejoin: life == Life::Wiped,
        rejoin_quiet: Duration::ZERO,
        ..PaxosConfig::default()
    }
}

/// `rejoin_quiet`, as the checker models it: when the timer of a peer that is rejoining
/// fires (it is about to ask the others), the messages sent before the disk loss that are
/// still in flight are lost.
pub(crate) fn quiet_before_rejoin<M, G>(world: &mut World<M, G>, membership: Option<Membership>)
where
    M: Clone + std::hash::Hash + Eq + Debug + 'static,
    G: std::hash::Hash,
{
    if membership == Some(Membership::Rejoining) {
        world.lose_messages_of_lost_lives();
    }
}

/// One value per instance: records the decisions of the node in `slot` in `seen` (every
/// decision any node ever held) and fails on the first that contradicts one.
pub(crate) fn agree<'a, V: Clone + PartialEq + Debug + 'a>(
    seen: &mut BTreeMap<u64, V>,
    slot: usize,
    decided: impl Iterator<Item = (u64, &'a V)>,
) -> Result<(), String> {
    for (seq, value) in decided {
        match seen.get(&seq) {
            Some(first) if first != value => {
                return Err(format!(
                    "one value per instance: n{slot} decided {value:?} in instance {seq}, \
                     where {first:?} was decided"
                ))
            }
            Some(_) => {}
            None => {
                seen.insert(seq, value.clone());
            }
        }
    }
    Ok(())
}
