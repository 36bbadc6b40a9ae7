//! The WASI context as a process host: [`WasiProcess`] implements [`ProcessHost`].
//!
//! Why an adapter rather than using `WasiCtx` directly: the process layer must
//! serialize everything a process owns, and a context holds its clock and
//! entropy as trait objects. Here they are this module's own
//! [`ProcessClock`]/[`ProcessEntropy`], shared with the adapter through a handle
//! so their state can be written into snapshots. stdin is a [`Pipe`] the table
//! pushes into; stdout and stderr are [`Capture`]s drained after every run.

use std::sync::{Arc, Mutex};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use wasmtime::Linker;

use super::codec::{DecodeError, Reader, Writer};
use super::host::{Captured, GuestError, ProcessHost, StreamKind, Wait};
use super::instance::StoreData;
use crate::clock::{Clock, ClockId};
use crate::entropy::Entropy;
use crate::fs::{FsLimits, Ino, Savepoint, SharedFs};
use crate::wasi::memory::WriteLog;
use crate::wasi::{
    BlockOn, Capture, FdEntry, FdKind, FdTable, Pipe, WasiCtx, WasiCtxBuilder, DEFAULT_MAX_FDS,
};

/// Machine-wide settings every WASI process is built from.
#[derive(Clone)]
pub struct WasiEnv {
    pub fs: SharedFs,
    /// Directories preopened in every process (guest path, inode), from fd 3.
    pub preopens: Vec<(Vec<u8>, Ino)>,
    /// Realtime clock value at logical time 0 (genesis time).
    pub realtime_base_ns: u64,
    /// Entropy key; each process's stream is keyed by this and its arguments.
    pub seed: [u8; 32],
    pub max_fds: usize,
    /// Logical nanoseconds each clock read advances (busy-wait loops progress).
    pub clock_tick_ns: u64,
    /// The limits `fs` enforces (the genesis limits), so host calls charge file
    /// growth only up to them; `None` charges every byte a call asks to add
    /// (see `wasi::cost`). Consensus: every validator must set the same.
    pub fs_limits: Option<FsLimits>,
}

