//! One live process: a wasmtime store and instance, driven through Asyncify.
//!
//! Why Asyncify here: a process that blocks returns from its entry point with
//! its call stack saved in linear memory (the unwind buffer). Between inputs no
//! wasm frame is live and no host thread is held, so hundreds of blocked
//! processes cost only their memory, and the whole process is plain bytes
//! (memory + globals + host state) that can be snapshotted and hashed.

use wasmtime::{Instance, Memory, Store, StoreLimits, StoreLimitsBuilder, TypedFunc};

use super::codec::{DecodeError, Reader, Writer};
use super::digest::{WrittenPages, PAGE_SIZE};
use super::dirty::DIRTY_MAP_EXPORT;
use super::error::ProcessError;
use super::globals::{GlobalHandles, GlobalValues};
use super::host::{GuestError, ProcessHost, Wait};
use super::module::ProcessModule;

/// Where the Asyncify unwind buffer lives: at the bottom of the guest's shadow
/// stack. Guests are linked with `--stack-first` (see wasm_programs/Makefile), so
/// addresses below the stack's lowest frame are stack space no frame uses unless
/// the program is within this many bytes of overflowing its stack. The buffer is
/// NOT appended after memory: wasi-libc's allocator grows the heap with
/// `memory.grow` and treats what follows its break as its own, so an appended
/// page ends up inside the heap and an unwind overwrites live allocations.
pub const UNWIND_BUFFER_ADDR: u32 = 1024;
/// Size of the unwind buffer; a blocked C program's saved frames take well under
/// 1 KiB, and an unwind that does not fit traps deterministically.
pub const UNWIND_BUFFER_BYTES: u32 = 16 * 1024;

/// Fuel granted to instantiation and not counted: instantiation runs no guest
/// code (start sections are refused by validation), and wasmtime's own
/// accounting of it is not deterministic (wasmtime issue 14331).
const INSTANTIATION_FUEL: u64 = 1 << 30;

/// What a store holds: the host state plus the deterministic resource limiter.
pub struct StoreData<H> {
    pub host: H,
    limits: StoreLimits,
}

/// Where a process is in its life as the process layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Entry point not called yet.
    Fresh,
    /// Unwound at a blocking import; resuming rewinds into it.
    Suspended,
}

impl Phase {
    pub(crate) fn encode(self, w: &mut Writer) {
        w.u8(match self {
            Phase::Fresh => 0,
            Phase::Suspended => 1,
        });
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("phase")? {
            0 => Ok(Phase::Fresh),
            1 => Ok(Phase::Suspended),
            v => Err(DecodeError::Invalid {
                what: "phase",
                value: u64::from(v),
            }),
        }
    }
}

/// How one call into the guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    Blocked(Wait),
    Exited(i32),
    OutOfFuel,
    Trap(String),
}

/// A live process.
pub struct ProcessInstance<H: ProcessHost> {
    store: Store<StoreData<H>>,
    memory: Memory,
    /// The store barrier's map (see [`super::dirty`]): nonzero bytes mark pages
    /// wasm code may have written since [`ProcessInstance::take_written_pages`].
    dirty_map: Memory,
    globals: GlobalHandles,
    entry: TypedFunc<(), ()>,
    start_rewind: TypedFunc<i32, ()>,
    stop_unwind: TypedFunc<(), ()>,
    get_state: TypedFunc<(), i32>,
    buffer: u32,
    phase: Phase,
}

fn instantiate<H: ProcessHost>(
    module: &ProcessModule<H>,
    host: H,
    max_memory_bytes: usize,
) -> Result<(Store<StoreData<H>>, Instance), ProcessError> {
    let limits = StoreLimitsBuilder::new()
        .memory_size(max_memory_bytes)
        .instances(1)
        .trap_on_grow_failure(false)
        .build();
    let mut store = Store::new(module.pre().module().engine(), StoreData { host, limits });
    store.limiter(|d| &mut d.limits);
    store
        .set_fuel(INSTANTIATION_FUEL)
        .map_err(|e| ProcessError::Instantiate(format!("fuel metering is off: {e:#}")))?;
    let instance = module
        .pre()
        .instantiate(&mut store)
        .map_err(|e| ProcessError::Instantiate(format!("{e:#}")))?;
    Ok((store, instance))
}

fn typed<P: wasmtime::WasmParams, R: wasmtime::WasmResults, H: ProcessHost>(
    store: &mut Store<StoreData<H>>,
    instance: &Instance,
    name: &'static str,
) -> Result<TypedFunc<P, R>, ProcessError> {
    instance
        .get_typed_func::<P, R>(&mut *store, name)
        .map_err(|_| ProcessError::MissingExport(name))
}

