//! Keys to hash slots exactly as Redis Cluster computes them, and slots to partitions.
//!
//! A key's slot is CRC16-XMODEM of the key, or of its hash tag, modulo 16384. The hash tag is
//! the text between the first `{` and the first `}` after it, when that text is not empty: so
//! `{user:1}:name` and `{user:1}:mail` share a slot, and multi-key commands on them may run on
//! one node. Slots are grouped into 1024 partitions of 16 contiguous slots, the unit placement
//! moves between nodes.

/// Hash slots, as in Redis Cluster.
pub const SLOTS: u16 = 16_384;
/// Partitions: the unit of placement and of moves.
pub const PARTITIONS: u16 = 1_024;
/// Contiguous slots in one partition.
pub const SLOTS_PER_PARTITION: u16 = SLOTS / PARTITIONS;

/// CRC16 with the XMODEM parameters (polynomial 0x1021, initial value 0, no reflection), one
/// table lookup per byte.
#[must_use]
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        let index = usize::from((crc >> 8) as u8 ^ byte);
        (crc << 8) ^ CRC16_TABLE[index]
    })
}

const CRC16_TABLE: [u16; 256] = crc16_table();

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// The part of `key` that is hashed: its hash tag if it has a non-empty one, else the key.
#[must_use]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

/// The hash slot of `key`, as Redis Cluster's `CLUSTER KEYSLOT` answers.
#[must_use]
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// The partition a slot belongs to.
#[must_use]
pub const fn partition_of(slot: u16) -> u16 {
    slot / SLOTS_PER_PARTITION
}

/// The slots of `partition`, first and last.
#[must_use]
pub const fn slots_of(partition: u16) -> (u16, u16) {
    let first = partition * SLOTS_PER_PARTITION;
    (first, first + SLOTS_PER_PARTITION - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_xmodem_check_value() {
        // The standard check input for CRC-16/XMODEM.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_agree_with_redis_cluster_keyslot() {
        // Answers of CLUSTER KEYSLOT on Redis 7.0.15 in cluster mode.
        for (key, slot) in [
            (&b"foo"[..], 12_182),
            (b"bar", 5_061),
            (b"hello", 866),
            (b"key:1", 6_657),
            (b"somekey", 11_058),
            (b"{user1000}.following", 3_443),
            (b"{user1000}.followers", 3_443),
            (b"foo{}{bar}", 8_363),
            (b"foo{{bar}}zap", 4_015),
            (b"foo{bar}{zap}", 5_061),
            (b"", 0),
        ] {
            assert_eq!(key_slot(key), slot, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn hash_tags_follow_the_first_brace_pair() {
        assert_eq!(hash_tag(b"{a}b"), b"a");
        assert_eq!(hash_tag(b"x{a}{b}"), b"a");
        assert_eq!(hash_tag(b"{}a"), b"{}a", "empty tag: the whole key");
        assert_eq!(hash_tag(b"a{b"), b"a{b", "no closing brace");
        assert_eq!(hash_tag(b"a}b{"), b"a}b{");
        assert_eq!(hash_tag(b"{{a}}"), b"{a");
    }

    #[test]
    fn partitions_are_sixteen_contiguous_slots() {
        assert_eq!(partition_of(0), 0);
        assert_eq!(partition_of(15), 0);
        assert_eq!(partition_of(16), 1);
        assert_eq!(partition_of(SLOTS - 1), PARTITIONS - 1);
        assert_eq!(slots_of(1), (16, 31));
        assert_eq!(slots_of(PARTITIONS - 1), (SLOTS - 16, SLOTS - 1));
    }
}