impl WasiEnv {
    pub fn new(fs: SharedFs) -> Self {
        WasiEnv {
            fs,
            preopens: vec![(b"/".to_vec(), crate::fs::ROOT_INO)],
            realtime_base_ns: 0,
            seed: [0; 32],
            max_fds: DEFAULT_MAX_FDS,
            clock_tick_ns: 1_000,
            fs_limits: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClockState {
    realtime_base_ns: u64,
    /// Monotonic logical time of this process; never behind the table's time.
    elapsed_ns: u64,
    tick_ns: u64,
}

/// A logical clock whose state the adapter can read and set.
#[derive(Debug, Clone)]
pub struct ProcessClock(Arc<Mutex<ClockState>>);

impl ProcessClock {
    fn with<R>(&self, f: impl FnOnce(&mut ClockState) -> R) -> R {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl Clock for ProcessClock {
    fn now_ns(&mut self, clock: ClockId) -> u64 {
        let now = self.peek_ns(clock);
        self.with(|s| s.elapsed_ns = s.elapsed_ns.saturating_add(s.tick_ns));
        now
    }
    fn peek_ns(&self, clock: ClockId) -> u64 {
        self.with(|s| match clock {
            ClockId::Realtime => s.realtime_base_ns.saturating_add(s.elapsed_ns),
            _ => s.elapsed_ns,
        })
    }
    fn resolution_ns(&self, _clock: ClockId) -> u64 {
        self.with(|s| s.tick_ns.max(1))
    }
    fn advance(&mut self, ns: u64) {
        self.with(|s| s.elapsed_ns = s.elapsed_ns.saturating_add(ns));
    }
}

#[derive(Debug, Clone)]
struct EntropyState {
    seed: [u8; 32],
    rng: ChaCha20Rng,
}

/// ChaCha20 whose key and position the adapter can serialize.
#[derive(Debug, Clone)]
pub struct ProcessEntropy(Arc<Mutex<EntropyState>>);

impl Entropy for ProcessEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .rng
            .fill_bytes(buf);
    }
}

/// One WASI process's host state.
pub struct WasiProcess {
    ctx: WasiCtx,
    stdin: Pipe,
    stdout: Capture,
    stderr: Capture,
    clock: ProcessClock,
    entropy: ProcessEntropy,
}

fn process_seed(env: &WasiEnv, args: &[String]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"replicode/process-entropy/v1");
    h.update(env.seed);
    for a in args {
        h.update((a.len() as u64).to_le_bytes());
        h.update(a.as_bytes());
    }
    h.finalize().into()
}

/// A directory to open at fd 3 on: guest path, inode, base and inheriting rights.
type PreopenSpec = (Vec<u8>, Ino, u64, u64);

fn build(
    env: &WasiEnv,
    args: &[Vec<u8>],
    vars: &[(Vec<u8>, Vec<u8>)],
    preopens: &[PreopenSpec],
    clock: ClockState,
    entropy: EntropyState,
) -> Result<WasiProcess, String> {
    let stdin = Pipe::new(0);
    let (stdout, stderr) = (Capture::new(), Capture::new());
    let clock = ProcessClock(Arc::new(Mutex::new(clock)));
    let entropy = ProcessEntropy(Arc::new(Mutex::new(entropy)));
    let mut b = WasiCtxBuilder::new(env.fs.clone())
        .args(args)
        .stdin(stdin.clone())
        .stdout(stdout.sink())
        .stderr(stderr.sink())
        .clock(Box::new(clock.clone()))
        .entropy(Box::new(entropy.clone()))
        .max_fds(env.max_fds);
    if let Some(limits) = env.fs_limits {
        b = b.fs_limits(limits);
    }
    for (k, v) in vars {
        b = b.env(k, v);
    }
    for (path, ino, base, inheriting) in preopens {
        b = b.preopen_with_rights(path, *ino, *base, *inheriting);
    }
    let ctx = b.build().map_err(|e| e.to_string())?;
    Ok(WasiProcess {
        ctx,
        stdin,
        stdout,
        stderr,
        clock,
        entropy,
    })
}

impl WasiProcess {
    /// The WASI context (fd table, exit code, block reason).
    pub fn ctx(&self) -> &WasiCtx {
        &self.ctx
    }
}

fn encode_block(w: &mut Writer, b: &Option<BlockOn>) {
    match b {
        None => w.u8(0),
        Some(BlockOn::Read { fd }) => {
            w.u8(1);
            w.u32(*fd);
        }
        Some(BlockOn::Poll {
            fds,
            started_ns,
            deadline_ns,
        }) => {
            w.u8(2);
            w.u32(fds.len() as u32);
            for fd in fds {
                w.u32(*fd);
            }
            w.u64(*started_ns);
            w.u8(u8::from(deadline_ns.is_some()));
            w.u64(deadline_ns.unwrap_or(0));
        }
    }
}

fn decode_block(r: &mut Reader<'_>) -> Result<Option<BlockOn>, DecodeError> {
    Ok(match r.u8("block tag")? {
        0 => None,
        1 => Some(BlockOn::Read {
            fd: r.u32("block fd")?,
        }),
        2 => {
            let n = r.u32("poll fd count")?;
            let mut fds = Vec::new();
            for _ in 0..n {
                fds.push(r.u32("poll fd")?);
            }
            let started_ns = r.u64("poll start")?;
            let has = r.bool("poll has deadline")?;
            let d = r.u64("poll deadline")?;
            Some(BlockOn::Poll {
                fds,
                started_ns,
                deadline_ns: has.then_some(d),
            })
        }
        v => {
            return Err(DecodeError::Invalid {
                what: "block tag",
                value: u64::from(v),
            })
        }
    })
}

fn encode_fd(w: &mut Writer, fd: u32, e: &FdEntry) {
    w.u32(fd);
    match &e.kind {
        FdKind::File { ino, offset } => {
            w.u8(0);
            w.u64(*ino);
            w.u64(*offset);
        }
        FdKind::Dir { ino, preopen } => {
            w.u8(1);
            w.u64(*ino);
            w.u8(u8::from(preopen.is_some()));
            w.bytes(preopen.as_deref().unwrap_or(&[]));
        }
        FdKind::PipeRead { pipe } => {
            w.u8(2);
            w.u32(*pipe);
        }
        FdKind::Sink { sink } => {
            w.u8(3);
            w.u32(*sink);
        }
    }
    w.u64(e.rights_base);
    w.u64(e.rights_inheriting);
    w.u32(u32::from(e.flags));
}

fn decode_fd(r: &mut Reader<'_>) -> Result<(u32, FdEntry), DecodeError> {
    let fd = r.u32("fd")?;
    let kind = match r.u8("fd kind")? {
        0 => FdKind::File {
            ino: r.u64("fd ino")?,
            offset: r.u64("fd offset")?,
        },
        1 => {
            let ino = r.u64("fd ino")?;
            let has = r.bool("preopen flag")?;
            let path = r.bytes("preopen path")?.to_vec();
            FdKind::Dir {
                ino,
                preopen: has.then_some(path),
            }
        }
        2 => FdKind::PipeRead {
            pipe: r.u32("fd pipe")?,
        },
        3 => FdKind::Sink {
            sink: r.u32("fd sink")?,
        },
        v => {
            return Err(DecodeError::Invalid {
                what: "fd kind",
                value: u64::from(v),
            })
        }
    };
    let rights_base = r.u64("fd rights")?;
    let rights_inheriting = r.u64("fd inheriting rights")?;
    let flags = r.u32("fd flags")?;
    let flags = u16::try_from(flags).map_err(|_| DecodeError::Invalid {
        what: "fd flags",
        value: u64::from(flags),
    })?;
    Ok((
        fd,
        FdEntry {
            kind,
            rights_base,
            rights_inheriting,
            flags,
        },
    ))
}

/// A service's own filesystem view: the directory `/home/<home>` of the
/// machine's tree is its `/` (created at its first spawn), and `/bin` is
/// open read-only; nothing else is reachable (`..` stops at each preopen,
/// absolute symlinks are refused, and no right lets a file move or be linked
/// between the two).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HomeView {
    /// One path component (the owner's address).
    pub home: Vec<u8>,
}

/// Where homes live in the machine's tree.
pub const HOMES_DIR: &[u8] = b"home";
/// The programs directory every view sees read-only.
pub const BIN_DIR: &[u8] = b"bin";

impl HomeView {
    /// The preopens of this view: its home (created if missing, as `/bin`)
    /// as `/` with every right, and `/bin` read-only.
    fn preopens(&self, env: &WasiEnv) -> Result<Vec<PreopenSpec>, String> {
        use crate::wasi::types::rights;
        let now = env.realtime_base_ns;
        let mut fs = env
            .fs
            .lock()
            .map_err(|_| "filesystem lock poisoned".to_string())?;
        let root = crate::fs::ROOT_INO;
        let homes = ensure_dir(&mut **fs, root, HOMES_DIR, now)?;
        let home = ensure_dir(&mut **fs, homes, &self.home, now)?;
        let bin = ensure_dir(&mut **fs, root, BIN_DIR, now)?;
        Ok(vec![
            (b"/".to_vec(), home, rights::DIR, rights::ALL),
            (
                b"/bin".to_vec(),
                bin,
                rights::DIR_READ_ONLY,
                rights::DIR_READ_ONLY | rights::FILE_READ_ONLY,
            ),
        ])
    }
}

/// The directory `name` in `parent`, made if it does not exist.
fn ensure_dir(
    fs: &mut dyn crate::fs::FileSystem,
    parent: Ino,
    name: &[u8],
    now_ns: u64,
) -> Result<Ino, String> {
    let shown = String::from_utf8_lossy(name).into_owned();
    let ino = match fs.lookup(parent, name) {
        Ok(ino) => ino,
        Err(crate::errno::Errno::Noent) => fs
            .mkdir(parent, name, now_ns)
            .map_err(|e| format!("cannot create the view directory {shown:?}: {e:?}"))?,
        Err(e) => {
            return Err(format!(
                "cannot look up the view directory {shown:?}: {e:?}"
            ))
        }
    };
    match fs.getattr(ino) {
        Ok(attr) if attr.kind == crate::fs::FileKind::Directory => Ok(ino),
        Ok(_) => Err(format!("the view directory {shown:?} is not a directory")),
        Err(e) => Err(format!("cannot stat the view directory {shown:?}: {e:?}")),
    }
}

impl ProcessHost for WasiProcess {
    type Env = WasiEnv;
    /// `None`: the machine-wide `env.preopens`.
    type View = Option<HomeView>;

