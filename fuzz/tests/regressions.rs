//! Every input that once found something replays on a fresh chain; then a
//! short bounded search (fixed seed) runs, so the target itself stays sound.

use rand::{Rng as _, RngCore as _, SeedableRng as _};
use replicode_fuzz::{case, regressions, restart_case, tx_bytes::Chain};

#[test]
fn tx_bytes_regressions_replay_clean() {
    for (name, data) in regressions("tx-bytes").expect("fuzz/regressions/tx-bytes") {
        let mut chain = Chain::new().expect("chain");
        if let Err(finding) = case(&mut chain, &data) {
            panic!("regression {name}: {finding}");
        }
    }
}

#[test]
fn tx_bytes_short_search_finds_nothing() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(12);
    let mut chain = Chain::new().expect("chain");
    for i in 0..400 {
        let mut data = vec![0u8; rng.gen_range(0..2048)];
        rng.fill_bytes(&mut data);
        if let Err(finding) = case(&mut chain, &data) {
            panic!(
                "case {i} ({}): {finding}",
                replicode_fuzz::input_name(&data)
            );
        }
    }
}

#[test]
fn restart_regressions_replay_and_a_short_search_finds_nothing() {
    let cache = tempfile::tempdir().expect("cache");
    for (name, data) in regressions("restart").expect("fuzz/regressions/restart") {
        if let Err(finding) = restart_case(&data, cache.path()) {
            panic!("regression {name}: {finding}");
        }
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    for i in 0..6 {
        let mut data = vec![0u8; 512];
        rng.fill_bytes(&mut data);
        if let Err(finding) = restart_case(&data, cache.path()) {
            panic!(
                "case {i} ({}): {finding}",
                replicode_fuzz::input_name(&data)
            );
        }
    }
}
