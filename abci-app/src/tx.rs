//! The transaction format: a versioned protobuf envelope around one syscall input.
//!
//! The messages are hand-written `prost` structs (no build script, no protoc); the
//! `.proto` equivalent and the limits are documented in `docs/tx-format.md`.
//! Decoding is strict: the bytes must re-encode to themselves, so unknown fields,
//! duplicated fields and non-minimal varints are refused. That keeps one meaning
//! per transaction hash.

use prost::Message;

use ed25519_consensus::{Signature, SigningKey, VerificationKey};

use crate::account::Address;
use crate::codes::Code;
use crate::genesis::Limits;
use crate::limits;

/// The only envelope version this node speaks: 2, signed. Version 1 (unsigned,
/// with a free `nonce`) is refused with `unsupported_version`.
pub const TX_VERSION: u32 = 2;

/// What a signature covers starts with this tag, so a signature made for
/// anything else (another protocol using the same key) never verifies here.
pub const SIGN_DOMAIN: &[u8] = b"replicode/tx/v2\0";

/// The envelope: one input, the fuel it may burn, and who signed it with
/// which sequence. The signature covers [`Tx::sign_bytes`]: the domain tag,
/// the chain id and the canonical encoding of every other field.
#[derive(Clone, PartialEq, Message)]
pub struct Tx {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(oneof = "Body", tags = "2, 3, 4, 5, 6")]
    pub body: Option<Body>,
    /// The most fuel this input may burn (its `gas_wanted`); 0 means the
    /// genesis `fuel_per_tx`. A block's transactions together may want at most
    /// the genesis `max_block_fuel`, which bounds a block's execution time.
    #[prost(uint64, tag = "14")]
    pub fuel: u64,
    /// The signer's ed25519 public key (32 bytes). Tag 15 (version 1's
    /// `nonce`) is retired.
    #[prost(bytes = "vec", tag = "16")]
    pub signer: Vec<u8>,
    /// Must equal the signer's account sequence: each value is used once.
    #[prost(uint64, tag = "17")]
    pub sequence: u64,
    /// ed25519 signature (64 bytes) of [`Tx::sign_bytes`].
    #[prost(bytes = "vec", tag = "18")]
    pub signature: Vec<u8>,
}

/// What the transaction asks of the replicated machine.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    #[prost(message, tag = "2")]
    Install(Install),
    #[prost(message, tag = "3")]
    Spawn(Spawn),
    #[prost(message, tag = "4")]
    Stdin(Stdin),
    #[prost(message, tag = "5")]
    Kill(Kill),
    #[prost(message, tag = "6")]
    Uninstall(Uninstall),
}

/// Remove the program installed at `path` (its owner only). Running
/// processes of it keep running.
#[derive(Clone, PartialEq, Message)]
pub struct Uninstall {
    #[prost(string, tag = "1")]
    pub path: String,
}

/// Write a wasm program to `path` (below `/bin/`).
#[derive(Clone, PartialEq, Message)]
pub struct Install {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(bytes = "vec", tag = "2")]
    pub wasm: Vec<u8>,
}

/// Start the program at `path` with `args` (argv[1..]) and `env`.
#[derive(Clone, PartialEq, Message)]
pub struct Spawn {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(string, repeated, tag = "2")]
    pub args: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub env: Vec<EnvVar>,
    /// Any account may feed the process's stdin (a shared service); otherwise
    /// only its owner, the signer of the spawn. Kill is always owner-only.
    #[prost(bool, tag = "4")]
    pub public: bool,
}

/// One environment variable; a list (not a map) so the order is the client's.
#[derive(Clone, PartialEq, Message)]
pub struct EnvVar {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Bytes for a process's stdin; `eof` closes it after them.
#[derive(Clone, PartialEq, Message)]
pub struct Stdin {
    #[prost(uint64, tag = "1")]
    pub pid: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    #[prost(bool, tag = "3")]
    pub eof: bool,
}

/// Terminate a process.
#[derive(Clone, PartialEq, Message)]
pub struct Kill {
    #[prost(uint64, tag = "1")]
    pub pid: u64,
}

/// Why a transaction was refused before execution: a code and a readable reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Refusal {
    pub code: Code,
    pub reason: String,
}

