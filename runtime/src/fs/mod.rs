//! Filesystem trait and implementations.
