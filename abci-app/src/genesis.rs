//! The genesis app state: `app_state` in CometBFT's genesis.json, read by InitChain.
//!
//! It is JSON because CometBFT embeds it in genesis.json; every byte of it is part of
//! the genesis that all validators share, so programs are carried inline (hex), never
//! as host paths. `replicode init` resolves the template's `file` entries into hex.

use serde::{Deserialize, Serialize};

use crate::codes::Code;
use crate::tx::{self, Refusal};

/// Resource limits every guest runs under; fixed at genesis. A field left out
/// of the genesis file takes its default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel one transaction may burn across every process it wakes.
    pub fuel_per_tx: u64,
    /// Largest linear memory of one process, in bytes.
    pub memory_bytes: u64,
    /// Bytes the whole guest filesystem may hold.
    pub storage_quota_bytes: u64,
    /// Largest guest file, in bytes (`EFBIG` past it).
    pub max_file_bytes: u64,
    /// Most inodes (files, directories, symlinks) the guest filesystem may hold
    /// (`ENOSPC` past it): entries cost state beyond their bytes.
    pub max_inodes: u64,
    /// Most processes alive at once.
    pub max_processes: u32,
    /// Fuel an install costs per byte of wasm: preparing and compiling a
    /// module takes time in proportion to its size, paid once at install
    /// (see `machine::programs`). Calibrated in docs/determinism.md.
    pub install_fuel_per_byte: u64,
    /// Most install records (distinct program paths) at once.
    pub max_programs: u32,
    /// Bytes of program source the machine keeps (every module an install
    /// record or a live process refers to).
    pub program_bytes_quota: u64,
    /// Fuel a block's transactions may want together (the sum of their
    /// `gas_wanted`; also CometBFT's `consensus_params.block.max_gas`).
    /// PrepareProposal takes no more, ProcessProposal rejects more, and
    /// FinalizeBlock refuses any transaction past it.
    pub max_block_fuel: u64,
    /// Sleeping processes a block wakes at most, each with `fuel_per_tx` (the
    /// clock's work no transaction pays for; see `process::timers`).
    pub timer_wakes_per_block: u32,
}

impl Limits {
    /// Refuses limits no block could honour: a transaction must fit a block.
    pub fn check(&self) -> Result<(), String> {
        if self.fuel_per_tx == 0 {
            return Err("limits.fuel_per_tx must be positive".into());
        }
        if self.max_block_fuel < self.fuel_per_tx {
            return Err(format!(
                "limits.max_block_fuel ({}) is below limits.fuel_per_tx ({}): no transaction would fit a block",
                self.max_block_fuel, self.fuel_per_tx
            ));
        }
        Ok(())
    }

    /// What installing `len` bytes of wasm costs: a fixed part (the file and
    /// two meta records) plus `install_fuel_per_byte` for each byte, for the
    /// preparation and compilation that happen once, at install.
    pub fn install_fuel(&self, len: usize) -> u64 {
        INSTALL_BASE_FUEL.saturating_add((len as u64).saturating_mul(self.install_fuel_per_byte))
    }

    /// The worst-case fuel of one block: its transactions plus its timer wake-ups.
    pub fn block_fuel_bound(&self) -> u64 {
        self.max_block_fuel
            .saturating_add(u64::from(self.timer_wakes_per_block).saturating_mul(self.fuel_per_tx))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_tx: 100_000_000,
            memory_bytes: 64 * 1024 * 1024,
            storage_quota_bytes: 256 * 1024 * 1024,
            max_file_bytes: 64 * 1024 * 1024,
            max_inodes: 65_536,
            max_processes: 64,
            install_fuel_per_byte: 40_000,
            max_programs: 256,
            program_bytes_quota: 256 * 1024 * 1024,
            max_block_fuel: 5_000_000_000,
            timer_wakes_per_block: 8,
        }
    }
}

/// Fixed part of [`Limits::install_fuel`].
pub const INSTALL_BASE_FUEL: u64 = 100_000;

/// A file created at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    pub path: String,
    /// UTF-8 contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Binary contents, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

/// A program installed at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisProgram {
    pub path: String,
    /// The wasm bytes, hex (what the chain sees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_hex: Option<String>,
    /// Template only: a host file that `replicode init` reads into `wasm_hex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// A process started at genesis (pids are assigned in list order from 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisSpawn {
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// `KEY=VALUE` strings, in order.
    #[serde(default)]
    pub env: Vec<String>,
    /// Whether any account may write to its stdin (default: yes — a genesis
    /// process is owned by nobody, so a private one would take no input).
    #[serde(default = "yes")]
    pub public: bool,
}

fn yes() -> bool {
    true
}

/// An account funded at genesis: only these may spend the network's fuel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// The address `replicode keys show` prints.
    pub address: crate::account::Address,
    /// The fuel its transactions may want in total.
    pub fuel: u64,
    /// A label for people (the key's name); not part of any rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The whole app state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisState {
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub files: Vec<GenesisFile>,
    #[serde(default)]
    pub programs: Vec<GenesisProgram>,
    #[serde(default)]
    pub spawn: Vec<GenesisSpawn>,
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
}

/// Why a genesis app state is unusable.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis app_state is not valid JSON for RepliCode: {0}")]
    Json(#[from] serde_json::Error),
    #[error("genesis limits: {0}")]
    Limits(String),
    #[error("genesis {what} {path:?}: {reason}")]
    Entry {
        what: &'static str,
        path: String,
        reason: String,
    },
}