impl Refusal {
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Refusal {
            code,
            reason: reason.into(),
        }
    }
}

impl Tx {
    /// An unsigned envelope of the current version (see [`Tx::sign`]).
    pub fn new(body: Body) -> Tx {
        Tx {
            version: TX_VERSION,
            body: Some(body),
            fuel: 0,
            signer: Vec::new(),
            sequence: 0,
            signature: Vec::new(),
        }
    }

    /// The same transaction asking for at most `fuel` (0: the genesis maximum).
    pub fn with_fuel(mut self, fuel: u64) -> Tx {
        self.fuel = fuel;
        self
    }

    /// Signs as `key` with `sequence` for the chain `chain_id`.
    pub fn sign(mut self, key: &SigningKey, sequence: u64, chain_id: &str) -> Tx {
        self.signer = key.verification_key().to_bytes().to_vec();
        self.sequence = sequence;
        let signature = key.sign(&self.sign_bytes(chain_id));
        self.signature = signature.to_bytes().to_vec();
        self
    }

    /// What the signature covers: [`SIGN_DOMAIN`], the chain id (length-prefixed,
    /// u32 big-endian) and the canonical encoding of the envelope without its
    /// `signature` field. Decoding is strict, so these bytes are a function of
    /// the transaction's meaning.
    pub fn sign_bytes(&self, chain_id: &str) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature.clear();
        let body = unsigned.encode_to_vec();
        let mut out = Vec::with_capacity(SIGN_DOMAIN.len() + 4 + chain_id.len() + body.len());
        out.extend_from_slice(SIGN_DOMAIN);
        out.extend_from_slice(&(chain_id.len() as u32).to_be_bytes());
        out.extend_from_slice(chain_id.as_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// The signer's address, if `signer` is a 32-byte key (not yet verified).
    pub fn signer_address(&self) -> Option<Address> {
        let key: [u8; 32] = self.signer.as_slice().try_into().ok()?;
        Some(Address::of_key(&key))
    }

    /// The canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// A short name of the body kind, for events and logs.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            Some(body) => body.kind(),
            None => "none",
        }
    }
}

impl Body {
    /// `install`, `spawn`, `stdin`, `kill` or `uninstall`.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Install(_) => "install",
            Body::Spawn(_) => "spawn",
            Body::Stdin(_) => "stdin",
            Body::Kill(_) => "kill",
            Body::Uninstall(_) => "uninstall",
        }
    }
}

/// Decodes and checks everything that needs no state: size, encoding, version,
/// field limits and path syntax. Both CheckTx and FinalizeBlock call this, so a
/// transaction refused here is refused identically in both.
pub fn decode(bytes: &[u8]) -> Result<(Tx, Body), Refusal> {
    if bytes.len() > limits::MAX_TX_BYTES {
        return Err(Refusal::new(
            Code::TooLarge,
            format!(
                "transaction is {} bytes; the limit is {}",
                bytes.len(),
                limits::MAX_TX_BYTES
            ),
        ));
    }
    let tx = Tx::decode(bytes)
        .map_err(|e| Refusal::new(Code::Malformed, format!("not a protobuf Tx: {e}")))?;
    if tx.encoded_len() != bytes.len() || tx.encode_to_vec() != bytes {
        return Err(Refusal::new(
            Code::Malformed,
            "Tx is not canonically encoded (unknown, repeated or out-of-order fields)",
        ));
    }
    if tx.version != TX_VERSION {
        let hint = if tx.version == 1 {
            " (version 1 transactions are unsigned; sign with `replicode tx --from KEY`)"
        } else {
            ""
        };
        return Err(Refusal::new(
            Code::UnsupportedVersion,
            format!(
                "Tx version {} is not supported; this node speaks version {TX_VERSION}{hint}",
                tx.version
            ),
        ));
    }
    let body = tx.body.clone().ok_or_else(|| {
        Refusal::new(
            Code::InvalidField,
            "Tx has no body (install, spawn, stdin, kill or uninstall)",
        )
    })?;
    check_body(&body)?;
    Ok((tx, body))
}

