//! Installed programs: what `spawn PATH` runs, prepared and compiled once, at install.
//!
//! Why install, not spawn: preparing a module (validation, Asyncify, the stack
//! and NaN passes, the store barrier) and compiling it costs time in proportion
//! to its size — seconds for a large program. Doing it at every spawn made each
//! spawn of a big program seconds of block time on every validator, unpaid. So
//! an install pays for it once, in fuel proportional to the module's size
//! ([`crate::genesis::Limits::install_fuel`]), and a spawn only looks up what
//! was installed.
//!
//! State (all in merkle-fs meta, so under the app hash):
//! - `replicode/program/<path>` → the source hash installed at `path` (the
//!   install record). Spawn resolves a path through this record only, never
//!   through the guest filesystem: a guest that symlinks, replaces or deletes
//!   `/bin/x` cannot make `spawn /bin/x` read anything but what was installed.
//! - `replicode/module/<hex source hash>` → the source bytes, so a restarted
//!   validator can rebuild every module an install record or a live process
//!   refers to. A module nothing refers to is deleted at the end of the block
//!   ([`Programs::collect_garbage`]).
//!
//! In memory every referenced module stays compiled; the count is bounded by
//! genesis (`max_programs` install records, plus at most one module per live
//! process), and so is the total source size (`program_bytes_quota`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use replicode_runtime::config::RuntimeConfig;
use replicode_runtime::engine::GuestEngine;
use replicode_runtime::error::{InstrumentError, RuntimeError};
use replicode_runtime::instrument::{self, Hash};
use replicode_runtime::process::wasi_host::WasiProcess;
use replicode_runtime::process::{ModuleHash, ProcessModule};

use super::prepared_cache::PreparedCache;
use crate::account::Address;
use crate::executor::ExecError;

/// A compiled program, shareable by every process that runs it.
pub type Module = Arc<ProcessModule<WasiProcess>>;

/// SHA-256 of the bytes a user installed.
pub type SourceHash = Hash;

/// One module with what the registry needs to account for it.
#[derive(Clone)]
struct Loaded {
    module: Module,
    source_len: u64,
}

/// Why an install was refused; every variant is the same on every validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The bytes are not a program the runtime can prepare and compile.
    Invalid(String),
    /// Installing would exceed `max_programs` or `program_bytes_quota`.
    Limit(String),
}

/// The installed programs of one machine and their compiled modules.
#[derive(Default)]
pub struct Programs {
    by_path: BTreeMap<String, SourceHash>,
    /// Who installed each path: only they may replace it.
    owners: BTreeMap<String, Address>,
    /// Every loaded module by source hash. Two sources may prepare to the same
    /// bytes (Binaryen re-encodes): lookups by prepared hash search this map,
    /// so which source was loaded first never matters.
    modules: BTreeMap<SourceHash, Loaded>,
    /// This validator's disk copy of Binaryen's output, if it keeps one.
    cache: Option<PreparedCache>,
}

impl Programs {
    /// No programs; prepared modules are cached in `cache` when given.
    pub fn new(cache: Option<PreparedCache>) -> Self {
        Programs {
            cache,
            ..Programs::default()
        }
    }

    /// Forgets every program (genesis starts from none); keeps the cache.
    pub fn clear(&mut self) {
        let cache = self.cache.take();
        *self = Programs::new(cache);
    }

    /// The module installed at `path`, if any.
    pub fn at_path(&self, path: &str) -> Option<Module> {
        let source = self.by_path.get(path)?;
        self.modules.get(source).map(|l| l.module.clone())
    }

    /// Whether an install record exists for `path` whose module is not loaded:
    /// state and memory disagree, which only a host failure explains.
    pub fn dangling(&self, path: &str) -> bool {
        self.by_path
            .get(path)
            .is_some_and(|s| !self.modules.contains_key(s))
    }

    /// The module a process snapshot refers to by its prepared hash (any of
    /// the sources that prepare to it: their compiled modules are the same).
    pub fn by_prepared(&self, hash: &ModuleHash) -> Option<Module> {
        self.modules
            .values()
            .find(|l| l.module.hash() == hash)
            .map(|l| l.module.clone())
    }

    /// Number of install records.
    pub fn installed(&self) -> usize {
        self.by_path.len()
    }

    /// Bytes of source of every loaded module.
    pub fn source_bytes(&self) -> u64 {
        self.modules.values().map(|l| l.source_len).sum()
    }

    /// Records that `path` runs `source` (already loaded), installed by `owner`.
    pub fn record(&mut self, path: &str, source: SourceHash, owner: Address) {
        self.by_path.insert(path.to_string(), source);
        self.owners.insert(path.to_string(), owner);
    }

    /// Forgets the install record of `path` (its module stays loaded until
    /// nothing refers to it: see [`Programs::collect_garbage`]).
    pub fn remove(&mut self, path: &str) {
        self.by_path.remove(path);
        self.owners.remove(path);
    }

