//! The jmt storage adapter for proofs: nodes live in the `nodes` column family, keyed by
//! [`keys::node_key`], in the compact encoding of [`crate::update::TNode`], and are
//! handed to jmt in its own borsh encoding.

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use rocksdb::DB;

use crate::keys;

/// Column family holding jmt nodes.
pub const CF_NODES: &str = "nodes";

/// Reads jmt nodes from RocksDB. Values are served only for one known key (the one
/// being proven): jmt asks for a value by key hash, and the value store is keyed by the
/// logical key, which the caller knows.
pub struct NodeReader<'a> {
    pub db: &'a DB,
    /// The one key whose value jmt may ask for, with its value at the proof height.
    pub known: Option<(KeyHash, Option<Vec<u8>>)>,
}

impl TreeReader for NodeReader<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let cf = self
            .db
            .cf_handle(CF_NODES)
            .ok_or_else(|| anyhow::anyhow!("column family {CF_NODES} missing"))?;
        match self.db.get_pinned_cf(cf, keys::node_key(node_key))? {
            None => Ok(None),
            Some(bytes) => {
                // Stored compactly; handed to jmt in its own borsh encoding.
                let ours = crate::update::TNode::decode(&bytes)
                    .ok_or_else(|| anyhow::anyhow!("undecodable tree node {node_key:?}"))?;
                let node: Node = borsh::from_slice(&ours.encode_jmt())
                    .map_err(|e| anyhow::anyhow!("tree node {node_key:?} for jmt: {e}"))?;
                Ok(Some(node))
            }
        }
    }

    fn get_value_option(
        &self,
        _max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        match &self.known {
            Some((k, v)) if *k == key_hash => Ok(v.clone()),
            _ => Err(anyhow::anyhow!(
                "value for key hash {key_hash:?} not available to the tree"
            )),
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Err(anyhow::anyhow!(
            "tree restore is not supported by merkle-fs"
        ))
    }
}
