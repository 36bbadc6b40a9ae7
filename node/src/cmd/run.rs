//! `replicode run`: one program, one deterministic run (shaped like `wasmtime run`).
//!
//! The guest sees only what the flags give it: no host environment, no host
//! files except copies of `--dir` trees, stdin only from `--stdin` (else empty),
//! logical time from `--time`, randomness from `--seed`. The exit code is the
//! guest's, or one of the codes in [`EXIT_CODES`] when the run did not end
//! with an exit.
//!
//! With `--inputs FILE` the program is run as a server instead (the process
//! layer: it suspends on an empty stdin and is fed one line at a time); see
//! [`serve`] for the transcript it prints and `--snapshot-at` for the
//! mid-run snapshot/restore check.
//!
//! With `--state DIR` the filesystem is a merkle-fs store in DIR, mounted at `/`
//! and committed as a new version after each run that ends with an exit; see
//! [`state`].

mod serve;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use replicode_runtime::config::RuntimeConfig;
use replicode_runtime::engine::GuestEngine;
use replicode_runtime::error::RuntimeError;
use replicode_runtime::exec::{self, RunOutcome};
use replicode_runtime::process::driver::ServeSpec;
use replicode_runtime::process::wasi_host::WasiEnv;
use replicode_runtime::process::ProcessError;
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
  126  the guest blocked waiting for input that can never arrive
  127  --inputs: the process layer failed (snapshot, restore, ...) or stdout failed;
       --state: the new version could not be committed
With --state: every exit(N) commits the run's files as a new version (the new root
is printed to stderr); codes 120-126 commit nothing (the state keeps its last root).
With --inputs: the guest's exit code at EOF (0 for a server that ends at EOF),
even if some inputs were rejected (out of fuel, trap: printed in the transcript);
126 if it still waits after stdin ended; 120, 121, 127 as above.";

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
/// Exit code: `--inputs` serving failed in the host (not the guest's doing).
pub const EXIT_SERVE: u8 = 127;

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
    #[arg(long, value_name = "FILE", conflicts_with = "inputs")]
    pub stdin: Option<PathBuf>,
    /// Run the program as a server: deliver each line of FILE (with its
    /// newline) as one stdin input, then end stdin; print the output of each
    /// input under `== input K` and the final digests (stdout, diffable).
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// With --inputs: after input K (0: after the start), snapshot every
    /// process, restore into a fresh engine and continue. The transcript is
    /// unchanged; a note goes to stderr.
    #[arg(long, value_name = "K", requires = "inputs")]
    pub snapshot_at: Option<usize>,
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
    /// Keep the filesystem in a merkle-fs store in DIR (created if missing) and
    /// mount it as the guest's root `/`, so files persist across runs. When the
    /// guest exits (exit(N), any N) its changes are committed as one new version
    /// (height + 1) and the new root is printed to stderr. A trap, running out of
    /// fuel, a limit or a read that blocks forever commits nothing: the state
    /// stays at its last root. --dir trees are copied into the state at GUEST
    /// (names that already exist there are an error) and committed with the run.
    #[arg(long, value_name = "DIR", conflicts_with = "inputs")]
    pub state: Option<PathBuf>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("`{s}`: the variable name is empty")),
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
        Err(Failure::Serve(err)) => Ok(fail(EXIT_SERVE, &format!("--inputs: {err}"))),
    }
}

enum Failure {
    Setup(anyhow::Error),
    Invalid(RuntimeError),
    /// `--inputs` failed in the host after the program started.
    Serve(serve::ServeError),
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
    let wasm = std::fs::read(&args.program)
        .with_context(|| format!("reading {}", args.program.display()))?;
    if let Some(inputs) = &args.inputs {
        return execute_inputs(&args, &wasm, inputs);
    }
    let stdin = match &args.stdin {
        Some(path) => std::fs::read(path).with_context(|| format!("--stdin {}", path.display()))?,
        None => Vec::new(),
    };
    let mut config = RuntimeConfig::default();
    if let Some(fuel) = args.fuel {
        config.limits.fuel = fuel;
    }
    let engine = GuestEngine::new(config).map_err(|e| Failure::Setup(e.into()))?;
    let spec = run_spec(&args, stdin)?;
    let stdout = Box::new(TerminalSink(HostStream::Stdout));
    let stderr = Box::new(TerminalSink(HostStream::Stderr));
    let state = match &args.state {
        Some(dir) => Some(state::State::open(dir, &engine.config().limits.fs)?),
        None => None,
    };
    let ran = match &state {
        Some(state) => state.mount(&spec).and_then(|(fs, preopens)| {
            run::run_in(&engine, &wasm, &spec, fs, &preopens, stdout, stderr)
        }),
        None => run::run(&engine, &wasm, &spec, stdout, stderr),
    };
    let result = match ran {
        Ok(result) => result,
        Err(e) => {
            if let Some(state) = &state {
                let (height, root) = state.head()?;
                state::report_unchanged(height, &root);
            }
            return Err(match e {
                RunError::Runtime(
                    e @ (RuntimeError::Validation(_) | RuntimeError::Instrument(_)),
                ) => Failure::Invalid(e),
                e => Failure::Setup(e.into()),
            });
        }
    };
    if args.digest {
        eprintln!("replicode: fs digest {}", hex::encode(result.fs_digest));
    }
    tracing::debug!(fuel_used = result.fuel_used, "run finished");
    if let Some(state) = state {
        if let RunOutcome::Exited(_) = result.outcome {
            match state.commit() {
                Ok((height, root)) => state::report_commit(height, &root),
                Err(e) => return Ok(fail(EXIT_SERVE, &format!("{e:#}"))),
            }
        } else {
            let (height, root) = state.head()?;
            state::report_unchanged(height, &root);
        }
    }
    Ok(match result.outcome {
        // Exit codes are 8 bits on the host, as with any process.
        RunOutcome::Exited(code) => ExitCode::from(code as u8),
        RunOutcome::Trapped(reason) => fail(EXIT_TRAP, &format!("guest trapped: {reason}")),
        RunOutcome::OutOfFuel => fail(
            EXIT_FUEL,
            &format!("guest ran out of fuel after {} units", result.fuel_used),
        ),
        RunOutcome::StackOverflow => fail(
            EXIT_STACK,
            "guest exceeded the logical stack limit (unbounded recursion?)",
        ),
        RunOutcome::MemoryLimit => fail(
            EXIT_MEMORY,
            "guest trapped after memory.grow was refused at the memory limit",
        ),
        RunOutcome::Blocked(on) => fail(
            EXIT_BLOCKED,
            &format!("guest blocked forever waiting for {on:?}"),
        ),
    })
}

