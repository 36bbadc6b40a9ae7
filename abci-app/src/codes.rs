//! Result codes of CheckTx and FinalizeBlock, one per kind of failure.
//!
//! The numbers are part of the protocol (clients and tests match on them), so they
//! are explicit and never reused.

/// A transaction's result code (`code` in CheckTx / ExecTxResult).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum Code {
    /// Accepted / executed.
    Ok = 0,
    /// The bytes are not a canonical protobuf `Tx`.
    Malformed = 1,
    /// The envelope's `version` is not one this node speaks.
    UnsupportedVersion = 2,
    /// The transaction or one of its fields exceeds a size limit.
    TooLarge = 3,
    /// A field is present but invalid (bad path, empty body, ...).
    InvalidField = 4,
    /// The wasm bytes of an install do not pass module validation.
    InvalidProgram = 5,
    /// The target pid does not exist (never spawned, or already reaped).
    UnknownPid = 6,
    /// The guest ran out of fuel while handling this input.
    OutOfFuel = 7,
    /// The guest trapped while handling this input.
    Trap = 8,
    /// A resource limit (memory, storage quota, process count) was hit.
    LimitExceeded = 9,
    /// The program to spawn does not exist.
    ProgramNotFound = 10,
    /// The target process exists but has exited and takes no more input.
    NotRunning = 11,
    /// The signer may not do this: replace another account's program, feed
    /// or kill another account's process.
    Unauthorized = 12,
    /// Unsigned, or the signature does not verify for this chain.
    BadSignature = 13,
    /// The sequence is not the signer's next one (a replay, or out of order).
    WrongSequence = 14,
    /// The signer's account cannot pay the fuel the transaction wants.
    InsufficientFuel = 15,
    /// CheckTx only: this node could not read committed state to check the
    /// transaction; another node, or a later try, may accept it.
    Unavailable = 16,
}

impl Code {
    /// The wire value.
    pub fn value(self) -> u32 {
        self as u32
    }

    /// A short stable name, used in logs and by the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::Malformed => "malformed",
            Code::UnsupportedVersion => "unsupported_version",
            Code::TooLarge => "too_large",
            Code::InvalidField => "invalid_field",
            Code::InvalidProgram => "invalid_program",
            Code::UnknownPid => "unknown_pid",
            Code::OutOfFuel => "out_of_fuel",
            Code::Trap => "trap",
            Code::LimitExceeded => "limit_exceeded",
            Code::ProgramNotFound => "program_not_found",
            Code::NotRunning => "not_running",
            Code::Unauthorized => "unauthorized",
            Code::BadSignature => "bad_signature",
            Code::WrongSequence => "wrong_sequence",
            Code::InsufficientFuel => "insufficient_fuel",
            Code::Unavailable => "unavailable",
        }
    }

    /// Every code, in numeric order (for docs and tests).
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Malformed,
        Code::UnsupportedVersion,
        Code::TooLarge,
        Code::InvalidField,
        Code::InvalidProgram,
        Code::UnknownPid,
        Code::OutOfFuel,
        Code::Trap,
        Code::LimitExceeded,
        Code::ProgramNotFound,
        Code::NotRunning,
        Code::Unauthorized,
        Code::BadSignature,
        Code::WrongSequence,
        Code::InsufficientFuel,
        Code::Unavailable,
    ];

    /// The code for a wire value, if it is one of ours.
    pub fn from_value(value: u32) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.value() == value)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.value(), self.name())
    }
}
