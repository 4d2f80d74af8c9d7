//! synod's size policy, in one place: the largest value a client may store, and every other
//! size limit derived from it with a stated margin, from the RESP socket to the disk and back.
//!
//! ```text
//!  RESP command   ≤ max_command  = max_value + MAX_KEY_BYTES + COMMAND_OVERHEAD
//!  log entry      ≤ max_entry    = max(BATCH_BYTES, max_value + MAX_KEY_BYTES + ENTRY_OVERHEAD)
//!  peer frame     ≤ max_frame    = max_entry + MESSAGE_OVERHEAD   (one entry per message)
//!  storage record ≤ MAX_RECORD_BYTES = max_frame at the ceiling   (a record is one message's entry)
//!  snapshot       any size, sent in chunks of SNAPSHOT_CHUNK_BYTES (≤ BATCH_BYTES, so a chunk fits a frame)
//! ```
//!
//! Why the default is 8 MiB: every value is carried whole in a Paxos accept to every
//! replica, fsynced by each, kept in memory and in every snapshot, so its cost is paid three
//! times over and it holds its peer link for its transfer time. etcd, built the same way,
//! stops at 1.5 MiB; Redis, a single in-memory node, at 512 MB. 8 MiB covers documents and
//! pictures a key/value store is asked to hold, keeps a maximum-size transfer on a LAN in the
//! tens of milliseconds, and keeps a peer frame under 9 MiB. The ceiling (64 MiB, what the
//! RESP front accepted before this policy) bounds what an operator may configure: above it a
//! replicated store is the wrong tool.
//!
//! A limit only works if every replica uses the same one: give every replica of a cluster the
//! same `--max-value-bytes` (`synod up` does).

/// The default largest value, in bytes (see the module docs for why).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 << 20;
/// The largest `--max-value-bytes` an operator may configure.
pub const MAX_VALUE_CEILING: usize = 64 << 20;
/// The smallest `--max-value-bytes` an operator may configure.
pub const MAX_VALUE_FLOOR: usize = 1 << 10;
/// The longest key. Keys are names, not data: they are copied into session tables, logs and
/// every snapshot's index.
pub const MAX_KEY_BYTES: usize = 64 << 10;
/// What a RESP command adds to its key and value: the command name, array and bulk headers.
pub const COMMAND_OVERHEAD: usize = 4 << 10;
/// What a log entry adds to its key and value: enum tags, client id, sequence number, varint
/// lengths (postcard), with room to spare.
pub const ENTRY_OVERHEAD: usize = 4 << 10;
/// Small entries that arrive together share one Paxos instance up to this many bytes; a
/// larger entry goes alone.
pub const BATCH_BYTES: usize = 1 << 20;
/// What a peer message adds to the one entry (or one snapshot chunk) it carries: ballots,
/// instance numbers, `done` marks, the enum tags of every layer.
pub const MESSAGE_OVERHEAD: usize = 64 << 10;
/// A snapshot travels between replicas in pieces of at most this many bytes.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// The largest record a storage log accepts: a message's entry at the ceiling, so no
/// configuration can make a core write a record its own storage refuses.
pub const MAX_RECORD_BYTES: usize = Limits::CEILING.max_frame();

const _: () = assert!(
    SNAPSHOT_CHUNK_BYTES <= BATCH_BYTES,
    "a chunk must fit a frame"
);
const _: () = assert!(DEFAULT_MAX_VALUE_BYTES <= MAX_VALUE_CEILING);
const _: () = assert!(MAX_VALUE_FLOOR <= DEFAULT_MAX_VALUE_BYTES);

/// The size policy of one server: its largest value, and everything derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    max_value: usize,
}

/// A `--max-value-bytes` outside the range an operator may configure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a maximum value size of {0} bytes is outside {MAX_VALUE_FLOOR}..={MAX_VALUE_CEILING}")]
pub struct LimitOutOfRange(pub usize);

