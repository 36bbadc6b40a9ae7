//! A file keyring: one JSON file per key, readable by its owner only.
//!
//! The layout follows CometBFT's `priv_validator_key.json` and the Cosmos SDK's
//! `test` backend: plain files, mode 0600, in a directory of mode 0700. That
//! is the right trade for local testnets and scripts; keys that guard real
//! value belong in an encrypted keyring or a signer device (see docs/accounts.md).

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ed25519_consensus::SigningKey;
use replicode_abci::account::Address;

/// The name `testnet up` and `init` give the key they create and fund.
pub const DEFAULT_KEY: &str = "default";

/// One key's file.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub name: String,
    pub address: Address,
    /// ed25519 public key, hex.
    pub public_key: String,
    /// ed25519 private key (the 32-byte seed), hex.
    pub private_key: String,
}

impl KeyFile {
    fn of(name: &str, key: &SigningKey) -> KeyFile {
        let public = key.verification_key().to_bytes();
        KeyFile {
            name: name.to_string(),
            address: Address::of_key(&public),
            public_key: hex::encode(public),
            private_key: hex::encode(key.to_bytes()),
        }
    }

    /// The signing key, checked against the recorded address.
    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        let seed: [u8; 32] = hex::decode(&self.private_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("key {:?}: private_key is not 32 bytes of hex", self.name))?;
        let key = SigningKey::from(seed);
        let address = Address::of_key(&key.verification_key().to_bytes());
        if address != self.address {
            bail!(
                "key {:?}: its private key belongs to {address}, not the recorded {}",
                self.name,
                self.address
            );
        }
        Ok(key)
    }

    /// What `keys list`/`show` print: everything but the private key.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "address": self.address,
            "public_key": self.public_key,
        })
    }
}

/// A keyring directory.
pub struct Keyring {
    dir: PathBuf,
}

impl Keyring {
    pub fn at(dir: &Path) -> Keyring {
        Keyring {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && !name.starts_with('.');
        if !ok {
            bail!("key name {name:?} must be 1-64 letters, digits, '-', '_' or '.' (not leading)");
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Creates a new random key called `name`; refuses to overwrite one.
    pub fn add(&self, name: &str) -> anyhow::Result<KeyFile> {
        let key = SigningKey::new(rand_core::OsRng);
        self.store(&KeyFile::of(name, &key))
    }

    /// Stores `file` under its name; refuses to overwrite a key.
    pub fn store(&self, file: &KeyFile) -> anyhow::Result<KeyFile> {
        file.signing_key()?;
        let path = self.path(&file.name)?;
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create keyring {}", self.dir.display()))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict keyring {}", self.dir.display()))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot create key file {} (a key called {:?} may already exist)",
                    path.display(),
                    file.name
                )
            })?;
        out.write_all(&serde_json::to_vec_pretty(file)?)?;
        out.sync_all()?;
        Ok(file.clone())
    }

    /// The key called `name`.
    pub fn get(&self, name: &str) -> anyhow::Result<KeyFile> {
        let path = self.path(name)?;
        let text = fs::read(&path).with_context(|| {
            format!(
                "no key {name:?} in keyring {} (replicode keys add {name})",
                self.dir.display()
            )
        })?;
        let file: KeyFile = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a key file", path.display()))?;
        if file.name != name {
            bail!("{} holds key {:?}, not {name:?}", path.display(), file.name);
        }
        Ok(file)
    }

    /// Every key, by name.
    pub fn list(&self) -> anyhow::Result<Vec<KeyFile>> {
        let mut names = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.dir.display())),
        };
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".json") {
                names.push(stem.to_string());
            }
        }
        names.sort();
        names.iter().map(|n| self.get(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_get_list_and_no_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::at(&dir.path().join("keys"));
        let alice = ring.add("alice").expect("add");
        assert_eq!(ring.get("alice").expect("get").address, alice.address);
        assert!(ring.add("alice").is_err(), "never overwrites a key");
        ring.add("bob").expect("add bob");
        let names: Vec<String> = ring
            .list()
            .expect("list")
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        let mode = fs::metadata(dir.path().join("keys/alice.json"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(ring.get("../x").is_err());
    }

    #[test]
    fn a_tampered_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::at(dir.path());
        let mut file = ring.add("a").expect("add");
        file.address = Address([1; 20]);
        assert!(file.signing_key().is_err());
    }
}
