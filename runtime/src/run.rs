//! (placeholder: run)