    fn spawn(
        env: &WasiEnv,
        args: &[String],
        vars: &[(String, String)],
        view: &Option<HomeView>,
    ) -> Result<Self, String> {
        let preopens = match view {
            Some(view) => view.preopens(env)?,
            None => env
                .preopens
                .iter()
                .map(|(path, ino)| {
                    (
                        path.clone(),
                        *ino,
                        crate::wasi::types::rights::DIR,
                        crate::wasi::types::rights::ALL,
                    )
                })
                .collect(),
        };
        let seed = process_seed(env, args);
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let vars: Vec<(Vec<u8>, Vec<u8>)> = vars
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let clock = ClockState {
            realtime_base_ns: env.realtime_base_ns,
            elapsed_ns: 0,
            tick_ns: env.clock_tick_ns,
        };
        build(
            env,
            &args,
            &vars,
            &preopens,
            clock,
            EntropyState {
                seed,
                rng: ChaCha20Rng::from_seed(seed),
            },
        )
    }

    fn add_to_linker(linker: &mut Linker<StoreData<Self>>) -> wasmtime::Result<()> {
        crate::wasi::add_to_linker(linker, |d: &mut StoreData<WasiProcess>| &mut d.host.ctx)
    }

    fn set_unwind_buffer(&mut self, ptr: u32) {
        self.ctx.set_asyncify_data_ptr(Some(ptr));
    }

