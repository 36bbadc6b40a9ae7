//! Wiring: executor → driver thread → ABCI server (socket protocol, or gRPC:
//! see [`crate::grpc`] and [`Transport`]).
//!
//! The socket server is our own rather than `tendermint_abci::Server`: that one
//! leaves Nagle's algorithm on and writes every response with its own `write`.
//! CometBFT's socket client sends each CheckTx followed by a Flush; the Flush
//! answer, a second small segment behind the unacknowledged CheckTx answer, was
//! held by Nagle until the client's delayed ACK (~40 ms on loopback), and the next
//! CheckTx answer queued behind it: a sequential `broadcast_tx_sync` took a median
//! 42 ms against 0.6 ms for CometBFT's kvstore over the same socket protocol.
//!
//! Here every connection sets `TCP_NODELAY`, answers all complete requests it has
//! buffered, and writes their answers in one `write` before it blocks on the next
//! read — so no answer ever waits for more input, and a pipelined burst (a recheck,
//! CheckTx + Flush) costs one system call.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prost::Message;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{request, response, Request, Response, ResponseException};

use crate::app::{App, FatalHook};
use crate::consensus::Core;
use crate::driver::Driver;
use crate::error::AppError;
use crate::executor::{Executor, ProgramValidator};
use crate::mempool::{Mempool, SharedView};

/// The largest request accepted: CometBFT's own limit on an ABCI message
/// (`maxMsgSize`, 100 MiB) plus room for the framing of a maximal block.
pub const MAX_REQUEST_BYTES: usize = 104_857_600 + 1_048_576;

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Why the ABCI server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("cannot listen for ABCI on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    #[error(transparent)]
    Grpc(#[from] crate::grpc::GrpcError),
}

/// How CometBFT talks to the app: its config.toml `abci` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `abci = "socket"`: length-prefixed protobuf over TCP (this module).
    Socket,
    /// `abci = "grpc"`: the `tendermint.abci.ABCI` gRPC service.
    Grpc,
}

impl Transport {
    /// The value of CometBFT's `abci` setting.
    pub fn config_value(self) -> &'static str {
        match self {
            Transport::Socket => "socket",
            Transport::Grpc => "grpc",
        }
    }

    /// Parses CometBFT's `abci` setting.
    pub fn from_config_value(value: &str) -> Option<Transport> {
        match value {
            "socket" => Some(Transport::Socket),
            "grpc" => Some(Transport::Grpc),
            _ => None,
        }
    }
}

/// Why one ABCI connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed length prefix (varint longer than 10 bytes)")]
    BadLength,
    #[error("request of {0} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit")]
    TooLarge(u64),
    #[error("undecodable request: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// A running ABCI server; its threads live as long as the process.
pub struct Running {
    pub local_addr: String,
    pub driver: JoinHandle<Result<(), AppError>>,
    pub listener: JoinHandle<()>,
}

