//! `replicode run --inputs FILE [--snapshot-at K]`: drive a server program
//! through a list of inputs and print what each one produced.
//!
//! Why a printed transcript: two runs (another machine, another build, with
//! and without a mid-run snapshot) are compared with `diff`, so everything the
//! guest can influence goes to stdout in a fixed format and anything that
//! describes *how* we ran (the snapshot note) goes to stderr only.
//!
//! Format (stdout), one section per step, in order:
//! ```text
//! == start                  spawn: output of the program up to its first blocking read
//! == input K                K = 1..n, the K-th line of FILE (its '\n' included)
//! == eof                    stdin closed after the last input
//! ```
//! Each header is followed by the step's stdout bytes, then (if any)
//! `== <step> stderr` and its stderr bytes; bytes not ending in a newline are
//! followed by `\ no newline`. A rejected step adds `-- out of fuel ...` or
//! `-- trap ...` (its effects were rolled back); an exit adds `-- exit ...`.
//! The transcript ends with `table digest: <hex>` and `fs digest: <hex>`.

use std::io::Write;

use replicode_runtime::process::driver::{self, ServeReport, ServeSpec, Step};
use replicode_runtime::process::wasi_host::WasiEnv;
use replicode_runtime::process::{InputOutcome, InputStatus, ProcessError, StreamKind};

/// Splits the inputs file into inputs: one per line, each with its `\n`; a last
/// line without `\n` is one more input. An empty file has no inputs.
pub fn split_inputs(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Why serving stopped early.
#[derive(Debug)]
pub enum ServeError {
    /// The process layer failed (compile, snapshot, restore...).
    Process(ProcessError),
    /// The transcript could not be written.
    Stdout(std::io::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Process(e) => write!(f, "{e}"),
            ServeError::Stdout(e) => write!(f, "writing the transcript to stdout: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<ProcessError> for ServeError {
    fn from(e: ProcessError) -> Self {
        ServeError::Process(e)
    }
}

/// The header name of step `index` among `inputs` inputs.
fn step_name(index: usize, inputs: usize) -> String {
    match index {
        0 => "start".to_string(),
        i if i > inputs => "eof".to_string(),
        i => format!("input {i}"),
    }
}

/// Writes `bytes`, keeping the next header on a line of its own.
fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes)?;
    if bytes.last().is_some_and(|&b| b != b'\n') {
        out.write_all(b"\n\\ no newline\n")?;
    }
    Ok(())
}

/// Writes one step's section of the transcript.
fn write_step(out: &mut impl Write, name: &str, outcome: &InputOutcome) -> std::io::Result<()> {
    let stream = |kind: StreamKind| -> Vec<u8> {
        outcome
            .outputs
            .iter()
            .filter(|o| o.stream == kind)
            .flat_map(|o| o.bytes.iter().copied())
            .collect()
    };
    writeln!(out, "== {name}")?;
    write_bytes(out, &stream(StreamKind::Stdout))?;
    let stderr = stream(StreamKind::Stderr);
    if !stderr.is_empty() {
        writeln!(out, "== {name} stderr")?;
        write_bytes(out, &stderr)?;
    }
    match &outcome.status {
        InputStatus::Ok => {}
        InputStatus::OutOfFuel => {
            writeln!(
                out,
                "-- out of fuel after {} units; input rolled back",
                outcome.fuel_used
            )?;
        }
        InputStatus::Trap { pid, reason } => {
            writeln!(out, "-- trap in pid {pid}: {reason}; input rolled back")?;
        }
    }
    for (pid, code) in &outcome.exits {
        writeln!(out, "-- exit: pid {pid} exited with code {code}")?;
    }
    Ok(())
}

/// Serves `wasm` over `env` through `spec`, printing the transcript to stdout
/// (flushed after every step, so a long run can be watched). Must run on a
/// guest-stack thread ([`replicode_runtime::exec::on_guest_stack`]).
pub fn serve(
    config: &replicode_runtime::config::RuntimeConfig,
    wasm: &[u8],
    env: WasiEnv,
    spec: &ServeSpec,
) -> Result<ServeReport, ServeError> {
    let stdout = std::io::stdout();
    let mut write_err = None;
    let inputs = spec.inputs.len();
    let report = driver::serve(config, wasm, env, spec, |step: Step<'_>| {
        if write_err.is_some() {
            return;
        }
        let mut out = stdout.lock();
        let written = write_step(&mut out, &step_name(step.index, inputs), step.outcome)
            .and_then(|()| out.flush());
        write_err = written.err();
    })?;
    if let Some(e) = write_err {
        return Err(ServeError::Stdout(e));
    }
    let mut out = stdout.lock();
    writeln!(out, "table digest: {}", hex::encode(report.table_digest))
        .and_then(|()| writeln!(out, "fs digest: {}", hex::encode(report.fs_digest)))
        .and_then(|()| out.flush())
        .map_err(ServeError::Stdout)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_newlines_and_a_last_unterminated_line() {
        assert_eq!(split_inputs(b""), Vec::<Vec<u8>>::new());
        assert_eq!(
            split_inputs(b"a\n\nb"),
            vec![b"a\n".to_vec(), b"\n".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn unterminated_output_is_marked_so_headers_stay_on_their_own_line() {
        let mut out = Vec::new();
        write_bytes(&mut out, b"abc").expect("write");
        assert_eq!(out, b"abc\n\\ no newline\n");
        out.clear();
        write_bytes(&mut out, b"abc\n").expect("write");
        assert_eq!(out, b"abc\n");
    }

    #[test]
    fn step_names() {
        assert_eq!(step_name(0, 3), "start");
        assert_eq!(step_name(3, 3), "input 3");
        assert_eq!(step_name(4, 3), "eof");
    }
}
