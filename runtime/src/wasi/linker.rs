//! Registration of every `wasi_snapshot_preview1` import with a `wasmtime::Linker`.
//!
//! Each import is a thin adapter: find the guest's memory, borrow it alongside the
//! [`WasiCtx`] (`Memory::data_and_store_mut`, so neither is copied), call the
//! implementation, and turn its `Result` into the errno the guest sees. Every
//! call is metered (see [`metered`] and `wasi::cost`). Only `proc_exit`, a call
//! the guest cannot pay for, and a would-block read without asyncify end
//! execution; every other failure, including functions this runtime does not
//! support, is an errno.

use wasmtime::{Caller, Extern, Linker, Trap};

use super::block::{self, SysError};
use super::ctx::WasiCtx;
use super::memory::{GuestMemory, WriteLog};
use super::path_calls::OpenArgs;
use super::{args, clock, cost, fd_calls, path_calls, poll, proc, random};
use crate::errno::Errno;

const MODULE: &str = "wasi_snapshot_preview1";

type Get<T> = fn(&mut T) -> &mut WasiCtx;

fn code(r: Result<(), Errno>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => i32::from(e.raw()),
    }
}

/// Runs `f` with the context and the guest's memory (empty if it exports none, so
/// every pointer is then `EFAULT`). What `f` writes is added to the context's
/// [`WasiCtx::guest_writes`] log.
fn with_mem<T: 'static, R>(
    caller: &mut Caller<'_, T>,
    get: Get<T>,
    f: impl FnOnce(&mut WasiCtx, &mut GuestMemory<'_>) -> R,
) -> R {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => {
            let (bytes, data) = m.data_and_store_mut(caller);
            let ctx = get(data);
            let mut log = std::mem::take(&mut ctx.guest_writes);
            let result = f(ctx, &mut GuestMemory::new(bytes, &mut log));
            ctx.guest_writes = log;
            result
        }
        _ => {
            let mut log = WriteLog::default();
            f(
                get(caller.data_mut()),
                &mut GuestMemory::new(&mut [], &mut log),
            )
        }
    }
}

/// Runs `f` under the store's fuel: the remaining fuel becomes the context's
/// budget, [`cost::CALL`] and whatever `f` charges come out of it, and what is
/// left is written back. A call whose charge failed ends the run with
/// `Trap::OutOfFuel`, which both executors report as out of fuel, whatever `f`
/// returned. A store without fuel metering runs unmetered.
fn metered<T: 'static, R>(
    caller: &mut Caller<'_, T>,
    get: Get<T>,
    f: impl FnOnce(&mut WasiCtx, &mut GuestMemory<'_>) -> R,
) -> wasmtime::Result<R> {
    let fuel = caller.get_fuel().ok();
    let ctx = get(caller.data_mut());
    ctx.meter.start(fuel.unwrap_or(u64::MAX));
    let result = match ctx.charge(cost::CALL) {
        Ok(()) => Some(with_mem(caller, get, f)),
        Err(_) => None,
    };
    let (left, exhausted) = get(caller.data_mut()).meter.finish();
    if fuel.is_some() {
        caller.set_fuel(left)?;
    }
    match result {
        Some(r) if !exhausted => Ok(r),
        _ => Err(Trap::OutOfFuel.into()),
    }
}

fn call<T: 'static>(
    caller: &mut Caller<'_, T>,
    get: Get<T>,
    f: impl FnOnce(&mut WasiCtx, &mut GuestMemory<'_>) -> Result<(), Errno>,
) -> wasmtime::Result<i32> {
    metered(caller, get, f).map(code)
}

fn blockable<T: 'static>(
    caller: &mut Caller<'_, T>,
    get: Get<T>,
    f: impl FnOnce(&mut WasiCtx, &mut GuestMemory<'_>) -> Result<(), SysError>,
) -> wasmtime::Result<i32> {
    block::on_entry(caller, get)?;
    match metered(caller, get, f)? {
        Ok(()) => Ok(0),
        Err(SysError::Errno(e)) => Ok(i32::from(e.raw())),
        Err(SysError::Block(on)) => block::suspend(caller, get, on),
    }
}

/// Sockets are not supported: they take no iovecs and do no work, but each call
/// is still a host call and pays for one.
fn nosys(_: &mut WasiCtx, _: &mut GuestMemory<'_>) -> Result<(), Errno> {
    Err(Errno::Nosys)
}

/// Guest values arrive as signed wasm integers; the ABI means them unsigned.
fn u(v: i32) -> u32 {
    v as u32
}

fn u64_(v: i64) -> u64 {
    v as u64
}

