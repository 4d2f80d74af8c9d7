//! The wire format, and the only module that knows it.
//!
//! A synod TCP connection carries two kinds of bytes:
//!
//! ```text
//!  handshake (once, each direction, 15 bytes, fixed layout)
//!  ┌────────────┬──────────────┬──────────┬──────────────┐
//!  │ magic SYND │ version u16LE│ kind u8  │ node id u64LE│   kind 0 = server peer, 1 = client
//!  └────────────┴──────────────┴──────────┴──────────────┘   (a client sends id 0)
//!  frames (any number, each direction)
//!  ┌──────────────┬────────────────────────────┐
//!  │ length u32LE │ postcard-encoded message   │
//!  └──────────────┴────────────────────────────┘
//! ```
//!
//! A client's first frame is its [`Credentials`] (`Option<Credentials>`: none for an
//! anonymous client), sent right behind its hello, and the server's first frame to a client
//! is its [`Admission`]: admitted, or refused and the connection closed. A server with users
//! (`synod_auth`) admits a client that presented valid credentials, or a client certificate
//! from the cluster's CA (a member: the replicas' own fronts); a server without admits
//! everyone.
//!
//! On a server with TLS (the `tls` module) these same bytes travel inside a TLS connection:
//! TLS wraps the format without changing it, so it needs no version of its own.
//!
//! A frame of length 0 is a [`PROBE`]: on a peer link the link sends them and the server
//! echoes each one back, which is how a link knows its connection still works.
//!
//! Both ends send their [`Hello`] as soon as the connection is up and then read the other's, so
//! an incompatible peer learns *why* (wrong magic, versions `ours`/`theirs`) on its own side
//! too instead of seeing garbage. The handshake has a fixed layout rather than being postcard
//! so the magic and version can be checked before anything else is interpreted, and so a
//! future version can change everything after them.
//!
//! Messages are serde types encoded with [postcard] (a documented, stable format). A frame's
//! length is checked against a configured maximum *before* any buffer is grown for it, so a
//! hostile length header costs nothing. Every decoding function here returns a typed
//! [`FrameError`] on bad input and never panics; `tests/codec_props.rs` checks that on random
//! bytes and on random mutations of valid frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use synod_auth::AuthFailure;
pub use synod_auth::Credentials;
use synod_node::limits::Limits;
use synod_node::NodeId;

/// The first four bytes of every synod connection, in both directions.
pub const MAGIC: [u8; 4] = *b"SYND";
/// The wire protocol version this build speaks. Bump it on any incompatible change to the
/// handshake, the framing, or the encoding of shared message types.
/// Version 2: Paxos gained the stable-leader and read-barrier messages.
/// Version 3: a rejoin answer (`JoinInfo`) carries the answerer's ballot floor.
/// Version 4: size limits — a KV reply can refuse a value too large.
/// Version 5: snapshots are taken in the background and the KV can refuse a write when out
/// of memory.
/// Version 6: peer links carry [`PROBE`]s, which the server echoes.
/// Version 7: a replicated state machine takes a batch of commands as one request, decided
/// as one log entry (`RsmMsg::Batch`, `Entry::Commands`; the KV's `KvReply::Batch`).
/// Version 8: a replica's status report says whether it is writing a snapshot, and the size
/// and duration of its last one (`StatusReport::snapshots`); the sharded KV takes batches
/// too (`ShardReply::Batch`), and a follower names its group's leader (`ShardMsg::Leader`);
/// keys and values are bytes, and the KV services carry Redis commands and their replies (`KvOp::Redis`,
/// `KvReply::Redis`, `ShardReply::Redis`, `synod_pbservice::Op::Redis`; the primary/backup
/// reply is a `Reply`). Stored logs and snapshots of version 7 read as they were: postcard
/// encodes a `String` and a `Vec<u8>` alike, and new variants are last.
/// Version 9: a client's first frame is its credentials, answered by an [`Admission`]; a
/// KV reply can be `KvReply::Denied` (a request its user may not make).
/// Version 10: membership changes — ballots name their peer by node id, Paxos heartbeats
/// carry `done` per node id, a Paxos snapshot carries its configurations
/// (`synod_paxos::Schedule`), the log has `Entry::Reconfigure`, a replicated state machine
/// takes `RsmMsg::Reconfigure` and answers `RsmMsg::Reconfigured`, a snapshot sent to a peer
/// carries the configurations with the state, and a status report names the replica's role
/// and configurations. A configuration (`synod_paxos::Config`) carries the addresses of the
/// members that joined through a change (`addrs`). Stored snapshots of earlier versions do
/// not decode and are refused at start (the replica says it cannot decode its state); its
/// logs alone still read. A sharded KV reply can be `ShardReply::Denied` and a shard
/// controller's `CtlReply::Denied` (a request its user may not make), both new last variants;
/// a shard controller takes `CtlOp::Servers` (a group's servers after its membership
/// changed), a new last variant.
/// Version 11: the sharded KV takes batches that write to several shards (of one group, as
/// clients send them): a group applies a batch up to its first command of a shard it does
/// not serve, where a server of version 10 ignored any batch that mixed shards and wrote.
/// Frames are unchanged; the bump keeps a client of this version from sending such a batch
/// to a version-10 server, which would drop it without an answer. Stored logs replay to the
/// same state: a logged batch of version 10 was one shard's (served or not as a whole) or
/// reads only.
pub const PROTOCOL_VERSION: u16 = 11;
/// Size of an encoded [`Hello`].
pub const HELLO_LEN: usize = 15;
/// Size of a frame's length header.
pub const HEADER_LEN: usize = 4;
/// A peer link's liveness probe, and the server's echo of it: a frame with an empty payload.
/// No message encodes to nothing (every message type is an enum, whose variant takes a
/// byte), so a probe cannot be mistaken for a message.
pub const PROBE: [u8; HEADER_LEN] = [0; HEADER_LEN];
/// Default cap on a frame's payload size: what a server with the default size policy
/// (`synod_node::limits`) sends or accepts. Servers derive theirs from their configured policy.
pub const DEFAULT_MAX_FRAME: usize = Limits::DEFAULT_FRAME;
/// Cap on what a client accepts: the most any server may be configured to send (a client
/// trusts its servers, and must read any value a server was allowed to store). A batch's
/// reply may carry up to a batch's worth of values read and then one value a write took
/// (`synod_rsm::StateMachine::reads_only` says why it is kept), so one batch more than the
/// ceiling's frame.
pub const CLIENT_MAX_FRAME: usize = Limits::CEILING.max_frame() + synod_node::limits::BATCH_BYTES;

