//! Byte strings in serde as bytes, not as sequences of numbers: postcard writes both alike
//! (a length, then the bytes), so the encoding of logs and snapshots is the one a `String`
//! had, but a sequence is (de)serialized one element at a time, which made every value's
//! bytes a loop of calls. Use with `#[serde(with = "synod_keyspace::bytes")]` (and the
//! `option`, `list` and `pairs` submodules for the containers).

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte string that serializes as bytes.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// An owned byte string read from bytes (or, from a format without them, a sequence).
struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_byte_buf(ByteBufVisitor)
            .map(ByteBuf)
    }
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        Ok(v.as_bytes().to_vec())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    Bytes(value).serialize(serializer)
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    ByteBuf::deserialize(deserializer).map(|b| b.0)
}

/// `Option<Vec<u8>>`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        value.as_deref().map(Bytes).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<ByteBuf>::deserialize(d)?.map(|b| b.0))
    }
}

/// `Vec<Vec<u8>>`.
pub mod list {
    use super::*;

    pub fn serialize<S: Serializer>(value: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(value.iter().map(|b| Bytes(b)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Ok(Vec::<ByteBuf>::deserialize(d)?
            .into_iter()
            .map(|b| b.0)
            .collect())
    }
}

/// `Vec<(Vec<u8>, Vec<u8>)>`.
pub mod pairs {
    use super::*;

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    pub fn serialize<S: Serializer>(value: &Pairs, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(value.iter().map(|(k, v)| (Bytes(k), Bytes(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
        let pairs = Vec::<(ByteBuf, ByteBuf)>::deserialize(d)?;
        Ok(pairs.into_iter().map(|(k, v)| (k.0, v.0)).collect())
    }
}

/// A map of byte strings to byte strings (the store), as a serde map.
pub mod map {
    use imbl::OrdMap;
    use serde::de::MapAccess;

    use super::*;

    type Map = OrdMap<Vec<u8>, Vec<u8>>;

    pub fn serialize<S: Serializer>(value: &Map, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(value.iter().map(|(k, v)| (Bytes(k), Bytes(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = Map;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of byte strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Map, A::Error> {
                let mut map = Map::new();
                while let Some((k, v)) = access.next_entry::<ByteBuf, ByteBuf>()? {
                    map.insert(k.0, v.0);
                }
                Ok(map)
            }
        }
        d.deserialize_map(MapVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes(#[serde(with = "super")] Vec<u8>);

    #[test]
    fn bytes_encode_as_a_string_did() {
        let text = postcard::to_allocvec(&"h\u{e9}llo".to_string()).unwrap();
        let bytes = postcard::to_allocvec(&AsBytes("h\u{e9}llo".as_bytes().to_vec())).unwrap();
        assert_eq!(text, bytes);
        let back: AsBytes = postcard::from_bytes(&text).unwrap();
        assert_eq!(back.0, "h\u{e9}llo".as_bytes());
    }
}
