//! One deterministic run of one program: the engine behind `replicode run`.
//!
//! Everything the guest can observe comes from the [`RunSpec`]: arguments,
//! environment, a copy of the host directories (the host is never touched
//! after the copy), stdin bytes (then EOF), the logical start time and the
//! random seed. The same spec gives the same output bytes, outcome, fuel and
//! filesystem digest on any machine, whatever the host's time zone,
//! environment or working directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::Linker;

use crate::clock::LogicalClock;
use crate::engine::{CompiledModule, GuestEngine};
use crate::entropy::ChaChaEntropy;
use crate::errno::Errno;
use crate::error::RuntimeError;
use crate::exec::{self, GuestData, GuestHost, GuestInstance, RunOutcome};
use crate::fs::{self, mem::MemFs, FileSystem, Ino, SharedFs, ROOT_INO};
use crate::wasi::block::BlockOn;
use crate::wasi::stdio::{OutputSink, Pipe};
use crate::wasi::{self, WasiCtx, WasiCtxBuilder, WasiCtxError};

/// A host directory preopened (as a copy) at a guest path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMapping {
    pub host: PathBuf,
    pub guest: String,
}

impl DirMapping {
    /// Parses `HOST[::GUEST]`; without `::GUEST` the guest path is `HOST` as written.
    pub fn parse(spec: &str) -> DirMapping {
        match spec.split_once("::") {
            Some((host, guest)) => DirMapping {
                host: host.into(),
                guest: guest.into(),
            },
            None => DirMapping {
                host: spec.into(),
                guest: spec.into(),
            },
        }
    }
}

/// Everything one run depends on.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// `argv`, program name first.
    pub args: Vec<String>,
    /// Environment, in the order given (nothing is inherited from the host).
    pub env: Vec<(String, String)>,
    pub dirs: Vec<DirMapping>,
    /// Bytes on stdin, followed by end-of-file.
    pub stdin: Vec<u8>,
    /// Seed of `random_get`.
    pub seed: u64,
    /// Logical realtime at start, nanoseconds since the Unix epoch.
    pub start_time_ns: u64,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    pub outcome: RunOutcome<BlockOn>,
    pub fuel_used: u64,
    /// [`FileSystem::digest`] of the virtual filesystem after the run.
    pub fs_digest: [u8; 32],
}

/// Why a run could not start (the guest never ran).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("--dir {path}: {source}")]
    HostDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--dir {path}: cannot copy into the virtual filesystem: {errno}")]
    Copy { path: PathBuf, errno: Errno },
    #[error(
        "--dir {path}: unsupported file type (only files, directories and symlinks are copied)"
    )]
    FileType { path: PathBuf },
    #[error(transparent)]
    Wasi(#[from] WasiCtxError),
    #[error("the virtual filesystem lock is poisoned")]
    Poisoned,
}

impl GuestHost for WasiCtx {
    type Blocked = BlockOn;
    fn exit_code(&self) -> Option<i32> {
        WasiCtx::exit_code(self)
    }
    fn blocked(&self) -> Option<BlockOn> {
        WasiCtx::blocked(self).cloned()
    }
    fn set_asyncify_data_ptr(&mut self, ptr: Option<u32>) {
        WasiCtx::set_asyncify_data_ptr(self, ptr)
    }
}

/// A linker with our `wasi_snapshot_preview1` for [`WasiCtx`] guests.
pub fn wasi_linker(engine: &GuestEngine) -> Result<Linker<GuestData<WasiCtx>>, RuntimeError> {
    let mut linker = Linker::new(engine.engine());
    wasi::add_to_linker(&mut linker, |d: &mut GuestData<WasiCtx>| &mut d.host)
        .map_err(|e| RuntimeError::wasmtime("linker", e))?;
    Ok(linker)
}

/// Builds the virtual filesystem for `spec`: an empty root plus a copy of each `--dir`.
pub fn build_fs(
    engine: &GuestEngine,
    spec: &RunSpec,
) -> Result<(SharedFs, Vec<(String, Ino)>), RunError> {
    let mut memfs = MemFs::new(engine.config().limits.fs, spec.start_time_ns);
    let preopens = copy_dirs(&mut memfs, spec)?;
    Ok((fs::shared(memfs), preopens))
}

/// Copies each `--dir` of `spec` into `fs` at its guest path (creating missing
/// directories on the way; a name that already exists is an error) and returns the
/// preopens, in the order given.
pub fn copy_dirs(fs: &mut dyn FileSystem, spec: &RunSpec) -> Result<Vec<(String, Ino)>, RunError> {
    let mut preopens = Vec::with_capacity(spec.dirs.len());
    for dir in &spec.dirs {
        let ino = mkdir_all(fs, &dir.guest, spec.start_time_ns, &dir.host)?;
        copy_dir(fs, &dir.host, ino, spec.start_time_ns)?;
        preopens.push((dir.guest.clone(), ino));
    }
    Ok(preopens)
}

