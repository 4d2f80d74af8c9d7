//! The parser never panics, and it inverts the encoder however the bytes are split.

use proptest::prelude::*;
use synod_resp::{encode, parse, Value};

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[^\r\n]{0,20}".prop_map(Value::Simple),
        "[^\r\n]{0,20}".prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)).prop_map(Value::Bulk),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        proptest::option::of(proptest::collection::vec(inner, 0..6)).prop_map(Value::Array)
    })
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_mangled_commands(v in value(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = Vec::new();
        encode(&v, &mut bytes);
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = parse(&bytes);
    }

    #[test]
    fn parse_inverts_encode_at_every_split(v in value()) {
        let mut bytes = Vec::new();
        encode(&v, &mut bytes);
        prop_assert_eq!(parse(&bytes), Ok(Some((v.clone(), bytes.len()))));
        for cut in 0..bytes.len() {
            prop_assert_eq!(parse(&bytes[..cut]), Ok(None));
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        prop_assert_eq!(parse(&two), Ok(Some((v, bytes.len()))));
    }
}
