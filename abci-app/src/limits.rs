//! Size limits on transactions, fixed by the protocol version.
//!
//! They are constants rather than genesis parameters because CheckTx must refuse an
//! oversized transaction before it has any state to read, and because every
//! validator must refuse exactly the same transactions.

/// Largest encoded transaction (the whole envelope). CometBFT's mempool default
/// `max_tx_bytes` is 1 MiB; `replicode init` raises it to [`COMETBFT_MAX_TX_BYTES`]
/// so that our own, more precise, refusal (with its code) is what a client sees.
pub const MAX_TX_BYTES: usize = 1024 * 1024;

/// The value `replicode init` writes into CometBFT's `mempool.max_tx_bytes`.
pub const COMETBFT_MAX_TX_BYTES: usize = 2 * MAX_TX_BYTES;

/// Longest guest path (bytes), as PATH_MAX in wasi-libc.
pub const MAX_PATH_BYTES: usize = 1024;

/// Longest single path component (bytes), as NAME_MAX in wasi-libc.
pub const MAX_NAME_BYTES: usize = 255;

/// Most argv entries (program name excluded) for a spawn.
pub const MAX_ARGS: usize = 64;

/// Most environment variables for a spawn.
pub const MAX_ENV: usize = 64;

/// Longest single argument, environment key or value (bytes).
pub const MAX_ARG_BYTES: usize = 4096;

/// Most bytes delivered to a process's stdin by one transaction.
pub const MAX_STDIN_BYTES: usize = 64 * 1024;

/// Programs may only be installed below this directory.
pub const INSTALL_DIR: &str = "/bin/";

/// Most transactions in a block: PrepareProposal takes no more, ProcessProposal
/// rejects a block with more. A result with its output dropped is at most
/// [`MAX_STRIPPED_RESULT_BYTES`], so even a full block of them fits in
/// [`MAX_BLOCK_RESULTS_BYTES`].
pub const MAX_BLOCK_TXS: usize = 8192;

/// Most transaction bytes in a block (4 bytes of framing counted per
/// transaction): PrepareProposal's answer carries the block's transactions
/// back to CometBFT, whose gRPC client refuses answers over 4 MiB.
pub const MAX_BLOCK_TX_BYTES: usize = 3 * 1024 * 1024;

/// Largest encoded set of FinalizeBlock results. CometBFT's gRPC client refuses
/// an answer over 4 MiB (grpc-go's default receive limit) and a refused
/// FinalizeBlock stops the node, so a guest printing a lot must not be able to
/// produce one: outputs that do not fit are dropped (see `consensus::fit_results`).
pub const MAX_BLOCK_RESULTS_BYTES: usize = 3 * 1024 * 1024;

/// Guest output (stdout and stderr of every process an input wakes) one input
/// keeps; the rest is dropped and the write marked truncated. Bounds what the
/// host holds per input.
pub const MAX_INPUT_OUTPUT_BYTES: usize = 1024 * 1024;

/// Guest output a whole block keeps in memory (the clock's wake-ups and every
/// transaction); past it, writes are cut and marked truncated. Above
/// [`MAX_BLOCK_RESULTS_BYTES`], so what the results budget keeps is never
/// limited by it in an ordinary block.
pub const MAX_BLOCK_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// Log bytes any result keeps.
pub const MAX_LOG_BYTES: usize = 1024;

/// Log bytes a whole block's results keep: each result keeps at most this
/// divided by the number of transactions (64 bytes in a full block).
pub const LOG_BUDGET_BYTES: usize = 512 * 1024;

/// Upper bound of a result whose output was dropped, as `consensus::fit_results`
/// reckons it in a full block: code, gas, a 64-byte log allowance, the `info`
/// note and the one `replicode.tx` event.
pub const MAX_STRIPPED_RESULT_BYTES: usize = 384;
