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
///
/// The machine hands it to `ProcessTable::set_entropy_seed` when the block
/// begins, so every process's stream in this block is keyed by this seed and its
/// pid from the stream's start: what a guest draws depends only on consensus
/// data and on its own draws within the block, never on the genesis seed or on
/// how many bytes earlier blocks consumed. The keys are part of the process
/// state in the snapshot, so a restarted or replaying validator draws the same.
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

/// Per-block guest randomness through the product machine (issue 6).
#[cfg(test)]
mod block_entropy_tests {
    use tendermint_proto::google::protobuf::Timestamp;

    use super::block_context;
    use crate::executor::{Executor, Input, Status};
    use crate::genesis::GenesisState;
    use crate::machine::Machine;

    /// Per line read from stdin, writes 16 bytes of `random_get` to stdout; the
    /// data lives above the unwind buffer region (1024..17408), which must stay zero.
    const RANDOM_WAT: &str = r#"
        (module
          (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (loop $next
              (i32.store (i32.const 32768) (i32.const 33000))
              (i32.store (i32.const 32772) (i32.const 64))
              (drop (call $fd_read (i32.const 0) (i32.const 32768) (i32.const 1) (i32.const 32776)))
              (if (i32.eqz (i32.load (i32.const 32776))) (then (return)))
              (drop (call $random_get (i32.const 33100) (i32.const 16)))
              (i32.store (i32.const 32784) (i32.const 33100))
              (i32.store (i32.const 32788) (i32.const 16))
              (drop (call $fd_write (i32.const 1) (i32.const 32784) (i32.const 1) (i32.const 32792)))
              (br $next))))
    "#;

    /// Who sends every input of these tests.
    const CALLER: crate::account::Address = crate::account::Address([9; 20]);

    /// One input of a test block.
    #[derive(Clone, Copy)]
    enum Step {
        /// Spawn `/bin/random` (always with the same arguments).
        Spawn,
        /// One line to `pid`: it answers with 16 random bytes.
        Draw(u64),
    }

    /// A block: its hash (the seed's consensus input) and its inputs.
    type Block = (&'static [u8], Vec<Step>);

    /// Runs `blocks` (heights 1, 2, ...) on a fresh machine; with `reopen`, the
    /// machine is dropped and reopened from its store after every commit, as a
    /// restarted validator would be. Returns the bytes of every draw, by block.
    fn run(blocks: &[Block], reopen: bool) -> Vec<Vec<Vec<u8>>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let wasm = wat::parse_str(RANDOM_WAT).expect("test WAT parses");
        let genesis: GenesisState = serde_json::from_str("{}").expect("empty genesis");
        let time = |h: i64| Timestamp {
            seconds: 1_700_000_000 + h,
            nanos: 0,
        };
        let mut m = Machine::open(dir.path()).expect("open machine");
        m.init_chain(&genesis, &block_context(0, Some(&time(0)), b"genesis"), &[])
            .expect("init chain");
        let fuel = genesis.limits.fuel_per_tx;
        let args = vec!["random".to_string()];
        let mut draws = Vec::new();
        for (i, (hash, steps)) in blocks.iter().enumerate() {
            let height = i as i64 + 1;
            m.begin_block(&block_context(height, Some(&time(height)), hash))
                .expect("begin block");
            if height == 1 {
                let out = m
                    .execute(
                        &Input::Install {
                            path: "/bin/random",
                            wasm: &wasm,
                        },
                        &CALLER,
                        fuel,
                    )
                    .expect("install");
                assert_eq!(out.status, Status::Ok, "install /bin/random");
            }
            let mut block_draws = Vec::new();
            for step in steps {
                let out = match *step {
                    Step::Spawn => m.execute(
                        &Input::Spawn {
                            path: "/bin/random",
                            args: &args,
                            env: &[],
                            public: false,
                        },
                        &CALLER,
                        fuel,
                    ),
                    Step::Draw(pid) => m.execute(
                        &Input::Stdin {
                            pid,
                            data: b"x\n",
                            eof: false,
                        },
                        &CALLER,
                        fuel,
                    ),
                }
                .expect("execute");
                assert_eq!(out.status, Status::Ok, "block {height}");
                if let Step::Draw(_) = step {
                    let bytes: Vec<u8> = out.writes.iter().flat_map(|w| w.data.clone()).collect();
                    assert_eq!(bytes.len(), 16, "one draw at block {height}");
                    block_draws.push(bytes);
                }
            }
            draws.push(block_draws);
            m.end_block().expect("end block");
            m.commit().expect("commit");
            if reopen {
                drop(m);
                m = Machine::open(dir.path()).expect("reopen machine");
            }
        }
        draws
    }

    #[test]
    fn guest_randomness_is_keyed_by_block_seed_and_pid() {
        use Step::{Draw, Spawn};
        let blocks: Vec<Block> = vec![
            (b"block-1", vec![Spawn, Spawn, Draw(1), Draw(2)]),
            (b"block-2", vec![Draw(1), Draw(1)]),
            (b"block-3", vec![Draw(1), Draw(2)]),
        ];
        let a = run(&blocks, false);
        // Two processes with the same program and arguments: different streams.
        assert_ne!(a[0][0], a[0][1], "pids 1 and 2 drew the same bytes");
        // A stream advances within a block and is rekeyed in the next one.
        assert_ne!(a[1][0], a[1][1], "a stream repeated within a block");
        assert_ne!(
            a[0][0], a[1][0],
            "pid 1 drew the same bytes in blocks 1 and 2"
        );
        assert_ne!(
            a[1][0], a[2][0],
            "pid 1 drew the same bytes in blocks 2 and 3"
        );

        // An independent machine given the same blocks, restarted after each
        // commit, draws the same bytes.
        assert_eq!(
            run(&blocks, true),
            a,
            "a restarted machine drew different bytes"
        );

        // What pid 1 draws in block 3 depends on block 3's seed, not on how many
        // bytes it drew earlier (block 2 here has no draws) ...
        let mut fewer = blocks.clone();
        fewer[1].1.clear();
        assert_eq!(
            run(&fewer, false)[2],
            a[2],
            "block 3 draws depend on earlier draws"
        );
        // ... and a different block hash gives different bytes.
        let mut other = blocks.clone();
        other[2].0 = b"block-3'";
        let b = run(&other, false);
        assert_eq!(b[..2], a[..2]);
        assert_ne!(b[2][0], a[2][0], "block 3 draws ignore the block hash");
    }
}
