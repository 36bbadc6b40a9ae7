//! Target 2: a sequence of valid transactions (installs of real guests,
//! spawns, lines of input, kills, uninstalls) over several blocks, run twice:
//! once on a node that never stops, keeps every height and has warm module
//! caches; once on a node that is reopened from disk after a chosen block,
//! prunes old heights or not, and starts with cold caches or none.
//!
//! Oracle: both nodes give the same results (codes, outputs, fuel) and the
//! same app hash at every height — what a validator restarted at any height,
//! with any pruning and any cache state, must do to stay in consensus.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Unstructured;
use prost::bytes::Bytes;
use replicode_abci::account::Signer;
use replicode_abci::consensus::Core;
use replicode_abci::machine::Machine;
use replicode_abci::mempool::SharedView;
use replicode_abci::tx::{Body, Install, Kill, Spawn, Stdin, Tx, Uninstall};
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{ExecTxResult, RequestFinalizeBlock, RequestInitChain};

use crate::Finding;

const CHAIN_ID: &str = "fuzz-restart";
const GENESIS_SECONDS: i64 = 1_700_000_000;
const PATHS: [&str; 2] = ["/bin/a", "/bin/b"];

/// The guests cases install: small real C programs that block on stdin.
fn guests() -> &'static [Vec<u8>] {
    static GUESTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    GUESTS.get_or_init(|| {
        ["echo_server", "kv_server"]
            .iter()
            .filter_map(|name| {
                let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("../wasm_programs/build/{name}.wasm"));
                std::fs::read(path).ok()
            })
            .collect()
    })
}

/// One node's store and module cache.
struct Node {
    core: Core<Machine>,
    store: PathBuf,
    cache: Option<PathBuf>,
    keep: Option<u64>,
}

impl Node {
    fn open(store: &Path, cache: Option<&Path>, keep: Option<u64>) -> Result<Node, Finding> {
        let setup = |e: &dyn std::fmt::Display| Finding::new("open node", e.to_string());
        let mut machine = Machine::open_with_cache(store, cache).map_err(|e| setup(&e))?;
        machine.set_keep_heights(keep);
        let core = Core::new(machine, Machine::validator(), SharedView::default())
            .map_err(|e| setup(&e))?;
        Ok(Node {
            core,
            store: store.to_path_buf(),
            cache: cache.map(Path::to_path_buf),
            keep,
        })
    }

    /// Drops the node and opens it again from its store, as after a crash.
    fn reopen(self) -> Result<Node, Finding> {
        let Node {
            core,
            store,
            cache,
            keep,
        } = self;
        drop(core);
        Node::open(&store, cache.as_deref(), keep)
    }

