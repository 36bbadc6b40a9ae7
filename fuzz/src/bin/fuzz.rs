//! `replicode-fuzz`: a bounded random search on one target, on stable Rust.
//!
//! Usage: `replicode-fuzz [--target tx-bytes|restart] [--seconds N] [--cases N] [--seed S]`
//! Inputs are random byte strings (ChaCha20 from `--seed`, default: the clock)
//! of up to 4 KiB, turned into cases by the target's generator. A finding is
//! saved to `fuzz/regressions/<target>/<hash>.bin` (where the regression tests
//! replay it) and the search goes on with a fresh chain. Exit status 1 if
//! anything was found.

use std::time::{Duration, Instant};

use rand::{Rng as _, RngCore as _, SeedableRng as _};
use replicode_fuzz::{case, input_name, restart_case, tx_bytes, Finding, TARGETS};

fn main() {
    let mut seconds = 60u64;
    let mut cases = u64::MAX;
    let mut seed: Option<u64> = None;
    let mut target = TARGETS[0].to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--seconds" => seconds = number(&value("--seconds")),
            "--cases" => cases = number(&value("--cases")),
            "--seed" => seed = Some(number(&value("--seed"))),
            "--target" => target = value("--target"),
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    if !TARGETS.contains(&target.as_str()) {
        fail(&format!("unknown target {target:?}; targets: {TARGETS:?}"));
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut chain = (target == "tx-bytes").then(new_chain);
    let warm_cache = tempfile::tempdir()
        .unwrap_or_else(|e| fail(&format!("cannot make a cache directory: {e}")));
    let (mut ran, mut found) = (0u64, 0u64);
    let (mut executed, mut succeeded) = (0u64, 0u64);
    let started = Instant::now();
    while ran < cases && Instant::now() < deadline {
        let mut data = vec![0u8; rng.gen_range(0..4096)];
        rng.fill_bytes(&mut data);
        ran += 1;
        let result = match chain.as_mut() {
            Some(chain) => case(chain, &data),
            None => restart_case(&data, warm_cache.path()).map(|(n, ok)| {
                executed += n as u64;
                succeeded += ok as u64;
            }),
        };
        if let Err(finding) = result {
            found += 1;
            save(&target, &data, &finding);
            if chain.is_some() {
                chain = Some(new_chain());
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replicode-fuzz {target}: seed {seed}, {ran} cases in {secs:.1} s ({:.0}/s), {found} findings",
        ran as f64 / secs.max(1e-9)
    );
    if executed > 0 {
        println!("  {executed} transactions executed, {succeeded} with code 0");
    }
    std::process::exit(i32::from(found > 0));
}

fn new_chain() -> tx_bytes::Chain {
    tx_bytes::Chain::new().unwrap_or_else(|f| fail(&format!("cannot set up a chain: {f}")))
}

fn save(target: &str, data: &[u8], finding: &Finding) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(target);
    let path = dir.join(format!("{}.bin", input_name(data)));
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, data)) {
        Ok(()) => eprintln!("FOUND {finding}\n  saved {}", path.display()),
        Err(e) => eprintln!(
            "FOUND {finding}\n  could not save it to {}: {e}",
            path.display()
        ),
    }
}

fn number(text: &str) -> u64 {
    text.parse()
        .unwrap_or_else(|_| fail(&format!("{text:?} is not a number")))
}

fn fail(message: &str) -> ! {
    eprintln!("replicode-fuzz: {message}");
    std::process::exit(2)
}