const KIND_PEER: u8 = 0;
const KIND_CLIENT: u8 = 1;

/// Who is at the other end of a connection, as announced in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello {
    /// A server of the cluster, with its configured id.
    Peer(NodeId),
    /// A client; the accepting server assigns it a [`NodeId`] for this connection.
    Client,
}

/// A server's answer to a client's [`Credentials`], its first frame to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admission {
    Admitted,
    /// The server closes the connection after sending this.
    Refused(AuthFailure),
}

/// Why bytes from the wire were rejected. Each one ends the connection that sent them.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("bad magic {found:02x?}: not a synod connection (expected {MAGIC:02x?})")]
    BadMagic { found: Vec<u8> },
    #[error("unsupported protocol version {theirs} (this build speaks {ours})")]
    UnsupportedVersion { ours: u16, theirs: u16 },
    #[error("bad handshake: {0}")]
    BadHello(String),
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("connection closed in the middle of a frame ({have} of {need} bytes received)")]
    Truncated { have: usize, need: usize },
    #[error("undecodable message: {0}")]
    Undecodable(#[source] postcard::Error),
    #[error("message cannot be encoded: {0}")]
    Unencodable(#[source] postcard::Error),
}

/// Encodes a handshake.
pub fn encode_hello(hello: Hello) -> [u8; HELLO_LEN] {
    let (kind, id) = match hello {
        Hello::Peer(id) => (KIND_PEER, id.0),
        Hello::Client => (KIND_CLIENT, 0),
    };
    let mut out = [0u8; HELLO_LEN];
    let mut buf = &mut out[..];
    buf.put_slice(&MAGIC);
    buf.put_u16_le(PROTOCOL_VERSION);
    buf.put_u8(kind);
    buf.put_u64_le(id);
    out
}

/// Takes a handshake off the front of `buf`: `Ok(None)` if more bytes are needed.
///
/// The magic is checked byte by byte as it arrives, so a stray HTTP request or a port scanner
/// is rejected on its first byte instead of waiting for a full handshake or a timeout.
pub fn decode_hello(buf: &mut BytesMut) -> Result<Option<Hello>, FrameError> {
    let seen = buf.len().min(MAGIC.len());
    if buf[..seen] != MAGIC[..seen] {
        return Err(FrameError::BadMagic {
            found: buf[..seen].to_vec(),
        });
    }
    if buf.len() >= MAGIC.len() + 2 {
        let theirs = u16::from_le_bytes([buf[4], buf[5]]);
        if theirs != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion {
                ours: PROTOCOL_VERSION,
                theirs,
            });
        }
    }
    if buf.len() < HELLO_LEN {
        return Ok(None);
    }
    buf.advance(MAGIC.len() + 2);
    let kind = buf.get_u8();
    let id = buf.get_u64_le();
    match kind {
        KIND_PEER if NodeId(id).is_client() => Err(FrameError::BadHello(format!(
            "a server peer cannot use the client id {id}"
        ))),
        KIND_PEER => Ok(Some(Hello::Peer(NodeId(id)))),
        KIND_CLIENT => Ok(Some(Hello::Client)),
        other => Err(FrameError::BadHello(format!("unknown sender kind {other}"))),
    }
}

