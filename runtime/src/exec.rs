//! Runs one prepared module: instantiate, set fuel, call `_start`, drive the
//! Asyncify block/resume protocol, and classify how the run ended.
//!
//! Every ending is a [`RunOutcome`] value, identical on every validator: an
//! exit code, a block (waiting for input), a trap with its kind, out of fuel,
//! the logical stack limit, or the memory limit. Host failures that are not
//! the guest's doing are [`RuntimeError`]s instead.
//!
//! Native stack: guest code must run on a thread with at least
//! [`RuntimeConfig::guest_thread_stack`] bytes of stack, so the logical stack
//! limit fires before wasmtime's native one. [`on_guest_stack`] provides that
//! thread; [`GuestInstance::start`] and [`GuestInstance::resume`] refuse to run
//! anywhere else.
//!
//! Process snapshots (issue 5) are built from [`GuestInstance::memory`],
//! the instance's globals (including Asyncify's and the stack counter) and
//! [`GuestInstance::asyncify_data_ptr`]; after restoring them into a fresh
//! instance, [`GuestInstance::mark_blocked`] makes it resumable.

use std::cell::Cell;
use std::sync::Arc;

use wasmtime::{Global, Instance, Linker, Memory, ResourceLimiter, Store, Trap, TypedFunc, Val};

use crate::config::{RuntimeConfig, WASM_PAGE_BYTES};
use crate::engine::{CompiledModule, GuestEngine};
use crate::error::RuntimeError;
use crate::instrument::{asyncify, stack};

/// What the executor needs from the host state (the WASI context).
pub trait GuestHost: Send + 'static {
    /// What a blocked guest waits for (e.g. input on an fd).
    type Blocked: Clone + std::fmt::Debug + PartialEq;
    /// The code passed to `proc_exit`, once the guest called it.
    fn exit_code(&self) -> Option<i32>;
    /// Why the guest unwound, set by the blocking import.
    fn blocked(&self) -> Option<Self::Blocked>;
    /// Where the Asyncify buffer is (`None` when the module cannot block).
    fn set_asyncify_data_ptr(&mut self, ptr: Option<u32>);
}

/// How a wasm trap is classified (the kind is consensus; messages are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    Unreachable,
    MemoryOutOfBounds,
    IntegerDivisionByZero,
    IntegerOverflow,
    BadConversionToInteger,
    IndirectCallToNull,
    BadSignature,
    TableOutOfBounds,
    /// wasmtime's native stack limit. By construction the logical limit fires
    /// first; seeing this means the engine configuration is wrong.
    NativeStackOverflow,
    /// A host function failed in a way that is not an exit or a block.
    Host,
    /// Any other wasmtime trap code.
    Other,
}

/// A trap: its kind plus a human-readable message (not hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapReason {
    pub kind: TrapKind,
    pub message: String,
}

impl std::fmt::Display for TrapReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// How a call into the guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome<B> {
    /// `proc_exit(code)`, or `_start` returned (code 0).
    Exited(i32),
    /// The guest is suspended in a blocking import; [`GuestInstance::resume`] continues it.
    Blocked(B),
    /// A wasm trap or a failing host function.
    Trapped(TrapReason),
    /// The fuel for this call ran out.
    OutOfFuel,
    /// The logical stack limit ([`crate::config::Limits::max_stack_slots`]) was hit.
    StackOverflow,
    /// The guest trapped after `memory.grow` was refused at the memory limit.
    MemoryLimit,
}

/// A [`RunOutcome`] and the fuel the call consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport<B> {
    pub outcome: RunOutcome<B>,
    pub fuel_used: u64,
}

/// Store data: the host state plus the deterministic resource limiter.
pub struct GuestData<H> {
    pub host: H,
    limiter: GuestLimiter,
}

impl<H> GuestData<H> {
    pub fn new(host: H, config: &RuntimeConfig) -> Self {
        GuestData {
            host,
            limiter: GuestLimiter::new(config),
        }
    }
}

/// Refuses growth past the limits by returning `false`, which makes
/// `memory.grow` return -1 — the same on every machine (never a host OOM).
struct GuestLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    /// Set once a growth was refused; a later trap is reported as [`RunOutcome::MemoryLimit`].
    memory_denied: bool,
}

