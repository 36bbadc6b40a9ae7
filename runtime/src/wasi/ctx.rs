//! The per-process WASI state and its builder.
//!
//! Every input a guest can observe is injected here — arguments, environment, the
//! shared filesystem, stdio, the clock and the entropy source — so nothing reaches
//! the host. The builder is the only way to make a context, which keeps the
//! "everything injectable" rule checkable in one place.

use std::sync::MutexGuard;

use super::block::BlockOn;
use super::cost::Meter;
use super::fd_table::{FdEntry, FdKind, FdTable};
use super::memory::WriteLog;
use super::stdio::{NullSink, OutputSink, Pipe};
use super::types::rights;
use crate::clock::{Clock, ClockId, LogicalClock};
use crate::entropy::{ChaChaEntropy, Entropy};
use crate::errno::Errno;
use crate::fs::{FileKind, FileSystem, FsLimits, Ino, SharedFs};

/// Default limit on open descriptors per process (stdio and preopens included).
pub const DEFAULT_MAX_FDS: usize = 1024;

/// Why a context could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WasiCtxError {
    /// An argument or environment string contains a NUL byte.
    #[error("{what} {value:?} contains a NUL byte")]
    Nul {
        /// "argument" or "environment variable".
        what: &'static str,
        /// The offending string (lossily decoded).
        value: String,
    },
    /// An environment variable name is empty or contains '='.
    #[error("environment variable name {0:?} is empty or contains '='")]
    EnvName(String),
    /// A preopen does not name a directory of the filesystem.
    #[error("preopen {guest_path:?}: inode {ino} is not a directory ({errno})")]
    Preopen {
        /// The guest path of the preopen.
        guest_path: String,
        /// The inode it should refer to.
        ino: Ino,
        /// What the filesystem said.
        errno: Errno,
    },
    /// More stdio and preopens than the descriptor limit.
    #[error("{needed} descriptors needed for stdio and preopens, but max_fds is {max}")]
    TooManyPreopens {
        /// Descriptors needed.
        needed: usize,
        /// The limit.
        max: usize,
    },
    /// The shared filesystem's lock is poisoned.
    #[error("the shared filesystem lock is poisoned")]
    Poisoned,
}

/// Per-process WASI state.
pub struct WasiCtx {
    pub(crate) args: Vec<Vec<u8>>,
    /// `KEY=VALUE` strings, in the order given.
    pub(crate) env: Vec<Vec<u8>>,
    pub(crate) fds: FdTable,
    pub(crate) fs: SharedFs,
    pub(crate) pipes: Vec<Pipe>,
    pub(crate) sinks: Vec<Box<dyn OutputSink>>,
    pub(crate) clock: Box<dyn Clock>,
    pub(crate) entropy: Box<dyn Entropy>,
    /// Set when a blocking import unwound the guest's stack (see `wasi::block`).
    pub(crate) blocked: Option<BlockOn>,
    /// The block being resumed from, consumed by the re-invoked import.
    pub(crate) resumed: Option<BlockOn>,
    pub(crate) asyncify_data_ptr: Option<u32>,
    pub(crate) exit_code: Option<i32>,
    /// Guest pages written by host calls; the process layer takes it after each
    /// run. Not state: never snapshotted or hashed.
    pub(crate) guest_writes: WriteLog,
    /// The fuel budget of the host call in progress (see `wasi::cost`). Not state.
    pub(crate) meter: Meter,
    /// The limits the filesystem enforces, so growth it would refuse is not
    /// charged; `None` charges every requested byte.
    pub(crate) fs_limits: Option<FsLimits>,
}

impl std::fmt::Debug for WasiCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasiCtx")
            .field("args", &self.args.len())
            .field("fds", &self.fds)
            .field("blocked", &self.blocked)
            .field("exit_code", &self.exit_code)
            .finish_non_exhaustive()
    }
}