impl<H: ProcessHost> ProcessInstance<H> {
    fn wire(
        module: &ProcessModule<H>,
        host: H,
        max_memory_bytes: usize,
    ) -> Result<(Self, Instance), ProcessError> {
        let (mut store, instance) = instantiate(module, host, max_memory_bytes)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(ProcessError::MissingExport("memory"))?;
        let dirty_map = instance
            .get_memory(&mut store, DIRTY_MAP_EXPORT)
            .ok_or(ProcessError::MissingExport(DIRTY_MAP_EXPORT))?;
        let globals = GlobalHandles::find(&mut store, &instance);
        let entry = typed::<(), (), H>(&mut store, &instance, "_start")?;
        let start_rewind = typed::<i32, (), H>(&mut store, &instance, "asyncify_start_rewind")?;
        let stop_unwind = typed::<(), (), H>(&mut store, &instance, "asyncify_stop_unwind")?;
        let get_state = typed::<(), i32, H>(&mut store, &instance, "asyncify_get_state")?;
        let me = ProcessInstance {
            store,
            memory,
            dirty_map,
            globals,
            entry,
            start_rewind,
            stop_unwind,
            get_state,
            buffer: 0,
            phase: Phase::Fresh,
        };
        Ok((me, instance))
    }

    /// Instantiates a new process and places its unwind buffer at the bottom of
    /// its shadow stack (see [`UNWIND_BUFFER_ADDR`]).
    pub fn spawn(
        module: &ProcessModule<H>,
        host: H,
        max_memory_bytes: usize,
    ) -> Result<Self, ProcessError> {
        let (mut me, _) = Self::wire(module, host, max_memory_bytes)?;
        let buffer = UNWIND_BUFFER_ADDR;
        let region = buffer as usize..(buffer + UNWIND_BUFFER_BYTES) as usize;
        // Static data there means the program was not linked stack-first, so the
        // region is not stack space: refuse instead of corrupting its data.
        if me
            .memory()
            .get(region)
            .is_none_or(|bytes| bytes.iter().any(|&b| b != 0))
        {
            return Err(ProcessError::Instantiate(format!(
                "the unwind buffer needs bytes {buffer}..{} of memory to be stack space: \
                 link the program with -Wl,--stack-first and a stack of at least 64 KiB",
                buffer + UNWIND_BUFFER_BYTES
            )));
        }
        me.buffer = buffer;
        me.reset_unwind_header()?;
        me.store.data_mut().host.set_unwind_buffer(buffer);
        Ok(me)
    }