    fn block(
        &mut self,
        height: i64,
        txs: &[Vec<u8>],
    ) -> Result<(Vec<ExecTxResult>, Vec<u8>), Finding> {
        let res = self
            .core
            .finalize_block(RequestFinalizeBlock {
                txs: txs.iter().cloned().map(Bytes::from).collect(),
                height,
                hash: Bytes::from(vec![height as u8; 32]),
                time: Some(Timestamp {
                    seconds: GENESIS_SECONDS + height,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .map_err(|e| Finding::new("FinalizeBlock failed", e.to_string()))?;
        self.core
            .commit()
            .map_err(|e| Finding::new("Commit failed", e.to_string()))?;
        Ok((res.tx_results, res.app_hash.to_vec()))
    }
}

fn genesis(node: &mut Node, signer: &Signer) -> Result<Vec<u8>, Finding> {
    let account = signer.genesis_account(1 << 55);
    let app_state = format!(
        r#"{{"limits":{{"fuel_per_tx":50000000,"memory_bytes":16777216,"max_processes":6}},"accounts":[{{"address":"{}","fuel":{}}}]}}"#,
        account.address, account.fuel
    );
    let res = node
        .core
        .init_chain(RequestInitChain {
            app_state_bytes: Bytes::from(app_state),
            initial_height: 1,
            chain_id: CHAIN_ID.into(),
            time: Some(Timestamp {
                seconds: GENESIS_SECONDS,
                nanos: 0,
            }),
            ..Default::default()
        })
        .map_err(|e| Finding::new("InitChain failed", e.to_string()))?;
    Ok(res.app_hash.to_vec())
}

/// A case: blocks of signed transactions and how the second node lives.
pub struct Plan {
    blocks: Vec<Vec<Vec<u8>>>,
    /// The second node is reopened after this block (0: never).
    restart_after: usize,
    /// Heights the second node keeps (`None`: all).
    keep: Option<u64>,
    /// Whether the second node has a module cache (always cold).
    cache: bool,
}

impl Plan {
    /// Reads a plan from the input's bytes.
    pub fn generate(u: &mut Unstructured<'_>) -> arbitrary::Result<Plan> {
        let mut signer = Signer::from_seed(1, CHAIN_ID);
        let guests = guests();
        let count = u.int_in_range(2..=6)?;
        let mut blocks = Vec::with_capacity(count);
        for _ in 0..count {
            let steps = u.int_in_range(0..=4)?;
            let mut txs = Vec::with_capacity(steps);
            for _ in 0..steps {
                let path = PATHS[u.choose_index(PATHS.len())?].to_string();
                let body = match u.int_in_range(0..=9)? {
                    0 | 1 if !guests.is_empty() => Body::Install(Install {
                        path,
                        wasm: guests[u.choose_index(guests.len())?].clone(),
                    }),
                    0..=2 => Body::Spawn(Spawn {
                        path,
                        args: vec!["/data.log".into()],
                        env: vec![],
                        public: u.arbitrary()?,
                    }),
                    3..=7 => Body::Stdin(Stdin {
                        pid: u.int_in_range(1..=4)?,
                        data: line(u)?,
                        eof: u.ratio(1, 10)?,
                    }),
                    8 => Body::Kill(Kill {
                        pid: u.int_in_range(1..=4)?,
                    }),
                    _ => Body::Uninstall(Uninstall { path }),
                };
                txs.push(signer.sign_bytes(Tx::new(body)));
            }
            blocks.push(txs);
        }
        Ok(Plan {
            restart_after: u.int_in_range(0..=count)?,
            keep: if u.arbitrary()? {
                Some(u.int_in_range(1..=3)?)
            } else {
                None
            },
            cache: u.arbitrary()?,
            blocks,
        })
    }
}

fn line(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    const LINES: [&str; 6] = [
        "SET k v",
        "GET k",
        "SCAN",
        "DEL k",
        "hello",
        "SET big 0123456789abcdef",
    ];
    let mut text = if u.ratio(1, 5)? {
        u.arbitrary::<Vec<u8>>()?.into_iter().take(64).collect()
    } else {
        LINES[u.choose_index(LINES.len())?].as_bytes().to_vec()
    };
    text.push(b'\n');
    Ok(text)
}

/// Runs `plan` on both nodes; `warm_cache` is the first node's module cache,
/// kept across cases so it is warm.
/// Returns how many transactions ran and how many of them succeeded (code
/// 0), so a search can show it exercised the machine, not only refusals.
pub fn run(plan: &Plan, warm_cache: &Path) -> Result<(usize, usize), Finding> {
    let tmp =
        |what: &str| tempfile::tempdir().map_err(|e| Finding::new("setup", format!("{what}: {e}")));
    let (a_dir, b_dir, b_cache) = (tmp("store a")?, tmp("store b")?, tmp("cache b")?);
    let signer = Signer::from_seed(1, CHAIN_ID);
    let mut a = Node::open(a_dir.path(), Some(warm_cache), None)?;
    let mut b = Node::open(b_dir.path(), plan.cache.then(|| b_cache.path()), plan.keep)?;
    let (ga, gb) = (genesis(&mut a, &signer)?, genesis(&mut b, &signer)?);
    if ga != gb {
        return Err(Finding::new(
            "genesis differs",
            format!("{} vs {}", hex::encode(ga), hex::encode(gb)),
        ));
    }
    let (mut ran, mut ok) = (0, 0);
    for (i, txs) in plan.blocks.iter().enumerate() {
        let height = i as i64 + 1;
        let (ra, ha) = a.block(height, txs)?;
        ran += ra.len();
        ok += ra.iter().filter(|r| r.code == 0).count();
        let (rb, hb) = b.block(height, txs)?;
        if ra != rb || ha != hb {
            let first = ra.iter().zip(&rb).position(|(x, y)| x != y);
            return Err(Finding::new(
                "a restarted, pruned or cold node diverged",
                format!(
                    "height {height} (restart after {}, keep {:?}, cache {}): app hash {} vs {}; first differing result {first:?}",
                    plan.restart_after,
                    plan.keep,
                    plan.cache,
                    hex::encode(&ha),
                    hex::encode(&hb)
                ),
            ));
        }
        if i + 1 == plan.restart_after {
            b = b.reopen()?;
        }
    }
    Ok((ran, ok))
}
