//! Accounts: who signs transactions, in what order, and with what fuel.
//!
//! An account is an ed25519 key; its [`Address`] is the first 20 bytes of the
//! SHA-256 of the public key, written as 40 uppercase hex digits — the rule
//! CometBFT uses for validator addresses, so an operator reads both alike.
//! Its state is an [`Account`] record in the authenticated store: the next
//! [`Account::sequence`] it must sign with (replay protection: each sequence
//! is used at most once) and the fuel it may still spend. Only accounts that
//! genesis lists have fuel; any other key can sign, but CheckTx refuses it
//! after one signature check (see docs/accounts.md).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::codes::Code;
use crate::executor::ExecError;
use crate::tx::Refusal;

/// Store key prefix of account records (followed by the 20 address bytes).
pub const RECORD_PREFIX: &[u8] = b"replicode/account/";

/// Store key of the chain id, fixed at genesis: signatures cover it, so a
/// transaction signed for one chain is refused on every other.
pub const CHAIN_ID_KEY: &[u8] = b"replicode/chain-id";

/// An account's address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The owner of what genesis created: no key has this address (it would
    /// need a SHA-256 preimage of twenty zero bytes), so nobody can replace a
    /// genesis program or kill a genesis process.
    pub const GENESIS: Address = Address([0; 20]);

    /// The address of an ed25519 public key.
    pub fn of_key(public_key: &[u8; 32]) -> Address {
        let digest = Sha256::digest(public_key);
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest[..20]);
        Address(out)
    }

    /// This account's record key in the store.
    pub fn record_key(&self) -> Vec<u8> {
        let mut key = RECORD_PREFIX.to_vec();
        key.extend_from_slice(&self.0);
        key
    }

    /// `genesis` for [`Address::GENESIS`], else the hex address.
    pub fn owner_name(&self) -> String {
        if *self == Address::GENESIS {
            "genesis".into()
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

/// Why text is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an account address (40 hex digits)")]
pub struct BadAddress(pub String);

impl FromStr for Address {
    type Err = BadAddress;

    fn from_str(s: &str) -> Result<Address, BadAddress> {
        let bytes = hex::decode(s).map_err(|_| BadAddress(s.into()))?;
        let bytes: [u8; 20] = bytes.try_into().map_err(|_| BadAddress(s.into()))?;
        Ok(Address(bytes))
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An account's state. An address without a record is the default: sequence
/// 0 and no fuel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// The sequence the account's next transaction must carry.
    pub sequence: u64,
    /// Fuel its transactions may still want (each pays its `gas_wanted`).
    pub fuel: u64,
}

/// Bytes of an encoded [`Account`].
pub const RECORD_BYTES: usize = 16;

impl Account {
    /// The record: sequence then fuel, big-endian.
    pub fn to_record(&self) -> [u8; RECORD_BYTES] {
        let mut out = [0u8; RECORD_BYTES];
        out[..8].copy_from_slice(&self.sequence.to_be_bytes());
        out[8..].copy_from_slice(&self.fuel.to_be_bytes());
        out
    }

    /// Decodes a record; `None` if it is not [`RECORD_BYTES`] long (a corrupt
    /// store, which the caller reports as a host failure).
    pub fn from_record(bytes: &[u8]) -> Option<Account> {
        let bytes: &[u8; RECORD_BYTES] = bytes.try_into().ok()?;
        let (seq, fuel) = bytes.split_at(8);
        Some(Account {
            sequence: u64::from_be_bytes(seq.try_into().ok()?),
            fuel: u64::from_be_bytes(fuel.try_into().ok()?),
        })
    }
}

impl Account {
    /// Admits a transaction of this account with `sequence` wanting `fuel`
    /// and returns the account after it: the sequence used, the fuel paid.
    /// The same rule in CheckTx (against the committed account and what the
    /// mempool already admitted) and in FinalizeBlock (against the block's
    /// working state), so a transaction runs at most once.
    ///
    /// Why pay `gas_wanted` and not what was used: a block holds transactions
    /// by what they want (`max_block_fuel`), so wanting is what takes the
    /// network's capacity — the Cosmos SDK's rule (fee = gas limit x price,
    /// nothing refunded).
    pub fn admit(&self, address: &Address, sequence: u64, fuel: u64) -> Result<Account, Refusal> {
        if sequence != self.sequence {
            return Err(Refusal::new(
                Code::WrongSequence,
                format!(
                    "account {address} expects sequence {}, the transaction has {sequence}",
                    self.sequence
                ),
            ));
        }
        if fuel > self.fuel {
            return Err(Refusal::new(
                Code::InsufficientFuel,
                format!(
                    "account {address} has {} fuel left; the transaction wants {fuel}",
                    self.fuel
                ),
            ));
        }
        Ok(Account {
            sequence: self.sequence + 1,
            fuel: self.fuel - fuel,
        })
    }
}

/// A key that signs transactions in order: it holds the account's next
/// sequence and the chain id. Clients (the CLI, benchmarks, tests) use it.
pub struct Signer {
    key: ed25519_consensus::SigningKey,
    address: Address,
    chain_id: String,
    /// The sequence the next signed transaction carries.
    pub sequence: u64,
}

impl Signer {
    pub fn new(key: ed25519_consensus::SigningKey, chain_id: &str, sequence: u64) -> Signer {
        let address = Address::of_key(&key.verification_key().to_bytes());
        Signer {
            key,
            address,
            chain_id: chain_id.to_string(),
            sequence,
        }
    }

    /// A key derived from a fixed seed, for tests and benchmarks (never for
    /// real accounts: anyone can derive it).
    pub fn from_seed(seed: u8, chain_id: &str) -> Signer {
        Signer::new(ed25519_consensus::SigningKey::from([seed; 32]), chain_id, 0)
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs `tx` with the next sequence, which it then uses up.
    pub fn sign(&mut self, tx: crate::tx::Tx) -> crate::tx::Tx {
        let signed = tx.sign(&self.key, self.sequence, &self.chain_id);
        self.sequence += 1;
        signed
    }

    /// Signs `tx` with `sequence`, leaving the next sequence as it is (to
    /// build a replay, or a transaction that is meant to be refused).
    pub fn sign_with(&self, tx: crate::tx::Tx, sequence: u64) -> crate::tx::Tx {
        tx.sign(&self.key, sequence, &self.chain_id)
    }

    /// [`Signer::sign`], encoded.
    pub fn sign_bytes(&mut self, tx: crate::tx::Tx) -> Vec<u8> {
        self.sign(tx).to_bytes()
    }

    /// This account funded with `fuel` in a genesis app state.
    pub fn genesis_account(&self, fuel: u64) -> crate::genesis::GenesisAccount {
        crate::genesis::GenesisAccount {
            address: self.address,
            fuel,
            name: None,
        }
    }
}

/// Decodes an account record (absent: the default account). A record of the
/// wrong size is corruption, a host failure.
pub fn read_account(record: Option<Vec<u8>>, address: &Address) -> Result<Account, ExecError> {
    match record {
        None => Ok(Account::default()),
        Some(bytes) => Account::from_record(&bytes).ok_or_else(|| {
            ExecError::new(
                "read account",
                format!(
                    "the record of account {address} is {} bytes, not {}",
                    bytes.len(),
                    RECORD_BYTES
                ),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_is_cometbft_style() {
        let a = Address::of_key(&[7u8; 32]);
        let text = a.to_string();
        assert_eq!(text.len(), 40);
        assert_eq!(text, text.to_uppercase());
        assert_eq!(text.parse::<Address>(), Ok(a));
        assert_eq!(text.to_lowercase().parse::<Address>(), Ok(a));
        assert!("ABC".parse::<Address>().is_err());
        assert_ne!(a, Address::GENESIS);
    }

    #[test]
    fn record_roundtrip() {
        let acct = Account {
            sequence: 3,
            fuel: u64::MAX - 1,
        };
        assert_eq!(Account::from_record(&acct.to_record()), Some(acct));
        assert_eq!(Account::from_record(&[0; 15]), None);
    }

    #[test]
    fn admit_uses_the_sequence_once_and_pays() {
        let who = Address::of_key(&[1; 32]);
        let acct = Account {
            sequence: 2,
            fuel: 100,
        };
        let after = acct.admit(&who, 2, 60).expect("admitted");
        assert_eq!(
            after,
            Account {
                sequence: 3,
                fuel: 40
            }
        );
        assert_eq!(
            after.admit(&who, 2, 1).expect_err("replay").code,
            Code::WrongSequence
        );
        assert_eq!(
            after.admit(&who, 3, 41).expect_err("poor").code,
            Code::InsufficientFuel
        );
    }
}
