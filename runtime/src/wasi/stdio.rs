//! Pipes and output sinks: where stdio bytes come from and go to.
//!
//! A [`Pipe`] is a shared byte queue with a write-closed flag: stdin is one (the host
//! pushes input delivered by a transaction), and later pipes between processes are too.
//! Output goes to an [`OutputSink`]: a [`Capture`] buffer (the result of an input), the
//! host terminal for `replicode run`, or a pipe. Fd entries refer to pipes and sinks by
//! index into the context's tables, so the fd table stays plain data.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::errno::Errno;

#[derive(Debug, Default)]
struct PipeState {
    data: VecDeque<u8>,
    write_closed: bool,
    read_closed: bool,
}

/// A shared byte queue. Cloning gives another handle to the same queue.
#[derive(Debug, Clone)]
pub struct Pipe {
    id: u64,
    state: Arc<Mutex<PipeState>>,
}

/// What a read from a pipe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeRead {
    /// This many bytes were copied out.
    Data(usize),
    /// The queue is empty and the write side is closed: end of file.
    Eof,
    /// The queue is empty but more may come: the reader must wait.
    Empty,
}

impl Pipe {
    /// A new empty pipe. `id` names it in process snapshots (the caller keeps ids unique).
    pub fn new(id: u64) -> Pipe {
        Pipe {
            id,
            state: Arc::new(Mutex::new(PipeState::default())),
        }
    }

    /// A pipe that already holds `data` and is closed for writing (a whole stdin).
    pub fn with_contents(id: u64, data: &[u8]) -> Pipe {
        let pipe = Pipe::new(id);
        pipe.push(data);
        pipe.close_write();
        pipe
    }

    /// The id given at creation.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        // A poisoned lock only means another thread panicked mid-operation on a plain
        // byte queue; the queue itself is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends bytes (ignored once the read side is closed).
    pub fn push(&self, data: &[u8]) {
        let mut s = self.lock();
        if !s.read_closed {
            s.data.extend(data);
        }
    }

    /// Marks the end of the stream: readers get EOF once the queue drains.
    pub fn close_write(&self) {
        self.lock().write_closed = true;
    }

    /// Marks that nobody will read any more: writers get `EPIPE`.
    pub fn close_read(&self) {
        let mut s = self.lock();
        s.read_closed = true;
        s.data.clear();
    }

    /// Whether the write side has been closed.
    pub fn is_write_closed(&self) -> bool {
        self.lock().write_closed
    }

    /// Bytes waiting to be read.
    pub fn available(&self) -> usize {
        self.lock().data.len()
    }

    /// Moves up to `buf.len()` bytes out of the queue.
    pub fn read(&self, buf: &mut [u8]) -> PipeRead {
        let mut s = self.lock();
        if s.data.is_empty() {
            return if s.write_closed {
                PipeRead::Eof
            } else {
                PipeRead::Empty
            };
        }
        let n = buf.len().min(s.data.len());
        for (dst, src) in buf.iter_mut().zip(s.data.drain(..n)) {
            *dst = src;
        }
        PipeRead::Data(n)
    }
}

/// Somewhere guest output goes.
pub trait OutputSink: Send {
    /// Accepts `data`; returns how many bytes were taken (all, for every sink here).
    fn write(&mut self, data: &[u8]) -> Result<usize, Errno>;
}

impl OutputSink for Pipe {
    fn write(&mut self, data: &[u8]) -> Result<usize, Errno> {
        let mut s = self.lock();
        if s.read_closed || s.write_closed {
            return Err(Errno::Pipe);
        }
        s.data.extend(data);
        Ok(data.len())
    }
}

/// Captures output into a shared buffer; clone the handle to read it afterwards.
///
/// The buffer holds at most its limit (unlimited unless [`Capture::set_limit`]
/// says otherwise). Bytes past it are still reported written to the guest — so a
/// program behaves the same whatever the limit — but dropped, and the capture
/// remembers that it dropped some until the next [`Capture::take_marked`]. Why a
/// flag and not marker text: a marker inside the bytes would be indistinguishable
/// from output a guest wrote itself.
#[derive(Debug, Clone)]
pub struct Capture {
    state: Arc<Mutex<CaptureState>>,
}

