//! Integration tests of the WASI preview1 layer: real clang-built guests from
//! `wasm_programs/build/` and hand-written WAT modules, one module per syscall family.
//! Until the executor exists these instantiate with a plain `wasmtime::Engine` + `Linker`.

mod common;

mod args_env;
mod blocking;
mod clock_random;
mod determinism;
mod efault;
mod escape;
mod fileops;
mod limits;
mod poll;
mod readdir;
mod stdio;
