//! (placeholder: clock)
