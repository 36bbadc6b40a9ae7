//! Machines that search for the next halting bug: generators of hostile inputs
//! and the oracles that judge what the node did with them.
//!
//! Each target takes an input of raw bytes and turns it into a structured case
//! with [`arbitrary`], so one input file is one case whatever produced it — the
//! random search of `replicode-fuzz` today, a coverage-guided fuzzer (afl++)
//! later — and every input that once found something replays as a regression
//! test (`tests/regressions.rs`, inputs in `regressions/<target>/`), as
//! wasmtime's `crates/fuzzing` does. docs/fuzzing.md records what ran.

pub mod restart;
pub mod tx_bytes;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// What an oracle saw go wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub what: String,
    pub detail: String,
}

impl Finding {
    pub fn new(what: &str, detail: impl Into<String>) -> Finding {
        Finding {
            what: what.to_string(),
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

/// The fuzz targets by name.
pub const TARGETS: [&str; 2] = ["tx-bytes", "restart"];

/// Runs one case of `target` on `chain`; a panic is a finding too (after one,
/// the chain is suspect: the caller starts a new one).
pub fn case(chain: &mut tx_bytes::Chain, data: &[u8]) -> Result<(), Finding> {
    guarded(|| chain.run(data))
}

/// One case of the `restart` target (`warm_cache`: the steady node's module
/// cache, kept across cases).
/// Returns how many transactions ran and how many succeeded.
pub fn restart_case(data: &[u8], warm_cache: &std::path::Path) -> Result<(usize, usize), Finding> {
    let mut counts = (0, 0);
    guarded(|| {
        let mut u = arbitrary::Unstructured::new(data);
        if let Ok(plan) = restart::Plan::generate(&mut u) {
            counts = restart::run(&plan, warm_cache)?;
        }
        // (Too few bytes for a plan: nothing to run.)
        Ok(())
    })?;
    Ok(counts)
}

/// `f`, with a panic turned into a finding.
fn guarded(f: impl FnOnce() -> Result<(), Finding>) -> Result<(), Finding> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(Finding::new("panic", text))
        }
    }
}

/// The file name an input is saved under: the first 16 hex digits of its SHA-256.
pub fn input_name(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(data)[..8])
}

/// Every saved input of `target`, by name.
pub fn regressions(target: &str) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(target);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "bin") {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, std::fs::read(&path)?));
        }
    }
    out.sort();
    Ok(out)
}
