//! A blocking façade over `tendermint-rpc`'s HTTP client for the CLI commands.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tendermint::abci::types::ExecTxResult;
use tendermint::block::Height;
use tendermint::Hash;
use tendermint_rpc::client::CompatMode;
use tendermint_rpc::endpoint::abci_query::AbciQuery;
use tendermint_rpc::{Client, HttpClient, HttpClientUrl, Paging};

/// One node's RPC, with a private single-threaded runtime.
pub struct Rpc {
    pub url: String,
    client: HttpClient,
    rt: tokio::runtime::Runtime,
}

/// What `status` needs from a node.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    pub height: u64,
    pub app_hash: String,
    pub catching_up: bool,
    pub peers: u64,
    pub moniker: String,
    /// The chain id (what transactions are signed for).
    pub chain_id: String,
}

/// A committed transaction's result.
#[derive(Clone, Debug)]
pub struct Included {
    pub height: u64,
    pub result: ExecTxResult,
}

impl Rpc {
    pub fn new(url: &str) -> anyhow::Result<Rpc> {
        let parsed: HttpClientUrl = url
            .parse()
            .with_context(|| format!("{url:?} is not an RPC URL"))?;
        let client = HttpClient::builder(parsed)
            .compat_mode(CompatMode::V0_38)
            .timeout(Duration::from_secs(10))
            .build()
            .with_context(|| format!("cannot make an RPC client for {url}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        Ok(Rpc {
            url: url.to_string(),
            client,
            rt,
        })
    }

    pub fn status(&self) -> anyhow::Result<NodeStatus> {
        let status = self
            .rt
            .block_on(self.client.status())
            .with_context(|| format!("status from {}", self.url))?;
        let peers = self
            .rt
            .block_on(self.client.net_info())
            .map(|n| n.n_peers)
            .unwrap_or(0);
        Ok(NodeStatus {
            height: status.sync_info.latest_block_height.value(),
            app_hash: hex::encode_upper(status.sync_info.latest_app_hash.as_bytes()),
            catching_up: status.sync_info.catching_up,
            peers,
            moniker: status.node_info.moniker.to_string(),
            chain_id: status.node_info.network.to_string(),
        })
    }

    /// The app hash this node's own app returned from FinalizeBlock at `height`.
    pub fn app_hash_at(&self, height: u64) -> anyhow::Result<Vec<u8>> {
        let h = Height::try_from(height)?;
        let res = self
            .rt
            .block_on(self.client.block_results(h))
            .with_context(|| format!("block_results {height} from {}", self.url))?;
        Ok(res.app_hash.as_bytes().to_vec())
    }

    /// broadcast_tx_sync: the CheckTx answer (code, log) and the tx hash.
    pub fn broadcast(&self, tx: Vec<u8>) -> anyhow::Result<(u32, String, Hash)> {
        let res = self
            .rt
            .block_on(self.client.broadcast_tx_sync(tx))
            .with_context(|| format!("broadcast_tx_sync to {}", self.url))?;
        Ok((res.code.value(), res.log, res.hash))
    }

    /// Polls `/tx?hash=` until the transaction is in a block or `timeout` passes.
    pub fn wait_included(&self, hash: Hash, timeout: Duration) -> anyhow::Result<Included> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rt.block_on(self.client.tx(hash, false)) {
                Ok(res) => {
                    return Ok(Included {
                        height: res.height.value(),
                        result: res.tx_result,
                    })
                }
                Err(e) if Instant::now() >= deadline => {
                    bail!("transaction {hash} not committed within {timeout:?} (last answer from {}: {e})", self.url)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The committed transaction `hash`, if this node has it (one try).
    pub fn find_tx(&self, hash: Hash) -> Option<Included> {
        let res = self.rt.block_on(self.client.tx(hash, false)).ok()?;
        Some(Included {
            height: res.height.value(),
            result: res.tx_result,
        })
    }

    /// An account's committed sequence and fuel.
    pub fn account(
        &self,
        address: &replicode_abci::account::Address,
    ) -> anyhow::Result<replicode_abci::info::AccountInfo> {
        use replicode_abci::info::paths;
        let answer = self.abci_query(
            paths::ACCOUNT,
            address.to_string().into_bytes(),
            None,
            false,
        )?;
        if answer.code.value() != paths::CODE_OK {
            bail!(
                "query account {address} at {}: code {}: {}",
                self.url,
                answer.code.value(),
                answer.log
            );
        }
        serde_json::from_slice(&answer.value)
            .with_context(|| format!("account answer from {} is not JSON", self.url))
    }

    pub fn abci_query(
        &self,
        path: &str,
        data: Vec<u8>,
        height: Option<u64>,
        prove: bool,
    ) -> anyhow::Result<AbciQuery> {
        let height = height.map(Height::try_from).transpose()?;
        self.rt
            .block_on(
                self.client
                    .abci_query(Some(path.to_string()), data, height, prove),
            )
            .with_context(|| format!("abci_query {path} to {}", self.url))
    }

    pub fn signed_header(
        &self,
        height: u64,
    ) -> anyhow::Result<tendermint::block::signed_header::SignedHeader> {
        let h = Height::try_from(height)?;
        let res = self
            .rt
            .block_on(self.client.commit(h))
            .with_context(|| format!("commit {height} from {}", self.url))?;
        Ok(res.signed_header)
    }

    pub fn validators(&self, height: u64) -> anyhow::Result<tendermint::validator::Set> {
        let h = Height::try_from(height)?;
        let res = self
            .rt
            .block_on(self.client.validators(h, Paging::All))
            .with_context(|| format!("validators {height} from {}", self.url))?;
        Ok(tendermint::validator::Set::without_proposer(res.validators))
    }
}
