//! Integration tests of the WASI preview1 layer: real clang-built guests from
//! `wasm_programs/build/` and hand-written WAT modules, one module per syscall family.
//! Until the executor exists these instantiate with a plain `wasmtime::Engine` + `Linker`.
//!
//! The filesystem under test comes from [`backend`]: `MemFs` here. The same modules run
//! against the merkle-fs adapter in abci-app/tests/fs_conformance.rs (which includes
//! them by path), so every module listed here must be listed there too (a test there
//! checks it).

mod common;

mod args_env;
mod blocking;
mod clock_random;
mod determinism;
mod efault;
mod escape;
mod fileops;
mod fs_trait;
mod limits;
mod poll;
mod readdir;
mod stdio;

/// The filesystem under test: [`MemFs`](replicode_runtime::fs::mem::MemFs).
mod backend {
    use replicode_runtime::fs::mem::MemFs;
    use replicode_runtime::fs::{FileSystem, FsLimits};

    /// A fresh filesystem (root times `now`), populated by `build`.
    pub fn new_fs(
        limits: FsLimits,
        now: u64,
        build: impl FnOnce(&mut dyn FileSystem),
    ) -> Box<dyn FileSystem> {
        let mut fs = MemFs::new(limits, now);
        build(&mut fs);
        Box::new(fs)
    }
}