/// The run's spec from the flags (`argv[0]` is the program's file name).
fn run_spec(args: &RunArgs, stdin: Vec<u8>) -> anyhow::Result<RunSpec> {
    let argv0 = args
        .program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.program.display().to_string());
    Ok(RunSpec {
        args: std::iter::once(argv0)
            .chain(args.args.iter().cloned())
            .collect(),
        env: args.env.clone(),
        dirs: args.dirs.iter().map(|d| DirMapping::parse(d)).collect(),
        stdin,
        seed: args.seed,
        start_time_ns: parse_time(&args.time)?,
    })
}

/// `--inputs FILE`: serve the program through the lines of FILE.
fn execute_inputs(
    args: &RunArgs,
    wasm: &[u8],
    path: &std::path::Path,
) -> Result<ExitCode, Failure> {
    let inputs = serve::split_inputs(
        &std::fs::read(path).with_context(|| format!("--inputs {}", path.display()))?,
    );
    if let Some(k) = args.snapshot_at.filter(|&k| k > inputs.len()) {
        return Err(Failure::Setup(anyhow::anyhow!(
            "--snapshot-at {k}: {} has only {} inputs",
            path.display(),
            inputs.len()
        )));
    }
    let mut config = RuntimeConfig::default();
    if let Some(fuel) = args.fuel {
        config.limits.fuel = fuel;
    }
    let engine = GuestEngine::new(config.clone()).map_err(|e| Failure::Setup(e.into()))?;
    let spec = run_spec(args, Vec::new())?;
    let (fs, preopens) = run::build_fs(&engine, &spec).map_err(|e| Failure::Setup(e.into()))?;
    let mut env = WasiEnv::new(fs);
    // Only the --dir trees are visible, as in a one-shot run.
    env.preopens = preopens
        .into_iter()
        .map(|(guest, ino)| (guest.into_bytes(), ino))
        .collect();
    env.realtime_base_ns = spec.start_time_ns;
    env.seed[..8].copy_from_slice(&spec.seed.to_le_bytes());
    env.max_fds = config.limits.max_fds as usize;
    let serve_spec = ServeSpec {
        args: spec.args,
        vars: spec.env,
        inputs,
        fuel: config.limits.fuel,
        snapshot_at: args.snapshot_at,
    };
    let served = exec::on_guest_stack(&config, || serve::serve(&config, wasm, env, &serve_spec))
        .map_err(|e| Failure::Setup(e.into()))?;
    let report = match served {
        Ok(report) => report,
        Err(serve::ServeError::Process(ProcessError::Compile(reason))) => {
            return Ok(fail(
                EXIT_INVALID,
                &format!("the module was refused: {reason}"),
            ));
        }
        Err(e) => return Err(Failure::Serve(e)),
    };
    match (args.snapshot_at, report.snapshot_bytes) {
        (Some(k), Some(n)) => eprintln!(
            "replicode: snapshot after input {k}: {n} bytes, restored into a fresh engine"
        ),
        (Some(k), None) => {
            eprintln!("replicode: no snapshot after input {k}: the program had already ended")
        }
        _ => {}
    }
    if args.digest {
        eprintln!("replicode: fs digest {}", hex::encode(report.fs_digest));
    }
    Ok(match report.exit_code {
        // Exit codes are 8 bits on the host, as with any process.
        Some(code) => ExitCode::from(code as u8),
        None => fail(EXIT_BLOCKED, "the program did not end: it still waits after its stdin ended (or its start was rejected)"),
    })
}
