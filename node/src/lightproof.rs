//! Checking a file answer instead of trusting the node that gave it.
//!
//! The state after block H is committed to by the app hash in the header of block
//! H+1. So: (1) the header of H+1 must be signed by more than 2/3 of the voting
//! power of its validator set, whose hash the header names (checked with
//! `tendermint-light-client-verifier`); (2) the merkle-fs proof must show exactly
//! these contents at this path under that app hash.
//!
//! Trust anchor: the validator set is fetched from the same node and checked
//! against the header's `validators_hash`; a full light client would instead walk
//! from a trusted height (the genesis validators). Documented as a known limit.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tendermint_light_client_verifier::operations::voting_power::{
    ProdVotingPowerCalculator, VotingPowerCalculator,
};
use tendermint_light_client_verifier::types::TrustThreshold;

use crate::rpc::Rpc;

/// What was checked.
#[derive(Clone, Debug)]
pub struct Verified {
    pub app_hash_hex: String,
    pub header_height: u64,
    pub signed_power: u64,
    pub total_power: u64,
}

/// How long to wait for block H+1 when H is the latest height.
const NEXT_HEADER_WAIT: Duration = Duration::from_secs(20);

/// Verifies `contents` of `path` at `height` with `proof` (see the module docs).
pub fn verify_file(
    rpc: &Rpc,
    path: &str,
    contents: &[u8],
    proof: &[u8],
    height: u64,
) -> anyhow::Result<Verified> {
    let header_height = height + 1;
    let (app_hash, signed_power, total_power) = verified_app_hash(rpc, header_height)?;
    crate::fileproof::check(&app_hash, path, contents, proof).with_context(|| {
        format!(
            "the proof of {path} at height {height} does not match app hash {}",
            hex::encode_upper(&app_hash)
        )
    })?;
    Ok(Verified {
        app_hash_hex: hex::encode_upper(&app_hash),
        header_height,
        signed_power,
        total_power,
    })
}

/// The app hash in the header at `height`, after checking the header's signatures.
pub fn verified_app_hash(rpc: &Rpc, height: u64) -> anyhow::Result<(Vec<u8>, u64, u64)> {
    let deadline = Instant::now() + NEXT_HEADER_WAIT;
    let signed = loop {
        match rpc.signed_header(height) {
            Ok(sh) => break sh,
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("no signed header at height {height}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let validators = rpc.validators(height)?;
    if validators.hash() != signed.header.validators_hash {
        bail!("the validator set for height {height} does not match the header's validators_hash");
    }
    if signed.commit.block_id.hash != signed.header.hash() {
        bail!("the commit at height {height} is for a different block than the header");
    }
    let tally = ProdVotingPowerCalculator::default()
        .voting_power_in(&signed, &validators, TrustThreshold::TWO_THIRDS)
        .map_err(|e| anyhow::anyhow!("header {height} signatures: {e}"))?;
    if tally.tallied.saturating_mul(3) <= tally.total.saturating_mul(2) {
        bail!(
            "header {height} is signed by {}/{} voting power, not more than 2/3",
            tally.tallied,
            tally.total
        );
    }
    Ok((
        signed.header.app_hash.as_bytes().to_vec(),
        tally.tallied,
        tally.total,
    ))
}
