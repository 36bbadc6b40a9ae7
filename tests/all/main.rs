//! End-to-end tests: one binary, one module per feature (wasmtime's layout).
//! Each test brings up a real 4-validator CometBFT testnet on loopback ports.

mod accounts;
mod crash;
mod hostile;
mod invalid;
mod kv;
mod lifecycle;
mod proofs;
