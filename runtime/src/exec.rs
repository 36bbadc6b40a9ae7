//! (placeholder: exec)
