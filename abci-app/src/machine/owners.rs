//! Who owns each process, and who may give it input.
//!
//! The signer of a spawn owns the process. Only the owner may kill it; stdin
//! is the owner's too unless the spawn made it public (a shared service). The
//! record lives beside the process table in the authenticated store
//! (`replicode/owner/<pid>`, 20 bytes of address and one byte of `public`),
//! so every validator answers the same, and is deleted when the process is
//! reaped.

use std::collections::BTreeMap;

use crate::account::Address;
use crate::codes::Code;

/// `replicode/owner/` followed by the pid (20 digits, so keys sort by pid).
pub const PREFIX: &[u8] = b"replicode/owner/";

/// The store key of `pid`'s owner record.
pub fn key(pid: u64) -> Vec<u8> {
    format!("replicode/owner/{pid:020}").into_bytes()
}

/// One process's owner and whether its stdin is open to everyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessOwner {
    pub owner: Address,
    pub public: bool,
}

impl ProcessOwner {
    pub fn to_record(self) -> [u8; 21] {
        let mut out = [0u8; 21];
        out[..20].copy_from_slice(&self.owner.0);
        out[20] = u8::from(self.public);
        out
    }

    pub fn from_record(bytes: &[u8]) -> Option<ProcessOwner> {
        let bytes: &[u8; 21] = bytes.try_into().ok()?;
        let owner: [u8; 20] = bytes[..20].try_into().ok()?;
        let public = match bytes[20] {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(ProcessOwner {
            owner: Address(owner),
            public,
        })
    }
}

/// What a caller asks of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Stdin,
    Kill,
}

/// The owners of every process in the table, mirrored in memory.
#[derive(Default)]
pub struct Owners(BTreeMap<u64, ProcessOwner>);

impl Owners {
    pub fn insert(&mut self, pid: u64, owner: ProcessOwner) {
        self.0.insert(pid, owner);
    }

    pub fn remove(&mut self, pid: u64) {
        self.0.remove(&pid);
    }

    pub fn get(&self, pid: u64) -> Option<ProcessOwner> {
        self.0.get(&pid).copied()
    }

    /// `Ok` if `caller` may do `access` to `pid`; a process without an owner
    /// record does not exist, which the process table reports itself.
    pub fn check(&self, pid: u64, caller: &Address, access: Access) -> Result<(), (Code, String)> {
        let Some(record) = self.get(pid) else {
            return Ok(());
        };
        let allowed = record.owner == *caller || (access == Access::Stdin && record.public);
        if allowed {
            return Ok(());
        }
        let what = match access {
            Access::Stdin => "write to the stdin of",
            Access::Kill => "kill",
        };
        Err((
            Code::Unauthorized,
            format!(
                "account {caller} may not {what} pid {pid}: it belongs to {}{}",
                record.owner.owner_name(),
                if record.public { "" } else { " and is private" }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip_and_rules() {
        let alice = Address([1; 20]);
        let bob = Address([2; 20]);
        let private = ProcessOwner {
            owner: alice,
            public: false,
        };
        assert_eq!(
            ProcessOwner::from_record(&private.to_record()),
            Some(private)
        );
        let mut owners = Owners::default();
        owners.insert(1, private);
        owners.insert(
            2,
            ProcessOwner {
                owner: alice,
                public: true,
            },
        );
        assert!(owners.check(1, &alice, Access::Kill).is_ok());
        assert_eq!(
            owners.check(1, &bob, Access::Stdin).expect_err("private").0,
            Code::Unauthorized
        );
        assert!(owners.check(2, &bob, Access::Stdin).is_ok());
        assert!(owners.check(2, &bob, Access::Kill).is_err());
    }
}
