//! A compiled program ready to be spawned as processes.
//!
//! Why a separate type: linking the host imports and checking the exports the
//! process layer relies on is done once per program, not per spawn, and the
//! module's content hash is what snapshots record to find the program again in
//! a fresh engine.

use std::marker::PhantomData;

use sha2::{Digest as _, Sha256};
use wasmtime::{Engine, InstancePre, Linker, Module};

use super::dirty::track_writes;
use super::error::ProcessError;
use super::globals::export_mutable_globals;
use super::host::ProcessHost;
use super::instance::StoreData;

/// Exports the process layer calls; Asyncify adds the `asyncify_*` ones.
pub const REQUIRED_FUNCS: [&str; 5] = [
    "_start",
    "asyncify_start_unwind",
    "asyncify_stop_unwind",
    "asyncify_start_rewind",
    "asyncify_get_state",
];

/// SHA-256 of the program bytes given to [`ProcessModule::new`].
pub type ModuleHash = [u8; 32];

/// An Asyncify-transformed program, compiled and pre-linked for host `H`.
pub struct ProcessModule<H: ProcessHost> {
    hash: ModuleHash,
    pre: InstancePre<StoreData<H>>,
    _host: PhantomData<fn() -> H>,
}

impl<H: ProcessHost> std::fmt::Debug for ProcessModule<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessModule")
            .field("hash", &hex_prefix(&self.hash))
            .finish()
    }
}

pub(crate) fn hex_prefix(hash: &[u8]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl<H: ProcessHost> ProcessModule<H> {
    /// Compiles `asyncified` (a program already passed through Asyncify with its
    /// blocking imports listed) for `engine`, after exporting its mutable globals
    /// and adding the store barrier that tracks written pages ([`super::dirty`]).
    ///
    /// The engine must have fuel metering on: every input runs under a budget.
    pub fn new(engine: &Engine, asyncified: &[u8]) -> Result<Self, ProcessError> {
        let hash: ModuleHash = Sha256::digest(asyncified).into();
        let prepared = export_mutable_globals(asyncified)?;
        let prepared = track_writes(&prepared).map_err(|e| ProcessError::Compile(e.to_string()))?;
        let module =
            Module::new(engine, &prepared).map_err(|e| ProcessError::Compile(format!("{e:#}")))?;
        for name in REQUIRED_FUNCS {
            match module.get_export(name) {
                Some(wasmtime::ExternType::Func(_)) => {}
                _ => return Err(ProcessError::MissingExport(name)),
            }
        }
        if !matches!(
            module.get_export("memory"),
            Some(wasmtime::ExternType::Memory(_))
        ) {
            return Err(ProcessError::MissingExport("memory"));
        }
        let mut linker: Linker<StoreData<H>> = Linker::new(engine);
        H::add_to_linker(&mut linker).map_err(|e| ProcessError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| ProcessError::Link(format!("{e:#}")))?;
        Ok(ProcessModule {
            hash,
            pre,
            _host: PhantomData,
        })
    }

    /// SHA-256 of the program bytes this module was built from.
    pub fn hash(&self) -> &ModuleHash {
        &self.hash
    }

    pub(crate) fn pre(&self) -> &InstancePre<StoreData<H>> {
        &self.pre
    }
}
