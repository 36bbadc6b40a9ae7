//! merkle-fs