impl GuestLimiter {
    fn new(config: &RuntimeConfig) -> Self {
        GuestLimiter {
            max_memory_bytes: usize::try_from(config.max_memory_bytes()).unwrap_or(usize::MAX),
            max_table_elements: config.limits.max_table_elements as usize,
            memory_denied: false,
        }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_memory_bytes;
        self.memory_denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestState {
    /// Instantiated, `_start` not called yet.
    Fresh,
    /// Suspended in a blocking import.
    Blocked,
    /// Ended (exit, trap, fuel, limit); cannot run again.
    Finished,
}

impl GuestState {
    fn name(self) -> &'static str {
        match self {
            GuestState::Fresh => "fresh",
            GuestState::Blocked => "blocked",
            GuestState::Finished => "finished",
        }
    }
}

/// Asyncify's control exports and the unwind buffer.
struct AsyncifyControl {
    stop_unwind: TypedFunc<(), ()>,
    start_rewind: TypedFunc<i32, ()>,
    get_state: TypedFunc<(), i32>,
    data_ptr: u32,
}

/// One instantiated guest.
pub struct GuestInstance<H: GuestHost> {
    store: Store<GuestData<H>>,
    instance: Instance,
    module: Arc<CompiledModule>,
    memory: Memory,
    start: TypedFunc<(), ()>,
    depth: Global,
    max_stack_slots: u32,
    required_stack: usize,
    asyncify: Option<AsyncifyControl>,
    state: GuestState,
}

/// Fuel available while instantiating. Nothing the guest controls runs then
/// (start sections are refused), and the budget is replaced before `_start`.
const INSTANTIATION_FUEL: u64 = u64::MAX / 2;

impl<H: GuestHost> GuestInstance<H> {
    /// Instantiates `module` with `host` as the store's host state.
    ///
    /// If the module was asyncified, memory grows by `asyncify_pages` pages
    /// here and the unwind buffer header `{current, end}` is written at the
    /// start of them.
    pub fn instantiate(
        engine: &GuestEngine,
        module: Arc<CompiledModule>,
        linker: &Linker<GuestData<H>>,
        host: H,
    ) -> Result<Self, RuntimeError> {
        let config = engine.config();
        let mut store = Store::new(engine.engine(), GuestData::new(host, config));
        store.limiter(|d| &mut d.limiter);
        store
            .set_fuel(INSTANTIATION_FUEL)
            .map_err(|e| RuntimeError::wasmtime("set fuel", e))?;
        let instance = linker
            .instantiate(&mut store, &module.module)
            .map_err(|e| RuntimeError::wasmtime("instantiate", e))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(RuntimeError::MissingExport("memory"))?;
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|_| RuntimeError::MissingExport("_start"))?;
        let depth = instance
            .get_global(&mut store, stack::DEPTH_EXPORT)
            .ok_or(RuntimeError::MissingExport(stack::DEPTH_EXPORT))?;
        let asyncify = if module.prepared.asyncified {
            Some(Self::setup_asyncify(
                &mut store,
                &instance,
                memory,
                config.limits.asyncify_pages,
            )?)
        } else {
            None
        };
        store
            .data_mut()
            .host
            .set_asyncify_data_ptr(asyncify.as_ref().map(|a| a.data_ptr));
        store
            .set_fuel(0)
            .map_err(|e| RuntimeError::wasmtime("set fuel", e))?;
        Ok(GuestInstance {
            store,
            instance,
            module,
            memory,
            start,
            depth,
            max_stack_slots: config.limits.max_stack_slots,
            required_stack: config.guest_thread_stack(),
            asyncify,
            state: GuestState::Fresh,
        })
    }

