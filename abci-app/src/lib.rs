//! replicode-abci
