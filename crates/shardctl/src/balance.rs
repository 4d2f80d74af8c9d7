//! Rebalancing: spread the shards over the groups so counts differ by at most one, moving as
//! few shards as possible, deterministically.

use std::collections::{BTreeMap, BTreeSet};

use crate::Gid;

/// Reassigns `shards` (shard → gid) over `groups`. Shards of groups not in `groups` (or of
/// gid 0) are reassigned; a group keeps its shards unless it holds more than its target.
///
/// With `n` shards and `k` groups every group's target is `n / k`, and `n % k` groups get one
/// more: those that already hold the most (ties: smaller gid), so that as few shards as
/// possible move. Excess shards are taken from the highest shard numbers and handed out in
/// shard order to the groups below target, smallest gid first.
pub fn rebalance(shards: &mut [Gid], groups: &BTreeSet<Gid>) {
    if groups.is_empty() {
        shards.iter_mut().for_each(|g| *g = 0);
        return;
    }
    let (n, k) = (shards.len(), groups.len());
    let mut held: BTreeMap<Gid, Vec<usize>> = groups.iter().map(|&g| (g, Vec::new())).collect();
    let mut free = Vec::new();
    for (shard, gid) in shards.iter().enumerate() {
        match held.get_mut(gid) {
            Some(list) => list.push(shard),
            None => free.push(shard),
        }
    }
    let mut order: Vec<Gid> = groups.iter().copied().collect();
    order.sort_by_key(|g| (std::cmp::Reverse(held[g].len()), *g));
    let target: BTreeMap<Gid, usize> = order
        .iter()
        .enumerate()
        .map(|(i, &g)| (g, n / k + usize::from(i < n % k)))
        .collect();
    for (gid, list) in &mut held {
        while list.len() > target[gid] {
            free.extend(list.pop());
        }
    }
    free.sort_unstable();
    let mut free = free.into_iter();
    for (gid, list) in &mut held {
        while list.len() < target[gid] {
            let Some(shard) = free.next() else { break };
            shards[shard] = *gid;
            list.push(shard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(shards: &[Gid]) -> BTreeMap<Gid, usize> {
        let mut c = BTreeMap::new();
        for &g in shards {
            *c.entry(g).or_default() += 1;
        }
        c
    }

    #[test]
    fn balanced_and_minimal() {
        let mut shards = vec![0; 10];
        rebalance(&mut shards, &BTreeSet::from([1]));
        assert_eq!(shards, vec![1; 10]);
        rebalance(&mut shards, &BTreeSet::from([1, 2]));
        assert_eq!(counts(&shards), BTreeMap::from([(1, 5), (2, 5)]));
        let before = shards.clone();
        rebalance(&mut shards, &BTreeSet::from([1, 2, 3]));
        let c = counts(&shards);
        assert_eq!(c.values().sum::<usize>(), 10);
        assert!(c.values().all(|&v| v == 3 || v == 4), "{c:?}");
        let moved = before.iter().zip(&shards).filter(|(a, b)| a != b).count();
        assert_eq!(moved, 3, "only group 3's shards move");
        rebalance(&mut shards, &BTreeSet::from([2, 3]));
        assert_eq!(counts(&shards), BTreeMap::from([(2, 5), (3, 5)]));
    }

    #[test]
    fn more_groups_than_shards_leaves_some_idle() {
        let mut shards = vec![0; 3];
        rebalance(&mut shards, &(1..=5).collect());
        assert_eq!(shards, vec![1, 2, 3]);
    }
}