/// Defines every `wasi_snapshot_preview1` import in `linker`, reaching the per-store
/// [`WasiCtx`] through `get`.
pub fn add_to_linker<T: 'static>(linker: &mut Linker<T>, get: Get<T>) -> wasmtime::Result<()> {
    add_args_clock_random(linker, get)?;
    add_fd(linker, get)?;
    add_path(linker, get)?;
    add_proc_poll_sock(linker, get)?;
    Ok(())
}

fn add_args_clock_random<T: 'static>(l: &mut Linker<T>, get: Get<T>) -> wasmtime::Result<()> {
    l.func_wrap(
        MODULE,
        "args_get",
        move |mut c: Caller<'_, T>, argv: i32, buf: i32| {
            call(&mut c, get, |ctx, mem| {
                ctx.charge(cost::strings(&ctx.args))?;
                args::get(&ctx.args, mem, u(argv), u(buf))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "args_sizes_get",
        move |mut c: Caller<'_, T>, count: i32, size: i32| {
            call(&mut c, get, |ctx, mem| {
                ctx.charge(cost::per(ctx.args.len() as u64, cost::LIST_ITEM))?;
                args::sizes(&ctx.args, mem, u(count), u(size))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "environ_get",
        move |mut c: Caller<'_, T>, env: i32, buf: i32| {
            call(&mut c, get, |ctx, mem| {
                ctx.charge(cost::strings(&ctx.env))?;
                args::get(&ctx.env, mem, u(env), u(buf))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "environ_sizes_get",
        move |mut c: Caller<'_, T>, count: i32, size: i32| {
            call(&mut c, get, |ctx, mem| {
                ctx.charge(cost::per(ctx.env.len() as u64, cost::LIST_ITEM))?;
                args::sizes(&ctx.env, mem, u(count), u(size))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "clock_res_get",
        move |mut c: Caller<'_, T>, id: i32, out: i32| {
            call(&mut c, get, |ctx, mem| {
                clock::clock_res_get(ctx, mem, u(id), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "clock_time_get",
        move |mut c: Caller<'_, T>, id: i32, _precision: i64, out: i32| {
            call(&mut c, get, |ctx, mem| {
                clock::clock_time_get(ctx, mem, u(id), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "random_get",
        move |mut c: Caller<'_, T>, buf: i32, len: i32| {
            call(&mut c, get, |ctx, mem| {
                random::random_get(ctx, mem, u(buf), u(len))
            })
        },
    )?;
    Ok(())
}

fn add_fd<T: 'static>(l: &mut Linker<T>, get: Get<T>) -> wasmtime::Result<()> {
    l.func_wrap(
        MODULE,
        "fd_read",
        move |mut c: Caller<'_, T>, fd: i32, iovs: i32, n: i32, out: i32| {
            blockable(&mut c, get, |ctx, mem| {
                fd_calls::fd_read(ctx, mem, u(fd), u(iovs), u(n), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_write",
        move |mut c: Caller<'_, T>, fd: i32, iovs: i32, n: i32, out: i32| {
            call(&mut c, get, |ctx, mem| {
                fd_calls::fd_write(ctx, mem, u(fd), u(iovs), u(n), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_pread",
        move |mut c: Caller<'_, T>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
            call(&mut c, get, |ctx, mem| {
                fd_calls::fd_pread(ctx, mem, u(fd), u(iovs), u(n), u64_(off), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_pwrite",
        move |mut c: Caller<'_, T>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
            call(&mut c, get, |ctx, mem| {
                fd_calls::fd_pwrite(ctx, mem, u(fd), u(iovs), u(n), u64_(off), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_seek",
        move |mut c: Caller<'_, T>, fd: i32, delta: i64, whence: i32, out: i32| {
            call(&mut c, get, |ctx, mem| match u8::try_from(whence) {
                Ok(w) => fd_calls::fd_seek(ctx, mem, u(fd), delta, w, u(out)),
                Err(_) => Err(Errno::Inval),
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_tell",
        move |mut c: Caller<'_, T>, fd: i32, out: i32| {
            call(&mut c, get, |ctx, mem| {
                fd_calls::fd_tell(ctx, mem, u(fd), u(out))
            })
        },
    )?;
    l.func_wrap(MODULE, "fd_close", move |mut c: Caller<'_, T>, fd: i32| {
        call(&mut c, get, |ctx, _| fd_calls::fd_close(ctx, u(fd)))
    })?;
    l.func_wrap(MODULE, "fd_sync", move |mut c: Caller<'_, T>, fd: i32| {
        call(&mut c, get, |ctx, _| fd_calls::fd_sync(ctx, u(fd)))
    })?;
    l.func_wrap(
        MODULE,
        "fd_datasync",
        move |mut c: Caller<'_, T>, fd: i32| {
            call(&mut c, get, |ctx, _| fd_calls::fd_sync(ctx, u(fd)))
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_fdstat_get",
        move |mut c: Caller<'_, T>, fd: i32, out: i32| {
            call(&mut c, get, |ctx, mem| {
                fd_calls::fd_fdstat_get(ctx, mem, u(fd), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_fdstat_set_flags",
        move |mut c: Caller<'_, T>, fd: i32, flags: i32| {
            call(&mut c, get, |ctx, _| match u16::try_from(flags) {
                Ok(f) => fd_calls::fd_fdstat_set_flags(ctx, u(fd), f),
                Err(_) => Err(Errno::Inval),
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_fdstat_set_rights",
        move |mut c: Caller<'_, T>, fd: i32, base: i64, inh: i64| {
            call(&mut c, get, |ctx, _| {
                fd_calls::fd_fdstat_set_rights(ctx, u(fd), u64_(base), u64_(inh))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_filestat_get",
        move |mut c: Caller<'_, T>, fd: i32, out: i32| {
            call(&mut c, get, |ctx, mem| {
                fd_calls::fd_filestat_get(ctx, mem, u(fd), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_filestat_set_size",
        move |mut c: Caller<'_, T>, fd: i32, size: i64| {
            call(&mut c, get, |ctx, _| {
                fd_calls::fd_filestat_set_size(ctx, u(fd), u64_(size))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_filestat_set_times",
        move |mut c: Caller<'_, T>, fd: i32, atim: i64, mtim: i64, flags: i32| {
            call(&mut c, get, |ctx, _| match u16::try_from(flags) {
                Ok(f) => fd_calls::fd_filestat_set_times(ctx, u(fd), u64_(atim), u64_(mtim), f),
                Err(_) => Err(Errno::Inval),
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_advise",
        move |mut c: Caller<'_, T>, fd: i32, off: i64, len: i64, advice: i32| {
            call(&mut c, get, |ctx, _| match u8::try_from(advice) {
                Ok(a) => fd_calls::fd_advise(ctx, u(fd), u64_(off), u64_(len), a),
                Err(_) => Err(Errno::Inval),
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_allocate",
        move |mut c: Caller<'_, T>, fd: i32, off: i64, len: i64| {
            call(&mut c, get, |ctx, _| {
                fd_calls::fd_allocate(ctx, u(fd), u64_(off), u64_(len))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_prestat_get",
        move |mut c: Caller<'_, T>, fd: i32, out: i32| {
            call(&mut c, get, |ctx, mem| {
                fd_calls::fd_prestat_get(ctx, mem, u(fd), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        move |mut c: Caller<'_, T>, fd: i32, path: i32, len: i32| {
            call(&mut c, get, |ctx, mem| {
                fd_calls::fd_prestat_dir_name(ctx, mem, u(fd), u(path), u(len))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_readdir",
        move |mut c: Caller<'_, T>, fd: i32, buf: i32, len: i32, cookie: i64, out: i32| {
            call(&mut c, get, |ctx, mem| {
                fd_calls::fd_readdir(ctx, mem, u(fd), u(buf), u(len), u64_(cookie), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_renumber",
        move |mut c: Caller<'_, T>, from: i32, to: i32| {
            call(&mut c, get, |ctx, _| {
                fd_calls::fd_renumber(ctx, u(from), u(to))
            })
        },
    )?;
    Ok(())
}

fn add_path<T: 'static>(l: &mut Linker<T>, get: Get<T>) -> wasmtime::Result<()> {
    l.func_wrap(
        MODULE,
        "path_open",
        move |mut c: Caller<'_, T>,
              fd: i32,
              dirflags: i32,
              p: i32,
              plen: i32,
              of: i32,
              base: i64,
              inh: i64,
              ff: i32,
              out: i32| {
            call(&mut c, get, |ctx, mem| {
                let (Ok(oflags), Ok(fdflags)) = (u16::try_from(of), u16::try_from(ff)) else {
                    return Err(Errno::Inval);
                };
                let args = OpenArgs {
                    dirflags: u(dirflags),
                    oflags,
                    rights_base: u64_(base),
                    rights_inheriting: u64_(inh),
                    fdflags,
                };
                path_calls::path_open(ctx, mem, u(fd), (u(p), u(plen)), &args, u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "path_create_directory",
        move |mut c: Caller<'_, T>, fd: i32, p: i32, len: i32| {
            call(&mut c, get, |ctx, mem| {
                path_calls::path_create_directory(ctx, mem, u(fd), u(p), u(len))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "path_remove_directory",
        move |mut c: Caller<'_, T>, fd: i32, p: i32, len: i32| {
            call(&mut c, get, |ctx, mem| {
                path_calls::path_remove_directory(ctx, mem, u(fd), u(p), u(len))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "path_unlink_file",
        move |mut c: Caller<'_, T>, fd: i32, p: i32, len: i32| {
            call(&mut c, get, |ctx, mem| {
                path_calls::path_unlink_file(ctx, mem, u(fd), u(p), u(len))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "path_filestat_get",
        move |mut c: Caller<'_, T>, fd: i32, flags: i32, p: i32, len: i32, out: i32| {
            call(&mut c, get, |ctx, mem| {
                path_calls::path_filestat_get(ctx, mem, u(fd), u(flags), (u(p), u(len)), u(out))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "path_filestat_set_times",
        move |mut c: Caller<'_, T>,
              fd: i32,
              flags: i32,
              p: i32,
              len: i32,
              atim: i64,
              mtim: i64,
              fst: i32| {
            call(&mut c, get, |ctx, mem| match u16::try_from(fst) {
                Ok(f) => path_calls::path_filestat_set_times(
                    ctx,
                    mem,
                    u(fd),
                    u(flags),
                    (u(p), u(len)),
                    (u64_(atim), u64_(mtim), f),
                ),
                Err(_) => Err(Errno::Inval),
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "path_link",
        move |mut c: Caller<'_, T>,
              ofd: i32,
              oflags: i32,
              op: i32,
              olen: i32,
              nfd: i32,
              np: i32,
              nlen: i32| {
            call(&mut c, get, |ctx, mem| {
                path_calls::path_link(
                    ctx,
                    mem,
                    (u(ofd), u(oflags), u(op), u(olen)),
                    (u(nfd), u(np), u(nlen)),
                )
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "path_readlink",
        move |mut c: Caller<'_, T>, fd: i32, p: i32, len: i32, buf: i32, buf_len: i32, out: i32| {
            call(&mut c, get, |ctx, mem| {
                path_calls::path_readlink(
                    ctx,
                    mem,
                    u(fd),
                    (u(p), u(len)),
                    u(buf),
                    u(buf_len),
                    u(out),
                )
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "path_rename",
        move |mut c: Caller<'_, T>, ofd: i32, op: i32, olen: i32, nfd: i32, np: i32, nlen: i32| {
            call(&mut c, get, |ctx, mem| {
                path_calls::path_rename(
                    ctx,
                    mem,
                    (u(ofd), u(op), u(olen)),
                    (u(nfd), u(np), u(nlen)),
                )
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "path_symlink",
        move |mut c: Caller<'_, T>, op: i32, olen: i32, fd: i32, np: i32, nlen: i32| {
            call(&mut c, get, |ctx, mem| {
                path_calls::path_symlink(ctx, mem, (u(op), u(olen)), u(fd), (u(np), u(nlen)))
            })
        },
    )?;
    Ok(())
}

fn add_proc_poll_sock<T: 'static>(l: &mut Linker<T>, get: Get<T>) -> wasmtime::Result<()> {
    l.func_wrap(
        MODULE,
        "poll_oneoff",
        move |mut c: Caller<'_, T>, subs: i32, out: i32, n: i32, nevents: i32| {
            blockable(&mut c, get, |ctx, mem| {
                poll::poll_oneoff(ctx, mem, u(subs), u(out), u(n), u(nevents))
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "proc_exit",
        move |mut c: Caller<'_, T>, status: i32| -> wasmtime::Result<()> {
            Err(proc::proc_exit(get(c.data_mut()), status))
        },
    )?;
    l.func_wrap(
        MODULE,
        "proc_raise",
        move |mut c: Caller<'_, T>, _sig: i32| call(&mut c, get, |_, _| proc::proc_raise()),
    )?;
    l.func_wrap(MODULE, "sched_yield", move |mut c: Caller<'_, T>| {
        call(&mut c, get, |_, _| proc::sched_yield())
    })?;
    l.func_wrap(
        MODULE,
        "sock_accept",
        move |mut c: Caller<'_, T>, _fd: i32, _flags: i32, _out: i32| call(&mut c, get, nosys),
    )?;
    l.func_wrap(
        MODULE,
        "sock_recv",
        move |mut c: Caller<'_, T>,
              _fd: i32,
              _ri: i32,
              _len: i32,
              _flags: i32,
              _out: i32,
              _oflags: i32| call(&mut c, get, nosys),
    )?;
    l.func_wrap(
        MODULE,
        "sock_send",
        move |mut c: Caller<'_, T>, _fd: i32, _si: i32, _len: i32, _flags: i32, _out: i32| {
            call(&mut c, get, nosys)
        },
    )?;
    l.func_wrap(
        MODULE,
        "sock_shutdown",
        move |mut c: Caller<'_, T>, _fd: i32, _how: i32| call(&mut c, get, nosys),
    )?;
    Ok(())
}
