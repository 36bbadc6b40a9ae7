//! (placeholder: entropy)