impl WasiCtx {
    /// Locks the shared filesystem; a poisoned lock is reported to the guest as `EIO`.
    pub(crate) fn fs(&self) -> Result<MutexGuard<'_, Box<dyn FileSystem>>, Errno> {
        self.fs.lock().map_err(|_| Errno::Io)
    }

    /// Charges `fuel` to the host call in progress, before the work it pays for.
    /// On failure the call ends out of fuel (the returned errno is never seen).
    pub(crate) fn charge(&self, fuel: u64) -> Result<(), Errno> {
        self.meter.charge(fuel)
    }

    /// The current logical wall-clock time, used to stamp files. Peeking does not
    /// advance the clock, so filesystem calls do not move time.
    pub(crate) fn now_ns(&self) -> u64 {
        self.clock.peek_ns(ClockId::Realtime)
    }

    /// The exit code if the guest called `proc_exit`.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }

    /// Why the guest is suspended, if a blocking import unwound it.
    pub fn blocked(&self) -> Option<&BlockOn> {
        self.blocked.as_ref()
    }

    /// Where the asyncify data structure lives in guest memory (set by the executor
    /// before running an asyncify-transformed guest; see `wasi::block`).
    pub fn set_asyncify_data_ptr(&mut self, ptr: Option<u32>) {
        self.asyncify_data_ptr = ptr;
    }

    /// The guest pages host calls wrote since the last [`WriteLog::clear`].
    pub fn guest_writes_mut(&mut self) -> &mut WriteLog {
        &mut self.guest_writes
    }

    /// The descriptor table (plain data, for snapshots and inspection).
    pub fn fd_table(&self) -> &FdTable {
        &self.fds
    }

    /// The pipe a descriptor reads from, if it is a pipe read end.
    pub fn pipe_of_fd(&self, fd: u32) -> Option<&Pipe> {
        match self.fds.get(fd).ok()?.kind {
            FdKind::PipeRead { pipe } => self.pipes.get(pipe as usize),
            _ => None,
        }
    }

    /// The shared filesystem.
    pub fn shared_fs(&self) -> &SharedFs {
        &self.fs
    }

    /// Mutable access to the clock (the executor moves logical time between inputs).
    pub fn clock_mut(&mut self) -> &mut dyn Clock {
        self.clock.as_mut()
    }

    /// Closes every descriptor, releasing the inodes they kept alive. Called when the
    /// process ends so unlinked-but-open files are freed.
    pub fn close_all(&mut self) {
        let fds: Vec<u32> = self.fds.iter().map(|(fd, _)| fd).collect();
        for fd in fds {
            let _ = super::fd_calls::close(self, fd);
        }
    }
}

/// A directory a process finds open from its start (fd 3 on).
struct Preopen {
    guest_path: Vec<u8>,
    ino: Ino,
    base: u64,
    inheriting: u64,
}

/// Builds a [`WasiCtx`].
pub struct WasiCtxBuilder {
    fs: SharedFs,
    args: Vec<Vec<u8>>,
    env: Vec<(Vec<u8>, Vec<u8>)>,
    preopens: Vec<Preopen>,
    stdin: Option<Pipe>,
    stdout: Option<Box<dyn OutputSink>>,
    stderr: Option<Box<dyn OutputSink>>,
    clock: Option<Box<dyn Clock>>,
    entropy: Option<Box<dyn Entropy>>,
    max_fds: usize,
    fs_limits: Option<FsLimits>,
}

impl WasiCtxBuilder {
    /// A builder over `fs` with no arguments, no environment, empty closed stdin,
    /// discarded output, a clock at the epoch and entropy seeded with zero.
    pub fn new(fs: SharedFs) -> WasiCtxBuilder {
        WasiCtxBuilder {
            fs,
            args: Vec::new(),
            env: Vec::new(),
            preopens: Vec::new(),
            stdin: None,
            stdout: None,
            stderr: None,
            clock: None,
            entropy: None,
            max_fds: DEFAULT_MAX_FDS,
            fs_limits: None,
        }
    }

    /// Appends one argument (the first is the program name, `argv[0]`).
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Self {
        self.args.push(arg.as_ref().to_vec());
        self
    }