/// Starts the driver thread and the ABCI listener on `addr` (e.g. 127.0.0.1:26658).
pub fn serve<E: Executor>(
    exec: E,
    validator: Arc<dyn ProgramValidator>,
    addr: SocketAddr,
    transport: Transport,
    fatal: FatalHook,
) -> Result<Running, ServeError> {
    let view = SharedView::default();
    let reader = exec.reader();
    let core = Core::new(exec, validator.clone(), view.clone())?;
    let (driver, commands) = Driver::new(core);
    let driver_fatal = fatal.clone();
    // Guests run on this thread (every process input, every wake-up): it gets
    // the native stack the runtime promises guests, so the logical stack limit
    // always fires before the native one, whatever the host's default.
    let driver = std::thread::Builder::new()
        .name("consensus".into())
        .stack_size(crate::machine::machine_config().guest_thread_stack())
        .spawn(move || {
            let result = driver.run();
            if let Err(err) = &result {
                driver_fatal(err);
            }
            result
        })
        .map_err(|e| ServeError::Thread("consensus", e))?;
    let app = App::new(
        commands,
        Mempool::new(view, validator, reader.clone()),
        reader,
        fatal,
    );
    let bind_error = |e: std::io::Error| ServeError::Bind {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    let socket = TcpListener::bind(addr).map_err(bind_error)?;
    let local_addr = socket.local_addr().map_err(bind_error)?.to_string();
    let listener = match transport {
        Transport::Socket => std::thread::Builder::new()
            .name("abci-listener".into())
            .spawn(move || accept_loop(socket, app))
            .map_err(|e| ServeError::Thread("abci-listener", e))?,
        Transport::Grpc => crate::grpc::spawn(socket, app)?,
    };
    Ok(Running {
        local_addr,
        driver,
        listener,
    })
}

/// Accepts CometBFT's connections (consensus, mempool, info, snapshot), one
/// thread each; `app` is cloned per connection.
pub fn accept_loop<A: Application>(socket: TcpListener, app: A) {
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = match socket.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::error!(error = %e, "ABCI accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        next_id += 1;
        let app = app.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("abci-conn-{next_id}"))
            .spawn(move || {
                tracing::info!(%peer, "ABCI connection");
                match serve_tcp(stream, &app) {
                    Ok(()) => tracing::info!(%peer, "ABCI connection closed"),
                    Err(e) => tracing::error!(%peer, error = %e, "ABCI connection failed"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start an ABCI connection thread");
        }
    }
}

/// Serves one TCP connection with Nagle's algorithm off.
pub fn serve_tcp<A: Application>(stream: TcpStream, app: &A) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    serve_connection(stream, app)
}

/// Serves one connection until the peer closes it (`Ok`) or it breaks.
///
/// Requests are answered strictly in arrival order, on this thread; answers to
/// every complete buffered request are written together before the next read.
pub fn serve_connection<S: Read + Write, A: Application>(
    mut stream: S,
    app: &A,
) -> Result<(), ConnectionError> {
    // `input[..filled]` holds received bytes; the rest is room for the next read
    // (zeroed only when it grows, so a large request costs no repeated memset).
    let mut input: Vec<u8> = vec![0; READ_CHUNK];
    let mut filled = 0;
    let mut output: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        let mut consumed = 0;
        // A malformed message ends the connection (as CometBFT's own server does),
        // but only after the answers to the requests before it are written: those
        // requests were executed.
        let broken = loop {
            let (header, len) = match frame(&input[consumed..filled]) {
                Ok(Some(framed)) => framed,
                Ok(None) => break None,
                Err(e) => break Some(e),
            };
            let body = &input[consumed + header..consumed + header + len];
            let request = match Request::decode(body) {
                Ok(request) => request,
                Err(e) => break Some(e.into()),
            };
            consumed += header + len;
            dispatch(app, request)
                .encode_length_delimited(&mut output)
                // A Vec grows as needed: encoding into it cannot run out of room.
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        };
        if !output.is_empty() {
            stream.write_all(&output)?;
            stream.flush()?;
            output.clear();
        }
        if let Some(e) = broken {
            return Err(e);
        }
        input.copy_within(consumed..filled, 0);
        filled -= consumed;
        if filled == 0 && input.len() > 16 * READ_CHUNK {
            // Give back the room a large block took once it is answered.
            input.truncate(READ_CHUNK);
            input.shrink_to_fit();
        }
        if input.len() - filled < READ_CHUNK / 2 {
            input.resize(filled + READ_CHUNK, 0);
        }
        let read = loop {
            match stream.read(&mut input[filled..]) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if read == 0 {
            return Ok(());
        }
        filled += read;
    }
}

/// The (prefix length, body length) of the first message in `buf`, `None` until
/// the whole message is there. The prefix is an unsigned varint (CometBFT's
/// `protoio` framing).
fn frame(buf: &[u8]) -> Result<Option<(usize, usize)>, ConnectionError> {
    let mut len: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i == 9 && byte > 1 {
                return Err(ConnectionError::BadLength);
            }
            let body = usize::try_from(len)
                .ok()
                .filter(|&n| n <= MAX_REQUEST_BYTES)
                .ok_or(ConnectionError::TooLarge(len))?;
            let header = i + 1;
            return Ok((buf.len() - header >= body).then_some((header, body)));
        }
    }
    if buf.len() >= 10 {
        return Err(ConnectionError::BadLength);
    }
    Ok(None)
}

