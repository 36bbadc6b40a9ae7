//! The ABCI gRPC transport: CometBFT's `abci = "grpc"` client, served by tonic.
//!
//! Why a second transport: CometBFT's socket client costs CometBFT itself far
//! more CPU per transaction than its gRPC client. Measured with the same Go
//! kvstore app behind each transport on the 4-validator loopback testnet (2
//! cores, all saturated): in-process 3,844 tx/s, gRPC 3,496 tx/s, socket
//! 2,268 tx/s (unix socket 2,304). The socket client re-arms a flush timer and
//! sends a Flush request per CheckTx; gRPC makes one unary call.
//!
//! The service is `tendermint.abci.ABCI` (the CometBFT v0.38 proto package),
//! one unary method per request kind, routed by hand to the same
//! [`Application`] the socket server uses (tonic's code generator needs the
//! `.proto` files and protoc; the messages come from `tendermint-proto`).
//!
//! Threads: one tokio thread (a current-thread runtime) drives the HTTP/2
//! connections and answers CheckTx, Echo and Flush from shared state. Calls that
//! wait for the consensus driver thread run on tokio's blocking pool
//! (`spawn_blocking`), so a long FinalizeBlock never stalls the mempool's
//! CheckTx calls. CometBFT waits for each consensus answer before sending the
//! next request, so they still execute strictly in order. (A 2-worker runtime
//! with `block_in_place` used 7.3 s of app CPU against 6.4 s in one testnet
//! bench run each.)

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tendermint_abci::Application;
use tendermint_proto::v0_38::abci as pb;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::server::MAX_REQUEST_BYTES;

/// The gRPC service name CometBFT v0.38 calls.
pub const SERVICE_NAME: &str = "tendermint.abci.ABCI";

/// HTTP/2 flow-control windows: a FinalizeBlock request carries the whole
/// block, which must not trickle in 64 KiB windows.
const WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// Why the gRPC server could not start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot prepare the ABCI gRPC listener: {0}")]
    Listener(std::io::Error),
    #[error("cannot start the ABCI gRPC runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the abci-grpc thread: {0}")]
    Thread(std::io::Error),
}

/// `tendermint.abci.ABCI` over an [`Application`].
pub struct AbciService<A> {
    app: Arc<A>,
}

impl<A> Clone for AbciService<A> {
    fn clone(&self) -> Self {
        AbciService {
            app: self.app.clone(),
        }
    }
}

impl<A> AbciService<A> {
    pub fn new(app: A) -> Self {
        AbciService { app: Arc::new(app) }
    }
}

impl<A> NamedService for AbciService<A> {
    const NAME: &'static str = SERVICE_NAME;
}

/// Where a handler runs (see the module docs).
#[derive(Clone, Copy)]
enum Runs {
    /// On the runtime thread: answered from shared state.
    Inline,
    /// On the blocking pool: waits for the consensus thread.
    Blocking,
}

/// One unary method: decode `Q`, call `handler`, encode the answer.
struct Unary<A, Q, R> {
    app: Arc<A>,
    handler: fn(&A, Q) -> R,
    runs: Runs,
}

impl<A, Q, R> UnaryService<Q> for Unary<A, Q, R>
where
    A: Send + Sync + 'static,
    Q: Send + 'static,
    R: Send + 'static,
{
    type Response = R;
    type Future = BoxFuture<Response<R>, Status>;

    fn call(&mut self, request: Request<Q>) -> Self::Future {
        let (app, handler, runs) = (self.app.clone(), self.handler, self.runs);
        Box::pin(async move {
            let q = request.into_inner();
            let answer = match runs {
                Runs::Inline => handler(&app, q),
                Runs::Blocking => tokio::task::spawn_blocking(move || handler(&app, q))
                    .await
                    .map_err(|e| Status::internal(format!("ABCI handler failed: {e}")))?,
            };
            Ok(Response::new(answer))
        })
    }
}

fn unary<A, Q, R, B>(
    app: Arc<A>,
    request: http::Request<B>,
    runs: Runs,
    handler: fn(&A, Q) -> R,
) -> BoxFuture<http::Response<Body>, Infallible>
where
    A: Send + Sync + 'static,
    Q: prost::Message + Default + Send + 'static,
    R: prost::Message + Send + 'static,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = Grpc::new(tonic_prost::ProstCodec::<R, Q>::default())
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(usize::MAX);
        let service = Unary { app, handler, runs };
        Ok(grpc.unary(service, request).await)
    })
}

