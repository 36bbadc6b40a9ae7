//! Embeds an identity of this build's module-preparation pipeline.
//!
//! Validators cache Binaryen's output on disk by source hash (preparing a large
//! program takes seconds); a cached result may only be reused by a binary
//! whose pipeline is the same. The identity hashes every source file of this
//! crate and the workspace lock file (which pins Binaryen and every pass's
//! dependencies), so any change to either gives a new identity and a cold
//! cache. It is a cache key, never consensus data.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let lock = manifest.join("../Cargo.lock");
    let mut inputs = Vec::new();
    files(&manifest.join("src"), &mut inputs);
    inputs.push(lock.clone());
    inputs.sort();
    // SipHash with fixed keys: stable within one toolchain, which is all a
    // build-time identity needs.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in &inputs {
        path.strip_prefix(&manifest)
            .unwrap_or(path)
            .hash(&mut hasher);
        std::fs::read(path).unwrap_or_default().hash(&mut hasher);
    }
    println!(
        "cargo:rustc-env=REPLICODE_PIPELINE_ID={:016x}",
        hasher.finish()
    );
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed={}", lock.display());
}
