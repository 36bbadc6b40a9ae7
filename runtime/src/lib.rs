//! replicode-runtime
