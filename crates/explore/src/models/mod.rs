//! The protocols' models, each a bounded configuration of real cores and its invariants.

pub mod paxos;
