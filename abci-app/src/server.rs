//! Wiring: executor → driver thread → ABCI socket server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::app::{App, FatalHook};
use crate::consensus::Core;
use crate::driver::Driver;
use crate::error::AppError;
use crate::executor::{Executor, ProgramValidator};
use crate::mempool::{Mempool, SharedView};

/// Why the ABCI server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("cannot listen for ABCI on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
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
    fatal: FatalHook,
) -> Result<Running, ServeError> {
    let view = SharedView::default();
    let core = Core::new(exec, validator.clone(), view.clone())?;
    let (driver, commands) = Driver::new(core);
    let driver_fatal = fatal.clone();
    let driver = std::thread::Builder::new()
        .name("consensus".into())
        .spawn(move || {
            let result = driver.run();
            if let Err(err) = &result {
                driver_fatal(err);
            }
            result
        })
        .map_err(|e| ServeError::Thread("consensus", e))?;
    let app = App::new(commands, Mempool::new(view, validator), fatal);
    let server = tendermint_abci::ServerBuilder::default()
        .bind(addr, app)
        .map_err(|e| ServeError::Bind {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    let local_addr = server.local_addr();
    let listener = std::thread::Builder::new()
        .name("abci-listener".into())
        .spawn(move || {
            if let Err(e) = server.listen() {
                tracing::error!(error = %e, "ABCI listener stopped");
            }
        })
        .map_err(|e| ServeError::Thread("abci-listener", e))?;
    Ok(Running {
        local_addr,
        driver,
        listener,
    })
}