/// A genesis program or file with its bytes decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

impl GenesisState {
    /// Parses the app state CometBFT hands to InitChain (empty means all defaults).
    pub fn from_bytes(bytes: &[u8]) -> Result<GenesisState, GenesisError> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(GenesisState::default());
        }
        let state: GenesisState = serde_json::from_slice(bytes)?;
        state.limits.check().map_err(GenesisError::Limits)?;
        let mut seen = std::collections::BTreeSet::new();
        for account in &state.accounts {
            if !seen.insert(account.address) || account.address == crate::account::Address::GENESIS
            {
                return Err(GenesisError::Entry {
                    what: "account",
                    path: account.address.to_string(),
                    reason: "is listed twice, or is the reserved genesis owner".into(),
                });
            }
        }
        Ok(state)
    }

    /// Programs with their wasm decoded; each must carry `wasm_hex` and a valid path.
    pub fn programs(&self) -> Result<Vec<ResolvedFile>, GenesisError> {
        self.programs
            .iter()
            .map(|p| {
                let err = |reason: String| GenesisError::Entry {
                    what: "program",
                    path: p.path.clone(),
                    reason,
                };
                check(&p.path).map_err(|r| err(r.reason))?;
                if !p.path.starts_with(crate::limits::INSTALL_DIR) {
                    return Err(err(format!("is not below {}", crate::limits::INSTALL_DIR)));
                }
                let hex_text = p.wasm_hex.as_deref().ok_or_else(|| {
                    err(
                        "has no wasm_hex (a template `file` must be resolved by `replicode init`)"
                            .into(),
                    )
                })?;
                let bytes =
                    hex::decode(hex_text).map_err(|e| err(format!("wasm_hex is not hex: {e}")))?;
                Ok(ResolvedFile {
                    path: p.path.clone(),
                    bytes,
                })
            })
            .collect()
    }

    /// Files with their contents decoded; each must have exactly one of `text`/`hex`.
    pub fn files(&self) -> Result<Vec<ResolvedFile>, GenesisError> {
        self.files
            .iter()
            .map(|f| {
                let err = |reason: String| GenesisError::Entry {
                    what: "file",
                    path: f.path.clone(),
                    reason,
                };
                check(&f.path).map_err(|r| err(r.reason))?;
                let bytes = match (&f.text, &f.hex) {
                    (Some(text), None) => text.clone().into_bytes(),
                    (None, Some(h)) => {
                        hex::decode(h).map_err(|e| err(format!("hex is not hex: {e}")))?
                    }
                    _ => return Err(err("needs exactly one of `text` or `hex`".into())),
                };
                Ok(ResolvedFile {
                    path: f.path.clone(),
                    bytes,
                })
            })
            .collect()
    }

    /// Spawns as transaction bodies, checked like transactions.
    pub fn spawns(&self) -> Result<Vec<tx::Spawn>, GenesisError> {
        self.spawn
            .iter()
            .map(|s| {
                let err = |reason: String| GenesisError::Entry {
                    what: "spawn",
                    path: s.path.clone(),
                    reason,
                };
                let env = s
                    .env
                    .iter()
                    .map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| tx::EnvVar {
                                key: k.to_string(),
                                value: v.to_string(),
                            })
                            .ok_or_else(|| err(format!("env entry {kv:?} is not KEY=VALUE")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let spawn = tx::Spawn {
                    path: s.path.clone(),
                    args: s.args.clone(),
                    env,
                    public: s.public,
                };
                let body = tx::Body::Spawn(spawn.clone());
                tx::decode(&tx::Tx::new(body).to_bytes()).map_err(|r| err(r.reason))?;
                Ok(spawn)
            })
            .collect()
    }
}

fn check(path: &str) -> Result<(), Refusal> {
    tx::check_path("path", path).map_err(|r| Refusal::new(Code::InvalidField, r.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_app_state_is_defaults() {
        assert_eq!(
            GenesisState::from_bytes(b"").expect("empty ok"),
            GenesisState::default()
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = GenesisState::from_bytes(br#"{"limits":{"fuel":1}}"#).expect_err("unknown key");
        assert!(err.to_string().contains("fuel"), "{err}");
    }

    #[test]
    fn unresolved_template_program_is_named() {
        let g: GenesisState =
            serde_json::from_str(r#"{"programs":[{"path":"/bin/kv","file":"kv.wasm"}]}"#)
                .expect("parses");
        let err = g.programs().expect_err("no wasm_hex");
        assert!(err.to_string().contains("/bin/kv"), "{err}");
    }

    #[test]
    fn accounts_are_unique() {
        let a = "0101010101010101010101010101010101010101";
        let twice = format!(
            r#"{{"accounts":[{{"address":"{a}","fuel":1}},{{"address":"{a}","fuel":2}}]}}"#
        );
        let err = GenesisState::from_bytes(twice.as_bytes()).expect_err("twice");
        assert!(err.to_string().contains(a), "{err}");
        let once = format!(r#"{{"accounts":[{{"address":"{a}","fuel":1}}]}}"#);
        let g = GenesisState::from_bytes(once.as_bytes()).expect("once");
        assert_eq!(g.accounts[0].fuel, 1);
    }

    #[test]
    fn spawn_env_must_be_key_value() {
        let g: GenesisState =
            serde_json::from_str(r#"{"spawn":[{"path":"/bin/kv","env":["NOEQUALS"]}]}"#)
                .expect("parses");
        assert!(g.spawns().is_err());
    }
}