    fn guest_writes(&mut self) -> Option<&mut WriteLog> {
        Some(self.ctx.guest_writes_mut())
    }

    /// Peeks: the context keeps `blocked` until the rewind re-enters the import
    /// (so `poll_oneoff` measures relative timeouts from the original call).
    fn take_wait(&mut self) -> Option<Wait> {
        match self.ctx.blocked()? {
            BlockOn::Read { .. } => Some(Wait {
                stdin: true,
                deadline_ns: None,
            }),
            BlockOn::Poll {
                fds, deadline_ns, ..
            } => Some(Wait {
                stdin: !fds.is_empty(),
                deadline_ns: *deadline_ns,
            }),
        }
    }

    fn push_stdin(&mut self, bytes: &[u8]) {
        self.stdin.push(bytes);
    }

    fn close_stdin(&mut self) {
        self.stdin.close_write();
    }

    fn stdin_ready(&self) -> bool {
        self.stdin.available() > 0 || self.stdin.is_write_closed()
    }

    fn stdin_pending(&self) -> usize {
        self.stdin.available()
    }

    fn set_now(&mut self, now_ns: u64) {
        self.clock.with(|s| s.elapsed_ns = s.elapsed_ns.max(now_ns));
    }

    /// stdout first, then stderr: their relative order within one run is not kept.
    fn take_output(&mut self) -> Vec<Captured> {
        let mut out = Vec::new();
        for (stream, cap) in [
            (StreamKind::Stdout, &self.stdout),
            (StreamKind::Stderr, &self.stderr),
        ] {
            let (bytes, truncated) = cap.take_marked();
            if !bytes.is_empty() || truncated {
                out.push(Captured {
                    stream,
                    bytes,
                    truncated,
                });
            }
        }
        out
    }

    fn set_output_limit(&mut self, max_bytes: usize) {
        self.stdout.set_limit(max_bytes);
        self.stderr.set_limit(max_bytes);
    }

    fn classify(&self, error: &wasmtime::Error) -> GuestError {
        if let Some(code) = self.ctx.exit_code() {
            return GuestError::Exit(code);
        }
        GuestError::Trap(match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        })
    }

