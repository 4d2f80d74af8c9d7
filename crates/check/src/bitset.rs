//! The set of operations linearized so far, as a fixed-size bitset.
//!
//! The search's cache looks bitsets up after every successful step, so hashing must be cheap:
//! the bitset keeps a Zobrist-style hash (XOR of one pseudo-random word per member) that each
//! insert or remove updates in O(1), instead of hashing all words on every look-up.

use std::hash::{Hash, Hasher};

#[derive(Clone, Debug)]
pub(crate) struct Bitset {
    words: Vec<u64>,
    hash: u64,
}

/// A well-mixed word per bit index (splitmix64's finaliser), so XORs of distinct sets rarely
/// collide.
fn bit_key(index: usize) -> u64 {
    let mut z = (index as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Bitset {
    pub(crate) fn new(len: usize) -> Self {
        Bitset {
            words: vec![0; len.div_ceil(64)],
            hash: 0,
        }
    }

    pub(crate) fn insert(&mut self, index: usize) {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.words[word] & bit == 0 {
            self.words[word] |= bit;
            self.hash ^= bit_key(index);
        }
    }

    pub(crate) fn remove(&mut self, index: usize) {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.words[word] & bit != 0 {
            self.words[word] &= !bit;
            self.hash ^= bit_key(index);
        }
    }

    #[cfg(test)]
    fn contains(&self, index: usize) -> bool {
        self.words[index / 64] & (1u64 << (index % 64)) != 0
    }
}

impl PartialEq for Bitset {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.words == other.words
    }
}

impl Eq for Bitset {}

impl Hash for Bitset {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_round_trip_restores_equality_and_hash() {
        let empty = Bitset::new(130);
        let mut set = Bitset::new(130);
        set.insert(0);
        set.insert(129);
        set.insert(129);
        assert!(set.contains(0) && set.contains(129) && !set.contains(64));
        assert_ne!(set, empty);
        set.remove(0);
        set.remove(129);
        set.remove(5);
        assert_eq!(set, empty);
        assert_eq!(set.hash, empty.hash);
    }

    #[test]
    fn same_members_inserted_in_any_order_are_equal() {
        let mut a = Bitset::new(100);
        let mut b = Bitset::new(100);
        for i in [3, 70, 99] {
            a.insert(i);
        }
        for i in [99, 3, 70] {
            b.insert(i);
        }
        assert_eq!(a, b);
        assert_eq!(a.hash, b.hash);
    }
}