/// Verifies the signature of a decoded transaction for `chain_id` and returns
/// the signer's address. A key or signature of the wrong length, a key that
/// is not a curve point, or a signature that does not verify (under ZIP-215's
/// rules, as CometBFT's own) is `bad_signature`; a transaction signed for
/// another chain fails here too, since the chain id is part of what is signed.
pub fn authenticate(tx: &Tx, chain_id: &str) -> Result<Address, Refusal> {
    let bad = |why: String| Refusal::new(Code::BadSignature, why);
    let key: [u8; 32] = tx.signer.as_slice().try_into().map_err(|_| {
        bad(format!(
            "Tx.signer is {} bytes; an ed25519 public key is 32 (unsigned transactions are refused)",
            tx.signer.len()
        ))
    })?;
    let signature: [u8; 64] = tx.signature.as_slice().try_into().map_err(|_| {
        bad(format!(
            "Tx.signature is {} bytes; an ed25519 signature is 64",
            tx.signature.len()
        ))
    })?;
    let verification = VerificationKey::try_from(key)
        .map_err(|_| bad("Tx.signer is not an ed25519 public key".into()))?;
    verification
        .verify(&Signature::from(signature), &tx.sign_bytes(chain_id))
        .map_err(|_| {
            bad(format!(
                "the signature of {} does not verify for chain {chain_id:?}",
                Address::of_key(&key)
            ))
        })?;
    Ok(Address::of_key(&key))
}

/// [`authenticate`] for a block's transactions at once (`None` entries are
/// transactions that did not decode), with the same answers.
///
/// Why: one ed25519 check is ~80 µs here, most of a small input's cost.
/// Batch verification checks the whole block in one multi-scalar
/// multiplication and decompresses each signer's key once; `ed25519-consensus`
/// implements ZIP-215, under which batch and single verification accept
/// exactly the same signatures. The batch's random coefficients come from a
/// ChaCha20 stream seeded with the SHA-256 of every queued key, signature and
/// message (Fiat–Shamir), so they are the same on every validator and no
/// signer can choose them. If the batch fails, each transaction is checked
/// alone, so a bad signature costs its sender's block one slow pass, and the
/// refusals are exactly [`authenticate`]'s.
pub fn authenticate_all(
    txs: &[Option<&Tx>],
    chain_id: &str,
) -> Vec<Option<Result<Address, Refusal>>> {
    let mut out: Vec<Option<Result<Address, Refusal>>> = vec![None; txs.len()];
    let mut queued = Vec::new();
    for (i, tx) in txs.iter().enumerate() {
        let Some(tx) = tx else { continue };
        match (
            <[u8; 32]>::try_from(tx.signer.as_slice()),
            <[u8; 64]>::try_from(tx.signature.as_slice()),
        ) {
            (Ok(key), Ok(signature)) => queued.push(Queued {
                index: i,
                tx,
                key,
                signature,
                message: tx.sign_bytes(chain_id),
            }),
            _ => out[i] = Some(authenticate(tx, chain_id)),
        }
    }
    // Chunks verified on their own threads (the answers do not depend on how
    // the block is cut: each chunk is checked as a whole, and a failed chunk
    // checks its transactions alone, on the same thread).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let chunk = queued.len().div_ceil(threads).max(BATCH_MIN);
    let answers: Vec<Vec<Result<Address, Refusal>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = queued
            .chunks(chunk)
            .map(|part| scope.spawn(move || verify_part(part, chain_id)))
            .collect();
        handles
            .into_iter()
            .zip(queued.chunks(chunk))
            .map(|(h, part)| {
                // A panic in a verifier thread is a bug; answer as if alone.
                h.join().unwrap_or_else(|_| verify_alone(part, chain_id))
            })
            .collect()
    });
    for (q, answer) in queued.iter().zip(answers.into_iter().flatten()) {
        out[q.index] = Some(answer);
    }
    out
}

/// A transaction waiting for its batch: where it is in the block, and what
/// its signature check needs.
struct Queued<'a> {
    index: usize,
    tx: &'a Tx,
    key: [u8; 32],
    signature: [u8; 64],
    message: Vec<u8>,
}