    fn on_exit(&mut self) {
        self.ctx.close_all();
    }

    fn reseed_entropy(&mut self, key: [u8; 32]) {
        *self
            .entropy
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = EntropyState {
            seed: key,
            rng: ChaCha20Rng::from_seed(key),
        };
    }

    fn encode_state(&self, w: &mut Writer) {
        w.u32(self.ctx.args.len() as u32);
        for a in &self.ctx.args {
            w.bytes(a);
        }
        w.u32(self.ctx.env.len() as u32);
        for kv in &self.ctx.env {
            w.bytes(kv);
        }
        w.u32(self.ctx.fds.max_fds() as u32);
        let fds: Vec<(u32, &FdEntry)> = self.ctx.fds.iter().collect();
        w.u32(fds.len() as u32);
        for (fd, e) in fds {
            encode_fd(w, fd, e);
        }
        // Pending stdin: drain and put back (the pipe has no peek).
        let mut pending = vec![0u8; self.stdin.available()];
        let _ = self.stdin.read(&mut pending);
        self.stdin.push(&pending);
        w.bytes(&pending);
        w.u8(u8::from(self.stdin.is_write_closed()));
        let c = self.clock.with(|s| *s);
        w.u64(c.realtime_base_ns);
        w.u64(c.elapsed_ns);
        w.u64(c.tick_ns);
        let e = self
            .entropy
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.raw(&e.seed);
        w.raw(&e.rng.get_word_pos().to_le_bytes());
        drop(e);
        encode_block(w, &self.ctx.blocked);
    }

    fn decode_state(env: &WasiEnv, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.u32("arg count")?;
        let mut args = Vec::new();
        for _ in 0..n {
            args.push(r.bytes("arg")?.to_vec());
        }
        let n = r.u32("env count")?;
        let mut vars = Vec::new();
        for _ in 0..n {
            let kv = r.bytes("env var")?;
            let eq = kv
                .iter()
                .position(|b| *b == b'=')
                .ok_or(DecodeError::Invalid {
                    what: "env var without '='",
                    value: 0,
                })?;
            vars.push((kv[..eq].to_vec(), kv[eq + 1..].to_vec()));
        }
        let max_fds = r.u32("max fds")? as usize;
        let n = r.u32("fd count")?;
        let mut table = FdTable::new(max_fds);
        for _ in 0..n {
            let (fd, entry) = decode_fd(r)?;
            table.put(fd, entry);
        }
        let pending = r.bytes("pending stdin")?.to_vec();
        let closed = r.bool("stdin closed")?;
        let clock = ClockState {
            realtime_base_ns: r.u64("clock base")?,
            elapsed_ns: r.u64("clock elapsed")?,
            tick_ns: r.u64("clock tick")?,
        };
        let seed = r.hash("entropy seed")?;
        let mut pos = [0u8; 16];
        pos.copy_from_slice(r.take(16, "entropy position")?);
        let mut rng = ChaCha20Rng::from_seed(seed);
        rng.set_word_pos(u128::from_le_bytes(pos));
        let blocked = decode_block(r)?;
        let mut env2 = env.clone();
        env2.max_fds = max_fds.max(3);
        let mut p =
            build(&env2, &args, &vars, &[], clock, EntropyState { seed, rng }).map_err(|_| {
                DecodeError::Invalid {
                    what: "process arguments",
                    value: 0,
                }
            })?;
        p.ctx.fds = table;
        p.ctx.blocked = blocked;
        p.stdin.push(&pending);
        if closed {
            p.stdin.close_write();
        }
        Ok(p)
    }

    fn savepoint(env: &WasiEnv) -> Savepoint {
        env.fs
            .lock()
            .map(|mut f| f.savepoint())
            .unwrap_or(Savepoint(0))
    }

    fn rollback_to(env: &WasiEnv, sp: Savepoint) {
        if let Ok(mut f) = env.fs.lock() {
            f.rollback_to(sp);
        }
    }

    fn release_savepoint(env: &WasiEnv, sp: Savepoint) {
        if let Ok(mut f) = env.fs.lock() {
            f.release_savepoint(sp);
        }
    }
}
