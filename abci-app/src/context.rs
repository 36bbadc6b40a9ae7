//! Turning CometBFT's block data into the guests' clock and random seed.

use sha2::{Digest, Sha256};
use tendermint_proto::google::protobuf::Timestamp;

use crate::executor::BlockContext;

/// Domain separator so the seed never equals any other hash of the block hash.
const SEED_DOMAIN: &[u8] = b"replicode/guest-seed/v1";

/// Block time as nanoseconds since the epoch; times before 1970 clamp to 0.
pub fn unix_nanos(time: Option<&Timestamp>) -> u64 {
    let Some(t) = time else { return 0 };
    let seconds = u64::try_from(t.seconds).unwrap_or(0);
    let nanos = u64::try_from(t.nanos).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The guests' randomness for a block: SHA-256 over a domain tag, the height and
/// the block hash — data every validator agrees on and no proposer can grind
/// without changing the block itself.
pub fn seed(height: u64, block_hash: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SEED_DOMAIN);
    h.update(height.to_be_bytes());
    h.update(block_hash);
    h.finalize().into()
}

/// The context of one block.
pub fn block_context(height: i64, time: Option<&Timestamp>, block_hash: &[u8]) -> BlockContext {
    let height = u64::try_from(height).unwrap_or(0);
    BlockContext {
        height,
        time_unix_nanos: unix_nanos(time),
        seed: seed(height, block_hash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_depends_on_hash_and_height() {
        assert_ne!(seed(1, b"a"), seed(1, b"b"));
        assert_ne!(seed(1, b"a"), seed(2, b"a"));
        assert_eq!(seed(1, b"a"), seed(1, b"a"));
    }

    #[test]
    fn negative_time_clamps() {
        assert_eq!(
            unix_nanos(Some(&Timestamp {
                seconds: -5,
                nanos: 0
            })),
            0
        );
        assert_eq!(
            unix_nanos(Some(&Timestamp {
                seconds: 2,
                nanos: 3
            })),
            2_000_000_003
        );
    }
}
