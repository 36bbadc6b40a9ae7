//! WASI preview1 host implementation.