    /// Asyncify's buffer header: `{ current: u32, end: u32 }`, data after it.
    fn reset_unwind_header(&mut self) -> Result<(), ProcessError> {
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&(self.buffer + 8).to_le_bytes());
        header[4..].copy_from_slice(&(self.buffer + UNWIND_BUFFER_BYTES).to_le_bytes());
        self.memory
            .write(&mut self.store, self.buffer as usize, &header)
            .map_err(|e| ProcessError::Instantiate(format!("unwind buffer header: {e}")))
    }

    pub fn host(&self) -> &H {
        &self.store.data().host
    }

    pub fn host_mut(&mut self) -> &mut H {
        &mut self.store.data_mut().host
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn memory(&self) -> &[u8] {
        self.memory.data(&self.store)
    }

    pub fn memory_mut(&mut self) -> &mut [u8] {
        self.memory.data_mut(&mut self.store)
    }

    /// The pages written since the last call (by wasm code or by host calls),
    /// and forgets them. Over-approximates: a listed page may be unchanged.
    pub fn take_written_pages(&mut self) -> WrittenPages {
        let memory_pages = self.memory().len().div_ceil(PAGE_SIZE);
        let mut pages: Vec<u32> = Vec::new();
        let all = match self.store.data_mut().host.guest_writes() {
            None => true,
            Some(log) => {
                let overflowed = log.overflowed();
                for &(first, last) in log.ranges() {
                    pages.extend(first..=last.min(memory_pages as u32));
                }
                log.clear();
                overflowed
            }
        };
        // Marks past the memory can only come from stores that trapped; they are
        // left in place (harmless: a listed page is only compared).
        let map = self.dirty_map.data_mut(&mut self.store);
        let scanned = memory_pages.min(map.len());
        for (chunk_index, chunk) in map[..scanned].chunks_mut(8).enumerate() {
            if chunk.iter().all(|b| *b == 0) {
                continue;
            }
            for (i, b) in chunk.iter_mut().enumerate() {
                if *b != 0 {
                    *b = 0;
                    // A store marks the page of its first byte and may end on the next.
                    let page = (chunk_index * 8 + i) as u32;
                    pages.push(page);
                    pages.push(page + 1);
                }
            }
        }
        if all {
            return WrittenPages::All;
        }
        pages.sort_unstable();
        pages.dedup();
        pages.retain(|p| (*p as usize) < memory_pages);
        WrittenPages::Pages(pages)
    }

    pub fn capture_globals(&mut self) -> Result<GlobalValues, ProcessError> {
        Ok(self.globals.capture(&mut self.store)?)
    }

    pub fn apply_globals(&mut self, values: &GlobalValues) -> Result<(), ProcessError> {
        Ok(self.globals.apply(&mut self.store, values)?)
    }

    /// Replaces the host state (rollback or restore).
    pub fn set_host(&mut self, mut host: H) {
        host.set_unwind_buffer(self.buffer);
        self.store.data_mut().host = host;
    }

    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Runs the guest (first start or resume) with `fuel`; returns how it ended
    /// and the fuel consumed.
    pub fn run(&mut self, fuel: u64, now_ns: u64) -> (RunEnd, u64) {
        self.store.data_mut().host.set_now(now_ns);
        if self.store.set_fuel(fuel).is_err() {
            return (
                RunEnd::Trap("fuel metering is off in this engine".into()),
                0,
            );
        }
        let result = match self.phase {
            Phase::Fresh => self.entry.call(&mut self.store, ()),
            Phase::Suspended => self
                .start_rewind
                .call(&mut self.store, self.buffer as i32)
                .and_then(|()| self.entry.call(&mut self.store, ())),
        };
        let used = fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        let end = match result {
            Ok(()) => self.after_return(),
            Err(e) if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel) => {
                RunEnd::OutOfFuel
            }
            Err(e) => match self.store.data().host.classify(&e) {
                GuestError::Exit(code) => RunEnd::Exited(code),
                GuestError::Trap(reason) => RunEnd::Trap(reason),
            },
        };
        (end, used)
    }

    /// The entry point returned: either the program finished or it unwound.
    fn after_return(&mut self) -> RunEnd {
        // Calls into these helpers cost a few units of fuel; grant them so that
        // finishing an unwind can never be what runs out.
        let _ = self.store.set_fuel(1_000);
        match self.get_state.call(&mut self.store, ()) {
            Ok(1) => {}
            Ok(_) => return RunEnd::Exited(0),
            Err(e) => return RunEnd::Trap(format!("asyncify_get_state: {e:#}")),
        }
        if let Err(e) = self.stop_unwind.call(&mut self.store, ()) {
            return RunEnd::Trap(format!("asyncify_stop_unwind: {e:#}"));
        }
        match self.store.data_mut().host.take_wait() {
            Some(wait) => {
                self.phase = Phase::Suspended;
                RunEnd::Blocked(wait)
            }
            None => RunEnd::Trap("guest unwound without a blocking syscall".into()),
        }
    }

    /// Serializes everything needed to rebuild this process elsewhere (except the
    /// memory bytes, written by the caller from its shadow copy).
    pub fn encode_state(&mut self, w: &mut Writer) -> Result<(), ProcessError> {
        self.phase.encode(w);
        w.u32(self.buffer);
        self.capture_globals()?.encode(w);
        let mut host = Writer::new();
        self.host().encode_state(&mut host);
        w.bytes(&host.into_bytes());
        Ok(())
    }

    /// Puts back state written by [`ProcessInstance::encode_state`] into this
    /// instance (memory is restored separately); used to reject an input.
    pub fn rewind_state(&mut self, env: &H::Env, r: &mut Reader<'_>) -> Result<(), ProcessError> {
        self.phase = Phase::decode(r)?;
        self.buffer = r.u32("unwind buffer")?;
        let globals = GlobalValues::decode(r)?;
        let host_bytes = r.bytes("host state")?;
        let mut hr = Reader::new(host_bytes);
        let host = H::decode_state(env, &mut hr)?;
        hr.finish()?;
        self.set_host(host);
        self.apply_globals(&globals)
    }

    /// Rebuilds a process from [`ProcessInstance::encode_state`] output and its memory bytes.
    pub fn restore(
        module: &ProcessModule<H>,
        env: &H::Env,
        r: &mut Reader<'_>,
        memory: &[u8],
        max_memory_bytes: usize,
        pid: u64,
    ) -> Result<Self, ProcessError> {
        let phase = Phase::decode(r)?;
        let buffer = r.u32("unwind buffer")?;
        let globals = GlobalValues::decode(r)?;
        let host_bytes = r.bytes("host state")?;
        let mut hr = Reader::new(host_bytes);
        let host = H::decode_state(env, &mut hr)?;
        hr.finish()?;
        let (mut me, _) = Self::wire(module, host, max_memory_bytes)?;
        me.buffer = buffer;
        me.phase = phase;
        me.store.data_mut().host.set_unwind_buffer(buffer);
        me.replace_memory(memory)
            .map_err(|reason| ProcessError::Memory { pid, reason })?;
        me.apply_globals(&globals)?;
        Ok(me)
    }

    /// Grows memory to `bytes.len()` and overwrites it with `bytes`.
    pub fn replace_memory(&mut self, bytes: &[u8]) -> Result<(), String> {
        let cur = self.memory.data_size(&self.store);
        if bytes.len() < cur || !bytes.len().is_multiple_of(65536) {
            return Err(format!(
                "image is {} bytes, instance memory is {cur} bytes",
                bytes.len()
            ));
        }
        let extra = ((bytes.len() - cur) / 65536) as u64;
        if extra > 0 {
            self.memory
                .grow(&mut self.store, extra)
                .map_err(|e| format!("growing by {extra} pages: {e:#}"))?;
        }
        self.memory.data_mut(&mut self.store).copy_from_slice(bytes);
        Ok(())
    }
}
