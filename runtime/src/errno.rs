//! (placeholder: errno)
