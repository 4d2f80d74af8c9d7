//! The default partitioner: a fixed hash of the key, so every worker on every machine puts a
//! key in the same partition. (std's `RandomState` is seeded per process and would not.)

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// `fnv1a(key) mod reduces`. `reduces` must not be zero (jobs are validated before running).
pub fn hash_partition(key: &[u8], reduces: u32) -> u32 {
    (fnv1a(key) % u64::from(reduces.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn partitions_are_in_range_and_spread() {
        let mut seen = [0u32; 7];
        for i in 0..7000 {
            let p = hash_partition(format!("key{i}").as_bytes(), 7);
            seen[p as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 700), "{seen:?}");
    }
}
