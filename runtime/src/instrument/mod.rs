//! Wasm-to-wasm transforms applied before compilation.
