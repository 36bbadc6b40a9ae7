//! Deterministic WebAssembly runtime for RepliCode guests.
//!
//! Guests are C programs compiled to `wasm32-wasi`. Everything they can observe —
//! files, clocks, randomness, stdin, scheduling — is supplied by this crate from
//! data that every validator agrees on, so the same inputs give the same bytes
//! everywhere. See `docs/determinism.md` for the list of sources of difference
//! and how each one is closed.

pub mod clock;
pub mod config;
pub mod engine;
pub mod entropy;
pub mod errno;
pub mod error;
pub mod exec;
pub mod fs;
pub mod instrument;
pub mod process;
pub mod run;
pub mod validate;
pub mod wasi;
