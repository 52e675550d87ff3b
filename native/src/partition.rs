//! Kafka's default partitioner for a keyed record: the Java client's murmur2, which
//! librdkafka's `murmur2_random` (the sink's partitioner) matches. The native path places a
//! slice's deliveries with it (`streamer.analytics.delivery_batches`, the reference).

const M: u32 = 0x5bd1_e995;
const SEED: u32 = 0x9747_b28c;

/// murmur2 of `data` as the Java client returns it (a signed 32-bit int).
pub fn murmur2(data: &[u8]) -> i32 {
    // the Java client hashes at most 2^31 bytes: its length is an int, as here
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        h = h.wrapping_mul(M) ^ k.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if let Some(&first) = rest.first() {
        h = (h ^ u32::from(first)).wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `partitions` (> 0) that Kafka's default partitioner gives `key`.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) as u32 & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own `UtilsTest.testMurmur2` vectors.
    #[test]
    fn hashes_as_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn places_by_the_positive_hash() {
        // -790332482 & 0x7fffffff = 1357151166
        assert_eq!(partition_of(b"foobar", 50), 1_357_151_166 % 50);
        assert_eq!(partition_of(b"foobar", 1), 0);
    }
}

/// `partition_of` for Python (the reference's tests compare the two).
#[cfg(feature = "python")]
#[pyo3::pyfunction]
#[pyo3(name = "partition_of")]
pub fn py_partition_of(key: &[u8], partitions: u32) -> pyo3::PyResult<u32> {
    if partitions == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "partitions must be >= 1",
        ));
    }
    Ok(partition_of(key, partitions))
}