    /// Who installed `path`, if it is installed.
    pub fn owner(&self, path: &str) -> Option<Address> {
        self.owners.get(path).copied()
    }

    /// Whether a module with this source is loaded.
    pub fn has_source(&self, source: &SourceHash) -> bool {
        self.modules.contains_key(source)
    }

    /// Checks an install of `len` bytes at `path` against the genesis limits,
    /// before any work: a new path needs a free install record, new bytes need
    /// room in the quota (a replaced module is counted until it is collected).
    pub fn admit(
        &self,
        path: &str,
        source: &SourceHash,
        len: usize,
        max_programs: u32,
        quota: u64,
    ) -> Result<(), Refusal> {
        if !self.by_path.contains_key(path) && self.by_path.len() >= max_programs as usize {
            return Err(Refusal::Limit(format!(
                "{path}: {} programs are installed, the limit is {max_programs}",
                self.by_path.len()
            )));
        }
        if !self.modules.contains_key(source) {
            let after = self.source_bytes().saturating_add(len as u64);
            if after > quota {
                return Err(Refusal::Limit(format!(
                    "{path}: installed programs would hold {after} bytes, the quota is {quota}"
                )));
            }
        }
        Ok(())
    }

    /// Prepares and compiles `source` unless it is loaded; returns its hash
    /// and whether this call loaded it (so a refused install can
    /// [`Programs::unload`] what it alone loaded).
    ///
    /// `Ok(Err(_))` is a deterministic refusal (the module cannot be prepared
    /// or compiled); `Err(_)` a host failure.
    pub fn load(
        &mut self,
        engine: &GuestEngine,
        config: &RuntimeConfig,
        source: &[u8],
    ) -> Result<Result<(SourceHash, bool), Refusal>, ExecError> {
        let source_hash = instrument::sha256(source);
        if self.modules.contains_key(&source_hash) {
            return Ok(Ok((source_hash, false)));
        }
        let cached = self.cache.as_ref().and_then(|c| c.get(&source_hash));
        let prepared = match cached {
            Some(bytes) => bytes,
            None => match instrument::prepare(source, config) {
                Ok(p) => {
                    if let Some(cache) = &self.cache {
                        cache.put(&source_hash, &p.bytes);
                    }
                    p.bytes
                }
                // A panic in one of our passes is a bug that every validator
                // meets alike on these bytes: refusing the module keeps the
                // chain going, where stopping would stop it at every replay.
                Err(e @ RuntimeError::Instrument(InstrumentError::Panicked(_))) => {
                    tracing::error!(error = %e, "a preparation pass panicked; module refused");
                    return Ok(Err(Refusal::Invalid(e.to_string())));
                }
                // Scratch files, the preparation thread: this validator
                // failed, not the module.
                Err(e) if e.is_host_failure() => {
                    return Err(ExecError::new("prepare module", e));
                }
                Err(e) => return Ok(Err(Refusal::Invalid(e.to_string()))),
            },
        };
        // Compilation of a module that passed validation and preparation fails
        // only at cranelift's implementation limits, which are the same on
        // every validator (running out of memory aborts the process instead).
        let module = match ProcessModule::new(engine.engine(), &prepared) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                if let Some(cache) = &self.cache {
                    cache.remove(&source_hash);
                }
                return Ok(Err(Refusal::Invalid(e.to_string())));
            }
        };
        self.modules.insert(
            source_hash,
            Loaded {
                module,
                source_len: source.len() as u64,
            },
        );
        Ok(Ok((source_hash, true)))
    }

    /// Forgets a module an install loaded but did not record (the install was
    /// refused after loading): memory then holds exactly what a restarted
    /// node would load.
    pub fn unload(&mut self, source: &SourceHash) {
        self.modules.remove(source);
        if let Some(cache) = &self.cache {
            cache.remove(source);
        }
    }

    /// Drops every module that neither an install record nor a process still
    /// in the table (`table_modules`, prepared hashes; ended processes count
    /// until they are reaped, since a restart resolves every table entry)
    /// refers to; returns their source hashes, in order, so the machine
    /// deletes their records. Which modules stay depends only on state.
    pub fn collect_garbage(&mut self, table_modules: &BTreeSet<ModuleHash>) -> Vec<SourceHash> {
        let installed: BTreeSet<SourceHash> = self.by_path.values().copied().collect();
        let dropped: Vec<SourceHash> = self
            .modules
            .iter()
            .filter(|(s, l)| !installed.contains(*s) && !table_modules.contains(l.module.hash()))
            .map(|(s, _)| *s)
            .collect();
        for source in &dropped {
            self.unload(source);
        }
        dropped
    }

    /// Deletes cached prepared modules this machine no longer has (an older
    /// build's, or of modules collected while it was down).
    pub fn prune_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.retain(&self.modules.keys().copied().collect());
        }
    }
}
