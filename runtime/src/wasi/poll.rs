//! `poll_oneoff`: clock subscriptions against logical time, and fd readiness.
//!
//! Readiness is decided from state every validator shares: files are always ready,
//! a pipe is ready when it holds bytes or its writer closed. When nothing is ready:
//! - with only clock subscriptions, the guest "sleeps": logical time jumps to the
//!   earliest deadline and that subscription fires. Sleeping never waits for real time.
//! - with a pipe to wait on, the guest blocks (see `wasi::block`) and the executor
//!   resumes it when input arrives or logical time passes the recorded deadline. Relative
//!   timeouts are measured from the time of the original call, which survives the
//!   suspension in [`BlockOn::Poll`].
//! - with a pipe to wait on but no way to suspend the guest, a clock subscription still
//!   fires by sleeping; without one the call fails with `WouldBlockForever`.

use super::block::{BlockOn, SysError};
use super::cost;
use super::ctx::WasiCtx;
use super::fd_table::FdKind;
use super::memory::{
    read_u16, read_u32, read_u64, read_u8, slice, write_bytes, write_u32, GuestMemory,
};
use super::types::event;
use crate::clock::ClockId;
use crate::errno::Errno;

/// One event to report.
struct Event {
    userdata: u64,
    error: Errno,
    kind: u8,
    nbytes: u64,
    flags: u16,
}

/// A clock subscription that has not fired yet.
struct PendingClock {
    userdata: u64,
    deadline: u64,
}

fn ready(userdata: u64, kind: u8, nbytes: u64, flags: u16) -> Event {
    Event {
        userdata,
        error: Errno::Success,
        kind,
        nbytes,
        flags,
    }
}

fn failed(userdata: u64, kind: u8, error: Errno) -> Event {
    Event {
        userdata,
        error,
        kind,
        nbytes: 0,
        flags: 0,
    }
}

/// Readiness of `fd` for reading, or None if the caller must wait for it.
fn read_readiness(ctx: &WasiCtx, userdata: u64, fd: u32) -> Option<Event> {
    let entry = match ctx.fds.get(fd) {
        Ok(e) => e,
        Err(e) => return Some(failed(userdata, event::FD_READ, e)),
    };
    match entry.kind {
        FdKind::File { ino, offset } => {
            let size = ctx
                .fs()
                .and_then(|fs| fs.getattr(ino))
                .map(|a| a.size)
                .unwrap_or(0);
            Some(ready(
                userdata,
                event::FD_READ,
                size.saturating_sub(offset),
                0,
            ))
        }
        FdKind::PipeRead { pipe } => {
            let pipe = ctx.pipes.get(pipe as usize)?;
            match (pipe.available(), pipe.is_write_closed()) {
                (0, false) => None,
                (0, true) => Some(ready(
                    userdata,
                    event::FD_READ,
                    0,
                    event::FD_READWRITE_HANGUP,
                )),
                (n, _) => Some(ready(userdata, event::FD_READ, n as u64, 0)),
            }
        }
        FdKind::Dir { .. } | FdKind::Sink { .. } => {
            Some(failed(userdata, event::FD_READ, Errno::Badf))
        }
    }
}

fn write_readiness(ctx: &WasiCtx, userdata: u64, fd: u32) -> Event {
    match ctx.fds.get(fd).map(|e| &e.kind) {
        Ok(FdKind::File { .. } | FdKind::Sink { .. }) => ready(userdata, event::FD_WRITE, 0, 0),
        Ok(_) => failed(userdata, event::FD_WRITE, Errno::Badf),
        Err(e) => failed(userdata, event::FD_WRITE, e),
    }
}

fn write_event(mem: &mut GuestMemory<'_>, out: u32, index: u32, ev: &Event) -> Result<(), Errno> {
    let mut rec = [0u8; event::EVENT_SIZE as usize];
    rec[0..8].copy_from_slice(&ev.userdata.to_le_bytes());
    rec[8..10].copy_from_slice(&ev.error.raw().to_le_bytes());
    rec[10] = ev.kind;
    rec[16..24].copy_from_slice(&ev.nbytes.to_le_bytes());
    rec[24..26].copy_from_slice(&ev.flags.to_le_bytes());
    let at = index
        .checked_mul(event::EVENT_SIZE)
        .and_then(|o| out.checked_add(o))
        .ok_or(Errno::Fault)?;
    write_bytes(mem, at, &rec)
}

