//! Checking a merkle-fs file proof: the pure verification functions of merkle-fs,
//! applied to the whole file (range `[0, ∞)`), so a shortened or altered answer
//! cannot pass as a prefix of the real file.

use anyhow::{bail, Context};
use merkle_fs::proof::{verify_file_range, FileRangeProof};

/// `contents` is exactly the file at `path` under `app_hash`, per `proof` (borsh).
pub fn check(app_hash: &[u8], path: &str, contents: &[u8], proof: &[u8]) -> anyhow::Result<()> {
    let root: merkle_fs::Root = app_hash.try_into().with_context(|| {
        format!(
            "app hash is {} bytes, not a 32-byte merkle-fs root",
            app_hash.len()
        )
    })?;
    let proof: FileRangeProof =
        borsh::from_slice(proof).context("the proof does not decode as a merkle-fs file proof")?;
    let proven = verify_file_range(&root, path.as_bytes(), 0, u64::MAX, &proof)
        .context("merkle-fs rejected the proof")?;
    if proven != contents {
        bail!(
            "the node's contents ({} bytes) differ from the proven contents ({} bytes)",
            contents.len(),
            proven.len()
        );
    }
    Ok(())
}
