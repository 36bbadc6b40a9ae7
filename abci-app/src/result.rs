//! The encoded result of one transaction (`ExecTxResult.data`).
//!
//! Everything here is deterministic: it is hashed by CometBFT into the next
//! block's `LastResultsHash`, so two validators that disagree on a guest's output
//! disagree visibly even before the app hash differs.

use prost::Message;

/// What a transaction produced.
#[derive(Clone, PartialEq, Message)]
pub struct TxOutput {
    /// The pid the input targeted (for spawn: the new process).
    #[prost(uint64, tag = "1")]
    pub pid: u64,
    /// Bytes written by guests while handling this input, in the order written.
    #[prost(message, repeated, tag = "2")]
    pub writes: Vec<Write>,
    /// Processes that exited while handling this input.
    #[prost(message, repeated, tag = "3")]
    pub exits: Vec<Exit>,
}

/// One write to a guest's stdout or stderr.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Write {
    #[prost(uint64, tag = "1")]
    pub pid: u64,
    /// 1 = stdout, 2 = stderr.
    #[prost(uint32, tag = "2")]
    pub fd: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
    /// The guest wrote more than `data` holds: the rest was dropped at the
    /// per-input or per-block output cap (the guest was told it was written,
    /// and paid for it in fuel).
    #[prost(bool, tag = "4")]
    pub truncated: bool,
}

/// A process exit.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Exit {
    #[prost(uint64, tag = "1")]
    pub pid: u64,
    /// The guest's exit status; killed processes report 137 (128 + SIGKILL).
    #[prost(int32, tag = "2")]
    pub code: i32,
}

impl TxOutput {
    /// The canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Parses `ExecTxResult.data`.
    pub fn from_bytes(bytes: &[u8]) -> Result<TxOutput, prost::DecodeError> {
        TxOutput::decode(bytes)
    }

    /// Everything written to stdout by `pid`, concatenated.
    pub fn stdout_of(&self, pid: u64) -> Vec<u8> {
        self.writes
            .iter()
            .filter(|w| w.pid == pid && w.fd == 1)
            .flat_map(|w| w.data.iter().copied())
            .collect()
    }
}