/// The answers for `part`: one batch, or each alone if the batch fails.
fn verify_part(part: &[Queued<'_>], chain_id: &str) -> Vec<Result<Address, Refusal>> {
    if batch_valid(part) {
        part.iter().map(|q| Ok(Address::of_key(&q.key))).collect()
    } else {
        verify_alone(part, chain_id)
    }
}

fn verify_alone(part: &[Queued<'_>], chain_id: &str) -> Vec<Result<Address, Refusal>> {
    part.iter().map(|q| authenticate(q.tx, chain_id)).collect()
}

/// Fewer signatures than this are not worth a thread of their own.
const BATCH_MIN: usize = 128;

/// Whether every signature of `part` verifies, in one batch whose
/// coefficients are seeded by the hash of the part.
fn batch_valid(part: &[Queued<'_>]) -> bool {
    use ed25519_consensus::{batch, VerificationKeyBytes};
    use rand_chacha::rand_core::SeedableRng as _;
    use sha2::{Digest as _, Sha256};
    let mut verifier = batch::Verifier::new();
    let mut transcript = Sha256::new();
    for q in part {
        transcript.update(q.key);
        transcript.update(q.signature);
        transcript.update((q.message.len() as u64).to_be_bytes());
        transcript.update(&q.message);
        verifier.queue((
            VerificationKeyBytes::from(q.key),
            Signature::from(q.signature),
            &q.message,
        ));
    }
    let seed: [u8; 32] = transcript.finalize().into();
    verifier
        .verify(rand_chacha::ChaCha20Rng::from_seed(seed))
        .is_ok()
}

/// The fuel a transaction may burn (its `gas_wanted`): its own `fuel`, or its
/// kind's most when it names none. That most is `fuel_per_tx` for inputs that
/// run guests, and for an install its size-based cost
/// ([`Limits::install_fuel`]), which is known from the bytes alone. Asking
/// for more than the most, or for more than a whole block holds, is refused
/// (`too_large`), the same in CheckTx and FinalizeBlock.
pub fn fuel_wanted(tx: &Tx, body: &Body, limits: &Limits) -> Result<u64, Refusal> {
    let most = match body {
        Body::Install(install) => limits.install_fuel(install.wasm.len()),
        _ => limits.fuel_per_tx,
    };
    let wanted = match tx.fuel {
        0 => most,
        fuel if fuel > most => {
            return Err(Refusal::new(
                Code::TooLarge,
                format!(
                    "fuel {fuel} is above the {most} a {} transaction can use",
                    body.kind()
                ),
            ))
        }
        // An install costs exactly its price; less could never succeed, and
        // would still cost its validation, so it is refused up front.
        fuel if matches!(body, Body::Install(_)) && fuel < most => {
            return Err(Refusal::new(
                Code::InvalidField,
                format!("fuel {fuel} is below the {most} this install costs"),
            ))
        }
        fuel => fuel,
    };
    if wanted > limits.max_block_fuel {
        return Err(Refusal::new(
            Code::TooLarge,
            format!(
                "the transaction wants {wanted} fuel, more than a whole block's {}",
                limits.max_block_fuel
            ),
        ));
    }
    Ok(wanted)
}

/// What a block's transactions want together: the sum of [`fuel_wanted`] of
/// each one that decodes and asks for an allowed amount. Refused transactions
/// run nothing and count 0 (their number and size are bounded apart).
pub fn block_fuel<'a>(txs: impl IntoIterator<Item = &'a [u8]>, limits: &Limits) -> u64 {
    txs.into_iter()
        .filter_map(|bytes| decode(bytes).ok())
        .filter_map(|(tx, body)| fuel_wanted(&tx, &body, limits).ok())
        .fold(0u64, u64::saturating_add)
}

fn check_body(body: &Body) -> Result<(), Refusal> {
    match body {
        Body::Install(install) => {
            check_path("install.path", &install.path)?;
            if !install.path.starts_with(limits::INSTALL_DIR) {
                return Err(Refusal::new(
                    Code::InvalidField,
                    format!(
                        "install.path {:?} is not below {}",
                        install.path,
                        limits::INSTALL_DIR
                    ),
                ));
            }
            if install.wasm.is_empty() {
                return Err(Refusal::new(Code::InvalidProgram, "install.wasm is empty"));
            }
            Ok(())
        }
        Body::Spawn(spawn) => {
            check_path("spawn.path", &spawn.path)?;
            check_count("spawn.args", spawn.args.len(), limits::MAX_ARGS)?;
            check_count("spawn.env", spawn.env.len(), limits::MAX_ENV)?;
            // What the process keeps in its state record: argv (path first)
            // and `KEY=VALUE` strings together.
            let total = spawn.path.len()
                + spawn.args.iter().map(String::len).sum::<usize>()
                + spawn
                    .env
                    .iter()
                    .map(|v| v.key.len() + 1 + v.value.len())
                    .sum::<usize>();
            let max = replicode_runtime::process::MAX_SPAWN_ARG_BYTES;
            if total > max {
                return Err(Refusal::new(
                    Code::TooLarge,
                    format!("spawn path, args and env are {total} bytes; the limit is {max}"),
                ));
            }
            for (i, arg) in spawn.args.iter().enumerate() {
                check_text(&format!("spawn.args[{i}]"), arg)?;
            }
            for (i, var) in spawn.env.iter().enumerate() {
                check_text(&format!("spawn.env[{i}].key"), &var.key)?;
                check_text(&format!("spawn.env[{i}].value"), &var.value)?;
                if var.key.is_empty() || var.key.contains('=') {
                    return Err(Refusal::new(
                        Code::InvalidField,
                        format!("spawn.env[{i}].key {:?} is empty or contains '='", var.key),
                    ));
                }
            }
            Ok(())
        }
        Body::Stdin(stdin) => {
            if stdin.data.len() > limits::MAX_STDIN_BYTES {
                return Err(Refusal::new(
                    Code::TooLarge,
                    format!(
                        "stdin.data is {} bytes; the limit is {}",
                        stdin.data.len(),
                        limits::MAX_STDIN_BYTES
                    ),
                ));
            }
            check_pid("stdin.pid", stdin.pid)
        }
        Body::Kill(kill) => check_pid("kill.pid", kill.pid),
        Body::Uninstall(uninstall) => check_path("uninstall.path", &uninstall.path),
    }
}

fn check_pid(field: &str, pid: u64) -> Result<(), Refusal> {
    if pid == 0 {
        return Err(Refusal::new(
            Code::UnknownPid,
            format!("{field} is 0; pids start at 1"),
        ));
    }
    Ok(())
}

fn check_count(field: &str, count: usize, limit: usize) -> Result<(), Refusal> {
    if count > limit {
        return Err(Refusal::new(
            Code::TooLarge,
            format!("{field} has {count} entries; the limit is {limit}"),
        ));
    }
    Ok(())
}

fn check_text(field: &str, text: &str) -> Result<(), Refusal> {
    if text.len() > limits::MAX_ARG_BYTES {
        return Err(Refusal::new(
            Code::TooLarge,
            format!(
                "{field} is {} bytes; the limit is {}",
                text.len(),
                limits::MAX_ARG_BYTES
            ),
        ));
    }
    if text.contains('\0') {
        return Err(Refusal::new(
            Code::InvalidField,
            format!("{field} contains a NUL byte"),
        ));
    }
    Ok(())
}

/// Guest paths are absolute, normalized (no `.`/`..`/empty components) and within
/// PATH_MAX/NAME_MAX, so one file has exactly one name in transactions.
pub fn check_path(field: &str, path: &str) -> Result<(), Refusal> {
    let bad = |why: &str| Refusal::new(Code::InvalidField, format!("{field} {path:?} {why}"));
    if path.len() > limits::MAX_PATH_BYTES {
        return Err(Refusal::new(
            Code::TooLarge,
            format!(
                "{field} is {} bytes; the limit is {}",
                path.len(),
                limits::MAX_PATH_BYTES
            ),
        ));
    }
    if !path.starts_with('/') {
        return Err(bad("is not absolute"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let rest = &path[1..];
    if rest.is_empty() {
        return Err(bad("names the root directory, not a file"));
    }
    for component in rest.split('/') {
        match component {
            "" => return Err(bad("has an empty component or a trailing '/'")),
            "." | ".." => return Err(bad("has a '.' or '..' component")),
            c if c.len() > limits::MAX_NAME_BYTES => {
                return Err(bad("has a component longer than 255 bytes"))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdin(pid: u64, data: &[u8]) -> Tx {
        Tx::new(Body::Stdin(Stdin {
            pid,
            data: data.to_vec(),
            eof: false,
        }))
    }

    #[test]
    fn roundtrip_every_kind() {
        let bodies = vec![
            Body::Install(Install {
                path: "/bin/kv".into(),
                wasm: b"\0asm\x01\0\0\0".to_vec(),
            }),
            Body::Spawn(Spawn {
                path: "/bin/kv".into(),
                args: vec!["-v".into()],
                env: vec![EnvVar {
                    key: "A".into(),
                    value: "1".into(),
                }],
                public: true,
            }),
            Body::Stdin(Stdin {
                pid: 3,
                data: b"SET a 1\n".to_vec(),
                eof: true,
            }),
            Body::Kill(Kill { pid: 3 }),
            Body::Uninstall(Uninstall {
                path: "/bin/kv".into(),
            }),
        ];
        for body in bodies {
            let tx = Tx::new(body.clone()).sign(&key(1), 5, "chain");
            let (decoded, got) = decode(&tx.to_bytes()).expect("valid tx decodes");
            assert_eq!(decoded, tx);
            assert_eq!(got, body);
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from([seed; 32])
    }

    #[test]
    fn signature_verifies_for_its_chain_only() {
        let tx = stdin(1, b"x").sign(&key(1), 0, "chain-a");
        let (decoded, _) = decode(&tx.to_bytes()).expect("decodes");
        let address = authenticate(&decoded, "chain-a").expect("verifies");
        assert_eq!(
            address,
            Address::of_key(&key(1).verification_key().to_bytes())
        );
        let other = authenticate(&decoded, "chain-b").expect_err("other chain");
        assert_eq!(other.code, Code::BadSignature);
    }

    #[test]
    fn every_signed_field_is_covered() {
        let tx = stdin(1, b"x").with_fuel(10).sign(&key(1), 4, "c");
        let mut changed = Vec::new();
        let mut t = tx.clone();
        t.sequence = 5;
        changed.push(t);
        let mut t = tx.clone();
        t.fuel = 11;
        changed.push(t);
        let mut t = tx.clone();
        t.body = Some(Body::Kill(Kill { pid: 1 }));
        changed.push(t);
        let mut t = tx.clone();
        t.signer = key(2).verification_key().to_bytes().to_vec();
        changed.push(t);
        for t in changed {
            assert_eq!(
                authenticate(&t, "c")
                    .expect_err("changed after signing")
                    .code,
                Code::BadSignature
            );
        }
        authenticate(&tx, "c").expect("the original verifies");
    }

    #[test]
    fn a_block_is_authenticated_as_each_transaction_alone() {
        let good = |seed: u8, seq: u64| stdin(1, b"x").sign(&key(seed), seq, "c");
        let mut forged = good(3, 0);
        forged.sequence = 1;
        let mut short = good(4, 0);
        short.signature.truncate(10);
        let mut not_a_point = good(5, 0);
        not_a_point.signer = vec![0xff; 32];
        let other_chain = stdin(1, b"y").sign(&key(6), 0, "d");
        let valid: Vec<Tx> = (0..5).map(|i| good(1 + (i % 2) as u8, i)).collect();
        let mut all: Vec<Tx> = valid.clone();
        all.extend([forged, short, not_a_point, other_chain]);
        let expect = |txs: &[Tx]| {
            txs.iter()
                .map(|t| Some(authenticate(t, "c")))
                .collect::<Vec<_>>()
        };
        // All valid: the batch passes.
        let refs: Vec<Option<&Tx>> = valid.iter().map(Some).collect();
        assert_eq!(authenticate_all(&refs, "c"), expect(&valid));
        assert!(authenticate_all(&refs, "c")
            .iter()
            .all(|r| matches!(r, Some(Ok(_)))));
        // Mixed, with an undecodable slot: the same answers as one by one.
        let mut refs: Vec<Option<&Tx>> = all.iter().map(Some).collect();
        refs.insert(2, None);
        let mut want = expect(&all);
        want.insert(2, None);
        assert_eq!(authenticate_all(&refs, "c"), want);
    }

    #[test]
    fn unsigned_and_short_signatures_are_bad_signature() {
        let unsigned = stdin(1, b"x");
        assert_eq!(
            authenticate(&unsigned, "c").expect_err("unsigned").code,
            Code::BadSignature
        );
        let mut short = stdin(1, b"x").sign(&key(1), 0, "c");
        short.signature.pop();
        assert_eq!(
            authenticate(&short, "c").expect_err("short").code,
            Code::BadSignature
        );
    }

    #[test]
    fn version_one_is_refused_with_a_hint() {
        let mut tx = stdin(1, b"x");
        tx.version = 1;
        let err = decode(&tx.to_bytes()).expect_err("v1");
        assert_eq!(err.code, Code::UnsupportedVersion);
        assert!(err.reason.contains("--from"), "{}", err.reason);
    }

    #[test]
    fn garbage_is_malformed() {
        let err = decode(&[0xff, 0xff, 0xff]).expect_err("garbage must be refused");
        assert_eq!(err.code, Code::Malformed);
    }

    #[test]
    fn unknown_field_is_malformed() {
        let mut bytes = stdin(1, b"x").to_bytes();
        // field 9, varint 1: a field this version does not define.
        bytes.extend_from_slice(&[0x48, 0x01]);
        assert_eq!(
            decode(&bytes).expect_err("unknown field").code,
            Code::Malformed
        );
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut tx = stdin(1, b"x");
        tx.version = 3;
        assert_eq!(
            decode(&tx.to_bytes()).expect_err("v3").code,
            Code::UnsupportedVersion
        );
    }

    #[test]
    fn missing_body_is_invalid() {
        let tx = Tx {
            version: TX_VERSION,
            body: None,
            fuel: 0,
            signer: vec![],
            sequence: 0,
            signature: vec![],
        };
        assert_eq!(
            decode(&tx.to_bytes()).expect_err("no body").code,
            Code::InvalidField
        );
    }

    #[test]
    fn oversized_is_too_large() {
        let tx = Tx::new(Body::Install(Install {
            path: "/bin/big".into(),
            wasm: vec![0; limits::MAX_TX_BYTES],
        }));
        assert_eq!(
            decode(&tx.to_bytes()).expect_err("too big").code,
            Code::TooLarge
        );
        let tx = stdin(1, &vec![b'a'; limits::MAX_STDIN_BYTES + 1]);
        assert_eq!(
            decode(&tx.to_bytes()).expect_err("stdin too big").code,
            Code::TooLarge
        );
    }

    #[test]
    fn install_outside_bin_is_refused() {
        let tx = Tx::new(Body::Install(Install {
            path: "/etc/kv".into(),
            wasm: vec![1],
        }));
        let err = decode(&tx.to_bytes()).expect_err("outside /bin");
        assert_eq!(err.code, Code::InvalidField);
        assert!(
            err.reason.contains("/etc/kv"),
            "reason names the path: {}",
            err.reason
        );
    }

    #[test]
    fn paths_are_normalized() {
        for bad in [
            "bin/kv",
            "/",
            "/bin//kv",
            "/bin/../etc",
            "/bin/./kv",
            "/bin/kv/",
            "/bin/k\0v",
        ] {
            assert!(check_path("p", bad).is_err(), "{bad:?} must be refused");
        }
        assert!(check_path("p", "/bin/kv_server").is_ok());
    }

    #[test]
    fn pid_zero_is_unknown() {
        assert_eq!(
            decode(&stdin(0, b"x").to_bytes()).expect_err("pid 0").code,
            Code::UnknownPid
        );
    }

    #[test]
    fn env_key_with_equals_is_invalid() {
        let tx = Tx::new(Body::Spawn(Spawn {
            path: "/bin/kv".into(),
            args: vec![],
            env: vec![EnvVar {
                key: "A=B".into(),
                value: String::new(),
            }],
            public: false,
        }));
        assert_eq!(
            decode(&tx.to_bytes()).expect_err("bad env").code,
            Code::InvalidField
        );
    }
}
