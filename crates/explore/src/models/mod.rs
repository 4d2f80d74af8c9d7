//! The protocols' models, each a bounded configuration of real cores and its invariants.

pub mod clients;
pub mod kv;
pub mod paxos;
pub mod pb;

use std::collections::BTreeMap;
use std::fmt::Debug;

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