#[derive(Debug)]
struct CaptureState {
    buf: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            state: Arc::new(Mutex::new(CaptureState {
                buf: Vec::new(),
                limit: usize::MAX,
                truncated: false,
            })),
        }
    }
}

impl Capture {
    /// An empty, unlimited capture buffer.
    pub fn new() -> Capture {
        Capture::default()
    }

    fn lock(&self) -> MutexGuard<'_, CaptureState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the most bytes the buffer keeps (bytes already kept stay).
    pub fn set_limit(&self, limit: usize) {
        self.lock().limit = limit;
    }

    /// A copy of everything captured so far.
    pub fn contents(&self) -> Vec<u8> {
        self.lock().buf.clone()
    }

    /// Everything captured so far, leaving the buffer empty.
    pub fn take(&self) -> Vec<u8> {
        self.take_marked().0
    }

    /// Everything captured so far and whether bytes were dropped at the limit
    /// since the last take; leaves the buffer empty and the flag clear.
    pub fn take_marked(&self) -> (Vec<u8>, bool) {
        let mut s = self.lock();
        let truncated = std::mem::replace(&mut s.truncated, false);
        (std::mem::take(&mut s.buf), truncated)
    }

    /// A boxed sink writing into this buffer.
    pub fn sink(&self) -> Box<dyn OutputSink> {
        Box::new(self.clone())
    }
}

impl OutputSink for Capture {
    fn write(&mut self, data: &[u8]) -> Result<usize, Errno> {
        let mut s = self.lock();
        let room = s.limit.saturating_sub(s.buf.len());
        let kept = data.get(..room.min(data.len())).unwrap_or_default();
        s.buf.extend_from_slice(kept);
        if kept.len() < data.len() {
            s.truncated = true;
        }
        Ok(data.len())
    }
}

/// Which host stream a [`TerminalSink`] writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStream {
    /// The host's standard output.
    Stdout,
    /// The host's standard error.
    Stderr,
}

/// Streams output to the host terminal as it is written (`replicode run`).
///
/// Host write errors (a closed terminal) are not reported to the guest: what the guest
/// observes must not depend on the host, so the write always "succeeds".
#[derive(Debug, Clone, Copy)]
pub struct TerminalSink(pub HostStream);

impl OutputSink for TerminalSink {
    fn write(&mut self, data: &[u8]) -> Result<usize, Errno> {
        let _ignored = match self.0 {
            HostStream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(data).and_then(|()| out.flush())
            }
            HostStream::Stderr => std::io::stderr().lock().write_all(data),
        };
        Ok(data.len())
    }
}

/// A sink that discards everything (`/dev/null`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl OutputSink for NullSink {
    fn write(&mut self, data: &[u8]) -> Result<usize, Errno> {
        Ok(data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_reports_data_then_empty_then_eof() {
        let p = Pipe::new(1);
        let mut buf = [0u8; 4];
        assert_eq!(p.read(&mut buf), PipeRead::Empty);
        p.push(b"hello");
        assert_eq!(p.read(&mut buf), PipeRead::Data(4));
        assert_eq!(&buf, b"hell");
        p.close_write();
        assert_eq!(p.read(&mut buf), PipeRead::Data(1));
        assert_eq!(p.read(&mut buf), PipeRead::Eof);
        let mut w = p.clone();
        assert_eq!(w.write(b"x"), Err(Errno::Pipe));
    }

    #[test]
    fn capture_collects_writes_from_clones() {
        let c = Capture::new();
        let mut s = c.sink();
        s.write(b"ab").expect("capture never fails");
        s.write(b"c").expect("capture never fails");
        assert_eq!(c.take(), b"abc");
        assert!(c.contents().is_empty());
    }

    #[test]
    fn capture_past_its_limit_reports_everything_written_but_keeps_the_limit() {
        let c = Capture::new();
        c.set_limit(4);
        let mut s = c.sink();
        assert_eq!(s.write(b"abc"), Ok(3));
        assert_eq!(s.write(b"defg"), Ok(4), "the guest is told all was written");
        assert_eq!(c.take_marked(), (b"abcd".to_vec(), true));
        assert_eq!(c.take_marked(), (Vec::new(), false), "the mark is cleared");
    }
}
