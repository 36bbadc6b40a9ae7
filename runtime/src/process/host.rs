//! The contract between the process layer and a process's host state (its WASI context).
//!
//! Why a trait: the process layer owns scheduling, suspension, snapshots and
//! rollback; the WASI layer owns what a syscall means. Keeping the seam this
//! small lets each be tested alone (the process tests use a tiny host over a
//! WAT guest) and lets the WASI context plug in with one `impl`.

use wasmtime::Linker;

use super::codec::{DecodeError, Reader, Writer};
use super::instance::StoreData;
use crate::fs::Savepoint;
use crate::wasi::memory::WriteLog;

/// Which output stream bytes were written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamKind {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

impl StreamKind {
    /// The guest file descriptor of the stream.
    pub fn fd(self) -> u32 {
        match self {
            StreamKind::Stdout => 1,
            StreamKind::Stderr => 2,
        }
    }
}

/// Bytes a process wrote to one output stream during a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub stream: StreamKind,
    pub bytes: Vec<u8>,
    /// Bytes past the output limit were dropped (see [`ProcessHost::set_output_limit`]).
    pub truncated: bool,
}

/// What a suspended process waits for; it becomes runnable when any part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wait {
    /// Bytes (or end of input) on stdin.
    pub stdin: bool,
    /// Logical time reaching this many nanoseconds.
    pub deadline_ns: Option<u64>,
}

impl Wait {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(u8::from(self.stdin));
        match self.deadline_ns {
            None => w.u8(0),
            Some(d) => {
                w.u8(1);
                w.u64(d);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let stdin = r.bool("wait.stdin")?;
        let deadline_ns = if r.bool("wait.deadline present")? {
            Some(r.u64("wait.deadline")?)
        } else {
            None
        };
        Ok(Wait { stdin, deadline_ns })
    }
}

/// How a guest call ended with an error, as classified by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestError {
    /// The guest called `proc_exit(code)`.
    Exit(i32),
    /// Any other trap, with a one-line reason.
    Trap(String),
}

/// Host state of one process; implemented by the WASI context.
///
/// Blocking protocol (Asyncify): an import whose input is not there records a
/// [`Wait`] (returned by [`ProcessHost::take_wait`]) and calls the guest's
/// `asyncify_start_unwind(buffer)` with the buffer given by
/// [`ProcessHost::set_unwind_buffer`], then returns. When the process resumes the
/// same import is entered again while `asyncify_get_state() == 2`; it calls
/// `asyncify_stop_rewind()` and performs the syscall for real.
pub trait ProcessHost: Send + Sized + 'static {
    /// Shared, machine-wide context: the filesystem, limits, seeds.
    type Env: Clone + Send + 'static;

    /// What one process sees of the machine, chosen at spawn (e.g. its
    /// filesystem root); the default is the machine-wide view of `Env`.
    type View: Clone + Default + Send + 'static;

    /// A new process's host state: `args[0]` is the program name. Errors name
    /// the argument or variable that was refused. Runs inside the spawn's
    /// savepoint: what it changes in the filesystem is undone if the spawn is.
    fn spawn(
        env: &Self::Env,
        args: &[String],
        vars: &[(String, String)],
        view: &Self::View,
    ) -> Result<Self, String>;

    /// Registers the guest's imports (the host is `store.data().host`).
    fn add_to_linker(linker: &mut Linker<StoreData<Self>>) -> wasmtime::Result<()>;

    /// Where the process layer placed the Asyncify buffer in linear memory.
    fn set_unwind_buffer(&mut self, ptr: u32);

    /// The wait recorded by the import that started the last unwind, if any.
    fn take_wait(&mut self) -> Option<Wait>;

    /// Appends bytes to stdin.
    fn push_stdin(&mut self, bytes: &[u8]);

    /// Marks stdin as ended: reads return 0 once the buffered bytes are consumed.
    fn close_stdin(&mut self);

    /// True when a read on stdin would not block (bytes buffered, or end of input).
    fn stdin_ready(&self) -> bool;

    /// Bytes pushed to stdin and not read yet (bounded by the table, see
    /// [`super::table::MAX_PENDING_STDIN`]).
    fn stdin_pending(&self) -> usize;

    /// Sets the logical clock (nanoseconds) seen by the guest.
    fn set_now(&mut self, now_ns: u64);

    /// Output written since the last call, one entry per stream that has some.
    fn take_output(&mut self) -> Vec<Captured>;

    /// The most bytes each output stream may hold until the next
    /// [`ProcessHost::take_output`]; past it, writes succeed for the guest but
    /// the bytes are dropped and the stream's [`Captured::truncated`] is set. The
    /// scheduler sets it before every run to what the input may still output,
    /// so no run can make the host hold more.
    fn set_output_limit(&mut self, _max_bytes: usize) {}

    /// Classifies an error returned from a guest call.
    fn classify(&self, error: &wasmtime::Error) -> GuestError;

    /// Rekeys the process's random stream with `key`, from its start. The table
    /// calls this at spawn and, after each [`super::ProcessTable::set_entropy_seed`],
    /// before the process next runs, so randomness comes from consensus data per
    /// block; a host that offers its guest no randomness has nothing to rekey.
    fn reseed_entropy(&mut self, _key: [u8; 32]) {}

    /// The process ended (exit or kill): release what it holds (open inodes).
    /// Runs inside the input's filesystem savepoint, so it is undone with it.
    fn on_exit(&mut self) {}

    /// Serializes the host state that outlives a call: fd table, pending stdin,
    /// clock. Must be deterministic (hashed into the process digest).
    fn encode_state(&self, w: &mut Writer);

    /// Rebuilds host state written by [`ProcessHost::encode_state`].
    fn decode_state(env: &Self::Env, r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The log of guest pages this host's calls wrote, if the host keeps one;
    /// `None` makes the process layer compare the whole memory after each input.
    fn guest_writes(&mut self) -> Option<&mut WriteLog> {
        None
    }
    /// Marks a filesystem point the machine can roll back to (atomic inputs).
    fn savepoint(env: &Self::Env) -> Savepoint;

    /// Undoes filesystem changes since `sp`.
    fn rollback_to(env: &Self::Env, sp: Savepoint);

    /// Keeps filesystem changes since `sp`.
    fn release_savepoint(env: &Self::Env, sp: Savepoint);
}