    /// Appends several arguments.
    pub fn args<I: IntoIterator<Item = A>, A: AsRef<[u8]>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_vec()));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.env
            .push((key.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Preopens directory `dir_ino` under `guest_path` (e.g. "/" or "/data")
    /// with every right.
    pub fn preopen(self, guest_path: impl AsRef<[u8]>, dir_ino: Ino) -> Self {
        self.preopen_with_rights(guest_path, dir_ino, rights::DIR, rights::ALL)
    }

    /// Preopens `dir_ino` under `guest_path` with the given rights: `base`
    /// on the directory fd, `inheriting` the most any fd opened through it
    /// may have (rights only ever shrink).
    pub fn preopen_with_rights(
        mut self,
        guest_path: impl AsRef<[u8]>,
        dir_ino: Ino,
        base: u64,
        inheriting: u64,
    ) -> Self {
        self.preopens.push(Preopen {
            guest_path: guest_path.as_ref().to_vec(),
            ino: dir_ino,
            base,
            inheriting,
        });
        self
    }

    /// Sets stdin.
    pub fn stdin(mut self, pipe: Pipe) -> Self {
        self.stdin = Some(pipe);
        self
    }

    /// Sets stdout.
    pub fn stdout(mut self, sink: Box<dyn OutputSink>) -> Self {
        self.stdout = Some(sink);
        self
    }

    /// Sets stderr.
    pub fn stderr(mut self, sink: Box<dyn OutputSink>) -> Self {
        self.stderr = Some(sink);
        self
    }

    /// Sets the clock.
    pub fn clock(mut self, clock: Box<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the entropy source.
    pub fn entropy(mut self, entropy: Box<dyn Entropy>) -> Self {
        self.entropy = Some(entropy);
        self
    }

    /// Sets the limit on open descriptors (`EMFILE` beyond it).
    pub fn max_fds(mut self, n: usize) -> Self {
        self.max_fds = n;
        self
    }

    /// Tells the context the limits its filesystem enforces, so growing a file
    /// past them is refused (`EFBIG`/`ENOSPC`) rather than charged. Without it a
    /// call pays for every byte it asks to add.
    pub fn fs_limits(mut self, limits: FsLimits) -> Self {
        self.fs_limits = Some(limits);
        self
    }

    /// Validates everything and builds the context: fds 0-2 are stdio, preopens follow
    /// from fd 3 in the order given.
    pub fn build(self) -> Result<WasiCtx, WasiCtxError> {
        for a in &self.args {
            check_no_nul("argument", a)?;
        }
        let mut env = Vec::with_capacity(self.env.len());
        for (k, v) in &self.env {
            if k.is_empty() || k.contains(&b'=') {
                return Err(WasiCtxError::EnvName(
                    String::from_utf8_lossy(k).into_owned(),
                ));
            }
            let mut kv = k.clone();
            kv.push(b'=');
            kv.extend_from_slice(v);
            check_no_nul("environment variable", &kv)?;
            env.push(kv);
        }
        let needed = 3 + self.preopens.len();
        if needed > self.max_fds {
            return Err(WasiCtxError::TooManyPreopens {
                needed,
                max: self.max_fds,
            });
        }
        let mut fds = FdTable::new(self.max_fds);
        let stdin = self.stdin.unwrap_or_else(|| Pipe::with_contents(0, b""));
        let stream = |kind, rights_base| FdEntry {
            kind,
            rights_base,
            rights_inheriting: 0,
            flags: 0,
        };
        fds.put(0, stream(FdKind::PipeRead { pipe: 0 }, rights::STREAM_IN));
        fds.put(1, stream(FdKind::Sink { sink: 0 }, rights::STREAM_OUT));
        fds.put(2, stream(FdKind::Sink { sink: 1 }, rights::STREAM_OUT));
        {
            let mut fs = self.fs.lock().map_err(|_| WasiCtxError::Poisoned)?;
            for (i, preopen) in self.preopens.iter().enumerate() {
                let (path, ino) = (&preopen.guest_path, &preopen.ino);
                let bad = |errno| WasiCtxError::Preopen {
                    guest_path: String::from_utf8_lossy(path).into_owned(),
                    ino: *ino,
                    errno,
                };
                match fs.getattr(*ino) {
                    Ok(attr) if attr.kind == FileKind::Directory => {}
                    Ok(_) => return Err(bad(Errno::Notdir)),
                    Err(e) => return Err(bad(e)),
                }
                fs.retain(*ino).map_err(bad)?;
                let entry = FdEntry {
                    kind: FdKind::Dir {
                        ino: *ino,
                        preopen: Some(path.clone()),
                    },
                    rights_base: preopen.base,
                    rights_inheriting: preopen.inheriting,
                    flags: 0,
                };
                fds.put(3 + i as u32, entry);
            }
        }
        Ok(WasiCtx {
            args: self.args,
            env,
            fds,
            fs: self.fs,
            pipes: vec![stdin],
            sinks: vec![
                self.stdout.unwrap_or_else(|| Box::new(NullSink)),
                self.stderr.unwrap_or_else(|| Box::new(NullSink)),
            ],
            clock: self.clock.unwrap_or_else(|| Box::new(LogicalClock::new(0))),
            entropy: self
                .entropy
                .unwrap_or_else(|| Box::new(ChaChaEntropy::from_u64(0))),
            blocked: None,
            resumed: None,
            asyncify_data_ptr: None,
            exit_code: None,
            guest_writes: WriteLog::default(),
            meter: Meter::unlimited(),
            fs_limits: self.fs_limits,
        })
    }
}

fn check_no_nul(what: &'static str, s: &[u8]) -> Result<(), WasiCtxError> {
    if s.contains(&0) {
        return Err(WasiCtxError::Nul {
            what,
            value: String::from_utf8_lossy(s).into_owned(),
        });
    }
    Ok(())
}