impl<A, B> Service<http::Request<B>> for AbciService<A>
where
    A: Application + Sync,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use Runs::{Blocking, Inline};
        let app = self.app.clone();
        let method = req
            .uri()
            .path()
            .strip_prefix("/tendermint.abci.ABCI/")
            .unwrap_or_default()
            .to_owned();
        match method.as_str() {
            "Echo" => unary(app, req, Inline, |a: &A, q: pb::RequestEcho| a.echo(q)),
            "Flush" => unary(app, req, Inline, |a: &A, _: pb::RequestFlush| a.flush()),
            "CheckTx" => unary(app, req, Inline, |a: &A, q: pb::RequestCheckTx| {
                a.check_tx(q)
            }),
            "Info" => unary(app, req, Blocking, |a: &A, q: pb::RequestInfo| a.info(q)),
            "Query" => unary(app, req, Blocking, |a: &A, q: pb::RequestQuery| a.query(q)),
            "InitChain" => unary(app, req, Blocking, |a: &A, q: pb::RequestInitChain| {
                a.init_chain(q)
            }),
            "PrepareProposal" => unary(
                app,
                req,
                Blocking,
                |a: &A, q: pb::RequestPrepareProposal| a.prepare_proposal(q),
            ),
            "ProcessProposal" => unary(
                app,
                req,
                Blocking,
                |a: &A, q: pb::RequestProcessProposal| a.process_proposal(q),
            ),
            "FinalizeBlock" => unary(app, req, Blocking, |a: &A, q: pb::RequestFinalizeBlock| {
                a.finalize_block(q)
            }),
            "ExtendVote" => unary(app, req, Blocking, |a: &A, q: pb::RequestExtendVote| {
                a.extend_vote(q)
            }),
            "VerifyVoteExtension" => unary(
                app,
                req,
                Blocking,
                |a: &A, q: pb::RequestVerifyVoteExtension| a.verify_vote_extension(q),
            ),
            "Commit" => unary(app, req, Blocking, |a: &A, _: pb::RequestCommit| a.commit()),
            "ListSnapshots" => unary(app, req, Blocking, |a: &A, _: pb::RequestListSnapshots| {
                a.list_snapshots()
            }),
            "OfferSnapshot" => unary(app, req, Blocking, |a: &A, q: pb::RequestOfferSnapshot| {
                a.offer_snapshot(q)
            }),
            "LoadSnapshotChunk" => unary(
                app,
                req,
                Blocking,
                |a: &A, q: pb::RequestLoadSnapshotChunk| a.load_snapshot_chunk(q),
            ),
            "ApplySnapshotChunk" => unary(
                app,
                req,
                Blocking,
                |a: &A, q: pb::RequestApplySnapshotChunk| a.apply_snapshot_chunk(q),
            ),
            _ => {
                let path = req.uri().path().to_owned();
                Box::pin(async move {
                    Ok(Status::unimplemented(format!("no ABCI method at {path}")).into_http())
                })
            }
        }
    }
}

/// Serves `app` over gRPC on `listener` (already bound, so a bind error is
/// reported before anything starts) from a dedicated thread with its own
/// tokio runtime. The thread lives as long as the process.
pub fn spawn<A: Application + Sync>(
    listener: TcpListener,
    app: A,
) -> Result<JoinHandle<()>, GrpcError> {
    listener
        .set_nonblocking(true)
        .map_err(GrpcError::Listener)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .thread_name("abci-grpc")
        .enable_all()
        .build()
        .map_err(GrpcError::Runtime)?;
    let service = AbciService::new(app);
    std::thread::Builder::new()
        .name("abci-grpc".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "ABCI gRPC listener");
                        return;
                    }
                };
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                let served = tonic::transport::Server::builder()
                    .initial_stream_window_size(WINDOW_BYTES)
                    .initial_connection_window_size(WINDOW_BYTES)
                    .serve_with_incoming(service, incoming)
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "ABCI gRPC server stopped");
                }
            });
        })
        .map_err(GrpcError::Thread)
}
