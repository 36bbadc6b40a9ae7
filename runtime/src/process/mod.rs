//! Long-running guest processes.