/// Routes one request to the application.
fn dispatch<A: Application>(app: &A, request: Request) -> Response {
    use request::Value as Q;
    use response::Value as R;
    let value = match request.value {
        None => R::Exception(ResponseException {
            error: "empty ABCI request".into(),
        }),
        Some(Q::Echo(r)) => R::Echo(app.echo(r)),
        Some(Q::Flush(_)) => R::Flush(app.flush()),
        Some(Q::Info(r)) => R::Info(app.info(r)),
        Some(Q::InitChain(r)) => R::InitChain(app.init_chain(r)),
        Some(Q::Query(r)) => R::Query(app.query(r)),
        Some(Q::CheckTx(r)) => R::CheckTx(app.check_tx(r)),
        Some(Q::Commit(_)) => R::Commit(app.commit()),
        Some(Q::ListSnapshots(_)) => R::ListSnapshots(app.list_snapshots()),
        Some(Q::OfferSnapshot(r)) => R::OfferSnapshot(app.offer_snapshot(r)),
        Some(Q::LoadSnapshotChunk(r)) => R::LoadSnapshotChunk(app.load_snapshot_chunk(r)),
        Some(Q::ApplySnapshotChunk(r)) => R::ApplySnapshotChunk(app.apply_snapshot_chunk(r)),
        Some(Q::PrepareProposal(r)) => R::PrepareProposal(app.prepare_proposal(r)),
        Some(Q::ProcessProposal(r)) => R::ProcessProposal(app.process_proposal(r)),
        Some(Q::ExtendVote(r)) => R::ExtendVote(app.extend_vote(r)),
        Some(Q::VerifyVoteExtension(r)) => R::VerifyVoteExtension(app.verify_vote_extension(r)),
        Some(Q::FinalizeBlock(r)) => R::FinalizeBlock(app.finalize_block(r)),
    };
    Response { value: Some(value) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tendermint_proto::v0_38::abci::{
        RequestCheckTx, RequestEcho, RequestFlush, ResponseCheckTx,
    };

    /// Answers CheckTx with the tx length as gas, Echo with the message.
    #[derive(Clone)]
    struct Probe;

    impl Application for Probe {
        fn check_tx(&self, req: RequestCheckTx) -> ResponseCheckTx {
            ResponseCheckTx {
                gas_wanted: i64::try_from(req.tx.len()).unwrap_or(-1),
                ..Default::default()
            }
        }
    }

    fn check(tx: &[u8]) -> Request {
        Request {
            value: Some(request::Value::CheckTx(RequestCheckTx {
                tx: tx.to_vec().into(),
                r#type: 0,
            })),
        }
    }

    fn flush() -> Request {
        Request {
            value: Some(request::Value::Flush(RequestFlush {})),
        }
    }

    fn encode(requests: &[Request]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in requests {
            r.encode_length_delimited(&mut out).expect("encode");
        }
        out
    }

    fn decode_all(mut bytes: &[u8]) -> Vec<Response> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            out.push(Response::decode_length_delimited(&mut bytes).expect("response"));
        }
        out
    }

    /// An in-memory stream: reads from `input` in fixed-size pieces, records
    /// every write separately.
    struct Scripted {
        input: Vec<u8>,
        pos: usize,
        piece: usize,
        writes: Vec<Vec<u8>>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.piece.min(buf.len()).min(self.input.len() - self.pos);
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.writes.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run(input: Vec<u8>, piece: usize) -> (Result<(), ConnectionError>, Vec<Vec<u8>>) {
        let mut s = Scripted {
            input,
            pos: 0,
            piece,
            writes: Vec::new(),
        };
        let result = serve_connection(&mut s, &Probe);
        (result, s.writes)
    }

    fn gas(r: &Response) -> i64 {
        match &r.value {
            Some(response::Value::CheckTx(c)) => c.gas_wanted,
            other => panic!("expected CheckTx, got {other:?}"),
        }
    }

    #[test]
    fn a_pipelined_burst_is_answered_in_order_with_one_write() {
        let (result, writes) = run(encode(&[check(b"a"), check(b"bbb"), flush()]), 1 << 20);
        result.expect("clean close");
        assert_eq!(writes.len(), 1, "one write for the whole burst");
        let answers = decode_all(&writes[0]);
        assert_eq!(answers.len(), 3);
        assert_eq!(gas(&answers[0]), 1);
        assert_eq!(gas(&answers[1]), 3);
        assert!(matches!(answers[2].value, Some(response::Value::Flush(_))));
    }

    #[test]
    fn requests_split_across_reads_are_reassembled() {
        let big = vec![7u8; 300_000];
        let input = encode(&[check(&big), check(b"xy")]);
        // One byte at a time for the prefix and body, then the rest.
        let (result, writes) = run(input.clone(), 1);
        result.expect("clean close");
        let answers: Vec<Response> = writes.iter().flat_map(|w| decode_all(w)).collect();
        assert_eq!(
            answers.iter().map(gas).collect::<Vec<_>>(),
            vec![300_000, 2]
        );
        let (_, writes) = run(input, 4096);
        let answers: Vec<Response> = writes.iter().flat_map(|w| decode_all(w)).collect();
        assert_eq!(
            answers.iter().map(gas).collect::<Vec<_>>(),
            vec![300_000, 2]
        );
    }

    #[test]
    fn an_answer_is_written_before_waiting_for_more_input() {
        // A complete request followed by half of the next: the first answer must
        // be out before the connection reads (and here, sees EOF) again.
        let mut input = encode(&[check(b"one")]);
        let second = encode(&[check(b"two")]);
        input.extend_from_slice(&second[..second.len() / 2]);
        let (result, writes) = run(input, 1 << 20);
        result.expect("EOF mid-request is a close");
        let answers: Vec<Response> = writes.iter().flat_map(|w| decode_all(w)).collect();
        assert_eq!(answers.iter().map(gas).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn oversized_and_malformed_prefixes_end_the_connection() {
        let mut huge = Vec::new();
        prost::encoding::encode_varint(MAX_REQUEST_BYTES as u64 + 1, &mut huge);
        assert!(matches!(run(huge, 64).0, Err(ConnectionError::TooLarge(_))));
        assert!(matches!(
            run(vec![0xff; 11], 64).0,
            Err(ConnectionError::BadLength)
        ));
        // A prefix announcing 3 bytes of garbage protobuf.
        assert!(matches!(
            run(vec![3, 0xff, 0xff, 0xff], 64).0,
            Err(ConnectionError::Decode(_))
        ));
    }

    #[test]
    fn answers_before_a_malformed_message_are_written_before_the_connection_ends() {
        let echo = Request {
            value: Some(request::Value::Echo(RequestEcho {
                message: "before".into(),
            })),
        };
        let mut input = encode(&[echo]);
        input.extend_from_slice(&[3, 0xff, 0xff, 0xff]);
        let (result, writes) = run(input, 1 << 20);
        assert!(matches!(result, Err(ConnectionError::Decode(_))));
        let answers = decode_all(&writes.concat());
        assert!(
            matches!(&answers[..], [Response { value: Some(response::Value::Echo(e)) }] if e.message == "before"),
            "the echo answer must be written: {answers:?}"
        );
    }

    #[test]
    fn empty_requests_get_an_exception_and_echo_works() {
        let echo = Request {
            value: Some(request::Value::Echo(RequestEcho {
                message: "hi".into(),
            })),
        };
        let (result, writes) = run(encode(&[Request { value: None }, echo]), 1 << 20);
        result.expect("clean close");
        let answers = decode_all(&writes[0]);
        assert!(matches!(
            answers[0].value,
            Some(response::Value::Exception(_))
        ));
        assert!(matches!(&answers[1].value, Some(response::Value::Echo(e)) if e.message == "hi"));
    }

    #[test]
    fn tcp_connections_have_nagle_off() {
        let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        let client = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).expect("connect");
            c.write_all(&encode(&[check(b"abcd"), flush()]))
                .expect("send");
            c.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut all = Vec::new();
            c.read_to_end(&mut all).expect("read");
            all
        });
        let (stream, _) = socket.accept().expect("accept");
        let probe = stream.try_clone().expect("clone");
        serve_tcp(stream, &Probe).expect("served");
        let nodelay = probe.nodelay().expect("nodelay");
        // The clone keeps the socket open: drop it so the client sees EOF.
        drop(probe);
        assert!(nodelay, "TCP_NODELAY must be set");
        let answers = decode_all(&client.join().expect("client"));
        assert_eq!(gas(&answers[0]), 4);
        assert_eq!(answers.len(), 2);
    }
}
