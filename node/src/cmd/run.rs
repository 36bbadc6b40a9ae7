//! `replicode run`: one program, one deterministic run (shaped like `wasmtime run`).
//!
//! The guest sees only what the flags give it: no host environment, no host
//! files except copies of `--dir` trees, stdin only from `--stdin` (else empty),
//! logical time from `--time`, randomness from `--seed`. The exit code is the
//! guest's, or one of the codes in [`EXIT_CODES`] when the run did not end
//! with an exit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use replicode_runtime::config::RuntimeConfig;
use replicode_runtime::engine::GuestEngine;
use replicode_runtime::error::RuntimeError;
use replicode_runtime::exec::RunOutcome;
use replicode_runtime::run::{self, DirMapping, RunError, RunSpec};
use replicode_runtime::wasi::stdio::{HostStream, TerminalSink};

/// The exit codes of `replicode run` that are not the guest's own.
pub const EXIT_CODES: &str = "\
Exit codes:
  N    the guest called exit(N) (or returned from main: 0)
  120  the run could not start (unreadable program, --dir or --stdin)
  121  the module was refused (validation: unknown import, forbidden feature, too large)
  122  the guest trapped (unreachable, out-of-bounds access, division by zero, ...)
  123  the guest ran out of fuel (--fuel)
  124  the guest exceeded the logical stack limit (unbounded recursion)
  125  the guest trapped after memory.grow was refused at the memory limit
  126  the guest blocked waiting for input that can never arrive";

/// Exit code: the run could not start.
pub const EXIT_SETUP: u8 = 120;
/// Exit code: the module was refused.
pub const EXIT_INVALID: u8 = 121;
/// Exit code: trap.
pub const EXIT_TRAP: u8 = 122;
/// Exit code: out of fuel.
pub const EXIT_FUEL: u8 = 123;
/// Exit code: logical stack overflow.
pub const EXIT_STACK: u8 = 124;
/// Exit code: memory limit.
pub const EXIT_MEMORY: u8 = 125;
/// Exit code: blocked forever.
pub const EXIT_BLOCKED: u8 = 126;

/// Logical start time when `--time` is not given.
const DEFAULT_TIME: &str = "2000-01-01T00:00:00Z";

#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct RunArgs {
    /// The wasm32-wasi program.
    pub program: PathBuf,
    /// Arguments passed to the program (argv[0] is the program's file name).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Preopen a copy of a host directory, at GUEST (default: HOST as written).
    /// The host directory is never modified.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,
    /// Set an environment variable for the guest (the host's are never passed).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Feed this file to the guest's stdin (default: empty stdin).
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// Fuel for the run (about one unit per wasm instruction).
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Seed of the guest's random numbers.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Logical wall-clock time at start.
    #[arg(long, value_name = "RFC3339", default_value = DEFAULT_TIME)]
    pub time: String,
    /// Print a SHA-256 digest of the final virtual filesystem to stderr.
    #[arg(long)]
    pub digest: bool,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, _)) if k.is_empty() => Err(format!("`{s}`: the variable name is empty")),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => Err(format!("`{s}` is not K=V")),
    }
}

/// Nanoseconds since the Unix epoch of an RFC 3339 time (not before 1970).
fn parse_time(s: &str) -> anyhow::Result<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--time `{s}` is not an RFC 3339 time"))?;
    u64::try_from(t.unix_timestamp_nanos()).with_context(|| format!("--time `{s}` is before 1970"))
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    match execute(args) {
        Ok(code) => Ok(code),
        Err(Failure::Setup(err)) => Ok(fail(EXIT_SETUP, &format!("{err:#}"))),
        Err(Failure::Invalid(err)) => Ok(fail(EXIT_INVALID, &err.to_string())),
    }
}

enum Failure {
    Setup(anyhow::Error),
    Invalid(RuntimeError),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Setup(e)
    }
}

fn fail(code: u8, reason: &str) -> ExitCode {
    eprintln!("replicode: {reason}");
    ExitCode::from(code)
}

fn execute(args: RunArgs) -> Result<ExitCode, Failure> {
    let wasm = std::fs::read(&args.program).with_context(|| format!("reading {}", args.program.display()))?;
    let stdin = match &args.stdin {
        Some(path) => std::fs::read(path).with_context(|| format!("--stdin {}", path.display()))?,
        None => Vec::new(),
    };
    let mut config = RuntimeConfig::default();
    if let Some(fuel) = args.fuel {
        config.limits.fuel = fuel;
    }
    let engine = GuestEngine::new(config).map_err(|e| Failure::Setup(e.into()))?;
    let argv0 = args
        .program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.program.display().to_string());
    let spec = RunSpec {
        args: std::iter::once(argv0).chain(args.args.iter().cloned()).collect(),
        env: args.env.clone(),
        dirs: args.dirs.iter().map(|d| DirMapping::parse(d)).collect(),
        stdin,
        seed: args.seed,
        start_time_ns: parse_time(&args.time)?,
    };
    let stdout = Box::new(TerminalSink(HostStream::Stdout));
    let stderr = Box::new(TerminalSink(HostStream::Stderr));
    let result = match run::run(&engine, &wasm, &spec, stdout, stderr) {
        Ok(result) => result,
        Err(RunError::Runtime(e @ (RuntimeError::Validation(_) | RuntimeError::Instrument(_)))) => {
            return Err(Failure::Invalid(e));
        }
        Err(e) => return Err(Failure::Setup(e.into())),
    };
    if args.digest {
        eprintln!("replicode: fs digest {}", hex::encode(result.fs_digest));
    }
    tracing::debug!(fuel_used = result.fuel_used, "run finished");
    Ok(match result.outcome {
        // Exit codes are 8 bits on the host, as with any process.
        RunOutcome::Exited(code) => ExitCode::from(code as u8),
        RunOutcome::Trapped(reason) => fail(EXIT_TRAP, &format!("guest trapped: {reason}")),
        RunOutcome::OutOfFuel => fail(EXIT_FUEL, &format!("guest ran out of fuel after {} units", result.fuel_used)),
        RunOutcome::StackOverflow => fail(EXIT_STACK, "guest exceeded the logical stack limit (unbounded recursion?)"),
        RunOutcome::MemoryLimit => fail(EXIT_MEMORY, "guest trapped after memory.grow was refused at the memory limit"),
        RunOutcome::Blocked(on) => fail(EXIT_BLOCKED, &format!("guest blocked forever waiting for {on:?}")),
    })
}