    fn setup_asyncify(
        store: &mut Store<GuestData<H>>,
        instance: &Instance,
        memory: Memory,
        pages: u32,
    ) -> Result<AsyncifyControl, RuntimeError> {
        let typed = |store: &mut Store<GuestData<H>>, name: &'static str| {
            instance
                .get_func(&mut *store, name)
                .ok_or(RuntimeError::MissingExport(name))
        };
        let stop_unwind = typed(store, asyncify::STOP_UNWIND)?
            .typed::<(), ()>(&*store)
            .map_err(|_| RuntimeError::MissingExport(asyncify::STOP_UNWIND))?;
        let start_rewind = typed(store, asyncify::START_REWIND)?
            .typed::<i32, ()>(&*store)
            .map_err(|_| RuntimeError::MissingExport(asyncify::START_REWIND))?;
        let get_state = typed(store, asyncify::GET_STATE)?
            .typed::<(), i32>(&*store)
            .map_err(|_| RuntimeError::MissingExport(asyncify::GET_STATE))?;
        let old_pages = memory
            .grow(&mut *store, u64::from(pages))
            .map_err(|_| RuntimeError::AsyncifyBuffer { pages })?;
        let base = old_pages * WASM_PAGE_BYTES;
        let end = base + u64::from(pages) * WASM_PAGE_BYTES;
        let (Ok(data_ptr), Ok(end)) = (u32::try_from(base), u32::try_from(end)) else {
            return Err(RuntimeError::AsyncifyBuffer { pages });
        };
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&(data_ptr + 8).to_le_bytes());
        header[4..].copy_from_slice(&end.to_le_bytes());
        memory
            .write(&mut *store, data_ptr as usize, &header)
            .map_err(|_| RuntimeError::AsyncifyBuffer { pages })?;
        Ok(AsyncifyControl {
            stop_unwind,
            start_rewind,
            get_state,
            data_ptr,
        })
    }

    /// Calls `_start` with `fuel`. Must run inside [`on_guest_stack`].
    pub fn start(&mut self, fuel: u64) -> Result<RunReport<H::Blocked>, RuntimeError> {
        if self.state != GuestState::Fresh {
            return Err(RuntimeError::NotFresh(self.state.name()));
        }
        self.call(fuel, false)
    }

    /// Continues a blocked guest (Asyncify rewind) with `fuel`.
    /// Must run inside [`on_guest_stack`].
    pub fn resume(&mut self, fuel: u64) -> Result<RunReport<H::Blocked>, RuntimeError> {
        if self.state != GuestState::Blocked {
            return Err(RuntimeError::NotBlocked(self.state.name()));
        }
        self.call(fuel, true)
    }

    fn call(&mut self, fuel: u64, rewind: bool) -> Result<RunReport<H::Blocked>, RuntimeError> {
        if GUEST_STACK.get() < self.required_stack {
            return Err(RuntimeError::NotOnGuestStack);
        }
        self.store
            .set_fuel(fuel)
            .map_err(|e| RuntimeError::wasmtime("set fuel", e))?;
        let result = match (&self.asyncify, rewind) {
            (Some(a), true) => {
                let ptr = a.data_ptr as i32;
                a.start_rewind
                    .call(&mut self.store, ptr)
                    .and_then(|()| self.start.call(&mut self.store, ()))
            }
            _ => self.start.call(&mut self.store, ()),
        };
        let remaining = self
            .store
            .get_fuel()
            .map_err(|e| RuntimeError::wasmtime("get fuel", e))?;
        let outcome = self.classify(result)?;
        self.state = match outcome {
            RunOutcome::Blocked(_) => GuestState::Blocked,
            _ => GuestState::Finished,
        };
        Ok(RunReport {
            outcome,
            fuel_used: fuel.saturating_sub(remaining),
        })
    }

    fn classify(
        &mut self,
        result: wasmtime::Result<()>,
    ) -> Result<RunOutcome<H::Blocked>, RuntimeError> {
        if let Some(code) = self.store.data().host.exit_code() {
            return Ok(RunOutcome::Exited(code));
        }
        let err = match result {
            Ok(()) => return self.returned(),
            Err(err) => err,
        };
        let Some(trap) = err.downcast_ref::<Trap>().copied() else {
            return Ok(RunOutcome::Trapped(TrapReason {
                kind: TrapKind::Host,
                message: format!("{err:#}"),
            }));
        };
        if trap == Trap::OutOfFuel {
            return Ok(RunOutcome::OutOfFuel);
        }
        if trap == Trap::UnreachableCodeReached && self.stack_depth() > self.max_stack_slots {
            return Ok(RunOutcome::StackOverflow);
        }
        if self.store.data().limiter.memory_denied {
            return Ok(RunOutcome::MemoryLimit);
        }
        let kind = match trap {
            Trap::UnreachableCodeReached => TrapKind::Unreachable,
            Trap::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
            Trap::IntegerDivisionByZero => TrapKind::IntegerDivisionByZero,
            Trap::IntegerOverflow => TrapKind::IntegerOverflow,
            Trap::BadConversionToInteger => TrapKind::BadConversionToInteger,
            Trap::IndirectCallToNull => TrapKind::IndirectCallToNull,
            Trap::BadSignature => TrapKind::BadSignature,
            Trap::TableOutOfBounds => TrapKind::TableOutOfBounds,
            Trap::StackOverflow => TrapKind::NativeStackOverflow,
            _ => TrapKind::Other,
        };
        Ok(RunOutcome::Trapped(TrapReason {
            kind,
            message: format!("{err:#}"),
        }))
    }

    /// `_start` returned: either the guest finished or it unwound to block.
    fn returned(&mut self) -> Result<RunOutcome<H::Blocked>, RuntimeError> {
        let Some(a) = &self.asyncify else {
            return Ok(RunOutcome::Exited(0));
        };
        let state = a
            .get_state
            .call(&mut self.store, ())
            .map_err(|e| RuntimeError::wasmtime("asyncify_get_state", e))?;
        if state != asyncify::STATE_UNWINDING {
            return Ok(RunOutcome::Exited(0));
        }
        a.stop_unwind
            .call(&mut self.store, ())
            .map_err(|e| RuntimeError::wasmtime("asyncify_stop_unwind", e))?;
        match self.store.data().host.blocked() {
            Some(on) => Ok(RunOutcome::Blocked(on)),
            None => Ok(RunOutcome::Trapped(TrapReason {
                kind: TrapKind::Host,
                message: "guest unwound without a blocking import recording why".into(),
            })),
        }
    }

    /// Current value of the logical stack counter, in slots.
    pub fn stack_depth(&mut self) -> u32 {
        match self.depth.get(&mut self.store) {
            Val::I32(v) => v as u32,
            _ => 0,
        }
    }

    /// Marks a freshly instantiated guest whose memory and globals were
    /// restored from a blocked snapshot as blocked, so it can be resumed.
    pub fn mark_blocked(&mut self) -> Result<(), RuntimeError> {
        if self.asyncify.is_none() {
            return Err(RuntimeError::MissingExport(asyncify::START_REWIND));
        }
        self.state = GuestState::Blocked;
        Ok(())
    }

    pub fn state(&self) -> GuestState {
        self.state
    }
    pub fn memory(&self) -> Memory {
        self.memory
    }
    pub fn instance(&self) -> Instance {
        self.instance
    }
    pub fn module(&self) -> &Arc<CompiledModule> {
        &self.module
    }
    pub fn store(&self) -> &Store<GuestData<H>> {
        &self.store
    }
    pub fn store_mut(&mut self) -> &mut Store<GuestData<H>> {
        &mut self.store
    }
    pub fn host(&self) -> &H {
        &self.store.data().host
    }
    pub fn host_mut(&mut self) -> &mut H {
        &mut self.store.data_mut().host
    }
    /// Start of the Asyncify unwind buffer, if the module can block.
    pub fn asyncify_data_ptr(&self) -> Option<u32> {
        self.asyncify.as_ref().map(|a| a.data_ptr)
    }
    /// Bytes of linear memory.
    pub fn memory_data(&self) -> &[u8] {
        self.memory.data(&self.store)
    }
}

