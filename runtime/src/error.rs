//! (placeholder: error)