pub(crate) fn poll_oneoff(
    ctx: &mut WasiCtx,
    mem: &mut GuestMemory<'_>,
    subs: u32,
    out: u32,
    n: u32,
    nevents: u32,
) -> Result<(), SysError> {
    if n == 0 {
        return Err(Errno::Inval.into());
    }
    let in_len = n
        .checked_mul(event::SUBSCRIPTION_SIZE)
        .ok_or(Errno::Fault)?;
    let out_len = n.checked_mul(event::EVENT_SIZE).ok_or(Errno::Fault)?;
    slice(mem, subs, in_len)?;
    slice(mem, out, out_len)?;
    slice(mem, nevents, 4)?;
    ctx.charge(cost::per(u64::from(n), cost::POLL_SUBSCRIPTION))?;

    let now = ctx.clock.peek_ns(ClockId::Monotonic);
    // Relative timeouts count from the original call when resuming a suspended poll.
    let started = match ctx.resumed.take() {
        Some(BlockOn::Poll { started_ns, .. }) => started_ns,
        _ => now,
    };
    let realtime = ctx.clock.peek_ns(ClockId::Realtime);
    let mut events = Vec::new();
    let mut clocks = Vec::new();
    let mut wait_fds = Vec::new();
    for i in 0..n {
        let base = subs + i * event::SUBSCRIPTION_SIZE;
        let userdata = read_u64(mem, base)?;
        let tag = read_u8(mem, base + 8)?;
        match tag {
            event::CLOCK => {
                let id = read_u32(mem, base + 16)?;
                let timeout = read_u64(mem, base + 24)?;
                let flags = read_u16(mem, base + 40)?;
                let Some(clock) = ClockId::from_raw(id) else {
                    events.push(failed(userdata, event::CLOCK, Errno::Inval));
                    continue;
                };
                let deadline = if flags & event::SUBSCRIPTION_CLOCK_ABSTIME == 0 {
                    started.saturating_add(timeout)
                } else if clock == ClockId::Realtime {
                    // Translate the wall-clock deadline into the monotonic domain.
                    now.saturating_add(timeout.saturating_sub(realtime))
                } else {
                    timeout
                };
                if deadline <= now {
                    events.push(ready(userdata, event::CLOCK, 0, 0));
                } else {
                    clocks.push(PendingClock { userdata, deadline });
                }
            }
            event::FD_READ => {
                let fd = read_u32(mem, base + 16)?;
                match read_readiness(ctx, userdata, fd) {
                    Some(ev) => events.push(ev),
                    None => wait_fds.push(fd),
                }
            }
            event::FD_WRITE => {
                let fd = read_u32(mem, base + 16)?;
                events.push(write_readiness(ctx, userdata, fd));
            }
            _ => events.push(failed(userdata, tag, Errno::Inval)),
        }
    }

    if events.is_empty() {
        let earliest = clocks.iter().map(|c| c.deadline).min();
        let can_block = ctx.asyncify_data_ptr.is_some();
        match earliest {
            Some(deadline) if wait_fds.is_empty() || !can_block => {
                ctx.clock.advance(deadline - now);
                events.extend(
                    clocks
                        .iter()
                        .filter(|c| c.deadline <= deadline)
                        .map(|c| ready(c.userdata, event::CLOCK, 0, 0)),
                );
            }
            _ => {
                wait_fds.sort_unstable();
                wait_fds.dedup();
                return Err(SysError::Block(BlockOn::Poll {
                    fds: wait_fds,
                    started_ns: started,
                    deadline_ns: earliest,
                }));
            }
        }
    }
    for (i, ev) in events.iter().enumerate() {
        write_event(mem, out, i as u32, ev)?;
    }
    write_u32(mem, nevents, events.len() as u32)?;
    Ok(())
}