/// A key or value refused for its size; shown to clients as `value too large (N > limit)`.
/// It travels in replies, hence serde.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum TooLarge {
    #[error("value too large ({size} > {limit})")]
    Value { size: u64, limit: u64 },
    #[error("key too large ({size} > {limit})")]
    Key { size: u64, limit: u64 },
    /// A whole command (every argument and its framing) above the policy.
    #[error("command too large ({size} > {limit})")]
    Command { size: u64, limit: u64 },
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

impl Limits {
    /// The most permissive policy an operator may configure. A client, which trusts its
    /// servers, accepts frames this large so it can read whatever a server was allowed to store.
    pub const CEILING: Limits = Limits {
        max_value: MAX_VALUE_CEILING,
    };

    /// The frame limit of the default policy, for constants.
    pub const DEFAULT_FRAME: usize = Limits {
        max_value: DEFAULT_MAX_VALUE_BYTES,
    }
    .max_frame();

    /// The policy whose largest value is `max_value` bytes.
    pub fn new(max_value: usize) -> Result<Self, LimitOutOfRange> {
        if (MAX_VALUE_FLOOR..=MAX_VALUE_CEILING).contains(&max_value) {
            Ok(Limits { max_value })
        } else {
            Err(LimitOutOfRange(max_value))
        }
    }

    /// The largest value a client may store, in bytes.
    pub const fn max_value(&self) -> usize {
        self.max_value
    }

    /// The largest RESP command: one key and one value, plus the protocol's framing.
    pub const fn max_command(&self) -> usize {
        self.max_value + MAX_KEY_BYTES + COMMAND_OVERHEAD
    }

    /// The largest serialized log entry: a batch of small entries, or one entry with a
    /// value at the limit.
    pub const fn max_entry(&self) -> usize {
        let single = self.max_value + MAX_KEY_BYTES + ENTRY_OVERHEAD;
        if single > BATCH_BYTES {
            single
        } else {
            BATCH_BYTES
        }
    }

    /// The largest frame a server sends or accepts: one entry (or one snapshot chunk, or
    /// one value in a reply) and its message's envelope.
    pub const fn max_frame(&self) -> usize {
        self.max_entry() + MESSAGE_OVERHEAD
    }

    /// Refuses a key or value above the policy.
    pub fn check(&self, key: usize, value: usize) -> Result<(), TooLarge> {
        if key > MAX_KEY_BYTES {
            return Err(TooLarge::Key {
                size: key as u64,
                limit: MAX_KEY_BYTES as u64,
            });
        }
        if value > self.max_value {
            return Err(TooLarge::Value {
                size: value as u64,
                limit: self.max_value as u64,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_holds_a_value_at_the_limit_and_its_envelope() {
        for limits in [
            Limits::default(),
            Limits::CEILING,
            Limits::new(MAX_VALUE_FLOOR).unwrap(),
        ] {
            let value = limits.max_value();
            assert!(limits.max_command() >= value + MAX_KEY_BYTES);
            assert!(limits.max_entry() >= value + MAX_KEY_BYTES + ENTRY_OVERHEAD);
            assert!(limits.max_entry() >= BATCH_BYTES);
            assert!(limits.max_frame() >= SNAPSHOT_CHUNK_BYTES + MESSAGE_OVERHEAD);
            assert!(limits.max_frame() <= MAX_RECORD_BYTES);
            assert!(
                u32::try_from(limits.max_frame()).is_ok(),
                "frame length is a u32"
            );
        }
    }

    #[test]
    fn values_and_keys_above_the_policy_are_refused_with_their_sizes() {
        let limits = Limits::new(4096).unwrap();
        assert_eq!(limits.check(10, 4096), Ok(()));
        let refused = limits.check(10, 4097).unwrap_err();
        assert_eq!(refused.to_string(), "value too large (4097 > 4096)");
        assert!(matches!(
            limits.check(MAX_KEY_BYTES + 1, 0),
            Err(TooLarge::Key { .. })
        ));
        assert_eq!(
            Limits::new(MAX_VALUE_CEILING + 1),
            Err(LimitOutOfRange(MAX_VALUE_CEILING + 1))
        );
        assert!(Limits::new(0).is_err());
    }
}