/// Serializes `msg` into a complete frame (header included), refusing to produce one the
/// receiver would reject for its size.
pub fn encode_frame<M: Serialize>(msg: &M, max_frame: usize) -> Result<Bytes, FrameError> {
    let mut buf =
        postcard::to_extend(msg, vec![0u8; HEADER_LEN]).map_err(FrameError::Unencodable)?;
    let size = buf.len() - HEADER_LEN;
    let len = u32::try_from(size)
        .ok()
        .filter(|_| size <= max_frame)
        .ok_or(FrameError::TooLarge {
            size,
            limit: max_frame,
        })?;
    buf[..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(Bytes::from(buf))
}

/// Deserializes a frame payload. Trailing bytes after the message are an error: a payload
/// that does not parse exactly is not one this build understands.
pub fn decode_msg<M: DeserializeOwned>(payload: &[u8]) -> Result<M, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Undecodable)?;
    if rest.is_empty() {
        Ok(msg)
    } else {
        Err(FrameError::Undecodable(
            postcard::Error::DeserializeBadEncoding,
        ))
    }
}

/// Splits length-prefixed frames off a growing input buffer.
///
/// Feed it whatever the socket delivered; it returns each payload once it is complete. It
/// keeps no state of its own besides the limit, so it is trivially safe to use from a
/// cancellable read loop: everything unconsumed stays in the caller's buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame: usize,
}

/// How much buffer to reserve ahead for a large frame. Memory then grows with the bytes that
/// actually arrive, so a peer announcing a (permitted) 16 MiB frame and sending nothing does
/// not pin 16 MiB.
const RESERVE_AHEAD: usize = 64 * 1024;

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { max_frame }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Takes the next complete frame's payload off the front of `buf`, `Ok(None)` if the
    /// frame is not complete yet.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if size > self.max_frame {
            return Err(FrameError::TooLarge {
                size,
                limit: self.max_frame,
            });
        }
        let need = HEADER_LEN + size;
        if buf.len() < need {
            buf.reserve((need - buf.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        Ok(Some(buf.split_to(size)))
    }

    /// Called when the input has ended: leftover bytes mean the sender vanished mid-frame.
    pub fn check_eof(&self, buf: &BytesMut) -> Result<(), FrameError> {
        if buf.is_empty() {
            return Ok(());
        }
        let need = match buf.get(..HEADER_LEN) {
            Some(h) => HEADER_LEN + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize,
            None => HEADER_LEN,
        };
        Err(FrameError::Truncated {
            have: buf.len(),
            need,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips() {
        for hello in [Hello::Peer(NodeId(7)), Hello::Client] {
            let mut buf = BytesMut::from(&encode_hello(hello)[..]);
            assert_eq!(decode_hello(&mut buf).unwrap(), Some(hello));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn wrong_magic_is_rejected_on_the_first_byte() {
        let mut buf = BytesMut::from(&b"G"[..]);
        assert!(matches!(
            decode_hello(&mut buf),
            Err(FrameError::BadMagic { .. })
        ));
    }

    #[test]
    fn wrong_version_names_both_versions() {
        let mut bytes = encode_hello(Hello::Client);
        let newer = PROTOCOL_VERSION + 1;
        bytes[4..6].copy_from_slice(&newer.to_le_bytes());
        let err = decode_hello(&mut BytesMut::from(&bytes[..6])).unwrap_err();
        assert!(matches!(
            err,
            FrameError::UnsupportedVersion {
                ours: PROTOCOL_VERSION,
                theirs
            } if theirs == newer
        ));
        assert_eq!(
            err.to_string(),
            format!("unsupported protocol version {newer} (this build speaks {PROTOCOL_VERSION})")
        );
    }

    #[test]
    fn peer_hello_with_a_client_id_is_rejected() {
        let mut bytes = encode_hello(Hello::Peer(NodeId(NodeId::FIRST_CLIENT)));
        let err = decode_hello(&mut BytesMut::from(&bytes[..])).unwrap_err();
        assert!(matches!(err, FrameError::BadHello(_)));
        bytes[6] = 9;
        let err = decode_hello(&mut BytesMut::from(&bytes[..])).unwrap_err();
        assert!(matches!(err, FrameError::BadHello(_)));
    }

    #[test]
    fn oversized_header_is_rejected_before_allocating() {
        let dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        let err = dec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                size: 4_294_967_295,
                limit: 1024
            }
        ));
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn encoder_refuses_frames_the_peer_would_reject() {
        let err = encode_frame(&vec![0u8; 100], 50).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                size: 101,
                limit: 50
            }
        ));
    }

    #[test]
    fn frames_round_trip_and_eof_mid_frame_is_truncation() {
        let dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let frame = encode_frame(&("hello", 42u32), DEFAULT_MAX_FRAME).unwrap();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame);
        buf.extend_from_slice(&frame[..3]);
        let payload = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            decode_msg::<(String, u32)>(&payload).unwrap(),
            ("hello".to_string(), 42)
        );
        assert!(dec.decode(&mut buf).unwrap().is_none());
        assert!(matches!(
            dec.check_eof(&buf),
            Err(FrameError::Truncated { have: 3, need: 4 })
        ));
    }

    #[test]
    fn trailing_bytes_in_a_payload_are_undecodable() {
        assert!(matches!(
            decode_msg::<u8>(&[1, 2]),
            Err(FrameError::Undecodable(_))
        ));
    }
}
