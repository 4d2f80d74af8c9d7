//! Snapshot transfer: how a replica whose peers forgot instances it needs gets a peer's state
//! machine, in chunks that each fit a frame, whatever the size of the state.
//!
//! The replica that is behind pulls: it asks a peer for the chunk at an offset of a snapshot
//! it names (`SnapshotRequest { next, resume }`), one chunk at a time, asking again after a
//! silence. The peer serializes its state once per transfer ([`Serving`]) and answers every
//! request from that copy, so it holds one serialized state however many peers fetch it and
//! however often they retry. A snapshot is named by a [`SnapshotId`] (the instance it
//! starts after, its length and checksum): a request for a snapshot the peer no longer has
//! (it restarted, or made a newer one) is answered with the start of its current one, and the
//! receiver starts over. The receiver ([`Receiving`]) keeps the bytes received in order and
//! installs the state atomically once all of them arrived and the checksum matches; a chunk
//! lost, duplicated or reordered is just asked for again.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use synod_node::NodeId;

/// Names one serialized snapshot: the state after every instance below `next`, `len` bytes
/// long, with CRC-32 `checksum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotId {
    pub next: u64,
    pub len: u64,
    pub checksum: u32,
}

/// A serialized state this replica serves to peers that are behind.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Serving {
    pub id: SnapshotId,
    bytes: Arc<[u8]>,
    /// When a peer last asked for a chunk of it: it is dropped after [`SERVING_IDLE`].
    pub last_asked: Duration,
}

/// How long a serialized state is kept without requests before its memory is released.
pub(crate) const SERVING_IDLE: Duration = Duration::from_secs(10);

impl Serving {
    pub fn new(next: u64, bytes: Vec<u8>, now: Duration) -> Self {
        let id = SnapshotId {
            next,
            len: bytes.len() as u64,
            checksum: crc32fast::hash(&bytes),
        };
        Serving {
            id,
            bytes: bytes.into(),
            last_asked: now,
        }
    }

    /// The chunk of at most `size` bytes at `offset` (at 0 when `offset` is past the end).
    pub fn chunk(&self, offset: u64, size: usize) -> (u64, Vec<u8>) {
        let start = usize::try_from(offset)
            .ok()
            .filter(|&o| o < self.bytes.len())
            .unwrap_or(0);
        let end = self.bytes.len().min(start + size);
        (start as u64, self.bytes[start..end].to_vec())
    }
}

/// A snapshot on its way from a peer: the bytes received so far, in order.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Receiving {
    pub id: SnapshotId,
    pub from: NodeId,
    bytes: Vec<u8>,
    /// Requests in a row that got no chunk: after [`MAX_STALLS`] the replica asks another peer.
    pub stalls: u32,
}

/// Requests in a row without an answer before the receiver turns to another peer (and so,
/// most likely, another snapshot from the start).
pub(crate) const MAX_STALLS: u32 = 5;

/// What a chunk did to the transfer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Taken; ask for the next one.
    Progress,
    /// The last chunk: the whole snapshot, its checksum verified.
    Complete(Vec<u8>),
    /// Not the chunk expected next (a duplicate, a late one, another snapshot's middle).
    Ignored,
    /// The bytes do not match the snapshot's length or checksum: start over.
    Corrupt,
}

impl Receiving {
    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Takes chunk `data` at `offset` of snapshot `id` from `from` into `slot`. A chunk at
    /// offset 0 of another snapshot than the one in `slot` replaces it.
    pub fn accept(
        slot: &mut Option<Receiving>,
        from: NodeId,
        id: SnapshotId,
        offset: u64,
        data: &[u8],
    ) -> Chunk {
        let same = slot.as_ref().is_some_and(|r| r.id == id && r.from == from);
        if !same {
            if offset != 0 {
                return Chunk::Ignored;
            }
            *slot = Some(Receiving {
                id,
                from,
                // Grows as chunks arrive: the announced length alone allocates nothing.
                bytes: Vec::new(),
                stalls: 0,
            });
        }
        let Some(receiving) = slot.as_mut() else {
            return Chunk::Ignored;
        };
        if offset != receiving.received() {
            return Chunk::Ignored;
        }
        receiving.stalls = 0;
        if receiving.received() + data.len() as u64 > id.len || (data.is_empty() && id.len > 0) {
            *slot = None;
            return Chunk::Corrupt;
        }
        receiving.bytes.extend_from_slice(data);
        if receiving.received() < id.len {
            return Chunk::Progress;
        }
        let Some(done) = slot.take() else {
            return Chunk::Ignored;
        };
        if crc32fast::hash(&done.bytes) != id.checksum {
            return Chunk::Corrupt;
        }
        Chunk::Complete(done.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(len: usize) -> Serving {
        let bytes = (0..len).map(|i| (i * 7) as u8).collect();
        Serving::new(42, bytes, Duration::ZERO)
    }

    #[test]
    fn chunks_in_order_rebuild_the_snapshot_and_others_are_ignored() {
        let sent = serving(1000);
        let mut slot = None;
        let from = NodeId(1);
        // The middle of a snapshot never started is ignored.
        let (at, data) = sent.chunk(300, 300);
        assert_eq!(
            Receiving::accept(&mut slot, from, sent.id, at, &data),
            Chunk::Ignored
        );
        let mut offset = 0;
        let whole = loop {
            let (at, data) = sent.chunk(offset, 300);
            // A duplicate of the previous chunk is ignored.
            if offset > 0 {
                let (dup_at, dup) = sent.chunk(offset - 300, 300);
                let dup = Receiving::accept(&mut slot, from, sent.id, dup_at, &dup);
                assert_eq!(dup, Chunk::Ignored);
            }
            match Receiving::accept(&mut slot, from, sent.id, at, &data) {
                Chunk::Progress => offset += data.len() as u64,
                Chunk::Complete(bytes) => break bytes,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(&whole[..], &sent.bytes[..]);
        assert!(slot.is_none());
    }

    #[test]
    fn a_new_snapshot_restarts_the_transfer_and_a_bad_checksum_is_corrupt() {
        let old = serving(1000);
        let new = serving(1200);
        let mut slot = None;
        let (at, data) = old.chunk(0, 300);
        assert_eq!(
            Receiving::accept(&mut slot, NodeId(1), old.id, at, &data),
            Chunk::Progress
        );
        let (at, data) = new.chunk(0, 300);
        assert_eq!(
            Receiving::accept(&mut slot, NodeId(1), new.id, at, &data),
            Chunk::Progress
        );
        assert_eq!(slot.as_ref().map(|r| r.id), Some(new.id));
        let mut lying = new.id;
        lying.checksum ^= 1;
        let mut slot = None;
        let mut offset = 0;
        loop {
            let (at, data) = new.chunk(offset, 500);
            match Receiving::accept(&mut slot, NodeId(1), lying, at, &data) {
                Chunk::Progress => offset += data.len() as u64,
                outcome => break assert_eq!(outcome, Chunk::Corrupt),
            }
        }
    }
}
