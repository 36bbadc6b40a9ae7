//! Binaryen's output on this validator's disk, so a restart does not prepare
//! every installed program again (seconds for a large one).
//!
//! A file `<source hash>-<key>.wasm` holds a checksum and the prepared bytes;
//! `key` names this build's pipeline and the runtime configuration
//! ([`replicode_runtime::instrument::PIPELINE_ID`]), so another build never
//! reads it. The cache is an accelerator: a missing, unreadable or damaged
//! entry is prepared again, a failed write is logged; neither is an error, and
//! nothing in it reaches consensus unchecked by its checksum.

use std::path::{Path, PathBuf};

use replicode_runtime::config::RuntimeConfig;
use replicode_runtime::instrument::{self, Hash};

/// Prepared bytes by source hash, for one pipeline and configuration.
pub struct PreparedCache {
    dir: PathBuf,
    key: String,
}

impl PreparedCache {
    /// A cache in `dir` (created on first write) for `config` and this build.
    pub fn new(dir: &Path, config: &RuntimeConfig) -> Self {
        let id = format!("{}/{config:?}", instrument::PIPELINE_ID);
        let key = hex::encode(&instrument::sha256(id.as_bytes())[..8]);
        PreparedCache {
            dir: dir.to_path_buf(),
            key,
        }
    }

    fn path(&self, source: &Hash) -> PathBuf {
        self.dir
            .join(format!("{}-{}.wasm", hex::encode(source), self.key))
    }

    /// The prepared bytes of `source`, if cached intact.
    pub fn get(&self, source: &Hash) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.path(source)).ok()?;
        let (sum, prepared) = bytes.split_at_checked(32)?;
        (instrument::sha256(prepared) == sum).then(|| prepared.to_vec())
    }

    /// Stores the prepared bytes of `source` (write, then rename: a reader
    /// never sees half a file).
    pub fn put(&self, source: &Hash, prepared: &[u8]) {
        let path = self.path(source);
        let tmp = path.with_extension("tmp");
        let mut bytes = instrument::sha256(prepared).to_vec();
        bytes.extend_from_slice(prepared);
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&tmp, &bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache prepared module");
        }
    }
}

impl PreparedCache {
    /// Removes the entry of `source`, if any.
    pub fn remove(&self, source: &Hash) {
        let _ = std::fs::remove_file(self.path(source));
    }

    /// Removes every entry but those of `keep` under this cache's key (entries
    /// of other builds and configurations included), so the directory holds at
    /// most what the machine has loaded.
    pub fn retain(&self, keep: &std::collections::BTreeSet<Hash>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let kept: std::collections::BTreeSet<String> = keep
            .iter()
            .map(|s| format!("{}-{}.wasm", hex::encode(s), self.key))
            .collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !kept.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_entry_is_a_miss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = PreparedCache::new(dir.path(), &RuntimeConfig::default());
        let source = instrument::sha256(b"source");
        assert_eq!(cache.get(&source), None);
        cache.put(&source, b"prepared");
        assert_eq!(cache.get(&source).as_deref(), Some(&b"prepared"[..]));
        let path = cache.path(&source);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        assert_eq!(cache.get(&source), None, "a flipped bit is a miss");
        let other = PreparedCache::new(
            dir.path(),
            &RuntimeConfig {
                simd: true,
                ..RuntimeConfig::default()
            },
        );
        cache.put(&source, b"prepared");
        assert_eq!(
            other.get(&source),
            None,
            "another configuration never reads it"
        );
    }
}