thread_local! {
    /// Native stack size of the current thread if it was made by [`on_guest_stack`].
    static GUEST_STACK: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` on a new thread with the native stack guests need under `config`,
/// and waits for it. Panics in `f` are propagated.
pub fn on_guest_stack<R: Send>(
    config: &RuntimeConfig,
    f: impl FnOnce() -> R + Send,
) -> Result<R, RuntimeError> {
    on_guest_stack_with_headroom(config, 0, f)
}

/// [`on_guest_stack`] with `extra` more bytes of native stack. Guest-visible
/// behaviour must not change with it (tests use it to prove that).
pub fn on_guest_stack_with_headroom<R: Send>(
    config: &RuntimeConfig,
    extra: usize,
    f: impl FnOnce() -> R + Send,
) -> Result<R, RuntimeError> {
    let size = config.guest_thread_stack().saturating_add(extra);
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("replicode-guest".into())
            .stack_size(size)
            .spawn_scoped(scope, move || {
                GUEST_STACK.set(size);
                f()
            });
        match spawned {
            Ok(handle) => match handle.join() {
                Ok(r) => Ok(r),
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => Err(RuntimeError::GuestThread {
                stack: size,
                detail: e.to_string(),
            }),
        }
    })
}

/// True if the current thread was made by [`on_guest_stack`].
pub fn is_on_guest_stack() -> bool {
    GUEST_STACK.get() > 0
}