/// Runs `wasm` under `spec`, streaming stdout/stderr to the given sinks.
/// Must not be called from a guest thread; it makes its own.
pub fn run(
    engine: &GuestEngine,
    wasm: &[u8],
    spec: &RunSpec,
    stdout: Box<dyn OutputSink>,
    stderr: Box<dyn OutputSink>,
) -> Result<RunResult, RunError> {
    let module = engine.load(wasm)?;
    let (shared_fs, preopens) = build_fs(engine, spec)?;
    run_loaded(engine, module, spec, shared_fs, &preopens, stdout, stderr)
}

/// Like [`run`], on a filesystem the caller built (`spec.dirs` is not looked at:
/// `preopens` are the guest's preopened directories). The caller keeps `fs` and
/// decides what to do with the changes (`replicode run --state` commits them).
pub fn run_in(
    engine: &GuestEngine,
    wasm: &[u8],
    spec: &RunSpec,
    fs: SharedFs,
    preopens: &[(String, Ino)],
    stdout: Box<dyn OutputSink>,
    stderr: Box<dyn OutputSink>,
) -> Result<RunResult, RunError> {
    let module = engine.load(wasm)?;
    run_loaded(engine, module, spec, fs, preopens, stdout, stderr)
}

fn run_loaded(
    engine: &GuestEngine,
    module: Arc<CompiledModule>,
    spec: &RunSpec,
    shared_fs: SharedFs,
    preopens: &[(String, Ino)],
    stdout: Box<dyn OutputSink>,
    stderr: Box<dyn OutputSink>,
) -> Result<RunResult, RunError> {
    let stdin = Pipe::with_contents(0, &spec.stdin);
    stdin.close_write();
    let mut builder = WasiCtxBuilder::new(shared_fs.clone())
        .args(spec.args.iter())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .clock(Box::new(LogicalClock::new(spec.start_time_ns)))
        .entropy(Box::new(ChaChaEntropy::from_u64(spec.seed)))
        .max_fds(engine.config().limits.max_fds as usize)
        .fs_limits(engine.config().limits.fs);
    for (k, v) in &spec.env {
        builder = builder.env(k, v);
    }
    for (guest, ino) in preopens {
        builder = builder.preopen(guest, *ino);
    }
    let ctx = builder.build()?;
    let linker = wasi_linker(engine)?;
    let fuel = engine.config().limits.fuel;
    let report = exec::on_guest_stack(engine.config(), move || -> Result<_, RuntimeError> {
        let mut guest = GuestInstance::instantiate(engine, Arc::clone(&module), &linker, ctx)?;
        let report = guest.start(fuel)?;
        guest.host_mut().close_all();
        Ok(report)
    })??;
    let fs_digest = shared_fs.lock().map_err(|_| RunError::Poisoned)?.digest();
    Ok(RunResult {
        outcome: report.outcome,
        fuel_used: report.fuel_used,
        fs_digest,
    })
}

/// Creates (or reuses) the directories of `guest` under the root.
fn mkdir_all(fs: &mut dyn FileSystem, guest: &str, now: u64, host: &Path) -> Result<Ino, RunError> {
    let mut ino = ROOT_INO;
    for part in guest.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let copy_err = |errno| RunError::Copy {
            path: host.to_path_buf(),
            errno,
        };
        ino = match fs.lookup(ino, part.as_bytes()) {
            Ok(existing) => existing,
            Err(Errno::Noent) => fs.mkdir(ino, part.as_bytes(), now).map_err(copy_err)?,
            Err(errno) => return Err(copy_err(errno)),
        };
    }
    Ok(ino)
}

/// Copies the host tree at `host` into directory `dir`, entries in sorted order.
/// Iterative (explicit stack), so a deep host tree cannot exhaust the native stack.
fn copy_dir(fs: &mut dyn FileSystem, host: &Path, dir: Ino, now: u64) -> Result<(), RunError> {
    let mut pending = vec![(host.to_path_buf(), dir)];
    while let Some((host_dir, dir)) = pending.pop() {
        let io_err = |source| RunError::HostDir {
            path: host_dir.clone(),
            source,
        };
        let mut entries = std::fs::read_dir(&host_dir)
            .map_err(io_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err)?;
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .map(|n| n.as_encoded_bytes().to_vec())
                .unwrap_or_default();
            let meta = std::fs::symlink_metadata(&path).map_err(|source| RunError::HostDir {
                path: path.clone(),
                source,
            })?;
            let copy_err = |errno| RunError::Copy {
                path: path.clone(),
                errno,
            };
            if meta.is_dir() {
                let child = fs.mkdir(dir, &name, now).map_err(copy_err)?;
                pending.push((path.clone(), child));
            } else if meta.is_file() {
                let data = std::fs::read(&path).map_err(|source| RunError::HostDir {
                    path: path.clone(),
                    source,
                })?;
                let ino = fs.create_file(dir, &name, now).map_err(copy_err)?;
                fs.write(ino, 0, &data, now).map_err(copy_err)?;
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(|source| RunError::HostDir {
                    path: path.clone(),
                    source,
                })?;
                fs.symlink(dir, &name, target.as_os_str().as_encoded_bytes(), now)
                    .map_err(copy_err)?;
            } else {
                return Err(RunError::FileType { path });
            }
        }
    }
    Ok(())
}
