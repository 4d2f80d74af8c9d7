//! Property tests of the wire codec: whatever bytes arrive, decoding returns messages or a
//! typed error and never panics; valid streams decode to exactly what was sent, however the
//! network splits them.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use synod_net::codec::{
    decode_hello, decode_msg, encode_frame, encode_hello, FrameDecoder, FrameError, Hello,
};
use synod_node::NodeId;

/// A message type with the shapes real protocol messages have: variants, strings, byte
/// vectors, options, nested sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Get {
        key: String,
        seq: u64,
    },
    Put {
        key: String,
        value: Vec<u8>,
        client: Option<u64>,
    },
    Batch(Vec<(u32, Option<String>)>),
    Empty,
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (".{0,12}", any::<u64>()).prop_map(|(key, seq)| Msg::Get { key, seq }),
        (".{0,12}", vec(any::<u8>(), 0..40), any::<Option<u64>>())
            .prop_map(|(key, value, client)| Msg::Put { key, value, client }),
        vec((any::<u32>(), proptest::option::of(".{0,6}")), 0..5).prop_map(Msg::Batch),
        Just(Msg::Empty),
    ]
}

/// Decodes a whole connection's bytes the way the server does, delivered in `chunk`-sized
/// pieces: the handshake, then frames until the input ends.
fn decode_connection(
    bytes: &[u8],
    chunk: usize,
    max_frame: usize,
) -> Result<(Hello, Vec<Msg>), FrameError> {
    let decoder = FrameDecoder::new(max_frame);
    let mut buf = BytesMut::new();
    let mut hello = None;
    let mut msgs = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        if hello.is_none() {
            hello = decode_hello(&mut buf)?;
        }
        if hello.is_some() {
            while let Some(payload) = decoder.decode(&mut buf)? {
                msgs.push(decode_msg(&payload)?);
            }
        }
    }
    let Some(hello) = hello else {
        return Err(FrameError::Truncated {
            have: buf.len(),
            need: synod_net::codec::HELLO_LEN,
        });
    };
    decoder.check_eof(&buf)?;
    Ok((hello, msgs))
}

fn encode_connection(hello: Hello, msgs: &[Msg]) -> Vec<u8> {
    let mut bytes = encode_hello(hello).to_vec();
    for m in msgs {
        bytes.extend_from_slice(&encode_frame(m, 1 << 20).unwrap());
    }
    bytes
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..600), chunk in 1usize..64, max in 0usize..300) {
        let _ = decode_connection(&bytes, chunk, max);
        // Also as if the handshake had already passed, so random bytes reach the frame decoder.
        let mut framed = encode_hello(Hello::Client).to_vec();
        framed.extend_from_slice(&bytes);
        let _ = decode_connection(&framed, chunk, max);
    }

    #[test]
    fn valid_streams_round_trip_across_any_split(
        msgs in vec(msg(), 0..8),
        id in 0u64..NodeId::FIRST_CLIENT,
        client in any::<bool>(),
        chunk in 1usize..80,
    ) {
        let hello = if client { Hello::Client } else { Hello::Peer(NodeId(id)) };
        let bytes = encode_connection(hello, &msgs);
        let (got_hello, got) = decode_connection(&bytes, chunk, 1 << 20).unwrap();
        prop_assert_eq!(got_hello, hello);
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn mutated_streams_never_panic(
        msgs in vec(msg(), 1..6),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        chunk in 1usize..80,
        max in 0usize..200,
    ) {
        let mut bytes = encode_connection(Hello::Client, &msgs);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = decode_connection(&bytes, chunk, max);
    }

    #[test]
    fn truncated_valid_streams_report_truncation(msgs in vec(msg(), 1..6), cut in any::<prop::sample::Index>()) {
        let bytes = encode_connection(Hello::Client, &msgs);
        let cut = cut.index(bytes.len());
        let result = decode_connection(&bytes[..cut], 7, 1 << 20);
        // Cutting exactly at a frame boundary is a clean end; anywhere else is a truncation.
        match result {
            Ok((_, got)) => prop_assert_eq!(&got[..], &msgs[..got.len()]),
            Err(e) => prop_assert!(matches!(e, FrameError::Truncated { .. }), "{e}"),
        }
    }
}
